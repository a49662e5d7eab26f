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
