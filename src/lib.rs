//! authgate: a reverse-proxy authentication gateway on Pingora.
//!
//! It verifies bearer JWTs on every request, strips identity headers a client tries to forge,
//! and forwards authenticated requests to upstream apps with trusted `X-User-*` headers.
//!
//! # Layout
//! ```text
//! main.rs        CLI (clap): run | check | reload | healthcheck | dev | revoke; the only place that uses anyhow for output
//! config/        config.toml + seed env vars -> validated Config; every problem at once; one file a section
//! error.rs       GatewayError -> (status, public code, message): the one place statuses are chosen
//! server.rs      builds the Pingora server: proxy, drain watcher, admin listener, store, the first configuration
//! reload.rs      SIGHUP, file watch and POST /reload: validate, build a new proxy::Live, swap it in
//! logging.rs     the tracing subscriber; its level follows reloads
//! sync.rs        revocations and user cut-offs: start-up load, every-second sync from the store, pruning
//! lifecycle.rs   ending every session of a user (Kakao's webhooks, operators): store first, a spool while it is down
//! connections/   our ServerApp around Pingora's: mod.rs (connection caps, the loop over requests), head.rs (request-head
//!                and keep-alive timeouts, framing checks), tls.rs (the TLS handshake, the HTTP/2 preface deadline)
//! tls/           mod.rs (PEM chains and keys, names a certificate covers), listener.rs (SNI certificates swapped on
//!                reload and file change, expiry), upstream.rs (TLS settings of upstream peers)
//! proxy/         impl ProxyHttp: the request pipeline; the only module that touches Session:
//!                mod.rs (the hooks in order), admit.rs (steps 1-3, CSRF, login redirect), reply.rs (our own answers),
//!                forward_auth.rs (the same decision for nginx auth_request, Traefik, Envoy),
//!                live.rs (everything a reload swaps: routes, upstreams, limits, API; taken once per request),
//!                cache.rs (Cache-Control private and Vary for personal answers)
//! routes/        mod.rs (request-target and Host checks), table.rs (host/prefix/method routing, prefix index); pure
//! identity.rs    which headers are stripped and injected, X-Forwarded-*, client IP, request ids; pure
//! cookies.rs     the Cookie header as bytes: our cookies read and removed whatever else it holds; pure
//! api/           the /api/auth endpoints and JWKS as request -> reply functions (no Pingora types):
//!                mod.rs (dispatch, replies, issuing), login.rs (login page, state, PKCE, callbacks for every provider),
//!                session.rs (refresh, profile, logout), notifications.rs (Kakao's unlink and account-status webhooks)
//! tokens/        jwt/ (issue/verify; keys.rs: keys by kid), revocation.rs (sharded in-memory set), cutoff.rs (per-user cut-offs),
//!                refresh.rs (opaque tokens), state.rs (signed state + PKCE), assertion.rs (signed identity for upstreams)
//! providers/     one module per kind (kakao.rs, oidc.rs, naver.rs) turning a code into a verified user; id_token.rs
//!                (id_token checks, JWKS cache), set.rs (Kakao's security event tokens), http.rs (shared client)
//! dev/           feature `dev` only: fake_kakao.rs + fake_kakao_webhooks.rs, fake_oidc.rs, fake_naver.rs, fakes.rs
//!                (what they share), demo.rs (the `authgate dev` demo upstream)
//! store/         users, refresh tokens, revocations, cut-offs over sqlx Any (SQLite default, PostgreSQL)
//! upstreams.rs   one Pingora LoadBalancer per upstream group, health checks, peer timeouts and TLS
//! limits.rs      governor limiters per client IP / user, with pruning
//! metrics.rs     every Prometheus metric, in one registry
//! admin_client.rs the CLI's side of the admin listener (reload, healthcheck): one reqwest request
//! admin.rs       /healthz, /readyz, /metrics, and (with an admin token) POST /users/{id}/revoke and POST /reload
//! localhttp.rs   tiny hyper servers on the application runtime (admin, demo, the fake providers)
//! ```
//! Dependencies point one way: `main -> server -> {connections, admin -> reload, sync} -> proxy -> {api, lifecycle} ->
//! {routes, identity, cookies, tokens, upstreams, limits, metrics, error} -> {providers, store} -> config -> tls`
//! (`config` reads certificate files through `tls`; `tls::listener` and `tls::upstream` are used by `server`,
//! `reload` and `upstreams`). Only `server.rs`, `connections/`, `proxy/`, `upstreams.rs` and
//! `tls/upstream.rs` name Pingora types; `api`, `providers` and `store` run on the application
//! runtime (see `server.rs`).

pub mod admin;
pub mod admin_client;
pub mod api;
pub mod config;
pub mod connections;
pub mod cookies;
#[cfg(feature = "dev")]
pub mod dev;
pub mod error;
pub mod identity;
pub mod lifecycle;
pub mod limits;
pub mod localhttp;
pub mod logging;
pub mod metrics;
pub mod providers;
pub mod proxy;
pub mod reload;
pub mod routes;
pub mod server;
pub mod store;
pub mod sync;
pub mod tls;
pub mod tokens;
pub mod upstreams;
