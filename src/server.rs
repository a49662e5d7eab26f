//! Assembles the Pingora server from a validated [`Config`]: the store and what every
//! configuration shares, the first [`Live`] configuration (its upstreams' health checks run on the
//! application runtime), the proxy service on the public listener and the HTTPS one (its
//! certificates watched), the drain watcher, the reloader (`SIGHUP`, file watch) and the admin
//! listener on the application runtime.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::Acceptor;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};

use arc_swap::ArcSwap;

use crate::admin::{self, Readiness};
use crate::config::{redact_url, Config};
use crate::connections::{ConnectionRules, Guarded, TlsSide};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::proxy::{Gateway, Live, Shared};
use crate::reload::{self, Reloader};
use crate::store::Store;
use crate::sync::{self, Synced};
use crate::tls::listener::Certs;
use crate::tokens::cutoff::Cutoffs;
use crate::tokens::jwt::Verifier;
use crate::tokens::revocation::Revocations;

/// The runtime for everything that is not a Pingora service (admin and demo listeners, and the
/// store and HTTP clients later). Pingora gives each service its own runtime, and I/O objects
/// must live on a runtime that outlives them, so they all live here.
pub fn app_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("authgate-app")
        .enable_all()
        .build()
}

/// Each proxied connection may hold a second descriptor towards a backend: with fewer than about
/// twice `max_connections` the process runs out of descriptors before the cap protects it.
fn warn_if_descriptors_short(max_connections: usize) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(soft) = soft.filter(|soft| *soft < 2 * max_connections + 256) {
        tracing::warn!(
            open_files = soft,
            max_connections,
            "the open-file limit is below 2 x server.max_connections + 256: raise it (ulimit -n, LimitNOFILE=) or lower server.max_connections"
        );
    }
}

/// Flips readiness to "draining" when Pingora broadcasts the graceful shutdown.
struct DrainWatch(Arc<Readiness>);

#[async_trait]
impl BackgroundService for DrainWatch {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        self.0.draining.store(true, Ordering::Relaxed);
        tracing::info!("draining: readiness now reports 503");
    }
}

/// Where the configuration came from: reloads read `path` again (`None` for `authgate dev`).
pub struct Source {
    pub path: Option<std::path::PathBuf>,
    /// The text it was parsed from (`authgate_config_info{hash}`).
    pub text: String,
}

/// Bytes an HTTP/2 stream may have queued for the client beyond what its window takes.
const H2_SEND_BUFFER: usize = 64 * 1024;

/// Runs the gateway until SIGTERM (graceful, drains for `grace_period_seconds`) or SIGINT;
/// `SIGHUP` reloads the configuration (`reload.rs`).
pub fn run(config: Config, source: Source, app: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    // Fail with a clear message rather than a Pingora panic when the port is taken.
    std::net::TcpListener::bind(config.server.listen)
        .with_context(|| format!("cannot listen on server.listen = {}", config.server.listen))?;
    if let Some(at) = config.server.tls_listen {
        std::net::TcpListener::bind(at)
            .with_context(|| format!("cannot listen on server.tls_listen = {at}"))?;
    }
    let admin_listener = app
        .block_on(tokio::net::TcpListener::bind(config.server.admin_listen))
        .with_context(|| {
            format!(
                "cannot listen on server.admin_listen = {}",
                config.server.admin_listen
            )
        })?;

    let grace = config.server.grace_period_seconds;
    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(grace.clamp(1, 5)),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let revocations = Arc::new(Revocations::new());
    let cutoffs = Arc::new(Cutoffs::new());
    let verifier = Arc::new(Verifier::new(
        &config.jwt,
        revocations.clone(),
        cutoffs.clone(),
    ));

    let store = app
        .block_on(Store::connect(
            &config.store.url,
            Duration::from_millis(config.store.busy_timeout_ms),
            config.store.max_connections,
        ))
        .with_context(|| {
            format!(
                "cannot open the store at store.url = {}{}",
                redact_url(&config.store.url),
                writable_hint(&config.store)
            )
        })?;
    // Sessions of a provider no longer configured end (`tokens::jwt::ProviderGate`); with none
    // configured, the store says which providers had users.
    let known = if config.providers.is_empty() {
        app.block_on(store.user_providers())
            .context("reading the store's providers")?
    } else {
        Vec::new()
    };
    verifier.set_providers(
        &config.providers.iter().map(|p| p.id()).collect::<Vec<_>>(),
        &known,
    );
    let metrics = Arc::new(Metrics::new());
    let lifecycle = Arc::new(
        Lifecycle::new(
            store.clone(),
            cutoffs.clone(),
            metrics.clone(),
            config.store.spool_file.clone(),
        )
        .with_context(|| {
            format!(
                "store.spool_file = {}{}",
                config.store.spool_file.display(),
                writable_hint(&config.store)
            )
        })?,
    );
    let synced = Synced {
        store: store.clone(),
        revocations: revocations.clone(),
        cutoffs: cutoffs.clone(),
        lifecycle: lifecycle.clone(),
        metrics: metrics.clone(),
        horizon: Arc::new(std::sync::atomic::AtomicI64::new(sync::cutoff_horizon(
            config.jwt.access_ttl_minutes as i64 * 60,
            config.jwt.leeway_seconds as i64,
        ))),
    };
    let horizon = synced.horizon.clone();
    // Refusing to start beats starting without the revocations: a revoked token would pass.
    let sync_point = app
        .block_on(synced.load())
        .context("loading revoked tokens and user cut-offs")?;
    app.spawn(synced.run(sync_point));
    let shared = Shared {
        store,
        verifier: verifier.clone(),
        revocations,
        cutoffs,
        lifecycle: lifecycle.clone(),
        metrics: metrics.clone(),
        app: app.handle().clone(),
        horizon,
    };
    let hash = reload::hash(&source.text);
    let first = {
        // Health checks and clients are started on the application runtime.
        let _enter = app.enter();
        Live::build(config.clone(), hash.clone(), &shared, None)?
    };
    let live = Arc::new(ArcSwap::from_pointee(first));
    metrics.config_info.with_label_values(&[&hash]).set(1);
    let pruned = live.clone();
    app.spawn(async move {
        let mut tick = tokio::time::interval(crate::limits::PRUNE_EVERY);
        loop {
            tick.tick().await;
            let keys = pruned.load().limits.prune();
            tracing::debug!(keys, "rate-limit keys after pruning");
        }
    });
    for warning in crate::config::deployment_warnings(&config) {
        tracing::warn!("{warning}");
    }
    if config.providers.is_empty() {
        tracing::warn!("no identity provider ([kakao] client_id or [[providers]]): login routes are off, tokens are only verified");
    }
    // The HTTPS listener's certificates: read again on reloads and when the files change.
    let certs = match &config.server.tls {
        None => None,
        Some(tls) => {
            let certs = Certs::new(tls, metrics.clone())
                .map_err(anyhow::Error::msg)
                .context("server.tls")?;
            certs.watch(app.handle());
            Some(certs)
        }
    };
    let reloader = Arc::new(Reloader::new(
        source.path.clone(),
        live.clone(),
        shared,
        config.clone(),
        certs.clone(),
    ));
    reloader
        .on_sighup(app)
        .context("installing the SIGHUP handler")?;
    if config.server.watch_config {
        reloader.watch(app);
    }
    let gateway = Gateway {
        live: live.clone(),
        verifier,
        app: app.handle().clone(),
        trusted_proxies: config.server.trusted_proxies.clone(),
        metrics: metrics.clone(),
        h2_streams: crate::limits::PerAddress::new(config.server.h2_streams_per_ip),
        h2_stall: Duration::from_millis(config.server.h2_stall_timeout_ms),
    };
    // Pingora's HTTP application behind our connection rules (`connections/`): caps, the
    // request-head and keep-alive timeouts, framing checks.
    let rules = ConnectionRules {
        header_timeout: Duration::from_millis(config.server.client_header_timeout_ms),
        keepalive_timeout: Duration::from_millis(config.server.keepalive_timeout_ms),
        max_connections: config.server.max_connections,
        max_connections_per_ip: config.server.max_connections_per_ip,
        trusted_proxies: config.server.trusted_proxies.clone(),
    };
    warn_if_descriptors_short(config.server.max_connections);
    let mut proxy = pingora::proxy::http_proxy(&server.configuration, gateway);
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = Some(rules.keepalive_timeout);
    // HTTP/2's memory per connection: fewer concurrent streams than Pingora's 100, and a small
    // send buffer per stream. Pingora's own header-list limit (64 KiB) is kept.
    let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
    h2.max_concurrent_streams(config.server.h2_max_concurrent_streams)
        .max_send_buffer_size(H2_SEND_BUFFER);
    proxy.h2_options = Some(h2);
    proxy.server_options = Some(options);
    let tls = match (&certs, config.server.tls_listen) {
        (Some(certs), Some(at)) => Some(TlsSide {
            port: at.port(),
            acceptor: Arc::new(Acceptor::from_server_config(certs.server_config())),
            served: Arc::new(crate::tls::listener::RecordServed(certs.clone())),
            handshakes: crate::connections::Handshakes::new(
                config.server.tls_handshakes_per_ip,
                config.server.tls_max_handshakes,
                config.server.tls_handshake_threads,
                config.server.trusted_proxies.clone(),
            )
            .context("starting the TLS handshake threads")?,
        }),
        _ => None,
    };
    let mut service = pingora::services::listening::Service::new(
        "authgate".into(),
        Guarded::new(proxy, rules, metrics.clone(), tls),
    );
    service.add_tcp(&config.server.listen.to_string());
    if let Some(at) = config.server.tls_listen {
        // Plain TCP to Pingora: the handshake is the connection layer's (`connections/tls.rs`).
        service.add_tcp(&at.to_string());
    }
    server.add_service(service);

    let readiness = Arc::new(Readiness::new(live));
    server.add_service(background_service(
        "drain watch",
        DrainWatch(readiness.clone()),
    ));
    app.spawn(admin::serve(
        admin_listener,
        readiness,
        metrics,
        lifecycle,
        reloader,
    ));

    tracing::info!(
        listen = %config.server.listen,
        tls_listen = ?config.server.tls_listen,
        admin = %config.server.admin_listen,
        routes = config.routes.len(),
        upstreams = config.upstreams.len(),
        "authgate starting"
    );
    server.run(RunArgs::default());
    tracing::info!("authgate stopped");
    Ok(())
}

/// The fix to name when the store or the spool cannot be opened: authgate needs one writable
/// directory, and the most common reason for this failure is a read-only working or config
/// directory (a container's).
fn writable_hint(store: &crate::config::StoreConfig) -> String {
    match &store.data_dir {
        Some(dir) => format!(
            " (store.data_dir = {}: it must exist and be writable by this process; in the container image, mount a volume there)",
            dir.display()
        ),
        None => " (relative SQLite paths are in the working directory, a relative spool_file beside the config file: set store.data_dir, or AUTHGATE_DATA_DIR, to a writable directory)".to_string(),
    }
}
