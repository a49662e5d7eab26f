//! Any OpenID Connect issuer (Google, Keycloak, Auth0, Entra ID, Kakao's own OIDC endpoints...):
//! discovery, the authorization-code flow with PKCE and a `nonce`, the `id_token` verified
//! (`id_token.rs`), and user info fetched only to complete what the `id_token` lacks.
//!
//! Discovery (`{issuer}/.well-known/openid-configuration`) is fetched on first use, not at start,
//! so an issuer that is down does not keep the gateway from starting; it is kept for an hour and
//! then refreshed, the old document staying in use while the issuer cannot be reached (tried
//! again a minute later); one fetch at a time, the logins waiting for it sharing its outcome. Its
//! `issuer` must equal the configured one exactly, and every endpoint it names must be https.
//! With every endpoint configured, none is fetched.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::id_token::{self, IdClaims, Jwks, Rules};
use super::{http, LoginRequest, ProviderError};
use crate::config::OidcConfig;
use crate::store::ProviderUser;

/// How long a discovery document is used before it is fetched again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// How long a stale document is used after a refresh failed, before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Endpoints {
    authorize: String,
    token: String,
    userinfo: Option<String>,
    jwks: String,
    /// `client_secret_post` when the issuer takes it, else HTTP Basic (the spec's default).
    secret_in_body: bool,
    /// Discovery's `authorization_response_iss_parameter_supported` (RFC 9207): every
    /// authorization response must then carry `iss`.
    iss_required: bool,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

#[derive(Deserialize)]
struct TokenOk {
    #[serde(default)]
    id_token: Option<String>,
    access_token: String,
}

#[derive(Deserialize)]
struct UserInfo {
    sub: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(default)]
    picture: Option<String>,
}

/// The discovery document in use, and when to fetch it again.
#[derive(Default)]
struct Discovered {
    doc: Option<Arc<Endpoints>>,
    refresh_at: Option<Instant>,
    /// Fetches begun so far: a request that waited for another's fetch takes its outcome
    /// instead of fetching again (one fetch at a time, however many logins wait).
    attempts: u64,
    last_error: Option<ProviderError>,
}

impl Discovered {
    fn fresh(&self) -> Option<Arc<Endpoints>> {
        match (&self.doc, self.refresh_at) {
            (Some(doc), Some(at)) if Instant::now() < at => Some(doc.clone()),
            _ => None,
        }
    }
}

pub struct OidcClient {
    cfg: OidcConfig,
    http: reqwest::Client,
    durations: prometheus::HistogramVec,
    leeway: u64,
    discovered: tokio::sync::RwLock<Discovered>,
    jwks: Jwks,
}

fn is_true(v: &Option<serde_json::Value>) -> bool {
    matches!(v, Some(serde_json::Value::Bool(true)))
        || matches!(v, Some(serde_json::Value::String(s)) if s == "true")
}

impl OidcClient {
    pub fn new(
        cfg: OidcConfig,
        durations: prometheus::HistogramVec,
        leeway: u64,
    ) -> Result<OidcClient, reqwest::Error> {
        let http = http::client(cfg.timeout_ms)?;
        Ok(OidcClient {
            jwks: Jwks::new(&cfg.id, http.clone(), durations.clone()),
            cfg,
            http,
            durations,
            leeway,
            discovered: tokio::sync::RwLock::new(Discovered::default()),
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.cfg
    }

    /// The endpoints: configured, discovered, or discovered earlier.
    async fn endpoints(&self) -> Result<Arc<Endpoints>, ProviderError> {
        let c = &self.cfg;
        if let (Some(authorize), Some(token), Some(jwks)) =
            (&c.authorize_url, &c.token_url, &c.jwks_url)
        {
            if c.userinfo_url.is_some() {
                return Ok(Arc::new(Endpoints {
                    authorize: authorize.clone(),
                    token: token.clone(),
                    userinfo: c.userinfo_url.clone(),
                    jwks: jwks.clone(),
                    secret_in_body: true,
                    iss_required: false,
                }));
            }
        }
        let seen = {
            let d = self.discovered.read().await;
            if let Some(doc) = d.fresh() {
                return Ok(doc);
            }
            d.attempts
        };
        let mut slot = self.discovered.write().await;
        if let Some(doc) = slot.fresh() {
            return Ok(doc);
        }
        if slot.attempts != seen {
            // Another request fetched while this one waited: its outcome stands.
            if let Some(doc) = &slot.doc {
                return Ok(doc.clone());
            }
            if let Some(e) = &slot.last_error {
                return Err(e.clone());
            }
        }
        slot.attempts += 1;
        match self.discover().await {
            Ok(endpoints) => {
                let endpoints = Arc::new(endpoints);
                slot.doc = Some(endpoints.clone());
                slot.refresh_at = Some(Instant::now() + DISCOVERY_TTL);
                slot.last_error = None;
                Ok(endpoints)
            }
            Err(e) => {
                slot.last_error = Some(e.clone());
                match &slot.doc {
                    // A stale document beats none while the issuer cannot be reached; try
                    // again in a minute, not on every login.
                    Some(doc) => {
                        tracing::warn!(provider = %c.id, error = %e, "discovery refresh failed; using the previous document");
                        let doc = doc.clone();
                        slot.refresh_at = Some(Instant::now() + RETRY_AFTER);
                        Ok(doc)
                    }
                    None => Err(e),
                }
            }
        }
    }

    async fn discover(&self) -> Result<Endpoints, ProviderError> {
        let c = &self.cfg;
        let url = format!(
            "{}/.well-known/openid-configuration",
            c.issuer.trim_end_matches('/')
        );
        let (status, body) =
            http::call(&self.durations, &c.id, "discovery", self.http.get(&url)).await?;
        if status != 200 {
            return Err(ProviderError::Unavailable(format!(
                "discovery answered {status}"
            )));
        }
        let d: Discovery = serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Unavailable("discovery is not the expected JSON".into()))?;
        if d.issuer != c.issuer {
            return Err(ProviderError::Unavailable(format!(
                "discovery names issuer {:?}, configured {:?}: they must be equal",
                d.issuer, c.issuer
            )));
        }
        for (name, url) in [
            ("authorization_endpoint", Some(&d.authorization_endpoint)),
            ("token_endpoint", Some(&d.token_endpoint)),
            ("jwks_uri", Some(&d.jwks_uri)),
            ("userinfo_endpoint", d.userinfo_endpoint.as_ref()),
        ] {
            if let Some(url) = url.filter(|u| !crate::config::is_provider_url(u)) {
                return Err(ProviderError::Unavailable(format!(
                    "discovery's {name} {url:?} is not https"
                )));
            }
        }
        let secret_in_body = d
            .token_endpoint_auth_methods_supported
            .is_some_and(|m| m.iter().any(|m| m == "client_secret_post"));
        Ok(Endpoints {
            authorize: c.authorize_url.clone().unwrap_or(d.authorization_endpoint),
            token: c.token_url.clone().unwrap_or(d.token_endpoint),
            userinfo: c.userinfo_url.clone().or(d.userinfo_endpoint),
            jwks: c.jwks_url.clone().unwrap_or(d.jwks_uri),
            secret_in_body,
            iss_required: d.authorization_response_iss_parameter_supported,
        })
    }

    pub async fn authorize_url(
        &self,
        state: &str,
        code_challenge: Option<&str>,
        nonce: &str,
    ) -> Result<String, ProviderError> {
        let endpoints = self.endpoints().await?;
        let mut url = url::Url::parse(&endpoints.authorize).map_err(|_| {
            ProviderError::Unavailable("the authorization endpoint is not a URL".into())
        })?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.cfg.client_id)
                .append_pair("redirect_uri", &self.cfg.redirect_uri)
                .append_pair("scope", &self.cfg.scopes.join(" "))
                .append_pair("state", state)
                .append_pair("nonce", nonce);
            if let Some(challenge) = code_challenge {
                q.append_pair("code_challenge", challenge)
                    .append_pair("code_challenge_method", "S256");
            }
        }
        Ok(url.into())
    }

    pub async fn login(&self, req: LoginRequest<'_>) -> Result<ProviderUser, ProviderError> {
        let endpoints = self.endpoints().await?;
        super::check_response_issuer(&self.cfg.issuer, req.iss, endpoints.iss_required)?;
        let tokens = self.exchange(&endpoints, &req).await?;
        let id_token = tokens.id_token.ok_or_else(|| {
            ProviderError::Unavailable("the token response has no id_token".into())
        })?;
        let rules = Rules {
            issuer: &self.cfg.issuer,
            client_id: &self.cfg.client_id,
            leeway: self.leeway,
        };
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let claims = id_token::verify(
            &self.jwks,
            &endpoints.jwks,
            &rules,
            &id_token,
            req.nonce,
            now,
        )
        .await?;
        // User info only completes the claims: when it cannot be had, the login goes on with
        // what the verified id_token says. About another subject, it is refused.
        let info = match &endpoints.userinfo {
            Some(url) if claims.email.is_none() || display_name(&claims).is_none() => {
                match self.userinfo(url, &tokens.access_token, &claims.sub).await {
                    Ok(info) => Some(info),
                    Err(e @ ProviderError::LoginFailed(_)) => return Err(e),
                    Err(e) => {
                        tracing::warn!(provider = %self.cfg.id, error = %e, "user info unavailable; using the id_token's claims alone");
                        None
                    }
                }
            }
            _ => None,
        };
        Ok(self.user(claims, info))
    }

    async fn exchange(
        &self,
        endpoints: &Endpoints,
        req: &LoginRequest<'_>,
    ) -> Result<TokenOk, ProviderError> {
        let c = &self.cfg;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", req.code),
            ("redirect_uri", c.redirect_uri.as_str()),
            ("client_id", c.client_id.as_str()),
        ];
        if let Some(v) = req.code_verifier {
            form.push(("code_verifier", v));
        }
        let mut request = self.http.post(&endpoints.token);
        if !c.client_secret.is_empty() {
            if endpoints.secret_in_body {
                form.push(("client_secret", c.client_secret.as_str()));
            } else {
                request = request.basic_auth(
                    url::form_urlencoded::byte_serialize(c.client_id.as_bytes())
                        .collect::<String>(),
                    Some(
                        url::form_urlencoded::byte_serialize(c.client_secret.as_bytes())
                            .collect::<String>(),
                    ),
                );
            }
        }
        let (status, body) =
            http::call(&self.durations, &c.id, "token", request.form(&form)).await?;
        http::token_answer(&self.cfg.id, status, &body)
    }

    /// User info, for the claims the `id_token` left out; it must be about the same `sub`.
    async fn userinfo(
        &self,
        url: &str,
        access_token: &str,
        sub: &str,
    ) -> Result<UserInfo, ProviderError> {
        let request = self.http.get(url).bearer_auth(access_token);
        let (status, body) = http::call(&self.durations, &self.cfg.id, "userinfo", request).await?;
        if status != 200 {
            return Err(ProviderError::Unavailable(format!(
                "user info answered {status}"
            )));
        }
        let info: UserInfo = serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Unavailable("user info is not the expected JSON".into()))?;
        if info.sub != sub {
            return Err(ProviderError::LoginFailed(
                "user info is about another subject".into(),
            ));
        }
        Ok(info)
    }

    fn user(&self, claims: IdClaims, info: Option<UserInfo>) -> ProviderUser {
        let verified_email = claims
            .email_is_verified()
            .then(|| claims.email.clone())
            .flatten();
        let (info_email, info_name, info_picture) = match info {
            Some(i) => {
                let email = is_true(&i.email_verified).then_some(i.email).flatten();
                let name = i.name.or(i.nickname).or(i.preferred_username);
                (email, name, i.picture)
            }
            None => (None, None, None),
        };
        let name = display_name(&claims).or(info_name).unwrap_or_default();
        ProviderUser {
            provider: self.cfg.id.clone(),
            provider_user_id: claims.sub,
            email: http::clean_email(verified_email.or(info_email)),
            nickname: http::clean_name(&name),
            profile_image: http::clean_picture(claims.picture.or(info_picture)),
        }
    }
}

fn display_name(c: &IdClaims) -> Option<String> {
    c.name
        .clone()
        .or_else(|| c.nickname.clone())
        .or_else(|| c.preferred_username.clone())
}
