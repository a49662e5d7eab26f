//! Connections on the HTTPS listener (`server.tls_listen`): the TLS handshake, within the
//! request-head deadline and counted, and for HTTP/2 a deadline on the client preface.
//!
//! Pingora's listener hands every connection over as plain TCP; the handshake is ours so it
//! runs after the connection caps, is bounded like a request head, and is counted in
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

use super::head::within;
use crate::metrics::Metrics;

/// The HTTPS listener: connections accepted on its port are TLS.
pub struct TlsSide {
    pub port: u16,
    pub acceptor: Acceptor,
    /// Records on each connection the names of the certificate it was served.
    pub served: crate::tls::listener::RecordServed,
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
        deadline: Instant,
        metrics: &Metrics,
    ) -> Option<Stream> {
        // Pingora's listener hands over its TCP stream boxed; the handshake wants it typed.
        let tcp = match stream.into_any().downcast::<L4Stream>() {
            Ok(tcp) => *tcp,
            Err(_) => {
                tracing::error!("a connection on the HTTPS listener is not a TCP stream");
                return None;
            }
        };
        let handshake = pingora::protocols::tls::server::handshake_with_callback(
            &self.acceptor,
            tcp,
            &self.served,
        );
        let (label, stream) = match within(deadline, handshake).await {
            Some(Ok(s)) => ("ok", Some(s)),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                ("failed", None)
            }
            None => {
                tracing::debug!("no TLS handshake within server.client_header_timeout_ms");
                ("timeout", None)
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
