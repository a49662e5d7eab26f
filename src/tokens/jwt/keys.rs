//! The key set a token is verified with: every key by its `kid` (the current one and the
//! previous ones of `[[jwt.previous_keys]]`), each with its own algorithm and the shared claim
//! rules; swapped whole on a reload, with a generation so cached tokens can tell.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::{DecodingKey, Validation};

use super::TokenError;
use crate::config::{JwtConfig, VerifyKey};

/// One verifying key with its rules.
pub(super) struct Key {
    pub(super) kid: Arc<str>,
    pub(super) decoding: DecodingKey,
    pub(super) validation: Validation,
    /// The same rules without `exp`: logout accepts a token that expired while the browser sat
    /// idle, as long as it is ours (correctly signed) and not revoked.
    pub(super) validation_any_exp: Validation,
}

/// Every key tokens may verify with, by `kid`.
pub(super) struct KeySet {
    pub(super) generation: u64,
    /// The rules every key shares: a change empties the verified-token cache.
    pub(super) rules: (String, String, u64),
    pub(super) current: Arc<str>,
    pub(super) by_kid: HashMap<Arc<str>, Key, ahash::RandomState>,
}

impl KeySet {
    pub(super) fn new(cfg: &JwtConfig, generation: u64) -> KeySet {
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
    pub(super) fn record(&self, key: &Key, token_named_it: bool) -> (Arc<str>, u64) {
        let kid = if token_named_it {
            key.kid.clone()
        } else {
            "".into()
        };
        (kid, self.generation)
    }

    /// The key a token's header names (and whether it named one); without a `kid`, the
    /// current key.
    pub(super) fn for_token(&self, token: &str) -> Result<(&Key, bool), TokenError> {
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
