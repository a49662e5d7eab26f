//! The admin listener: `/healthz` (liveness), `/readyz` (readiness), `/metrics` for Prometheus,
//! and `POST /users/{id}/revoke` (end every session of a user, `{id}` our user id or
//! `provider:subject`). Never on the public listener.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;
use tokio::net::TcpListener;

use crate::lifecycle::{self, Lifecycle, Outcome};
use crate::localhttp::{self, Reply};
use crate::metrics::Metrics;
use crate::upstreams::Upstream;

/// What readiness depends on.
pub struct Readiness {
    /// Set when SIGTERM starts the drain; load balancers stop sending new traffic.
    pub draining: AtomicBool,
    pub upstreams: Vec<Arc<Upstream>>,
}

impl Readiness {
    pub fn new(upstreams: Vec<Arc<Upstream>>) -> Readiness {
        Readiness {
            draining: AtomicBool::new(false),
            upstreams,
        }
    }

    fn check(&self) -> Reply {
        if self.draining.load(Ordering::Relaxed) {
            return localhttp::json(503, &json!({"status": "draining"}));
        }
        let down: Vec<&str> = self
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
) {
    localhttp::serve(listener, move |req| {
        let readiness = readiness.clone();
        let metrics = metrics.clone();
        let lifecycle = lifecycle.clone();
        async move {
            let path = req.uri().path();
            if let Some(user) = path
                .strip_prefix("/users/")
                .and_then(|p| p.strip_suffix("/revoke"))
            {
                return if req.method() != http::Method::POST {
                    localhttp::json(
                        405,
                        &json!({"error": "METHOD_NOT_ALLOWED", "message": "Use POST."}),
                    )
                } else if from_a_browser(req.headers()) {
                    localhttp::json(
                        403,
                        &json!({"error": "CSRF_REJECTED", "message": "Not from a web page: use curl or authgate revoke."}),
                    )
                } else {
                    revoke(&lifecycle, user).await
                };
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
