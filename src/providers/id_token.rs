//! OpenID Connect `id_token`s, verified as Core §3.1.3.7 says, for any OIDC issuer and for
//! Kakao's OIDC mode.
//!
//! - The key comes from the issuer's JWKS by `kid`: fetched on first use, kept for an hour, and
//!   fetched again when a token names a `kid` the set does not hold (the issuer rotated), at most
//!   once a minute so a stream of forged `kid`s cannot make us hammer the issuer. One fetch at
//!   a time (those waiting take its outcome), and a failed one stands for 10 s: unauthenticated
//!   posts (Kakao's security events) cannot make one outbound call each.
//! - The algorithm is the header's, but only from an allow-list (RS256, PS256, ES256, EdDSA) and
//!   only when it fits the key's type: never `none`, never HMAC with a public key.
//! - `iss` exactly the issuer; `aud` containing our client id; `azp`, when present, our client id,
//!   and present when there are several audiences; `exp` in the future and `iat` recent, with the configured leeway;
//!   `nonce` equal to the one bound to this login's state.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{http, ProviderError};

/// How often an unknown `kid` may make us fetch the JWKS again.
const REFETCH_EVERY: Duration = Duration::from_secs(60);
/// How long a failed fetch stands before another is tried: anyone can post a security event
/// or a callback, and each must not make us call an issuer that is down.
const FAILURE_STANDS: Duration = Duration::from_secs(10);
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

#[derive(Default)]
struct Cached {
    keys: HashMap<String, Jwk>,
    /// Keys without a `kid`: usable only when the set has exactly one and the token names none.
    unnamed: Vec<Jwk>,
    /// Where the keys came from (discovery may name another `jwks_uri` later).
    url: String,
    /// When to fetch the set again; `None` before the first fetch.
    refresh_at: Option<Instant>,
    /// When an unknown `kid` last made us fetch the set.
    refetched: Option<Instant>,
    /// Fetches begun so far, and the last one's failure: a login that waited for another's
    /// fetch takes its outcome instead of fetching again.
    attempts: u64,
    last_error: Option<ProviderError>,
    /// After a failed fetch: no other before this.
    retry_at: Option<Instant>,
}

/// One issuer's signing keys.
pub struct Jwks {
    name: String,
    http: reqwest::Client,
    durations: prometheus::HistogramVec,
    cached: Mutex<Cached>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

/// The smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS: usize = 256;

impl Jwks {
    pub fn new(name: &str, http: reqwest::Client, durations: prometheus::HistogramVec) -> Jwks {
        Jwks {
            name: name.to_string(),
            http,
            durations,
            cached: Mutex::new(Cached::default()),
            fetching: tokio::sync::Mutex::new(()),
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
    /// issuer cannot be reached, tried again a minute later). A `kid` the set lacks makes us
    /// fetch it again (the issuer rotated), but at most once a minute.
    pub(crate) async fn key(&self, url: &str, kid: Option<&str>) -> Result<Jwk, ProviderError> {
        let (missing, stale, seen) = {
            let c = self.cached.lock().expect("jwks lock");
            let missing = c.refresh_at.is_none() || c.url != url;
            let stale = c.refresh_at.is_some_and(|at| Instant::now() >= at);
            (missing, stale, c.attempts)
        };
        if missing {
            self.refresh(url, seen).await?;
        } else if stale {
            if let Err(e) = self.refresh(url, seen).await {
                tracing::warn!(provider = %self.name, error = %e, "JWKS refresh failed; using the keys fetched earlier");
                self.cached.lock().expect("jwks lock").refresh_at =
                    Some(Instant::now() + REFETCH_EVERY);
            }
        }
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        let seen = {
            let mut c = self.cached.lock().expect("jwks lock");
            if c.refetched.is_some_and(|at| at.elapsed() < REFETCH_EVERY) {
                None
            } else {
                c.refetched = Some(Instant::now());
                Some(c.attempts)
            }
        };
        if let Some(seen) = seen {
            self.refresh(url, seen).await?;
            if let Some(key) = self.lookup(kid) {
                return Ok(key);
            }
        }
        Err(ProviderError::LoginFailed(format!(
            "id_token signed with a key {} does not publish (kid {kid:?})",
            self.name
        )))
    }

    /// Fetches the set, unless another fetch began since `seen`: then its outcome stands.
    async fn refresh(&self, url: &str, seen: u64) -> Result<(), ProviderError> {
        let _one = self.fetching.lock().await;
        {
            let mut c = self.cached.lock().expect("jwks lock");
            if c.attempts != seen {
                return c.last_error.clone().map_or(Ok(()), Err);
            }
            if let (Some(at), Some(e)) = (c.retry_at, &c.last_error) {
                if Instant::now() < at {
                    return Err(e.clone());
                }
            }
            c.attempts += 1;
        }
        let outcome = self.fetch(url).await;
        let mut c = self.cached.lock().expect("jwks lock");
        match outcome {
            Ok((keys, unnamed)) => {
                c.keys = keys;
                c.unnamed = unnamed;
                c.url = url.to_string();
                c.refresh_at = Some(Instant::now() + KEYS_TTL);
                c.last_error = None;
                c.retry_at = None;
                Ok(())
            }
            Err(e) => {
                c.last_error = Some(e.clone());
                c.retry_at = Some(Instant::now() + FAILURE_STANDS);
                Err(e)
            }
        }
    }

    /// The set's signing keys: by `kid` (the first of a `kid` wins), and those without one.
    /// Encryption keys and RSA keys under 2048 bits are left out.
    async fn fetch(&self, url: &str) -> Result<(HashMap<String, Jwk>, Vec<Jwk>), ProviderError> {
        let (status, body) =
            http::call(&self.durations, &self.name, "jwks", self.http.get(url)).await?;
        if status != 200 {
            return Err(ProviderError::Unavailable(format!(
                "JWKS answered {status}"
            )));
        }
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|_| ProviderError::Unavailable("JWKS is not a JSON Web Key Set".into()))?;
        let (mut keys, mut unnamed) = (HashMap::new(), Vec::new());
        for key in set.keys {
            let signing = !matches!(key.common.public_key_use, Some(PublicKeyUse::Encryption));
            let strong = match &key.algorithm {
                AlgorithmParameters::RSA(rsa) => URL_SAFE_NO_PAD
                    .decode(&rsa.n)
                    .is_ok_and(|n| n.iter().skip_while(|b| **b == 0).count() >= MIN_RSA_MODULUS),
                _ => true,
            };
            if !(signing && strong) {
                continue;
            }
            match key.common.key_id.clone() {
                Some(kid) => {
                    keys.entry(kid).or_insert(key);
                }
                None => unnamed.push(key),
            }
        }
        Ok((keys, unnamed))
    }
}

/// What an `id_token` must say to be accepted.
pub struct Rules<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub leeway: u64,
}

/// The algorithms accepted, each with the key type it needs.
pub(crate) fn allowed(alg: Algorithm, key: &Jwk) -> bool {
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
