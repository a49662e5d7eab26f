//! `[server]`, `[log]` and `[store]`: listeners, connection limits, trusted proxies, logging, the store.

use std::net::SocketAddr;

use ipnet::IpNet;

use super::reader::{env_or, Sec};
use super::{EnvLookup, Problem};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Public listener: proxied traffic and the gateway's own auth routes.
    pub listen: SocketAddr,
    /// Health and readiness (and metrics later); kept off the public listener so probes and
    /// scrapes are never reachable from the internet by accident.
    pub admin_listen: SocketAddr,
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// How long SIGTERM waits for in-flight requests before the process exits.
    pub grace_period_seconds: u64,
    /// Peers whose `X-Forwarded-For`/`X-Forwarded-Proto` are believed; nobody's by default.
    pub trusted_proxies: Vec<IpNet>,
    /// The whole request head must arrive within this (then 408 and close).
    pub client_header_timeout_ms: u64,
    /// How long a connection may sit idle between requests.
    pub keepalive_timeout_ms: u64,
    /// Open client connections in all; more are refused at once.
    pub max_connections: usize,
    /// Open client connections per address (IPv6 per /64); trusted proxies only count in all.
    pub max_connections_per_ip: u32,
    /// Reload when the configuration file changes (besides `SIGHUP` and `POST /reload`).
    pub watch_config: bool,
    /// The HTTPS listener (HTTP/2 and HTTP/1.1), beside `listen` (which may be
    /// kept for a load balancer's plain HTTP, or firewalled).
    pub tls_listen: Option<SocketAddr>,
    /// Its certificates (`[server.tls]`); set exactly when `tls_listen` is.
    pub tls: Option<super::TlsConfig>,
    /// New TLS connections per client address (IPv6 per /64), checked before the handshake;
    /// trusted proxies are not limited.
    pub tls_handshakes_per_ip: super::Limit,
    /// TLS handshakes under way at once, all addresses together.
    pub tls_max_handshakes: usize,
    /// Threads the TLS handshakes run on, apart from the proxy's workers.
    pub tls_handshake_threads: usize,
    /// HTTP/2 streams open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 streams open at once from one client address, over all its connections.
    pub h2_streams_per_ip: u32,
    /// How long each write of an HTTP/2 answer may wait for the client to accept more (a window
    /// it never opens, or stops updating); then the stream is reset.
    pub h2_stall_timeout_ms: u64,
}

pub(super) fn read_server(
    s: &Sec<'_>,
    base: &std::path::Path,
    p: &mut Vec<Problem>,
) -> ServerConfig {
    s.only_keys(
        &[
            "listen",
            "admin_listen",
            "threads",
            "grace_period_seconds",
            "trusted_proxies",
            "client_header_timeout_ms",
            "keepalive_timeout_ms",
            "max_connections",
            "max_connections_per_ip",
            "watch_config",
            "tls_listen",
            "tls",
            "tls_handshakes_per_ip_per_minute",
            "tls_handshakes_per_ip_burst",
            "tls_max_handshakes",
            "tls_handshake_threads",
            "h2_max_concurrent_streams",
            "h2_streams_per_ip",
            "h2_stall_timeout_ms",
        ],
        p,
    );
    let listen = s.socket_addr("listen", "0.0.0.0:8000", p);
    let admin_listen = s.socket_addr("admin_listen", "127.0.0.1:9091", p);
    if listen == admin_listen {
        p.push(s.problem(
            "admin_listen",
            admin_listen.to_string(),
            "must differ from server.listen: the admin endpoints are never served on the public listener",
        ));
    }
    let tls_listen =
        s.t.contains_key("tls_listen")
            .then(|| s.socket_addr("tls_listen", "0.0.0.0:8443", p));
    let tls =
        s.t.contains_key("tls")
            .then(|| super::tls::read_tls(&s.table("tls", p), base, p))
            .flatten();
    match (tls_listen, s.t.contains_key("tls")) {
        (Some(at), _) if at.port() == listen.port() || at == admin_listen || at.port() == 0 => {
            p.push(s.problem(
                "tls_listen",
                at.to_string(),
                "must use a port of its own (not 0), apart from server.listen and server.admin_listen",
            ));
        }
        (Some(at), false) => p.push(s.problem(
            "tls_listen",
            at.to_string(),
            "needs its certificate: add [server.tls] with cert_file and key_file",
        )),
        (None, true) => p.push(s.problem(
            "tls",
            "(set)",
            "certificates without an HTTPS listener: add server.tls_listen = \"0.0.0.0:8443\"",
        )),
        _ => {}
    }
    let threads = s.int("threads", 2, 1, 256, p) as usize;
    let grace_period_seconds = s.int("grace_period_seconds", 10, 0, 3600, p);
    let trusted_proxies = s
        .strings("trusted_proxies", &[], p)
        .into_iter()
        .filter_map(|c| match parse_cidr(&c) {
            Some(net) => Some(net),
            None => {
                p.push(s.problem(
                    "trusted_proxies",
                    format!("{c:?}"),
                    "each entry must be an IP address or CIDR such as \"10.0.0.0/8\"",
                ));
                None
            }
        })
        .collect();
    ServerConfig {
        listen,
        admin_listen,
        threads,
        grace_period_seconds,
        trusted_proxies,
        client_header_timeout_ms: s.int("client_header_timeout_ms", 10_000, 100, 600_000, p),
        keepalive_timeout_ms: s.int("keepalive_timeout_ms", 60_000, 1_000, 3_600_000, p),
        max_connections: s.int("max_connections", 8192, 1, 1_000_000, p) as usize,
        max_connections_per_ip: s.int("max_connections_per_ip", 256, 1, 1_000_000, p) as u32,
        watch_config: s.bool("watch_config", false, p),
        tls: tls.filter(|_| tls_listen.is_some()),
        tls_listen,
        // Sized like the session budget, for carrier NAT: thousands of phones behind one
        // address open connections too. One address alone then forces at most 50 handshakes a
        // second (an RSA-2048 signature each), not thousands.
        tls_handshakes_per_ip: super::Limit {
            per_minute: s.int("tls_handshakes_per_ip_per_minute", 3000, 0, 1_000_000, p) as u32,
            burst: s.int("tls_handshakes_per_ip_burst", 600, 1, 1_000_000, p) as u32,
        },
        tls_max_handshakes: s.int("tls_max_handshakes", 256, 1, 100_000, p) as usize,
        tls_handshake_threads: s.int("tls_handshake_threads", 1, 1, 64, p) as usize,
        h2_max_concurrent_streams: s.int("h2_max_concurrent_streams", 32, 1, 1000, p) as u32,
        h2_streams_per_ip: s.int("h2_streams_per_ip", 256, 1, 1_000_000, p) as u32,
        h2_stall_timeout_ms: s.int("h2_stall_timeout_ms", 10_000, 100, 600_000, p),
    }
}

pub(super) fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// Level for authgate's own records (`error` … `trace`); dependencies stay at `warn`.
    pub level: String,
}

pub(super) fn read_log(s: &Sec<'_>, p: &mut Vec<Problem>) -> LogConfig {
    s.only_keys(&["format", "level"], p);
    let format = match s.string("format", "text", p).as_str() {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        other => {
            p.push(s.problem("format", format!("{other:?}"), "use \"json\" or \"text\""));
            LogFormat::Text
        }
    };
    let level = s.string("level", "info", p);
    if !matches!(
        level.as_str(),
        "error" | "warn" | "info" | "debug" | "trace"
    ) {
        p.push(s.problem(
            "level",
            format!("{level:?}"),
            "use error, warn, info, debug or trace",
        ));
    }
    LogConfig { format, level }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://file.db` (created if missing) or `postgres://…`; a relative SQLite path is
    /// already placed in `data_dir` when one is set.
    pub url: String,
    /// How long a write may wait for a locked SQLite file before the store counts as unavailable.
    pub busy_timeout_ms: u64,
    pub max_connections: u32,
    /// Where a user cut-off waits while the store cannot take it (a Kakao unlink must be
    /// answered within 3 s and is not sent again): JSON lines, replayed once the store is back
    /// and across restarts. Relative to `data_dir` when set, else to the config file.
    pub spool_file: std::path::PathBuf,
    /// The one directory authgate writes to (`store.data_dir`, env `AUTHGATE_DATA_DIR`; the
    /// container image sets `/var/lib/authgate`), if set.
    pub data_dir: Option<std::path::PathBuf>,
}

pub(super) fn read_store(
    s: &Sec<'_>,
    base: &std::path::Path,
    env: EnvLookup<'_>,
    p: &mut Vec<Problem>,
) -> StoreConfig {
    s.only_keys(
        &["url", "busy_timeout_ms", "max_connections", "spool_file", "data_dir"],
        p,
    );
    let url = env_or(env, "AUTHGATE_STORE_URL", || {
        s.string("url", "sqlite://authgate.db", p)
    });
    if crate::store::Backend::of_url(&url).is_none() {
        p.push(s.problem(
            "url",
            format!("{:?}", redact_url(&url)),
            "use \"sqlite://authgate.db\" (embedded, one instance) or \"postgres://user:pass@host/db\" (several instances)",
        ));
    }
    let data_dir = Some(env_or(env, "AUTHGATE_DATA_DIR", || s.string("data_dir", "", p)))
        .filter(|d| !d.is_empty())
        .map(|d| base.join(d));
    let spool_file = s.string("spool_file", "authgate-spool.jsonl", p);
    StoreConfig {
        url: match &data_dir {
            Some(dir) => sqlite_in(&url, dir),
            None => url,
        },
        busy_timeout_ms: s.int("busy_timeout_ms", 2000, 10, 60_000, p),
        max_connections: s.int("max_connections", 8, 1, 512, p) as u32,
        spool_file: data_dir.as_deref().unwrap_or(base).join(spool_file),
        data_dir,
    }
}

/// A SQLite URL whose file path is relative, with the path placed in `dir`; any other URL
/// (PostgreSQL, an absolute path, `:memory:`) as it is.
fn sqlite_in(url: &str, dir: &std::path::Path) -> String {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return url.to_string();
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if path.is_empty() || path.starts_with('/') || path.starts_with(':') {
        return url.to_string();
    }
    let mut out = format!("sqlite://{}", dir.join(path).display());
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
