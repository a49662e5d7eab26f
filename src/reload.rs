//! Changing the configuration without a restart: on `SIGHUP`, on a change of the file
//! (`server.watch_config`), on the admin listener's `POST /reload` (what `authgate reload`
//! calls). The file is read and validated exactly as `authgate check` does; a valid one is
//! built into a new [`Live`] and swapped in whole, with the verifier's keys and the log level,
//! while requests in flight finish under the old one. An invalid one changes nothing and every
//! problem is logged. Settings that need new sockets or threads (`[server]`, `[store]`,
//! `log.format`) are reported as needing a restart and keep their running values; the HTTPS
//! listener's certificates are read again on every reload (`tls::listener`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use sha2::Digest;

use crate::config::{self, Config};
use crate::proxy::{Live, Shared};
use crate::tls::listener::Certs;

/// What a reload did, as the admin listener and `authgate reload` report it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Outcome {
    /// `ok`, `invalid` (the file has problems), `failed` (valid, but could not be built).
    pub result: &'static str,
    pub problems: Vec<String>,
    /// Changed settings left at their running values until a restart.
    pub needs_restart: Vec<String>,
    /// The digest of the configuration now served.
    pub hash: String,
}

/// A digest of a configuration file's text (`authgate_config_info{hash}`).
pub fn hash(text: &str) -> String {
    let d = sha2::Sha256::digest(text.as_bytes());
    d[..6].iter().map(|b| format!("{b:02x}")).collect()
}

pub struct Reloader {
    /// `None` for `authgate dev`, whose configuration is not a file.
    path: Option<PathBuf>,
    live: Arc<ArcSwap<Live>>,
    shared: Shared,
    /// What the process started with: the settings only a restart changes.
    started: Config,
    /// One reload at a time.
    one: tokio::sync::Mutex<()>,
    /// The HTTPS listener's certificates, read again on every reload.
    certs: Option<Arc<Certs>>,
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        live: Arc<ArcSwap<Live>>,
        shared: Shared,
        started: Config,
        certs: Option<Arc<Certs>>,
    ) -> Reloader {
        Reloader {
            path,
            live,
            shared,
            started,
            one: tokio::sync::Mutex::new(()),
            certs,
        }
    }

    /// The settings of `next` that differ from the running process's and need a restart.
    fn needs_restart(&self, next: &Config) -> Vec<String> {
        let (s, n) = (&self.started.server, &next.server);
        let mut changed = Vec::new();
        for (key, differs) in [
            ("server.listen", s.listen != n.listen),
            ("server.admin_listen", s.admin_listen != n.admin_listen),
            ("server.threads", s.threads != n.threads),
            ("server.tls_listen", s.tls_listen != n.tls_listen),
            // Turning TLS on or off needs the listener; new certificates do not.
            ("server.tls", s.tls.is_some() != n.tls.is_some()),
        ] {
            if differs {
                changed.push(key.to_string());
            }
        }
        // The rest of [server] (connection caps, timeouts, trusted proxies, ...) is read by the
        // connection layer once, and [store] is the open pool.
        let rest = |c: &config::ServerConfig| {
            let mut c = c.clone();
            (c.listen, c.admin_listen, c.threads) = (n.listen, n.admin_listen, n.threads);
            (c.tls_listen, c.tls) = (n.tls_listen, n.tls.clone());
            // The same networks in another order are the same setting.
            c.trusted_proxies.sort();
            c.trusted_proxies.dedup();
            format!("{c:?}")
        };
        if rest(s) != rest(n) {
            changed.push("server (other than listen, admin_listen, threads)".into());
        }
        if format!("{:?}", self.started.store) != format!("{:?}", next.store) {
            changed.push("store".into());
        }
        if self.started.log.format != next.log.format {
            changed.push("log.format".into());
        }
        if self.started.jwt.verified_cache_entries != next.jwt.verified_cache_entries
            || self.started.jwt.max_token_bytes != next.jwt.max_token_bytes
        {
            changed.push("jwt.verified_cache_entries / jwt.max_token_bytes".into());
        }
        changed
    }

    /// Reads, validates and, when valid, swaps in the configuration file. `why` is for the log.
    pub async fn reload(&self, why: &str) -> Outcome {
        let _one = self.one.lock().await;
        let current = self.live.load_full();
        let outcome = self.try_reload(&current).await;
        let m = &self.shared.metrics;
        m.config_reloads.with_label_values(&[outcome.result]).inc();
        match outcome.result {
            "ok" => {
                m.config_info.reset();
                m.config_info.with_label_values(&[&outcome.hash]).set(1);
                tracing::info!(trigger = why, hash = %outcome.hash, needs_restart = ?outcome.needs_restart,
                    "configuration reloaded");
                for key in &outcome.needs_restart {
                    tracing::warn!(setting = %key, "changed in the file, but needs a restart: the running value stays until then");
                }
                for warning in crate::config::deployment_warnings(&self.live.load().config) {
                    tracing::warn!("{warning}");
                }
            }
            _ => {
                for problem in &outcome.problems {
                    tracing::error!(trigger = why, %problem, "configuration not reloaded: still serving the previous one");
                }
            }
        }
        outcome
    }

    async fn try_reload(&self, current: &Live) -> Outcome {
        let refused = |result, problems: Vec<String>| Outcome {
            result,
            problems,
            needs_restart: Vec::new(),
            hash: current.hash.clone(),
        };
        let Some(path) = &self.path else {
            return refused(
                "failed",
                vec!["this process was started without a configuration file (authgate dev)".into()],
            );
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => return refused("invalid", vec![format!("{}: {e}", path.display())]),
        };
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        let next = match Config::parse(&text, base, &config::process_env) {
            Ok(c) => c,
            Err(problems) => {
                return refused(
                    "invalid",
                    problems.0.iter().map(|p| p.to_string()).collect(),
                )
            }
        };
        let needs_restart = self.needs_restart(&next);
        // Certificates are read before anything is built (an unreadable one refuses the whole
        // reload) and served only once the rest is built too.
        let certs = match (&self.certs, &next.server.tls) {
            (Some(_), Some(tls)) => match Certs::prepare(tls) {
                Ok(p) => Some(p),
                Err(e) => return refused("failed", vec![format!("server.tls: {e}")]),
            },
            _ => None,
        };
        let hash = hash(&text);
        let level = next.log.level.clone();
        let jwt = next.jwt.clone();
        let provider_ids: Vec<String> = next.providers.iter().map(|p| p.id().to_string()).collect();
        let provider_ids: Vec<&str> = provider_ids.iter().map(String::as_str).collect();
        let known = if provider_ids.is_empty() {
            match self.shared.store.user_providers().await {
                Ok(k) => k,
                Err(e) => return refused("failed", vec![format!("reading the store's providers: {e}")]),
            }
        } else {
            Vec::new()
        };
        let live = match Live::build(next, hash.clone(), &self.shared, Some(current)) {
            Ok(l) => l,
            Err(e) => return refused("failed", vec![format!("{e:#}")]),
        };
        // Cut-offs must outlive every token issued under the new lifetimes.
        self.shared.horizon.fetch_max(
            crate::sync::cutoff_horizon(
                jwt.access_ttl_minutes as i64 * 60,
                jwt.leeway_seconds as i64,
            ),
            std::sync::atomic::Ordering::Relaxed,
        );
        // Keys first: tokens the new generation issues verify from the moment it serves.
        self.shared.verifier.set_keys(&jwt);
        // A provider this reload removes ends its users' sessions: access tokens at once, on
        // this instance (each instance on its own reload), refresh families likewise.
        self.shared.verifier.set_providers(&provider_ids, &known);
        self.live.store(Arc::new(live));
        if let (Some(served), Some(prepared)) = (&self.certs, certs) {
            served.install(prepared);
        }
        crate::logging::set_level(&level);
        Outcome {
            result: "ok",
            problems: Vec::new(),
            needs_restart,
            hash,
        }
    }

    /// Reloads on `SIGHUP`. The handler is installed before this returns, so a signal sent
    /// right after start-up is never the default (fatal) one.
    pub fn on_sighup(self: &Arc<Self>, runtime: &tokio::runtime::Runtime) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = runtime.block_on(async { signal(SignalKind::hangup()) })?;
        let me = self.clone();
        runtime.spawn(async move {
            while hup.recv().await.is_some() {
                me.reload("SIGHUP").await;
            }
        });
        Ok(())
    }

    /// With `server.watch_config`: reloads when the file's content differs from what is served
    /// (checked every second; a file already reloaded another way is not reloaded again, and
    /// an editor's half-written one is invalid once and retried on its next change).
    pub fn watch(self: &Arc<Self>, runtime: &tokio::runtime::Runtime) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let me = self.clone();
        runtime.spawn(async move {
            let mut tried = me.live.load().hash.clone();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                let now = hash(&text);
                if now != tried && now != me.live.load().hash {
                    tried = now;
                    me.reload("file changed").await;
                }
            }
        });
    }
}
