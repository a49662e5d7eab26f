//! The request pipeline: the only module that touches Pingora's `Session`.
//!
//! ```text
//!  request_filter ─ 1 target check ── 400 BAD_REQUEST
//!        │          2 route          ── 404 NOT_FOUND
//!        │          3 bearer token   ── 401 (or 302 to login for browser GETs on redirect routes)
//!  upstream_peer ── 5 round-robin over healthy backends ── 503 when none
//!  upstream_request_filter ─ 4 strip forgeable headers, inject X-User-*, X-Request-Id, X-Forwarded-*
//!  fail_to_connect ── retry idempotent requests on another backend
//!  fail_to_proxy ──── 502 / 504 as JSON, never naming a backend
//!  response_filter ── echo X-Request-Id; personal answers private (cache.rs); HTTP/2 stall deadline
//! ```
//! Every answer the gateway writes itself goes through `reply::write_json`: JSON,
//! `Content-Length`, `Cache-Control: no-store`.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | the shared state, the per-request context, and the `ProxyHttp` hooks in order |
//! | `admit.rs` | steps 1–3: admission, CSRF, the redirect to login, the gateway's own endpoints |
//! | `forward_auth.rs` | the same decision for a request an edge proxy describes (nginx, Traefik, Envoy) |
//! | `live.rs` | the configuration a request is served under, swapped whole on a reload |
//! | `reply.rs` | the gateway's own answers, log-safe values, cookie stripping, host, error mapping |
//! | `cache.rs` | what shared caches may keep of a forwarded answer (`private`, `Vary`) |

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use ipnet::IpNet;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::upstreams::peer::Peer;
use pingora::ErrorType;

use crate::api::{self, ApiReply, ApiRequest, Budget};
use crate::config::{AuthMode, OnUnauthenticated};
use crate::cookies;
use crate::error::{GatewayError, PublicError};
use crate::identity;
use crate::metrics::Metrics;
use crate::routes::{canonical_host, check_host, check_target, Miss, TargetError};
use crate::tokens::jwt::{AccessClaims, TokenError, Verifier};

mod admit;
mod cache;
mod forward_auth;
mod live;
mod reply;

pub use live::{Live, Shared};

pub use forward_auth::Paths as ForwardAuthPaths;
pub use reply::loggable;
use reply::{answer_error, classify, request_authority, strip_session_cookies, write_json};

/// Everything the pipeline needs, shared by all workers: the swappable configuration
/// ([`Live`], `live.rs`) and what does not change while the server runs.
pub struct Gateway {
    pub live: Arc<ArcSwap<Live>>,
    pub verifier: Arc<Verifier>,
    /// The application runtime, where the store and the Kakao client live.
    pub app: tokio::runtime::Handle,
    /// `server.trusted_proxies` (a restart changes it: the connection caps read it too).
    pub trusted_proxies: Vec<IpNet>,
    pub metrics: Arc<Metrics>,
    /// HTTP/2 streams open per client address (`server.h2_streams_per_ip`).
    pub h2_streams: Arc<crate::limits::PerAddress>,
    /// How long an HTTP/2 answer may wait for its first bytes to be accepted
    /// (`server.h2_stall_timeout_ms`).
    pub h2_stall: std::time::Duration,
}

impl Gateway {
    /// `authgate_rate_limited_total` and `authgate_auth_failures_total` for a refusal.
    fn count_refusal(&self, err: &GatewayError) {
        let kind = match err {
            GatewayError::Misdirected => Some("misdirected"),
            GatewayError::TooManyStreams => Some("h2_streams_per_ip"),
            _ => None,
        };
        if let Some(kind) = kind {
            self.metrics.client_errors.with_label_values(&[kind]).inc();
        }
        if let GatewayError::RateLimited(exceeded) = err {
            self.metrics
                .rate_limited
                .with_label_values(&[exceeded.scope.label()])
                .inc();
        }
        if let Some(reason) = err.auth_failure_reason() {
            self.metrics
                .auth_failures
                .with_label_values(&[reason])
                .inc();
        }
    }

    /// The rate limit a decision spends, proxied or asked by forward-auth: on its route, a
    /// verified user's budget per `sub`, anyone else's per client IP (anonymous, a refused token,
    /// the wrong method, a CSRF refusal); refused before any route (malformed, unknown, from an
    /// untrusted peer), the unrouted budget per IP.
    fn spend(
        &self,
        live: &Live,
        decided: std::result::Result<(), &GatewayError>,
        ctx: &RequestCtx,
        key: IpAddr,
    ) -> std::result::Result<(), crate::limits::Exceeded> {
        match (decided, ctx.route) {
            (Ok(()), Some(route)) => match &ctx.claims {
                Some(c) => live.limits.check_user(route, &c.sub),
                None => live.limits.check_ip(route, key),
            },
            (
                Err(
                    GatewayError::Token(_)
                    | GatewayError::MethodNotAllowed(_)
                    | GatewayError::CsrfRejected,
                ),
                Some(route),
            ) => live.limits.check_ip(route, key),
            (
                Err(
                    GatewayError::UntrustedPeer
                    | GatewayError::BadRequest(_)
                    | GatewayError::BadTarget(_)
                    | GatewayError::NoRoute,
                ),
                _,
            ) => live.limits.check_unrouted(key),
            _ => Ok(()),
        }
    }

    /// The signed identity assertion for this request's route and verified user, when the
    /// route asks for one.
    fn assertion(&self, live: &Live, ctx: &RequestCtx) -> Option<http::HeaderValue> {
        let (claims, assertions) = (ctx.claims.as_ref()?, live.assertions.as_ref()?);
        let route = &live.router.routes()[ctx.route?];
        if !route.assertion.unwrap_or(live.assertion_default) {
            return None;
        }
        let upstream = route.upstream_index;
        Some(assertions.get(claims, upstream, &live.upstreams[upstream].name))
    }

    /// The upstream request's headers: what is removed and what is added
    /// (`upstream_request_filter`).
    fn rewrite_request(
        &self,
        parts: &mut http::request::Parts,
        live: &Live,
        ctx: &RequestCtx,
        trusted: bool,
        proto: &'static str,
    ) {
        let h = &mut parts.headers;
        // One pass over the client's header names: forgeable identity headers go, and so does
        // every header the gateway sets itself in any spelling, so each of ours is then a plain
        // append that cannot duplicate a client's copy. From anyone but a trusted proxy every
        // forwarding header goes (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`, `Front-End-Https`,
        // ...: `identity::FORWARDING_HEADERS`); a trusted proxy's stay, unless spelled with `_`
        // (which no proxy writes, and a client behind it could).
        let gone: Vec<http::HeaderName> = h
            .keys()
            .filter(|n| {
                let n = n.as_str();
                identity::is_set_by_us(n)
                    || live.headers.is_forgeable(n)
                    || ((!trusted || n.contains('_')) && identity::is_forwarding_header(n))
            })
            .cloned()
            .collect();
        for name in &gone {
            h.remove(name);
        }
        // Values are the claims' prebuilt header values, names prebuilt too: nothing is copied.
        let names = &live.headers.wire;
        if let Some(c) = &ctx.claims {
            let v = &c.header_values;
            h.append(names.user_id.clone(), v.sub.clone());
            for (name, value) in [
                (&names.email, &v.email),
                (&names.nickname, &v.nickname),
                (&names.provider, &v.provider),
            ] {
                if let Some(value) = value {
                    h.append(name.clone(), value.clone());
                }
            }
        }
        if let Some(value) = self.assertion(live, ctx) {
            h.append(names.assertion.clone(), value);
        }
        if let Some(id) = &ctx.request_id {
            h.append(X_REQUEST_ID.clone(), id.clone());
        }
        if ctx.close_upstream {
            // Pingora then gives the connection back to no pool.
            h.insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        strip_session_cookies(h);
        if let Some(xff) = ctx.forwarded_for.clone() {
            h.append(X_FORWARDED_FOR.clone(), xff);
        }
        h.append(
            X_FORWARDED_PROTO.clone(),
            http::HeaderValue::from_static(proto),
        );
        // An HTTP/2 request names its host in `:authority` only: for an HTTP/2 upstream Pingora
        // builds the upstream's `:authority` from `Host` when there is one, so it is set here.
        let host = match h.get(http::header::HOST) {
            Some(v) => Some(v.clone()),
            None => parts
                .uri
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok()),
        };
        if let Some(host) = host {
            // The host is forwarded as it was routed (as the path is).
            let host = match canonical_host(host.as_bytes()) {
                Some(c) => http::HeaderValue::from_bytes(&c).expect("a checked host"),
                None => host,
            };
            let h = &mut parts.headers;
            if h.get(http::header::HOST) != Some(&host) {
                h.insert(http::header::HOST, host.clone());
            }
            h.append(X_FORWARDED_HOST.clone(), host);
        }
    }
}

// Header names used on every request, parsed once.
const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: http::HeaderName = http::HeaderName::from_static("x-forwarded-host");

/// How long writing to a client may stall before the connection is dropped.
const CLIENT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What `request_filter` decided.
enum Step {
    Proxy,
    /// One of the gateway's own endpoints.
    Api(crate::api::ApiRoute),
    /// An edge proxy asks whether a request may pass (`forward_auth.rs`).
    ForwardAuth(forward_auth::Mode),
}

/// Per-request state carried between the hooks.
#[derive(Default)]
pub struct RequestCtx {
    /// The configuration this request is served under, from start to end.
    live: Option<Arc<Live>>,
    /// Index into `live.router.routes()`.
    route: Option<usize>,
    /// Set only after the token verified.
    claims: Option<Arc<AccessClaims>>,
    /// The client's `X-Request-Id` when acceptable, else a fresh one; set first thing.
    request_id: Option<http::HeaderValue>,
    /// An error chosen by our own hooks, so `fail_to_proxy` answers it rather than guessing
    /// from Pingora's error type.
    failure: Option<GatewayError>,
    /// Backends whose connect failed for this request, so a retry goes elsewhere.
    tried: Vec<SocketAddr>,
    /// `Set-Cookie` values for the client after a transparent refresh.
    set_cookies: Vec<String>,
    started: Option<Instant>,
    /// The socket peer, and whether it is a trusted proxy: looked up once per request.
    peer: Option<IpAddr>,
    peer_trusted: bool,
    /// The client reached us over https (our TLS listener, or a trusted proxy said so): cookie
    /// names, `Secure`, `X-Forwarded-Proto`.
    secure: bool,
    /// From the socket peer and trusted proxies only (`identity::client`).
    client_ip: Option<IpAddr>,
    /// The `X-Forwarded-For` to send upstream (`identity::client`).
    forwarded_for: Option<http::HeaderValue>,
    /// When the first backend was chosen, for `authgate_upstream_duration_seconds`.
    upstream_started: Option<Instant>,
    /// Answered by the gateway's own auth endpoints.
    is_api: bool,
    /// Forward-auth: the method and target the edge described (for the login redirect).
    described: Option<(http::Method, Vec<u8>)>,
    /// The request carries content and its upstream connection must not be reused.
    close_upstream: bool,
    /// Over HTTP/2: this stream's place among its address's open streams.
    h2: bool,
    h2_stream: Option<crate::limits::Place>,
}

impl RequestCtx {
    fn live(&self) -> Arc<Live> {
        self.live.clone().expect("new_ctx sets it")
    }

    fn request_id(&self) -> &str {
        self.request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Whether the client's request has content: a non-zero `Content-Length` or a
/// `Transfer-Encoding` over HTTP/1.1, DATA frames over HTTP/2.
fn carries_content(session: &Session) -> bool {
    if let Some(h2) = session.as_http2() {
        return !h2.is_body_empty();
    }
    let h = &session.req_header().headers;
    h.contains_key(http::header::TRANSFER_ENCODING)
        || h.get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes().iter().any(|&d| d != b'0'))
}

/// Edits a request head as a plain `http::HeaderMap`, always putting it back: through Pingora's
/// `RequestHeader` every added header cost ~1,400 instructions (the name parsed again, kept twice
/// in a case map and the value map, both grown). Only the client's header-name case is lost;
/// the target survives because only origin-form printable ASCII reaches here
/// (`routes::check_target`), which `From<Parts>` keeps byte for byte.
fn edit_request(up: &mut RequestHeader, f: impl FnOnce(&mut http::request::Parts)) {
    let end_stream = up.send_end_stream().unwrap_or(true);
    let blank = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts: http::request::Parts = std::mem::replace(up, blank).into();
    debug_assert!(parts
        .uri
        .path_and_query()
        .is_some_and(|p| p.as_str().starts_with('/')));
    parts.headers.reserve(12);
    f(&mut parts);
    *up = RequestHeader::from(parts);
    up.set_send_end_stream(end_stream);
}

/// The same for an answer: the upstream's header-name case and reason phrase are lost.
fn edit_response(resp: &mut ResponseHeader, f: impl FnOnce(&mut http::response::Parts)) {
    let blank = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts: http::response::Parts = std::mem::replace(resp, blank).into();
    f(&mut parts);
    *resp = ResponseHeader::from(parts);
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    /// Pingora's default adds a disabled response-compression module, which still runs on every
    /// request; the gateway never compresses, so it adds none.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> RequestCtx {
        self.metrics.in_flight.inc();
        RequestCtx {
            live: Some(self.live.load_full()),
            started: Some(Instant::now()),
            ..RequestCtx::default()
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // A client that stops reading its answer would hold its connection (and a backend's)
        // for ever: Pingora sets no write timeout of its own.
        session.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
        let mut ids = session.req_header().headers.get_all(&X_REQUEST_ID).iter();
        ctx.request_id = Some(match (ids.next(), ids.next()) {
            (Some(v), None) if identity::is_acceptable_request_id(v.as_bytes()) => v.clone(),
            _ => identity::new_request_id(),
        });
        ctx.peer = Self::peer_ip(session);
        let peer = ctx.peer.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        ctx.peer_trusted = ctx.peer.is_some() && identity::is_trusted(peer, &self.trusted_proxies);
        // Only a trusted proxy's X-Forwarded-For is read at all.
        let xff = session.req_header().headers.get_all(&X_FORWARDED_FOR);
        let Some(client) = identity::client(
            peer,
            ctx.peer_trusted,
            xff.iter().map(|v| v.as_bytes()),
            &self.trusted_proxies,
        ) else {
            ctx.client_ip = ctx.peer;
            let err = GatewayError::BadRequest(
                "a trusted proxy's X-Forwarded-For names no client".into(),
            );
            tracing::debug!(request_id = %ctx.request_id(), error = %err, "refused");
            answer_error(session, ctx, &err).await?;
            return Ok(true);
        };
        let client_ip = client.ip;
        ctx.client_ip = Some(client_ip);
        ctx.forwarded_for = Some(client.forwarded_for);
        // Over TLS on our own listener the client is on https whoever it is; otherwise the
        // scheme the nearest trusted proxy reports: the last value of the last header (one
        // further left came from further away, possibly from the client itself).
        ctx.secure = session.digest().is_some_and(|d| d.ssl_digest.is_some())
            || ctx.peer_trusted
                && session
                    .req_header()
                    .headers
                    .get_all(&X_FORWARDED_PROTO)
                    .iter()
                    .next_back()
                    .and_then(|v| v.as_bytes().rsplit(|&b| b == b',').next())
                    .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"https"));
        let key = identity::rate_key(client_ip);
        // HTTP/2: streams open at once from the peer's address, over all its connections.
        if session.as_http2().is_some() {
            ctx.h2 = true;
            if let (Some(peer), false) = (ctx.peer, ctx.peer_trusted) {
                match self.h2_streams.acquire(identity::rate_key(peer)) {
                    Some(permit) => ctx.h2_stream = Some(permit),
                    None => {
                        let err = GatewayError::TooManyStreams;
                        self.count_refusal(&err);
                        tracing::debug!(request_id = %ctx.request_id(), error = %err, "refused");
                        answer_error(session, ctx, &err).await?;
                        return Ok(true);
                    }
                }
            }
        }
        let live = ctx.live();
        let admitted = self.admit(session, ctx, key, &live).await;
        // Limits: the auth endpoints per IP, each with its budget (`api::Budget`); a verified
        // user per `sub`; everyone else per IP: anonymous requests, refused tokens (whatever
        // `sub` they claim) and requests refused as malformed, unknown or of the wrong method.
        let limited = match &admitted {
            Ok(Step::Api(route)) => match route.budget() {
                Budget::None => Ok(()),
                Budget::Login => live.limits.check_auth(key),
                Budget::Session => live.limits.check_session(key),
                Budget::Webhook => live.limits.check_webhook(key),
            },
            // Answered below with the limits of the route it asks about.
            Ok(Step::ForwardAuth(_)) => Ok(()),
            Ok(Step::Proxy) => self.spend(&live, Ok(()), ctx, key),
            Err(e) => self.spend(&live, Err(e), ctx, key),
        };
        let err = match (admitted, limited) {
            (_, Err(exceeded)) => GatewayError::RateLimited(exceeded),
            (Ok(Step::Proxy), Ok(())) => return Ok(false),
            (Ok(Step::Api(route)), Ok(())) => {
                ctx.is_api = true;
                self.serve_api(session, ctx, &live, route).await?;
                return Ok(true);
            }
            (Ok(Step::ForwardAuth(mode)), Ok(())) => {
                self.forward_auth(session, ctx, mode, key, &live).await?;
                return Ok(true);
            }
            (Err(err), Ok(())) => err,
        };
        self.count_refusal(&err);
        tracing::debug!(request_id = %ctx.request_id(), error = %err, "refused");
        let req = session.req_header();
        if matches!(err, GatewayError::Token(_))
            && self.wants_redirect(&live, &req.method, &req.headers, ctx)
        {
            let location = self.login_location(&live, req.raw_path());
            write_json(
                session,
                ctx,
                302,
                b"{}".to_vec(),
                &[("location", &location)],
            )
            .await?;
            return Ok(true);
        }
        answer_error(session, ctx, &err).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let live = ctx.live.as_deref().expect("new_ctx sets it");
        let route = &live.router.routes()[ctx.route.expect("request_filter routed")];
        let upstream = &live.upstreams[route.upstream_index];
        ctx.upstream_started.get_or_insert_with(Instant::now);
        match upstream.select(&ctx.tried) {
            Some(peer) => Ok(Box::new(peer)),
            None => {
                let err = if ctx.tried.is_empty() {
                    GatewayError::NoHealthyBackend(upstream.name.clone())
                } else {
                    GatewayError::UpstreamFailed(format!(
                        "every backend of {} refused",
                        upstream.name
                    ))
                };
                let status = err.public().status;
                ctx.failure = Some(err);
                Err(Error::explain(
                    ErrorType::HTTPStatus(status),
                    "no backend to try",
                ))
            }
        }
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(addr) = peer.address().as_inet() {
            ctx.tried.push(*addr);
        }
        let live = ctx.live.as_deref().expect("new_ctx sets it");
        let route = &live.router.routes()[ctx.route.expect("routed")];
        let more = ctx.tried.len() < live.upstreams[route.upstream_index].backend_count();
        // A request that was never sent is safe to resend, but only idempotent methods are
        // retried so a half-understood failure never doubles a write.
        e.set_retry(more && session.req_header().method.is_idempotent());
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let live = ctx.live.as_deref().expect("new_ctx sets it");
        let trusted = ctx.peer_trusted;
        // A request that carries content ends its upstream connection: an upstream that never
        // reads a body (Python's http.server for most methods, a handler that ignores it) would
        // take the body as the next request on a pooled connection, with identity headers we
        // never checked, or as the start of another user's. HTTP/2 upstreams frame every body.
        ctx.close_upstream = ctx.route.is_some_and(|r| {
            let u = &live.upstreams[live.router.routes()[r].upstream_index].config;
            !u.reuse_after_body && !u.h2
        }) && carries_content(session);
        // `X-Forwarded-Proto` is `https` only when a trusted proxy said so (`ctx.secure`).
        let proto = if ctx.secure { "https" } else { "http" };
        // The request goes upstream without the client's header-name case: edited as Pingora's
        // `RequestHeader` every added header cost ~1,400 instructions (the name parsed again,
        // kept twice in a case map and the value map, both grown), as a plain `http::HeaderMap`
        // with room reserved it is an append. The target is unchanged (origin-form printable
        // ASCII, `routes::check_target`), so nothing else is lost in the conversion.
        edit_request(up, |parts| {
            self.rewrite_request(parts, live, ctx, trusted, proto)
        });
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (id, set_cookies) = (ctx.request_id.clone(), std::mem::take(&mut ctx.set_cookies));
        let live = ctx.live.clone().expect("new_ctx sets it");
        // What shared caches may keep (`cache.rs`): an authenticated answer is private unless
        // its route says otherwise; an optional route's answers vary on the credentials.
        let (private, vary) = match ctx.route.map(|i| &live.router.routes()[i]) {
            Some(r) => (
                ctx.claims.is_some() && !r.shared_cache,
                r.auth == AuthMode::Optional,
            ),
            None => (false, false),
        };
        edit_response(resp, |parts| {
            let h = &mut parts.headers;
            if let Some(id) = id {
                h.insert(X_REQUEST_ID.clone(), id);
            }
            if private {
                cache::make_private(h);
            }
            if vary {
                cache::vary_on_credentials(h);
            }
            if set_cookies.is_empty() {
                return;
            }
            // Browsers ignore cookies on informational answers (100 Continue, 103 Early Hints):
            // a rotation waits for the final one (or the 101 of an upgrade), and is never cached.
            if parts.status.is_informational()
                && parts.status != http::StatusCode::SWITCHING_PROTOCOLS
            {
                ctx.set_cookies = set_cookies;
                return;
            }
            for c in set_cookies {
                match http::HeaderValue::try_from(c) {
                    Ok(v) => {
                        h.append(http::header::SET_COOKIE, v);
                    }
                    // Never expected (`cookies::set_cookie` builds them), and a lost rotation
                    // signs the user out: said loudly.
                    Err(e) => tracing::error!(error = %e, "a rotated cookie is not a header value"),
                }
            }
            h.insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("private, no-store"),
            );
        });
        // An HTTP/2 client that stops accepting an answer (a window it never opens, or stops
        // updating) holds the answer's buffers: each write may wait only the stall deadline,
        // not the usual minute. A client reading, however slowly, keeps its stream.
        if ctx.h2 {
            session.set_write_timeout(Some(self.h2_stall));
        }
        if let (Some(started), Some(route)) = (ctx.upstream_started, ctx.route) {
            let upstream = live.router.routes()[route].upstream_index;
            live.durations.upstreams[upstream].observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Metrics and the access record; Pingora calls this once per request, however it ended.
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        self.metrics.in_flight.dec();
        let live = ctx.live.as_deref().expect("new_ctx sets it");
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let route = match (ctx.is_api, ctx.route) {
            (true, _) => "auth",
            (false, Some(i)) => live.router.routes()[i].name.as_str(),
            (false, None) => "unmatched",
        };
        let req = session.req_header();
        let elapsed = ctx.started.map(|s| s.elapsed()).unwrap_or_default();
        let counters = &live.durations.requests;
        let slot = match (ctx.is_api, ctx.route) {
            (true, _) => counters.auth_slot(),
            (false, Some(i)) => i,
            (false, None) => counters.unmatched_slot(),
        };
        counters.inc(slot, &req.method, status);
        let duration = match (ctx.is_api, ctx.route) {
            (true, _) => &live.durations.auth,
            (false, Some(i)) => &live.durations.routes[i],
            (false, None) => &live.durations.unmatched,
        };
        duration.observe(elapsed.as_secs_f64());
        let raw = req.raw_path();
        let path = &raw[..raw.iter().position(|&b| b == b'?').unwrap_or(raw.len())];
        let upstream = match (ctx.is_api, ctx.route) {
            (false, Some(i)) if ctx.upstream_started.is_some() => live.upstreams
                [live.router.routes()[i].upstream_index]
                .name
                .as_str(),
            _ => "",
        };
        tracing::info!(
            target: "authgate::access",
            request_id = %ctx.request_id(),
            client_ip = %ctx.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            method = %crate::metrics::method_label(&req.method),
            path = %loggable(path),
            route,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            upstream,
            user_id = %ctx.claims.as_ref().map(|c| loggable(c.sub.as_bytes())).unwrap_or_default(),
        );
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let err = ctx.failure.take().unwrap_or_else(|| classify(e));
        match &err {
            // The client's doing: counted, and logged only at debug so nobody can fill the log.
            GatewayError::ClientGone
            | GatewayError::BadRequest(_)
            | GatewayError::RequestTimeout => {
                let kind = match err {
                    GatewayError::ClientGone => "disconnected",
                    GatewayError::RequestTimeout => "body_timeout",
                    _ => "malformed",
                };
                self.metrics.client_errors.with_label_values(&[kind]).inc();
                tracing::debug!(request_id = %ctx.request_id(), error = %err, cause = %e, "client error");
            }
            _ => {
                tracing::warn!(request_id = %ctx.request_id(), error = %err, cause = %e, "proxy failure")
            }
        }
        // Nothing can be written to a client that is gone, nor after a response has started.
        let code = match err {
            GatewayError::ClientGone => 0,
            _ if session.response_written().is_some() => 0,
            _ => match answer_error(session, ctx, &err).await {
                Ok(p) => p.status,
                Err(_) => 0,
            },
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// `fail_to_proxy` logs every failure itself (client errors at debug only); Pingora's own
    /// ERROR line per failure would let any client write to the log at will.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        true
    }
}
