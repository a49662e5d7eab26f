//! The Kakao Login client: authorize URL, code exchange (client_secret_post, PKCE S256) and
//! `/v2/user/me`. Redirects are never followed, bodies are capped, and nothing Kakao returns is
//! trusted until it parses into the expected shape. Authorization codes and Kakao's tokens are
//! never logged or returned: KOE320 error descriptions echo the code, so only `error_code` and
//! `error` are kept.
//!
//! In Kakao's OpenID Connect mode (`oidc = true`) the authorize request carries `openid` and a
//! `nonce`, and the `id_token` of the token response is verified (`id_token.rs`: Kakao's JWKS,
//! issuer, `aud` = the REST API key, the nonce) besides the user-info call, whose `id` must be
//! the token's `sub`.

use serde::Deserialize;

use super::id_token::{self, Jwks, Rules};
use super::set::{self, SecurityEvent, SetError};
use super::{http, LoginRequest, ProviderError};
use crate::config::KakaoConfig;
use crate::store::ProviderUser;

pub struct KakaoClient {
    http: reqwest::Client,
    cfg: KakaoConfig,
    /// `authgate_provider_request_duration_seconds{provider, endpoint}`.
    durations: prometheus::HistogramVec,
    jwks: Jwks,
    leeway: u64,
}

#[derive(Deserialize)]
struct TokenOk {
    access_token: String,
    #[allow(dead_code)]
    token_type: String,
    #[serde(default)]
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct Me {
    id: i64,
    #[serde(default)]
    kakao_account: Option<Account>,
}

#[derive(Deserialize, Default)]
struct Account {
    #[serde(default)]
    profile: Option<Profile>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    is_email_valid: Option<bool>,
    #[serde(default)]
    is_email_verified: Option<bool>,
}

#[derive(Deserialize, Default)]
struct Profile {
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    profile_image_url: Option<String>,
}

impl KakaoClient {
    pub fn new(
        cfg: KakaoConfig,
        durations: prometheus::HistogramVec,
        leeway: u64,
    ) -> Result<KakaoClient, reqwest::Error> {
        let http = http::client(cfg.timeout_ms)?;
        Ok(KakaoClient {
            jwks: Jwks::new(&cfg.id, http.clone(), durations.clone()),
            http,
            cfg,
            durations,
            leeway,
        })
    }

    pub fn config(&self) -> &KakaoConfig {
        &self.cfg
    }

    /// A pushed account-status event, verified against Kakao's keys (`set.rs`).
    pub async fn verify_event(&self, token: &str, now: i64) -> Result<SecurityEvent, SetError> {
        let rules = set::Rules {
            issuer: &self.cfg.issuer,
            audience: &self.cfg.client_id,
            jwks_url: &self.cfg.jwks_url,
            leeway: self.leeway as i64,
        };
        set::verify(&self.jwks, &rules, token, now).await
    }

    /// The authorize URL; scopes are comma-separated as Kakao expects at authorize.
    pub fn authorize_url(&self, state: &str, code_challenge: Option<&str>, nonce: &str) -> String {
        let mut url = url::Url::parse(&self.cfg.authorize_url).expect("validated by config");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.cfg.client_id)
                .append_pair("redirect_uri", &self.cfg.redirect_uri)
                .append_pair("response_type", "code")
                .append_pair("scope", &self.cfg.scopes.join(","))
                .append_pair("state", state);
            if self.cfg.oidc {
                q.append_pair("nonce", nonce);
            }
            if let Some(challenge) = code_challenge {
                q.append_pair("code_challenge", challenge)
                    .append_pair("code_challenge_method", "S256");
            }
        }
        url.into()
    }

    /// Exchanges the code and reads the profile (and in OIDC mode verifies the `id_token`).
    pub async fn login(&self, req: LoginRequest<'_>) -> Result<ProviderUser, ProviderError> {
        // Kakao does not send `iss` today; one that names another issuer is a mix-up.
        super::check_response_issuer(&self.cfg.issuer, req.iss, false)?;
        let token = self.exchange(req.code, req.code_verifier).await?;
        let sub = match (self.cfg.oidc, &token.id_token) {
            (false, _) => None,
            (true, None) => {
                // The app's settings, not the user's doing.
                return Err(ProviderError::Unavailable(
                    "no id_token: is OpenID Connect enabled for the app in the Kakao console?"
                        .into(),
                ));
            }
            (true, Some(id_token)) => {
                let rules = Rules {
                    issuer: &self.cfg.issuer,
                    client_id: &self.cfg.client_id,
                    leeway: self.leeway,
                };
                let now = jsonwebtoken::get_current_timestamp() as i64;
                Some(
                    id_token::verify(
                        &self.jwks,
                        &self.cfg.jwks_url,
                        &rules,
                        id_token,
                        req.nonce,
                        now,
                    )
                    .await?
                    .sub,
                )
            }
        };
        let user = self.me(&token.access_token).await?;
        if sub.is_some_and(|sub| sub != user.provider_user_id) {
            return Err(ProviderError::LoginFailed(
                "the id_token and the user info name different users".into(),
            ));
        }
        Ok(user)
    }

    async fn exchange(
        &self,
        code: &str,
        code_verifier: Option<&str>,
    ) -> Result<TokenOk, ProviderError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("client_id", self.cfg.client_id.as_str()),
            ("redirect_uri", self.cfg.redirect_uri.as_str()),
            ("code", code),
        ];
        if !self.cfg.client_secret.is_empty() {
            form.push(("client_secret", self.cfg.client_secret.as_str()));
        }
        if let Some(v) = code_verifier {
            form.push(("code_verifier", v));
        }
        let request = self.http.post(&self.cfg.token_url).form(&form);
        let (status, body) = http::call(&self.durations, &self.cfg.id, "token", request).await?;
        http::token_answer(&self.cfg.id, status, &body)
    }

    async fn me(&self, access_token: &str) -> Result<ProviderUser, ProviderError> {
        let request = self
            .http
            .get(&self.cfg.userinfo_url)
            .bearer_auth(access_token)
            .header(
                "content-type",
                "application/x-www-form-urlencoded;charset=utf-8",
            );
        let (status, body) = http::call(&self.durations, &self.cfg.id, "userinfo", request).await?;
        if status != 200 {
            return Err(ProviderError::Unavailable(format!(
                "user info answered {status}"
            )));
        }
        let me: Me = serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Unavailable("user info is not the expected JSON".into()))?;
        if me.id <= 0 {
            return Err(ProviderError::Unavailable(
                "user info has no valid id".into(),
            ));
        }
        let account = me.kakao_account.unwrap_or_default();
        let profile = account.profile.unwrap_or_default();
        let email = match (
            account.email,
            account.is_email_valid,
            account.is_email_verified,
        ) {
            (Some(e), Some(true), Some(true)) => http::clean_email(Some(e)),
            _ => None,
        };
        Ok(ProviderUser {
            provider: self.cfg.id.clone(),
            provider_user_id: me.id.to_string(),
            email,
            nickname: http::clean_name(&profile.nickname.unwrap_or_default()),
            profile_image: http::clean_picture(profile.profile_image_url),
        })
    }
}
