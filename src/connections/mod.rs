//! Connections on the public listeners, up to the moment Pingora has a complete request head.
//!
//! Pingora 0.9 bounds neither the time a client may take to send a request head nor how long
//! an idle keep-alive connection is held (each read has its own timeout, and after the first
//! request none at all), and it has no cap on connections. So a few thousand clients that each
//! dribble one header line every few seconds held the process's descriptors indefinitely. This
//! module wraps Pingora's HTTP application in our own [`ServerApp`]:
//!
//! - every connection takes a permit: at most `server.max_connections` in all and
//!   `server.max_connections_per_ip` per client address (IPv6 per /64; trusted proxies only
//!   count towards the total); over either, a short JSON refusal and the connection is closed;
//! - on the HTTPS listener the TLS handshake comes next, and HTTP/2 connections go to Pingora's
//!   h2 server with a deadline on their preface (`tls.rs`);
//! - an HTTP/1.x request head is read here (`head.rs`), before Pingora sees it: the whole head within
//!   `server.client_header_timeout_ms` (from the connection's start, or from the first byte of a
//!   later request), at most [`MAX_HEAD`] bytes, and between requests a connection may sit idle
//!   for `server.keepalive_timeout_ms`. A head that misses its deadline gets `408`;
//! - the head's framing is checked, so what could be forwarded ambiguously is refused as JSON
//!   with the connection closed: both `Content-Length` and `Transfer-Encoding`, several or
//!   malformed `Content-Length`s, any transfer coding but `chunked`, two `Host`s (a head that is
//!   not HTTP at all gets Pingora's own bare 400);
//! - the complete head is handed to Pingora as its "pipelined prefix", so Pingora parses it
//!   without reading the socket again and everything after (routing, proxying) is unchanged.
//!
//! Client-caused endings are counted in `authgate_client_errors_total{kind}` and logged at
//! debug: a client must not be able to write an error line per connection.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::protocols::ALPN;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::identity;
use crate::metrics::Metrics;

mod head;
mod tls;

pub use head::MAX_HEAD;
use head::{read_head, IdleTimer, Wait};
pub use tls::{Handshakes, TlsSide};

/// The `[server]` settings this module enforces.
#[derive(Debug, Clone)]
pub struct ConnectionRules {
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: u32,
    pub trusted_proxies: Vec<IpNet>,
}

/// Why a connection ends before Pingora sees a request: the `kind` label and the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    HeaderTimeout,
    Malformed,
    HeadersTooLarge,
    Disconnected,
    ConnectionLimit,
    ConnectionLimitPerIp,
}

impl Refusal {
    pub fn kind(self) -> &'static str {
        match self {
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::Malformed => "malformed",
            Refusal::HeadersTooLarge => "headers_too_large",
            Refusal::Disconnected => "disconnected",
            Refusal::ConnectionLimit => "connection_limit",
            Refusal::ConnectionLimitPerIp => "connection_limit_per_ip",
        }
    }

    /// Status, public code and message; `None` when nobody is left to answer.
    fn answer(self) -> Option<(u16, &'static str, &'static str, &'static str)> {
        Some(match self {
            Refusal::HeaderTimeout => (
                408,
                "Request Timeout",
                "REQUEST_TIMEOUT",
                "The request head was not received in time.",
            ),
            Refusal::Malformed => (
                400,
                "Bad Request",
                "BAD_REQUEST",
                "The request is malformed or ambiguous.",
            ),
            Refusal::HeadersTooLarge => (
                431,
                "Request Header Fields Too Large",
                "HEADERS_TOO_LARGE",
                "The request head is too large.",
            ),
            Refusal::ConnectionLimit => (
                503,
                "Service Unavailable",
                "TOO_MANY_CONNECTIONS",
                "The server has too many open connections; retry shortly.",
            ),
            Refusal::ConnectionLimitPerIp => (
                429,
                "Too Many Requests",
                "TOO_MANY_CONNECTIONS",
                "Too many open connections from this address; close some and retry.",
            ),
            Refusal::Disconnected => return None,
        })
    }
}

/// Open connections, in all and per client address.
pub struct Counts {
    total: AtomicUsize,
    per_ip: dashmap::DashMap<IpAddr, u32, ahash::RandomState>,
}

/// Held for a connection's lifetime; gives its place back when dropped.
pub struct Permit<'a> {
    counts: &'a Counts,
    ip: Option<IpAddr>,
}

impl Counts {
    pub fn new() -> Counts {
        Counts {
            total: AtomicUsize::new(0),
            per_ip: dashmap::DashMap::with_hasher(ahash::RandomState::new()),
        }
    }

    /// A place for one more connection from `peer`, or why there is none.
    pub fn acquire(
        &self,
        peer: Option<IpAddr>,
        rules: &ConnectionRules,
    ) -> Result<Permit<'_>, Refusal> {
        if self.total.fetch_add(1, Ordering::Relaxed) >= rules.max_connections {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::ConnectionLimit);
        }
        // A trusted proxy carries many clients: only the total applies to it.
        let key = peer
            .filter(|ip| !identity::is_trusted(*ip, &rules.trusted_proxies))
            .map(identity::rate_key);
        if let Some(key) = key {
            let mut n = self.per_ip.entry(key).or_insert(0);
            if *n >= rules.max_connections_per_ip {
                drop(n);
                self.total.fetch_sub(1, Ordering::Relaxed);
                return Err(Refusal::ConnectionLimitPerIp);
            }
            *n += 1;
        }
        Ok(Permit {
            counts: self,
            ip: key,
        })
    }

    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl Default for Counts {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.counts.total.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.ip {
            // Removed at zero so the map only holds addresses with open connections.
            self.counts.per_ip.remove_if_mut(&ip, |_, n| {
                *n -= 1;
                *n == 0
            });
        }
    }
}

/// Pingora's HTTP application behind the connection rules above.
pub struct Guarded<A> {
    app: Arc<A>,
    rules: ConnectionRules,
    counts: Counts,
    metrics: Arc<Metrics>,
    tls: Option<TlsSide>,
}

impl<A> Guarded<A> {
    pub fn new(
        app: A,
        rules: ConnectionRules,
        metrics: Arc<Metrics>,
        tls: Option<TlsSide>,
    ) -> Guarded<A> {
        Guarded {
            app: Arc::new(app),
            rules,
            counts: Counts::new(),
            metrics,
            tls,
        }
    }

    fn refused(&self, refusal: Refusal) {
        self.metrics
            .client_errors
            .with_label_values(&[refusal.kind()])
            .inc();
        tracing::debug!(
            kind = refusal.kind(),
            "connection refused or ended by the client"
        );
    }
}

#[async_trait]
impl<A> ServerApp for Guarded<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let accepted = Instant::now();
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let tls = self.tls.as_ref().filter(|t| t.owns(&stream));
        let _permit = match self.counts.acquire(peer, &self.rules) {
            Ok(permit) => permit,
            Err(refusal) => {
                self.refused(refusal);
                // A TLS client could not read a plain answer: it is only closed.
                if tls.is_none() {
                    answer(&mut stream, refusal).await;
                }
                return None;
            }
        };
        self.metrics.open_connections.inc();
        let _open = OnDrop(|| self.metrics.open_connections.dec());
        if let Some(tls) = tls {
            let deadline = accepted + self.rules.header_timeout;
            stream = tls.handshake(stream, peer, deadline, &self.metrics).await?;
            // HTTP/2 is Pingora's own: the h2 library reads the frames (no text head to scan,
            // and the framing smuggling is made of does not exist there), each stream goes
            // through the same proxy pipeline, and an idle connection ends after
            // `keepalive_timeout` (`h2_idle_timeout`).
            if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
                return self.app.process_new(stream, shutdown).await;
            }
        }
        let mut carried: Option<HttpPersistentSettings> = None;
        let mut first = true;
        let mut idle = IdleTimer::default();
        loop {
            // A new connection has the header timeout from its start; a kept-alive one may idle
            // first, and then has the header timeout from the first byte of the next request.
            let wait = if first {
                Wait::Head(accepted + self.rules.header_timeout)
            } else {
                Wait::Idle(self.rules.keepalive_timeout, &mut idle)
            };
            let head = match read_head(&mut stream, wait, self.rules.header_timeout).await {
                Ok(Some(head)) => head,
                Ok(None) => return None,
                Err(refusal) => {
                    self.refused(refusal);
                    answer(&mut stream, refusal).await;
                    return None;
                }
            };
            let mut session = ServerSession::new_http1(stream);
            match carried.take() {
                Some(settings) => settings.apply_to_session(&mut session),
                // As Pingora's own `ServerApp` starts a connection.
                None => {
                    let keepalive = (!*shutdown.borrow())
                        .then_some(self.rules.keepalive_timeout.as_secs().max(1));
                    session.set_keepalive(keepalive);
                    session.set_keepalive_reuses_remaining(
                        self.app
                            .server_options()
                            .and_then(|o| o.keepalive_request_limit),
                    );
                }
            }
            session.set_pipelined_prefix(head);
            let (next, settings) = self
                .app
                .process_new_http(session, shutdown)
                .await?
                .consume();
            stream = next;
            carried = settings;
            first = false;
        }
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await;
    }
}

struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// Writes a refusal and closes; best effort, the client may be gone.
async fn answer(stream: &mut Stream, refusal: Refusal) {
    let Some((status, reason, code, message)) = refusal.answer() else {
        return;
    };
    let body = serde_json::json!({"error": code, "message": message}).to_string();
    let retry = if status == 429 || status == 503 {
        "Retry-After: 1\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Request-Id: {}\r\n{retry}Connection: close\r\n\r\n{body}",
        body.len(),
        identity::new_request_id().to_str().unwrap_or_default(),
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.flush().await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
    // Closing with unread bytes makes the kernel reset the connection, and a reset can destroy
    // the answer before the client reads it: take what the client already sent, briefly.
    let mut sink = [0u8; 4096];
    let drain = async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(100), drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn connections_are_capped_in_all_and_per_address() {
        let rules = ConnectionRules {
            header_timeout: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(1),
            max_connections: 4,
            max_connections_per_ip: 2,
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
        };
        let counts = Counts::new();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let a1 = counts.acquire(ip("198.51.100.1"), &rules).unwrap();
        let _a2 = counts.acquire(ip("198.51.100.1"), &rules).unwrap();
        assert_eq!(
            counts.acquire(ip("198.51.100.1"), &rules).err(),
            Some(Refusal::ConnectionLimitPerIp)
        );
        // One IPv6 subscriber is one address.
        let _v6 = counts.acquire(ip("2001:db8::1"), &rules).unwrap();
        let _v6b = counts.acquire(ip("2001:db8::2"), &rules).unwrap();
        assert_eq!(
            counts.acquire(ip("10.1.1.1"), &rules).err(),
            Some(Refusal::ConnectionLimit)
        );
        drop(a1);
        assert_eq!(counts.open(), 3);
        let _a3 = counts.acquire(ip("198.51.100.1"), &rules).unwrap();
        assert_eq!(counts.per_ip.len(), 2);
        drop(_a3);
        drop(_a2);
        assert_eq!(
            counts.per_ip.len(),
            1,
            "addresses without connections are forgotten"
        );
        // Trusted proxies are only held to the total.
        let _p: Vec<_> = (0..2)
            .map(|_| counts.acquire(ip("10.1.1.1"), &rules).unwrap())
            .collect();
        assert_eq!(counts.open(), 4);
    }
}
