//! `[identity]`, `[auth]` and `[rate_limit]`: injected header names, the login routes and sessions, limits.

use super::reader::{env_or, Sec};
use super::routes::is_valid_prefix;
use super::{EnvLookup, Problem};

/// One rate: a sustained rate per minute and the burst allowed on top; `per_minute = 0` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub per_minute: u32,
    pub burst: u32,
}

#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// Logins (the login page, login URLs, callbacks), per client IP (the seed's middleware: 10
    /// a minute).
    pub auth: Limit,
    /// Refresh, profile and logout, per client IP: a flood guard sized for carrier NAT.
    pub session: Limit,
    /// Refreshes of one refresh-token family (one session).
    pub refresh_family: Limit,
    /// Kakao's webhooks, per client IP.
    pub webhook: Limit,
    /// Authenticated requests, per verified `sub`.
    pub user: Limit,
    /// Anonymous requests (public routes, and refused tokens), per client IP.
    pub ip: Limit,
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub user_id: String,
    pub email: String,
    pub nickname: String,
    pub provider: String,
    pub strip_prefix: String,
    /// Send upstreams a signed identity assertion (a JWT; routes may override).
    pub assertion: bool,
    /// Its header; always stripped from clients.
    pub assertion_header: String,
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
    /// When set, forward-auth questions must carry it in `X-Authgate-Forward-Auth-Secret`: the
    /// edge sets it only on its own questions, so a client that reaches the endpoint through
    /// the edge (a trusted peer) is still refused.
    pub forward_auth_secret: String,
}

/// Names the identity headers may not take.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "cache-control",
    "connection",
    "content-length",
    "content-type",
    "cookie",
    "host",
    "keep-alive",
    "location",
    "proxy-authorization",
    "set-cookie",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "www-authenticate",
    "x-request-id",
    "x-real-ip",
    "forwarded",
];

pub(super) fn read_identity(s: &Sec<'_>, p: &mut Vec<Problem>) -> IdentityConfig {
    s.only_keys(
        &[
            "user_id",
            "email",
            "nickname",
            "provider",
            "strip_prefix",
            "assertion",
            "assertion_header",
        ],
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
    let assertion_header = header("assertion_header", "X-Authgate-Assertion", p);
    let assertion = s.bool("assertion", false, p);
    // They are also written on forward-auth answers: never a header with another meaning there,
    // and never one name for two things.
    let mut seen = std::collections::HashSet::new();
    for (key, name) in [
        ("user_id", &user_id),
        ("email", &email),
        ("nickname", &nickname),
        ("provider", &provider),
        ("assertion_header", &assertion_header),
    ] {
        let lower = name.to_ascii_lowercase().replace('_', "-");
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-forwarded-") {
            p.push(s.problem(
                key,
                format!("{name:?}"),
                "a header with its own meaning in HTTP or to authgate: use a name of its own such as \"X-User-Id\"",
            ));
        } else if !seen.insert(lower) {
            p.push(s.problem(
                key,
                format!("{name:?}"),
                "each identity header needs a name of its own",
            ));
        }
    }
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
        assertion,
        assertion_header,
    }
}

pub(super) fn read_rate_limit(s: &Sec<'_>, p: &mut Vec<Problem>) -> RateLimitConfig {
    s.only_keys(
        &[
            "auth_per_minute",
            "auth_burst",
            "session_per_minute",
            "session_burst",
            "refresh_family_per_minute",
            "refresh_family_burst",
            "webhook_per_minute",
            "webhook_burst",
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
        // A carrier NAT address carries thousands of users, each refreshing once per access
        // lifetime (30 minutes by default): 3,000 a minute is ~90,000 active sessions behind one
        // address, while one address flooding still gets no more than 50 a second.
        session: limit("session", 3000, 600, p),
        // Five tabs at once, a retry or two: more is a bug or a stolen token.
        refresh_family: limit("refresh_family", 6, 10, p),
        // Kakao sends bursts from a few addresses.
        webhook: limit("webhook", 600, 300, p),
        user: limit("user", 600, 100, p),
        ip: limit("ip", 600, 100, p),
    }
}

pub(super) fn read_route_limit(s: &Sec<'_>, p: &mut Vec<Problem>) -> Limit {
    s.only_keys(&["per_minute", "burst"], p);
    let per_minute = s.int("per_minute", 60, 0, 1_000_000, p) as u32;
    Limit {
        per_minute,
        burst: s.int("burst", u64::from(per_minute.max(1)), 1, 1_000_000, p) as u32,
    }
}

pub(super) fn read_auth(s: &Sec<'_>, env: EnvLookup<'_>, p: &mut Vec<Problem>) -> AuthConfig {
    s.only_keys(
        &[
            "prefix",
            "require_state",
            "allowed_redirect_origins",
            "state_ttl_seconds",
            "refresh_reuse_grace_seconds",
            "forward_auth_secret",
        ],
        p,
    );
    let forward_auth_secret = env_or(env, "AUTHGATE_FORWARD_AUTH_SECRET", || {
        s.string("forward_auth_secret", "", p)
    });
    if !forward_auth_secret.is_empty()
        && (forward_auth_secret.len() < 16
            || http::HeaderValue::from_str(&forward_auth_secret).is_err())
    {
        p.push(s.problem(
            "forward_auth_secret",
            "(set)",
            "use at least 16 printable characters, e.g. `openssl rand -hex 24`",
        ));
    }
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
        forward_auth_secret,
    }
}
