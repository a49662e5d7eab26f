//! Issuing and verifying access tokens. Verification: the key the token's `kid` names (the
//! current key or a previous one of `[[jwt.previous_keys]]`; without a `kid`, the current key,
//! for tokens issued before keys had ids), with that key's own algorithm, every required claim,
//! the revocation set and the per-user cut-offs. The key set is swapped whole on a reload.

use std::sync::Arc;

use std::collections::HashMap;

use arc_swap::ArcSwap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;

use super::cutoff::Cutoffs;
use super::revocation::Revocations;
use crate::config::{JwtConfig, VerifyKey};

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
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// One verifying key with its rules.
struct Key {
    kid: Arc<str>,
    decoding: DecodingKey,
    validation: Validation,
    /// The same rules without `exp`: logout accepts a token that expired while the browser sat
    /// idle, as long as it is ours (correctly signed) and not revoked.
    validation_any_exp: Validation,
}

/// Every key tokens may verify with, by `kid`.
struct KeySet {
    generation: u64,
    /// The rules every key shares: a change empties the verified-token cache.
    rules: (String, String, u64),
    current: Arc<str>,
    by_kid: HashMap<Arc<str>, Key, ahash::RandomState>,
}

impl KeySet {
    fn new(cfg: &JwtConfig, generation: u64) -> KeySet {
        let keys: Vec<VerifyKey> = cfg.verify_keys();
        let current: Arc<str> = keys
            .first()
            .expect("validated config has keys")
            .kid
            .as_str()
            .into();
        let by_kid = keys
            .into_iter()
            .map(|k| {
                let mut validation = Validation::new(k.algorithm.to_jsonwebtoken());
                validation.leeway = cfg.leeway_seconds;
                validation.validate_exp = true;
                validation.validate_nbf = true;
                validation.set_issuer(&[&cfg.issuer]);
                validation.set_audience(&[&cfg.audience]);
                validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                let mut validation_any_exp = validation.clone();
                validation_any_exp.validate_exp = false;
                let kid: Arc<str> = k.kid.as_str().into();
                (
                    kid.clone(),
                    Key {
                        kid,
                        decoding: k.decoding,
                        validation,
                        validation_any_exp,
                    },
                )
            })
            .collect();
        KeySet {
            generation,
            rules: (cfg.issuer.clone(), cfg.audience.clone(), cfg.leeway_seconds),
            current,
            by_kid,
        }
    }

    /// What a verified token records: the key's `kid`, or "" for a token that named none (so it
    /// stays valid from the cache only while the key set is the same).
    fn record(&self, key: &Key, token_named_it: bool) -> (Arc<str>, u64) {
        let kid = if token_named_it {
            key.kid.clone()
        } else {
            "".into()
        };
        (kid, self.generation)
    }

    /// The key a token's header names (and whether it named one); without a `kid`, the
    /// current key.
    fn for_token(&self, token: &str) -> Result<(&Key, bool), TokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| TokenError::Invalid(format!("{:?}", e.kind())))?;
        match header.kid.as_deref() {
            None => Ok((&self.by_kid[&self.current], false)),
            Some(kid) => self
                .by_kid
                .get(kid)
                .map(|k| (k, true))
                .ok_or_else(|| TokenError::Invalid("signed by a key not in the key set".into())),
        }
    }
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
        }
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
            cache.insert(token.into(), claims.clone());
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
mod tests {
    use super::*;
    use crate::config::{Config, JwtAlgorithm};
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

    fn verifier() -> Verifier {
        let text = format!(
            "[jwt]\nsecret = \"{SECRET}\"\n[[upstreams]]\nname=\"a\"\naddrs=[\"127.0.0.1:1\"]\n\
             [[routes]]\nname=\"r\"\npath_prefix=\"/\"\nupstream=\"a\"\n"
        );
        let cfg = Config::parse(&text, std::path::Path::new("."), &|_| None).unwrap();
        assert_eq!(cfg.jwt.algorithm, JwtAlgorithm::HS256);
        Verifier::new(&cfg.jwt, Arc::new(Revocations::new()), Arc::default())
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn claims() -> serde_json::Value {
        json!({"sub": "7", "jti": "j1", "iat": now(), "exp": now() + 600, "iss": "authgate",
               "aud": "authgate", "type": "access", "email": "a@b.c", "nickname": "n", "provider": "kakao"})
    }

    fn sign(alg: jsonwebtoken::Algorithm, c: &serde_json::Value) -> String {
        encode(
            &Header::new(alg),
            c,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn a_good_token_yields_its_claims() {
        let v = verifier();
        let c = v
            .verify(&sign(jsonwebtoken::Algorithm::HS256, &claims()))
            .unwrap();
        assert_eq!(
            (c.sub.as_str(), c.email.as_deref(), c.provider.as_deref()),
            ("7", Some("a@b.c"), Some("kakao"))
        );
        let h = &c.header_values;
        assert_eq!(h.sub, "7");
        assert_eq!(h.email.as_ref().unwrap(), "a@b.c");
        assert_eq!(h.nickname.as_ref().unwrap(), "n");
        assert_eq!(h.provider.as_ref().unwrap(), "kakao");
    }

    #[test]
    fn claims_that_cannot_be_header_values() {
        let v = verifier();
        let hs = jsonwebtoken::Algorithm::HS256;
        let mut c = claims();
        c["nickname"] = json!("two\r\nX-User-Id: 1");
        let verified = v.verify(&sign(hs, &c)).unwrap();
        // Left out, and the other identity headers still go.
        assert_eq!(verified.header_values.nickname, None);
        assert_eq!(verified.header_values.email.as_ref().unwrap(), "a@b.c");
        c["sub"] = json!("7\n");
        assert!(matches!(
            v.verify(&sign(hs, &c)),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn every_claim_rule_is_enforced() {
        let v = verifier();
        let hs = jsonwebtoken::Algorithm::HS256;
        let with = |k: &str, val: serde_json::Value| {
            let mut c = claims();
            c[k] = val;
            c
        };
        let without = |k: &str| {
            let mut c = claims();
            c.as_object_mut().unwrap().remove(k);
            c
        };
        assert_eq!(
            v.verify(&sign(hs, &with("exp", json!(now() - 120)))),
            Err(TokenError::Expired)
        );
        // Within leeway is still fine.
        assert!(v.verify(&sign(hs, &with("exp", json!(now() - 5)))).is_ok());
        for bad in [
            with("nbf", json!(now() + 600)),
            with("iss", json!("someone-else")),
            with("aud", json!("other-app")),
            with("type", json!("refresh")),
            without("jti"),
            without("sub"),
            without("iat"),
            without("exp"),
            without("iss"),
            without("aud"),
            without("type"),
        ] {
            assert!(
                matches!(v.verify(&sign(hs, &bad)), Err(TokenError::Invalid(_))),
                "{bad}"
            );
        }
        // Another HMAC size with the same secret: the header never chooses the algorithm.
        assert!(matches!(
            v.verify(&sign(jsonwebtoken::Algorithm::HS384, &claims())),
            Err(TokenError::Invalid(_))
        ));
        // alg "none", unsigned.
        use base64::Engine;
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&claims())
        );
        assert!(matches!(v.verify(&none), Err(TokenError::Invalid(_))));
        // Tampered payload.
        let good = sign(hs, &claims());
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = b64(&with("sub", json!("1")));
        parts[1] = &forged;
        assert!(matches!(
            v.verify(&parts.join(".")),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn issued_tokens_verify() {
        let text = format!(
            "[jwt]\nsecret = \"{SECRET}\"\n[[upstreams]]\nname=\"a\"\naddrs=[\"127.0.0.1:1\"]\n\
             [[routes]]\nname=\"r\"\npath_prefix=\"/\"\nupstream=\"a\"\n"
        );
        let cfg = Config::parse(&text, std::path::Path::new("."), &|_| None).unwrap();
        let who = Subject {
            user_id: 42,
            username: "kakao_42".into(),
            email: None,
            nickname: Some("n".into()),
            provider: "kakao".into(),
        };
        let (token, exp) = Issuer::new(&cfg.jwt)
            .issue_access(&who, jsonwebtoken::get_current_timestamp() as i64)
            .unwrap();
        let c = verifier().verify(&token).unwrap();
        assert_eq!(
            (
                c.sub.as_str(),
                c.exp,
                c.email.clone(),
                c.nickname.as_deref()
            ),
            ("42", exp, None, Some("n"))
        );
    }

    const OLD: &str = "an-older-secret-0123456789abcdef-rotated";

    fn rotation_config(previous: bool) -> Config {
        let prev = if previous {
            format!("[[jwt.previous_keys]]\nalgorithm = \"HS256\"\nsecret = \"{OLD}\"\n")
        } else {
            String::new()
        };
        let text = format!(
            "[jwt]\nsecret = \"{SECRET}\"\n{prev}[[upstreams]]\nname=\"a\"\naddrs=[\"127.0.0.1:1\"]\n\
             [[routes]]\nname=\"r\"\npath_prefix=\"/\"\nupstream=\"a\"\n"
        );
        Config::parse(&text, std::path::Path::new("."), &|_| None).unwrap()
    }

    fn sign_with(secret: &str, kid: Option<&str>, c: &serde_json::Value) -> String {
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = kid.map(str::to_string);
        encode(&h, c, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    #[test]
    fn tokens_verify_with_the_key_their_kid_names_until_it_leaves_the_set() {
        let cfg = rotation_config(true);
        let old_kid = cfg.jwt.previous_keys[0].kid.clone();
        let current_kid = cfg.jwt.keys.as_ref().unwrap().kid.clone();
        assert_ne!(old_kid, current_kid);
        let v = Verifier::new(&cfg.jwt, Arc::new(Revocations::new()), Arc::default());
        assert_eq!(v.kids(), vec![current_kid.clone(), old_kid.clone()]);
        let old = sign_with(OLD, Some(&old_kid), &claims());
        assert!(v.verify(&old).is_ok(), "signed before the rotation");
        // Without a kid: the current key only.
        assert!(v.verify(&sign_with(SECRET, None, &claims())).is_ok());
        assert!(v.verify(&sign_with(OLD, None, &claims())).is_err());
        // A kid names the key; the signature must be that key's.
        assert!(v
            .verify(&sign_with(OLD, Some(&current_kid), &claims()))
            .is_err());
        assert!(v
            .verify(&sign_with(SECRET, Some(&old_kid), &claims()))
            .is_err());
        assert!(matches!(
            v.verify(&sign_with(OLD, Some("unknown"), &claims())),
            Err(TokenError::Invalid(_))
        ));
        // Issued tokens carry the current kid.
        let who = Subject {
            user_id: 7,
            username: "kakao_7".into(),
            email: None,
            nickname: None,
            provider: "kakao".into(),
        };
        let (issued, _) = Issuer::new(&cfg.jwt).issue_access(&who, now()).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&issued).unwrap().kid,
            Some(current_kid.clone())
        );
        // The previous key dropped by a reload: its token is refused, though it was cached.
        v.set_keys(&rotation_config(false).jwt);
        assert!(matches!(v.verify(&old), Err(TokenError::Invalid(_))));
        assert!(v.verify(&issued).is_ok(), "the current key's stay");
    }

    #[test]
    fn a_token_without_a_kid_follows_the_current_key_and_new_rules_empty_the_cache() {
        let v = Verifier::new(
            &rotation_config(false).jwt,
            Arc::new(Revocations::new()),
            Arc::default(),
        );
        let kidless = sign_with(SECRET, None, &claims());
        assert!(v.verify(&kidless).is_ok(), "cached now");
        // SECRET becomes a previous key: a token naming no key means the current one, which
        // did not sign it; the cache does not keep it alive.
        let text = format!(
            "[jwt]\nsecret = \"{OLD}\"\n[[jwt.previous_keys]]\nalgorithm = \"HS256\"\nsecret = \"{SECRET}\"\n\
             [[upstreams]]\nname=\"a\"\naddrs=[\"127.0.0.1:1\"]\n[[routes]]\nname=\"r\"\npath_prefix=\"/\"\nupstream=\"a\"\n"
        );
        let rotated = Config::parse(&text, std::path::Path::new("."), &|_| None).unwrap();
        v.set_keys(&rotated.jwt);
        assert!(matches!(v.verify(&kidless), Err(TokenError::Invalid(_))));
        // Another audience: tokens cached under the old one are checked again, and refused.
        let v = Verifier::new(
            &rotation_config(false).jwt,
            Arc::new(Revocations::new()),
            Arc::default(),
        );
        let named = sign_with(
            SECRET,
            Some(&rotation_config(false).jwt.keys.unwrap().kid),
            &claims(),
        );
        assert!(v.verify(&named).is_ok());
        let mut other = rotation_config(false);
        other.jwt.audience = "another".into();
        v.set_keys(&other.jwt);
        assert!(matches!(v.verify(&named), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn a_cut_off_refuses_the_users_older_tokens_cached_or_not_and_nobody_else() {
        let v = verifier();
        let mut old = claims();
        old["iat"] = json!(now() - 5);
        let old = sign(jsonwebtoken::Algorithm::HS256, &old);
        let mut other = claims();
        other["sub"] = json!("8");
        other["jti"] = json!("j8");
        let other = sign(jsonwebtoken::Algorithm::HS256, &other);
        assert!(v.verify(&old).is_ok(), "cached now");
        v.cutoffs.cut(7, now() - 1);
        assert_eq!(v.verify(&old), Err(TokenError::CutOff(7)), "a cache hit");
        let mut fresh = claims();
        fresh["iat"] = json!(now() - 4);
        fresh["jti"] = json!("j2");
        let fresh = sign(jsonwebtoken::Algorithm::HS256, &fresh);
        assert_eq!(v.verify(&fresh), Err(TokenError::CutOff(7)), "a miss");
        assert_eq!(
            v.verify_even_expired(&old),
            Err(TokenError::CutOff(7)),
            "logout too"
        );
        assert!(v.verify(&other).is_ok(), "another user");
        let mut later = claims();
        later["iat"] = json!(now() + 1);
        later["jti"] = json!("j3");
        assert!(v
            .verify(&sign(jsonwebtoken::Algorithm::HS256, &later))
            .is_ok());
    }

    #[test]
    fn cached_tokens_still_expire_and_can_be_revoked() {
        let text = format!(
            "[jwt]\nsecret = \"{SECRET}\"\nleeway_seconds = 0\n[[upstreams]]\nname=\"a\"\naddrs=[\"127.0.0.1:1\"]\n\
             [[routes]]\nname=\"r\"\npath_prefix=\"/\"\nupstream=\"a\"\n"
        );
        let cfg = Config::parse(&text, std::path::Path::new("."), &|_| None).unwrap();
        let v = Verifier::new(&cfg.jwt, Arc::new(Revocations::new()), Arc::default());
        let mut short = claims();
        short["exp"] = json!(now() + 1);
        short["jti"] = json!("short");
        let short = sign(jsonwebtoken::Algorithm::HS256, &short);
        let long = sign(jsonwebtoken::Algorithm::HS256, &claims());
        assert!(v.verify(&short).is_ok() && v.verify(&long).is_ok());
        assert!(
            v.verified.as_ref().unwrap().contains_key(long.as_str()),
            "verified tokens are cached"
        );
        // A cached token is still checked for revocation...
        v.revocations.revoke("j1", now() + 600);
        assert_eq!(v.verify(&long), Err(TokenError::Revoked("j1".into())));
        // ...and for expiry.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert_eq!(v.verify(&short), Err(TokenError::Expired));
        // A token that failed is never cached.
        let mut bad = long.clone();
        bad.push('x');
        assert!(v.verify(&bad).is_err());
        assert!(!v.verified.as_ref().unwrap().contains_key(bad.as_str()));
    }

    #[test]
    fn tokens_over_the_size_limit_are_refused_unread() {
        let v = verifier();
        assert_eq!(v.max_token_bytes, 8192);
        let mut big = claims();
        big["pad"] = json!("x".repeat(9000));
        let big = sign(jsonwebtoken::Algorithm::HS256, &big);
        // Correctly signed, but too long to be one of ours: refused before any decoding.
        assert!(
            matches!(v.cached(&big), Some(Err(TokenError::Invalid(m))) if m.contains("max_token_bytes"))
        );
        assert!(v.verify(&big).is_err());
        let fine = sign(jsonwebtoken::Algorithm::HS256, &claims());
        assert!(
            v.cached(&fine).is_none(),
            "not yet verified: the signature decides"
        );
        assert!(v.verify(&fine).is_ok());
        assert!(matches!(v.cached(&fine), Some(Ok(_))));
    }

    #[test]
    fn logout_accepts_an_expired_token_only_when_it_is_ours_and_not_revoked() {
        let v = verifier();
        let mut old = claims();
        old["exp"] = json!(now() - 3600);
        old["iat"] = json!(now() - 7200);
        old["jti"] = json!("old-one");
        let expired = sign(jsonwebtoken::Algorithm::HS256, &old);
        assert_eq!(v.verify(&expired).unwrap_err(), TokenError::Expired);
        assert_eq!(v.verify_even_expired(&expired).unwrap().jti, "old-one");
        let forged = encode(
            &Header::new(jsonwebtoken::Algorithm::HS256),
            &old,
            &EncodingKey::from_secret(b"another-secret-another-secret-000"),
        )
        .unwrap();
        assert!(matches!(
            v.verify_even_expired(&forged),
            Err(TokenError::Invalid(_))
        ));
        let mut refresh_type = old.clone();
        refresh_type["type"] = json!("refresh");
        assert!(v
            .verify_even_expired(&sign(jsonwebtoken::Algorithm::HS256, &refresh_type))
            .is_err());
        v.revocations.revoke("old-one", now() + 60);
        assert!(matches!(
            v.verify_even_expired(&expired),
            Err(TokenError::Revoked(_))
        ));
    }

    #[test]
    fn revoked_tokens_are_refused() {
        let v = verifier();
        v.revocations.revoke("j1", now() + 600);
        assert_eq!(
            v.verify(&sign(jsonwebtoken::Algorithm::HS256, &claims())),
            Err(TokenError::Revoked("j1".into()))
        );
    }

    #[test]
    fn bearer_extraction() {
        let one = |v: &'static str| Verifier::bearer([v.as_bytes()].into_iter());
        assert_eq!(Verifier::bearer(std::iter::empty()), Ok(None));
        assert_eq!(one("Bearer abc"), Ok(Some("abc")));
        assert_eq!(one("bearer abc"), Ok(Some("abc")));
        assert_eq!(one("Basic abc"), Err(TokenError::NotBearer));
        assert_eq!(one("Bearer"), Err(TokenError::NotBearer));
        assert_eq!(one("Bearer a b"), Err(TokenError::NotBearer));
        assert_eq!(
            Verifier::bearer([b"Bearer a".as_slice(), b"Bearer a"].into_iter()),
            Err(TokenError::Multiple)
        );
    }
}
