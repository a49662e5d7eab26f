//! Request targets and routing: which bytes are an acceptable path, and which route a path,
//! host and method select. Pure functions; no Pingora types.
//!
//! The path a route matches is exactly the path forwarded upstream. That is only safe when no
//! two spellings of a target can mean different things to the gateway and to the upstream, so
//! [`check_target`] refuses everything an upstream might normalise differently: dot-segments
//! (raw or percent-encoded), empty segments, encoded `/` and `\`, control characters, `#`, `;`
//! path parameters, double encoding, and percent-encoded characters that are allowed raw (so
//! `/api/%61dmin` cannot dodge a `/api/admin` route). Route prefixes may only use the characters
//! that are allowed raw, so a raw prefix comparison is then exact.

use crate::config::{AuthMode, Limit, OnUnauthenticated, RouteConfig};

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

/// A route ready for matching; index into [`Router::routes`].
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub path_prefix: String,
    /// Lower case, without port or trailing dot.
    pub host: Option<String>,
    /// Empty = any method; otherwise includes `HEAD` whenever it includes `GET`.
    pub methods: Vec<http::Method>,
    /// The `Allow` header value for a 405 (empty when any method is allowed).
    pub allow: String,
    /// Compare the prefix byte for byte instead of ASCII-case-insensitively.
    pub case_sensitive: bool,
    pub upstream: String,
    /// Index of the upstream group, resolved once at start-up.
    pub upstream_index: usize,
    pub auth: AuthMode,
    pub on_unauthenticated: OnUnauthenticated,
    pub rate_limit: Option<Limit>,
    /// `assertion` of the route; `None` follows `identity.assertion`.
    pub assertion: Option<bool>,
}

/// Why no route takes a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// No route's host and prefix match.
    NotFound,
    /// The route the path belongs to does not allow this method (index of that route): the
    /// request is refused there and never falls through to a shorter prefix.
    MethodNotAllowed(usize),
}

/// Routes ordered so that the first match is the right one: longest prefix first, and for one
/// prefix a host-specific route before a host-less one.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// `upstream_index` maps an upstream name to its position; the config already guarantees
    /// every route names a known upstream.
    pub fn new(routes: &[RouteConfig], upstream_index: impl Fn(&str) -> usize) -> Router {
        let mut routes: Vec<Route> = routes
            .iter()
            .map(|r| {
                let mut methods: Vec<http::Method> = r
                    .methods
                    .iter()
                    .filter_map(|m| http::Method::from_bytes(m.as_bytes()).ok())
                    .collect();
                // Most frameworks answer HEAD with their GET handler: a GET route owns HEAD too.
                if methods.contains(&http::Method::GET) && !methods.contains(&http::Method::HEAD) {
                    methods.push(http::Method::HEAD);
                }
                let allow = methods
                    .iter()
                    .map(http::Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                Route {
                    name: r.name.clone(),
                    path_prefix: r.path_prefix.clone(),
                    host: r.host.as_deref().map(normalize_route_host),
                    methods,
                    allow,
                    case_sensitive: r.case_sensitive,
                    upstream: r.upstream.clone(),
                    upstream_index: upstream_index(&r.upstream),
                    auth: r.auth,
                    on_unauthenticated: r.on_unauthenticated,
                    rate_limit: r.rate_limit,
                    assertion: r.assertion,
                }
            })
            .collect();
        routes.sort_by(|a, b| {
            b.path_prefix
                .len()
                .cmp(&a.path_prefix.len())
                .then(b.host.is_some().cmp(&a.host.is_some()))
        });
        Router { routes }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// `host` comes from [`check_host`] (any case); `path` from [`check_target`]. The route is chosen by host and prefix alone; its methods then
    /// admit the request or refuse it with [`Miss::MethodNotAllowed`].
    pub fn find(
        &self,
        host: Option<&[u8]>,
        path: &str,
        method: &http::Method,
    ) -> Result<(usize, &Route), Miss> {
        let (index, route) = self
            .routes
            .iter()
            .enumerate()
            .find(|(_, r)| {
                route_prefix_matches(r, path)
                    && r.host.as_deref().is_none_or(|h| {
                        host.is_some_and(|rh| rh.eq_ignore_ascii_case(h.as_bytes()))
                    })
            })
            .ok_or(Miss::NotFound)?;
        if route.methods.is_empty() || route.methods.contains(method) {
            Ok((index, route))
        } else {
            Err(Miss::MethodNotAllowed(index))
        }
    }
}

fn route_prefix_matches(route: &Route, path: &str) -> bool {
    if route.case_sensitive {
        prefix_matches(&route.path_prefix, path)
    } else {
        prefix_matches_ignore_case(&route.path_prefix, path)
    }
}

/// Matches on segment boundaries: `/api` matches `/api`, `/api/` and `/api/x`, never `/apix`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    path.starts_with(prefix) && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
}

/// [`prefix_matches`] with ASCII letters compared without case: many upstreams (Express,
/// ASP.NET Core, IIS, static servers on case-insensitive file systems) serve `/APP/x` as
/// `/app/x`, so both spellings must get the same route.
pub fn prefix_matches_ignore_case(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    path.len() >= prefix.len()
        && path.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
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

/// A configured route host as [`check_host`] leaves a request's: lower case, no trailing dot.
pub fn normalize_route_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
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

    fn route(name: &str, prefix: &str, host: Option<&str>, methods: &[&str]) -> RouteConfig {
        RouteConfig {
            name: name.into(),
            path_prefix: prefix.into(),
            host: host.map(str::to_string),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            case_sensitive: false,
            upstream: "app".into(),
            auth: AuthMode::Public,
            on_unauthenticated: OnUnauthenticated::Status401,
            rate_limit: None,
            assertion: None,
        }
    }

    fn host(h: &str) -> Option<&[u8]> {
        Some(check_host(h.as_bytes()).unwrap())
    }

    #[test]
    fn longest_prefix_on_segment_boundaries_then_host_then_method() {
        let router = Router::new(
            &[
                route("root", "/", None, &[]),
                route("api", "/api", None, &[]),
                route("admin", "/api/admin", None, &[]),
                route("admin-host", "/api/admin", Some("admin.example"), &[]),
                route("writes", "/api/items", None, &["POST", "PUT"]),
            ],
            |_| 0,
        );
        let get = http::Method::GET;
        let name = |host: Option<&[u8]>, path: &str, m: &http::Method| {
            router.find(host, path, m).map(|(_, r)| r.name.as_str())
        };
        assert_eq!(name(None, "/api", &get), Ok("api"));
        assert_eq!(name(None, "/api/", &get), Ok("api"));
        assert_eq!(name(None, "/apix", &get), Ok("root"));
        assert_eq!(name(None, "/api/admin/users", &get), Ok("admin"));
        assert_eq!(name(None, "/api/administrator", &get), Ok("api"));
        assert_eq!(
            name(host("ADMIN.example:8443"), "/api/admin", &get),
            Ok("admin-host")
        );
        assert_eq!(
            name(host("admin.example."), "/api/admin", &get),
            Ok("admin-host"),
            "one trailing dot is the same host"
        );
        assert_eq!(name(host("other.example"), "/api/admin", &get), Ok("admin"));
        assert_eq!(name(None, "/api/items", &http::Method::POST), Ok("writes"));
        // The path is inside `writes`: another method is refused there, never sent to `api`.
        let writes = router
            .routes()
            .iter()
            .position(|r| r.name == "writes")
            .unwrap();
        assert_eq!(
            router.find(None, "/api/items/1", &get).map(|(i, _)| i),
            Err(Miss::MethodNotAllowed(writes))
        );
        assert_eq!(router.routes()[writes].allow, "POST, PUT");

        let narrow = Router::new(&[route("only", "/api", Some("a.example"), &["GET"])], |_| 0);
        assert_eq!(narrow.routes()[0].allow, "GET, HEAD");
        assert!(narrow.find(host("b.example"), "/api", &get).is_err());
        assert!(narrow.find(None, "/api", &get).is_err());
        assert_eq!(
            narrow
                .find(host("a.example"), "/api", &http::Method::DELETE)
                .map(|_| ()),
            Err(Miss::MethodNotAllowed(0))
        );
        assert!(narrow
            .find(host("a.example"), "/api", &http::Method::HEAD)
            .is_ok());
        assert_eq!(
            narrow.find(host("a.example"), "/other", &get).map(|_| ()),
            Err(Miss::NotFound)
        );
    }

    #[test]
    fn prefixes_match_without_case_unless_the_route_opts_out() {
        let mut exact = route("exact", "/Files", None, &[]);
        exact.case_sensitive = true;
        let router = Router::new(
            &[
                route("root", "/", None, &[]),
                route("app", "/app", None, &[]),
                exact,
            ],
            |_| 0,
        );
        let name = |path: &str| {
            router
                .find(None, path, &http::Method::GET)
                .map(|(_, r)| r.name.as_str())
        };
        assert_eq!(name("/APP/settings"), Ok("app"));
        assert_eq!(name("/aPp"), Ok("app"));
        assert_eq!(name("/APPX"), Ok("root"));
        assert_eq!(name("/Files/a"), Ok("exact"));
        assert_eq!(name("/files/a"), Ok("root"));
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
