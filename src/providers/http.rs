//! What every provider client shares about talking to a provider: one `reqwest` client that
//! never follows redirects and bounds every call, bodies read up to a cap, transport failures
//! turned into [`ProviderError`]s without the URL (it may carry a query), and the duration
//! histogram.

use std::time::Duration;

use super::ProviderError;

/// Largest provider response read; real ones are a few kilobytes (a JWKS with several keys).
const MAX_BODY: usize = 256 * 1024;

pub fn client(timeout_ms: u64) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_millis(timeout_ms))
        .connect_timeout(Duration::from_millis(timeout_ms.min(3000)))
        .no_proxy()
        .user_agent(concat!("authgate/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A transport failure: a timeout, or the provider out of reach.
pub fn transport(name: &str, e: reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout
    } else {
        ProviderError::Unavailable(format!("cannot reach {name}: {}", e.without_url()))
    }
}

/// The status and the body, read up to [`MAX_BODY`].
pub async fn read(
    name: &str,
    mut resp: reqwest::Response,
) -> Result<(u16, Vec<u8>), ProviderError> {
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport(name, e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ProviderError::Unavailable(format!(
                "{name} response too large"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

/// Sends and reads, timing the call as `endpoint` in
/// `authgate_provider_request_duration_seconds{provider, endpoint}`.
pub async fn call(
    durations: &prometheus::HistogramVec,
    provider: &str,
    endpoint: &str,
    request: reqwest::RequestBuilder,
) -> Result<(u16, Vec<u8>), ProviderError> {
    let _timer = durations
        .with_label_values(&[provider, endpoint])
        .start_timer();
    let resp = request.send().await.map_err(|e| transport(provider, e))?;
    read(provider, resp).await
}

#[derive(serde::Deserialize)]
struct OauthError {
    error: String,
    /// Kakao's own code (`KOE320`...).
    #[serde(default)]
    error_code: Option<String>,
}

/// A token endpoint's answer (RFC 6749 §5): `T` from a 200; a 4xx with an OAuth error is the
/// user's failed login, except our own client credentials refused, which no user can fix;
/// anything else is the provider failing. The error's description is not kept: some providers
/// echo the code in it.
pub fn token_answer<T: serde::de::DeserializeOwned>(
    provider: &str,
    status: u16,
    body: &[u8],
) -> Result<T, ProviderError> {
    match status {
        200 => serde_json::from_slice(body).map_err(|_| {
            ProviderError::Unavailable("token response is not the expected JSON".into())
        }),
        400..=499 => match serde_json::from_slice::<OauthError>(body) {
            Ok(e) if e.error == "invalid_client" || e.error == "unauthorized_client" => {
                Err(ProviderError::Unavailable(format!(
                    "{provider} rejected the client credentials ({} {}): check its client_id / client_secret",
                    e.error,
                    e.error_code.unwrap_or_default()
                )))
            }
            Ok(e) => Err(ProviderError::LoginFailed(format!(
                "token endpoint {status}: {} {}",
                e.error,
                e.error_code.unwrap_or_default()
            ))),
            Err(_) => Err(ProviderError::Unavailable(format!(
                "token endpoint {status} without an OAuth error"
            ))),
        },
        _ => Err(ProviderError::Unavailable(format!(
            "token endpoint answered {status}"
        ))),
    }
}

/// A user's display text from a provider: control characters dropped, at most 100 characters.
pub fn clean_name(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(100).collect()
}

/// A profile picture URL worth keeping: http(s), at most 2 KiB.
pub fn clean_picture(url: Option<String>) -> Option<String> {
    url.filter(|u| u.len() <= 2048 && (u.starts_with("https://") || u.starts_with("http://")))
}

/// An email worth keeping once the provider vouches for it.
pub fn clean_email(email: Option<String>) -> Option<String> {
    email.filter(|e| e.len() <= 254 && e.contains('@') && !e.chars().any(char::is_control))
}
