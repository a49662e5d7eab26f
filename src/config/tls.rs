//! `[server.tls]` (the HTTPS listener's certificates) and the TLS keys of `[[upstreams]]`.
//!
//! Certificate files are opened here, while the configuration is read, so `authgate check` and a
//! reload refuse a key that does not match its certificate, a certificate that has expired or
//! one that does not cover the names it is chosen for, before anything is served with it.

use std::path::{Path, PathBuf};

use super::reader::Sec;
use super::Problem;
use crate::tls::{self, Loaded};

/// One certificate chain with its private key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// A certificate chosen by the name the client asks for (SNI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCert {
    /// Lower-case names; `*.example.com` stands for one more label.
    pub server_names: Vec<String>,
    pub pair: CertPair,
}

/// `[server.tls]`: the certificate every client gets unless its SNI picks another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub default: CertPair,
    pub certs: Vec<SniCert>,
}

impl TlsConfig {
    /// Every pair with the label its expiry gauge carries: `default`, then each SNI
    /// certificate's first name.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &CertPair)> {
        std::iter::once(("default", &self.default)).chain(
            self.certs
                .iter()
                .map(|c| (c.server_names[0].as_str(), &c.pair)),
        )
    }
}

/// The TLS keys of one `[[upstreams]]` entry with `tls = true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// The name sent and verified; `None`: the host of each address as written.
    pub sni: Option<String>,
    /// Roots to verify the upstream against instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// A client certificate for mutual TLS.
    pub client: Option<CertPair>,
    /// `false` accepts any certificate (warned about loudly at start).
    pub verify: bool,
}

fn pair(s: &Sec<'_>, base: &Path, p: &mut Vec<Problem>) -> Option<(CertPair, Loaded)> {
    let cert = s.nonempty_string("cert_file", "", p);
    let key = s.nonempty_string("key_file", "", p);
    if cert.is_empty() || key.is_empty() {
        return None;
    }
    let pair = CertPair {
        cert_file: base.join(cert),
        key_file: base.join(key),
    };
    match tls::load_pair(&pair.cert_file, &pair.key_file) {
        Ok(loaded) => Some((pair, loaded)),
        Err(e) => {
            p.push(s.problem(
                "cert_file",
                format!("{:?}", pair.cert_file.display().to_string()),
                e,
            ));
            None
        }
    }
}

/// `[server.tls]`; `None` when it has problems.
pub(super) fn read_tls(s: &Sec<'_>, base: &Path, p: &mut Vec<Problem>) -> Option<TlsConfig> {
    s.only_keys(&["cert_file", "key_file", "certs"], p);
    // An expired certificate is not a problem here: a gateway whose renewal failed must still
    // restart and reload. `check` refuses it (`config::expired`), and start and reload log it.
    let default = pair(s, base, p).map(|(pair, _)| pair);
    let mut certs = Vec::new();
    let mut claimed: Vec<String> = Vec::new();
    for c in s.array_of_tables("certs", p) {
        c.only_keys(&["server_names", "cert_file", "key_file"], p);
        let names: Vec<String> = c.strings("server_names", &[], p);
        if names.is_empty() {
            p.push(c.problem(
                "server_names",
                "[]",
                "list the names this certificate is for, such as [\"api.example.com\"]",
            ));
        }
        for n in &names {
            if !tls::is_server_name_pattern(n) {
                p.push(c.problem(
                    "server_names",
                    format!("{n:?}"),
                    "use lower-case DNS names such as \"api.example.com\" or \"*.example.com\"",
                ));
            } else if claimed.contains(n) {
                p.push(c.problem(
                    "server_names",
                    format!("{n:?}"),
                    "already listed for another certificate: each name picks one",
                ));
            } else {
                claimed.push(n.clone());
            }
        }
        if let Some((pair, loaded)) = pair(&c, base, p) {
            for n in names.iter().filter(|n| !loaded.covers(n)) {
                p.push(c.problem(
                    "server_names",
                    format!("{n:?}"),
                    format!(
                        "the certificate does not cover this name (it names {}): clients would refuse it",
                        loaded.names.join(", ")
                    ),
                ));
            }
            if !names.is_empty() {
                certs.push(SniCert {
                    server_names: names,
                    pair,
                });
            }
        }
    }
    Some(TlsConfig {
        default: default?,
        certs,
    })
}

/// The TLS keys of an `[[upstreams]]` entry: `Some` when `tls = true`.
pub(super) fn read_upstream_tls(
    s: &Sec<'_>,
    base: &Path,
    p: &mut Vec<Problem>,
) -> Option<UpstreamTls> {
    let on = s.bool("tls", false, p);
    let keys = [
        "sni",
        "ca_file",
        "client_cert_file",
        "client_key_file",
        "verify",
    ];
    if !on {
        for k in keys.iter().filter(|k| s.t.contains_key(**k)) {
            p.push(s.problem(
                k,
                "(set)",
                "only used with tls = true: add it, or remove this key",
            ));
        }
        return None;
    }
    let sni = s.string("sni", "", p);
    let name_or_ip = |n: &str| {
        !n.starts_with('*')
            && (tls::is_server_name_pattern(n) || n.parse::<std::net::IpAddr>().is_ok())
    };
    if !sni.is_empty() && !name_or_ip(&sni) {
        p.push(s.problem(
            "sni",
            format!("{sni:?}"),
            "use the upstream's lower-case DNS name, such as \"api.internal\"",
        ));
    }
    let ca_file = s.string("ca_file", "", p);
    let ca_file = (!ca_file.is_empty()).then(|| base.join(ca_file));
    if let Some(path) = &ca_file {
        if let Err(e) = tls::load_roots(path) {
            p.push(s.problem("ca_file", format!("{:?}", path.display().to_string()), e));
        }
    }
    let cert = s.string("client_cert_file", "", p);
    let key = s.string("client_key_file", "", p);
    let client = match (cert.is_empty(), key.is_empty()) {
        (true, true) => None,
        (false, false) => {
            let pair = CertPair {
                cert_file: base.join(cert),
                key_file: base.join(key),
            };
            match tls::load_pair(&pair.cert_file, &pair.key_file) {
                Ok(_) => Some(pair),
                Err(e) => {
                    p.push(s.problem(
                        "client_cert_file",
                        format!("{:?}", pair.cert_file.display().to_string()),
                        e,
                    ));
                    None
                }
            }
        }
        _ => {
            p.push(s.problem(
                "client_cert_file",
                "(one of client_cert_file, client_key_file)",
                "mutual TLS needs both the certificate and its key",
            ));
            None
        }
    };
    let verify = s.bool("verify", true, p);
    if !verify && ca_file.is_some() {
        p.push(s.problem(
            "verify",
            "false with ca_file",
            "ca_file is not used when nothing is verified: remove one of them",
        ));
    }
    Some(UpstreamTls {
        sni: (!sni.is_empty()).then_some(sni),
        ca_file,
        client,
        verify,
    })
}
