//! Connections on the HTTPS listener (`server.tls_listen`): the TLS handshake, within the
//! request-head deadline and counted, and for HTTP/2 a deadline on the client preface.
//!
//! Pingora's listener hands every connection over as plain TCP; the handshake is ours so it
//! runs after the connection caps and within a per-address budget ([`Handshakes`]), on threads
//! of its own, is bounded like a request head, and is counted in
//! `authgate_tls_handshakes_total{result}`. A connection that agreed on HTTP/2 then goes to
//! Pingora's h2 server (`ServerApp::process_new` of the proxy), which has no deadline of its own
//! before the client's preface: [`Prefaced`] gives it one.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use std::net::IpAddr;

use ipnet::IpNet;

use super::head::within;
use crate::identity;
use crate::metrics::Metrics;

/// The HTTPS listener: connections accepted on its port are TLS.
pub struct TlsSide {
    pub port: u16,
    pub acceptor: Arc<Acceptor>,
    /// Records on each connection the names of the certificate it was served.
    pub served: Arc<crate::tls::listener::RecordServed>,
    pub handshakes: Handshakes,
}

type PerIp = governor::RateLimiter<
    IpAddr,
    governor::state::keyed::DashMapStateStore<IpAddr, ahash::RandomState>,
    governor::clock::DefaultClock,
>;

/// What a TLS handshake may cost us. A handshake is a signature (an RSA-2048 one takes a
/// millisecond of CPU), and a client can ask for one with a replayed ClientHello for a few
/// microseconds of its own: one address flooding new connections took both cores and starved
/// plain traffic. So:
/// - each client address (IPv6 per /64; trusted proxies exempt) has a budget of new TLS
///   connections, checked before any handshake work; beyond it the connection is closed;
/// - a handshake takes a place only once its whole ClientHello has arrived (a silent client
///   holds none), at most `tls_max_handshakes` in all and 16 per address; beyond, closed;
/// - the handshakes run on threads of their own (`tls_handshake_threads`), so however many
///   there are, the proxy's workers keep serving requests.
pub struct Handshakes {
    per_ip: Option<Arc<PerIp>>,
    trusted: Vec<IpNet>,
    slots: Arc<tokio::sync::Semaphore>,
    /// Handshakes under way per address: one address cannot take every slot.
    in_progress: Arc<crate::limits::PerAddress>,
    pool: tokio::runtime::Handle,
}

/// Handshakes one address may have under way at once.
const IN_PROGRESS_PER_IP: u32 = 16;
/// The largest first TLS record we wait for (a ClientHello is one record of at most 16 KiB).
const MAX_HELLO_RECORD: usize = 16 * 1024 + 256;

impl Handshakes {
    /// The handshake threads are started here and live as long as the process.
    pub fn new(
        per_ip: crate::config::Limit,
        max: usize,
        threads: usize,
        trusted: Vec<IpNet>,
    ) -> std::io::Result<Handshakes> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("authgate-tls")
            .enable_all()
            .build()?;
        let pool = runtime.handle().clone();
        // Kept for the life of the process, like the proxy's own runtimes.
        std::mem::forget(runtime);
        let per_ip = std::num::NonZeroU32::new(per_ip.per_minute).map(|rate| {
            let burst = std::num::NonZeroU32::new(per_ip.burst).unwrap_or(std::num::NonZeroU32::MIN);
            Arc::new(governor::RateLimiter::dashmap_with_clock_and_hasher(
                governor::Quota::per_minute(rate).allow_burst(burst),
                governor::clock::DefaultClock::default(),
                ahash::RandomState::new(),
            ))
        });
        if let Some(limiter) = per_ip.clone() {
            // Addresses whose budget is full again are forgotten: memory follows the active ones.
            pool.spawn(async move {
                let mut tick = tokio::time::interval(crate::limits::PRUNE_EVERY);
                loop {
                    tick.tick().await;
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
            });
        }
        Ok(Handshakes {
            per_ip,
            trusted,
            slots: Arc::new(tokio::sync::Semaphore::new(max)),
            in_progress: crate::limits::PerAddress::new(IN_PROGRESS_PER_IP),
            pool,
        })
    }

    /// Whether a new TLS connection from `peer` is within its address's budget.
    fn admit(&self, peer: Option<IpAddr>) -> bool {
        match (&self.per_ip, peer) {
            (Some(limiter), Some(ip)) if !identity::is_trusted(ip, &self.trusted) => {
                limiter.check_key(&identity::rate_key(ip)).is_ok()
            }
            _ => true,
        }
    }
}

impl TlsSide {
    /// Whether `stream` came in on the HTTPS listener (its port is its own: `check` refuses
    /// `tls_listen` on `listen`'s port or on port 0).
    pub(super) fn owns(&self, stream: &Stream) -> bool {
        stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).map(|a| a.port()))
            == Some(self.port)
    }

    /// The TLS handshake, finished by `deadline` or abandoned: a client that never completes it
    /// holds its permit no longer than one that never sends a head. An HTTP/2 connection comes
    /// back wrapped in [`Prefaced`] with the rest of that deadline.
    pub(super) async fn handshake(
        &self,
        stream: Stream,
        peer: Option<IpAddr>,
        deadline: Instant,
        metrics: &Metrics,
    ) -> Option<Stream> {
        let refused = |result: &str| {
            metrics.tls_handshakes.with_label_values(&[result]).inc();
            tracing::debug!(result, "TLS connection closed before its handshake");
            None
        };
        if !self.handshakes.admit(peer) {
            return refused("rate_limited");
        }
        // Pingora's listener hands over its TCP stream boxed; the handshake wants it typed.
        let tcp = match stream.into_any().downcast::<L4Stream>() {
            Ok(tcp) => *tcp,
            Err(_) => {
                tracing::error!("a connection on the HTTPS listener is not a TCP stream");
                return None;
            }
        };
        // No place is held while a client says nothing: the whole ClientHello must be here
        // first (peeked, so the handshake reads it again), within the head deadline. A client
        // that opens connections and stays silent costs a connection permit, not a handshake.
        let mut tcp = tcp;
        match within(deadline, whole_hello(&mut tcp)).await {
            Some(Ok(true)) => {}
            Some(Ok(false)) | Some(Err(_)) => return refused("failed"),
            None => return refused("timeout"),
        }
        let place = match peer.filter(|ip| !identity::is_trusted(*ip, &self.handshakes.trusted)) {
            Some(ip) => match self.handshakes.in_progress.acquire(identity::rate_key(ip)) {
                Some(place) => Some(place),
                None => return refused("busy"),
            },
            None => None,
        };
        let Ok(slot) = self.handshakes.slots.clone().try_acquire_owned() else {
            return refused("busy");
        };
        let (acceptor, served) = (self.acceptor.clone(), self.served.clone());
        let done = self
            .handshakes
            .pool
            .spawn(async move {
                let (_slot, _place) = (slot, place);
                let handshake = pingora::protocols::tls::server::handshake_with_callback(
                    &acceptor,
                    tcp,
                    served.as_ref(),
                );
                tokio::time::timeout_at(deadline, handshake).await
            })
            .await;
        let (label, stream) = match done {
            Ok(Ok(Ok(s))) => ("ok", Some(s)),
            Ok(Ok(Err(e))) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                ("failed", None)
            }
            Ok(Err(_)) => {
                tracing::debug!("no TLS handshake within server.client_header_timeout_ms");
                ("timeout", None)
            }
            Err(e) => {
                tracing::error!(error = %e, "the TLS handshake task ended abnormally");
                ("failed", None)
            }
        };
        metrics.tls_handshakes.with_label_values(&[label]).inc();
        let stream = stream?;
        Some(match stream.selected_alpn_proto() {
            Some(ALPN::H2) => Box::new(Prefaced::new(Box::new(stream), deadline)),
            _ => Box::new(stream),
        })
    }
}

/// Waits until the first TLS record, a whole ClientHello, has arrived, without consuming it.
/// `false` when what arrived is no TLS handshake record.
async fn whole_hello(tcp: &mut L4Stream) -> io::Result<bool> {
    let mut header = [0u8; 5];
    tcp.try_peek(&mut header).await?;
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if header[0] != 0x16 || len == 0 || len > MAX_HELLO_RECORD {
        return Ok(false);
    }
    let mut record = vec![0u8; 5 + len];
    tcp.try_peek(&mut record).await?;
    Ok(true)
}

/// `b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"`: what an HTTP/2 client sends first.
const PREFACE_LEN: usize = 24;

/// A stream whose reads fail with `TimedOut` once a deadline passes, until the first
/// [`PREFACE_LEN`] bytes have arrived; after that it is the stream itself.
#[derive(Debug)]
pub(super) struct Prefaced {
    inner: Stream,
    timer: Option<Pin<Box<Sleep>>>,
    left: usize,
}

impl Prefaced {
    pub(super) fn new(inner: Stream, deadline: Instant) -> Prefaced {
        Prefaced {
            inner,
            timer: Some(Box::pin(tokio::time::sleep_until(deadline))),
            left: PREFACE_LEN,
        }
    }
}

impl AsyncRead for Prefaced {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if let Some(timer) = me.timer.as_mut() {
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no HTTP/2 preface within server.client_header_timeout_ms",
                )));
            }
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut me.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            let n = buf.filled().len() - before;
            me.left = me.left.saturating_sub(n);
            if me.left == 0 || n == 0 {
                me.timer = None;
            }
        }
        read
    }
}

impl AsyncWrite for Prefaced {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Prefaced {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Prefaced {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Prefaced {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Prefaced {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Prefaced {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for Prefaced {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait]
impl Peek for Prefaced {}
