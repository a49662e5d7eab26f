//! `[jwt]`: the signing key and its algorithm, verify-only previous keys (`[[jwt.previous_keys]]`,
//! for rotating the key without logging anyone out), token lifetimes.
//!
//! Every key has a `kid`, a digest of it (of the public JWK for RS256/EdDSA, of the secret for
//! HS256), so a rotated key gets a new id; tokens carry the `kid` of the key that signed them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::{DecodingKey, EncodingKey};

use super::reader::{env_int, env_or, value_or_env, Sec};
use super::{EnvLookup, Problem};

/// The HS256 secret shipped in `config.toml`: a file that still holds it must not start.
pub const PLACEHOLDER_SECRET: &str = "CHANGE-ME-set-JWT_SECRET_KEY-to-at-least-32-random-bytes";

/// The seed's `.env` example value, refused for the same reason.
pub(super) const SEED_PLACEHOLDER_SECRET: &str = "your_jwt_secret_key";

const MIN_SECRET_BYTES: usize = 32;

const MIN_RSA_BITS: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    EdDSA,
}

impl JwtAlgorithm {
    pub fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            JwtAlgorithm::HS256 => jsonwebtoken::Algorithm::HS256,
            JwtAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            JwtAlgorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

/// Keys read from the configured secret or PEM files, ready for signing and verifying.
#[derive(Clone)]
pub struct JwtKeys {
    pub decoding: DecodingKey,
    pub encoding: EncodingKey,
    /// The `kid` header of the tokens this key signs.
    pub kid: String,
    /// The public JWK to publish (RS256 / EdDSA only; never for a symmetric key).
    pub jwk: Option<serde_json::Value>,
    /// Derived from the signing key: signs login `state` and derives PKCE verifiers, so every
    /// instance with the same key accepts the same state.
    pub state_key: Vec<u8>,
}

#[derive(Clone)]
pub struct JwtConfig {
    /// The one algorithm accepted; a token's own `alg` header never chooses.
    pub algorithm: JwtAlgorithm,
    pub issuer: String,
    pub audience: String,
    pub access_ttl_minutes: u64,
    pub refresh_ttl_days: u64,
    pub leeway_seconds: u64,
    /// How many verified tokens to remember (0 = verify every signature).
    pub verified_cache_entries: u64,
    /// Longer tokens are refused unread: nobody makes us decode a header-sized blob.
    pub max_token_bytes: usize,
    /// `None` only while the configuration has problems.
    pub keys: Option<Arc<JwtKeys>>,
    /// Verify-only keys of earlier rotations, each with its own algorithm.
    pub previous_keys: Vec<VerifyKey>,
}

/// A key tokens are verified with: the current one, or a previous one.
#[derive(Clone)]
pub struct VerifyKey {
    /// Pinned per key: a token's `alg` header never chooses another.
    pub algorithm: JwtAlgorithm,
    pub kid: String,
    pub decoding: DecodingKey,
    /// The public JWK to publish (RS256 / EdDSA).
    pub jwk: Option<serde_json::Value>,
}

impl JwtConfig {
    /// The current key, then the previous ones: every key a token may be verified with.
    pub fn verify_keys(&self) -> Vec<VerifyKey> {
        let current = self.keys.as_ref().map(|k| VerifyKey {
            algorithm: self.algorithm,
            kid: k.kid.clone(),
            decoding: k.decoding.clone(),
            jwk: k.jwk.clone(),
        });
        current
            .into_iter()
            .chain(self.previous_keys.iter().cloned())
            .collect()
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An HS256 key's `kid`: a digest of the secret (96 bits, domain-separated).
fn hs256_kid(secret: &[u8]) -> String {
    use sha2::Digest;
    b64(&sha2::Sha256::digest([b"authgate-kid:".as_slice(), secret].concat())[..12])
}

fn parse_algorithm(s: &Sec<'_>, text: &str, p: &mut Vec<Problem>) -> JwtAlgorithm {
    match text {
        "HS256" => JwtAlgorithm::HS256,
        "RS256" => JwtAlgorithm::RS256,
        "EdDSA" => JwtAlgorithm::EdDSA,
        other => {
            p.push(s.problem(
                "algorithm",
                format!("{other:?}"),
                "use \"HS256\", \"RS256\" or \"EdDSA\"",
            ));
            JwtAlgorithm::HS256
        }
    }
}

/// One `[[jwt.previous_keys]]` table: verify-only.
fn read_previous_key(
    s: &Sec<'_>,
    base: &Path,
    env: EnvLookup<'_>,
    p: &mut Vec<Problem>,
) -> Option<VerifyKey> {
    s.only_keys(
        &[
            "algorithm",
            "secret",
            "secret_env",
            "public_key_file",
            "private_key_file",
        ],
        p,
    );
    let algorithm = parse_algorithm(s, &s.nonempty_string("algorithm", "", p), p);
    match algorithm {
        JwtAlgorithm::HS256 => {
            let secret = value_or_env(s, "secret", env, p);
            let keys = hs256_keys(s, &secret, p)?;
            Some(VerifyKey {
                algorithm,
                kid: keys.kid,
                decoding: keys.decoding,
                jwk: None,
            })
        }
        JwtAlgorithm::RS256 | JwtAlgorithm::EdDSA => {
            let public_key_file = s.string("public_key_file", "", p);
            let private_key_file = s.string("private_key_file", "", p);
            // With the private key, the public half is derived (and a public_key_file beside it
            // must be that half).
            if !private_key_file.is_empty() {
                let keys = pem_keys(s, algorithm, base, &private_key_file, &public_key_file, p)?;
                return Some(VerifyKey {
                    algorithm,
                    kid: keys.kid,
                    decoding: keys.decoding,
                    jwk: keys.jwk,
                });
            }
            let (decoding, jwk) = if !public_key_file.is_empty() {
                let path = resolve(base, &public_key_file);
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) => {
                        p.push(s.problem(
                            "public_key_file",
                            format!("{public_key_file:?}"),
                            format!("cannot read {} ({e})", path.display()),
                        ));
                        return None;
                    }
                };
                let Some(jwk) = public_jwk(algorithm, &text) else {
                    p.push(s.problem(
                        "public_key_file",
                        format!("{public_key_file:?}"),
                        format!("not a {algorithm:?} public PEM key (RSA: at least 2048 bits)"),
                    ));
                    return None;
                };
                (decoding_of(algorithm, &jwk)?, jwk)
            } else {
                p.push(s.problem(
                    "public_key_file",
                    "\"\"",
                    "a previous RS256/EdDSA key needs its public_key_file (or private_key_file)",
                ));
                return None;
            };
            let (kid, jwk) = with_kid(jwk);
            Some(VerifyKey {
                algorithm,
                kid,
                decoding,
                jwk: Some(jwk),
            })
        }
    }
}

/// The public half of a PEM public key as JWK members (RSA: at least 2048 bits).
fn public_jwk(algorithm: JwtAlgorithm, text: &str) -> Option<serde_json::Value> {
    match algorithm {
        JwtAlgorithm::RS256 => {
            use rsa::pkcs8::DecodePublicKey;
            use rsa::traits::PublicKeyParts;
            let public = rsa::RsaPublicKey::from_public_key_pem(text).ok()?;
            (public.size() * 8 >= MIN_RSA_BITS).then(|| rsa_jwk(&public))
        }
        JwtAlgorithm::EdDSA => {
            use ed25519_dalek::pkcs8::DecodePublicKey;
            let public = ed25519_dalek::VerifyingKey::from_public_key_pem(text).ok()?;
            Some(ed_jwk(&public))
        }
        JwtAlgorithm::HS256 => None,
    }
}

fn rsa_jwk(public: &rsa::RsaPublicKey) -> serde_json::Value {
    use rsa::traits::PublicKeyParts;
    serde_json::json!({
        "kty": "RSA", "alg": "RS256", "use": "sig",
        "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be()),
    })
}

fn ed_jwk(public: &ed25519_dalek::VerifyingKey) -> serde_json::Value {
    serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "x": b64(public.as_bytes()),
    })
}

fn decoding_of(algorithm: JwtAlgorithm, jwk: &serde_json::Value) -> Option<DecodingKey> {
    match algorithm {
        JwtAlgorithm::RS256 => {
            DecodingKey::from_rsa_components(jwk["n"].as_str()?, jwk["e"].as_str()?).ok()
        }
        _ => DecodingKey::from_ed_components(jwk["x"].as_str()?).ok(),
    }
}

/// The JWK's `kid` (a short digest of its public members, so a rotated key gets a new id), and
/// the JWK with it.
fn with_kid(mut jwk: serde_json::Value) -> (String, serde_json::Value) {
    use sha2::Digest;
    let kid = b64(&sha2::Sha256::digest(jwk.to_string().as_bytes())[..12]);
    jwk["kid"] = serde_json::Value::String(kid.clone());
    (kid, jwk)
}

pub(super) fn read_jwt(
    s: &Sec<'_>,
    base: &Path,
    env: EnvLookup<'_>,
    p: &mut Vec<Problem>,
) -> JwtConfig {
    s.only_keys(
        &[
            "algorithm",
            "secret",
            "private_key_file",
            "public_key_file",
            "issuer",
            "audience",
            "access_ttl_minutes",
            "refresh_ttl_days",
            "leeway_seconds",
            "verified_cache_entries",
            "max_token_bytes",
            "previous_keys",
        ],
        p,
    );
    let alg_text = env_or(env, "JWT_ALGORITHM", || s.string("algorithm", "HS256", p));
    let algorithm = parse_algorithm(s, &alg_text, p);
    let secret = env_or(env, "JWT_SECRET_KEY", || s.string("secret", "", p));
    let private_key_file = s.string("private_key_file", "", p);
    let public_key_file = s.string("public_key_file", "", p);
    let issuer = s.nonempty_string("issuer", "authgate", p);
    let audience = s.nonempty_string("audience", "authgate", p);
    let access_ttl_minutes = env_int(env, "JWT_ACCESS_TOKEN_EXPIRE_MINUTES", 1, 1440, p)
        .unwrap_or_else(|| s.int("access_ttl_minutes", 30, 1, 1440, p));
    let refresh_ttl_days = env_int(env, "JWT_REFRESH_TOKEN_EXPIRE_DAYS", 1, 365, p)
        .unwrap_or_else(|| s.int("refresh_ttl_days", 7, 1, 365, p));
    let leeway_seconds = s.int("leeway_seconds", 30, 0, 300, p);
    let verified_cache_entries = s.int("verified_cache_entries", 10_000, 0, 10_000_000, p);
    let max_token_bytes = s.int("max_token_bytes", 8192, 256, 65_536, p) as usize;

    let keys = match algorithm {
        JwtAlgorithm::HS256 => hs256_keys(s, &secret, p),
        JwtAlgorithm::RS256 | JwtAlgorithm::EdDSA => {
            if !secret.is_empty() && s.t.contains_key("secret") {
                p.push(s.problem(
                    "secret",
                    "(set)",
                    "a secret is only used with HS256; remove it or set algorithm = \"HS256\"",
                ));
            }
            pem_keys(s, algorithm, base, &private_key_file, &public_key_file, p)
        }
    };
    let mut previous_keys: Vec<VerifyKey> = Vec::new();
    for (i, k) in s.array_of_tables("previous_keys", p).iter().enumerate() {
        let Some(key) = read_previous_key(k, base, env, p) else {
            continue;
        };
        let current = keys.as_ref().is_some_and(|c| c.kid == key.kid);
        if current || previous_keys.iter().any(|o| o.kid == key.kid) {
            p.push(s.problem(
                &format!("previous_keys[{i}]"),
                format!("kid {:?}", key.kid),
                if current {
                    "this is the current key: list only keys that signed before it"
                } else {
                    "listed twice"
                },
            ));
            continue;
        }
        previous_keys.push(key);
    }
    JwtConfig {
        algorithm,
        issuer,
        audience,
        access_ttl_minutes,
        refresh_ttl_days,
        leeway_seconds,
        verified_cache_entries,
        max_token_bytes,
        keys: keys.map(Arc::new),
        previous_keys,
    }
}

pub(super) fn hs256_keys(s: &Sec<'_>, secret: &str, p: &mut Vec<Problem>) -> Option<JwtKeys> {
    // The secret itself is never printed; its length is enough to act on.
    if secret == PLACEHOLDER_SECRET || secret == SEED_PLACEHOLDER_SECRET {
        p.push(s.problem(
            "secret",
            "(the shipped placeholder)",
            "set env JWT_SECRET_KEY (or jwt.secret) to at least 32 random bytes, e.g. `openssl rand -base64 48`",
        ));
        return None;
    }
    if secret.len() < MIN_SECRET_BYTES {
        p.push(s.problem(
            "secret",
            format!("({} bytes)", secret.len()),
            "HS256 needs at least 32 bytes: set env JWT_SECRET_KEY (or jwt.secret), e.g. `openssl rand -base64 48`",
        ));
        return None;
    }
    use sha2::Digest;
    Some(JwtKeys {
        decoding: DecodingKey::from_secret(secret.as_bytes()),
        encoding: EncodingKey::from_secret(secret.as_bytes()),
        kid: hs256_kid(secret.as_bytes()),
        jwk: None,
        state_key: sha2::Sha256::digest(
            [b"authgate-state:".as_slice(), secret.as_bytes()].concat(),
        )
        .to_vec(),
    })
}

pub(super) fn pem_keys(
    s: &Sec<'_>,
    algorithm: JwtAlgorithm,
    base: &Path,
    private_key_file: &str,
    public_key_file: &str,
    p: &mut Vec<Problem>,
) -> Option<JwtKeys> {
    if private_key_file.is_empty() {
        p.push(s.problem(
            "private_key_file",
            "\"\"",
            format!(
                "{algorithm:?} needs a PEM private key file, e.g. `openssl genpkey -algorithm {}`",
                match algorithm {
                    JwtAlgorithm::RS256 => "RSA -pkeyopt rsa_keygen_bits:2048",
                    _ => "ed25519",
                }
            ),
        ));
        return None;
    }
    let read = |key: &str, file: &str, p: &mut Vec<Problem>| -> Option<Vec<u8>> {
        let path = resolve(base, file);
        std::fs::read(&path)
            .map_err(|e| {
                p.push(s.problem(
                    key,
                    format!("{file:?}"),
                    format!("cannot read {} ({e})", path.display()),
                ))
            })
            .ok()
    };
    let private_pem = read("private_key_file", private_key_file, p)?;
    let public_pem = if public_key_file.is_empty() {
        None
    } else {
        Some(read("public_key_file", public_key_file, p)?)
    };
    let bad = |key: &str, file: &str, what: &str| {
        s.problem(key, format!("{file:?}"), format!("not a {what} PEM key"))
    };
    // A public key file that is not the private key's half: every token signed would be
    // refused by our own verifier (browsers loop on login) and by upstreams reading the JWKS.
    // The usual cause is a rotation that replaced only the private key.
    let mismatch = || {
        s.problem(
            "public_key_file",
            format!("{public_key_file:?}"),
            format!(
                "is not the public half of private_key_file = {private_key_file:?}: replace both together, \
                 or leave public_key_file empty and it is derived from the private key"
            ),
        )
    };
    let text = String::from_utf8_lossy(&private_pem).into_owned();
    let public_text = public_pem.map(|p| String::from_utf8_lossy(&p).into_owned());
    // The public half as JWK members: it builds the verifying key and is published as JWKS.
    let (encoding, jwk) = match algorithm {
        JwtAlgorithm::RS256 => {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
            use rsa::traits::PublicKeyParts;
            let Ok(private) = rsa::RsaPrivateKey::from_pkcs8_pem(&text)
                .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(&text))
            else {
                p.push(bad(
                    "private_key_file",
                    private_key_file,
                    "RSA private (PKCS#8 or PKCS#1)",
                ));
                return None;
            };
            let bits = private.size() * 8;
            if bits < MIN_RSA_BITS {
                p.push(s.problem(
                    "private_key_file",
                    format!("{private_key_file:?} ({bits}-bit RSA)"),
                    "RSA keys must have at least 2048 bits: `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`",
                ));
                return None;
            }
            let public = match &public_text {
                None => private.to_public_key(),
                Some(t) => match rsa::RsaPublicKey::from_public_key_pem(t) {
                    Ok(k) if k == private.to_public_key() => k,
                    Ok(_) => {
                        p.push(mismatch());
                        return None;
                    }
                    Err(_) => {
                        p.push(bad("public_key_file", public_key_file, "RSA public"));
                        return None;
                    }
                },
            };
            (
                EncodingKey::from_rsa_pem(&private_pem).ok()?,
                rsa_jwk(&public),
            )
        }
        JwtAlgorithm::EdDSA => {
            use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
            let Ok(signing) = ed25519_dalek::SigningKey::from_pkcs8_pem(&text) else {
                p.push(bad(
                    "private_key_file",
                    private_key_file,
                    "Ed25519 private (PKCS#8)",
                ));
                return None;
            };
            let public = match &public_text {
                None => signing.verifying_key(),
                Some(t) => match ed25519_dalek::VerifyingKey::from_public_key_pem(t) {
                    Ok(k) if k == signing.verifying_key() => k,
                    Ok(_) => {
                        p.push(mismatch());
                        return None;
                    }
                    Err(_) => {
                        p.push(bad("public_key_file", public_key_file, "Ed25519 public"));
                        return None;
                    }
                },
            };
            (
                EncodingKey::from_ed_pem(&private_pem).ok()?,
                ed_jwk(&public),
            )
        }
        JwtAlgorithm::HS256 => return None,
    };
    let decoding = decoding_of(algorithm, &jwk)?;
    let (kid, jwk) = with_kid(jwk);
    // The state/PKCE key must be the same on every instance sharing this private key.
    use sha2::Digest;
    let state_key =
        sha2::Sha256::digest([b"authgate-state:".as_slice(), &private_pem].concat()).to_vec();
    Some(JwtKeys {
        decoding,
        encoding,
        kid,
        jwk: Some(jwk),
        state_key,
    })
}

pub(super) fn resolve(base: &Path, file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}
