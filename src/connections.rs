//! Connections on the public listener, up to the moment Pingora has a complete request head.
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
//! - the request head is read here, before Pingora sees it: the whole head within
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
use bytes::BytesMut;
use ipnet::IpNet;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::listeners::tls::Acceptor;
use pingora::prelude::fast_timeout::fast_timeout;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use pingora::protocols::ALPN;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::identity;
use crate::metrics::Metrics;

/// The largest request head accepted (request line and every header): `431` beyond. nginx's
/// default allows 32 KiB of headers as well; 8,192 connections at most hold 256 MiB of heads.
pub const MAX_HEAD: usize = 32 * 1024;
/// As many header lines as Pingora accepts.
const MAX_HEADERS: usize = 256;

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

/// The HTTPS listener: connections accepted on its port are TLS.
pub struct TlsSide {
    pub port: u16,
    pub acceptor: Acceptor,
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

    /// Whether `stream` came in on the HTTPS listener.
    fn is_tls(&self, stream: &Stream) -> Option<&TlsSide> {
        let tls = self.tls.as_ref()?;
        let local = stream.get_socket_digest()?.local_addr()?.as_inet()?.port();
        (local == tls.port).then_some(tls)
    }

    /// The TLS handshake, within the request-head deadline: a client that never finishes it
    /// holds a permit no longer than one that never sends a head.
    async fn handshake(&self, tls: &TlsSide, stream: Stream, deadline: Instant) -> Option<Stream> {
        // Pingora's listener hands over its TCP stream boxed; the handshake wants it typed.
        let tcp = match stream.into_any().downcast::<L4Stream>() {
            Ok(tcp) => *tcp,
            Err(_) => {
                tracing::error!("a connection on the HTTPS listener is not a TCP stream");
                return None;
            }
        };
        let result = match within(deadline, tls.acceptor.tls_handshake(tcp)).await {
            Some(Ok(stream)) => Ok(stream),
            Some(Err(e)) => Err(("failed", e.to_string())),
            None => Err((
                "timeout",
                "no handshake within server.client_header_timeout_ms".into(),
            )),
        };
        let (label, stream) = match result {
            Ok(s) => ("ok", Some(Box::new(s) as Stream)),
            Err((label, why)) => {
                tracing::debug!(result = label, error = %why, "TLS handshake failed");
                (label, None)
            }
        };
        self.metrics
            .tls_handshakes
            .with_label_values(&[label])
            .inc();
        stream
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
        let _permit = match self.counts.acquire(peer, &self.rules) {
            Ok(permit) => permit,
            Err(refusal) => {
                self.refused(refusal);
                answer(&mut stream, refusal).await;
                return None;
            }
        };
        self.metrics.open_connections.inc();
        let _open = OnDrop(|| self.metrics.open_connections.dec());
        if let Some(tls) = self.is_tls(&stream) {
            stream = self
                .handshake(tls, stream, accepted + self.rules.header_timeout)
                .await?;
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

/// How long the first byte of a request head may take.
enum Wait<'a> {
    /// Until this instant, which also bounds the whole head.
    Head(Instant),
    /// Between requests on a kept-alive connection: this long from now, on the connection's
    /// idle timer.
    Idle(Duration, &'a mut IdleTimer),
}

/// One timer per connection for the idle wait between requests, armed once and moved only when
/// it fires early: registering a fresh timer for every request (what a plain timeout does) was
/// the largest cost the idle limit added to the hot path.
#[derive(Default)]
struct IdleTimer(Option<std::pin::Pin<Box<tokio::time::Sleep>>>);

impl IdleTimer {
    /// The next read, or `None` when the connection idled until `until`.
    async fn read(
        &mut self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        until: Instant,
    ) -> Option<std::io::Result<usize>> {
        let timer = self
            .0
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        loop {
            tokio::select! {
                biased;
                read = stream.read_buf(buf) => return Some(read),
                _ = timer.as_mut() => {
                    if Instant::now() >= until {
                        return None;
                    }
                    // Armed for an earlier wait: this one ends later.
                    timer.as_mut().reset(until);
                }
            }
        }
    }
}

/// Reads one complete request head (and whatever followed it in the same reads). `Ok(None)`:
/// the client closed or idled out between requests.
async fn read_head(
    stream: &mut Stream,
    wait: Wait<'_>,
    header_timeout: Duration,
) -> Result<Option<BytesMut>, Refusal> {
    let mut buf = BytesMut::with_capacity(4096);
    // The first read: usually the whole head arrives in it.
    let mut deadline = match wait {
        Wait::Head(deadline) => match within(deadline, stream.read_buf(&mut buf)).await {
            Some(Ok(n)) if n > 0 => Some(deadline),
            // Nothing at all within the header timeout: close without a word, as nginx.
            _ => return Ok(None),
        },
        Wait::Idle(idle, timer) => {
            match timer.read(stream, &mut buf, Instant::now() + idle).await {
                // The head's own clock starts with its first byte, read only if it is needed.
                Some(Ok(n)) if n > 0 => None,
                _ => return Ok(None),
            }
        }
    };
    let mut scan = HeadScan::default();
    loop {
        // Empty lines before a request line are allowed (RFC 9112 §2.2) and dropped here, so
        // a blank line can only end a head.
        if scan.pos == 0 && matches!(buf.first(), Some(b'\r' | b'\n')) {
            let leading = buf
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            let _ = buf.split_to(leading);
        }
        if let Some(end) = scan.feed(&buf)? {
            if end > MAX_HEAD {
                return Err(Refusal::HeadersTooLarge);
            }
            return Ok(Some(buf));
        }
        if buf.len() >= MAX_HEAD {
            return Err(Refusal::HeadersTooLarge);
        }
        let until = *deadline.get_or_insert_with(|| Instant::now() + header_timeout);
        match within(until, stream.read_buf(&mut buf)).await {
            Some(Ok(n)) if n > 0 => {}
            Some(_) => return Err(Refusal::Disconnected),
            None if buf.is_empty() => return Ok(None),
            None => return Err(Refusal::HeaderTimeout),
        }
    }
}

/// `f`'s output, or `None` when `deadline` passes first (Pingora's cheap timer wheel).
async fn within<F: std::future::Future>(deadline: Instant, f: F) -> Option<F::Output> {
    let left = deadline.saturating_duration_since(Instant::now());
    fast_timeout(left, f).await.ok()
}

/// The request head read so far, line by line as bytes arrive: where it ends, and whether its
/// framing is one a front end and a back end could read differently.
///
/// Refused (as JSON, connection closed): two `Host`s; more than one `Content-Length`, or one that
/// is not plain digits; `Transfer-Encoding` other than a single `chunked`, on HTTP/1.0, or beside
/// a `Content-Length` (RFC 9112 §6.1 lets a server refuse that pair; two parsers reading it
/// differently is how requests are smuggled); `Content_Length` or `Transfer_Encoding`, which
/// some upstreams read as the real ones while Pingora does not; more than [`MAX_HEADERS`]
/// lines. A head that is not valid HTTP at all is left to Pingora's parser, which refuses it
/// with a bare 400 and closes; a request line with bytes it may not hold raw (a space, a control
/// byte) is percent-encoded by Pingora and then judged by the target checks, while its headers
/// are checked here all the same.
///
/// This runs for every request, so it is a scan, not a parse: line ends come from `memchr`, and
/// a header name is only compared when a `:` stands where one of the three names would end
/// (HTTP allows no space before it).
#[derive(Default)]
struct HeadScan {
    /// Bytes of complete lines already looked at.
    pos: usize,
    seen_request_line: bool,
    http_1_0: bool,
    lines: usize,
    hosts: u8,
    lengths: u8,
    codings: u8,
}

impl HeadScan {
    /// Looks at the lines of `buf` that completed since the last call: `Some(end)` once the
    /// blank line that ends the head is in (`end` just past it).
    fn feed(&mut self, buf: &[u8]) -> Result<Option<usize>, Refusal> {
        while let Some(at) = memchr::memchr(b'\n', &buf[self.pos..]) {
            let lf = self.pos + at;
            let line = &buf[self.pos..lf];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.pos = lf + 1;
            if !self.seen_request_line {
                self.seen_request_line = true;
                self.http_1_0 = line.ends_with(b" HTTP/1.0");
                continue;
            }
            if line.is_empty() {
                let framing = self.hosts <= 1
                    && self.lengths <= 1
                    && self.codings <= 1
                    && (self.codings == 0 || (self.lengths == 0 && !self.http_1_0));
                return framing.then_some(Some(self.pos)).ok_or(Refusal::Malformed);
            }
            self.lines += 1;
            if self.lines > MAX_HEADERS {
                return Err(Refusal::HeadersTooLarge);
            }
            self.header(line)?;
        }
        Ok(None)
    }

    fn header(&mut self, line: &[u8]) -> Result<(), Refusal> {
        let named = |canon: &[u8]| {
            line.get(canon.len()) == Some(&b':')
                && line[..canon.len()].iter().zip(canon).all(|(n, c)| {
                    (if *n == b'_' {
                        b'-'
                    } else {
                        n.to_ascii_lowercase()
                    }) == *c
                })
        };
        let underscore = |len: usize| line[..len].contains(&b'_');
        if named(b"host") {
            self.hosts = self.hosts.saturating_add(1);
        } else if named(b"content-length") {
            self.lengths = self.lengths.saturating_add(1);
            let value = line[15..].trim_ascii();
            if underscore(14)
                || value.is_empty()
                || value.len() > 18
                || !value.iter().all(u8::is_ascii_digit)
            {
                return Err(Refusal::Malformed);
            }
        } else if named(b"transfer-encoding") {
            self.codings = self.codings.saturating_add(1);
            if underscore(17) || !line[18..].trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(Refusal::Malformed);
            }
        }
        Ok(())
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
    fn heads_end_at_the_first_blank_line_however_they_arrive() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody";
        let end = head.len() - 4;
        assert_eq!(HeadScan::default().feed(head), Ok(Some(end)));
        for split in 0..head.len() {
            // Scanning resumes where the last read stopped.
            let mut scan = HeadScan::default();
            let first = scan.feed(&head[..split]).unwrap();
            let found = first.or_else(|| scan.feed(head).unwrap());
            assert_eq!(found, Some(end), "split at {split}");
        }
        assert_eq!(
            HeadScan::default().feed(b"GET / HTTP/1.1\nHost: a\n\n"),
            Ok(Some(24))
        );
        assert_eq!(
            HeadScan::default().feed(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            Ok(None)
        );
    }

    #[test]
    fn framing_that_two_parsers_could_read_differently_is_refused() {
        let check = |head: &str| HeadScan::default().feed(head.as_bytes()).map(|_| ());
        assert_eq!(check("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
        assert_eq!(check("GET / HTTP/1.1\nHost: a\n\n"), Ok(()));
        assert_eq!(
            check("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Ok(())
        );
        assert_eq!(
            check("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            Ok(())
        );
        // Not HTTP at all: left to Pingora's parser (a bare 400).
        assert_eq!(check("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"), Ok(()));
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 5\r\nCONTENT-LENGTH: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent_Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer_Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
            // A request line Pingora percent-encodes before parsing: its headers count as well.
            "POST /a b HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /a\x01b HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "GET /a b HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "POST /a b HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(check(bad), Err(Refusal::Malformed), "{bad:?}");
        }
        let many: String = (0..300).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            check(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Err(Refusal::HeadersTooLarge)
        );
    }

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
