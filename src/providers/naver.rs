//! Naver Login: plain OAuth 2.0 (no OpenID Connect, no `id_token`, no nonce, no PKCE) and Naver's
//! profile API. The `state` is required at authorize and sent again with the code. The token
//! endpoint reports failures as 200 with an `error` field; the profile answers
//! `{"resultcode":"00","response":{...}}`, each field only with the user's consent. `id` is an
//! opaque string of up to 64 characters. Naver gives no verified flag with the email address, so
//! none is kept (nothing downstream can tell a verified address from a typed one).

use serde::Deserialize;

use super::{http, LoginRequest, ProviderError};
use crate::config::NaverConfig;
use crate::store::ProviderUser;

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Me {
    resultcode: String,
    #[serde(default)]
    response: Option<Profile>,
}

#[derive(Deserialize)]
struct Profile {
    id: String,
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    profile_image: Option<String>,
}

pub struct NaverClient {
    cfg: NaverConfig,
    http: reqwest::Client,
    durations: prometheus::HistogramVec,
}

impl NaverClient {
    pub fn new(
        cfg: NaverConfig,
        durations: prometheus::HistogramVec,
    ) -> Result<NaverClient, reqwest::Error> {
        Ok(NaverClient {
            http: http::client(cfg.timeout_ms)?,
            cfg,
            durations,
        })
    }

    pub fn config(&self) -> &NaverConfig {
        &self.cfg
    }

    pub fn authorize_url(&self, state: &str) -> String {
        let mut url = url::Url::parse(&self.cfg.authorize_url).expect("validated by config");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair("redirect_uri", &self.cfg.redirect_uri)
            .append_pair("state", state);
        url.into()
    }

    /// `req.iss` is not looked at: Naver has no issuer identifier to compare it with, and its
    /// callback path is its own (`{prefix}/{id}/callback`), the other defence RFC 9207 names
    /// against a mix-up.
    pub async fn login(&self, req: LoginRequest<'_>) -> Result<ProviderUser, ProviderError> {
        let c = &self.cfg;
        let form = [
            ("grant_type", "authorization_code"),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.as_str()),
            ("code", req.code),
            ("state", req.state),
        ];
        let request = self.http.post(&c.token_url).form(&form);
        let (status, body) = http::call(&self.durations, &c.id, "token", request).await?;
        if status != 200 {
            return Err(ProviderError::Unavailable(format!(
                "token endpoint answered {status}"
            )));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
            ProviderError::Unavailable("token response is not the expected JSON".into())
        })?;
        let access_token = match (answer.access_token, answer.error) {
            (Some(t), None) if !t.is_empty() => t,
            (_, Some(e)) if e == "invalid_client" || e == "unauthorized_client" => {
                return Err(ProviderError::Unavailable(format!(
                    "Naver rejected the client credentials ({e}): check providers.client_id / client_secret"
                )))
            }
            (_, Some(e)) => return Err(ProviderError::LoginFailed(format!("token endpoint: {e}"))),
            _ => return Err(ProviderError::Unavailable("token response has no access_token".into())),
        };
        let request = self.http.get(&c.userinfo_url).bearer_auth(&access_token);
        let (status, body) = http::call(&self.durations, &c.id, "userinfo", request).await?;
        if status != 200 {
            return Err(ProviderError::Unavailable(format!(
                "profile answered {status}"
            )));
        }
        let me: Me = serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Unavailable("profile is not the expected JSON".into()))?;
        let profile = match (me.resultcode.as_str(), me.response) {
            ("00", Some(p))
                if !p.id.is_empty() && p.id.len() <= 64 && !p.id.chars().any(char::is_control) =>
            {
                p
            }
            ("00", _) => return Err(ProviderError::Unavailable("profile has no valid id".into())),
            (code, _) => {
                return Err(ProviderError::Unavailable(format!(
                    "profile resultcode {code}"
                )))
            }
        };
        let name = profile.nickname.or(profile.name).unwrap_or_default();
        Ok(ProviderUser {
            provider: c.id.clone(),
            provider_user_id: profile.id,
            email: None,
            nickname: http::clean_name(&name),
            profile_image: http::clean_picture(profile.profile_image),
        })
    }
}
