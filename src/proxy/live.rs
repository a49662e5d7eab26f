//! The configuration the gateway serves with: everything a reload may change, built from one
//! validated [`Config`] and swapped whole (`arc_swap`). A request takes it once, when Pingora
//! makes its context, and keeps it to its end: a request in flight finishes under the
//! configuration it started with, and an upstream a reload removed keeps running its health
//! checks until the last such request is done.
//!
//! What is not configuration is shared by every generation ([`Shared`]): the store, the
//! verifier (its key set is swapped, its cache of verified tokens kept), revocations and
//! cut-offs, the metrics. Rate-limit buckets and upstreams are carried over where unchanged.

use std::sync::Arc;

use anyhow::Context;

use super::ForwardAuthPaths;
use crate::api::AuthApi;
use crate::config::Config;
use crate::identity::HeaderRules;
use crate::lifecycle::Lifecycle;
use crate::limits::Limits;
use crate::metrics::{Durations, Metrics};
use crate::routes::Router;
use crate::store::Store;
use crate::tokens::assertion::Assertions;
use crate::tokens::cutoff::Cutoffs;
use crate::tokens::jwt::Verifier;
use crate::tokens::revocation::Revocations;
use crate::upstreams::Upstream;

/// State every generation of [`Live`] shares.
pub struct Shared {
    pub store: Store,
    pub verifier: Arc<Verifier>,
    pub revocations: Arc<Revocations>,
    pub cutoffs: Arc<Cutoffs>,
    pub lifecycle: Arc<Lifecycle>,
    pub metrics: Arc<Metrics>,
    /// The application runtime: health checks, the store, the providers.
    pub app: tokio::runtime::Handle,
    /// How long cut-offs are kept (`sync.rs`): raised by a reload that lengthens tokens.
    pub horizon: Arc<std::sync::atomic::AtomicI64>,
}

pub struct Live {
    pub config: Config,
    /// A digest of the configuration file (`authgate_config_info{hash}`).
    pub hash: String,
    pub router: Router,
    pub upstreams: Vec<Arc<Upstream>>,
    pub headers: HeaderRules,
    /// The gateway's own endpoints (login, refresh, profile, logout, JWKS, Kakao's webhooks).
    pub api: Arc<AuthApi>,
    /// Where `on_unauthenticated = "redirect"` sends browsers.
    pub login_path: String,
    /// `auth.allowed_redirect_origins`: origins besides our own that may send cookie-
    /// authenticated writes.
    pub allowed_origins: Vec<String>,
    pub limits: Arc<Limits>,
    pub durations: Durations,
    /// Signs identity assertions (`identity.assertion`); `None` with HS256.
    pub assertions: Option<Arc<Assertions>>,
    /// `identity.assertion`: for routes that do not say.
    pub assertion_default: bool,
    /// `{auth.prefix}/authz/auth-request` and `{auth.prefix}/authz/forward-auth`.
    pub forward_auth_paths: ForwardAuthPaths,
}

impl Live {
    /// Builds a generation; with `previous`, its unchanged upstreams (health state and all) and
    /// its rate-limit buckets are carried over. The verifier's keys are not touched here: the
    /// caller swaps them when it swaps this in.
    pub fn build(
        config: Config,
        hash: String,
        shared: &Shared,
        previous: Option<&Live>,
    ) -> anyhow::Result<Live> {
        let mut upstreams = Vec::new();
        for u in &config.upstreams {
            let kept = previous
                .and_then(|p| p.upstreams.iter().find(|o| o.config == *u))
                .cloned();
            upstreams.push(match kept {
                Some(up) => up,
                None => Upstream::build(u, &shared.app)
                    .with_context(|| format!("upstream {}", u.name))?,
            });
        }
        let router = Router::new(&config.routes, |name| {
            config
                .upstreams
                .iter()
                .position(|u| u.name == name)
                .expect("config checked upstream names")
        });
        let limits = Arc::new(Limits::reloaded(
            &config.rate_limit,
            router.routes(),
            previous.map(|p| &*p.limits),
        ));
        let durations = shared.metrics.durations(
            router.routes().iter().map(|r| r.name.as_str()),
            upstreams.iter().map(|u| u.name.as_str()),
        );
        let api = AuthApi::new(
            &config,
            shared.store.clone(),
            shared.verifier.clone(),
            shared.revocations.clone(),
            shared.cutoffs.clone(),
            shared.lifecycle.clone(),
            shared.metrics.clone(),
            limits.clone(),
        )
        .context("building the identity providers' clients")?;
        Ok(Live {
            router,
            upstreams,
            headers: HeaderRules::new(&config.identity),
            api: Arc::new(api),
            login_path: config.login_path(),
            allowed_origins: config.auth.allowed_redirect_origins.clone(),
            limits,
            durations,
            assertions: Assertions::new(&config.jwt).map(Arc::new),
            assertion_default: config.identity.assertion,
            forward_auth_paths: ForwardAuthPaths::new(
                &config.auth.prefix,
                &config.auth.forward_auth_secret,
            ),
            hash,
            config,
        })
    }
}
