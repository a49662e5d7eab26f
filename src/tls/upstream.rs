//! TLS towards an upstream (`[[upstreams]]` with `tls = true`): the name sent and verified,
//! the roots (the system's, or `ca_file`), an optional client certificate, HTTP/2 by ALPN.
//! Everything is read once when the upstream is built, so no request reads a file.

use std::sync::Arc;

use pingora::prelude::HttpPeer;
use pingora::protocols::ALPN;
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};

use super::{load_chain, load_key, load_roots};
use crate::config::UpstreamTls;

/// What every peer of one TLS upstream carries.
#[derive(Clone)]
pub struct PeerTls {
    sni: Option<String>,
    roots: Option<Arc<[WrappedX509]>>,
    client: Option<Arc<CertKey>>,
    verify: bool,
}

impl PeerTls {
    pub fn new(cfg: &UpstreamTls) -> Result<PeerTls, String> {
        let roots = match &cfg.ca_file {
            None => None,
            Some(path) => Some(
                load_roots(path)?
                    .into_iter()
                    .map(|der| WrappedX509::new(der.to_vec(), parse_x509))
                    .collect::<Vec<_>>()
                    .into(),
            ),
        };
        let client = match &cfg.client {
            None => None,
            Some(pair) => {
                // Checked against the certificate when the configuration was read.
                let chain = load_chain(&pair.cert_file)?;
                let key = load_key(&pair.key_file)?;
                Some(Arc::new(CertKey::new(
                    chain.into_iter().map(|c| c.to_vec()).collect(),
                    key.secret_der().to_vec(),
                )))
            }
        };
        Ok(PeerTls {
            sni: cfg.sni.clone(),
            roots,
            client,
            verify: cfg.verify,
        })
    }

    /// The name to send and verify for a backend written as `host` (`api.internal`, or an
    /// address, which is then verified against the certificate's IP addresses).
    pub fn sni<'a>(&'a self, host: &'a str) -> &'a str {
        self.sni.as_deref().unwrap_or(host)
    }

    /// Sets the TLS options on a peer built with `tls = true`.
    pub fn apply(&self, peer: &mut HttpPeer, h2: bool) {
        let o = &mut peer.options;
        o.verify_cert = self.verify;
        o.verify_hostname = self.verify;
        o.ca = self.roots.clone();
        o.alpn = if h2 { ALPN::H2H1 } else { ALPN::H1 };
        peer.client_cert_key = self.client.clone();
    }
}
