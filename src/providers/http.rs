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

/// An email worth keeping once the provider vouches for it: one plain address
/// ([`is_plain_address`]), or none. A provider that calls `victim@corp.test, attacker@evil.test`
/// verified must not have it forwarded as `X-User-Email`: many parsers read the first address.
pub fn clean_email(email: Option<String>) -> Option<String> {
    email.filter(|e| is_plain_address(e))
}

/// One `local@domain` address and nothing else, in ASCII: a dot-atom local part (letters,
/// digits and `!#$%&'*+-/^_`{|}~`, dots inside; no `=` or `?`, so no MIME encoded word a
/// decoder could turn into a list), a domain of two or more dot-separated labels (letters,
/// digits, inner hyphens), at most 64 and 254 bytes. No spaces, commas, angle brackets, quotes,
/// comments, IP literals, a second `@`, nor any character outside ASCII (some truncate U+0140 to
/// `@`): nothing a header or address parser could read as more than one address, or as another
/// one. Internationalised addresses are left out. The authorization rules' `email:` and
/// `email_domain:` selectors use the same rule.
pub fn is_plain_address(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/^_`{|}~".contains(c);
    let dot_atom = |s: &str| {
        !s.is_empty() && s.split('.').all(|part| !part.is_empty() && part.chars().all(atext))
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    email.len() <= 254
        && local.len() <= 64
        && dot_atom(local)
        && domain.len() <= 253
        && domain.split('.').count() >= 2
        && domain.split('.').all(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_plain_address_is_an_email() {
        for ok in [
            "ryan@kakao.test",
            "first.last+tag@mail.example.co.kr",
            "o'brien@example.ie",
            "a_b-c@x-y.example",
            "user@xn--hxajbheg2az3al.xn--jxalpdlp",
        ] {
            assert!(is_plain_address(ok), "{ok}");
        }
        for bad in [
            "victim@corp.test, attacker@evil.test",
            "victim@corp.test,attacker@evil.test",
            "Victim <victim@corp.test>",
            "<victim@corp.test>",
            "\"victim@corp.test\"@evil.test",
            "\"a b\"@example.com",
            "victim@corp.test (attacker@evil.test)",
            "a@b@c.test",
            "라이언@카카오.한국",
            "=?utf-8?q?victim=40corp.test=2C?=@evil.test",
            "victim\u{140}corp.test\u{12c}x@evil.test",
            "victim\u{ff20}corp.test",
            "victim@corp.test;attacker@evil.test",
            "victim @corp.test",
            "victim@corp.test\r\nX-User-Id: 1",
            ".a@b.test",
            "a.@b.test",
            "a..b@c.test",
            "a@localhost",
            "a@[127.0.0.1]",
            "a@-b.test",
            "a@b-.test",
            "a@b..test",
            "@b.test",
            "a@",
            "",
            "plain",
        ] {
            assert!(!is_plain_address(bad), "{bad:?}");
        }
        assert!(!is_plain_address(&format!("{}@b.test", "a".repeat(65))));
        assert!(!is_plain_address(&format!("a@{}.test", "b".repeat(64))));
        assert_eq!(
            clean_email(Some("victim@corp.test, attacker@evil.test".into())),
            None
        );
    }
}
