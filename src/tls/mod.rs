//! TLS on both sides.
//!
//! - This file: reading PEM certificate chains and keys ([`load_pair`], [`load_roots`]), the
//!   names a certificate covers, and the helpers `authgate check` and the config reader use.
//! - [`listener`]: the HTTPS listener's certificates chosen by SNI and swapped in at run time
//!   ([`listener::Certs`]), the rustls server configuration (TLS 1.2 and 1.3, HTTP/2 and
//!   HTTP/1.1 by ALPN), the watch on the files, expiry warnings.
//! - [`upstream`]: what a `[[upstreams]]` entry with `tls = true` puts on its Pingora peers.

pub mod listener;
pub mod upstream;

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// A certificate chain with its key, checked to belong together, and what the leaf says.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// The leaf's DNS names and IP addresses (subjectAltName), lower-case.
    pub names: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
}

impl Loaded {
    /// Whether a client asking for `name` accepts this certificate (RFC 6125: a wildcard stands
    /// for exactly one left-most label). `name` may itself be a `*.` pattern: then the
    /// certificate must carry that wildcard.
    pub fn covers(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.names.iter().any(|n| matches(n, &name))
    }
}

/// RFC 3339, for messages (`2026-12-01T10:00:00Z`).
pub fn format_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// Whether `pattern` (a name, or `*.` and a name) stands for `name` (RFC 6125: a wildcard is
/// exactly one left-most label). Both lower case; a `*.` name stands for itself.
pub fn matches(pattern: &str, name: &str) -> bool {
    pattern == name
        || pattern.strip_prefix("*.").is_some_and(|suffix| {
            name.split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && label != "*" && rest == suffix)
        })
}

/// A lower-case DNS name, or `*.` and one: what `server_names` and `sni` accept.
pub fn is_server_name_pattern(n: &str) -> bool {
    let name = n.strip_prefix("*.").unwrap_or(n);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        && name.contains('.')
        || n == "localhost"
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The certificates of a PEM file, leaf first.
pub fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not PEM certificates: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    // Pingora parses upstream roots and client chains again with x509-parser, and panics on
    // what it cannot read: refuse that here.
    for c in &chain {
        x509_parser::parse_x509_certificate(c)
            .map_err(|e| format!("{}: unreadable certificate: {e}", path.display()))?;
    }
    Ok(chain)
}

/// Trust anchors for verifying upstreams: every certificate of a PEM file.
pub fn load_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let roots = load_chain(path)?;
    let mut store = rustls::RootCertStore::empty();
    for r in &roots {
        store
            .add(r.clone())
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(&read(path)?)
        .map_err(|e| format!("{} holds no private key: {e}", path.display()))
}

/// Reads a certificate chain and its private key (PKCS#8, PKCS#1 or SEC1 PEM) and checks that
/// the key is the certificate's.
pub fn load_pair(cert: &Path, key: &Path) -> Result<Loaded, String> {
    let chain = load_chain(cert)?;
    let key_der = load_key(key)?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("{}: unusable private key: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(format!(
                "{} is not the key of {} ({e})",
                key.display(),
                cert.display()
            ))
        }
    }
    let (names, not_before, not_after) = describe(&certified.cert[0])
        .map_err(|e| format!("{}: cannot read the certificate: {e}", cert.display()))?;
    Ok(Loaded {
        key: Arc::new(certified),
        names,
        not_before,
        not_after,
    })
}

/// The leaf's subjectAltName DNS names and IP addresses, and its validity.
fn describe(leaf: &CertificateDer<'_>) -> Result<(Vec<String>, i64, i64), String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push(d.to_ascii_lowercase()),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => names.push(
                        std::net::IpAddr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string(),
                    ),
                    16 => names.push(
                        std::net::IpAddr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    if names.is_empty() {
        return Err("it names no host (no subjectAltName): clients ignore the common name".into());
    }
    let validity = cert.validity();
    Ok((
        names,
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(names: &[&str]) -> Loaded {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["x.test".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider
            .key_provider
            .load_private_key(PrivateKeyDer::try_from(key.serialize_der()).unwrap())
            .unwrap();
        Loaded {
            key: Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing)),
            names: names.iter().map(|n| n.to_string()).collect(),
            not_before: 0,
            not_after: 0,
        }
    }

    #[test]
    fn wildcards_cover_exactly_one_label() {
        let l = loaded(&["*.example.com", "example.org"]);
        assert!(l.covers("api.example.com"));
        assert!(l.covers("API.Example.com"));
        assert!(l.covers("*.example.com"));
        assert!(!l.covers("example.com"));
        assert!(!l.covers("a.b.example.com"));
        assert!(!l.covers(".example.com"));
        assert!(l.covers("example.org"));
        assert!(!l.covers("www.example.org"));
    }

    #[test]
    fn server_name_patterns() {
        for ok in ["api.example.com", "*.example.com", "localhost", "a-b.c0"] {
            assert!(is_server_name_pattern(ok), "{ok}");
        }
        for bad in [
            "",
            "API.example.com",
            "*.",
            "*",
            "a..b",
            "-a.b",
            "a.b.",
            "a_b.c",
            "x.*.com",
            "nodot",
        ] {
            assert!(!is_server_name_pattern(bad), "{bad}");
        }
    }
}
