//! The admin listener: `/healthz` (liveness) and `/readyz` (readiness). Never on the public
//! listener, and `/metrics` for Prometheus.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;
use tokio::net::TcpListener;

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

pub async fn serve(listener: TcpListener, readiness: Arc<Readiness>, metrics: Arc<Metrics>) {
    localhttp::serve(listener, move |req| {
        let readiness = readiness.clone();
        let metrics = metrics.clone();
        async move {
            match req.uri().path() {
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
