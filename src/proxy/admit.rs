//! Steps 1–3 of the pipeline and the answers they lead to: the target, the route, the token or
//! the session cookies (with a transparent refresh), rate limits, CSRF for cookie-authenticated
//! writes, the redirect to login, and the gateway's own endpoints.
//!
//! [`Gateway::decide`] judges a request by its parts ([`Original`]), so a request on the socket
//! and one an edge proxy describes to forward-auth (`forward_auth.rs`) get the same decision.

use super::*;
use crate::tls::listener::ServedNames;

/// A WebSocket (or other protocol) upgrade: `Upgrade`, or the WebSocket handshake's own headers,
/// which reach a forward-auth question where the hop-by-hop `Upgrade` does not.
fn is_upgrade(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::UPGRADE)
        || headers.contains_key(http::header::SEC_WEBSOCKET_KEY)
        || headers.contains_key(http::header::SEC_WEBSOCKET_VERSION)
}

/// What the HTTP/1.1 head scan refuses, for a request that arrived over HTTP/2: the underscore
/// spellings of `Content-Length` and `Transfer-Encoding` (which some HTTP/1.1 upstreams read as
/// the real ones, while the h2 library checks only the real ones), and more header fields than
/// an HTTP/1.1 head may hold.
fn check_h2_fields(headers: &http::HeaderMap) -> Result<(), GatewayError> {
    // As many as an HTTP/1.1 head may hold (`connections::head::MAX_HEADERS`, Pingora's limit).
    if headers.len() > 256 {
        return Err(GatewayError::BadRequest("too many header fields".into()));
    }
    if headers.contains_key("content_length") || headers.contains_key("transfer_encoding") {
        return Err(GatewayError::BadRequest(
            "Content_Length / Transfer_Encoding: ambiguous framing".into(),
        ));
    }
    Ok(())
}

/// The request a decision is about: the one on the socket, or the one an edge proxy describes.
pub(super) struct Original<'a> {
    pub method: &'a http::Method,
    /// From [`check_target`]: the path, without the query.
    pub path: &'a str,
    /// From [`check_host`]: the host name as routes compare it.
    pub host: &'a [u8],
    /// The host as the browser wrote it (with its port): what its `Origin` must equal.
    pub authority: &'a [u8],
    /// The request's own headers: `Authorization`, cookies, `Origin`, `Sec-Fetch-Site`, `Accept`.
    pub headers: &'a http::HeaderMap,
}

impl Gateway {
    pub(super) fn peer_ip(session: &Session) -> Option<IpAddr> {
        session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
    }

    /// Steps 1–3; `Err` is answered by the caller. `key` is the client's rate-limit key: a
    /// client whose anonymous budget ran out is refused before any signature check or refresh.
    pub(super) async fn admit(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        key: IpAddr,
        live: &Live,
    ) -> Result<Step, GatewayError> {
        let req = session.req_header();
        // Pingora drops a `#fragment` before it stores the target, so look at the raw request line.
        if let Some(h1) = session.as_http1() {
            let raw = h1.get_headers_raw_bytes();
            let line_end = raw.iter().position(|&b| b == b'\n').unwrap_or(raw.len());
            if raw[..line_end].contains(&b'#') {
                return Err(crate::routes::TargetError::Fragment.into());
            }
        } else {
            // HTTP/2: the connection layer's head scan (`connections::head`) never sees these
            // requests, so what it refuses in an HTTP/1.1 head is refused here.
            check_h2_fields(&req.headers)?;
            // Content on GET or HEAD: a HEADERS frame without END_STREAM, or a non-zero
            // content-length. An HTTP/1.1 upstream would get it framed, and one that never reads
            // such a body would take it as the next request.
            let m = req.method.as_str();
            if ["GET", "HEAD", "TRACE"]
                .iter()
                .any(|b| m.eq_ignore_ascii_case(b))
                && session.as_http2().is_some_and(|h2| !h2.is_body_empty())
            {
                return Err(GatewayError::BadRequest(
                    "content on a GET or HEAD request".into(),
                ));
            }
        }
        let path = check_target(req.raw_path())?;
        let authority = request_authority(req)?;
        let host = check_host(authority)?;
        // Over our TLS listener, only hosts the connection's certificate covers: a client that
        // asked SNI for one site must not reach another site's routes on the same connection
        // (nginx and Envoy answer so too). HTTP/1.1 and HTTP/2 alike.
        if let Some(served) = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|d| d.extension.get::<ServedNames>())
        {
            if !served.covers(host) {
                return Err(GatewayError::Misdirected);
            }
        }
        if let Some(mode) = self.forward_auth_mode(live, path) {
            return Ok(Step::ForwardAuth(mode));
        }
        if live.api.owns(path) {
            return Ok(Step::Api(live.api.parse(path)));
        }
        let original = Original {
            method: &req.method,
            path,
            host,
            authority,
            headers: &req.headers,
        };
        let method = original.method.clone();
        self.decide(&original, ctx, key, live).await?;
        // Content on DELETE or OPTIONS only where the route says so: an upstream that does not
        // read such a body would run it as another request, with headers we never checked.
        if let Some(route) = ctx.route.map(|i| &live.router.routes()[i]) {
            // Any case: an upstream that folds method names reads `delete` as DELETE.
            let m = method.as_str();
            let allowed = if m.eq_ignore_ascii_case("DELETE") {
                route.body_on_delete
            } else if m.eq_ignore_ascii_case("OPTIONS") {
                route.body_on_options
            } else {
                true
            };
            if !allowed && super::carries_content(session) {
                return Err(GatewayError::BadRequest(format!(
                    "content on {method} is not forwarded on route {:?} (routes[].allow_body_on)",
                    route.name
                )));
            }
        }
        Ok(Step::Proxy)
    }

    /// Steps 2–3 for a request whose target and host passed their checks: the route, then the
    /// token or session cookies. Sets `ctx.route` and, once verified, `ctx.claims`.
    pub(super) async fn decide(
        &self,
        req: &Original<'_>,
        ctx: &mut RequestCtx,
        key: IpAddr,
        live: &Live,
    ) -> Result<(), GatewayError> {
        let (index, route) = match live.router.find(Some(req.host), req.path, req.method) {
            Ok(found) => found,
            Err(Miss::NotFound) => return Err(GatewayError::NoRoute),
            Err(Miss::MethodNotAllowed(index)) => {
                ctx.route = Some(index);
                let allow = live.router.routes()[index].allow.clone();
                return Err(GatewayError::MethodNotAllowed(allow));
            }
        };
        ctx.route = Some(index);
        if route.auth == AuthMode::Public {
            return Ok(());
        }
        let values = req
            .headers
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes());
        // Browsers cannot attach a bearer header to navigations or WebSockets: the HttpOnly
        // access cookie set by the login flow counts as well.
        let names = cookies::names(ctx.secure);
        let (token, from_cookie) = match Verifier::bearer(values)? {
            Some(t) => (Some(t), false),
            None => (
                cookies::cookie(req.headers, names.access).filter(|c| !c.is_empty()),
                true,
            ),
        };
        // A browser attaches cookies to cross-site requests too: a write authenticated by
        // them, or a WebSocket (a GET, but one that opens a two-way channel), must come from a
        // page of ours (bearer tokens are never sent by themselves).
        if from_cookie
            && token.is_some()
            && (!req.method.is_safe() || is_upgrade(req.headers))
            && !self.same_origin(live, req.headers, req.authority, ctx.secure)
        {
            return Err(GatewayError::CsrfRejected);
        }
        let Some(token) = token else {
            return if route.auth == AuthMode::Optional {
                Ok(())
            } else {
                Err(TokenError::Missing.into())
            };
        };
        let verified = match self.verifier.cached(token) {
            Some(decided) => decided,
            None => {
                // Only the signature can decide, and it costs: not for a refused client.
                live.limits.ip_blocked(index, key)?;
                self.verifier.verify_uncached(token)
            }
        };
        match verified {
            Ok(claims) => {
                ctx.claims = Some(claims);
                Ok(())
            }
            // Cut off (`tokens/cutoff.rs`) as well: a login on another instance in the very
            // second of a cut-off is refused until its refresh, which the store decides.
            Err(TokenError::Expired | TokenError::CutOff(_))
                if from_cookie && route.on_unauthenticated == OnUnauthenticated::Redirect =>
            {
                let refresh = cookies::cookie(req.headers, names.refresh)
                    .filter(|c| !c.is_empty())
                    .ok_or(TokenError::Expired)?
                    .to_string();
                // A rotation writes to the store: limited like `POST /refresh` (per address as
                // a flood guard, per session in the rotation), and never for a client already
                // refused.
                live.limits.ip_blocked(index, key)?;
                live.limits.check_session(key)?;
                let (api, secure) = (live.api.clone(), ctx.secure);
                let refreshed = self
                    .app
                    .spawn(async move { api.refresh_cookies(&refresh, secure).await })
                    .await
                    .map_err(|e| GatewayError::Internal(format!("refresh task: {e}")))?;
                match refreshed {
                    Ok((claims, cookies)) => {
                        ctx.claims = Some(claims);
                        ctx.set_cookies = cookies;
                        Ok(())
                    }
                    Err(e @ (GatewayError::Store(_) | GatewayError::RateLimited(_))) => Err(e),
                    // An unusable refresh cookie: the browser logs in again.
                    Err(_) => Err(TokenError::Expired.into()),
                }
            }
            // A browser cannot repair its own cookie: on optional routes a stale one is anonymous.
            Err(_) if from_cookie && route.auth == AuthMode::Optional => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The request comes from a page of ours: the browser says so (`Sec-Fetch-Site:
    /// same-origin`, or `none` for what the user typed), or its `Origin` is this request's own
    /// origin or an allowed one. A sibling subdomain is `same-site`, not ours.
    pub(super) fn same_origin(
        &self,
        live: &Live,
        headers: &http::HeaderMap,
        host: &[u8],
        secure: bool,
    ) -> bool {
        if let Some(site) = headers.get("sec-fetch-site") {
            if matches!(site.as_bytes(), b"same-origin" | b"none") {
                return true;
            }
        }
        let Some(origin) = headers.get(http::header::ORIGIN).map(|o| o.as_bytes()) else {
            return false;
        };
        let scheme: &[u8] = if secure { b"https://" } else { b"http://" };
        let own = origin.len() == scheme.len() + host.len()
            && origin[..scheme.len()].eq_ignore_ascii_case(scheme)
            && origin[scheme.len()..].eq_ignore_ascii_case(host);
        own || live
            .allowed_origins
            .iter()
            .any(|o| o.as_bytes().eq_ignore_ascii_case(origin))
    }

    /// Answers one of the gateway's own endpoints on the application runtime.
    pub(super) async fn serve_api(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        live: &Live,
        route: api::ApiRoute,
    ) -> Result<()> {
        let mut body = bytes::BytesMut::new();
        if session.req_header().method != http::Method::GET {
            // The whole body within 10 s: a deadline of our own, because Pingora's read timeout
            // does nothing for HTTP/2 streams.
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            session.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            loop {
                let read = tokio::time::timeout_at(deadline, session.read_request_body()).await;
                // A body error is the client's (a bad chunk, a stall, a hang-up): marked so, it
                // is answered as such rather than as our own failure.
                let chunk = match read {
                    Ok(chunk) => chunk.map_err(|e| e.into_down())?,
                    Err(_) => {
                        session.set_keepalive(None);
                        answer_error(session, ctx, &GatewayError::RequestTimeout).await?;
                        return Ok(());
                    }
                };
                let Some(chunk) = chunk else { break };
                if body.len() + chunk.len() > api::MAX_BODY {
                    session.set_keepalive(None);
                    answer_error(session, ctx, &GatewayError::PayloadTooLarge(api::MAX_BODY))
                        .await?;
                    return Ok(());
                }
                body.extend_from_slice(&chunk);
            }
        }
        let req = session.req_header();
        let request = ApiRequest {
            route,
            method: req.method.clone(),
            path: req.uri.path().to_string(),
            query: req.uri.query().unwrap_or("").to_string(),
            headers: req.headers.clone(),
            body: body.freeze(),
            secure: ctx.secure,
        };
        let api = live.api.clone();
        let reply = match self
            .app
            .spawn(async move { api.handle(request).await })
            .await
        {
            Ok(reply) => reply,
            Err(e) => ApiReply::error(&GatewayError::Internal(format!("api task: {e}"))),
        };
        let extra: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        write_json(session, ctx, reply.status, reply.body, &extra).await
    }

    /// A browser's page load on a `redirect` route: sent to login rather than answered 401.
    pub(super) fn wants_redirect(
        &self,
        live: &Live,
        method: &http::Method,
        headers: &http::HeaderMap,
        ctx: &RequestCtx,
    ) -> bool {
        let Some(route) = ctx.route.map(|i| &live.router.routes()[i]) else {
            return false;
        };
        route.on_unauthenticated == OnUnauthenticated::Redirect
            && method == http::Method::GET
            && headers.get(http::header::ACCEPT).is_some_and(|a| {
                a.as_bytes()
                    .windows(9)
                    .any(|w| w.eq_ignore_ascii_case(b"text/html"))
            })
    }

    /// The login page, with `target` (the request's path and query) as where to come back to.
    pub(super) fn login_location(&self, live: &Live, target: &[u8]) -> String {
        let target = String::from_utf8_lossy(target);
        let mut next = String::with_capacity(target.len() + 8);
        for b in target.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
                next.push(b as char);
            } else {
                next.push_str(&format!("%{b:02X}"));
            }
        }
        format!("{}?next={next}", live.login_path)
    }
}
