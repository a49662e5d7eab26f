//! Issuing and verifying access tokens. Verification: the key the token's `kid` names (the
//! current key or a previous one of `[[jwt.previous_keys]]`; without a `kid`, the current key,
//! for tokens issued before keys had ids), with that key's own algorithm, every required claim,
//! the revocation set and the per-user cut-offs. The key set is swapped whole on a reload.

use std::sync::Arc;

use arc_swap::ArcSwap;
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;

mod keys;

use self::keys::KeySet;
use super::cutoff::Cutoffs;
use super::revocation::Revocations;
use crate::config::JwtConfig;

/// Who an access token is issued for.
#[derive(Debug, Clone)]
pub struct Subject {
    pub user_id: i64,
    pub username: String,
    pub email: Option<String>,
    pub nickname: Option<String>,
    pub provider: String,
}

/// Signs access tokens with the configured key; the claim set is the seed's plus `sub`, `jti`,
/// `iss`, `aud`.
pub struct Issuer {
    key: jsonwebtoken::EncodingKey,
    header: jsonwebtoken::Header,
    issuer: String,
    audience: String,
    ttl_seconds: i64,
}

impl Issuer {
    pub fn new(cfg: &JwtConfig) -> Issuer {
        let keys = cfg.keys.as_ref().expect("validated config has keys");
        let mut header = jsonwebtoken::Header::new(cfg.algorithm.to_jsonwebtoken());
        header.kid = Some(keys.kid.clone());
        Issuer {
            key: keys.encoding.clone(),
            header,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            ttl_seconds: cfg.access_ttl_minutes as i64 * 60,
        }
    }

    /// Returns the token and its `exp`; `now` is its `iat` (see `Cutoffs::issue_at`).
    pub fn issue_access(
        &self,
        who: &Subject,
        now: i64,
    ) -> Result<(String, i64), jsonwebtoken::errors::Error> {
        let exp = now + self.ttl_seconds;
        let jti = format!("{:032x}", rand::random::<u128>());
        let claims = serde_json::json!({
            "sub": who.user_id.to_string(),
            "user_id": who.user_id,
            "username": who.username,
            "email": who.email,
            "nickname": who.nickname,
            "provider": who.provider,
            "type": "access",
            "jti": jti,
            "iat": now,
            "exp": exp,
            "iss": self.issuer,
            "aud": self.audience,
        });
        Ok((jsonwebtoken::encode(&self.header, &claims, &self.key)?, exp))
    }
}

/// The claims the gateway needs from a verified access token. `iss`, `aud`, `exp` and `nbf` are
/// checked by `jsonwebtoken` itself.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct AccessClaims {
    pub sub: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(rename = "type")]
    pub token_type: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub nickname: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    /// `sub` as our user id (every token we issue has one), for the per-user cut-offs.
    #[serde(skip)]
    pub user_id: Option<i64>,
    /// The `kid` of the key it verified with, and that key set's generation: a cached token
    /// whose key left the set on a reload is verified again (and refused).
    #[serde(skip)]
    pub verified_with: (Arc<str>, u64),
    /// The identity claims as header values, built once when the token verifies and kept with
    /// the claims in the verified-token cache, so forwarding copies no claim per request.
    #[serde(skip)]
    pub header_values: IdentityValues,
}

/// `X-User-*` values of one verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityValues {
    pub sub: http::HeaderValue,
    /// Absent when the claim is absent or cannot be a header value (control characters); the
    /// other identity headers still go.
    pub email: Option<http::HeaderValue>,
    pub nickname: Option<http::HeaderValue>,
    pub provider: Option<http::HeaderValue>,
}

impl Default for IdentityValues {
    fn default() -> Self {
        IdentityValues {
            sub: http::HeaderValue::from_static(""),
            email: None,
            nickname: None,
            provider: None,
        }
    }
}

/// Why a bearer token was refused. Messages name what was wrong for the log; the public reply
/// only carries the code (see `error.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("more than one Authorization header")]
    Multiple,
    #[error("Authorization is not a Bearer token")]
    NotBearer,
    #[error("token expired")]
    Expired,
    #[error("token revoked (jti {0})")]
    Revoked(String),
    #[error("every token of user {0} issued before its cut-off is revoked")]
    CutOff(i64),
    #[error("its provider {0:?} is no longer configured")]
    ProviderGone(String),
    #[error("invalid token: {0}")]
    Invalid(String),
}

pub struct Verifier {
    keys: ArcSwap<KeySet>,
    revocations: Arc<Revocations>,
    cutoffs: Arc<Cutoffs>,
    /// Tokens whose signature and claims already verified, keyed by the whole token: a hit
    /// skips the signature and JSON work, never the expiry and revocation checks. Only tokens
    /// that verified are ever inserted, so a forged token can only miss.
    verified: Option<moka::sync::Cache<Box<str>, Arc<AccessClaims>, ahash::RandomState>>,
    max_token_bytes: usize,
    providers: ArcSwap<ProviderGate>,
}

/// Whose logins are still good, by the `provider` claim (or a refresh family's user's
/// provider): a provider the configuration no longer has ends its sessions. A gateway that
/// configures no provider at all only verifies tokens issued elsewhere and takes any provider,
/// except one it knows was removed: by a reload of this process, or because its store holds
/// users of it (a restart with the last provider gone).
#[derive(Debug, Default)]
pub struct ProviderGate {
    configured: Vec<Box<str>>,
    /// Removed by a reload and not configured again.
    retired: Vec<Box<str>>,
}

impl ProviderGate {
    pub fn allows(&self, provider: &str) -> bool {
        !self.retired.iter().any(|r| &**r == provider)
            && (self.configured.is_empty() || self.configured.iter().any(|c| &**c == provider))
    }
}

impl Verifier {
    pub fn new(cfg: &JwtConfig, revocations: Arc<Revocations>, cutoffs: Arc<Cutoffs>) -> Verifier {
        let verified = (cfg.verified_cache_entries > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(cfg.verified_cache_entries)
                // Past its expiry (and leeway) an entry is useless; the check below refuses it anyway.
                .time_to_live(std::time::Duration::from_secs(
                    cfg.access_ttl_minutes * 60 + cfg.leeway_seconds,
                ))
                // Keys are whole tokens (~300 bytes) chosen by clients: a randomly seeded hash,
                // several times faster than the default SipHash on keys this long.
                .build_with_hasher(ahash::RandomState::new())
        });
        Verifier {
            keys: ArcSwap::from_pointee(KeySet::new(cfg, 0)),
            revocations,
            cutoffs,
            verified,
            max_token_bytes: cfg.max_token_bytes,
            providers: ArcSwap::from_pointee(ProviderGate::default()),
        }
    }

    /// The providers of the configuration being served (at start and on every reload): tokens
    /// and refresh families of one that was configured before and is not now are refused.
    /// `known`: providers known to have had users here (the store's), retired too unless
    /// configured; only needed when `ids` is empty, since otherwise whatever is not configured
    /// is refused anyway.
    pub fn set_providers(&self, ids: &[&str], known: &[String]) {
        let old = self.providers.load();
        let configured: Vec<Box<str>> = ids.iter().map(|&id| id.into()).collect();
        let mut retired: Vec<Box<str>> = old
            .configured
            .iter()
            .chain(old.retired.iter())
            .filter(|p| !configured.contains(p))
            .cloned()
            .collect();
        for k in known {
            if !configured.iter().any(|c| **c == **k) && !retired.iter().any(|r| **r == **k) {
                retired.push(k.as_str().into());
            }
        }
        self.providers.store(Arc::new(ProviderGate {
            configured,
            retired,
        }));
    }

    /// Whether sessions of `provider`'s logins are still good here.
    pub fn provider_allowed(&self, provider: &str) -> bool {
        self.providers.load().allows(provider)
    }

    /// Extracts the bearer token from all `Authorization` header values of a request.
    pub fn bearer<'a>(
        values: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Option<&'a str>, TokenError> {
        let mut values = values;
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(TokenError::Multiple);
        }
        // On bytes, with `memchr` for the spaces: this runs on every authenticated request, and
        // a token is a few hundred bytes.
        let space = memchr::memchr(b' ', first).ok_or(TokenError::NotBearer)?;
        let (scheme, token) = first.split_at(space);
        let token = token.trim_ascii();
        if !scheme.eq_ignore_ascii_case(b"bearer")
            || token.is_empty()
            || memchr::memchr(b' ', token).is_some()
        {
            return Err(TokenError::NotBearer);
        }
        std::str::from_utf8(token)
            .map(Some)
            .map_err(|_| TokenError::NotBearer)
    }

    pub fn verify(&self, token: &str) -> Result<Arc<AccessClaims>, TokenError> {
        match self.cached(token) {
            Some(result) => result,
            None => self.verify_uncached(token),
        }
    }

    /// The cheap part of [`Verifier::verify`]: a token too long to be ours is refused and a
    /// token that verified before is checked for expiry and revocation; `None` means only the
    /// signature check can decide.
    pub fn cached(&self, token: &str) -> Option<Result<Arc<AccessClaims>, TokenError>> {
        if token.len() > self.max_token_bytes {
            return Some(Err(TokenError::Invalid(format!(
                "{} bytes, over jwt.max_token_bytes",
                token.len()
            ))));
        }
        let claims = self.verified.as_ref()?.get(token)?;
        // Verified under an earlier key set: only while its key is still in this one.
        let keys = self.keys.load();
        if claims.verified_with.1 != keys.generation
            && !keys.by_kid.contains_key(&claims.verified_with.0)
        {
            return None;
        }
        let now = jsonwebtoken::get_current_timestamp() as i64;
        Some(if claims.exp + (keys.rules.2 as i64) < now {
            Err(TokenError::Expired)
        } else {
            self.not_revoked(claims)
        })
    }

    /// The signature and claims of a token [`Verifier::cached`] did not decide.
    pub fn verify_uncached(&self, token: &str) -> Result<Arc<AccessClaims>, TokenError> {
        let claims = Arc::new(self.verify_signed(token)?);
        if let Some(cache) = &self.verified {
            // Not if the key set changed while it verified: a reload that emptied the cache for
            // new rules must not get an entry checked under the old ones.
            if claims.verified_with.1 == self.keys.load().generation {
                cache.insert(token.into(), claims.clone());
            }
        }
        self.not_revoked(claims)
    }

    /// Like [`Verifier::verify`], but a token that is only expired is accepted: for logout,
    /// which must work after any idle time. Forged, revoked or otherwise invalid tokens are
    /// refused as ever.
    pub fn verify_even_expired(&self, token: &str) -> Result<Arc<AccessClaims>, TokenError> {
        match self.verify(token) {
            Err(TokenError::Expired) => {
                let keys = self.keys.load();
                let (key, named) = keys.for_token(token)?;
                let claims = self.check_claims(
                    jsonwebtoken::decode::<AccessClaims>(
                        token,
                        &key.decoding,
                        &key.validation_any_exp,
                    )
                    .map_err(|e| TokenError::Invalid(format!("{:?}", e.kind())))?
                    .claims,
                    keys.record(key, named),
                )?;
                self.not_revoked(Arc::new(claims))
            }
            other => other,
        }
    }

    fn not_revoked(&self, claims: Arc<AccessClaims>) -> Result<Arc<AccessClaims>, TokenError> {
        if self.revocations.is_revoked(&claims.jti) {
            return Err(TokenError::Revoked(claims.jti.clone()));
        }
        if let Some(user) = claims.user_id {
            if self.cutoffs.cuts_off(user, claims.iat) {
                return Err(TokenError::CutOff(user));
            }
        }
        if let Some(provider) = &claims.provider {
            if !self.provider_allowed(provider) {
                return Err(TokenError::ProviderGone(provider.clone()));
            }
        }
        Ok(claims)
    }

    /// Signature, algorithm and every claim rule; no cache, no revocation.
    fn verify_signed(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let keys = self.keys.load();
        let (key, named) = keys.for_token(token)?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &key.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                other => TokenError::Invalid(format!("{other:?}")),
            })?;
        self.check_claims(data.claims, keys.record(key, named))
    }

    /// Takes the keys of a reloaded configuration. Cached tokens whose key is still in the set
    /// stay cached; the others are verified again, and refused.
    pub fn set_keys(&self, cfg: &JwtConfig) {
        let old = self.keys.load_full();
        let new = KeySet::new(cfg, old.generation + 1);
        let rules_changed = new.rules != old.rules;
        self.keys.store(Arc::new(new));
        // Another issuer, audience or leeway: what verified before may not now.
        if rules_changed {
            if let Some(cache) = &self.verified {
                cache.invalidate_all();
            }
        }
    }

    /// The `kid`s tokens verify with now, the current key's first.
    pub fn kids(&self) -> Vec<String> {
        let keys = self.keys.load();
        let mut kids: Vec<String> = keys.by_kid.keys().map(|k| k.to_string()).collect();
        kids.sort_by_key(|k| (**k != *keys.current, k.clone()));
        kids
    }

    /// The rules beyond the JWT library's: an access token with a `sub` and `jti`, and identity
    /// header values built once.
    fn check_claims(
        &self,
        mut claims: AccessClaims,
        verified_with: (Arc<str>, u64),
    ) -> Result<AccessClaims, TokenError> {
        claims.verified_with = verified_with;
        if claims.token_type != "access" {
            return Err(TokenError::Invalid(format!(
                "type is {:?}, not \"access\"",
                claims.token_type
            )));
        }
        if claims.jti.is_empty() || claims.sub.is_empty() {
            return Err(TokenError::Invalid("empty sub or jti".into()));
        }
        // We never issue ahead of time (a cut-off's next second at most): a token that claims
        // to be from the future was minted elsewhere, and would outlive a cut-off of its user.
        let leeway = self.keys.load().rules.2 as i64;
        if claims.iat > jsonwebtoken::get_current_timestamp() as i64 + leeway + 1 {
            return Err(TokenError::Invalid("iat is in the future".into()));
        }
        let value = |v: &Option<String>| {
            v.as_deref()
                .and_then(|v| http::HeaderValue::from_str(v).ok())
        };
        claims.user_id = claims.sub.parse().ok();
        claims.header_values = IdentityValues {
            // Upstreams key their users by it: a `sub` that cannot travel as a header is refused.
            sub: http::HeaderValue::from_str(&claims.sub)
                .map_err(|_| TokenError::Invalid("sub is not a valid header value".into()))?,
            email: value(&claims.email),
            nickname: value(&claims.nickname),
            provider: value(&claims.provider),
        };
        Ok(claims)
    }
}

#[cfg(test)]
mod tests;
