//! Upstream groups: one Pingora round-robin `LoadBalancer` per `[[upstreams]]` entry, with its
//! health check, and the peer options (timeouts) requests to it use.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, LoadBalancer};
use pingora::prelude::HttpPeer;
use pingora::services::background::{background_service, GenBackgroundService};

use crate::config::UpstreamConfig;

pub struct Upstream {
    pub name: String,
    lb: Arc<LoadBalancer<RoundRobin>>,
    connect_timeout: Duration,
    read_timeout: Duration,
}

impl Upstream {
    /// Builds the group and the background service that runs its health checks; the checks only
    /// run once that service is added to the server.
    pub fn build(
        cfg: &UpstreamConfig,
    ) -> std::io::Result<(
        Arc<Upstream>,
        GenBackgroundService<LoadBalancer<RoundRobin>>,
    )> {
        let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(cfg.addrs.iter().copied())?;
        match &cfg.health_check_path {
            None => {
                let mut hc = TcpHealthCheck::new();
                hc.peer_template.options.connection_timeout =
                    Some(Duration::from_millis(cfg.connect_timeout_ms));
                lb.set_health_check(hc);
            }
            Some(path) => {
                let mut hc = HttpHealthCheck::new("localhost", false);
                hc.req.set_uri(
                    path.parse()
                        .map_err(|e| std::io::Error::other(format!("health_check_path: {e}")))?,
                );
                hc.peer_template.options.connection_timeout =
                    Some(Duration::from_millis(cfg.connect_timeout_ms));
                lb.set_health_check(Box::new(hc));
            }
        }
        lb.health_check_frequency = Some(Duration::from_millis(cfg.health_check_interval_ms));
        lb.parallel_health_check = true;
        let service = background_service(&format!("health check {}", cfg.name), lb);
        let upstream = Upstream {
            name: cfg.name.clone(),
            lb: service.task(),
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            read_timeout: Duration::from_millis(cfg.read_timeout_ms),
        };
        Ok((Arc::new(upstream), service))
    }

    pub fn backend_count(&self) -> usize {
        self.lb.backends().get_backend().len()
    }

    /// True while at least one backend passes its health check.
    pub fn has_healthy_backend(&self) -> bool {
        let backends = self.lb.backends();
        backends.get_backend().iter().any(|b| backends.ready(b))
    }

    /// The next healthy backend in round-robin order that this request has not already failed on.
    pub fn select(&self, exclude: &[SocketAddr]) -> Option<HttpPeer> {
        let backend: Backend = self.lb.select_with(b"", 256, |b, healthy| {
            healthy && b.addr.as_inet().is_none_or(|a| !exclude.contains(a))
        })?;
        let mut peer = HttpPeer::new(backend, false, String::new());
        let o = &mut peer.options;
        o.connection_timeout = Some(self.connect_timeout);
        o.total_connection_timeout = Some(self.connect_timeout);
        o.read_timeout = Some(self.read_timeout);
        o.write_timeout = Some(self.read_timeout);
        o.idle_timeout = Some(Duration::from_secs(60));
        Some(peer)
    }
}
