//! The admin listener: `/healthz` (liveness), `/readyz` (readiness), `/metrics` for Prometheus,
//! `POST /users/{id}/revoke` (end every session of a user, `{id}` our user id or
//! `provider:subject`) and `POST /reload` (read the configuration file again, `reload.rs`).
//! Never on the public listener.
//!
//! The first three are open (probes and Prometheus). Operators' actions need an admin token
//! (`[[admin.tokens]]`, `AUTHGATE_ADMIN_TOKEN`; [`operator`]) or, while none is configured, a
//! loopback peer; they refuse browsers whatever they carry, and each is logged with the token's
//! name.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::config::AdminConfig;

use crate::lifecycle::{self, Lifecycle, Outcome};
use crate::localhttp::{self, Reply};
use crate::metrics::Metrics;
use crate::proxy::Live;
use crate::reload::Reloader;

/// What readiness depends on.
pub struct Readiness {
    /// Set when SIGTERM starts the drain; load balancers stop sending new traffic.
    pub draining: AtomicBool,
    /// The configuration being served: its upstreams, its admin tokens.
    live: Arc<arc_swap::ArcSwap<Live>>,
}

impl Readiness {
    pub fn new(live: Arc<arc_swap::ArcSwap<Live>>) -> Readiness {
        Readiness {
            draining: AtomicBool::new(false),
            live,
        }
    }

    fn check(&self) -> Reply {
        if self.draining.load(Ordering::Relaxed) {
            return localhttp::json(503, &json!({"status": "draining"}));
        }
        let live = self.live.load();
        let down: Vec<&str> = live
            .upstreams
            .iter()
            .filter(|u| !u.has_healthy_backend())
            .map(|u| u.name.as_str())
            .collect();
        if down.is_empty() {
            localhttp::json(200, &json!({"status": "ready"}))
        } else {
            localhttp::json(
                503,
                &json!({"status": "unready", "upstreams_without_healthy_backend": down}),
            )
        }
    }
}

/// A browser sent it: it names an `Origin` (every browser does on a POST) or a `Sec-Fetch-Site`
/// other than `none`. A page on any site could otherwise post to a loopback admin listener (no
/// preflight for a simple form post, DNS rebinding too) and throw users out; operators' tools
/// (curl, scripts) send neither.
fn from_a_browser(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::ORIGIN)
        || headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() != b"none")
}

/// The refusal of an operator's action asked for with another method or by a browser.
fn operators_post_only<B>(req: &http::Request<B>, tool: &str) -> Option<Reply> {
    if req.method() != http::Method::POST {
        return Some(localhttp::json(
            405,
            &json!({"error": "METHOD_NOT_ALLOWED", "message": "Use POST."}),
        ));
    }
    from_a_browser(req.headers()).then(|| {
        localhttp::json(
            403,
            &json!({"error": "CSRF_REJECTED", "message": format!("Not from a web page: use curl or {tool}.")}),
        )
    })
}

/// Who may take an operator's action: the name of the admin token the request carries
/// (`Authorization: Bearer …`, its SHA-256 compared in constant time with every configured
/// one), or, while no token is configured at all, any loopback peer (`"loopback"`). Everyone
/// else gets the refusal to send.
pub fn operator<B>(req: &http::Request<B>, admin: &AdminConfig) -> Result<String, Reply> {
    let peer = req.extensions().get::<localhttp::Peer>().map(|p| p.0.ip());
    if admin.tokens.is_empty() {
        return match peer {
            Some(ip) if ip.is_loopback() || ip.to_canonical().is_loopback() => {
                Ok("loopback".to_string())
            }
            _ => Err(localhttp::json(
                403,
                &json!({"error": "FORBIDDEN", "message": "No admin token is configured: operator actions are answered only on loopback. Configure [[admin.tokens]] (authgate admin-token) or AUTHGATE_ADMIN_TOKEN."}),
            )),
        };
    }
    let mut values = req.headers().get_all(http::header::AUTHORIZATION).iter();
    let presented = match (values.next(), values.next()) {
        (Some(v), None) => v
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .or_else(|| v.as_bytes().strip_prefix(b"bearer ")),
        _ => None,
    };
    let refused = |code: &str, message: &str| {
        let mut r = localhttp::json(401, &json!({"error": code, "message": message}));
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"authgate-admin\""),
        );
        r
    };
    let Some(presented) = presented.map(<[u8]>::trim_ascii) else {
        return Err(refused(
            "UNAUTHORIZED",
            "An admin token is required: Authorization: Bearer <token>.",
        ));
    };
    let digest = crate::config::sha256(presented);
    // Every configured hash is compared, whichever matches: the time says nothing about which.
    let mut found: Option<&str> = None;
    for t in &admin.tokens {
        if bool::from(digest.ct_eq(&t.sha256)) {
            found = found.or(Some(t.name.as_str()));
        }
    }
    match found {
        Some(name) => Ok(name.to_string()),
        None => Err(refused("INVALID_TOKEN", "The admin token is not valid.")),
    }
}

/// `POST /users/{id}/revoke`.
async fn revoke(lifecycle: &Lifecycle, user: &str, who: &str) -> Reply {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let req = match lifecycle::operator_request(user, now) {
        Ok(r) => r,
        Err(why) => {
            return localhttp::json(400, &json!({"error": "BAD_REQUEST", "message": why}));
        }
    };
    match lifecycle
        .cut_off(req, std::time::Duration::from_secs(5))
        .await
    {
        Ok(outcome) => {
            let message = lifecycle::describe(user, &outcome);
            tracing::warn!(user = %user, admin = %who, %message, "operator revoked a user's sessions");
            match outcome {
                Outcome::Done(d) if d.users.is_empty() => {
                    localhttp::json(404, &json!({"error": "USER_NOT_FOUND", "message": message}))
                }
                Outcome::Done(d) => localhttp::json(
                    200,
                    &json!({"users": d.users, "refresh_tokens_revoked": d.refresh_revoked, "message": message}),
                ),
                Outcome::Spooled => {
                    localhttp::json(202, &json!({"spooled": true, "message": message}))
                }
            }
        }
        Err(e) => localhttp::json(
            503,
            &json!({"error": "STORE_UNAVAILABLE", "message": e.to_string()}),
        ),
    }
}

pub async fn serve(
    listener: TcpListener,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    lifecycle: Arc<Lifecycle>,
    reloader: Arc<Reloader>,
) {
    localhttp::serve(listener, move |req| {
        let readiness = readiness.clone();
        let metrics = metrics.clone();
        let lifecycle = lifecycle.clone();
        let reloader = reloader.clone();
        async move {
            let path = req.uri().path();
            let admin = || readiness.live.load().config.admin.clone();
            if path == "/reload" {
                if let Some(refused) = operators_post_only(&req, "authgate reload") {
                    return refused;
                }
                let who = match operator(&req, &admin()) {
                    Ok(who) => who,
                    Err(refused) => return refused,
                };
                tracing::info!(admin = %who, "reload asked for on the admin listener");
                let outcome = reloader.reload("POST /reload").await;
                let status = if outcome.result == "ok" { 200 } else { 422 };
                return localhttp::json(status, &json!(outcome));
            }
            if let Some(user) = path
                .strip_prefix("/users/")
                .and_then(|p| p.strip_suffix("/revoke"))
            {
                if let Some(refused) = operators_post_only(&req, "authgate revoke") {
                    return refused;
                }
                let who = match operator(&req, &admin()) {
                    Ok(who) => who,
                    Err(refused) => return refused,
                };
                return revoke(&lifecycle, user, &who).await;
            }
            match path {
                "/metrics" => localhttp::reply(200, "text/plain; version=0.0.4", metrics.render()),
                "/healthz" => {
                    localhttp::json(200, &json!({"status": "ok", "pid": std::process::id()}))
                }
                "/readyz" => readiness.check(),
                _ => localhttp::json(
                    404,
                    &json!({"error": "NOT_FOUND", "message": "No such admin endpoint."}),
                ),
            }
        }
    })
    .await
}
