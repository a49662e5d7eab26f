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
}

/// Characters allowed raw in a path segment and in route prefixes: RFC 3986 unreserved,
/// sub-delims except ';', and ':' '@'.
pub fn is_plain_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
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
        )
}

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
    // Percent-escapes in the query are still checked for NUL and control characters: upstreams
    // decode them into strings as well.
    let mut i = 0;
    while i < target.len() {
        if target[i] == b'%' {
            let (Some(h), Some(l)) = (
                target.get(i + 1).copied().and_then(hex),
                target.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(TargetError::BadEscape);
            };
            let decoded = h * 16 + l;
            if decoded < 0x20 || decoded == 0x7f {
                return Err(TargetError::AmbiguousEscape);
            }
            if i < path_end {
                if decoded == b'/'
                    || decoded == b'\\'
                    || decoded == b'.'
                    || decoded == b';'
                    || is_plain_path_byte(decoded)
                {
                    return Err(TargetError::AmbiguousEscape);
                }
                if decoded == b'%'
                    && target.get(i + 3).copied().and_then(hex).is_some()
                    && target.get(i + 4).copied().and_then(hex).is_some()
                {
                    return Err(TargetError::DoubleEncoded);
                }
            }
            i += 3;
            continue;
        }
        if i < path_end {
            let b = target[i];
            if b == b';' {
                return Err(TargetError::PathParameter);
            }
            if b != b'/' && !is_plain_path_byte(b) {
                return Err(TargetError::Unencoded);
            }
        }
        i += 1;
    }
    // Segments: "/" alone and one trailing slash are fine; "//", "." and ".." are not.
    let segments = &path[1..];
    if !segments.is_empty() {
        let mut parts = segments.split(|&b| b == b'/').peekable();
        while let Some(seg) = parts.next() {
            let last = parts.peek().is_none();
            if seg == b"." || seg == b".." || (seg.is_empty() && !last) {
                return Err(TargetError::DotOrEmptySegment);
            }
        }
    }
    // Only ASCII bytes were accepted above.
    Ok(std::str::from_utf8(path).expect("checked ASCII"))
}

/// A route ready for matching; index into [`Router::routes`].
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub path_prefix: String,
    pub host: Option<String>,
    pub methods: Vec<http::Method>,
    pub upstream: String,
    /// Index of the upstream group, resolved once at start-up.
    pub upstream_index: usize,
    pub auth: AuthMode,
    pub on_unauthenticated: OnUnauthenticated,
    pub rate_limit: Option<Limit>,
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
            .map(|r| Route {
                name: r.name.clone(),
                path_prefix: r.path_prefix.clone(),
                host: r.host.clone(),
                methods: r
                    .methods
                    .iter()
                    .filter_map(|m| http::Method::from_bytes(m.as_bytes()).ok())
                    .collect(),
                upstream: r.upstream.clone(),
                upstream_index: upstream_index(&r.upstream),
                auth: r.auth,
                on_unauthenticated: r.on_unauthenticated,
                rate_limit: r.rate_limit,
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

    /// `host` is the request's Host (any case, port allowed); `path` comes from [`check_target`].
    pub fn find(
        &self,
        host: Option<&str>,
        path: &str,
        method: &http::Method,
    ) -> Option<(usize, &Route)> {
        let host = host.map(strip_port);
        self.routes.iter().enumerate().find(|(_, r)| {
            prefix_matches(&r.path_prefix, path)
                && r.host
                    .as_deref()
                    .is_none_or(|h| host.is_some_and(|rh| rh.eq_ignore_ascii_case(h)))
                && (r.methods.is_empty() || r.methods.contains(method))
        })
    }
}

/// Matches on segment boundaries: `/api` matches `/api`, `/api/` and `/api/x`, never `/apix`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    path.starts_with(prefix) && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
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
            upstream: "app".into(),
            auth: AuthMode::Public,
            on_unauthenticated: OnUnauthenticated::Status401,
            rate_limit: None,
        }
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
        let name = |host: Option<&str>, path: &str, m: &http::Method| {
            router.find(host, path, m).map(|(_, r)| r.name.as_str())
        };
        assert_eq!(name(None, "/api", &get), Some("api"));
        assert_eq!(name(None, "/api/", &get), Some("api"));
        assert_eq!(name(None, "/apix", &get), Some("root"));
        assert_eq!(name(None, "/api/admin/users", &get), Some("admin"));
        assert_eq!(name(None, "/api/administrator", &get), Some("api"));
        assert_eq!(
            name(Some("ADMIN.example:8443"), "/api/admin", &get),
            Some("admin-host")
        );
        assert_eq!(
            name(Some("other.example"), "/api/admin", &get),
            Some("admin")
        );
        assert_eq!(
            name(None, "/api/items", &http::Method::POST),
            Some("writes")
        );
        assert_eq!(name(None, "/api/items", &get), Some("api"));

        let narrow = Router::new(&[route("only", "/api", Some("a.example"), &["GET"])], |_| 0);
        assert!(narrow.find(Some("b.example"), "/api", &get).is_none());
        assert!(narrow.find(None, "/api", &get).is_none());
        assert!(narrow
            .find(Some("a.example"), "/api", &http::Method::DELETE)
            .is_none());
        assert!(narrow.find(Some("a.example"), "/other", &get).is_none());
    }

    #[test]
    fn host_ports_are_ignored() {
        assert_eq!(strip_port("a.example:80"), "a.example");
        assert_eq!(strip_port("a.example"), "a.example");
        assert_eq!(strip_port("[::1]:8000"), "::1");
    }
}
