//! Certificates made in the test (rcgen), a TLS client that says which certificate it was given
//! and which protocol was agreed, and an HTTPS upstream (HTTP/1.1 and HTTP/2 by ALPN, optional
//! client certificates) that records what reaches it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

use super::{parse_response, RawResponse, Seen};

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate authority of the test's own.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub pem: String,
}

/// A certificate with its key, as PEM, and its DER to recognise it by.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Leaf {
    /// Writes `{stem}.pem` and `{stem}.key` into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { params, key, pem }
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid from a day ago for
    /// `days` more days.
    pub fn leaf_for_days(&self, names: &[&str], days: i64) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(days);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(params)
    }

    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_for_days(names, 90)
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap())
            .unwrap();
        roots
    }
}

/// A TLS connection to `addr` asking for `sni`, trusting only `ca`, offering `alpn`.
pub async fn connect(addr: SocketAddr, sni: &str, ca: &Ca, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    try_connect(addr, sni, ca, alpn)
        .await
        .unwrap_or_else(|e| panic!("TLS to {addr} as {sni}: {e}"))
}

pub async fn try_connect(
    addr: SocketAddr,
    sni: &str,
    ca: &Ca,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    try_connect_from("127.0.0.1", addr, sni, ca, alpn).await
}

/// [`try_connect`] from a chosen loopback source address (127.0.0.2, ...): another client.
pub async fn try_connect_from(
    source: &str,
    addr: SocketAddr,
    sni: &str,
    ca: &Ca,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().unwrap())?;
    let tcp = socket.connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
}

/// The leaf certificate the server presented.
pub fn presented(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// The protocol agreed by ALPN.
pub fn agreed(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(|p| p.to_vec())
}

/// One HTTP/1.1 request on an open TLS connection, keeping it open.
pub async fn exchange(stream: &mut TlsStream<TcpStream>, request: &str) -> RawResponse {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "the connection closed before the answer was complete"
        );
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            if buf.len() >= end + 4 + len {
                return parse_response(&buf);
            }
        }
    }
}

/// A request from [`super::request`] that keeps its connection open.
pub fn keep_alive(request: String) -> String {
    request.replace("Connection: close\r\n", "")
}

/// `request` (made by `support::get` and friends, for `gateway.test`) for `host` instead: what
/// a real client sends over TLS, the name it asked SNI for (or the address it dialled).
pub fn for_host(request: &str, host: &str) -> String {
    request.replace("Host: gateway.test\r\n", &format!("Host: {host}\r\n"))
}

/// One HTTP/1.1 request over a new TLS connection, for the host it asked SNI for.
pub async fn https(addr: SocketAddr, sni: &str, ca: &Ca, request: &str) -> RawResponse {
    let mut s = connect(addr, sni, ca, &[b"http/1.1"]).await;
    exchange(&mut s, &for_host(request, sni)).await
}

/// An HTTPS upstream: answers `200 {"upstream": name, "version": ...}` to everything and
/// records each request, with its HTTP version as the header `x-seen-version` (and an HTTP/2
/// request's `:authority` as `x-seen-authority`).
pub struct TlsUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsUpstream {
    /// `client_ca`: require a client certificate signed by it.
    pub async fn start(name: &str, leaf: &Leaf, client_ca: Option<&Ca>) -> TlsUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let chain = vec![CertificateDer::from(leaf.der.clone())];
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(ca.roots()),
                    provider(),
                )
                .build()
                .unwrap(),
            ),
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, name) = (seen.clone(), name.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, s, name) = (acceptor.clone(), s.clone(), name.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (s, name) = (s.clone(), name.clone());
                            async move {
                                let version = format!("{:?}", req.version());
                                let mut headers: Vec<(String, String)> = req
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (
                                            k.to_string(),
                                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                        )
                                    })
                                    .collect();
                                headers.push(("x-seen-version".into(), version.clone()));
                                if let Some(a) = req.uri().authority() {
                                    headers.push(("x-seen-authority".into(), a.to_string()));
                                }
                                s.lock().unwrap().push(Seen {
                                    method: req.method().to_string(),
                                    target: req
                                        .uri()
                                        .path_and_query()
                                        .map_or("/".into(), |p| p.to_string()),
                                    headers,
                                    body: Vec::new(),
                                });
                                let body =
                                    serde_json::json!({"upstream": name, "version": version})
                                        .to_string();
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .header("content-type", "application/json")
                                        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
                });
            }
        });
        TlsUpstream { addr, seen, task }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
