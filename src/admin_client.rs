//! The command line's side of the admin listener (`authgate reload`, `authgate healthcheck`):
//! where the running gateway's admin listener is, and one request to it over reqwest.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// The admin listener a configuration file names, read leniently: only `server.admin_listen`
/// (default `127.0.0.1:9091`), so a health probe does not depend on the rest of the file (keys,
/// secrets from the environment) being valid, or on an edit the gateway has not reloaded.
pub fn admin_listen_of(path: &Path) -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: not TOML: {e}", path.display()))?;
    let value = table
        .get("server")
        .and_then(|s| s.get("admin_listen"))
        .and_then(|v| v.as_str())
        .unwrap_or("127.0.0.1:9091");
    value.parse().map_err(|_| {
        format!(
            "{}: server.admin_listen = {value:?} is not an address:port",
            path.display()
        )
    })
}

/// Where to reach a listener bound to `addr` from this machine: the loopback address of the
/// same family when it is bound to every address.
pub fn reachable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// One request to the admin listener: its status and body. Errors are connection failures and
/// timeouts, in words.
pub fn request(
    admin: SocketAddr,
    method: http::Method,
    path: &str,
    timeout: Duration,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        let url = format!("http://{}{path}", reachable(admin));
        let mut request = client.request(method, &url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answer = request
            .send()
            .await
            .map_err(|e| format!("no answer from admin_listen = {admin}: {}", error_chain(&e)))?;
        let status = answer.status().as_u16();
        let body = answer.text().await.map_err(|e| error_chain(&e))?;
        Ok((status, body))
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A new admin token: 32 random bytes, hex (64 characters), and its SHA-256 for
/// `[[admin.tokens]]`.
pub fn new_admin_token() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let digest: String = crate::config::sha256(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (token, digest)
}
