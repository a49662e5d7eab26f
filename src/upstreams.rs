//! Upstream groups: one Pingora round-robin `LoadBalancer` per `[[upstreams]]` entry, with its
//! health check, and the peer options (timeouts, TLS) requests to it use.
//!
//! The health checks run as tasks of the application runtime rather than as Pingora services,
//! because a reload adds and removes upstreams while the server runs: an upstream's checks stop
//! when the last request that could still use it is done (its `Drop`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, LoadBalancer};
use pingora::prelude::HttpPeer;
use pingora::services::background::BackgroundService;

use crate::config::UpstreamConfig;
use crate::tls::upstream::PeerTls;

pub struct Upstream {
    pub name: String,
    /// What it was built from: a reload keeps an upstream whose configuration is unchanged,
    /// health state and all.
    pub config: UpstreamConfig,
    /// Tells the health-check task to stop.
    stop: tokio::sync::watch::Sender<bool>,
    /// Runs the health checks and answers which backends are ready.
    lb: Arc<LoadBalancer<RoundRobin>>,
    /// Every backend with its ready-made peer (timeouts set). The list is static (from the
    /// config), so round-robin is a counter over it: Pingora's `select_with` would allocate a
    /// set of visited backends on every request.
    peers: Vec<(Backend, HttpPeer)>,
    next: AtomicUsize,
}

impl Upstream {
    /// Builds the group and starts its health checks on `runtime`.
    pub fn build(
        cfg: &UpstreamConfig,
        runtime: &tokio::runtime::Handle,
    ) -> std::io::Result<Arc<Upstream>> {
        let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(cfg.addrs.iter().copied())?;
        let tls = cfg
            .tls
            .as_ref()
            .map(PeerTls::new)
            .transpose()
            .map_err(std::io::Error::other)?;
        if cfg.tls.as_ref().is_some_and(|t| !t.verify) {
            tracing::warn!(upstream = %cfg.name,
                "upstreams[].verify = false: this upstream's certificate is NOT verified; anyone on the path can read and alter its traffic, identity headers included");
        }
        match &cfg.health_check_path {
            // A TCP check says the backend is reachable; the TLS handshake is each request's.
            None => {
                let mut hc = TcpHealthCheck::new();
                hc.peer_template.options.connection_timeout =
                    Some(Duration::from_millis(cfg.connect_timeout_ms));
                lb.set_health_check(hc);
            }
            Some(path) => {
                // One check for every backend: it names the first one's host (or `sni`).
                let host = match &tls {
                    Some(t) => t.sni(&cfg.hosts[0]).to_string(),
                    None => "localhost".to_string(),
                };
                let mut hc = HttpHealthCheck::new(&host, tls.is_some());
                hc.req.set_uri(
                    path.parse()
                        .map_err(|e| std::io::Error::other(format!("health_check_path: {e}")))?,
                );
                if let Some(t) = &tls {
                    t.apply(&mut hc.peer_template, false);
                }
                hc.peer_template.options.connection_timeout =
                    Some(Duration::from_millis(cfg.connect_timeout_ms));
                lb.set_health_check(Box::new(hc));
            }
        }
        lb.health_check_frequency = Some(Duration::from_millis(cfg.health_check_interval_ms));
        lb.parallel_health_check = true;
        let (connect, read) = (
            Duration::from_millis(cfg.connect_timeout_ms),
            Duration::from_millis(cfg.read_timeout_ms),
        );
        let pool_key = group_key(cfg);
        let peers = lb
            .backends()
            .get_backend()
            .iter()
            .map(|backend| {
                let mut peer = match &tls {
                    None => HttpPeer::new(backend.clone(), false, String::new()),
                    Some(t) => {
                        // Never empty: Pingora verifies nothing for a peer without a name.
                        let inet = backend.addr.as_inet();
                        let host = inet
                            .and_then(|a| cfg.addrs.iter().position(|x| x == a))
                            .map(|i| cfg.hosts[i].clone())
                            .filter(|h| !h.is_empty())
                            .unwrap_or_else(|| {
                                inet.map_or("localhost".into(), |a| a.ip().to_string())
                            });
                        let mut peer =
                            HttpPeer::new(backend.clone(), true, t.sni(&host).to_string());
                        t.apply(&mut peer, cfg.h2);
                        // Pingora's connection pool does not tell peers apart by their CA or
                        // verification: two upstreams on one address must not share connections.
                        peer.group_key = pool_key;
                        peer
                    }
                };
                let o = &mut peer.options;
                o.connection_timeout = Some(connect);
                o.total_connection_timeout = Some(connect);
                o.read_timeout = Some(read);
                o.write_timeout = Some(read);
                o.idle_timeout = Some(Duration::from_secs(60));
                (backend.clone(), peer)
            })
            .collect();
        let lb = Arc::new(lb);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let checks = lb.clone();
        runtime.spawn(async move { checks.start(stopped).await });
        Ok(Arc::new(Upstream {
            name: cfg.name.clone(),
            config: cfg.clone(),
            stop,
            lb,
            peers,
            next: AtomicUsize::new(0),
        }))
    }

    pub fn backend_count(&self) -> usize {
        self.peers.len()
    }

    /// True while at least one backend passes its health check.
    pub fn has_healthy_backend(&self) -> bool {
        let backends = self.lb.backends();
        backends.get_backend().iter().any(|b| backends.ready(b))
    }

    /// The next healthy backend in round-robin order that this request has not already failed on.
    pub fn select(&self, exclude: &[SocketAddr]) -> Option<HttpPeer> {
        let n = self.peers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let backends = self.lb.backends();
        (0..n)
            .map(|i| &self.peers[(start + i) % n])
            .find(|(backend, _)| {
                backends.ready(backend)
                    && backend.addr.as_inet().is_none_or(|a| !exclude.contains(a))
            })
            .map(|(_, peer)| peer.clone())
    }
}

/// A pool key of this upstream's own and of its TLS settings: a reload that changes them
/// must not reuse connections verified under the old ones.
fn group_key(cfg: &UpstreamConfig) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&cfg.name, format!("{:?}", cfg.tls)).hash(&mut h);
    h.finish()
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
