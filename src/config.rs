//! The configuration: `config.toml` plus the seed's environment variables, read into a validated
//! [`Config`].
//!
//! This module owns the file format and every default. It reads the TOML key by key rather than
//! through one `serde` derive so that `authgate check` can report *every* problem at once, each
//! naming the key, the bad value and the fix, instead of stopping at the first. Unknown keys are
//! problems too. Nothing here touches the network or Pingora; keys named by the file are read and
//! parsed here so a bad key file is a config problem, not a crash at the first request.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use jsonwebtoken::{DecodingKey, EncodingKey};
use toml::{Table, Value};

/// The HS256 secret shipped in `config.toml`: a file that still holds it must not start.
pub const PLACEHOLDER_SECRET: &str = "CHANGE-ME-set-JWT_SECRET_KEY-to-at-least-32-random-bytes";
/// The seed's `.env` example value, refused for the same reason.
const SEED_PLACEHOLDER_SECRET: &str = "your_jwt_secret_key";
const MIN_SECRET_BYTES: usize = 32;
const MIN_RSA_BITS: usize = 2048;

/// One thing wrong with the configuration: which key, what it held, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub value: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}: {}", self.key, self.value, self.fix)
    }
}

/// Every problem found in one configuration; never empty.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} configuration problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct Problems(pub Vec<Problem>);

/// The validated configuration the gateway runs on.
#[derive(Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub jwt: JwtConfig,
    pub identity: IdentityConfig,
    pub auth: AuthConfig,
    pub store: StoreConfig,
    /// `None` when `kakao.client_id` is empty: login is off, tokens are only verified.
    pub kakao: Option<KakaoConfig>,
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    pub rate_limit: RateLimitConfig,
    pub log: LogConfig,
}

/// One rate: a sustained rate per minute and the burst allowed on top; `per_minute = 0` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub per_minute: u32,
    pub burst: u32,
}

#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// The gateway's own auth routes, per client IP (the seed's middleware: 10 a minute).
    pub auth: Limit,
    /// Authenticated requests, per verified `sub`.
    pub user: Limit,
    /// Anonymous requests (public routes, and refused tokens), per client IP.
    pub ip: Limit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    /// Level for authgate's own records (`error` … `trace`); dependencies stay at `warn`.
    pub level: String,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://file.db` (created if missing) or `postgres://…`.
    pub url: String,
    /// How long a write may wait for a locked SQLite file before the store counts as unavailable.
    pub busy_timeout_ms: u64,
    pub max_connections: u32,
}

#[derive(Debug, Clone)]
pub struct KakaoConfig {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub authorize_url: String,
    pub token_url: String,
    pub userinfo_url: String,
    pub pkce: bool,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Public listener: proxied traffic and the gateway's own auth routes.
    pub listen: SocketAddr,
    /// Health and readiness (and metrics later); kept off the public listener so probes and
    /// scrapes are never reachable from the internet by accident.
    pub admin_listen: SocketAddr,
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// How long SIGTERM waits for in-flight requests before the process exits.
    pub grace_period_seconds: u64,
    /// Peers whose `X-Forwarded-For`/`X-Forwarded-Proto` are believed; nobody's by default.
    pub trusted_proxies: Vec<IpNet>,
    /// The whole request head must arrive within this (then 408 and close).
    pub client_header_timeout_ms: u64,
    /// How long a connection may sit idle between requests.
    pub keepalive_timeout_ms: u64,
    /// Open client connections in all; more are refused at once.
    pub max_connections: usize,
    /// Open client connections per address (IPv6 per /64); trusted proxies only count in all.
    pub max_connections_per_ip: u32,
}

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
    /// `kid` header and public JWK (RS256 / EdDSA only; never for a symmetric key).
    pub kid: Option<String>,
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
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub user_id: String,
    pub email: String,
    pub nickname: String,
    pub provider: String,
    pub strip_prefix: String,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Where the gateway's own login routes live; `on_unauthenticated = "redirect"` sends browsers
    /// to `{prefix}/kakao/login`.
    pub prefix: String,
    /// Callbacks must carry the `state` the gateway issued. The seed's single-page client sends
    /// only `code`; such clients need `false` (and then get no PKCE either).
    pub require_state: bool,
    /// Absolute origins (`https://app.example`) a `next` parameter may point to besides our own.
    pub allowed_redirect_origins: Vec<String>,
    pub state_ttl_seconds: u64,
    /// A refresh token presented again this soon after its rotation gets a new pair in the
    /// same family instead of revoking it (0 = off).
    pub refresh_reuse_grace_seconds: u64,
}

impl AuthConfig {
    pub fn login_path(&self) -> String {
        format!("{}/kakao/login", self.prefix)
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    pub addrs: Vec<SocketAddr>,
    /// `None` = TCP connect check.
    pub health_check_path: Option<String>,
    pub health_check_interval_ms: u64,
    pub connect_timeout_ms: u64,
    pub read_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    Public,
    Optional,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnauthenticated {
    Status401,
    Redirect,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub path_prefix: String,
    /// Lower-case host without port; `None` matches any host.
    pub host: Option<String>,
    /// Upper-case method names; empty = any method.
    pub methods: Vec<String>,
    /// Match `path_prefix` byte for byte instead of ignoring ASCII case (only for upstreams
    /// known to route case-sensitively).
    pub case_sensitive: bool,
    pub upstream: String,
    pub auth: AuthMode,
    pub on_unauthenticated: OnUnauthenticated,
    /// Overrides the `[rate_limit]` default for this route's scope.
    pub rate_limit: Option<Limit>,
}

/// Reads environment overrides; a closure so tests need not touch the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// Reads and validates a file; relative key-file paths are resolved against its folder.
    pub fn load(path: &Path, env: EnvLookup<'_>) -> Result<Config, Problems> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problems(vec![Problem {
                key: "(file)".into(),
                value: path.display().to_string(),
                fix: format!("cannot read it ({e}); pass an existing file with -c"),
            }])
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base, env)
    }

    /// Parses TOML text; every problem is collected before failing.
    pub fn parse(text: &str, base_dir: &Path, env: EnvLookup<'_>) -> Result<Config, Problems> {
        let root: Table = text.parse::<Table>().map_err(|e| {
            Problems(vec![Problem {
                key: "(syntax)".into(),
                value: e.message().to_string(),
                fix: format!(
                    "fix the TOML syntax{}",
                    e.span()
                        .map(|s| format!(" near byte {}", s.start))
                        .unwrap_or_default()
                ),
            }])
        })?;
        let mut p = Vec::new();
        let top = Sec::root(&root);
        top.only_keys(
            &[
                "server",
                "jwt",
                "identity",
                "auth",
                "store",
                "kakao",
                "upstreams",
                "routes",
                "rate_limit",
                "log",
            ],
            &mut p,
        );

        let server = read_server(&top.table("server", &mut p), &mut p);
        let jwt = read_jwt(&top.table("jwt", &mut p), base_dir, env, &mut p);
        let identity = read_identity(&top.table("identity", &mut p), &mut p);
        let auth = read_auth(&top.table("auth", &mut p), &mut p);
        let store = read_store(&top.table("store", &mut p), &mut p);
        let kakao = read_kakao(&top.table("kakao", &mut p), env, &mut p);
        let rate_limit = read_rate_limit(&top.table("rate_limit", &mut p), &mut p);
        let log = read_log(&top.table("log", &mut p), &mut p);
        let upstreams: Vec<UpstreamConfig> = top
            .array_of_tables("upstreams", &mut p)
            .iter()
            .map(|s| read_upstream(s, &mut p))
            .collect();
        let routes: Vec<RouteConfig> = top
            .array_of_tables("routes", &mut p)
            .iter()
            .map(|s| read_route(s, &mut p))
            .collect();
        cross_check(&server, &upstreams, &routes, &mut p);

        if p.is_empty() {
            Ok(Config {
                server,
                jwt,
                identity,
                auth,
                store,
                kakao,
                upstreams,
                routes,
                rate_limit,
                log,
            })
        } else {
            Err(Problems(p))
        }
    }
}

fn read_server(s: &Sec<'_>, p: &mut Vec<Problem>) -> ServerConfig {
    s.only_keys(
        &[
            "listen",
            "admin_listen",
            "threads",
            "grace_period_seconds",
            "trusted_proxies",
            "client_header_timeout_ms",
            "keepalive_timeout_ms",
            "max_connections",
            "max_connections_per_ip",
        ],
        p,
    );
    let listen = s.socket_addr("listen", "0.0.0.0:8000", p);
    let admin_listen = s.socket_addr("admin_listen", "127.0.0.1:9091", p);
    if listen == admin_listen {
        p.push(s.problem(
            "admin_listen",
            admin_listen.to_string(),
            "must differ from server.listen: the admin endpoints are never served on the public listener",
        ));
    }
    let threads = s.int("threads", 2, 1, 256, p) as usize;
    let grace_period_seconds = s.int("grace_period_seconds", 10, 0, 3600, p);
    let trusted_proxies = s
        .strings("trusted_proxies", &[], p)
        .into_iter()
        .filter_map(|c| match parse_cidr(&c) {
            Some(net) => Some(net),
            None => {
                p.push(s.problem(
                    "trusted_proxies",
                    format!("{c:?}"),
                    "each entry must be an IP address or CIDR such as \"10.0.0.0/8\"",
                ));
                None
            }
        })
        .collect();
    ServerConfig {
        listen,
        admin_listen,
        threads,
        grace_period_seconds,
        trusted_proxies,
        client_header_timeout_ms: s.int("client_header_timeout_ms", 10_000, 100, 600_000, p),
        keepalive_timeout_ms: s.int("keepalive_timeout_ms", 60_000, 1_000, 3_600_000, p),
        max_connections: s.int("max_connections", 8192, 1, 1_000_000, p) as usize,
        max_connections_per_ip: s.int("max_connections_per_ip", 256, 1, 1_000_000, p) as u32,
    }
}

fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn read_jwt(s: &Sec<'_>, base: &Path, env: EnvLookup<'_>, p: &mut Vec<Problem>) -> JwtConfig {
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
        ],
        p,
    );
    let alg_text = env_or(env, "JWT_ALGORITHM", || s.string("algorithm", "HS256", p));
    let algorithm = match alg_text.as_str() {
        "HS256" => JwtAlgorithm::HS256,
        "RS256" => JwtAlgorithm::RS256,
        "EdDSA" => JwtAlgorithm::EdDSA,
        other => {
            p.push(s.problem(
                "algorithm",
                format!("{other:?}"),
                "use \"HS256\", \"RS256\" or \"EdDSA\" (env JWT_ALGORITHM overrides)",
            ));
            JwtAlgorithm::HS256
        }
    };
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
    }
}

fn hs256_keys(s: &Sec<'_>, secret: &str, p: &mut Vec<Problem>) -> Option<JwtKeys> {
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
        kid: None,
        jwk: None,
        state_key: sha2::Sha256::digest(
            [b"authgate-state:".as_slice(), secret.as_bytes()].concat(),
        )
        .to_vec(),
    })
}

fn pem_keys(
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
    let b64 = |bytes: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
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
                    Ok(k) => k,
                    Err(_) => {
                        p.push(bad("public_key_file", public_key_file, "RSA public"));
                        return None;
                    }
                },
            };
            let jwk = serde_json::json!({
                "kty": "RSA", "alg": "RS256", "use": "sig",
                "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be()),
            });
            (EncodingKey::from_rsa_pem(&private_pem).ok()?, jwk)
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
                    Ok(k) => k,
                    Err(_) => {
                        p.push(bad("public_key_file", public_key_file, "Ed25519 public"));
                        return None;
                    }
                },
            };
            let jwk = serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "x": b64(public.as_bytes()),
            });
            (EncodingKey::from_ed_pem(&private_pem).ok()?, jwk)
        }
        JwtAlgorithm::HS256 => return None,
    };
    let decoding = match algorithm {
        JwtAlgorithm::RS256 => {
            DecodingKey::from_rsa_components(jwk["n"].as_str()?, jwk["e"].as_str()?).ok()?
        }
        _ => DecodingKey::from_ed_components(jwk["x"].as_str()?).ok()?,
    };
    // kid: a short digest of the public key, so a rotated key gets a new id.
    use sha2::Digest;
    let kid = b64(&sha2::Sha256::digest(jwk.to_string().as_bytes())[..12]);
    let mut jwk = jwk;
    jwk["kid"] = serde_json::Value::String(kid.clone());
    // The state/PKCE key must be the same on every instance sharing this private key.
    let state_key =
        sha2::Sha256::digest([b"authgate-state:".as_slice(), &private_pem].concat()).to_vec();
    Some(JwtKeys {
        decoding,
        encoding,
        kid: Some(kid),
        jwk: Some(jwk),
        state_key,
    })
}

fn resolve(base: &Path, file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn read_identity(s: &Sec<'_>, p: &mut Vec<Problem>) -> IdentityConfig {
    s.only_keys(
        &["user_id", "email", "nickname", "provider", "strip_prefix"],
        p,
    );
    let header = |key: &str, default: &str, p: &mut Vec<Problem>| {
        let v = s.string(key, default, p);
        if v.is_empty() || http::HeaderName::from_bytes(v.as_bytes()).is_err() {
            p.push(s.problem(
                key,
                format!("{v:?}"),
                "must be a valid HTTP header name such as \"X-User-Id\"",
            ));
        }
        v
    };
    let user_id = header("user_id", "X-User-Id", p);
    let email = header("email", "X-User-Email", p);
    let nickname = header("nickname", "X-User-Nickname", p);
    let provider = header("provider", "X-User-Provider", p);
    let strip_prefix = s.string("strip_prefix", "X-User-", p);
    if strip_prefix.len() < 3 {
        p.push(s.problem(
            "strip_prefix",
            format!("{strip_prefix:?}"),
            "use a prefix of at least 3 characters such as \"X-User-\"; a shorter one would strip ordinary headers",
        ));
    }
    IdentityConfig {
        user_id,
        email,
        nickname,
        provider,
        strip_prefix,
    }
}

fn read_rate_limit(s: &Sec<'_>, p: &mut Vec<Problem>) -> RateLimitConfig {
    s.only_keys(
        &[
            "auth_per_minute",
            "auth_burst",
            "user_per_minute",
            "user_burst",
            "ip_per_minute",
            "ip_burst",
        ],
        p,
    );
    let limit = |scope: &str, per_minute: u64, burst: u64, p: &mut Vec<Problem>| Limit {
        per_minute: s.int(&format!("{scope}_per_minute"), per_minute, 0, 1_000_000, p) as u32,
        burst: s.int(&format!("{scope}_burst"), burst, 1, 1_000_000, p) as u32,
    };
    RateLimitConfig {
        auth: limit("auth", 10, 10, p),
        user: limit("user", 600, 100, p),
        ip: limit("ip", 600, 100, p),
    }
}

fn read_route_limit(s: &Sec<'_>, p: &mut Vec<Problem>) -> Limit {
    s.only_keys(&["per_minute", "burst"], p);
    let per_minute = s.int("per_minute", 60, 0, 1_000_000, p) as u32;
    Limit {
        per_minute,
        burst: s.int("burst", u64::from(per_minute.max(1)), 1, 1_000_000, p) as u32,
    }
}

fn read_log(s: &Sec<'_>, p: &mut Vec<Problem>) -> LogConfig {
    s.only_keys(&["format", "level"], p);
    let format = match s.string("format", "text", p).as_str() {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        other => {
            p.push(s.problem("format", format!("{other:?}"), "use \"json\" or \"text\""));
            LogFormat::Text
        }
    };
    let level = s.string("level", "info", p);
    if !matches!(
        level.as_str(),
        "error" | "warn" | "info" | "debug" | "trace"
    ) {
        p.push(s.problem(
            "level",
            format!("{level:?}"),
            "use error, warn, info, debug or trace",
        ));
    }
    LogConfig { format, level }
}

fn read_store(s: &Sec<'_>, p: &mut Vec<Problem>) -> StoreConfig {
    s.only_keys(&["url", "busy_timeout_ms", "max_connections"], p);
    let url = s.string("url", "sqlite://authgate.db", p);
    if crate::store::Backend::of_url(&url).is_none() {
        p.push(s.problem(
            "url",
            format!("{:?}", redact_url(&url)),
            "use \"sqlite://authgate.db\" (embedded, one instance) or \"postgres://user:pass@host/db\" (several instances)",
        ));
    }
    StoreConfig {
        url,
        busy_timeout_ms: s.int("busy_timeout_ms", 2000, 10, 60_000, p),
        max_connections: s.int("max_connections", 8, 1, 512, p) as u32,
    }
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

const KAKAO_AUTHORIZE_URL: &str = "https://kauth.kakao.com/oauth/authorize";
const KAKAO_TOKEN_URL: &str = "https://kauth.kakao.com/oauth/token";
const KAKAO_USERINFO_URL: &str = "https://kapi.kakao.com/v2/user/me";

fn read_kakao(s: &Sec<'_>, env: EnvLookup<'_>, p: &mut Vec<Problem>) -> Option<KakaoConfig> {
    s.only_keys(
        &[
            "client_id",
            "client_secret",
            "redirect_uri",
            "scopes",
            "authorize_url",
            "token_url",
            "userinfo_url",
            "pkce",
            "timeout_ms",
        ],
        p,
    );
    let client_id = env_or(env, "KAKAO_CLIENT_ID", || s.string("client_id", "", p));
    let client_secret = env_or(env, "KAKAO_CLIENT_SECRET", || {
        s.string("client_secret", "", p)
    });
    let redirect_uri = env_or(env, "KAKAO_REDIRECT_URI", || {
        s.string("redirect_uri", "", p)
    });
    let scopes = s.strings(
        "scopes",
        &["profile_nickname", "profile_image", "account_email"],
        p,
    );
    let url_key = |key: &str, default: &str, p: &mut Vec<Problem>| {
        let v = s.string(key, default, p);
        match url::Url::parse(&v) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => p.push(s.problem(
                key,
                format!("{v:?}"),
                format!("must be an absolute http(s) URL, default {default:?}"),
            )),
        }
        v
    };
    let authorize_url = url_key("authorize_url", KAKAO_AUTHORIZE_URL, p);
    let token_url = url_key("token_url", KAKAO_TOKEN_URL, p);
    let userinfo_url = url_key("userinfo_url", KAKAO_USERINFO_URL, p);
    let pkce = s.bool("pkce", true, p);
    let timeout_ms = s.int("timeout_ms", 5000, 100, 60_000, p);
    if client_id.is_empty() {
        return None;
    }
    if url::Url::parse(&redirect_uri)
        .map(|u| !matches!(u.scheme(), "http" | "https"))
        .unwrap_or(true)
    {
        p.push(s.problem(
            "redirect_uri",
            format!("{redirect_uri:?}"),
            "set the redirect URI registered at Kakao, e.g. \"https://app.example/api/auth/kakao/callback\" (env KAKAO_REDIRECT_URI)",
        ));
    }
    Some(KakaoConfig {
        client_id,
        client_secret,
        redirect_uri,
        scopes,
        authorize_url,
        token_url,
        userinfo_url,
        pkce,
        timeout_ms,
    })
}

fn read_auth(s: &Sec<'_>, p: &mut Vec<Problem>) -> AuthConfig {
    s.only_keys(
        &[
            "prefix",
            "require_state",
            "allowed_redirect_origins",
            "state_ttl_seconds",
            "refresh_reuse_grace_seconds",
        ],
        p,
    );
    let prefix = s.string("prefix", "/api/auth", p);
    if !is_valid_prefix(&prefix) || prefix == "/" {
        p.push(s.problem(
            "prefix",
            format!("{prefix:?}"),
            "must be an absolute path without a trailing slash, such as \"/api/auth\"",
        ));
    }
    let require_state = s.bool("require_state", true, p);
    let allowed_redirect_origins = s
        .strings("allowed_redirect_origins", &[], p)
        .into_iter()
        .filter(|o| {
            let ok = url::Url::parse(o).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.path() == "/" && !o.ends_with('/')
                    && u.query().is_none()
            });
            if !ok {
                p.push(s.problem(
                    "allowed_redirect_origins",
                    format!("{o:?}"),
                    "each entry must be an origin like \"https://app.example\" (scheme, host, optional port; no path)",
                ));
            }
            ok
        })
        .collect();
    let state_ttl_seconds = s.int("state_ttl_seconds", 600, 30, 3600, p);
    AuthConfig {
        prefix,
        require_state,
        allowed_redirect_origins,
        state_ttl_seconds,
        refresh_reuse_grace_seconds: s.int("refresh_reuse_grace_seconds", 10, 0, 60, p),
    }
}

fn read_upstream(s: &Sec<'_>, p: &mut Vec<Problem>) -> UpstreamConfig {
    s.only_keys(
        &[
            "name",
            "addrs",
            "health_check_path",
            "health_check_interval_ms",
            "connect_timeout_ms",
            "read_timeout_ms",
        ],
        p,
    );
    let name = s.nonempty_string("name", "", p);
    let addrs: Vec<SocketAddr> = s
        .strings("addrs", &[], p)
        .into_iter()
        .filter_map(|a| {
            resolve_addr(&a)
                .map_err(|fix| p.push(s.problem("addrs", format!("{a:?}"), fix)))
                .ok()
        })
        .collect();
    if addrs.is_empty()
        && s.t
            .get("addrs")
            .is_some_and(|v| v.as_array().is_some_and(|a| a.is_empty()))
    {
        p.push(s.problem("addrs", "[]", "list at least one backend as \"host:port\""));
    } else if !s.t.contains_key("addrs") {
        p.push(s.problem(
            "addrs",
            "(missing)",
            "list at least one backend as \"host:port\"",
        ));
    }
    let health_check_path = s.string("health_check_path", "", p);
    if !health_check_path.is_empty() && !health_check_path.starts_with('/') {
        p.push(s.problem(
            "health_check_path",
            format!("{health_check_path:?}"),
            "use an absolute path such as \"/healthz\", or \"\" for a TCP check",
        ));
    }
    UpstreamConfig {
        name,
        addrs,
        health_check_path: (!health_check_path.is_empty()).then_some(health_check_path),
        health_check_interval_ms: s.int("health_check_interval_ms", 2000, 100, 3_600_000, p),
        connect_timeout_ms: s.int("connect_timeout_ms", 1000, 1, 600_000, p),
        read_timeout_ms: s.int("read_timeout_ms", 30_000, 1, 3_600_000, p),
    }
}

/// Resolves once at start-up: Pingora's peers must not resolve DNS on the request path.
fn resolve_addr(a: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = a.parse::<SocketAddr>() {
        return Ok(addr);
    }
    match a.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| format!("{a} resolves to no address")),
        Err(e) => Err(format!("must be \"host:port\" that resolves ({e})")),
    }
}

fn read_route(s: &Sec<'_>, p: &mut Vec<Problem>) -> RouteConfig {
    s.only_keys(
        &[
            "name",
            "path_prefix",
            "host",
            "methods",
            "case_sensitive",
            "upstream",
            "auth",
            "on_unauthenticated",
            "rate_limit",
        ],
        p,
    );
    let name = s.nonempty_string("name", "", p);
    let path_prefix = s.string("path_prefix", "/", p);
    if !is_valid_prefix(&path_prefix) {
        p.push(s.problem(
            "path_prefix",
            format!("{path_prefix:?}"),
            "must start with '/', have no trailing '/' (except \"/\" itself), no empty, '.' or '..' segments, \
             and only letters, digits and - . _ ~ ! $ & ' ( ) * + , = : @",
        ));
    }
    let host = crate::routes::normalize_route_host(&s.string("host", "", p));
    if !host.is_empty()
        && (host.contains(':') || crate::routes::check_host(host.as_bytes()).is_err())
    {
        p.push(s.problem(
            "host",
            format!("{host:?}"),
            "use a bare host name without scheme or port, or \"\"",
        ));
    }
    let methods: Vec<String> = s
        .strings("methods", &[], p)
        .into_iter()
        .map(|m| {
            let up = m.to_ascii_uppercase();
            if http::Method::from_bytes(up.as_bytes()).is_err() {
                p.push(s.problem(
                    "methods",
                    format!("{m:?}"),
                    "use HTTP method names such as \"GET\"",
                ));
            }
            up
        })
        .collect();
    let case_sensitive = s.bool("case_sensitive", false, p);
    let upstream = s.nonempty_string("upstream", "", p);
    let auth = match s.string("auth", "required", p).as_str() {
        "required" => AuthMode::Required,
        "public" => AuthMode::Public,
        "optional" => AuthMode::Optional,
        other => {
            p.push(s.problem(
                "auth",
                format!("{other:?}"),
                "use \"required\", \"public\" or \"optional\"",
            ));
            AuthMode::Required
        }
    };
    let on_unauthenticated = match s.string("on_unauthenticated", "401", p).as_str() {
        "401" => OnUnauthenticated::Status401,
        "redirect" => OnUnauthenticated::Redirect,
        other => {
            p.push(s.problem(
                "on_unauthenticated",
                format!("{other:?}"),
                "use \"401\" or \"redirect\"",
            ));
            OnUnauthenticated::Status401
        }
    };
    RouteConfig {
        name,
        path_prefix,
        host: (!host.is_empty()).then_some(host),
        methods,
        case_sensitive,
        upstream,
        auth,
        on_unauthenticated,
        rate_limit: s
            .t
            .contains_key("rate_limit")
            .then(|| read_route_limit(&s.table("rate_limit", p), p)),
    }
}

/// A prefix uses only characters that can never be percent-encoded in an accepted request path,
/// so matching the raw path against it is exact (see `routes::check_target`).
pub fn is_valid_prefix(prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    prefix.starts_with('/')
        && !prefix.ends_with('/')
        && prefix[1..]
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && prefix
            .bytes()
            .all(|b| b == b'/' || crate::routes::is_plain_path_byte(b))
}

fn cross_check(
    server: &ServerConfig,
    upstreams: &[UpstreamConfig],
    routes: &[RouteConfig],
    p: &mut Vec<Problem>,
) {
    let _ = server;
    let mut names = HashSet::new();
    for (i, u) in upstreams.iter().enumerate() {
        if !u.name.is_empty() && !names.insert(u.name.as_str()) {
            p.push(Problem {
                key: format!("upstreams[{i}].name"),
                value: format!("{:?}", u.name),
                fix: "upstream names must be unique".into(),
            });
        }
    }
    if routes.is_empty() {
        p.push(Problem {
            key: "routes".into(),
            value: "(none)".into(),
            fix: "add at least one [[routes]] table; without routes every request is 404".into(),
        });
    }
    let mut seen = std::collections::HashMap::new();
    let mut route_names = HashSet::new();
    for (i, r) in routes.iter().enumerate() {
        if !r.upstream.is_empty() && !names.contains(r.upstream.as_str()) {
            p.push(Problem {
                key: format!("routes[{i}].upstream"),
                value: format!("{:?}", r.upstream),
                fix: format!(
                    "name one of the [[upstreams]]: {}",
                    if names.is_empty() {
                        "(none defined)".to_string()
                    } else {
                        let mut n: Vec<_> = names.iter().copied().collect();
                        n.sort();
                        n.join(", ")
                    }
                ),
            });
        }
        // Prefixes are matched without case, so `/App` and `/app` on one host would be one route.
        let key = (r.host.clone(), r.path_prefix.to_ascii_lowercase());
        if let Some((j, other)) = seen.get(&key) {
            let fix = if *other == r.path_prefix {
                format!("routes[{j}] already has this host + path_prefix; merge them or change one")
            } else {
                format!(
                    "routes[{j}] has {other:?}, the same prefix but for case; prefixes are matched \
                     ignoring ASCII case (many upstreams serve both spellings alike), so merge \
                     the two routes"
                )
            };
            p.push(Problem {
                key: format!("routes[{i}].path_prefix"),
                value: format!(
                    "{:?} (host {:?})",
                    r.path_prefix,
                    r.host.as_deref().unwrap_or("")
                ),
                fix,
            });
        } else {
            seen.insert(key, (i, r.path_prefix.clone()));
        }
        if !r.name.is_empty() && !route_names.insert(r.name.as_str()) {
            p.push(Problem {
                key: format!("routes[{i}].name"),
                value: format!("{:?}", r.name),
                fix: "route names must be unique: they label metrics and logs".into(),
            });
        }
    }
}

fn env_or(env: EnvLookup<'_>, name: &str, file: impl FnOnce() -> String) -> String {
    // The file value is still read so its type is checked even when the env overrides it.
    let from_file = file();
    env(name).unwrap_or(from_file)
}

fn env_int(
    env: EnvLookup<'_>,
    name: &str,
    min: u64,
    max: u64,
    p: &mut Vec<Problem>,
) -> Option<u64> {
    let v = env(name)?;
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            p.push(Problem {
                key: format!("{name} (env)"),
                value: format!("{v:?}"),
                fix: format!("must be a whole number from {min} to {max}"),
            });
            None
        }
    }
}

/// A table being read, with the dotted path used in problems (`routes[2]`, `jwt`).
struct Sec<'t> {
    path: String,
    t: &'t Table,
}

static EMPTY: std::sync::LazyLock<Table> = std::sync::LazyLock::new(Table::new);

impl<'t> Sec<'t> {
    fn root(t: &'t Table) -> Self {
        Sec {
            path: String::new(),
            t,
        }
    }

    fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn problem(&self, key: &str, value: impl Into<String>, fix: impl Into<String>) -> Problem {
        Problem {
            key: self.key(key),
            value: value.into(),
            fix: fix.into(),
        }
    }

    fn only_keys(&self, known: &[&str], p: &mut Vec<Problem>) {
        for k in self.t.keys() {
            if !known.contains(&k.as_str()) {
                let hint = known
                    .iter()
                    .min_by_key(|c| edit_distance(c, k))
                    .filter(|c| edit_distance(c, k) <= 3)
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
                p.push(self.problem(
                    k,
                    render(&self.t[k]),
                    format!("unknown key{hint}; known keys here: {}", known.join(", ")),
                ));
            }
        }
    }

    fn table(&self, key: &str, p: &mut Vec<Problem>) -> Sec<'t> {
        let path = self.key(key);
        match self.t.get(key) {
            None => Sec { path, t: &EMPTY },
            Some(Value::Table(t)) => Sec { path, t },
            Some(v) => {
                p.push(self.problem(
                    key,
                    render(v),
                    format!("must be a table: write it as [{path}]"),
                ));
                Sec { path, t: &EMPTY }
            }
        }
    }

    fn array_of_tables(&self, key: &str, p: &mut Vec<Problem>) -> Vec<Sec<'t>> {
        match self.t.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| match v {
                    Value::Table(t) => Some(Sec {
                        path: format!("{}[{i}]", self.key(key)),
                        t,
                    }),
                    other => {
                        p.push(self.problem(
                            &format!("{key}[{i}]"),
                            render(other),
                            format!("must be a table: write each entry as [[{key}]]"),
                        ));
                        None
                    }
                })
                .collect(),
            Some(v) => {
                p.push(self.problem(
                    key,
                    render(v),
                    format!("must be a list of tables: write each as [[{key}]]"),
                ));
                Vec::new()
            }
        }
    }

    fn string(&self, key: &str, default: &str, p: &mut Vec<Problem>) -> String {
        match self.t.get(key) {
            None => default.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                p.push(self.problem(
                    key,
                    render(v),
                    format!("must be a string, e.g. {default:?}"),
                ));
                default.to_string()
            }
        }
    }

    fn nonempty_string(&self, key: &str, default: &str, p: &mut Vec<Problem>) -> String {
        let v = self.string(key, default, p);
        if v.is_empty() {
            let shown = if self.t.contains_key(key) {
                "\"\""
            } else {
                "(missing)"
            };
            p.push(self.problem(key, shown, "must be a non-empty string"));
        }
        v
    }

    fn int(&self, key: &str, default: u64, min: u64, max: u64, p: &mut Vec<Problem>) -> u64 {
        match self.t.get(key) {
            None => default,
            Some(Value::Integer(n))
                if (*n as i128) >= min as i128 && (*n as i128) <= max as i128 =>
            {
                *n as u64
            }
            Some(v) => {
                p.push(self.problem(
                    key,
                    render(v),
                    format!("must be a whole number from {min} to {max} (default {default})"),
                ));
                default
            }
        }
    }

    fn bool(&self, key: &str, default: bool, p: &mut Vec<Problem>) -> bool {
        match self.t.get(key) {
            None => default,
            Some(Value::Boolean(b)) => *b,
            Some(v) => {
                p.push(self.problem(
                    key,
                    render(v),
                    format!("must be true or false (default {default})"),
                ));
                default
            }
        }
    }

    fn strings(&self, key: &str, default: &[&str], p: &mut Vec<Problem>) -> Vec<String> {
        match self.t.get(key) {
            None => default.iter().map(|s| s.to_string()).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    other => {
                        p.push(self.problem(key, render(other), "every entry must be a string"));
                        None
                    }
                })
                .collect(),
            Some(v) => {
                p.push(self.problem(
                    key,
                    render(v),
                    "must be a list of strings, e.g. [\"a\", \"b\"]",
                ));
                Vec::new()
            }
        }
    }

    fn socket_addr(&self, key: &str, default: &str, p: &mut Vec<Problem>) -> SocketAddr {
        let v = self.string(key, default, p);
        v.parse().unwrap_or_else(|_| {
            p.push(self.problem(
                key,
                format!("{v:?}"),
                format!("must be \"ip:port\", e.g. {default:?}"),
            ));
            default.parse().expect("defaults are valid")
        })
    }
}

fn render(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!("{}…", &s[..s.floor_char_boundary(77)])
    } else {
        s
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<Config, Problems> {
        Config::parse(text, Path::new("."), &no_env)
    }

    fn minimal(extra: &str) -> String {
        format!(
            "[jwt]\nsecret = \"{SECRET}\"\n[[upstreams]]\nname = \"app\"\naddrs = [\"127.0.0.1:3000\"]\n\
             [[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\n{extra}"
        )
    }

    #[test]
    fn minimal_file_gets_documented_defaults() {
        let c = parse(&minimal("")).unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:8000".parse().unwrap());
        assert_eq!(c.server.admin_listen, "127.0.0.1:9091".parse().unwrap());
        assert_eq!(c.server.threads, 2);
        assert_eq!(c.server.grace_period_seconds, 10);
        assert!(c.server.trusted_proxies.is_empty());
        assert_eq!(
            (
                c.server.client_header_timeout_ms,
                c.server.keepalive_timeout_ms,
                c.server.max_connections,
                c.server.max_connections_per_ip
            ),
            (10_000, 60_000, 8192, 256)
        );
        assert_eq!(c.jwt.max_token_bytes, 8192);
        assert_eq!(c.jwt.algorithm, JwtAlgorithm::HS256);
        assert_eq!(
            (c.jwt.issuer.as_str(), c.jwt.audience.as_str()),
            ("authgate", "authgate")
        );
        assert_eq!(
            (
                c.jwt.access_ttl_minutes,
                c.jwt.refresh_ttl_days,
                c.jwt.leeway_seconds
            ),
            (30, 7, 30)
        );
        assert_eq!(c.identity.user_id, "X-User-Id");
        assert_eq!(c.identity.strip_prefix, "X-User-");
        assert_eq!(c.auth.login_path(), "/api/auth/kakao/login");
        let u = &c.upstreams[0];
        assert_eq!(
            (
                u.connect_timeout_ms,
                u.read_timeout_ms,
                u.health_check_path.clone()
            ),
            (1000, 30000, None)
        );
        let r = &c.routes[0];
        assert_eq!(
            (
                r.auth,
                r.on_unauthenticated,
                r.host.clone(),
                r.case_sensitive
            ),
            (
                AuthMode::Required,
                OnUnauthenticated::Status401,
                None,
                false
            )
        );
    }

    #[test]
    fn every_problem_is_reported_with_key_value_and_fix() {
        let text = r#"
            [server]
            listn = "0.0.0.0:1"
            threads = 0
            trusted_proxies = ["10.0.0.0/8", "nonsense"]
            [jwt]
            secret = "short"
            algorithm = "HS384"
            [[upstreams]]
            name = "app"
            addrs = ["not an address"]
            [[routes]]
            name = "a"
            path_prefix = "/api/../x"
            upstream = "missing"
            auth = "sometimes"
            [[routes]]
            name = "b"
            path_prefix = "/api"
            upstream = "app"
            [[routes]]
            name = "c"
            path_prefix = "/api"
            upstream = "app"
        "#;
        let problems = parse(text).err().unwrap().0;
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for expected in [
            "server.listn",
            "server.threads",
            "server.trusted_proxies",
            "jwt.algorithm",
            "upstreams[0].addrs",
            "routes[0].path_prefix",
            "routes[0].upstream",
            "routes[0].auth",
            "routes[2].path_prefix",
        ] {
            assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
        }
        let listn = problems.iter().find(|p| p.key == "server.listn").unwrap();
        assert!(listn.fix.contains("did you mean `listen`"), "{listn}");
        let threads = problems.iter().find(|p| p.key == "server.threads").unwrap();
        assert_eq!(threads.value, "0");
        assert!(threads.fix.contains("from 1 to 256"));
        let up = problems
            .iter()
            .find(|p| p.key == "routes[0].upstream")
            .unwrap();
        assert!(up.fix.contains("app"), "{up}");
    }

    #[test]
    fn weak_or_placeholder_secrets_are_refused_and_never_printed() {
        for secret in ["", "short", PLACEHOLDER_SECRET, SEED_PLACEHOLDER_SECRET] {
            let text = minimal("").replace(SECRET, secret);
            let problems = parse(&text).err().unwrap().0;
            let p = problems
                .iter()
                .find(|p| p.key == "jwt.secret")
                .expect("secret problem");
            if !secret.is_empty() {
                assert!(!p.to_string().contains(secret), "secret leaked: {p}");
            }
        }
    }

    #[test]
    fn seed_env_vars_override_the_file() {
        let env = |k: &str| match k {
            "JWT_SECRET_KEY" => Some("x".repeat(40)),
            "JWT_ACCESS_TOKEN_EXPIRE_MINUTES" => Some("5".into()),
            "JWT_REFRESH_TOKEN_EXPIRE_DAYS" => Some("14".into()),
            _ => None,
        };
        let text = minimal("").replace(SECRET, PLACEHOLDER_SECRET);
        let c = Config::parse(&text, Path::new("."), &env).unwrap();
        assert_eq!((c.jwt.access_ttl_minutes, c.jwt.refresh_ttl_days), (5, 14));
        let bad = |k: &str| (k == "JWT_ACCESS_TOKEN_EXPIRE_MINUTES").then(|| "soon".to_string());
        let problems = Config::parse(&minimal(""), Path::new("."), &bad)
            .err()
            .unwrap()
            .0;
        assert_eq!(problems[0].key, "JWT_ACCESS_TOKEN_EXPIRE_MINUTES (env)");
    }

    #[test]
    fn kakao_is_off_without_a_client_id_and_the_seed_env_turns_it_on() {
        let c = parse(&minimal("")).unwrap();
        assert!(c.kakao.is_none());
        assert_eq!(c.store.url, "sqlite://authgate.db");
        assert!(c.auth.require_state);
        let env = |k: &str| match k {
            "KAKAO_CLIENT_ID" => Some("rest-key".to_string()),
            "KAKAO_CLIENT_SECRET" => Some("s3cret".to_string()),
            "KAKAO_REDIRECT_URI" => Some("https://app.example/api/auth/kakao/callback".to_string()),
            _ => None,
        };
        let k = Config::parse(&minimal(""), Path::new("."), &env)
            .unwrap()
            .kakao
            .unwrap();
        assert_eq!(
            (k.client_id.as_str(), k.client_secret.as_str()),
            ("rest-key", "s3cret")
        );
        assert_eq!(
            k.scopes,
            ["profile_nickname", "profile_image", "account_email"]
        );
        assert_eq!(k.token_url, "https://kauth.kakao.com/oauth/token");
        assert!(k.pkce);
        let problems = parse(&minimal(
            "[kakao]\nclient_id = \"x\"\nredirect_uri = \"ftp://x\"\ntoken_url = \"not a url\"\npkce = \"yes\"\n\
             [store]\nurl = \"mysql://u:hunter2@db/x\"\n[auth]\nallowed_redirect_origins = [\"https://a.example/path\"]\n",
        ))
        .err()
        .unwrap()
        .0;
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "kakao.redirect_uri",
            "kakao.token_url",
            "kakao.pkce",
            "store.url",
            "auth.allowed_redirect_origins",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        assert!(
            !problems.iter().any(|p| p.to_string().contains("hunter2")),
            "password leaked"
        );
    }

    #[test]
    fn rate_limits_and_logs_have_defaults_and_per_route_overrides() {
        let c = parse(&minimal("[routes.rate_limit]\nper_minute = 5\nburst = 2\n")).unwrap();
        assert_eq!(
            c.rate_limit.auth,
            Limit {
                per_minute: 10,
                burst: 10
            }
        );
        assert_eq!(
            c.rate_limit.user,
            Limit {
                per_minute: 600,
                burst: 100
            }
        );
        assert_eq!(
            c.rate_limit.ip,
            Limit {
                per_minute: 600,
                burst: 100
            }
        );
        assert_eq!(
            c.routes[0].rate_limit,
            Some(Limit {
                per_minute: 5,
                burst: 2
            })
        );
        assert_eq!(
            (c.log.format, c.log.level.as_str()),
            (LogFormat::Text, "info")
        );
        let problems = parse(&minimal(
            "[routes.rate_limit]\nper_min = 5\n[rate_limit]\nauth_burst = 0\n[log]\nformat = \"xml\"\nlevel = \"loud\"\n",
        ))
        .err()
        .unwrap()
        .0;
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "routes[0].rate_limit.per_min",
            "rate_limit.auth_burst",
            "log.format",
            "log.level",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
    }

    #[test]
    fn duplicate_host_and_prefix_is_refused_but_different_hosts_are_fine() {
        let two = |h1: &str, h2: &str| {
            minimal(&format!(
                "[[routes]]\nname=\"x\"\npath_prefix=\"/x\"\nhost=\"{h1}\"\nupstream=\"app\"\n\
                 [[routes]]\nname=\"y\"\npath_prefix=\"/x\"\nhost=\"{h2}\"\nupstream=\"app\"\n"
            ))
        };
        assert!(parse(&two("a.example", "b.example")).is_ok());
        assert!(parse(&two("a.example", "A.example")).is_err());
        assert!(parse(&two("a.example", "a.example.")).is_err());
    }

    #[test]
    fn prefixes_equal_but_for_case_are_one_route_and_refused() {
        let two = |p1: &str, p2: &str, extra: &str| {
            minimal(&format!(
                "[[routes]]\nname=\"x\"\npath_prefix=\"{p1}\"\nupstream=\"app\"\n{extra}\n\
                 [[routes]]\nname=\"y\"\npath_prefix=\"{p2}\"\nupstream=\"app\"\n"
            ))
        };
        let problems = parse(&two("/App", "/app", "")).err().unwrap().0;
        let p = problems
            .iter()
            .find(|p| p.key == "routes[2].path_prefix")
            .unwrap_or_else(|| panic!("{problems:?}"));
        assert!(p.fix.contains("but for case"), "{p}");
        assert!(p.fix.contains("routes[1]"), "{p}");
        // Opting one route out of case-insensitive matching does not make them two routes.
        assert!(parse(&two("/App", "/app", "case_sensitive = true")).is_err());
        assert!(parse(&two("/app", "/apps", "")).is_ok());
    }

    #[test]
    fn prefixes_must_be_plain() {
        for ok in ["/", "/api", "/api/v1", "/a-b_c~d"] {
            assert!(is_valid_prefix(ok), "{ok}");
        }
        for bad in [
            "", "api", "/api/", "//", "/a//b", "/a/./b", "/a/..", "/a%2fb", "/a;b", "/a b", "/a\\b",
        ] {
            assert!(!is_valid_prefix(bad), "{bad}");
        }
    }

    #[test]
    fn syntax_errors_are_one_clear_problem() {
        let problems = parse("[server\nlisten = 1").err().unwrap().0;
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "(syntax)");
    }
}
