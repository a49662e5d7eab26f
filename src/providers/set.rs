//! Kakao's account-status webhook: Security Event Tokens (RFC 8417) pushed as in the OpenID
//! Shared Signals Framework (RFC 8935), verified before anything is believed.
//!
//! - JOSE header `typ` `secevent+jwt` (an id_token or access token is not an event), an
//!   asymmetric algorithm that fits the key, the key by `kid` from Kakao's JWKS (cached, fetched
//!   again for an unknown `kid` at most once a minute: `id_token::Jwks`).
//! - `iss` exactly `kakao.issuer`, `aud` our REST API key (`kakao.client_id`), `iat` within a
//!   day and not in the future, a `jti` (replays are refused by the store, `store/cutoffs.rs`),
//!   and `events` naming a subject `{"subject_type":"iss-sub","iss","sub"}` with Kakao's `iss`.
//!
//! Which events end a user's sessions is decided by the event type's last path segment (the
//! families are `.../risc/event-type/…`, `.../oauth/event-type/…`, Kakao's own, …):
//! [`CUTTING`] do; user-linked, scope consent, profile changes and anything unknown never do.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::id_token::{allowed, Jwks};
use super::ProviderError;

/// How old a SET's `iat` may be; its `jti` is kept twice as long (`sync.rs` prunes).
pub const EVENT_MAX_AGE: i64 = 86_400;

/// Event types (last path segment) after which none of the user's tokens may be used.
pub const CUTTING: &[&str] = &[
    "user-unlinked",
    "tokens-revoked",
    "sessions-revoked",
    "account-disabled",
    "account-purged",
    "credential-compromise",
    "credential-change-required",
];

/// Why a SET was refused, as RFC 8935 §2.3 names it (`{"err": …}` with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    #[error("invalid_key: {0}")]
    InvalidKey(String),
    #[error("invalid_issuer")]
    InvalidIssuer,
    #[error("invalid_audience")]
    InvalidAudience,
    /// Kakao's keys could not be fetched: nothing can be verified now (503, delivered again).
    #[error("keys unavailable: {0}")]
    KeysUnavailable(String),
}

impl SetError {
    /// The `err` code of the push spec.
    pub fn code(&self) -> &'static str {
        match self {
            SetError::InvalidRequest(_) => "invalid_request",
            SetError::InvalidKey(_) | SetError::KeysUnavailable(_) => "invalid_key",
            SetError::InvalidIssuer => "invalid_issuer",
            SetError::InvalidAudience => "invalid_audience",
        }
    }
}

/// The user an event is about, an issuer and its subject: `{"subject_type": "iss-sub", …}`
/// inside the event (RFC 8417, RISC), or `{"format": "iss_sub", …}` as the SET's `sub_id`
/// (OpenID SSF 1.0). Either is read.
#[derive(Debug, Clone, Deserialize)]
struct Subject {
    #[serde(default)]
    subject_type: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
}

impl Subject {
    fn is_iss_sub(&self) -> bool {
        self.subject_type.as_deref() == Some("iss-sub") || self.format.as_deref() == Some("iss_sub")
    }
}

#[derive(Debug, Deserialize)]
struct Event {
    subject: Option<Subject>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    jti: Option<String>,
    iat: Option<i64>,
    events: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    sub_id: Option<Subject>,
}

/// A verified SET: its `jti` and, per event, the short type name and the Kakao user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    pub jti: String,
    pub events: Vec<(String, String)>,
}

impl SecurityEvent {
    /// The first event that ends the user's sessions: `(type, user id)`.
    pub fn cutting(&self) -> Option<&(String, String)> {
        self.events
            .iter()
            .find(|(t, _)| CUTTING.contains(&t.as_str()))
    }
}

/// What a SET must say.
pub struct Rules<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub jwks_url: &'a str,
    pub leeway: i64,
}

fn bad(why: impl Into<String>) -> SetError {
    SetError::InvalidRequest(why.into())
}

pub async fn verify(
    jwks: &Jwks,
    rules: &Rules<'_>,
    token: &str,
    now: i64,
) -> Result<SecurityEvent, SetError> {
    if token.len() > 16 * 1024 {
        return Err(bad("over 16 KiB"));
    }
    // `decode_header` knows no `none`: an unsigned token fails here.
    let header = jsonwebtoken::decode_header(token).map_err(|e| bad(format!("header: {e}")))?;
    let typ = header
        .typ
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if typ != "secevent+jwt" && typ != "application/secevent+jwt" {
        return Err(bad(format!("typ {typ:?} is not secevent+jwt")));
    }
    if !matches!(
        header.alg,
        Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256 | Algorithm::EdDSA
    ) {
        return Err(SetError::InvalidKey(format!(
            "alg {:?} is not accepted",
            header.alg
        )));
    }
    let key = jwks
        .key(rules.jwks_url, header.kid.as_deref())
        .await
        .map_err(|e| match e {
            ProviderError::LoginFailed(why) => SetError::InvalidKey(why),
            other => SetError::KeysUnavailable(other.to_string()),
        })?;
    if !allowed(header.alg, &key) {
        return Err(SetError::InvalidKey(format!(
            "alg {:?} does not fit the key",
            header.alg
        )));
    }
    let decoding = DecodingKey::from_jwk(&key).map_err(|e| SetError::InvalidKey(e.to_string()))?;
    let mut validation = Validation::new(header.alg);
    // SETs carry no `exp` (RFC 8417 §2.2); freshness is `iat`'s, below.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_issuer(&[rules.issuer]);
    validation.set_audience(&[rules.audience]);
    validation.set_required_spec_claims(&["iss", "aud"]);
    let claims = jsonwebtoken::decode::<Claims>(token, &decoding, &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidIssuer => SetError::InvalidIssuer,
            ErrorKind::InvalidAudience => SetError::InvalidAudience,
            ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                SetError::InvalidKey(format!("{:?}", e.kind()))
            }
            other => bad(format!("{other:?}")),
        })?
        .claims;
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| bad("no jti"))?;
    match claims.iat {
        Some(iat) if iat <= now + rules.leeway && iat >= now - EVENT_MAX_AGE => {}
        _ => return Err(bad("iat is missing, in the future or over a day old")),
    }
    let sub_id = claims.sub_id;
    let events = claims.events.ok_or_else(|| bad("no events"))?;
    let mut out = Vec::new();
    for (uri, body) in events {
        let name = uri.rsplit('/').next().unwrap_or_default().to_string();
        let Ok(event) = serde_json::from_value::<Event>(body) else {
            return Err(bad(format!("event {uri} is not an object")));
        };
        let Some(subject) = event.subject.or_else(|| sub_id.clone()) else {
            return Err(bad(format!("event {uri} has no subject")));
        };
        if !subject.is_iss_sub() {
            return Err(bad(format!("event {uri}: the subject is not iss-sub")));
        }
        match (subject.iss, subject.sub) {
            (Some(iss), Some(sub)) if iss == rules.issuer && !sub.is_empty() && sub.len() <= 64 => {
                out.push((name, sub));
            }
            _ => {
                return Err(bad(format!(
                    "event {uri}: the subject is not one of {}'s users",
                    rules.issuer
                )))
            }
        }
    }
    if out.is_empty() {
        return Err(bad("no events"));
    }
    Ok(SecurityEvent { jti, events: out })
}

#[cfg(all(test, feature = "dev"))]
mod tests {
    use super::*;
    use crate::dev::fake_oidc::{kid, signing, SigningAlg};
    use crate::dev::fake_kakao::{default_users, FakeKakao, FakeKakaoConfig};
    use crate::dev::fake_kakao_webhooks::{event_uri, EventFault};
    use serde_json::json;

    async fn fake() -> (FakeKakao, Jwks) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeKakao::serve(
            listener,
            FakeKakaoConfig {
                client_id: "app-key".into(),
                client_secret: "s".into(),
                redirect_uris: vec![],
                users: default_users(),
            },
        );
        let jwks = Jwks::new(
            "kakao",
            super::super::http::client(2000).unwrap(),
            crate::metrics::Metrics::new().provider_duration,
        );
        (fake, jwks)
    }

    fn signed(claims: serde_json::Value) -> String {
        let (alg, key) = signing(SigningAlg::RS256, 0);
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = Some(kid(SigningAlg::RS256, 0));
        header.typ = Some("secevent+jwt".into());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    #[tokio::test]
    async fn both_subject_shapes_are_read_and_anything_else_is_refused() {
        let (fake, jwks) = fake().await;
        let iss = fake.base_url();
        let url = format!("{iss}/.well-known/jwks.json");
        let rules = Rules {
            issuer: &iss,
            audience: "app-key",
            jwks_url: &url,
            leeway: 30,
        };
        let now = jsonwebtoken::get_current_timestamp() as i64;
        // RFC 8417 / RISC: the subject inside the event (what the fake Kakao sends).
        let legacy = fake.security_event("account-disabled", 42, "app-key", EventFault::None);
        let e = verify(&jwks, &rules, &legacy, now).await.unwrap();
        assert_eq!(e.cutting(), Some(&("account-disabled".into(), "42".into())));
        // OpenID SSF 1.0: `sub_id` beside the events, an audience list.
        let base = json!({
            "iss": iss, "aud": ["app-key", "other"], "iat": now, "jti": "j1",
            "sub_id": {"format": "iss_sub", "iss": iss, "sub": "43"},
            "events": {event_uri("sessions-revoked"): {}},
        });
        let e = verify(&jwks, &rules, &signed(base.clone()), now)
            .await
            .unwrap();
        assert_eq!(e.cutting(), Some(&("sessions-revoked".into(), "43".into())));
        assert_eq!(e.jti, "j1");
        // Harmless events are read, not cutting.
        let mut linked = base.clone();
        linked["events"] = json!({event_uri("user-linked"): {}});
        let e = verify(&jwks, &rules, &signed(linked), now).await.unwrap();
        assert_eq!(e.cutting(), None);
        let refused = |mut c: serde_json::Value, key: &str, v: serde_json::Value| {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(key);
            } else {
                c[key] = v;
            }
            signed(c)
        };
        for (token, why) in [
            (
                refused(
                    base.clone(),
                    "sub_id",
                    json!({"format": "iss_sub", "iss": "https://evil.example", "sub": "43"}),
                ),
                "another issuer's user",
            ),
            (
                refused(
                    base.clone(),
                    "sub_id",
                    json!({"format": "email", "email": "a@b.c"}),
                ),
                "not iss_sub",
            ),
            (
                refused(base.clone(), "sub_id", serde_json::Value::Null),
                "no subject",
            ),
            (refused(base.clone(), "events", json!({})), "no events"),
            (
                refused(base.clone(), "events", serde_json::Value::Null),
                "no events claim",
            ),
            (
                refused(base.clone(), "jti", serde_json::Value::Null),
                "no jti",
            ),
            (
                refused(base.clone(), "iat", json!(now + 600)),
                "iat in the future",
            ),
            (
                refused(base.clone(), "iat", serde_json::Value::Null),
                "no iat",
            ),
        ] {
            assert!(
                matches!(
                    verify(&jwks, &rules, &token, now).await,
                    Err(SetError::InvalidRequest(_))
                ),
                "{why}"
            );
        }
        assert_eq!(
            verify(
                &jwks,
                &rules,
                &refused(base.clone(), "aud", json!("other")),
                now
            )
            .await,
            Err(SetError::InvalidAudience)
        );
        assert_eq!(
            verify(
                &jwks,
                &rules,
                &refused(base, "iss", json!("https://evil.example")),
                now
            )
            .await,
            Err(SetError::InvalidIssuer)
        );
    }
}
