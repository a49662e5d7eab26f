//! Signed identity assertions for upstreams (`identity.assertion`): a short JWT that proves the
//! `X-User-*` headers came from the gateway, as Pomerium, Google IAP and Cloudflare Access send.
//! An upstream in a flat network verifies it with the gateway's public key
//! (`/.well-known/jwks.json`, by `kid`) and its own name as `aud`.
//!
//! Claims: `iss` = `jwt.issuer`, `aud` = the upstream's name, `sub`, `email`, `nickname`,
//! `provider` (those present in the access token), `iat`, `exp` = `iat` + 60 s, `jti`. RS256 or
//! EdDSA only: a shared HMAC secret would let every upstream mint assertions for the others.
//!
//! Signing costs (RS256 about a millisecond), so an assertion is signed once per (verified access
//! token, upstream) and reused until 15 s before it expires: per request, one cache lookup.

use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};

use super::jwt::AccessClaims;
use crate::config::{JwtAlgorithm, JwtConfig};

/// An assertion's lifetime.
pub const LIFETIME: i64 = 60;
/// How long before its expiry an assertion is no longer handed out: an upstream that takes a
/// while to check it (or a clock a little ahead) still sees it valid.
pub const REUSE_MARGIN: i64 = 15;

/// The cache key: a hash of the access token's `jti` (randomly seeded; no allocation per
/// request) and the upstream's index. A hit is used only for the same `sub`, so even a
/// collision could only hand a user an assertion of their own.
type Key = (u64, usize);

/// The JOSE `typ` of an assertion, so no other token of ours passes for one (RFC 8725 §3.11).
pub const TYP: &str = "authgate-assertion+jwt";

pub struct Assertions {
    key: EncodingKey,
    header: Header,
    issuer: String,
    /// The assertion, its `exp`, and the `sub` it was signed for (checked on every hit).
    cache: moka::sync::Cache<Key, (http::HeaderValue, i64, Box<str>), ahash::RandomState>,
    jti_hash: ahash::RandomState,
}

use super::now;

impl Assertions {
    /// `None` for HS256 (`authgate check` refuses the assertion with it) or a configuration
    /// without keys.
    pub fn new(cfg: &JwtConfig) -> Option<Assertions> {
        if cfg.algorithm == JwtAlgorithm::HS256 {
            return None;
        }
        let keys = cfg.keys.as_ref()?;
        let mut header = Header::new(cfg.algorithm.to_jsonwebtoken());
        header.kid = Some(keys.kid.clone());
        header.typ = Some(TYP.into());
        Some(Assertions {
            key: keys.encoding.clone(),
            header,
            issuer: cfg.issuer.clone(),
            cache: moka::sync::Cache::builder()
                .max_capacity(cfg.verified_cache_entries.max(1000))
                .time_to_live(Duration::from_secs((LIFETIME - REUSE_MARGIN) as u64))
                .build_with_hasher(ahash::RandomState::new()),
            jti_hash: ahash::RandomState::new(),
        })
    }

    /// The assertion for `claims` towards upstream `index` named `audience`: a cached one while
    /// it has more than [`REUSE_MARGIN`] seconds left, else a new one.
    pub fn get(&self, claims: &AccessClaims, index: usize, audience: &str) -> http::HeaderValue {
        let key: Key = (self.jti_hash.hash_one(claims.jti.as_str()), index);
        let t = now();
        if let Some((value, exp, sub)) = self.cache.get(&key) {
            if exp - REUSE_MARGIN > t && *sub == *claims.sub {
                return value;
            }
        }
        let (value, exp) = self.sign(claims, audience, t);
        self.cache
            .insert(key, (value.clone(), exp, claims.sub.as_str().into()));
        value
    }

    fn sign(&self, claims: &AccessClaims, audience: &str, iat: i64) -> (http::HeaderValue, i64) {
        let exp = iat + LIFETIME;
        let body = serde_json::json!({
            "iss": self.issuer,
            "aud": audience,
            "sub": claims.sub,
            "email": claims.email,
            "nickname": claims.nickname,
            "provider": claims.provider,
            "iat": iat,
            "exp": exp,
            "jti": format!("{:032x}", rand::random::<u128>()),
        });
        let token =
            jsonwebtoken::encode(&self.header, &body, &self.key).expect("a validated key signs");
        (
            http::HeaderValue::from_str(&token).expect("a JWT is a header value"),
            exp,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config() -> Config {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let text = "[jwt]\nalgorithm = \"EdDSA\"\nprivate_key_file = \"ed25519.pem\"\nissuer = \"https://gw.example\"\n\
                    [identity]\nassertion = true\n\
                    [[upstreams]]\nname=\"orders\"\naddrs=[\"127.0.0.1:1\"]\n\
                    [[routes]]\nname=\"r\"\npath_prefix=\"/\"\nupstream=\"orders\"\n";
        Config::parse(text, &fixtures, &|_| None).unwrap()
    }

    fn claims(jti: &str) -> AccessClaims {
        AccessClaims {
            sub: "42".into(),
            jti: jti.into(),
            iat: now(),
            exp: now() + 600,
            token_type: "access".into(),
            email: Some("a@b.c".into()),
            nickname: None,
            provider: Some("kakao".into()),
            user_id: Some(42),
            verified_with: Default::default(),
            header_values: Default::default(),
        }
    }

    #[test]
    fn an_assertion_verifies_with_the_published_key_and_says_who_for_whom() {
        let cfg = config();
        let a = Assertions::new(&cfg.jwt).unwrap();
        let value = a.get(&claims("j1"), 0, "orders");
        let keys = cfg.jwt.keys.as_ref().unwrap();
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(keys.jwk.clone().unwrap()).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        v.set_audience(&["orders"]);
        v.set_issuer(&["https://gw.example"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(
            value.to_str().unwrap(),
            &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
            &v,
        )
        .unwrap();
        assert_eq!(data.header.kid.as_ref(), Some(&keys.kid));
        assert_eq!(data.header.typ.as_deref(), Some(TYP));
        let c = data.claims;
        assert_eq!(
            (&c["sub"], &c["email"], &c["provider"], &c["nickname"]),
            (
                &serde_json::json!("42"),
                &serde_json::json!("a@b.c"),
                &serde_json::json!("kakao"),
                &serde_json::Value::Null
            )
        );
        assert_eq!(
            c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
            LIFETIME
        );
        assert_eq!(c["jti"].as_str().unwrap().len(), 32);
        // Another upstream is another audience: not accepted where "orders" is expected.
        let other = a.get(&claims("j1"), 1, "billing");
        assert!(jsonwebtoken::decode::<serde_json::Value>(
            other.to_str().unwrap(),
            &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
            &v,
        )
        .is_err());
    }

    #[test]
    fn signed_once_per_token_and_upstream_and_renewed_near_expiry() {
        let cfg = config();
        let a = Assertions::new(&cfg.jwt).unwrap();
        let first = a.get(&claims("j1"), 0, "orders");
        assert_eq!(a.get(&claims("j1"), 0, "orders"), first, "reused");
        assert_ne!(a.get(&claims("j2"), 0, "orders"), first, "another token");
        assert_ne!(a.get(&claims("j1"), 1, "orders"), first, "another upstream");
        // One close to its expiry is not handed out again.
        let key: Key = (a.jti_hash.hash_one("j1"), 0);
        a.cache
            .insert(key, (first.clone(), now() + REUSE_MARGIN - 1, "42".into()));
        assert_ne!(a.get(&claims("j1"), 0, "orders"), first, "renewed");
    }

    #[test]
    fn hs256_has_no_assertions() {
        let text = "[jwt]\nsecret = \"0123456789abcdef0123456789abcdef-test\"\n\
                    [[upstreams]]\nname=\"a\"\naddrs=[\"127.0.0.1:1\"]\n\
                    [[routes]]\nname=\"r\"\npath_prefix=\"/\"\nupstream=\"a\"\n";
        let cfg = Config::parse(text, std::path::Path::new("."), &|_| None).unwrap();
        assert!(Assertions::new(&cfg.jwt).is_none());
        let refused = Config::parse(
            &text.replace(
                "[[upstreams]]",
                "[identity]\nassertion = true\n[[upstreams]]",
            ),
            std::path::Path::new("."),
            &|_| None,
        );
        let Err(problems) = refused else {
            panic!("HS256 with the assertion on must be refused")
        };
        assert!(problems.to_string().contains("identity.assertion"));
    }
}
