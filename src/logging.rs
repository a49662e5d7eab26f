//! Logging: `[log]` decides the format and authgate's own level; dependencies stay at `warn` so
//! that no library's debug output (which may print headers) reaches the log. `AUTHGATE_LOG` (an
//! `EnvFilter` directive) overrides both levels for debugging. The level can change on a
//! reload ([`set_level`]); the format needs a restart.

use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Swaps the filter of the installed subscriber; `None` before [`init`] or when `AUTHGATE_LOG`
/// chose the filter (the operator's override stands).
static RELOAD: OnceLock<Reload> = OnceLock::new();

fn filter(level: &str) -> EnvFilter {
    // `pingora_proxy` is off: every failure it reports per request, `fail_to_proxy` logs
    // itself (a client's own at debug), and its remaining lines are client-triggered
    // ("failed to send error response", "Error finish sending body"): one ERROR per
    // connection that anyone could write at will. So is `pingora_core::apps`'s "H2 handshake
    // error" for every HTTP/2 client that never sends its preface (the connection layer counts
    // and bounds those).
    EnvFilter::new(format!(
        "warn,pingora_proxy=off,pingora_core::apps=off,authgate={level}"
    ))
}

/// Installs the process's subscriber (once; `main` calls it).
pub fn init(log: &LogConfig) {
    let from_env = EnvFilter::try_from_env("AUTHGATE_LOG").ok();
    let overridden = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| filter(&log.level));
    // Colour codes only for a terminal: in files they are raw escape characters.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let (installed, reload): (bool, Option<Reload>) = match log.format {
        LogFormat::Json => {
            let b = builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_filter_reloading();
            let handle = b.reload_handle();
            (
                b.try_init().is_ok(),
                Some(Box::new(move |f| {
                    handle.reload(f).map_err(|e| e.to_string())
                })),
            )
        }
        LogFormat::Text => {
            let b = builder.with_filter_reloading();
            let handle = b.reload_handle();
            (
                b.try_init().is_ok(),
                Some(Box::new(move |f| {
                    handle.reload(f).map_err(|e| e.to_string())
                })),
            )
        }
    };
    if let (true, false, Some(reload)) = (installed, overridden, reload) {
        let _ = RELOAD.set(reload);
    }
}

/// authgate's own level from now on (`[log] level` of a reloaded configuration).
pub fn set_level(level: &str) {
    if let Some(reload) = RELOAD.get() {
        if let Err(e) = reload(filter(level)) {
            tracing::warn!(error = %e, "the log level could not be changed");
        }
    }
}
