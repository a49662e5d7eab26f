//! `[[upstreams]]` and `[[routes]]`: backends, and which requests go where under which rules.

use std::net::SocketAddr;
use std::path::Path;

use super::auth::{read_route_limit, Limit};
use super::reader::Sec;
use super::tls::{read_upstream_tls, UpstreamTls};
use super::Problem;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub name: String,
    pub addrs: Vec<SocketAddr>,
    /// `None` = TCP connect check.
    pub health_check_path: Option<String>,
    pub health_check_interval_ms: u64,
    pub connect_timeout_ms: u64,
    pub read_timeout_ms: u64,
    /// Each address's host as written (`api.internal` of `api.internal:443`): the default TLS
    /// name of that backend.
    pub hosts: Vec<String>,
    /// `tls = true`: HTTPS to every backend.
    pub tls: Option<UpstreamTls>,
    /// Offer HTTP/2 by ALPN (with `tls`); HTTP/1.1 when the upstream does not take it.
    pub h2: bool,
    /// Keep an HTTP/1.1 connection for the next request after one that carried content. Off
    /// by default: an upstream that never reads a request's body (Python's http.server for
    /// most methods, a handler that ignores it) would take that body as the next request,
    /// with headers the gateway never checked.
    pub reuse_after_body: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    Public,
    Optional,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnauthenticated {
    Status401,
    Redirect,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub path_prefix: String,
    /// Lower-case host without port; `None` matches any host.
    pub host: Option<String>,
    /// Upper-case method names; empty = any method.
    pub methods: Vec<String>,
    /// Match `path_prefix` byte for byte instead of ignoring ASCII case (only for upstreams
    /// known to route case-sensitively).
    pub case_sensitive: bool,
    pub upstream: String,
    pub auth: AuthMode,
    pub on_unauthenticated: OnUnauthenticated,
    /// Overrides the `[rate_limit]` default for this route's scope.
    pub rate_limit: Option<Limit>,
    /// Overrides `identity.assertion` for this route.
    pub assertion: Option<bool>,
    /// Answers to authenticated requests keep the upstream's `Cache-Control` (deliberately
    /// cacheable by shared caches) instead of being made `private`.
    pub shared_cache: bool,
    /// `DELETE` and `OPTIONS` requests with content are forwarded on this route (upper case);
    /// elsewhere they are refused, since an upstream that does not read their body would take
    /// it as another request.
    pub allow_body_on: Vec<String>,
}

pub(super) fn read_upstream(s: &Sec<'_>, base: &Path, p: &mut Vec<Problem>) -> UpstreamConfig {
    s.only_keys(
        &[
            "name",
            "addrs",
            "health_check_path",
            "health_check_interval_ms",
            "connect_timeout_ms",
            "read_timeout_ms",
            "tls",
            "sni",
            "ca_file",
            "client_cert_file",
            "client_key_file",
            "verify",
            "h2",
            "reuse_after_body",
        ],
        p,
    );
    let name = s.nonempty_string("name", "", p);
    let (addrs, hosts): (Vec<SocketAddr>, Vec<String>) = s
        .strings("addrs", &[], p)
        .into_iter()
        .filter_map(|a| {
            resolve_addr(&a)
                .map(|addr| (addr, host_of(&a)))
                .map_err(|fix| p.push(s.problem("addrs", format!("{a:?}"), fix)))
                .ok()
        })
        .unzip();
    if addrs.is_empty()
        && s.t
            .get("addrs")
            .is_some_and(|v| v.as_array().is_some_and(|a| a.is_empty()))
    {
        p.push(s.problem("addrs", "[]", "list at least one backend as \"host:port\""));
    } else if !s.t.contains_key("addrs") {
        p.push(s.problem(
            "addrs",
            "(missing)",
            "list at least one backend as \"host:port\"",
        ));
    }
    let health_check_path = s.string("health_check_path", "", p);
    if !health_check_path.is_empty() && !health_check_path.starts_with('/') {
        p.push(s.problem(
            "health_check_path",
            format!("{health_check_path:?}"),
            "use an absolute path such as \"/healthz\", or \"\" for a TCP check",
        ));
    }
    let tls = read_upstream_tls(s, base, p);
    if tls.as_ref().is_some_and(|t| t.sni.is_none() && t.verify)
        && !health_check_path.is_empty()
        && hosts.iter().any(|h| h != &hosts[0])
    {
        p.push(s.problem(
            "sni",
            "(unset, with addresses of different hosts)",
            "the HTTPS health check names one host for every backend: set sni to the name all their certificates carry, or split the upstream",
        ));
    }
    UpstreamConfig {
        name,
        addrs,
        health_check_path: (!health_check_path.is_empty()).then_some(health_check_path),
        health_check_interval_ms: s.int("health_check_interval_ms", 2000, 100, 3_600_000, p),
        connect_timeout_ms: s.int("connect_timeout_ms", 1000, 1, 600_000, p),
        read_timeout_ms: s.int("read_timeout_ms", 30_000, 1, 3_600_000, p),
        hosts,
        h2: {
            let h2 = s.bool("h2", false, p);
            if h2 && tls.is_none() {
                p.push(s.problem(
                    "h2",
                    "true without tls = true",
                    "HTTP/2 to an upstream is negotiated by TLS ALPN: set tls = true as well",
                ));
            }
            h2
        },
        reuse_after_body: s.bool("reuse_after_body", false, p),
        tls,
    }
}

/// The host of `host:port` (`[v6]:port` without its brackets), lower-case.
fn host_of(addr: &str) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// Resolves once at start-up: Pingora's peers must not resolve DNS on the request path.
pub(super) fn resolve_addr(a: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = a.parse::<SocketAddr>() {
        return Ok(addr);
    }
    match a.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| format!("{a} resolves to no address")),
        Err(e) => Err(format!("must be \"host:port\" that resolves ({e})")),
    }
}

impl RouteConfig {
    /// A route with every optional key at its default (`auth = "required"`, any host and
    /// method): for building tables in code (tests, benchmarks).
    pub fn new(name: &str, path_prefix: &str, upstream: &str) -> RouteConfig {
        RouteConfig {
            name: name.into(),
            path_prefix: path_prefix.into(),
            host: None,
            methods: Vec::new(),
            case_sensitive: false,
            upstream: upstream.into(),
            auth: AuthMode::Required,
            on_unauthenticated: OnUnauthenticated::Status401,
            rate_limit: None,
            assertion: None,
            shared_cache: false,
            allow_body_on: Vec::new(),
        }
    }
}

pub(super) fn read_route(s: &Sec<'_>, p: &mut Vec<Problem>) -> RouteConfig {
    s.only_keys(
        &[
            "name",
            "path_prefix",
            "host",
            "methods",
            "case_sensitive",
            "upstream",
            "auth",
            "on_unauthenticated",
            "rate_limit",
            "assertion",
            "shared_cache",
            "allow_body_on",
        ],
        p,
    );
    let name = s.nonempty_string("name", "", p);
    let path_prefix = s.string("path_prefix", "/", p);
    if !is_valid_prefix(&path_prefix) {
        p.push(s.problem(
            "path_prefix",
            format!("{path_prefix:?}"),
            "must start with '/', have no trailing '/' (except \"/\" itself), no empty, '.' or '..' segments, \
             and only letters, digits and - . _ ~ ! $ & ' ( ) * + , = : @",
        ));
    }
    let host = crate::routes::normalize_route_host(&s.string("host", "", p));
    if !host.is_empty()
        && (host.contains(':') || crate::routes::check_host(host.as_bytes()).is_err())
    {
        p.push(s.problem(
            "host",
            format!("{host:?}"),
            "use a bare host name without scheme or port, or \"\"",
        ));
    }
    let methods: Vec<String> = s
        .strings("methods", &[], p)
        .into_iter()
        .map(|m| {
            let up = m.to_ascii_uppercase();
            if http::Method::from_bytes(up.as_bytes()).is_err() {
                p.push(s.problem(
                    "methods",
                    format!("{m:?}"),
                    "use HTTP method names such as \"GET\"",
                ));
            }
            up
        })
        .collect();
    let case_sensitive = s.bool("case_sensitive", false, p);
    let upstream = s.nonempty_string("upstream", "", p);
    let auth = match s.string("auth", "required", p).as_str() {
        "required" => AuthMode::Required,
        "public" => AuthMode::Public,
        "optional" => AuthMode::Optional,
        other => {
            p.push(s.problem(
                "auth",
                format!("{other:?}"),
                "use \"required\", \"public\" or \"optional\"",
            ));
            AuthMode::Required
        }
    };
    let on_unauthenticated = match s.string("on_unauthenticated", "401", p).as_str() {
        "401" => OnUnauthenticated::Status401,
        "redirect" => OnUnauthenticated::Redirect,
        other => {
            p.push(s.problem(
                "on_unauthenticated",
                format!("{other:?}"),
                "use \"401\" or \"redirect\"",
            ));
            OnUnauthenticated::Status401
        }
    };
    RouteConfig {
        name,
        path_prefix,
        host: (!host.is_empty()).then_some(host),
        methods,
        case_sensitive,
        upstream,
        auth,
        on_unauthenticated,
        rate_limit: s
            .t
            .contains_key("rate_limit")
            .then(|| read_route_limit(&s.table("rate_limit", p), p)),
        assertion: s
            .t
            .contains_key("assertion")
            .then(|| s.bool("assertion", false, p)),
        shared_cache: s.bool("shared_cache", false, p),
        allow_body_on: s
            .strings("allow_body_on", &[], p)
            .into_iter()
            .filter_map(|m| {
                let upper = m.to_ascii_uppercase();
                if matches!(upper.as_str(), "DELETE" | "OPTIONS") {
                    Some(upper)
                } else {
                    p.push(s.problem(
                        "allow_body_on",
                        format!("{m:?}"),
                        "only \"DELETE\" and \"OPTIONS\": GET, HEAD and TRACE never carry content, other methods always may",
                    ));
                    None
                }
            })
            .collect(),
    }
}

/// A prefix uses only characters that can never be percent-encoded in an accepted request path,
/// so matching the raw path against it is exact (see `routes::check_target`).
pub fn is_valid_prefix(prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    prefix.starts_with('/')
        && !prefix.ends_with('/')
        && prefix[1..]
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && prefix
            .bytes()
            .all(|b| b == b'/' || crate::routes::is_plain_path_byte(b))
}
