//! Kakao telling us a user is gone: the unlink webhook (`GET|POST {prefix}/{id}/unlink`) and the
//! account-status webhook (`POST {prefix}/{id}/events`), for every Kakao provider `{id}`. Both end
//! every session of the user (`lifecycle.rs`) and answer within Kakao's 3 s, store or no store.
//!
//! - Unlink: `Authorization: KakaoAK {admin key}` compared in constant time (the route is off
//!   while `admin_key` is empty), `app_id` must be ours when `app_id` is configured, `user_id`
//!   the Kakao user. 200 also for users we never saw (Kakao's rule); 401 for a bad key.
//! - Events: a Security Event Token (`providers/set.rs`), 202 once accepted (also a replay, which
//!   changes nothing), 400 `{"err": …}` as RFC 8935 says for one we refuse.
//!
//! The user is found by Kakao user id among the users of every provider of the same Kakao app
//! (the same REST API key): Kakao entries plain and in OIDC mode, and OpenID Connect entries on
//! Kakao's issuer, whose `sub` is the Kakao user id too. One app has one set of users, whichever
//! entry they logged in through.

use std::time::Duration;

use subtle::ConstantTimeEq;

use super::{now, ApiReply, ApiRequest, AuthApi};
use crate::error::GatewayError;
use crate::lifecycle::{Outcome, Request};
use crate::providers::kakao::KakaoClient;
use crate::providers::set::SetError;
use crate::providers::Provider;

/// How long the store may take before a cut-off goes to the spool: Kakao gives up after 3 s.
const STORE_WAIT: Duration = Duration::from_millis(1500);

impl AuthApi {
    /// Ids of the providers sharing `k`'s Kakao app (its REST API key): Kakao entries, and
    /// OpenID Connect entries on Kakao's issuer, which key users by the same Kakao user id.
    fn same_app(&self, k: &KakaoClient) -> Vec<String> {
        let (app, issuer) = (&k.config().client_id, k.config().issuer.trim_end_matches('/'));
        self.providers
            .iter()
            .filter_map(|p| match p {
                Provider::Kakao(o) if o.config().client_id == *app => Some(o.config().id.clone()),
                Provider::Oidc(o)
                    if o.config().client_id == *app
                        && (o.config().issuer.trim_end_matches('/') == issuer
                            || crate::config::is_kakao_issuer(&o.config().issuer, &[])) =>
                {
                    Some(o.config().id.clone())
                }
                _ => None,
            })
            .collect()
    }

    fn count_event(&self, kind: &str, result: &str) {
        self.metrics
            .security_events
            .with_label_values(&[kind, result])
            .inc();
    }

    /// Ends the sessions of Kakao user `subject`; `Err` (a 503 to send) only when it could not
    /// be kept at all.
    async fn cut_off_kakao_user(
        &self,
        k: &KakaoClient,
        subject: &str,
        reason: &str,
        event: Option<String>,
    ) -> Result<&'static str, ApiReply> {
        let req = Request {
            user: None,
            providers: self.same_app(k),
            subject: Some(subject.to_string()),
            at: now(),
            reason: reason.to_string(),
            event,
        };
        match self.lifecycle.cut_off(req, STORE_WAIT).await {
            Ok(Outcome::Done(d)) if d.duplicate => Ok("replayed"),
            Ok(Outcome::Done(d)) if d.users.is_empty() => Ok("unknown_user"),
            Ok(Outcome::Done(d)) => {
                tracing::warn!(provider = %k.config().id, users = ?d.users, refresh_revoked = d.refresh_revoked,
                    %reason, "Kakao ended a user's link: every session of the user ended");
                Ok("cut_off")
            }
            Ok(Outcome::Spooled) => Ok("spooled"),
            Err(e) => {
                tracing::error!(provider = %k.config().id, error = %e, %reason, "a user cut-off could not be kept: the sender must send it again");
                Err(ApiReply::json(
                    503,
                    serde_json::json!({"error": "STORE_UNAVAILABLE", "message": "The store and the spool are unavailable; send it again."}),
                ))
            }
        }
    }

    /// `GET|POST {prefix}/{id}/unlink`.
    pub(super) async fn kakao_unlink(
        &self,
        k: &KakaoClient,
        req: &ApiRequest,
    ) -> Result<ApiReply, GatewayError> {
        let cfg = k.config();
        if cfg.admin_key.is_empty() {
            return Err(GatewayError::NoRoute);
        }
        let mut values = req.headers.get_all(http::header::AUTHORIZATION).iter();
        let presented = match (values.next(), values.next()) {
            (Some(v), None) => v.as_bytes(),
            _ => b"".as_slice(),
        };
        let expected = format!("KakaoAK {}", cfg.admin_key);
        if !bool::from(presented.ct_eq(expected.as_bytes())) {
            self.count_event("unlink", "bad_key");
            // Debug only, like every client's fault: anyone can send these (the counter shows them).
            tracing::debug!(provider = %cfg.id, "unlink webhook refused: wrong or missing admin key");
            return Ok(ApiReply::json(
                401,
                serde_json::json!({"error": "UNAUTHORIZED", "message": "A valid KakaoAK admin key is required."}),
            ));
        }
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
            .chain(url::form_urlencoded::parse(req.query.as_bytes()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let param = |key: &str| {
            form.iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        if !cfg.app_id.is_empty() && param("app_id") != Some(cfg.app_id.as_str()) {
            self.count_event("unlink", "refused");
            return Err(GatewayError::BadRequest(
                "app_id is not this app's (kakao.app_id)".into(),
            ));
        }
        let Some(user_id) = param("user_id").filter(|u| u.len() <= 64) else {
            self.count_event("unlink", "refused");
            return Err(GatewayError::BadRequest("user_id is missing".into()));
        };
        let referrer = param("referrer_type").unwrap_or("unknown");
        tracing::info!(provider = %cfg.id, referrer_type = %referrer, "unlink webhook received");
        let result = match self.cut_off_kakao_user(k, user_id, "unlink", None).await {
            Ok(r) => r,
            Err(reply) => {
                self.count_event("unlink", "lost");
                return Ok(reply);
            }
        };
        self.count_event("unlink", result);
        Ok(ApiReply::json(200, serde_json::json!({"ok": true})))
    }

    /// `POST {prefix}/{id}/events`.
    pub(super) async fn kakao_events(&self, k: &KakaoClient, req: &ApiRequest) -> ApiReply {
        let err = |status: u16, code: &str, description: &str| {
            ApiReply::json(
                status,
                serde_json::json!({"err": code, "description": description}),
            )
        };
        let media = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        if media.as_deref() != Some("application/secevent+jwt") {
            self.count_event("event", "refused");
            return err(
                400,
                "invalid_request",
                "Content-Type must be application/secevent+jwt",
            );
        }
        let Ok(token) = std::str::from_utf8(&req.body) else {
            self.count_event("event", "refused");
            return err(400, "invalid_request", "the body is not a JWT");
        };
        let event = match k.verify_event(token.trim(), now()).await {
            Ok(e) => e,
            Err(SetError::KeysUnavailable(why)) => {
                tracing::warn!(provider = %k.config().id, error = %why, "security event not verifiable now: Kakao's keys are unavailable");
                self.count_event("event", "keys_unavailable");
                return ApiReply::json(
                    503,
                    serde_json::json!({"error": "PROVIDER_UNAVAILABLE", "message": "Kakao's keys cannot be fetched now; send it again."}),
                );
            }
            Err(e) => {
                tracing::debug!(provider = %k.config().id, error = %e, "security event refused");
                self.count_event("event", "refused");
                return err(400, e.code(), "the security event token was refused");
            }
        };
        let mut result = "ignored";
        for (i, (kind, subject)) in event
            .events
            .iter()
            .filter(|(kind, _)| crate::providers::set::CUTTING.contains(&kind.as_str()))
            .enumerate()
        {
            let key = match i {
                0 => event.jti.clone(),
                n => format!("{}#{n}", event.jti),
            };
            match self.cut_off_kakao_user(k, subject, kind, Some(key)).await {
                Ok(r) => result = r,
                Err(reply) => {
                    self.count_event("event", "lost");
                    return reply;
                }
            }
        }
        if result == "ignored" {
            let kinds: Vec<&str> = event.events.iter().map(|(k, _)| k.as_str()).collect();
            tracing::info!(provider = %k.config().id, events = ?kinds, "security event needs no action");
        }
        self.count_event("event", result);
        ApiReply {
            status: 202,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}
