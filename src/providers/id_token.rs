//! OpenID Connect `id_token`s, verified as Core §3.1.3.7 says, for any OIDC issuer and for
//! Kakao's OIDC mode.
//!
//! - The key comes from the issuer's JWKS by `kid`: fetched on first use, kept for an hour, and
//!   fetched again when a token names a `kid` the set does not hold (the issuer rotated), at most
//!   once a minute so a stream of forged `kid`s cannot make us hammer the issuer.
//! - The algorithm is the header's, but only from an allow-list (RS256, PS256, ES256, EdDSA) and
//!   only when it fits the key's type: never `none`, never HMAC with a public key.
//! - `iss` exactly the issuer; `aud` containing our client id; `azp`, when present, our client id,
//!   and present when there are several audiences; `exp` in the future and `iat` recent, with the configured leeway;
//!   `nonce` equal to the one bound to this login's state.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{http, ProviderError};

/// How often an unknown `kid` may make us fetch the JWKS again.
const REFETCH_EVERY: Duration = Duration::from_secs(60);
/// How long a fetched key set is used before it is fetched again.
const KEYS_TTL: Duration = Duration::from_secs(3600);
/// How old an `id_token` may be when it reaches us (it was just issued for this code).
const MAX_AGE: i64 = 600;

/// The claims of a verified `id_token` that a login uses.
#[derive(Debug, Clone, Deserialize)]
pub struct IdClaims {
    pub sub: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<serde_json::Value>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub nickname: Option<String>,
    #[serde(default)]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub picture: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    aud: serde_json::Value,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    iat: Option<i64>,
}

impl IdClaims {
    /// `email_verified` as `true` (some issuers send the string "true").
    pub fn email_is_verified(&self) -> bool {
        matches!(&self.email_verified, Some(serde_json::Value::Bool(true)))
            || matches!(&self.email_verified, Some(serde_json::Value::String(s)) if s == "true")
    }
}

struct Cached {
    keys: HashMap<String, Jwk>,
    /// Keys without a `kid`: usable only when the set has exactly one and the token names none.
    unnamed: Vec<Jwk>,
    fetched: Option<Instant>,
    /// When an unknown `kid` last made us fetch the set.
    refetched: Option<Instant>,
}

/// One issuer's signing keys.
pub struct Jwks {
    name: String,
    http: reqwest::Client,
    durations: prometheus::HistogramVec,
    cached: Mutex<Cached>,
}

impl Jwks {
    pub fn new(name: &str, http: reqwest::Client, durations: prometheus::HistogramVec) -> Jwks {
        Jwks {
            name: name.to_string(),
            http,
            durations,
            cached: Mutex::new(Cached {
                keys: HashMap::new(),
                unnamed: Vec::new(),
                fetched: None,
                refetched: None,
            }),
        }
    }

    fn lookup(&self, kid: Option<&str>) -> Option<Jwk> {
        let cached = self.cached.lock().expect("jwks lock");
        match kid {
            Some(kid) => cached.keys.get(kid).cloned(),
            None if cached.keys.is_empty() && cached.unnamed.len() == 1 => {
                cached.unnamed.first().cloned()
            }
            None => None,
        }
    }

    /// The key a token names. The set is fetched on first use and again once it is an hour old
    /// (so a key the issuer withdrew stops being trusted; the old set stays in use while the
    /// issuer cannot be reached). A `kid` the set lacks makes us fetch it again (the issuer
    /// rotated), but at most once a minute.
    async fn key(&self, url: &str, kid: Option<&str>) -> Result<Jwk, ProviderError> {
        let fetched = self.cached.lock().expect("jwks lock").fetched;
        match fetched {
            None => self.fetch(url).await?,
            Some(at) if at.elapsed() >= KEYS_TTL => {
                if let Err(e) = self.fetch(url).await {
                    tracing::warn!(provider = %self.name, error = %e, "JWKS refresh failed; using the keys fetched earlier");
                }
            }
            Some(_) => {}
        }
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        let may_refetch = {
            let mut cached = self.cached.lock().expect("jwks lock");
            let may = cached
                .refetched
                .is_none_or(|at| at.elapsed() >= REFETCH_EVERY);
            if may {
                cached.refetched = Some(Instant::now());
            }
            may
        };
        if may_refetch {
            self.fetch(url).await?;
            if let Some(key) = self.lookup(kid) {
                return Ok(key);
            }
        }
        Err(ProviderError::LoginFailed(format!(
            "id_token signed with a key {} does not publish (kid {kid:?})",
            self.name
        )))
    }

    async fn fetch(&self, url: &str) -> Result<(), ProviderError> {
        let (status, body) =
            http::call(&self.durations, &self.name, "jwks", self.http.get(url)).await?;
        if status != 200 {
            return Err(ProviderError::Unavailable(format!(
                "JWKS answered {status}"
            )));
        }
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Unavailable("JWKS is not a JSON Web Key Set".into()))?;
        let mut cached = self.cached.lock().expect("jwks lock");
        cached.keys.clear();
        cached.unnamed.clear();
        for key in set.keys {
            match key.common.key_id.clone() {
                Some(kid) => {
                    cached.keys.insert(kid, key);
                }
                None => cached.unnamed.push(key),
            }
        }
        cached.fetched = Some(Instant::now());
        Ok(())
    }
}

/// What an `id_token` must say to be accepted.
pub struct Rules<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub leeway: u64,
}

/// The algorithms accepted, each with the key type it needs.
fn allowed(alg: Algorithm, key: &Jwk) -> bool {
    let fits = match (&key.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256 | Algorithm::PS256) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => {
            okp.curve == EllipticCurve::Ed25519
        }
        _ => false,
    };
    // A key that names its algorithm is used for that one only.
    let pinned = key
        .common
        .key_algorithm
        .is_none_or(|k| Algorithm::try_from(k).is_ok_and(|a| a == alg));
    fits && pinned
}

fn refused(why: impl Into<String>) -> ProviderError {
    ProviderError::LoginFailed(format!("id_token refused: {}", why.into()))
}

/// Verifies `token` against `jwks_url`'s keys and `rules`, with the `nonce` this login sent.
pub async fn verify(
    jwks: &Jwks,
    jwks_url: &str,
    rules: &Rules<'_>,
    token: &str,
    nonce: &str,
    now: i64,
) -> Result<IdClaims, ProviderError> {
    if token.len() > 16 * 1024 {
        return Err(refused("over 16 KiB"));
    }
    // `decode_header` knows no `none`: such a token fails here.
    let header = jsonwebtoken::decode_header(token).map_err(|e| refused(format!("header: {e}")))?;
    if !matches!(
        header.alg,
        Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256 | Algorithm::EdDSA
    ) {
        return Err(refused(format!("alg {:?} is not accepted", header.alg)));
    }
    let key = jwks.key(jwks_url, header.kid.as_deref()).await?;
    if !allowed(header.alg, &key) {
        return Err(refused(format!(
            "alg {:?} does not fit the key",
            header.alg
        )));
    }
    let decoding = DecodingKey::from_jwk(&key).map_err(|e| refused(format!("key: {e}")))?;
    let mut validation = Validation::new(header.alg);
    validation.leeway = rules.leeway;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_issuer(&[rules.issuer]);
    validation.set_audience(&[rules.client_id]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<IdClaims>(token, &decoding, &validation)
        .map_err(|e| refused(format!("{:?}", e.kind())))?
        .claims;
    let several = matches!(&claims.aud, serde_json::Value::Array(a) if a.len() > 1);
    match claims.azp.as_deref() {
        Some(azp) if azp != rules.client_id => return Err(refused("azp is another client")),
        None if several => return Err(refused("several audiences and no azp")),
        _ => {}
    }
    let leeway = rules.leeway as i64;
    match claims.iat {
        Some(iat) if iat <= now + leeway && iat >= now - MAX_AGE - leeway => {}
        _ => return Err(refused("iat is not recent")),
    }
    if claims.nonce.as_deref() != Some(nonce) {
        return Err(refused("nonce is not this login's"));
    }
    if claims.sub.is_empty() || claims.sub.len() > 255 {
        return Err(refused("sub is empty or too long"));
    }
    Ok(claims)
}
