//! The gateway's own endpoints under `[auth] prefix` (the seed's `/api/auth` API) and
//! `/.well-known/jwks.json`, as plain request -> reply functions: no Pingora types, so they run
//! on the application runtime where the store and the Kakao client live.
//!
//! | route | does | file |
//! |---|---|---|
//! | `GET  /login?next=` | a page with one button per provider | `login.rs` |
//! | `GET  /{id}/login-url` | `{"login_url"}` with a signed `state` (and PKCE when the state will come back) | `login.rs` |
//! | `GET  /{id}/login?next=` | 302 to the provider with a state cookie | `login.rs` |
//! | `GET  /{id}/callback?code&state` | browser flow: state = cookie, tokens as HttpOnly cookies, 302 to `next` | `login.rs` |
//! | `POST /{id}/callback` | `{"code","state"}` (JSON, form or query) -> the seed's `TokenResponse` | `login.rs` |
//! | `POST /refresh` | rotates the refresh token; reuse after the grace window revokes the family | `session.rs` |
//! | `GET  /profile` | the seed's `UserProfileResponse` | `session.rs` |
//! | `POST /logout` | revokes the access token (store first) and every refresh token of the user | `session.rs` |
//! | `GET\|POST /{kakao id}/unlink` | Kakao's unlink webhook: every session of the user ends | `notifications.rs` |
//! | `POST /{kakao id}/events` | Kakao's account-status webhook (security event tokens) | `notifications.rs` |
//!
//! This file holds what they share: the request and reply types, dispatch, and issuing tokens.

mod login;
mod notifications;
mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde_json::json;

use crate::config::Config;
use crate::cookies;
use crate::error::GatewayError;
use crate::lifecycle::Lifecycle;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::providers::{Provider, ProviderError};
use crate::routes::check_target;
use crate::store::{Store, User};
use crate::tokens::cutoff::Cutoffs;
use crate::tokens::jwt::{Issuer, Subject, Verifier};
use crate::tokens::refresh;
use crate::tokens::revocation::Revocations;
use crate::tokens::state::StateSigner;

pub use crate::cookies::cookie;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Largest request body the API reads.
pub const MAX_BODY: usize = 16 * 1024;

/// Which endpoint an API request is for, read once from its path ([`AuthApi::parse`]) and
/// carried with the request: the rate budget, the dispatch and the login metric all use it.
/// The method is checked at dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiRoute {
    /// `/.well-known/jwks.json`.
    Jwks,
    /// `{prefix}/login`.
    LoginPage,
    Refresh,
    Profile,
    Logout,
    /// `{prefix}/{id}/{action}` for configured provider `index`.
    Provider { index: usize, action: Action },
    /// Under the prefix but nothing we answer (404), or a prefix in another case.
    Unknown,
}

/// What `{prefix}/{id}/…` asks a provider for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    LoginUrl,
    Login,
    Callback,
    /// Kakao's unlink webhook.
    Unlink,
    /// Kakao's account-status webhook.
    Events,
}

/// Which per-client-IP budget an API request spends (`[rate_limit]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Public key material that upstreams fetch: none.
    None,
    /// Logins (`auth_*`): what is worth guessing at, the seed's 10 a minute.
    Login,
    /// A session already held (refresh, profile, logout: `session_*`): a flood guard sized for
    /// carrier NAT, where thousands of users share one address. Refresh is also limited per
    /// token family.
    Session,
    /// Kakao's webhooks (`webhook_*`): authenticated by the admin key or a signature, sent in
    /// bursts from a few Kakao addresses; an unlink refused is never sent again.
    Webhook,
}

impl ApiRoute {
    pub fn budget(self) -> Budget {
        match self {
            ApiRoute::Jwks => Budget::None,
            ApiRoute::Refresh | ApiRoute::Profile | ApiRoute::Logout => Budget::Session,
            ApiRoute::Provider {
                action: Action::Unlink | Action::Events,
                ..
            } => Budget::Webhook,
            ApiRoute::LoginPage | ApiRoute::Provider { .. } | ApiRoute::Unknown => Budget::Login,
        }
    }
}

/// What the API needs of a request; owned so it can move to the application runtime.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// From [`AuthApi::parse`] of `path`.
    pub route: ApiRoute,
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The client reached us over https (directly or through a trusted proxy): cookies get
    /// `Secure` and `__Host-` names.
    pub secure: bool,
}

impl ApiRequest {
    fn query(&self, key: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    /// How many times `key` is in the query.
    fn query_count(&self, key: &str) -> usize {
        url::form_urlencoded::parse(self.query.as_bytes())
            .filter(|(k, _)| k == key)
            .count()
    }

    /// One of the gateway's cookies, by the names of this request's scheme.
    fn cookie(&self, pick: impl Fn(&cookies::Names) -> &'static str) -> Option<&str> {
        cookie(&self.headers, pick(cookies::names(self.secure))).filter(|c| !c.is_empty())
    }
}

#[derive(Debug, Clone)]
pub struct ApiReply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl ApiReply {
    fn json(status: u16, body: serde_json::Value) -> ApiReply {
        ApiReply {
            status,
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        }
    }

    fn html(status: u16, page: String) -> ApiReply {
        ApiReply {
            status,
            headers: vec![
                ("content-type", "text/html; charset=utf-8".to_string()),
                // Our page only links: nothing may run in it, frame it, or be sent from it.
                (
                    "content-security-policy",
                    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; \
                     base-uri 'none'; form-action 'none'"
                        .to_string(),
                ),
                ("x-frame-options", "DENY".to_string()),
                ("referrer-policy", "no-referrer".to_string()),
            ],
            body: page.into_bytes(),
        }
    }

    fn redirect(location: &str) -> ApiReply {
        ApiReply {
            status: 302,
            headers: vec![("location", location.to_string())],
            body: b"{}".to_vec(),
        }
    }

    fn cookie(mut self, c: String) -> ApiReply {
        self.headers.push(("set-cookie", c));
        self
    }

    pub fn error(e: &GatewayError) -> ApiReply {
        let p = e.public();
        ApiReply {
            status: p.status,
            headers: e.headers(),
            body: p.body(),
        }
    }
}

/// New tokens for a user, and how the browser flow stores them.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access: String,
    pub refresh: String,
    pub claims_exp: i64,
    pub subject: Subject,
}

/// A rotation several requests wait on (see `session.rs`).
type InFlight = Arc<tokio::sync::OnceCell<Result<Issued, GatewayError>>>;

pub struct AuthApi {
    prefix: String,
    store: Store,
    /// In the configured order (the login page's).
    providers: Vec<Provider>,
    issuer: Issuer,
    verifier: Arc<Verifier>,
    revocations: Arc<Revocations>,
    cutoffs: Arc<Cutoffs>,
    lifecycle: Arc<Lifecycle>,
    state: StateSigner,
    require_state: bool,
    allowed_origins: Vec<String>,
    access_ttl: i64,
    refresh_ttl: i64,
    state_ttl: i64,
    /// `auth.refresh_reuse_grace_seconds`.
    reuse_grace: i64,
    /// Derives a refresh token's successor (`tokens::refresh::successor`); from the signing
    /// key, so every instance with the same key derives the same.
    successor_key: Vec<u8>,
    /// Rotations under way, by the presented token's hash: concurrent refreshes of one token
    /// on this instance share one rotation and its answer.
    rotating: Mutex<HashMap<String, InFlight>>,
    jwks: Option<serde_json::Value>,
    metrics: Arc<Metrics>,
    /// This generation's rate limits: refresh is limited per token family.
    limits: Arc<Limits>,
}

use crate::tokens::now;

/// Where a `next` parameter may send the browser: a same-origin path that is not ambiguous, or
/// an allowed origin. Anything else lands on `/`.
pub fn safe_next(next: Option<&str>, allowed_origins: &[String]) -> String {
    let Some(next) = next else { return "/".into() };
    if next.starts_with('/') && !next.starts_with("//") && check_target(next.as_bytes()).is_ok() {
        return next.to_string();
    }
    if let Ok(u) = url::Url::parse(next) {
        let origin = u.origin().ascii_serialization();
        if allowed_origins.contains(&origin)
            && u.username().is_empty()
            && u.password().is_none()
            && check_target(&next.as_bytes()[origin.len().min(next.len())..])
                .is_ok_and(|_| next[origin.len()..].starts_with('/'))
        {
            return next.to_string();
        }
    }
    "/".into()
}

impl AuthApi {
    pub fn new(
        cfg: &Config,
        store: Store,
        verifier: Arc<Verifier>,
        revocations: Arc<Revocations>,
        cutoffs: Arc<Cutoffs>,
        lifecycle: Arc<Lifecycle>,
        metrics: Arc<Metrics>,
        limits: Arc<Limits>,
    ) -> Result<AuthApi, reqwest::Error> {
        let keys = cfg.jwt.keys.as_ref().expect("validated config has keys");
        Ok(AuthApi {
            prefix: cfg.auth.prefix.clone(),
            providers: cfg
                .providers
                .iter()
                .map(|p| {
                    Provider::build(p, metrics.provider_duration.clone(), cfg.jwt.leeway_seconds)
                })
                .collect::<Result<_, _>>()?,
            metrics,
            limits,
            store,
            issuer: Issuer::new(&cfg.jwt),
            verifier,
            revocations,
            cutoffs,
            lifecycle,
            state: StateSigner::new(&keys.state_key),
            require_state: cfg.auth.require_state,
            allowed_origins: cfg.auth.allowed_redirect_origins.clone(),
            access_ttl: cfg.jwt.access_ttl_minutes as i64 * 60,
            refresh_ttl: cfg.jwt.refresh_ttl_days as i64 * 86_400,
            state_ttl: cfg.auth.state_ttl_seconds as i64,
            reuse_grace: cfg.auth.refresh_reuse_grace_seconds as i64,
            successor_key: keys.state_key.clone(),
            rotating: Mutex::new(HashMap::new()),
            // The current key's and every previous key's public half: upstreams verify tokens
            // (and assertions) signed before a rotation too.
            jwks: {
                let published: Vec<serde_json::Value> = cfg
                    .jwt
                    .verify_keys()
                    .into_iter()
                    .filter_map(|k| k.jwk)
                    .collect();
                (!published.is_empty()).then(|| json!({ "keys": published }))
            },
        })
    }

    /// True for every path this module answers (the proxy sends them here, never upstream),
    /// in any ASCII case like route prefixes: `/API/AUTH/x` is ours too (and unknown, 404),
    /// never an upstream's.
    pub fn owns(&self, path: &str) -> bool {
        path.eq_ignore_ascii_case(JWKS_PATH)
            || crate::routes::prefix_matches_ignore_case(&self.prefix, path)
    }

    /// The endpoint a path [`AuthApi::owns`] is for. Answered only in our own case:
    /// `/API/AUTH/refresh` is unknown here. A provider route needs a configured provider;
    /// the webhooks only Kakao ones.
    pub fn parse(&self, path: &str) -> ApiRoute {
        if path == JWKS_PATH {
            return ApiRoute::Jwks;
        }
        let Some(sub) = path.strip_prefix(self.prefix.as_str()) else {
            return ApiRoute::Unknown;
        };
        match sub {
            "/login" => return ApiRoute::LoginPage,
            "/refresh" => return ApiRoute::Refresh,
            "/profile" => return ApiRoute::Profile,
            "/logout" => return ApiRoute::Logout,
            _ => {}
        }
        let Some((id, action)) = sub.strip_prefix('/').and_then(|s| s.split_once('/')) else {
            return ApiRoute::Unknown;
        };
        let Some(index) = self.providers.iter().position(|p| p.id() == id) else {
            return ApiRoute::Unknown;
        };
        let action = match action {
            "login-url" => Action::LoginUrl,
            "login" => Action::Login,
            "callback" => Action::Callback,
            "unlink" if self.providers[index].is_kakao() => Action::Unlink,
            "events" if self.providers[index].is_kakao() => Action::Events,
            _ => return ApiRoute::Unknown,
        };
        ApiRoute::Provider { index, action }
    }

    pub async fn handle(&self, req: ApiRequest) -> ApiReply {
        let outcome = self.route(&req).await;
        if let ApiRoute::Provider {
            index,
            action: Action::Callback,
        } = req.route
        {
            let provider = self.providers[index].id();
            if !matches!(
                outcome,
                Err(GatewayError::NoRoute | GatewayError::MethodNotAllowed(_))
            ) {
                let result = match &outcome {
                    Ok(_) => "success",
                    Err(GatewayError::Provider(e) | GatewayError::OtherProvider(e)) => match e {
                        ProviderError::LoginFailed(_) => "login_failed",
                        ProviderError::Unavailable(_) => "provider_unavailable",
                        ProviderError::Timeout => "provider_timeout",
                    },
                    Err(GatewayError::InvalidState) => "invalid_state",
                    Err(GatewayError::Store(_)) => "store_unavailable",
                    Err(_) => "bad_request",
                };
                self.metrics
                    .logins
                    .with_label_values(&[provider, result])
                    .inc();
            }
        }
        match outcome {
            Ok(reply) => reply,
            Err(e) => {
                match &e {
                    GatewayError::Store(_)
                    | GatewayError::Provider(ProviderError::Unavailable(_))
                    | GatewayError::OtherProvider(ProviderError::Unavailable(_)) => {
                        tracing::warn!(path = %req.path, error = %e, "auth endpoint failed")
                    }
                    _ => tracing::info!(path = %req.path, error = %e, "auth endpoint refused"),
                }
                let mut reply = ApiReply::error(&e);
                // A logout that could not act still ends the browser session.
                if req.route == ApiRoute::Logout && req.method == Method::POST {
                    for c in Self::clear_cookies(req.secure) {
                        reply = reply.cookie(c);
                    }
                }
                reply
            }
        }
    }

    async fn route(&self, req: &ApiRequest) -> Result<ApiReply, GatewayError> {
        let m = &req.method;
        let get = || GatewayError::MethodNotAllowed("GET".into());
        let post = || GatewayError::MethodNotAllowed("POST".into());
        match req.route {
            ApiRoute::Jwks => match (m, &self.jwks) {
                (&Method::GET, Some(jwks)) => Ok(ApiReply::json(200, jwks.clone())),
                (_, None) => Err(GatewayError::NoRoute),
                _ => Err(get()),
            },
            ApiRoute::LoginPage if m == Method::GET => self.login_page(req),
            ApiRoute::Refresh if m == Method::POST => self.refresh(req).await,
            ApiRoute::Profile if m == Method::GET => self.profile(req).await,
            ApiRoute::Logout if m == Method::POST => self.logout(req).await,
            ApiRoute::LoginPage | ApiRoute::Profile => Err(get()),
            ApiRoute::Refresh | ApiRoute::Logout => Err(post()),
            ApiRoute::Unknown => Err(GatewayError::NoRoute),
            ApiRoute::Provider { index, action } => {
                let provider = &self.providers[index];
                match (action, m) {
                    (Action::LoginUrl, &Method::GET) => self.login_url(provider, req).await,
                    (Action::Login, &Method::GET) => self.login(provider, req).await,
                    (Action::Callback, &Method::GET) => self.browser_callback(provider, req).await,
                    (Action::Callback, &Method::POST) => self.json_callback(provider, req).await,
                    (Action::LoginUrl | Action::Login, _) => Err(get()),
                    (Action::Callback, _) => {
                        Err(GatewayError::MethodNotAllowed("GET, POST".into()))
                    }
                    (Action::Unlink | Action::Events, _) => {
                        let Provider::Kakao(k) = provider else {
                            return Err(GatewayError::NoRoute);
                        };
                        match (action, m) {
                            (Action::Unlink, &Method::GET | &Method::POST) => {
                                self.kakao_unlink(k, req).await
                            }
                            (Action::Unlink, _) => {
                                Err(GatewayError::MethodNotAllowed("GET, POST".into()))
                            }
                            (_, &Method::POST) => Ok(self.kakao_events(k, req).await),
                            _ => Err(post()),
                        }
                    }
                }
            }
        }
    }

    fn token_response(&self, issued: &Issued) -> ApiReply {
        ApiReply::json(
            200,
            json!({
                "access_token": issued.access,
                "refresh_token": issued.refresh,
                "token_type": "Bearer",
                "expires_in": self.access_ttl,
            }),
        )
    }

    /// The session as `Set-Cookie` values.
    fn session_cookies(&self, issued: &Issued, secure: bool) -> [String; 2] {
        let names = cookies::names(secure);
        // The access cookie outlives its JWT so an expired one can trigger a transparent refresh.
        [
            cookies::set_cookie(names.access, &issued.access, self.refresh_ttl, secure),
            cookies::set_cookie(names.refresh, &issued.refresh, self.refresh_ttl, secure),
        ]
    }

    /// Cookies that end the browser session.
    fn clear_cookies(secure: bool) -> [String; 2] {
        let names = cookies::names(secure);
        [
            cookies::set_cookie(names.access, "", 0, secure),
            cookies::set_cookie(names.refresh, "", 0, secure),
        ]
    }

    fn subject(user: &User) -> Subject {
        Subject {
            user_id: user.id,
            username: user.username.clone(),
            // The plain-address rule again: a user stored before it (or by another instance's
            // older version) keeps nothing else through every refresh.
            email: crate::providers::clean_email(user.email.clone()),
            nickname: Some(user.nickname.clone()).filter(|n| !n.is_empty()),
            provider: user.provider.clone(),
        }
    }

    fn sign(&self, subject: Subject, refresh: String) -> Result<Issued, GatewayError> {
        let (access, claims_exp) = self
            .issuer
            .issue_access(&subject, self.cutoffs.issue_at(subject.user_id, now()))
            .map_err(|e| GatewayError::Internal(format!("signing failed: {e}")))?;
        self.metrics
            .tokens_issued
            .with_label_values(&["access"])
            .inc();
        self.metrics
            .tokens_issued
            .with_label_values(&["refresh"])
            .inc();
        Ok(Issued {
            access,
            refresh,
            claims_exp,
            subject,
        })
    }

    /// A new session: the refresh token is stored before anything is handed out.
    async fn issue_for(&self, user: &User) -> Result<Issued, GatewayError> {
        let (token, hash) = refresh::new_refresh_token();
        let t = now();
        self.store
            .insert_refresh(
                &hash,
                user.id,
                &refresh::new_family(),
                t,
                t + self.refresh_ttl,
            )
            .await?;
        self.sign(Self::subject(user), token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_only_allows_same_origin_paths_and_listed_origins() {
        let allowed = vec!["https://app.example".to_string()];
        for ok in ["/", "/dashboard", "/a/b?tab=1&x=%2F"] {
            assert_eq!(safe_next(Some(ok), &allowed), ok, "{ok}");
        }
        assert_eq!(
            safe_next(Some("https://app.example/home"), &allowed),
            "https://app.example/home"
        );
        for bad in [
            "//evil.example",
            "//evil.example/x",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example",
            "https://app.example.evil.example/",
            "https://app.example@evil.example/",
            "https://user@app.example/x",
            "javascript:alert(1)",
            "data:text/html,x",
            "/%2F%2Fevil.example",
            "/%5Cevil.example",
            "/a/../../evil",
            "/\t/evil.example",
            "/x\r\nSet-Cookie: a=b",
            "evil.example",
            "",
        ] {
            assert_eq!(safe_next(Some(bad), &allowed), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None, &allowed), "/");
    }
}
