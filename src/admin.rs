//! The admin listener: `/healthz` (liveness), `/readyz` (readiness), `/metrics` for Prometheus,
//! `POST /users/{id}/revoke` (end every session of a user, `{id}` our user id or
//! `provider:subject`) and `POST /reload` (read the configuration file again, `reload.rs`).
//! Never on the public listener.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;
use tokio::net::TcpListener;

use crate::lifecycle::{self, Lifecycle, Outcome};
use crate::localhttp::{self, Reply};
use crate::metrics::Metrics;
use crate::proxy::Live;
use crate::reload::Reloader;

/// What readiness depends on.
pub struct Readiness {
    /// Set when SIGTERM starts the drain; load balancers stop sending new traffic.
    pub draining: AtomicBool,
    /// The upstreams of the configuration being served.
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

/// `POST /users/{id}/revoke`.
async fn revoke(lifecycle: &Lifecycle, user: &str) -> Reply {
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
            tracing::warn!(user = %user, %message, "operator revoked a user's sessions");
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
            if path == "/reload" {
                if let Some(refused) = operators_post_only(&req, "authgate reload") {
                    return refused;
                }
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
                return revoke(&lifecycle, user).await;
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
