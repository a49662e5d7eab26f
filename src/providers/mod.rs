//! Identity providers: one module per kind, each turning an authorization code into a verified
//! [`ProviderUser`]. The login API, the state and PKCE, the user store and token issuing are
//! shared (`api/login.rs`); a provider only builds its authorize URL and redeems a code.
//!
//! | module | kind |
//! |---|---|
//! | `kakao.rs` | Kakao Login, and its OpenID Connect mode |
//! | `oidc.rs` | any OpenID Connect issuer: discovery, PKCE, `nonce` |
//! | `naver.rs` | Naver Login (plain OAuth 2.0) |
//! | `id_token.rs` | `id_token` verification and the JWKS cache (OIDC and Kakao's OIDC mode) |
//! | `set.rs` | Kakao's account-status events (Security Event Tokens), verified |
//! | `http.rs` | the HTTP client, capped bodies and timings they all use |

mod http;
pub mod id_token;
pub mod kakao;
pub mod naver;
pub mod oidc;
pub mod set;

pub use http::{clean_email, is_plain_address};

use crate::config::ProviderConfig;
use crate::store::ProviderUser;

/// How a login through the provider failed; `error.rs` turns each into its status and code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The user's code is bad, expired or reused, the redirect URI differs, consent was denied,
    /// or the `id_token` is not one we accept.
    #[error("login failed: {0}")]
    LoginFailed(String),
    /// Unreachable, 5xx, or an answer that is not the provider's JSON.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    #[error("provider timed out")]
    Timeout,
}

/// What redeeming a code needs besides the code: the PKCE verifier when a challenge was sent,
/// the `nonce` bound to the login's state (OpenID Connect), and the state itself (Naver sends it
/// again).
pub struct LoginRequest<'a> {
    pub code: &'a str,
    pub code_verifier: Option<&'a str>,
    pub nonce: &'a str,
    pub state: &'a str,
    /// The authorization response's `iss` parameter (RFC 9207), when it had one.
    pub iss: Option<&'a str>,
}

/// RFC 9207: an authorization response that names an issuer must name this provider's, or
/// the code came from another authorization server (a mix-up) and must not be sent to this
/// provider's token endpoint; one whose issuer promises the parameter must carry it. Checked
/// before the code is redeemed. Simple string comparison, as the RFC says.
pub fn check_response_issuer(
    expected: &str,
    iss: Option<&str>,
    required: bool,
) -> Result<(), ProviderError> {
    match iss {
        Some(iss) if iss != expected => Err(ProviderError::LoginFailed(format!(
            "the authorization response names issuer {:?}, not {expected:?} (RFC 9207: a mix-up)",
            iss.chars().take(100).collect::<String>()
        ))),
        None if required => Err(ProviderError::LoginFailed(format!(
            "the authorization response has no iss parameter, which {expected:?} promises (RFC 9207)"
        ))),
        _ => Ok(()),
    }
}

pub enum Provider {
    Kakao(kakao::KakaoClient),
    Oidc(oidc::OidcClient),
    Naver(naver::NaverClient),
}

impl Provider {
    /// `leeway`: the clock skew allowed on `id_token` times (`jwt.leeway_seconds`).
    pub fn build(
        cfg: &ProviderConfig,
        durations: prometheus::HistogramVec,
        leeway: u64,
    ) -> Result<Provider, reqwest::Error> {
        Ok(match cfg {
            ProviderConfig::Kakao(c) => {
                Provider::Kakao(kakao::KakaoClient::new(c.clone(), durations, leeway)?)
            }
            ProviderConfig::Oidc(c) => {
                Provider::Oidc(oidc::OidcClient::new(c.clone(), durations, leeway)?)
            }
            ProviderConfig::Naver(c) => {
                Provider::Naver(naver::NaverClient::new(c.clone(), durations)?)
            }
        })
    }

    pub fn id(&self) -> &str {
        match self {
            Provider::Kakao(k) => &k.config().id,
            Provider::Oidc(o) => &o.config().id,
            Provider::Naver(n) => &n.config().id,
        }
    }

    pub fn display_name(&self) -> &str {
        match self {
            Provider::Kakao(k) => &k.config().display_name,
            Provider::Oidc(o) => &o.config().display_name,
            Provider::Naver(n) => &n.config().display_name,
        }
    }

    /// Kakao keeps its own error codes (`KAKAO_LOGIN_FAILED`, ...), as the seed had them.
    pub fn is_kakao(&self) -> bool {
        matches!(self, Provider::Kakao(_))
    }

    /// Whether a login must check an OpenID Connect `nonce` (so needs its browser's secret).
    pub fn needs_nonce(&self) -> bool {
        match self {
            Provider::Kakao(k) => k.config().oidc,
            Provider::Oidc(_) => true,
            Provider::Naver(_) => false,
        }
    }

    /// Whether `auth.require_state = false` lets a callback through without the browser's
    /// secret: only for the seed's client of Kakao's plain OAuth flow, which it was made for.
    pub fn takes_legacy_callbacks(&self) -> bool {
        self.is_kakao() && !self.needs_nonce()
    }

    /// Whether to send a PKCE challenge when the state will come back.
    pub fn pkce(&self) -> bool {
        match self {
            Provider::Kakao(k) => k.config().pkce,
            Provider::Oidc(o) => o.config().pkce,
            // Naver takes no PKCE.
            Provider::Naver(_) => false,
        }
    }

    pub async fn authorize_url(
        &self,
        state: &str,
        code_challenge: Option<&str>,
        nonce: &str,
    ) -> Result<String, ProviderError> {
        match self {
            Provider::Kakao(k) => Ok(k.authorize_url(state, code_challenge, nonce)),
            Provider::Oidc(o) => o.authorize_url(state, code_challenge, nonce).await,
            Provider::Naver(n) => Ok(n.authorize_url(state)),
        }
    }

    pub async fn login(&self, req: LoginRequest<'_>) -> Result<ProviderUser, ProviderError> {
        match self {
            Provider::Kakao(k) => k.login(req).await,
            Provider::Oidc(o) => o.login(req).await,
            Provider::Naver(n) => n.login(req).await,
        }
    }
}
