//! The fake Kakao's webhooks, sent as Kakao sends them (`docs/providers.md` §Kakao unlink webhook, §Kakao account-status webhook): the unlink webhook
//! (GET or POST, `Authorization: KakaoAK {admin key}`, `app_id`, `user_id`, `referrer_type`, no
//! redirects followed, 3 s) and account-status events (Security Event Tokens signed RS256 by
//! the key the fake's `/.well-known/jwks.json` publishes, `typ` `secevent+jwt`, pushed as
//! `application/secevent+jwt`). Spoilt events for the tests that must see them refused.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Header;
use serde_json::json;

use super::fake_oidc::{kid, signing, SigningAlg};
use super::fake_kakao::FakeKakao;

/// How an event is spoilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFault {
    None,
    /// `alg: none`, no signature.
    Unsigned,
    /// Signed by a key the JWKS does not publish, under the published key's `kid`.
    ForeignKey,
    WrongIssuer,
    WrongAudience,
    /// `typ` `JWT`: a token of another kind.
    WrongType,
    /// `iat` two days ago.
    Stale,
}

/// The event type URI Kakao uses for a short name (SSF families; Kakao's own for profiles).
pub fn event_uri(name: &str) -> String {
    let family = match name {
        "user-linked"
        | "user-unlinked"
        | "user-scope-consent"
        | "user-scope-withdraw"
        | "token-issued"
        | "token-revoked"
        | "tokens-revoked" => "oauth",
        "credential-change" | "assurance-level-change" => "caep",
        "user-profile-changed" => {
            return format!("https://schemas.kakao.com/secevent/kakao/event-type/{name}")
        }
        _ => "risc",
    };
    format!("https://schemas.openid.net/secevent/{family}/event-type/{name}")
}

fn client() -> reqwest::Client {
    // The process's TLS provider, as `main` installs it (tests have no `main`).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(3))
        .build()
        .expect("a client")
}

impl FakeKakao {
    /// Kakao's unlink webhook to `url`; the status and how long the answer took.
    pub async fn send_unlink(
        &self,
        url: &str,
        admin_key: &str,
        app_id: &str,
        user_id: i64,
        post: bool,
    ) -> reqwest::Result<(u16, Duration)> {
        let params = [
            ("app_id", app_id.to_string()),
            ("user_id", user_id.to_string()),
            ("referrer_type", "UNLINK_FROM_APPS".to_string()),
        ];
        let c = client();
        let req = if post {
            c.post(url).form(&params)
        } else {
            c.get(url).query(&params)
        };
        let started = Instant::now();
        let res = req
            .header("authorization", format!("KakaoAK {admin_key}"))
            .send()
            .await?;
        Ok((res.status().as_u16(), started.elapsed()))
    }

    /// An account-status event `name` about Kakao user `user_id`, for the app `audience`.
    pub fn security_event(
        &self,
        name: &str,
        user_id: i64,
        audience: &str,
        fault: EventFault,
    ) -> String {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let iss = self.base_url();
        let mut claims = json!({
            "iss": iss,
            "aud": audience,
            "iat": if fault == EventFault::Stale { now - 2 * 86_400 } else { now },
            "jti": format!("{:032x}", rand::random::<u128>()),
            "toe": now - 1,
            "txn": format!("{:016x}", rand::random::<u64>()),
            "events": {
                event_uri(name): {
                    "subject": {"subject_type": "iss-sub", "iss": iss, "sub": user_id.to_string()},
                    "reason": "fake",
                }
            },
        });
        match fault {
            EventFault::WrongIssuer => claims["iss"] = json!("https://evil.example"),
            EventFault::WrongAudience => claims["aud"] = json!("another-app"),
            _ => {}
        }
        let (alg, key) = signing(SigningAlg::RS256, 0);
        let mut header = Header::new(alg);
        header.kid = Some(kid(SigningAlg::RS256, 0));
        header.typ = Some(
            if fault == EventFault::WrongType {
                "JWT"
            } else {
                "secevent+jwt"
            }
            .into(),
        );
        match fault {
            EventFault::Unsigned => {
                let head = URL_SAFE_NO_PAD
                    .encode(json!({"alg": "none", "typ": "secevent+jwt"}).to_string());
                let body = URL_SAFE_NO_PAD.encode(claims.to_string());
                format!("{head}.{body}.")
            }
            EventFault::ForeignKey => {
                let (_, other) = signing(SigningAlg::RS256, 1);
                jsonwebtoken::encode(&header, &claims, &other).expect("signs")
            }
            _ => jsonwebtoken::encode(&header, &claims, &key).expect("signs"),
        }
    }

    /// Pushes `set` to `url` as Kakao does; the status and body.
    pub async fn push_event(&self, url: &str, set: &str) -> reqwest::Result<(u16, String)> {
        let res = client()
            .post(url)
            .header("content-type", "application/secevent+jwt")
            .body(set.to_string())
            .send()
            .await?;
        Ok((res.status().as_u16(), res.text().await?))
    }
}
