//! The Kakao Login client: authorize URL, code exchange (client_secret_post, PKCE S256) and
//! `/v2/user/me`. Redirects are never followed, bodies are capped, and nothing Kakao returns is
//! trusted until it parses into the expected shape. Authorization codes and Kakao's tokens are
//! never logged or returned: KOE320 error descriptions echo the code, so only `error_code` and
//! `error` are kept.

use std::time::Duration;

use serde::Deserialize;

use super::ProviderError;
use crate::config::KakaoConfig;
use crate::store::ProviderUser;

/// Largest Kakao response read; real ones are a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;

pub struct KakaoClient {
    http: reqwest::Client,
    cfg: KakaoConfig,
    /// `authgate_provider_request_duration_seconds{provider, endpoint}`.
    durations: prometheus::HistogramVec,
}

#[derive(Deserialize)]
struct TokenOk {
    access_token: String,
    #[allow(dead_code)]
    token_type: String,
}

#[derive(Deserialize)]
struct OauthError {
    error: String,
    #[serde(default)]
    error_code: Option<String>,
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
    ) -> Result<KakaoClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms.min(3000)))
            .no_proxy()
            .user_agent(concat!("authgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(KakaoClient {
            http,
            cfg,
            durations,
        })
    }

    pub fn config(&self) -> &KakaoConfig {
        &self.cfg
    }

    /// The authorize URL; scopes are comma-separated as Kakao expects at authorize.
    pub fn authorize_url(&self, state: &str, code_challenge: Option<&str>) -> String {
        let mut url = url::Url::parse(&self.cfg.authorize_url).expect("validated by config");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.cfg.client_id)
                .append_pair("redirect_uri", &self.cfg.redirect_uri)
                .append_pair("response_type", "code")
                .append_pair("scope", &self.cfg.scopes.join(","))
                .append_pair("state", state);
            if let Some(challenge) = code_challenge {
                q.append_pair("code_challenge", challenge)
                    .append_pair("code_challenge_method", "S256");
            }
        }
        url.into()
    }

    /// Exchanges the code and reads the profile.
    pub async fn login(
        &self,
        code: &str,
        code_verifier: Option<&str>,
    ) -> Result<ProviderUser, ProviderError> {
        // Timers observe when dropped, on every path.
        let token = {
            let _timer = self
                .durations
                .with_label_values(&["kakao", "token"])
                .start_timer();
            self.exchange(code, code_verifier).await?
        };
        let _timer = self
            .durations
            .with_label_values(&["kakao", "userinfo"])
            .start_timer();
        self.me(&token).await
    }

    async fn exchange(
        &self,
        code: &str,
        code_verifier: Option<&str>,
    ) -> Result<String, ProviderError> {
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
        let resp = self
            .http
            .post(&self.cfg.token_url)
            .form(&form)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        let body = read_capped(resp).await?;
        match status {
            200 => serde_json::from_slice::<TokenOk>(&body)
                .map(|t| t.access_token)
                .map_err(|_| ProviderError::Unavailable("token response is not the expected JSON".into())),
            400..=499 => match serde_json::from_slice::<OauthError>(&body) {
                // Our own credentials are wrong: not the user's fault, and not fixable by retrying.
                Ok(e) if e.error == "invalid_client" => Err(ProviderError::Unavailable(format!(
                    "Kakao rejected the client credentials ({}): check kakao.client_id / client_secret",
                    e.error_code.unwrap_or_default()
                ))),
                Ok(e) => Err(ProviderError::LoginFailed(format!(
                    "token endpoint {status}: {} {}",
                    e.error,
                    e.error_code.unwrap_or_default()
                ))),
                Err(_) => Err(ProviderError::Unavailable(format!("token endpoint {status} without Kakao's error JSON"))),
            },
            _ => Err(ProviderError::Unavailable(format!("token endpoint answered {status}"))),
        }
    }

    async fn me(&self, access_token: &str) -> Result<ProviderUser, ProviderError> {
        let resp = self
            .http
            .get(&self.cfg.userinfo_url)
            .bearer_auth(access_token)
            .header(
                "content-type",
                "application/x-www-form-urlencoded;charset=utf-8",
            )
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        let body = read_capped(resp).await?;
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
            (Some(e), Some(true), Some(true)) if e.len() <= 254 && e.contains('@') => Some(e),
            _ => None,
        };
        let nickname: String = profile
            .nickname
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect();
        let profile_image = profile
            .profile_image_url
            .filter(|u| u.len() <= 2048 && (u.starts_with("https://") || u.starts_with("http://")));
        Ok(ProviderUser {
            provider: "kakao".into(),
            provider_user_id: me.id.to_string(),
            email,
            nickname,
            profile_image,
        })
    }
}

fn transport(e: reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout
    } else {
        // Without the URL: it may carry a query, and the log needs the kind, not the address.
        ProviderError::Unavailable(format!("cannot reach Kakao: {}", e.without_url()))
    }
}

async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ProviderError::Unavailable(
                "Kakao response too large".into(),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
