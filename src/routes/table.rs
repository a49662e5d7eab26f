//! The route table: which route a checked path, host and method select. Longest prefix first
//! (on segment boundaries, ignoring ASCII case unless a route opts out), a host route before a
//! host-less one of the same prefix, then the route's methods.
//!
//! Few routes are scanned in order. Many are looked up by prefix: a path has one candidate
//! prefix per segment boundary, so a request costs a handful of hash lookups whether there
//! are ten routes or ten thousand.

use std::collections::HashMap;

use crate::config::{AuthMode, Limit, OnUnauthenticated, RouteConfig};

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
    /// `shared_cache` of the route (see `proxy::cache`).
    pub shared_cache: bool,
    /// Content on `DELETE` (`OPTIONS`) is forwarded on this route.
    pub body_on_delete: bool,
    pub body_on_options: bool,
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
    /// With many routes: lower-cased prefix -> its routes, in `routes` order.
    by_prefix: Option<HashMap<Box<[u8]>, Vec<usize>, ahash::RandomState>>,
}

/// From this many routes on, [`Router::find`] looks prefixes up instead of scanning: below it
/// a scan is as fast as the hashing.
const INDEX_FROM: usize = 16;

/// Whether `route` takes a request for `host` and `path` (methods aside).
fn takes(route: &Route, host: Option<&[u8]>, path: &str) -> bool {
    route_prefix_matches(route, path)
        && route
            .host
            .as_deref()
            .is_none_or(|h| host.is_some_and(|rh| rh.eq_ignore_ascii_case(h.as_bytes())))
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
                    shared_cache: r.shared_cache,
                    body_on_delete: r.allow_body_on.iter().any(|m| m == "DELETE"),
                    body_on_options: r.allow_body_on.iter().any(|m| m == "OPTIONS"),
                }
            })
            .collect();
        routes.sort_by(|a, b| {
            b.path_prefix
                .len()
                .cmp(&a.path_prefix.len())
                .then(b.host.is_some().cmp(&a.host.is_some()))
        });
        let by_prefix = (routes.len() >= INDEX_FROM).then(|| {
            let mut map: HashMap<Box<[u8]>, Vec<usize>, ahash::RandomState> = HashMap::default();
            for (i, r) in routes.iter().enumerate() {
                map.entry(r.path_prefix.to_ascii_lowercase().into_bytes().into())
                    .or_default()
                    .push(i);
            }
            map
        });
        Router { routes, by_prefix }
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
        let index = match &self.by_prefix {
            None => self.routes.iter().position(|r| takes(r, host, path)),
            Some(map) => self.look_up(map, host, path),
        }
        .ok_or(Miss::NotFound)?;
        let route = &self.routes[index];
        if route.methods.is_empty() || route.methods.contains(method) {
            Ok((index, route))
        } else {
            Err(Miss::MethodNotAllowed(index))
        }
    }
}

impl Router {
    /// The first route in order that takes the request, found by prefix: the whole path, then
    /// the path cut at each `/` from the right, then `/`. Routes of one prefix keep their order
    /// (a host route before a host-less one), and a longer prefix is always tried first, so the
    /// answer is the scan's.
    fn look_up(
        &self,
        map: &HashMap<Box<[u8]>, Vec<usize>, ahash::RandomState>,
        host: Option<&[u8]>,
        path: &str,
    ) -> Option<usize> {
        let bytes = path.as_bytes();
        let lower = bytes.to_ascii_lowercase();
        let mut end = bytes.len();
        loop {
            if let Some(ids) = map.get(&lower[..end]) {
                if let Some(i) = ids.iter().find(|&&i| takes(&self.routes[i], host, path)) {
                    return Some(*i);
                }
            }
            match bytes[..end].iter().rposition(|&b| b == b'/') {
                Some(p) if p > 0 => end = p,
                _ => break,
            }
        }
        map.get(b"/".as_slice())?
            .iter()
            .copied()
            .find(|&i| takes(&self.routes[i], host, path))
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

/// A configured route host as [`check_host`] leaves a request's: lower case, no trailing dot.
pub fn normalize_route_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::check_host;

    fn route(name: &str, prefix: &str, host: Option<&str>, methods: &[&str]) -> RouteConfig {
        RouteConfig {
            host: host.map(str::to_string),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            auth: AuthMode::Public,
            ..RouteConfig::new(name, prefix, "app")
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

    /// The lookup by prefix answers exactly as the scan, on a table large enough to use it:
    /// nested prefixes, hosts, a case-sensitive route, the root, methods.
    #[test]
    fn the_prefix_index_answers_as_the_scan() {
        let mut configs = vec![route("root", "/", None, &[])];
        for i in 0..40 {
            configs.push(route(&format!("s{i}"), &format!("/s{i}"), None, &[]));
            configs.push(route(
                &format!("s{i}x"),
                &format!("/s{i}/X"),
                None,
                &["GET"],
            ));
            configs.push(route(
                &format!("h{i}"),
                &format!("/s{i}/x"),
                Some("admin.example"),
                &[],
            ));
        }
        let mut exact = route("exact", "/Files/Deep", None, &[]);
        exact.case_sensitive = true;
        configs.push(exact);
        configs.push(route("files", "/files", None, &[]));
        let indexed = Router::new(&configs, |_| 0);
        assert!(indexed.by_prefix.is_some());
        let mut scanned = indexed.clone();
        scanned.by_prefix = None;
        let hosts = [
            None,
            host("admin.example"),
            host("ADMIN.example"),
            host("other.example"),
        ];
        let paths = [
            "/",
            "/s1",
            "/s1/",
            "/S1/x",
            "/s1/x/y",
            "/s1/xy",
            "/s39/X/z",
            "/s40/x",
            "/files",
            "/Files/Deep/a",
            "/files/deep/a",
            "/FILES/DEEP",
            "/nope/s1/x",
            "/s10/x",
            "/s1x",
        ];
        for h in hosts {
            for p in paths {
                for m in [http::Method::GET, http::Method::POST] {
                    let a = indexed.find(h, p, &m).map(|(i, _)| i);
                    let b = scanned.find(h, p, &m).map(|(i, _)| i);
                    assert_eq!(a, b, "{h:?} {p} {m}");
                }
            }
        }
    }
}
