//! A session once it exists: refresh-token rotation (shared by `POST /refresh` and the proxy's
//! transparent cookie refresh), the profile, and logout.
//!
//! Rotation with reuse detection, made to survive real browsers: a refresh token presented
//! again within `auth.refresh_reuse_grace_seconds` of its rotation (five tabs loading at once,
//! an answer the browser never received) gets a new pair in the same family; only a reuse after
//! the window is theft and revokes the family. On one instance, concurrent refreshes of one
//! token share a single rotation and its answer.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use super::{now, ApiReply, ApiRequest, AuthApi, InFlight, Issued};
use crate::error::GatewayError;
use crate::store::{Presented, Rotation};
use crate::tokens::jwt::{AccessClaims, TokenError, Verifier};
use crate::tokens::refresh;

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

/// Logout's optional body: the seed's client sends none (or `{}`), others may name the refresh
/// token to end.
#[derive(Deserialize, Default)]
struct LogoutBody {
    refresh_token: Option<String>,
}

impl AuthApi {
    /// Rotates a presented refresh token; concurrent calls with the same token on this
    /// instance wait for one rotation and all get its tokens.
    pub async fn rotate(&self, presented: &str) -> Result<Issued, GatewayError> {
        if presented.is_empty() || presented.len() > 256 {
            return Err(GatewayError::InvalidRefreshToken("malformed"));
        }
        let hash = refresh::hash(presented);
        // Without a grace window every presentation after the first is reuse, concurrent or not.
        if self.reuse_grace == 0 {
            return self.rotate_once(presented, &hash).await;
        }
        let cell: InFlight = self
            .rotating
            .lock()
            .expect("rotation map")
            .entry(hash.clone())
            .or_default()
            .clone();
        let outcome = cell
            .get_or_init(|| self.rotate_once(presented, &hash))
            .await
            .clone();
        let mut rotating = self.rotating.lock().expect("rotation map");
        if rotating.get(&hash).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            rotating.remove(&hash);
        }
        outcome
    }

    async fn rotate_once(&self, presented: &str, hash: &str) -> Result<Issued, GatewayError> {
        let t = now();
        // Before anything is rotated: a refused refresh must leave the token as it was.
        let Some(owner) = self.store.refresh_owner(hash, t, self.reuse_grace).await? else {
            return Err(GatewayError::InvalidRefreshToken(
                "unknown, expired or revoked",
            ));
        };
        if !self.verifier.provider_allowed(&owner.provider) {
            tracing::info!(user_id = owner.user_id, provider = %owner.provider,
                "refresh refused: the user's provider is no longer configured");
            return Err(GatewayError::InvalidRefreshToken("provider no longer configured"));
        }
        // Per session, not per address: behind a carrier NAT thousands of users share one. Only
        // a rotation is limited: a token used before the grace window goes straight to reuse
        // detection, which revokes the family, so a thief who keeps the family's budget spent
        // cannot keep the victim's reuse from being noticed.
        if owner.presented == Presented::Fresh {
            if let Err(exceeded) = self.limits.check_refresh_family(&owner.family) {
                self.metrics
                    .rate_limited
                    .with_label_values(&[exceeded.scope.label()])
                    .inc();
                tracing::warn!(user_id = owner.user_id,
                    "refresh refused: one session refreshing too often (a bug or a stolen token)");
                return Err(GatewayError::RateLimited(exceeded));
            }
        }
        let (token, new_hash) = refresh::successor(&self.successor_key, presented);
        let user_id = match self
            .store
            .rotate_refresh(hash, &new_hash, t, t + self.refresh_ttl, self.reuse_grace)
            .await?
        {
            Rotation::Rotated { user_id } => user_id,
            Rotation::RotatedInGrace { user_id } => {
                self.metrics.refresh_reuse_in_grace.inc();
                tracing::info!(
                    user_id,
                    "refresh token presented again within the grace window"
                );
                user_id
            }
            Rotation::Reused { user_id } => {
                self.metrics.refresh_reuse.inc();
                tracing::warn!(user_id, "refresh token reused: its whole family is revoked");
                return Err(GatewayError::InvalidRefreshToken("reused"));
            }
            Rotation::Invalid => {
                return Err(GatewayError::InvalidRefreshToken(
                    "unknown, expired or revoked",
                ))
            }
        };
        let user = self
            .store
            .user(user_id)
            .await?
            .ok_or(GatewayError::InvalidRefreshToken("user gone"))?;
        self.sign(Self::subject(&user), token)
    }

    /// For the proxy: a rotated session as verified claims and `Set-Cookie` values.
    pub async fn refresh_cookies(
        &self,
        presented: &str,
        secure: bool,
    ) -> Result<(Arc<AccessClaims>, Vec<String>), GatewayError> {
        let issued = self.rotate(presented).await?;
        let claims = self.verifier.verify(&issued.access)?;
        Ok((claims, self.session_cookies(&issued, secure).into()))
    }

    pub(super) async fn refresh(&self, req: &ApiRequest) -> Result<ApiReply, GatewayError> {
        let body: RefreshBody = serde_json::from_slice(&req.body).map_err(|_| {
            GatewayError::BadRequest("expected {\"refresh_token\": \"...\"}".into())
        })?;
        let issued = self.rotate(&body.refresh_token).await?;
        Ok(self.token_response(&issued))
    }

    /// The caller's access token: `Authorization: Bearer`, else the access cookie.
    fn caller_token<'r>(&self, req: &'r ApiRequest) -> Result<Option<&'r str>, GatewayError> {
        let values = req
            .headers
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes());
        Ok(match Verifier::bearer(values)? {
            Some(t) => Some(t),
            None => req.cookie(|n| n.access),
        })
    }

    pub(super) async fn profile(&self, req: &ApiRequest) -> Result<ApiReply, GatewayError> {
        let token = self.caller_token(req)?.ok_or(TokenError::Missing)?;
        let claims = self.verifier.verify(token)?;
        let id: i64 = claims
            .sub
            .parse()
            .map_err(|_| TokenError::Invalid("sub is not a user id".into()))?;
        let user = self
            .store
            .user(id)
            .await?
            .ok_or_else(|| TokenError::Invalid("no such user".into()))?;
        let created_at = time::OffsetDateTime::from_unix_timestamp(user.created_at)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        Ok(ApiReply::json(
            200,
            json!({
                "id": user.id,
                "username": user.username,
                "email": user.email.unwrap_or_default(),
                "nickname": user.nickname,
                "profile_image": user.profile_image,
                "is_social_user": true,
                "social_provider": user.provider,
                "created_at": created_at,
            }),
        ))
    }

    /// Ends the session for good, whatever state the browser is in. An access token that is
    /// valid, or only expired (a browser idle past `access_ttl_minutes`; signed by us, not
    /// revoked, and younger than the refresh tokens it could have come with), identifies the
    /// user: every refresh token of the user is revoked, and the access token too (durably
    /// first: 200 means it survives a restart). Without one, a refresh token (cookie or
    /// `{"refresh_token"}`) ends its own session, its family. An unknown or dead refresh token
    /// is answered like a live one, so logout tells nobody which tokens exist. The clearing
    /// cookies go with every answer, refusals included (`AuthApi::handle`).
    pub(super) async fn logout(&self, req: &ApiRequest) -> Result<ApiReply, GatewayError> {
        let t = now();
        let access = match self.caller_token(req) {
            Ok(Some(token)) => Some(self.verifier.verify_even_expired(token).and_then(|claims| {
                if claims.exp + self.refresh_ttl < t {
                    Err(TokenError::Expired)
                } else {
                    Ok(claims)
                }
            })),
            Ok(None) => None,
            Err(e) => Some(Err(match e {
                GatewayError::Token(t) => t,
                _ => TokenError::NotBearer,
            })),
        };
        let body: LogoutBody = if req.body.is_empty() {
            LogoutBody::default()
        } else {
            serde_json::from_slice(&req.body).unwrap_or_default()
        };
        let refresh = body
            .refresh_token
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .or_else(|| req.cookie(|n| n.refresh).map(str::to_string));
        match (access, refresh) {
            (Some(Ok(claims)), _) => {
                let user_id = claims.sub.parse::<i64>().ok();
                // Even an expired one: within the leeway it would still pass.
                self.store
                    .revoke_access(&claims.jti, user_id, claims.exp, t)
                    .await?;
                self.revocations.revoke(&claims.jti, claims.exp);
                self.metrics
                    .revoked_tokens
                    .set(self.revocations.len() as i64);
                if let Some(id) = user_id {
                    self.store.revoke_user_refresh(id, t).await?;
                }
            }
            // A refused access token (forged, revoked, too old) is no identity; a refresh
            // token ends its own session.
            (_, Some(r)) => {
                if let Some((user_id, family)) =
                    self.store.refresh_family(&refresh::hash(&r), t).await?
                {
                    self.store.revoke_family(user_id, &family, t).await?;
                }
            }
            (Some(Err(e)), None) => return Err(e.into()),
            (None, None) => return Err(TokenError::Missing.into()),
        }
        let mut reply = ApiReply::json(200, json!({"message": "Logged out."}));
        for c in Self::clear_cookies(req.secure) {
            reply = reply.cookie(c);
        }
        Ok(reply)
    }
}
