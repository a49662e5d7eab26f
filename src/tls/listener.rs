//! The HTTPS listener's certificates: the default one and those chosen by SNI, held behind an
//! [`ArcSwap`] so a renewed certificate is served to the next handshake while connections
//! already open keep theirs. They are read again on every configuration reload (`SIGHUP`,
//! `POST /reload`) and whenever the files change on disk (checked every few seconds), so a
//! renewal by certbot or cert-manager needs no restart and no signal.
//!
//! The handshake itself runs in the connection layer (`connections/tls.rs`), after the connection
//! caps and within the request-head timeout, and is counted there.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sha2::Digest;

use super::{format_time, load_pair, matches};
use crate::config::TlsConfig;
use crate::metrics::Metrics;
use crate::tokens::now;

/// A warning is due when a certificate has less than this left.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);
/// How often the certificate files are looked at for a renewal.
pub const WATCH_EVERY: Duration = Duration::from_secs(5);

/// The certificates served at one moment.
struct CertSet {
    default: Served,
    /// Each `server_names` entry (`*.example.com` for one label) with its certificate.
    named: Vec<(String, Served)>,
}

/// One certificate as served, with the names it covers.
#[derive(Clone)]
struct Served {
    key: Arc<CertifiedKey>,
    names: ServedNames,
}

/// The names (subjectAltName DNS names and IP addresses, lower case) of the certificate a TLS
/// connection was served: kept with the connection (Pingora's `SslDigest` extension), so a
/// request whose host it does not cover is answered `421 Misdirected Request` rather than
/// routed to another site's routes.
#[derive(Debug, Clone)]
pub struct ServedNames(Arc<[String]>);

impl ServedNames {
    /// Whether `host` (as `routes::check_host` returns it: a name, an IPv4 address or a
    /// bracketed IPv6 address, without the port) is covered, by the wildcard rule of RFC 6125.
    pub fn covers(&self, host: &[u8]) -> bool {
        let Ok(host) = std::str::from_utf8(host) else {
            return false;
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let ip = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&host)
            .parse::<std::net::IpAddr>()
            .ok();
        self.0.iter().any(|n| match ip {
            Some(ip) => n.parse::<std::net::IpAddr>() == Ok(ip),
            None => matches(n, &host),
        })
    }
}

impl CertSet {
    /// Loads every pair; also returns each gauge label with its expiry.
    fn load(cfg: &TlsConfig) -> Result<(CertSet, Vec<(String, i64)>), String> {
        let served = |l: &crate::tls::Loaded| Served {
            key: l.key.clone(),
            names: ServedNames(l.names.clone().into()),
        };
        let default = load_pair(&cfg.default.cert_file, &cfg.default.key_file)?;
        let mut expiry = vec![("default".to_string(), default.not_after)];
        let mut named = Vec::new();
        for c in &cfg.certs {
            let loaded = load_pair(&c.pair.cert_file, &c.pair.key_file)?;
            expiry.push((c.server_names[0].clone(), loaded.not_after));
            let one = served(&loaded);
            named.extend(c.server_names.iter().map(|n| (n.clone(), one.clone())));
        }
        let set = CertSet {
            default: served(&default),
            named,
        };
        Ok((set, expiry))
    }

    /// The certificate for a client that asked for `sni` (none: an IP address was dialled): an
    /// exact name first, then a wildcard, else the default.
    fn pick(&self, sni: Option<&str>) -> &Served {
        let Some(sni) = sni else {
            return &self.default;
        };
        let sni = sni.trim_end_matches('.').to_ascii_lowercase();
        let exact = || self.named.iter().find(|(n, _)| *n == sni);
        let wildcard = || self.named.iter().find(|(n, _)| matches(n, &sni));
        exact()
            .or_else(wildcard)
            .map_or(&self.default, |(_, s)| s)
    }
}

/// The served certificates and where they come from.
pub struct Certs {
    set: ArcSwap<CertSet>,
    /// The configuration they were read by (a reload may name other files), and a digest of
    /// the files' contents when last read, so the watch reloads only on a change. Held while a
    /// set is installed, and by the watch from reading the paths to installing what it read, so
    /// the watch never installs an older configuration's files over a reload's.
    source: Mutex<(TlsConfig, String)>,
    metrics: Arc<Metrics>,
}

/// Certificates read and checked, not yet served ([`Certs::install`]).
pub struct Prepared {
    set: CertSet,
    expiry: Vec<(String, i64)>,
    config: TlsConfig,
    read: String,
}

/// A digest of every file a TLS configuration names (missing files count as empty).
fn fingerprint(cfg: &TlsConfig) -> String {
    let mut d = sha2::Sha256::new();
    for (_, pair) in cfg.pairs() {
        for path in [&pair.cert_file, &pair.key_file] {
            d.update(std::fs::read(path).unwrap_or_default());
            d.update([0]);
        }
    }
    d.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Certs {
    pub fn new(cfg: &TlsConfig, metrics: Arc<Metrics>) -> Result<Arc<Certs>, String> {
        let p = Certs::prepare(cfg)?;
        let certs = Certs {
            set: ArcSwap::from_pointee(p.set),
            source: Mutex::new((p.config, p.read)),
            metrics,
        };
        certs.publish(&p.expiry);
        Ok(Arc::new(certs))
    }

    fn publish(&self, expiry: &[(String, i64)]) {
        let gauge = &self.metrics.tls_cert_expiry;
        gauge.reset();
        for (name, at) in expiry {
            gauge.with_label_values(&[name]).set(*at);
            if *at < now() {
                tracing::error!(certificate = %name, expired = %format_time(*at),
                    "serving an EXPIRED TLS certificate: clients refuse it; renew it");
            } else if *at - now() < EXPIRY_WARNING.as_secs() as i64 {
                tracing::warn!(certificate = %name, expires = %format_time(*at),
                    "a served TLS certificate expires within 14 days: renew it");
            }
        }
    }

    /// Reads the certificates `cfg` names and checks each key against its certificate.
    pub fn prepare(cfg: &TlsConfig) -> Result<Prepared, String> {
        let read = fingerprint(cfg);
        let (set, expiry) = CertSet::load(cfg)?;
        Ok(Prepared {
            set,
            expiry,
            config: cfg.clone(),
            read,
        })
    }

    /// Serves `p` to the next handshakes; open connections keep what they were given.
    pub fn install(&self, p: Prepared) {
        self.swap(&mut self.source.lock().expect("not poisoned"), p);
    }

    /// [`Self::install`] with the source lock already held.
    fn swap(&self, source: &mut (TlsConfig, String), p: Prepared) {
        self.set.store(Arc::new(p.set));
        *source = (p.config, p.read);
        self.publish(&p.expiry);
    }

    /// The rustls configuration of the HTTPS listener: TLS 1.2 and 1.3, HTTP/2 preferred over
    /// HTTP/1.1 by ALPN, certificates from `self` at each handshake.
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Looks at the files every [`WATCH_EVERY`] and serves them again when their content
    /// changed. A half-written renewal (a new certificate beside the old key) is refused once,
    /// logged, and tried again on the next change.
    pub fn watch(self: &Arc<Self>, runtime: &tokio::runtime::Handle) {
        let me = self.clone();
        runtime.spawn(async move {
            let mut tried = String::new();
            let mut tick = tokio::time::interval(WATCH_EVERY);
            loop {
                tick.tick().await;
                let mut source = me.source.lock().expect("not poisoned");
                let now = fingerprint(&source.0);
                if now == tried || now == source.1 {
                    continue;
                }
                tried = now;
                match Certs::prepare(&source.0) {
                    Ok(p) => {
                        me.swap(&mut source, p);
                        tracing::info!("TLS certificates changed on disk: now serving them");
                    }
                    Err(e) => tracing::error!(problem = %e,
                        "TLS certificates changed on disk but cannot be served: still serving the previous ones"),
                }
            }
        });
    }
}

/// For `authgate check`: certificates that have expired (or are not valid yet), and those that
/// expire within 14 days.
pub fn expiry_findings(cfg: &TlsConfig) -> (Vec<String>, Vec<String>) {
    let (mut expired, mut soon) = (Vec::new(), Vec::new());
    for (name, pair) in cfg.pairs() {
        let Ok(loaded) = load_pair(&pair.cert_file, &pair.key_file) else {
            continue;
        };
        let file = pair.cert_file.display();
        if loaded.not_after < now() {
            expired.push(format!(
                "server.tls: the {name} certificate ({file}) expired at {}: renew it, clients refuse it",
                format_time(loaded.not_after)
            ));
        } else if loaded.not_before > now() {
            expired.push(format!(
                "server.tls: the {name} certificate ({file}) is valid only from {}",
                format_time(loaded.not_before)
            ));
        } else if loaded.not_after - now() < EXPIRY_WARNING.as_secs() as i64 {
            soon.push(format!(
                "server.tls: the {name} certificate ({file}) expires at {}, within 14 days: renew it",
                format_time(loaded.not_after)
            ));
        }
        if loaded.key.key.algorithm() == rustls::SignatureAlgorithm::RSA {
            soon.push(format!(
                "server.tls: the {name} certificate ({file}) has an RSA key: every handshake costs an RSA signature \
                 (about a millisecond of CPU here), which makes a handshake flood expensive; an ECDSA P-256 certificate \
                 costs a fraction (e.g. certbot --key-type ecdsa)"
            ));
        }
    }
    (expired, soon)
}

#[derive(Debug)]
struct Resolver(Arc<Certs>);

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Certs")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.set.load().pick(hello.server_name()).key.clone())
    }
}

impl Certs {
    /// The names of the certificate a client asking for `sni` is served: what the resolver
    /// picked in its handshake (the same rule, read again right after it).
    pub fn served_names(&self, sni: Option<&str>) -> ServedNames {
        self.set.load().pick(sni).names.clone()
    }
}

/// Records the served certificate's names on each connection once its handshake is done.
pub struct RecordServed(pub Arc<Certs>);

#[async_trait::async_trait]
impl pingora::listeners::TlsAccept for RecordServed {
    async fn handshake_complete_callback(
        &self,
        tls: &pingora::protocols::tls::TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        Some(Arc::new(self.0.served_names(tls.server_name())))
    }
}
