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
    #[error("the Host header is not a host name, an IP literal or a port")]
    BadHost,
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
        host: Option<&str>,
        path: &str,
        method: &http::Method,
    ) -> Result<(usize, &Route), Miss> {
        let (index, route) = self
            .routes
            .iter()
            .enumerate()
            .find(|(_, r)| {
                route_prefix_matches(r, path)
                    && r.host
                        .as_deref()
                        .is_none_or(|h| host.is_some_and(|rh| rh.eq_ignore_ascii_case(h)))
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
pub fn check_host(host: &[u8]) -> Result<&str, TargetError> {
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
        let colon = host.iter().position(|&b| b == b':').unwrap_or(host.len());
        if !port_ok(&host[colon..]) {
            return bad;
        }
        let name = &host[..colon];
        let name = name.strip_suffix(b".").unwrap_or(name);
        if name.is_empty()
            || name.split(|&b| b == b'.').any(|label| label.is_empty())
            || !name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return bad;
        }
        name
    };
    Ok(std::str::from_utf8(name).expect("checked ASCII"))
}

/// Empty, or `:` and 1–5 digits.
fn port_ok(rest: &[u8]) -> bool {
    rest.is_empty()
        || (rest[0] == b':'
            && (2..=6).contains(&rest.len())
            && rest[1..].iter().all(u8::is_ascii_digit))
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
            case_sensitive: false,
            upstream: "app".into(),
            auth: AuthMode::Public,
            on_unauthenticated: OnUnauthenticated::Status401,
            rate_limit: None,
        }
    }

    fn host(h: &str) -> Option<&str> {
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
        let name = |host: Option<&str>, path: &str, m: &http::Method| {
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
            assert_eq!(check_host(raw.as_bytes()), Ok(name), "{raw}");
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
}
