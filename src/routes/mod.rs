//! Request targets and routing: which bytes are an acceptable path and host (this file), and
//! which route a path, host and method select (`table.rs`). Pure functions; no Pingora types.
//!
//! The path a route matches is exactly the path forwarded upstream. That is only safe when no
//! two spellings of a target can mean different things to the gateway and to the upstream, so
//! [`check_target`] refuses everything an upstream might normalise differently: dot-segments
//! (raw or percent-encoded), empty segments, encoded `/` and `\`, control characters, `#`, `;`
//! path parameters, double encoding, and percent-encoded characters that are allowed raw (so
//! `/api/%61dmin` cannot dodge a `/api/admin` route). Route prefixes may only use the characters
//! that are allowed raw, so a raw prefix comparison is then exact.

mod table;

pub use table::{
    normalize_route_host, prefix_matches, prefix_matches_ignore_case, Miss, Route, Router,
};

/// Why a request target was refused; only logged, the client sees a generic 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the target is not an origin-form path")]
    NotOriginForm,
    #[error("the target contains a control character, a space or a raw non-ASCII byte")]
    ControlOrNonAscii,
    #[error("the target contains a fragment '#'")]
    Fragment,
    #[error("the path contains a ';' path parameter")]
    PathParameter,
    #[error("the path contains a raw backslash or another character that must be encoded")]
    Unencoded,
    #[error("the path contains a malformed percent-escape")]
    BadEscape,
    #[error(
        "the path percent-encodes '/', '\\', '.', a control character or a character allowed raw"
    )]
    AmbiguousEscape,
    #[error("the path is double percent-encoded")]
    DoubleEncoded,
    #[error("the path contains a '.', '..' or empty segment")]
    DotOrEmptySegment,
    #[error("a path segment ends in '.' or a space, or names a file stream ('::', ':$')")]
    WindowsAlias,
    #[error("the path percent-encodes invalid UTF-8 or a character that folds to ASCII")]
    AmbiguousUnicode,
    #[error("the Host header is not a host name, an IP literal or a port")]
    BadHost,
}

/// Characters allowed raw in a path segment and in route prefixes: RFC 3986 unreserved,
/// sub-delims except ';', and ':' '@'.
pub fn is_plain_path_byte(b: u8) -> bool {
    PLAIN[b as usize]
}

static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'='
                    | b':'
                    | b'@'
            );
        b += 1;
    }
    t
};

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Checks a raw request target (path and query, as received) and returns its path part.
pub fn check_target(target: &[u8]) -> Result<&str, TargetError> {
    if target.first() != Some(&b'/') {
        return Err(TargetError::NotOriginForm);
    }
    let mut path_end = target.len();
    for (i, &b) in target.iter().enumerate() {
        if b <= b' ' || b >= 0x7f {
            return Err(TargetError::ControlOrNonAscii);
        }
        if b == b'#' {
            return Err(TargetError::Fragment);
        }
        if b == b'?' && path_end == target.len() {
            path_end = i;
        }
    }
    let path = &target[..path_end];
    // The path in one pass: escapes, raw bytes, and each segment as it ends. Segments: "/" alone
    // and one trailing slash are fine; "//", "." and ".." are not. Nor what Windows servers
    // (IIS, anything on NTFS) read as another name: a segment ending in '.' or a space (`admin.`
    // and `admin%20` are `admin`), and file streams (`admin::$DATA`, `admin:$I30:...`).
    let mut seg_start = 1;
    let mut high_escapes = false;
    let mut i = 1;
    while i <= path.len() {
        let b = path.get(i).copied().unwrap_or(b'/');
        match b {
            b'/' => {
                let seg = &path[seg_start..i];
                let last = i == path.len();
                if seg == b"." || seg == b".." || (seg.is_empty() && !last) {
                    return Err(TargetError::DotOrEmptySegment);
                }
                if seg.ends_with(b".") || seg.ends_with(b"%20") {
                    return Err(TargetError::WindowsAlias);
                }
                seg_start = i + 1;
                i += 1;
            }
            b'%' => {
                let decoded = escape_at(path, i)?;
                if decoded < 0x20
                    || decoded == 0x7f
                    || decoded == b'/'
                    || decoded == b'\\'
                    || decoded == b'.'
                    || decoded == b';'
                    || PLAIN[decoded as usize]
                {
                    return Err(TargetError::AmbiguousEscape);
                }
                if decoded == b'%'
                    && path.get(i + 3).copied().and_then(hex).is_some()
                    && path.get(i + 4).copied().and_then(hex).is_some()
                {
                    return Err(TargetError::DoubleEncoded);
                }
                high_escapes |= decoded >= 0x80;
                i += 3;
            }
            b';' => return Err(TargetError::PathParameter),
            b':' if matches!(path.get(i + 1), Some(b':' | b'$')) => {
                return Err(TargetError::WindowsAlias)
            }
            _ if PLAIN[b as usize] => i += 1,
            _ => return Err(TargetError::Unencoded),
        }
    }
    if high_escapes {
        check_encoded_unicode(path)?;
    }
    // Percent-escapes in the query are still checked for NUL and control characters: upstreams
    // decode them into strings as well.
    let mut i = path_end;
    while let Some(at) = target[i..].iter().position(|&b| b == b'%') {
        let decoded = escape_at(target, i + at)?;
        if decoded < 0x20 || decoded == 0x7f {
            return Err(TargetError::AmbiguousEscape);
        }
        i += at + 3;
    }
    // Only ASCII bytes were accepted above.
    Ok(std::str::from_utf8(path).expect("checked ASCII"))
}

/// The byte `%XX` at `i` stands for.
fn escape_at(s: &[u8], i: usize) -> Result<u8, TargetError> {
    match (
        s.get(i + 1).copied().and_then(hex),
        s.get(i + 2).copied().and_then(hex),
    ) {
        (Some(h), Some(l)) => Ok(h * 16 + l),
        _ => Err(TargetError::BadEscape),
    }
}

/// Percent-encoded bytes of 0x80 and above must spell valid UTF-8 (no overlong forms, no
/// surrogates) of characters that no upstream folds to ASCII: Java's `equalsIgnoreCase` takes
/// `ı` (U+0131) for `i` and `ſ` (U+017F) for `s`, and servers that normalise Unicode (NFKC)
/// read fullwidth `ａｄｍｉｎ`, `．` or `ﬁ` as ASCII. Hangul, CJK, accented letters and the
/// like pass, so `/tags/%EC%95%88` does.
fn check_encoded_unicode(path: &[u8]) -> Result<(), TargetError> {
    let mut run = Vec::new();
    let mut i = 0;
    loop {
        let byte = (path.get(i) == Some(&b'%'))
            .then(|| Some(hex(*path.get(i + 1)?)? * 16 + hex(*path.get(i + 2)?)?))
            .flatten();
        match byte {
            Some(b) if b >= 0x80 => {
                run.push(b);
                i += 3;
                continue;
            }
            _ => {
                if !run.is_empty() {
                    let text =
                        std::str::from_utf8(&run).map_err(|_| TargetError::AmbiguousUnicode)?;
                    if text.chars().any(folds_to_ascii) {
                        return Err(TargetError::AmbiguousUnicode);
                    }
                    run.clear();
                }
            }
        }
        if i >= path.len() {
            return Ok(());
        }
        i += if byte.is_some() { 3 } else { 1 };
    }
}

/// Characters that Unicode case folding or compatibility normalisation (NFKC) can turn into
/// ASCII, or that are invisible: refused when percent-encoded in a path.
fn folds_to_ascii(c: char) -> bool {
    matches!(u32::from(c),
        0x80..=0x9F          // C1 controls
        | 0xA0               // no-break space
        | 0xAA | 0xB2 | 0xB3 | 0xB9 | 0xBA | 0xBC..=0xBE // ª ² ³ ¹ º ¼ ½ ¾
        | 0x130 | 0x131 | 0x17F // İ ı ſ
        | 0x2B0..=0x2FF      // spacing modifier letters
        | 0x37E | 0x387      // Greek question mark (;) and ano teleia
        | 0x1D2C..=0x1DBF    // phonetic modifiers
        | 0x2000..=0x206F    // spaces, dot leaders, zero-width and bidi controls
        | 0x2070..=0x209F    // superscripts and subscripts
        | 0x2100..=0x218F    // letterlike symbols (K, Å, ℌ...) and number forms (Ⅰ)
        | 0x2460..=0x24FF    // enclosed alphanumerics
        | 0x3000             // ideographic space
        | 0xFB00..=0xFB4F    // ligatures (ﬁ)
        | 0xFE10..=0xFE1F | 0xFE30..=0xFE6F // vertical and small forms
        | 0xFEFF             // byte-order mark
        | 0xFF00..=0xFFEF    // fullwidth and halfwidth forms
        | 0x1D400..=0x1D7FF  // mathematical alphanumerics
        | 0x1F100..=0x1F1FF  // enclosed alphanumeric supplement
        | 0xE0000..=0xE007F  // tags
    )
}

/// Checks a `Host` value and returns its name as routing compares it: without the port and one
/// trailing dot (`Admin.Example.:8443` is `Admin.Example`; case is ignored by the comparison).
/// nginx, Django and browsers treat the fully qualified `admin.example.` as `admin.example`, so
/// both must take the same route; anything an upstream could read as yet another name (empty
/// labels such as `admin..example`, a leading dot, characters outside host names) is refused,
/// as nginx refuses it.
pub fn check_host(host: &[u8]) -> Result<&[u8], TargetError> {
    let bad = Err(TargetError::BadHost);
    if host.is_empty() || host.len() > 260 {
        return bad;
    }
    let name = if host[0] == b'[' {
        // [v6]:port
        let Some(close) = host.iter().position(|&b| b == b']') else {
            return bad;
        };
        let inner = &host[1..close];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
            || !port_ok(&host[close + 1..])
        {
            return bad;
        }
        &host[..=close]
    } else {
        // One pass: labels of letters, digits, '-' and '_', none empty, then an optional port.
        let mut colon = host.len();
        let mut prev = b'.';
        for (i, &b) in host.iter().enumerate() {
            if !HOST_BYTE[b as usize] {
                if b == b':' {
                    colon = i;
                    break;
                }
                return bad;
            }
            if b == b'.' && prev == b'.' {
                return bad;
            }
            prev = b;
        }
        if !port_ok(&host[colon..]) {
            return bad;
        }
        // One trailing dot names the same host (`admin.example.`).
        let name = &host[..colon];
        let name = name.strip_suffix(b".").unwrap_or(name);
        if name.is_empty() {
            return bad;
        }
        name
    };
    Ok(name)
}

/// Bytes of a host name: letters, digits, `-`, `_` and `.`.
static HOST_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.';
        b += 1;
    }
    t
};

/// Empty, or `:` and 1–5 digits.
fn port_ok(rest: &[u8]) -> bool {
    rest.is_empty()
        || (rest[0] == b':'
            && (2..=6).contains(&rest.len())
            && rest[1..].iter().all(u8::is_ascii_digit))
}

/// The `Host` to forward for a value [`check_host`] accepted: the name routing compared, in lower
/// case and without its trailing dot, then the port as sent; `None` when `host` is that already
/// (nearly always). An upstream that reads `Docs.Example.` as another name than `docs.example`
/// (Go's `ServeMux`, Express `vhost`) must not get the spelling a route was chosen around.
pub fn canonical_host(host: &[u8]) -> Option<Vec<u8>> {
    let spelled_otherwise = host.iter().any(u8::is_ascii_uppercase)
        || host.ends_with(b".")
        || host.windows(2).any(|w| w == b".:");
    if !spelled_otherwise {
        return None;
    }
    let name = check_host(host).ok()?;
    let port = &host[name.len()..];
    let port = port.strip_prefix(b".").unwrap_or(port);
    let mut canonical = name.to_ascii_lowercase();
    canonical.extend_from_slice(port);
    (canonical != host).then_some(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_targets_pass() {
        for (t, path) in [
            ("/", "/"),
            ("/api/health", "/api/health"),
            ("/api/x/", "/api/x/"),
            ("/api/x?a=1&b=../../etc;x", "/api/x"),
            ("/api/%EC%95%88%20x", "/api/%EC%95%88%20x"),
            ("/tags/%EC%95%88%EB%85%95", "/tags/%EC%95%88%EB%85%95"),
            ("/caf%C3%A9/x", "/caf%C3%A9/x"),
            ("/v1/items:batch", "/v1/items:batch"),
            ("/files/v1.2/x", "/files/v1.2/x"),
            ("/api/a%25b", "/api/a%25b"),
            ("/users/me@x.com:8", "/users/me@x.com:8"),
            ("/?q=%2F", "/"),
        ] {
            assert_eq!(check_target(t.as_bytes()), Ok(path), "{t}");
        }
    }

    #[test]
    fn ambiguous_targets_are_refused() {
        use TargetError::*;
        for (t, why) in [
            ("/api/../admin", DotOrEmptySegment),
            ("/api/./admin", DotOrEmptySegment),
            ("/api/..", DotOrEmptySegment),
            ("/api//admin", DotOrEmptySegment),
            ("//api", DotOrEmptySegment),
            ("//", DotOrEmptySegment),
            ("/api/%2e%2e/admin", AmbiguousEscape),
            ("/api/%2E./admin", AmbiguousEscape),
            ("/api/.%2e/admin", AmbiguousEscape),
            ("/api%2fadmin", AmbiguousEscape),
            ("/api%2Fadmin", AmbiguousEscape),
            ("/api%5cadmin", AmbiguousEscape),
            ("/api\\admin", Unencoded),
            ("/api/%61dmin", AmbiguousEscape),
            ("/api/a%00b", AmbiguousEscape),
            ("/api/a?x=%00", AmbiguousEscape),
            ("/api/a%0d%0ab", AmbiguousEscape),
            ("/api/a\x01b", ControlOrNonAscii),
            ("/api/a\x7f", ControlOrNonAscii),
            ("/api/\u{e9}", ControlOrNonAscii),
            ("/api/x#frag", Fragment),
            ("/api/x;jsessionid=1", PathParameter),
            ("/api/x%3bjsessionid=1", AmbiguousEscape),
            ("/api/%252e%252e/admin", DoubleEncoded),
            ("/api/%zz", BadEscape),
            ("/api/admin./x", WindowsAlias),
            ("/api/admin.", WindowsAlias),
            ("/api/admin%20/x", WindowsAlias),
            ("/api/admin::$INDEX_ALLOCATION/x", WindowsAlias),
            ("/api/admin:$i30:$INDEX_ALLOCATION", WindowsAlias),
            ("/api/adm%C4%B1n", AmbiguousUnicode),
            ("/api/%C5%BFecret", AmbiguousUnicode),
            ("/api/%EF%BD%81dmin", AmbiguousUnicode),
            ("/api/admin%EF%BC%8E", AmbiguousUnicode),
            ("/api/%C0%AE%C0%AE/x", AmbiguousUnicode),
            ("/api/%ED%A0%80", AmbiguousUnicode),
            ("/api/%E2%80%8Badmin", AmbiguousUnicode),
            ("/api/%EF%AC%81le", AmbiguousUnicode),
            ("/api/%C3", AmbiguousUnicode),
            ("/api/%C3x", AmbiguousUnicode),
            ("/api/%4", BadEscape),
            ("http://evil/api", NotOriginForm),
            ("*", NotOriginForm),
            ("", NotOriginForm),
        ] {
            assert_eq!(check_target(t.as_bytes()), Err(why), "{t:?}");
        }
    }

    #[test]
    fn hosts_are_checked_and_normalized() {
        for (raw, name) in [
            ("a.example", "a.example"),
            ("A.Example:80", "A.Example"),
            ("a.example.", "a.example"),
            ("a.example.:8443", "a.example"),
            ("localhost", "localhost"),
            ("127.0.0.1:8000", "127.0.0.1"),
            ("[::1]:8000", "[::1]"),
            ("[2001:db8::1]", "[2001:db8::1]"),
            ("my_host.internal", "my_host.internal"),
        ] {
            assert_eq!(check_host(raw.as_bytes()), Ok(name.as_bytes()), "{raw}");
        }
        for bad in [
            "",
            ".",
            "a.example..",
            "a..example",
            ".a.example",
            "a.example:",
            "a.example:x",
            "a.example:123456",
            "a.example:80:80",
            "user@a.example",
            "a.example/x",
            "a example",
            "a.example\\",
            "[::1",
            "[zz::1]",
            "[::1]x",
            "\u{e9}.example",
        ] {
            assert_eq!(
                check_host(bad.as_bytes()),
                Err(TargetError::BadHost),
                "{bad:?}"
            );
        }
        assert_eq!(normalize_route_host("Admin.Example."), "admin.example");
    }

    #[test]
    fn hosts_are_forwarded_as_routed() {
        for (sent, forwarded) in [
            ("Docs.Example.", Some("docs.example")),
            ("docs.example.:8443", Some("docs.example:8443")),
            ("ADMIN.example:80", Some("admin.example:80")),
            ("[::ABCD]:8080", Some("[::abcd]:8080")),
            ("docs.example", None),
            ("docs.example:8443", None),
            ("10.0.0.1:80", None),
        ] {
            assert_eq!(
                canonical_host(sent.as_bytes()).as_deref(),
                forwarded.map(str::as_bytes),
                "{sent}"
            );
        }
    }
}
