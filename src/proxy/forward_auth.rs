//! Forward-auth: an edge proxy that stays in front (nginx, Traefik, Caddy, HAProxy, Envoy) asks
//! "may this request pass, and who is it?", and gets the decision a request proxied by authgate
//! would get: the same target and host checks, route table, methods, token or session cookie
//! (with the transparent refresh), CSRF rule and rate limits ([`Gateway::decide`]).
//!
//! | endpoint | edge | the original request in |
//! |---|---|---|
//! | `{prefix}/authz/auth-request` | nginx `auth_request` | `X-Original-Method`, `X-Original-URL` (absolute) |
//! | `{prefix}/authz/forward-auth` | Traefik `ForwardAuth`, Caddy `forward_auth`, HAProxy | `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri` |
//! | `{prefix}/authz/forward-auth/{path}` | Envoy `ext_authz` (HTTP service, `path_prefix`) | the request line and `Host` |
//!
//! Only peers in `server.trusted_proxies` are answered (anyone else: 403), since these headers
//! are believed; with `auth.forward_auth_secret` set, only questions carrying it, so a client
//! that reaches the endpoint through the edge is refused too. The description must be whole and
//! unambiguous: a method is never assumed, a host must be spelled as routed (lower case, no
//! trailing dot), and on Envoy's path no `X-Forwarded-Uri` may say otherwise. Allowed: `200` with the identity headers (and the signed assertion) for the
//! edge to copy upstream, and rotated session cookies for it to pass back. Refused: the error a
//! proxied request would get; a browser's page load on a `redirect` route gets `302` to login
//! from `forward-auth`, and from `auth-request` a `401` with a `Location` (nginx cannot pass on
//! a redirect from `auth_request`, and turns anything but 2xx, 401 and 403 into a 500: so there
//! every other refusal is a 403 naming the real code in `X-Authgate-Error`). Never cacheable.

use super::admit::Original;
use super::*;

/// Which convention the edge speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// nginx `auth_request`.
    AuthRequest,
    /// Traefik, Caddy, HAProxy; Envoy with the original path after the endpoint.
    ForwardAuth,
}

/// The endpoints' paths under `auth.prefix`, and `auth.forward_auth_secret`.
pub struct Paths {
    auth_request: String,
    forward_auth: String,
    secret: Option<String>,
}

impl Paths {
    pub fn new(prefix: &str, secret: &str) -> Paths {
        Paths {
            auth_request: format!("{prefix}/authz/auth-request"),
            forward_auth: format!("{prefix}/authz/forward-auth"),
            secret: (!secret.is_empty()).then(|| secret.to_string()),
        }
    }
}

/// The header an edge names `auth.forward_auth_secret` in.
const SECRET_HEADER: &str = "x-authgate-forward-auth-secret";

/// The request an edge describes, owned (it comes from several headers).
struct Described {
    method: http::Method,
    /// Path and query.
    target: Vec<u8>,
    /// The host as the client wrote it, with its port.
    authority: Vec<u8>,
    secure: bool,
}

/// The single value of header `name`; two are refused (which one would the edge have meant?).
fn one<'a>(headers: &'a http::HeaderMap, name: &str) -> Result<Option<&'a [u8]>, GatewayError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => Ok(Some(v.as_bytes())),
        _ => Err(GatewayError::BadRequest(format!("more than one {name}"))),
    }
}

fn required<'a>(headers: &'a http::HeaderMap, name: &str) -> Result<&'a [u8], GatewayError> {
    one(headers, name)?.ok_or_else(|| GatewayError::BadRequest(format!("{name} is missing")))
}

/// The method exactly as the edge names it: never assumed (a POST judged as a GET would skip
/// the CSRF rule and the route's `methods`), never case-folded (upstreams do not fold it).
fn method(v: &[u8]) -> Result<http::Method, GatewayError> {
    http::Method::from_bytes(v).map_err(|_| GatewayError::BadRequest("not an HTTP method".into()))
}

/// `X-Forwarded-Proto` read as `request_filter` reads it: the last value of the last header.
fn is_https(headers: &http::HeaderMap) -> bool {
    headers
        .get_all("x-forwarded-proto")
        .iter()
        .next_back()
        .and_then(|v| v.as_bytes().rsplit(|&b| b == b',').next())
        .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"https"))
}

/// Scheme, authority and target (path and query).
type SplitUrl<'a> = (&'a [u8], &'a [u8], Vec<u8>);

/// `scheme://authority/path?query` split. Only an absolute URL: with a path alone the host would
/// come from a header the client can send through the edge. The authority ends at the first `/`
/// only, and the target must follow it (`$request_uri` always starts with `/`): a client's
/// `Host: app.example?` would otherwise make `https://app.example?/admin` read as the target
/// `/?/admin` while nginx forwards `/admin`; here its host `app.example?` is refused.
fn split_url(url: &[u8]) -> Result<SplitUrl<'_>, GatewayError> {
    let bad = || {
        GatewayError::BadRequest(
            "X-Original-URL must be absolute: $scheme://$http_host$request_uri".into(),
        )
    };
    let sep = url.windows(3).position(|w| w == b"://").ok_or_else(bad)?;
    let (scheme, rest) = (&url[..sep], &url[sep + 3..]);
    if !(scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https")) {
        return Err(bad());
    }
    let end = rest.iter().position(|&b| b == b'/').ok_or_else(bad)?;
    let (authority, target) = (&rest[..end], &rest[end..]);
    // `user@host` is not a host a browser sends; `#` never reaches a server.
    if authority.contains(&b'@') {
        return Err(bad());
    }
    Ok((scheme, authority, target.to_vec()))
}

impl Gateway {
    /// Which forward-auth endpoint `path` is, if any (exact case, like the API's own routes).
    pub(super) fn forward_auth_mode(&self, live: &Live, path: &str) -> Option<Mode> {
        let p = &live.forward_auth_paths;
        if path == p.auth_request {
            Some(Mode::AuthRequest)
        } else if path == p.forward_auth
            || path
                .strip_prefix(p.forward_auth.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        {
            Some(Mode::ForwardAuth)
        } else {
            None
        }
    }

    /// The request the edge describes; `path` is the question's own (checked) path.
    fn describe(
        &self,
        live: &Live,
        mode: Mode,
        req: &RequestHeader,
        path: &str,
    ) -> Result<Described, GatewayError> {
        let h = &req.headers;
        match mode {
            Mode::AuthRequest => {
                let (scheme, authority, target) = split_url(required(h, "x-original-url")?)?;
                Ok(Described {
                    method: method(required(h, "x-original-method")?)?,
                    target,
                    authority: authority.to_vec(),
                    secure: scheme.eq_ignore_ascii_case(b"https"),
                })
            }
            Mode::ForwardAuth => {
                let suffix = &path[live.forward_auth_paths.forward_auth.len()..];
                if suffix.is_empty() {
                    // Traefik and friends.
                    return Ok(Described {
                        method: method(required(h, "x-forwarded-method")?)?,
                        target: required(h, "x-forwarded-uri")?.to_vec(),
                        authority: required(h, "x-forwarded-host")?.to_vec(),
                        secure: is_https(h),
                    });
                }
                // Envoy: the original path follows the endpoint, the method and host are the
                // question's own. Envoy may pass a client's `x-*` headers on: one that names
                // another target would be judged in place of the real one.
                if one(h, "x-forwarded-uri")?.is_some() || one(h, "x-forwarded-method")?.is_some() {
                    return Err(GatewayError::BadRequest(
                        "X-Forwarded-Uri or -Method beside a path after the endpoint".into(),
                    ));
                }
                let mut target = suffix.as_bytes().to_vec();
                if let Some(q) = req.uri.query() {
                    target.push(b'?');
                    target.extend_from_slice(q.as_bytes());
                }
                Ok(Described {
                    method: req.method.clone(),
                    target,
                    // `:authority` when Envoy asks over HTTP/2.
                    authority: request_authority(req)?.to_vec(),
                    secure: is_https(h),
                })
            }
        }
    }

    /// Answers a forward-auth question.
    pub(super) async fn forward_auth(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mode: Mode,
        key: IpAddr,
        live: &Live,
    ) -> Result<()> {
        let outcome = self.judge(session, ctx, mode, key, live).await;
        let err = match outcome {
            Ok(()) => return self.allow(session, ctx, mode, live).await,
            Err(e) => e,
        };
        self.count_refusal(&err);
        tracing::debug!(request_id = %ctx.request_id(), error = %err, ?mode, "forward-auth refused");
        let login = match (&err, &ctx.described) {
            (GatewayError::Token(_), Some((m, target)))
                if self.wants_redirect(live, m, &session.req_header().headers, ctx) =>
            {
                Some(self.login_location(live, target))
            }
            _ => None,
        };
        let public = err.public();
        let headers = err.headers();
        let mut extra: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match (mode, &login) {
            (Mode::ForwardAuth, Some(location)) => {
                write_json(session, ctx, 302, b"{}".to_vec(), &[("location", location)]).await
            }
            (Mode::AuthRequest, Some(location)) => {
                extra.push(("location", location));
                write_json(session, ctx, 401, public.body(), &extra).await
            }
            (Mode::AuthRequest, None) if !matches!(public.status, 401 | 403) => {
                extra.push(("x-authgate-error", public.code));
                write_json(session, ctx, 403, public.body(), &extra).await
            }
            _ => write_json(session, ctx, public.status, public.body(), &extra).await,
        }
    }

    /// The decision, with the limits a proxied request would spend.
    async fn judge(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        mode: Mode,
        key: IpAddr,
        live: &Live,
    ) -> Result<(), GatewayError> {
        let decided = self.question(session, ctx, mode, key, live).await;
        self.spend(live, decided.as_ref().map(|_| ()), ctx, key)?;
        decided
    }

    /// Who may ask, what the question describes, and the decision about it.
    async fn question(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        mode: Mode,
        key: IpAddr,
        live: &Live,
    ) -> Result<(), GatewayError> {
        if !ctx.peer_trusted {
            return Err(GatewayError::UntrustedPeer);
        }
        let req = session.req_header();
        if let Some(secret) = &live.forward_auth_paths.secret {
            let presented = one(&req.headers, SECRET_HEADER)?.unwrap_or_default();
            if !bool::from(subtle::ConstantTimeEq::ct_eq(presented, secret.as_bytes())) {
                return Err(GatewayError::UntrustedPeer);
            }
        }
        let path = check_target(req.raw_path())?;
        let d = self.describe(live, mode, req, path)?;
        // The client's own request reached the edge: its fragment never would.
        if d.target.contains(&b'#') {
            return Err(TargetError::Fragment.into());
        }
        ctx.secure = d.secure;
        ctx.described = Some((d.method.clone(), d.target.clone()));
        // The edge forwards the host as the client spelled it, and cannot be made to rewrite it
        // as a proxied request's is: another spelling of a routed host is refused.
        if canonical_host(&d.authority).is_some() {
            return Err(TargetError::BadHost.into());
        }
        let (path, host) = (check_target(&d.target)?, check_host(&d.authority)?);
        let original = Original {
            method: &d.method,
            path,
            host,
            authority: &d.authority,
            headers: &req.headers,
        };
        self.decide(&original, ctx, key, live).await
    }

    /// `200` with the identity for the edge to copy upstream, and a rotated session's cookies
    /// for it to pass back (`Set-Cookie`; for nginx, whose `$upstream_http_set_cookie` holds only
    /// the first, each once more in a header of its own: `X-Authgate-Access-Cookie`,
    /// `X-Authgate-Refresh-Cookie`).
    async fn allow(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mode: Mode,
        live: &Live,
    ) -> Result<()> {
        let assertion = self.assertion(live, ctx);
        let h = &live.headers;
        let mut extra: Vec<(&str, &str)> = Vec::new();
        let names = |b: &bytes::Bytes| std::str::from_utf8(b).unwrap_or_default().to_string();
        let (user_id, email, nickname, provider, assertion_name) = (
            names(&h.user_id),
            names(&h.email),
            names(&h.nickname),
            names(&h.provider),
            names(&h.assertion),
        );
        let claims = ctx.claims.clone();
        if let Some(c) = &claims {
            extra.push((&user_id, &c.sub));
            for (name, value) in [
                (&email, &c.email),
                (&nickname, &c.nickname),
                (&provider, &c.provider),
            ] {
                if let Some(v) = value
                    .as_deref()
                    .filter(|v| http::HeaderValue::from_str(v).is_ok())
                {
                    extra.push((name, v));
                }
            }
        }
        let assertion = assertion.as_ref().and_then(|v| v.to_str().ok());
        if let Some(a) = assertion {
            extra.push((&assertion_name, a));
        }
        let rotated = ctx.set_cookies.clone();
        if mode == Mode::AuthRequest {
            for (name, cookie) in ["x-authgate-access-cookie", "x-authgate-refresh-cookie"]
                .into_iter()
                .zip(&rotated)
            {
                extra.push((name, cookie));
            }
        }
        // Envoy copies only the headers an answer carries: a client's own `X-User-*` (anonymous
        // on an optional route, or a nickname that cannot be a header) would reach the upstream.
        // This asks Envoy to remove every identity header from the request first.
        let remove = [&user_id, &email, &nickname, &provider, &assertion_name]
            .map(|n| n.to_ascii_lowercase())
            .join(",");
        if mode == Mode::ForwardAuth {
            extra.push(("x-envoy-auth-headers-to-remove", &remove));
        }
        write_json(session, ctx, 200, b"{}".to_vec(), &extra).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_urls_split_into_scheme_authority_and_target() {
        let (s, a, t) = split_url(b"https://app.example:8443/orders?x=1").unwrap();
        assert_eq!(
            (s, a, t.as_slice()),
            (&b"https"[..], &b"app.example:8443"[..], &b"/orders?x=1"[..])
        );
        // The authority ends at `/` only: a `?` stays in it, and the host check refuses it.
        let (_, a, t) = split_url(b"https://app.example?/admin").unwrap();
        assert_eq!((a, t.as_slice()), (&b"app.example?"[..], &b"/admin"[..]));
        assert!(check_host(a).is_err());
        for bad in [
            &b"http://app.example"[..],
            b"http://app.example?q",
            b"ftp://x/",
            b"app.example/x",
            b"https://user@app.example/",
            b"",
            b"/only/a/path",
        ] {
            assert!(
                split_url(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
