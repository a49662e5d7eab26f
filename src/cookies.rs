//! The `Cookie` request header as bytes: reading the gateway's own cookies and removing them
//! before forwarding, whatever the other cookies contain. Pure; no Pingora types.
//!
//! Browsers send cookie values as the site set them, and sites do set raw UTF-8 (`nick=라이언`)
//! and other bytes that are not visible ASCII. Treating such a header as text (`to_str()`) fails
//! for the whole header, which hid the gateway's cookies from it (a login loop) and kept them in
//! what was forwarded (leaking session tokens to the upstream). Here the header is split on `;`
//! as bytes; only pairs whose name is one of ours are read or removed, and every other byte goes
//! upstream exactly as the client sent it.
//!
//! Names: over https (directly or through a trusted proxy) the gateway's cookies carry the
//! `__Host-` prefix, which browsers only accept from a secure origin, for `Path=/` and without
//! `Domain`, so a sibling subdomain cannot plant one; only those names are read then. Plain
//! names only on plain http (`authgate dev`).

/// The gateway's cookie names for one scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names {
    pub access: &'static str,
    pub refresh: &'static str,
    pub state: &'static str,
}

const PLAIN: Names = Names {
    access: "authgate_access",
    refresh: "authgate_refresh",
    state: "authgate_state",
};

const HOST_ONLY: Names = Names {
    access: "__Host-authgate_access",
    refresh: "__Host-authgate_refresh",
    state: "__Host-authgate_state",
};

/// The names used with a client that reached us over https (`secure`) or plain http.
pub fn names(secure: bool) -> &'static Names {
    if secure {
        &HOST_ONLY
    } else {
        &PLAIN
    }
}

/// Any of the gateway's cookie names, in either scheme: never forwarded upstream.
pub fn is_ours(name: &[u8]) -> bool {
    [PLAIN, HOST_ONLY].iter().any(|n| {
        [n.access, n.refresh, n.state]
            .iter()
            .any(|c| c.as_bytes() == name)
    })
}

/// A `Set-Cookie` value for one of the gateway's cookies: `HttpOnly`, `SameSite=Lax`, `Path=/`,
/// and `Secure` over https (which `__Host-` requires). `max_age = 0` deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The value of the cookie called `name` in the `Cookie` headers, with optional whitespace
/// around it removed; absent when there is none, or when there are several with different
/// values. Browsers send every cookie whose domain and path match, so two values for one of our
/// names mean another site planted one (a sibling subdomain "tossing" a cookie for a path,
/// where the `__Host-` prefix cannot be used): picking either could log the victim in as the
/// attacker, so neither is a credential. A value that is not UTF-8 cannot be one of ours and
/// reads as absent.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| pairs(v.as_bytes()))
        .filter(|(k, _)| *k == name.as_bytes())
        .map(|(_, v)| v);
    let first = values.next()?;
    if values.any(|other| other != first) {
        return None;
    }
    std::str::from_utf8(first).ok()
}

/// `name=value` pairs of one header value, each trimmed of spaces and tabs; pieces without `=`
/// are skipped.
fn pairs(value: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    value.split(|&b| b == b';').filter_map(|piece| {
        let piece = piece.trim_ascii();
        let eq = piece.iter().position(|&b| b == b'=')?;
        Some((piece[..eq].trim_ascii(), piece[eq + 1..].trim_ascii()))
    })
}

/// One `Cookie` header value without the pairs `ours` names: `None` when it holds none of them
/// (forward it untouched), else the remaining pairs with their bytes and separators as sent
/// (empty when nothing is left).
pub fn without(value: &[u8], ours: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    let is_ours = |piece: &[u8]| {
        let piece = piece.trim_ascii();
        let name = piece.split(|&b| b == b'=').next().unwrap_or(piece);
        ours(name.trim_ascii())
    };
    if !value.split(|&b| b == b';').any(is_ours) {
        return None;
    }
    let mut out = Vec::with_capacity(value.len());
    for piece in value.split(|&b| b == b';').filter(|p| !is_ours(p)) {
        if !out.is_empty() {
            out.push(b';');
        }
        out.extend_from_slice(if out.is_empty() {
            piece.trim_ascii_start()
        } else {
            piece
        });
    }
    // A separator left dangling by a removed last pair.
    while out
        .last()
        .is_some_and(|b| *b == b';' || b.is_ascii_whitespace())
    {
        out.pop();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append("cookie", http::HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn cookies_are_read_from_every_header_whatever_else_they_hold() {
        let h = headers(&[
            "nick=라이언; a=1; authgate_access=tok".as_bytes(),
            b"\xff\xfe=\x80; authgate_refresh = r ",
        ]);
        assert_eq!(cookie(&h, "authgate_access"), Some("tok"));
        assert_eq!(cookie(&h, "authgate_refresh"), Some("r"));
        assert_eq!(cookie(&h, "nick"), Some("라이언"));
        assert_eq!(cookie(&h, "missing"), None);
        assert_eq!(cookie(&headers(&[b"x=1;;;=; y"]), "x"), Some("1"));
    }

    #[test]
    fn a_cookie_with_two_different_values_is_no_cookie_at_all() {
        // A sibling subdomain planted its own session for a path: the browser sends both.
        let tossed = headers(&[b"authgate_access=attackers; authgate_access=victims"]);
        assert_eq!(cookie(&tossed, "authgate_access"), None);
        let split = headers(&[b"authgate_refresh=a", b"x=1; authgate_refresh=b"]);
        assert_eq!(cookie(&split, "authgate_refresh"), None);
        // The same value twice is still that value.
        let twice = headers(&[b"authgate_state=s; authgate_state= s"]);
        assert_eq!(cookie(&twice, "authgate_state"), Some("s"));
    }

    #[test]
    fn names_are_host_only_over_https() {
        assert_eq!(names(true).access, "__Host-authgate_access");
        assert_eq!(names(false).refresh, "authgate_refresh");
        for n in [names(true), names(false)] {
            assert!(
                is_ours(n.access.as_bytes())
                    && is_ours(n.refresh.as_bytes())
                    && is_ours(n.state.as_bytes())
            );
        }
        assert!(!is_ours(b"authgate"));
        assert!(!is_ours(b"__Host-session"));
        assert_eq!(
            set_cookie("__Host-authgate_access", "t", 60, true),
            "__Host-authgate_access=t; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
    }

    #[test]
    fn only_our_pairs_are_removed_and_the_rest_is_byte_exact() {
        let ours = |n: &[u8]| n == b"authgate_access" || n == b"authgate_refresh";
        let strip = |v: &str| without(v.as_bytes(), ours).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(strip("a=1; b=2"), None);
        assert_eq!(
            strip("nick=라이언; authgate_access=t; b=2").as_deref(),
            Some("nick=라이언; b=2")
        );
        assert_eq!(strip("authgate_access=t; a=1").as_deref(), Some("a=1"));
        assert_eq!(strip("a=1;authgate_refresh=r").as_deref(), Some("a=1"));
        assert_eq!(
            strip("a=1;  authgate_refresh=r;b=2").as_deref(),
            Some("a=1;b=2")
        );
        assert_eq!(
            strip("authgate_access=t; authgate_refresh=r").as_deref(),
            Some("")
        );
        assert_eq!(strip(" authgate_access = t ").as_deref(), Some(""));
        // Non-UTF-8 bytes around ours survive untouched.
        assert_eq!(
            without(b"x=\xff\x80; authgate_access=t;y=\xfe", ours),
            Some(b"x=\xff\x80;y=\xfe".to_vec())
        );
    }
}
