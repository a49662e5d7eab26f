//! The gateway's own endpoints under `[auth] prefix` (the seed's `/api/auth` API) and
//! `/.well-known/jwks.json`, as plain request -> reply functions: no Pingora types, so they run
//! on the application runtime where the store and the Kakao client live.
//!
//! | route | does |
//! |---|---|
//! | `GET  /kakao/login-url` | `{"login_url"}` with a signed `state` (and PKCE when the state will come back) |
//! | `GET  /kakao/login?next=` | 302 to Kakao with a state cookie |
//! | `GET  /kakao/callback?code&state` | browser flow: state = cookie, tokens as HttpOnly cookies, 302 to `next` |
//! | `POST /kakao/callback` | `{"code","state"}` (JSON, form or query) -> the seed's `TokenResponse` |
//! | `POST /refresh` | rotates the refresh token; reuse revokes the family |
//! | `GET  /profile` | the seed's `UserProfileResponse` |
//! | `POST /logout` | revokes the access token (store first) and every refresh token of the user |

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde::Deserialize;
use serde_json::json;

use crate::config::Config;
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::providers::kakao::KakaoClient;
use crate::providers::ProviderError;
use crate::routes::check_target;
use crate::store::{Rotation, Store, User};
use crate::tokens::jwt::{AccessClaims, Issuer, Subject, TokenError, Verifier};
use crate::tokens::refresh;
use crate::tokens::revocation::Revocations;
use crate::tokens::state::StateSigner;

pub const ACCESS_COOKIE: &str = "authgate_access";
pub const REFRESH_COOKIE: &str = "authgate_refresh";
pub const STATE_COOKIE: &str = "authgate_state";
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Largest request body the API reads.
pub const MAX_BODY: usize = 16 * 1024;

/// What the API needs of a request; owned so it can move to the application runtime.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The client reached us over https (directly or through a trusted proxy): cookies get `Secure`.
    pub secure: bool,
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
        let mut r = ApiReply {
            status: p.status,
            headers: Vec::new(),
            body: p.body(),
        };
        if let Some(w) = p.www_authenticate {
            r.headers.push(("www-authenticate", w.to_string()));
        }
        r
    }
}

/// New tokens for a user, and how the browser flow stores them.
pub struct Issued {
    pub access: String,
    pub refresh: String,
    pub claims_exp: i64,
    pub subject: Subject,
}

pub struct AuthApi {
    prefix: String,
    store: Store,
    kakao: Option<KakaoClient>,
    issuer: Issuer,
    verifier: Arc<Verifier>,
    revocations: Arc<Revocations>,
    state: StateSigner,
    require_state: bool,
    allowed_origins: Vec<String>,
    access_ttl: i64,
    refresh_ttl: i64,
    state_ttl: i64,
    jwks: Option<serde_json::Value>,
    metrics: Arc<Metrics>,
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

pub use crate::cookies::cookie;

fn set_cookie(name: &str, value: &str, path: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

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

#[derive(Deserialize)]
struct CallbackBody {
    code: Option<String>,
    state: Option<String>,
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

impl AuthApi {
    pub fn new(
        cfg: &Config,
        store: Store,
        verifier: Arc<Verifier>,
        revocations: Arc<Revocations>,
        metrics: Arc<Metrics>,
    ) -> Result<AuthApi, reqwest::Error> {
        let keys = cfg.jwt.keys.as_ref().expect("validated config has keys");
        Ok(AuthApi {
            prefix: cfg.auth.prefix.clone(),
            kakao: cfg
                .kakao
                .clone()
                .map(|k| KakaoClient::new(k, metrics.provider_duration.clone()))
                .transpose()?,
            metrics,
            store,
            issuer: Issuer::new(&cfg.jwt),
            verifier,
            revocations,
            state: StateSigner::new(&keys.state_key),
            require_state: cfg.auth.require_state,
            allowed_origins: cfg.auth.allowed_redirect_origins.clone(),
            access_ttl: cfg.jwt.access_ttl_minutes as i64 * 60,
            refresh_ttl: cfg.jwt.refresh_ttl_days as i64 * 86_400,
            state_ttl: cfg.auth.state_ttl_seconds as i64,
            jwks: keys.jwk.as_ref().map(|k| json!({"keys": [k]})),
        })
    }

    /// True for every path this module answers (the proxy sends them here, never upstream),
    /// in any ASCII case like route prefixes: `/API/AUTH/x` is ours too (and unknown, 404),
    /// never an upstream's.
    pub fn owns(&self, path: &str) -> bool {
        path.eq_ignore_ascii_case(JWKS_PATH)
            || crate::routes::prefix_matches_ignore_case(&self.prefix, path)
    }

    pub async fn handle(&self, req: ApiRequest) -> ApiReply {
        let outcome = self.route(&req).await;
        if req.path.ends_with("/kakao/callback")
            && !matches!(
                outcome,
                Err(GatewayError::NoRoute | GatewayError::MethodNotAllowed(_))
            )
        {
            let result = match &outcome {
                Ok(_) => "success",
                Err(GatewayError::Provider(ProviderError::LoginFailed(_))) => "login_failed",
                Err(GatewayError::Provider(ProviderError::Unavailable(_))) => {
                    "provider_unavailable"
                }
                Err(GatewayError::Provider(ProviderError::Timeout)) => "provider_timeout",
                Err(GatewayError::InvalidState) => "invalid_state",
                Err(GatewayError::Store(_)) => "store_unavailable",
                Err(_) => "bad_request",
            };
            self.metrics
                .logins
                .with_label_values(&["kakao", result])
                .inc();
        }
        match outcome {
            Ok(reply) => reply,
            Err(e) => {
                match &e {
                    GatewayError::Store(_)
                    | GatewayError::Provider(ProviderError::Unavailable(_)) => {
                        tracing::warn!(path = %req.path, error = %e, "auth endpoint failed")
                    }
                    _ => tracing::info!(path = %req.path, error = %e, "auth endpoint refused"),
                }
                ApiReply::error(&e)
            }
        }
    }

    async fn route(&self, req: &ApiRequest) -> Result<ApiReply, GatewayError> {
        if req.path == JWKS_PATH {
            return match (&req.method, &self.jwks) {
                (&Method::GET, Some(jwks)) => Ok(ApiReply::json(200, jwks.clone())),
                (_, None) => Err(GatewayError::NoRoute),
                _ => Err(GatewayError::MethodNotAllowed("GET".into())),
            };
        }
        // Owned in any case, answered only in ours: `/API/AUTH/refresh` is unknown here.
        let Some(sub) = req.path.strip_prefix(self.prefix.as_str()) else {
            return Err(GatewayError::NoRoute);
        };
        let m = &req.method;
        match sub {
            "/kakao/login-url" if m == Method::GET => self.login_url(req),
            "/kakao/login" if m == Method::GET => self.login(req),
            "/kakao/callback" if m == Method::GET => self.browser_callback(req).await,
            "/kakao/callback" if m == Method::POST => self.json_callback(req).await,
            "/refresh" if m == Method::POST => self.refresh(req).await,
            "/profile" if m == Method::GET => self.profile(req).await,
            "/logout" if m == Method::POST => self.logout(req).await,
            "/kakao/login-url" | "/kakao/login" | "/profile" => {
                Err(GatewayError::MethodNotAllowed("GET".into()))
            }
            "/kakao/callback" => Err(GatewayError::MethodNotAllowed("GET, POST".into())),
            "/refresh" | "/logout" => Err(GatewayError::MethodNotAllowed("POST".into())),
            _ => Err(GatewayError::NoRoute),
        }
    }

    fn kakao(&self) -> Result<&KakaoClient, GatewayError> {
        // Login is off when no client id is configured: the routes do not exist.
        self.kakao.as_ref().ok_or(GatewayError::NoRoute)
    }

    fn query(req: &ApiRequest, key: &str) -> Option<String> {
        url::form_urlencoded::parse(req.query.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }

    fn start_login(&self, next: &str, pkce: bool) -> Result<(String, String), GatewayError> {
        let kakao = self.kakao()?;
        let pkce = pkce && kakao.config().pkce;
        let (token, state) = self.state.issue(next, pkce, now(), self.state_ttl);
        let challenge =
            pkce.then(|| StateSigner::pkce_challenge(&self.state.pkce_verifier(&state)));
        Ok((kakao.authorize_url(&token, challenge.as_deref()), token))
    }

    fn state_cookie(&self, value: &str, max_age: i64, secure: bool) -> String {
        set_cookie(STATE_COOKIE, value, &self.prefix, max_age, secure)
    }

    fn login_url(&self, req: &ApiRequest) -> Result<ApiReply, GatewayError> {
        // A legacy client that will not send the state back cannot complete PKCE either.
        let (url, state) = self.start_login("/", self.require_state)?;
        Ok(
            ApiReply::json(200, json!({"login_url": url})).cookie(self.state_cookie(
                &state,
                self.state_ttl,
                req.secure,
            )),
        )
    }

    fn login(&self, req: &ApiRequest) -> Result<ApiReply, GatewayError> {
        let next = safe_next(Self::query(req, "next").as_deref(), &self.allowed_origins);
        let (url, state) = self.start_login(&next, true)?;
        Ok(ApiReply::redirect(&url).cookie(self.state_cookie(&state, self.state_ttl, req.secure)))
    }

    /// The PKCE verifier for a verified state, or the error for a bad one.
    fn check_state(
        &self,
        state: Option<&str>,
        cookie: Option<&str>,
        required: bool,
    ) -> Result<Option<(String, Option<String>)>, GatewayError> {
        let Some(state) = state else {
            return if required {
                Err(GatewayError::InvalidState)
            } else {
                Ok(None)
            };
        };
        let parsed = self
            .state
            .verify(state, now())
            .ok_or(GatewayError::InvalidState)?;
        // A state cookie, when the browser has one, must be this very state (login CSRF).
        if cookie.is_some_and(|c| c != state) {
            return Err(GatewayError::InvalidState);
        }
        let verifier = parsed.p.then(|| self.state.pkce_verifier(&parsed));
        Ok(Some((parsed.x, verifier)))
    }

    async fn browser_callback(&self, req: &ApiRequest) -> Result<ApiReply, GatewayError> {
        let kakao = self.kakao()?;
        let cookie = cookie(&req.headers, STATE_COOKIE);
        // The browser flow always needs its state, and the cookie that proves it is this browser's.
        if cookie.is_none() {
            return Err(GatewayError::InvalidState);
        }
        let state = Self::query(req, "state");
        let (next, verifier) = self
            .check_state(state.as_deref(), cookie, true)?
            .expect("required");
        if let Some(err) = Self::query(req, "error") {
            return Err(ProviderError::LoginFailed(format!("authorize returned {err}")).into());
        }
        let code = Self::query(req, "code")
            .ok_or_else(|| GatewayError::BadRequest("callback without code".into()))?;
        let user = kakao.login(&code, verifier.as_deref()).await?;
        let issued = self
            .issue_for(&self.store.upsert_user(&user, now()).await?)
            .await?;
        Ok(self
            .session_cookies(ApiReply::redirect(&next), &issued, req.secure)
            .cookie(self.state_cookie("", 0, req.secure)))
    }

    async fn json_callback(&self, req: &ApiRequest) -> Result<ApiReply, GatewayError> {
        let kakao = self.kakao()?;
        let content_type = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut body = if req.body.is_empty() {
            CallbackBody {
                code: None,
                state: None,
            }
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            let f: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(&req.body)
                    .into_owned()
                    .collect();
            CallbackBody {
                code: f.get("code").cloned(),
                state: f.get("state").cloned(),
            }
        } else {
            serde_json::from_slice(&req.body)
                .map_err(|_| GatewayError::BadRequest("callback body is not JSON".into()))?
        };
        body.code = body.code.or_else(|| Self::query(req, "code"));
        body.state = body.state.or_else(|| Self::query(req, "state"));
        let code = body
            .code
            .filter(|c| !c.is_empty() && c.len() <= 512)
            .ok_or_else(|| GatewayError::BadRequest("code is required".into()))?;
        let checked = self.check_state(
            body.state.as_deref(),
            cookie(&req.headers, STATE_COOKIE),
            self.require_state,
        )?;
        let verifier = checked.and_then(|(_, v)| v);
        let user = kakao.login(&code, verifier.as_deref()).await?;
        let issued = self
            .issue_for(&self.store.upsert_user(&user, now()).await?)
            .await?;
        Ok(self.token_response(&issued))
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

    fn session_cookies(&self, reply: ApiReply, issued: &Issued, secure: bool) -> ApiReply {
        // The access cookie outlives its JWT so an expired one can trigger a transparent refresh.
        reply
            .cookie(set_cookie(
                ACCESS_COOKIE,
                &issued.access,
                "/",
                self.refresh_ttl,
                secure,
            ))
            .cookie(set_cookie(
                REFRESH_COOKIE,
                &issued.refresh,
                "/",
                self.refresh_ttl,
                secure,
            ))
    }

    /// Cookies that end the browser session.
    fn clear_cookies(secure: bool) -> Vec<String> {
        vec![
            set_cookie(ACCESS_COOKIE, "", "/", 0, secure),
            set_cookie(REFRESH_COOKIE, "", "/", 0, secure),
        ]
    }

    fn subject(user: &User) -> Subject {
        Subject {
            user_id: user.id,
            username: user.username.clone(),
            email: user.email.clone(),
            nickname: Some(user.nickname.clone()).filter(|n| !n.is_empty()),
            provider: user.provider.clone(),
        }
    }

    fn sign(&self, subject: Subject, refresh: String) -> Result<Issued, GatewayError> {
        let (access, claims_exp) = self
            .issuer
            .issue_access(&subject)
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

    /// Rotation shared by `POST /refresh` and the proxy's transparent cookie refresh.
    pub async fn rotate(&self, presented: &str) -> Result<Issued, GatewayError> {
        if presented.is_empty() || presented.len() > 256 {
            return Err(GatewayError::InvalidRefreshToken("malformed"));
        }
        let (token, new_hash) = refresh::new_refresh_token();
        let t = now();
        match self
            .store
            .rotate_refresh(
                &refresh::hash(presented),
                &new_hash,
                t,
                t + self.refresh_ttl,
            )
            .await?
        {
            Rotation::Rotated { user_id } => {
                let user = self
                    .store
                    .user(user_id)
                    .await?
                    .ok_or(GatewayError::InvalidRefreshToken("user gone"))?;
                self.sign(Self::subject(&user), token)
            }
            Rotation::Reused { user_id } => {
                self.metrics.refresh_reuse.inc();
                tracing::warn!(user_id, "refresh token reused: its whole family is revoked");
                Err(GatewayError::InvalidRefreshToken("reused"))
            }
            Rotation::Invalid => Err(GatewayError::InvalidRefreshToken(
                "unknown, expired or revoked",
            )),
        }
    }

    /// For the proxy: a rotated session as cookies, from the refresh cookie.
    pub async fn refresh_cookies(
        &self,
        presented: &str,
        secure: bool,
    ) -> Result<(Arc<AccessClaims>, Vec<String>), GatewayError> {
        let issued = self.rotate(presented).await?;
        let claims = self.verifier.verify(&issued.access)?;
        let reply = self.session_cookies(ApiReply::json(200, json!({})), &issued, secure);
        Ok((claims, reply.headers.into_iter().map(|(_, v)| v).collect()))
    }

    async fn refresh(&self, req: &ApiRequest) -> Result<ApiReply, GatewayError> {
        let body: RefreshBody = serde_json::from_slice(&req.body).map_err(|_| {
            GatewayError::BadRequest("expected {\"refresh_token\": \"...\"}".into())
        })?;
        let issued = self.rotate(&body.refresh_token).await?;
        Ok(self.token_response(&issued))
    }

    /// The caller's verified access token: `Authorization: Bearer`, else the access cookie.
    fn caller(&self, req: &ApiRequest) -> Result<Arc<AccessClaims>, GatewayError> {
        let values = req
            .headers
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes());
        let token = match Verifier::bearer(values)? {
            Some(t) => t,
            None => cookie(&req.headers, ACCESS_COOKIE)
                .filter(|c| !c.is_empty())
                .ok_or(TokenError::Missing)?,
        };
        Ok(self.verifier.verify(token)?)
    }

    async fn profile(&self, req: &ApiRequest) -> Result<ApiReply, GatewayError> {
        let claims = self.caller(req)?;
        let id: i64 = claims
            .sub
            .parse()
            .map_err(|_| TokenError::Invalid("sub is not a user id".into()))?;
        let user = self
            .store
            .user(id)
            .await?
            .ok_or_else(|| TokenError::Invalid("no such user".into()))?;
        let created_at = time::OffsetDateTime::from_unix_timestamp(user.created_at)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        Ok(ApiReply::json(
            200,
            json!({
                "id": user.id,
                "username": user.username,
                "email": user.email.unwrap_or_default(),
                "nickname": user.nickname,
                "profile_image": user.profile_image,
                "is_social_user": true,
                "social_provider": user.provider,
                "created_at": created_at,
            }),
        ))
    }

    async fn logout(&self, req: &ApiRequest) -> Result<ApiReply, GatewayError> {
        let claims = self.caller(req)?;
        let user_id = claims.sub.parse::<i64>().ok();
        // Durable first: the answer 200 means the revocation survives a restart.
        self.store
            .revoke_access(&claims.jti, user_id, claims.exp, now())
            .await?;
        self.revocations.revoke(&claims.jti, claims.exp);
        self.metrics
            .revoked_tokens
            .set(self.revocations.len() as i64);
        if let Some(id) = user_id {
            self.store.revoke_user_refresh(id, now()).await?;
        }
        let mut reply = ApiReply::json(200, json!({"message": "Logged out."}));
        for c in Self::clear_cookies(req.secure) {
            reply = reply.cookie(c);
        }
        Ok(reply)
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
