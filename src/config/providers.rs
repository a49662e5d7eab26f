//! The identity providers: `[kakao]` (the seed's section and environment variables, on when
//! `client_id` is set) and `[[providers]]` (any number of OpenID Connect issuers, Naver, or Kakao
//! declared the same way).
//!
//! ```toml
//! [[providers]]
//! id = "google"                # [a-z0-9-]{1,32}: paths, the token's `provider` claim, metric labels
//! kind = "oidc"                # "oidc" | "naver" | "kakao"
//! display_name = "Google"      # the login page's button
//! issuer = "https://accounts.google.com"
//! client_id = "…"
//! client_secret_env = "GOOGLE_CLIENT_SECRET"   # or client_secret = "…"
//! redirect_uri = "https://app.example/api/auth/google/callback"
//! scopes = ["openid", "email", "profile"]
//! ```

use super::reader::{env_or, value_or_env, Sec};
use super::{EnvLookup, Problem};

/// Kakao Login (`kind = "kakao"`, or the `[kakao]` section).
#[derive(Debug, Clone)]
pub struct KakaoConfig {
    pub id: String,
    pub display_name: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub authorize_url: String,
    pub token_url: String,
    pub userinfo_url: String,
    pub pkce: bool,
    pub timeout_ms: u64,
    /// Kakao's OpenID Connect mode: `openid` is added to the scopes and the `id_token` is
    /// verified as well as the user-info call made.
    pub oidc: bool,
    pub issuer: String,
    pub jwks_url: String,
    /// The app's Primary Admin Key: Kakao's unlink callback authenticates with it
    /// (`Authorization: KakaoAK …`). Empty: the unlink route is off.
    pub admin_key: String,
    /// The app's id: when set, an unlink callback must name it.
    pub app_id: String,
}

/// Any OpenID Connect issuer (`kind = "oidc"`).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub id: String,
    pub display_name: String,
    /// Exactly as the issuer writes it in its discovery document and `iss`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    /// Overrides of what discovery says; with all four set, no discovery is made.
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub userinfo_url: Option<String>,
    pub jwks_url: Option<String>,
    pub pkce: bool,
    pub timeout_ms: u64,
}

/// Naver Login (`kind = "naver"`): plain OAuth 2.0 and Naver's profile API.
#[derive(Debug, Clone)]
pub struct NaverConfig {
    pub id: String,
    pub display_name: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    pub authorize_url: String,
    pub token_url: String,
    pub userinfo_url: String,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone)]
pub enum ProviderConfig {
    Kakao(KakaoConfig),
    Oidc(OidcConfig),
    Naver(NaverConfig),
}

impl ProviderConfig {
    pub fn id(&self) -> &str {
        match self {
            ProviderConfig::Kakao(c) => &c.id,
            ProviderConfig::Oidc(c) => &c.id,
            ProviderConfig::Naver(c) => &c.id,
        }
    }

    pub fn display_name(&self) -> &str {
        match self {
            ProviderConfig::Kakao(c) => &c.display_name,
            ProviderConfig::Oidc(c) => &c.display_name,
            ProviderConfig::Naver(c) => &c.display_name,
        }
    }

    pub fn redirect_uri(&self) -> &str {
        match self {
            ProviderConfig::Kakao(c) => &c.redirect_uri,
            ProviderConfig::Oidc(c) => &c.redirect_uri,
            ProviderConfig::Naver(c) => &c.redirect_uri,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ProviderConfig::Kakao(_) => "kakao",
            ProviderConfig::Oidc(_) => "oidc",
            ProviderConfig::Naver(_) => "naver",
        }
    }
}

const KAKAO_AUTHORIZE_URL: &str = "https://kauth.kakao.com/oauth/authorize";
const KAKAO_TOKEN_URL: &str = "https://kauth.kakao.com/oauth/token";
const KAKAO_USERINFO_URL: &str = "https://kapi.kakao.com/v2/user/me";
const KAKAO_ISSUER: &str = "https://kauth.kakao.com";
const KAKAO_JWKS_URL: &str = "https://kauth.kakao.com/.well-known/jwks.json";
const NAVER_AUTHORIZE_URL: &str = "https://nid.naver.com/oauth2.0/authorize";
const NAVER_TOKEN_URL: &str = "https://nid.naver.com/oauth2.0/token";
const NAVER_USERINFO_URL: &str = "https://openapi.naver.com/v1/nid/me";

/// What a provider endpoint must be: see [`is_provider_url`].
const PROVIDER_URL_RULE: &str =
    "must be an https URL (plain http only to a loopback address, as for a local fake)";

/// A provider endpoint ([`is_provider_url`]), or a problem naming the key.
fn url_key(s: &Sec<'_>, key: &str, default: &str, p: &mut Vec<Problem>) -> String {
    let v = s.string(key, default, p);
    if !is_provider_url(&v) {
        p.push(s.problem(
            key,
            format!("{v:?}"),
            if default.is_empty() {
                PROVIDER_URL_RULE.to_string()
            } else {
                format!("{PROVIDER_URL_RULE}; default {default:?}")
            },
        ));
    }
    v
}

/// An https URL, or plain http to a loopback address. A provider's endpoints carry the client
/// secret, codes and tokens, and its keys decide whose `id_token` we believe: anyone on the path
/// of a plain-http call could read or replace them.
pub fn is_provider_url(v: &str) -> bool {
    let Ok(u) = url::Url::parse(v) else {
        return false;
    };
    match (u.scheme(), u.host()) {
        ("https", Some(_)) => true,
        ("http", Some(url::Host::Ipv4(ip))) => ip.is_loopback(),
        ("http", Some(url::Host::Ipv6(ip))) => ip.is_loopback(),
        ("http", Some(url::Host::Domain(d))) => d.eq_ignore_ascii_case("localhost"),
        _ => false,
    }
}

fn optional_url(s: &Sec<'_>, key: &str, p: &mut Vec<Problem>) -> Option<String> {
    s.t.contains_key(key).then(|| url_key(s, key, "", p))
}

fn is_http_url(v: &str) -> bool {
    url::Url::parse(v).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

fn check_redirect_uri(s: &Sec<'_>, redirect_uri: &str, example: &str, p: &mut Vec<Problem>) {
    if !is_http_url(redirect_uri) {
        p.push(s.problem(
            "redirect_uri",
            format!("{redirect_uri:?}"),
            format!("set the redirect URI registered at the provider, e.g. {example:?}"),
        ));
    }
}

const KAKAO_KEYS: &[&str] = &[
    "client_id",
    "client_secret",
    "redirect_uri",
    "scopes",
    "authorize_url",
    "token_url",
    "userinfo_url",
    "pkce",
    "timeout_ms",
    "oidc",
    "issuer",
    "jwks_url",
    "admin_key",
    "app_id",
];

/// `[kakao]`: `None` while `client_id` is empty (the seed's environment variables override).
pub(super) fn read_kakao(
    s: &Sec<'_>,
    env: EnvLookup<'_>,
    p: &mut Vec<Problem>,
) -> Option<KakaoConfig> {
    let known: Vec<&str> = KAKAO_KEYS.iter().copied().chain(["display_name"]).collect();
    s.only_keys(&known, p);
    let display_name = s.string("display_name", "Kakao", p);
    let client_id = env_or(env, "KAKAO_CLIENT_ID", || s.string("client_id", "", p));
    let client_secret = env_or(env, "KAKAO_CLIENT_SECRET", || {
        s.string("client_secret", "", p)
    });
    let redirect_uri = env_or(env, "KAKAO_REDIRECT_URI", || {
        s.string("redirect_uri", "", p)
    });
    let admin_key = env_or(env, "KAKAO_ADMIN_KEY", || s.string("admin_key", "", p));
    let kakao = kakao_fields(
        s,
        "kakao",
        &display_name,
        Secrets {
            client_id,
            client_secret,
            redirect_uri,
            admin_key,
        },
        p,
    );
    kakao.filter(|k| !k.client_id.is_empty())
}

/// What `[kakao]` and `[[providers]]` read each their own way (environment variables).
struct Secrets {
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    admin_key: String,
}

/// The keys a Kakao provider shares between `[kakao]` and `[[providers]]`.
fn kakao_fields(
    s: &Sec<'_>,
    id: &str,
    display_name: &str,
    secrets: Secrets,
    p: &mut Vec<Problem>,
) -> Option<KakaoConfig> {
    let Secrets {
        client_id,
        client_secret,
        redirect_uri,
        admin_key,
    } = secrets;
    if !admin_key.is_empty() && admin_key.len() < 16 {
        p.push(s.problem(
            "admin_key",
            "(set)",
            "use the app's Primary Admin Key from Kakao Developers (App Keys): 32 characters",
        ));
    }
    let app_id = s.string("app_id", "", p);
    let oidc = s.bool("oidc", false, p);
    let mut scopes = s.strings(
        "scopes",
        &["profile_nickname", "profile_image", "account_email"],
        p,
    );
    if oidc && !scopes.iter().any(|sc| sc == "openid") {
        scopes.insert(0, "openid".into());
    }
    let authorize_url = url_key(s, "authorize_url", KAKAO_AUTHORIZE_URL, p);
    let token_url = url_key(s, "token_url", KAKAO_TOKEN_URL, p);
    let userinfo_url = url_key(s, "userinfo_url", KAKAO_USERINFO_URL, p);
    let issuer = url_key(s, "issuer", KAKAO_ISSUER, p);
    let jwks_url = url_key(s, "jwks_url", KAKAO_JWKS_URL, p);
    let pkce = s.bool("pkce", true, p);
    let timeout_ms = s.int("timeout_ms", 5000, 100, 60_000, p);
    if !client_id.is_empty() {
        check_redirect_uri(
            s,
            &redirect_uri,
            &format!("https://app.example/api/auth/{id}/callback"),
            p,
        );
    }
    Some(KakaoConfig {
        id: id.to_string(),
        display_name: display_name.to_string(),
        client_id,
        client_secret,
        redirect_uri,
        scopes,
        authorize_url,
        token_url,
        userinfo_url,
        pkce,
        timeout_ms,
        oidc,
        issuer,
        jwks_url,
        admin_key,
        app_id,
    })
}

/// One `[[providers]]` table.
pub(super) fn read_provider(
    s: &Sec<'_>,
    env: EnvLookup<'_>,
    p: &mut Vec<Problem>,
) -> Option<ProviderConfig> {
    let kind = s.string("kind", "", p);
    let mut known: Vec<&str> = vec!["id", "kind", "display_name", "client_secret_env"];
    match kind.as_str() {
        "kakao" => known.extend(KAKAO_KEYS.iter().chain(&["admin_key_env"])),
        "oidc" => known.extend([
            "issuer",
            "client_id",
            "client_secret",
            "redirect_uri",
            "scopes",
            "authorize_url",
            "token_url",
            "userinfo_url",
            "jwks_url",
            "pkce",
            "timeout_ms",
        ]),
        "naver" => known.extend([
            "client_id",
            "client_secret",
            "redirect_uri",
            "authorize_url",
            "token_url",
            "userinfo_url",
            "timeout_ms",
        ]),
        other => {
            p.push(s.problem(
                "kind",
                format!("{other:?}"),
                "use \"oidc\" (any OpenID Connect issuer), \"naver\" or \"kakao\"",
            ));
            return None;
        }
    }
    s.only_keys(&known, p);
    let id = s.nonempty_string("id", "", p);
    if !id.is_empty() && !is_provider_id(&id) {
        p.push(s.problem(
            "id",
            format!("{id:?}"),
            "use 1 to 32 of a-z, 0-9 and '-': it appears in paths, tokens and metric labels",
        ));
    }
    let display_name = s.string("display_name", &id, p);
    let client_id = s.nonempty_string("client_id", "", p);
    let client_secret = value_or_env(s, "client_secret", env, p);
    let redirect_uri = s.string("redirect_uri", "", p);
    let timeout_ms = s.int("timeout_ms", 5000, 100, 60_000, p);
    let example = format!("https://app.example/api/auth/{id}/callback");
    match kind.as_str() {
        "kakao" => {
            let admin_key = value_or_env(s, "admin_key", env, p);
            kakao_fields(
                s,
                &id,
                &display_name,
                Secrets {
                    client_id,
                    client_secret,
                    redirect_uri,
                    admin_key,
                },
                p,
            )
            .map(ProviderConfig::Kakao)
        }
        "naver" => {
            check_redirect_uri(s, &redirect_uri, &example, p);
            if client_secret.is_empty() {
                p.push(s.problem(
                    "client_secret",
                    "\"\"",
                    "Naver needs the client secret (or client_secret_env)",
                ));
            }
            Some(ProviderConfig::Naver(NaverConfig {
                authorize_url: url_key(s, "authorize_url", NAVER_AUTHORIZE_URL, p),
                token_url: url_key(s, "token_url", NAVER_TOKEN_URL, p),
                userinfo_url: url_key(s, "userinfo_url", NAVER_USERINFO_URL, p),
                id,
                display_name,
                client_id,
                client_secret,
                redirect_uri,
                timeout_ms,
            }))
        }
        _ => {
            check_redirect_uri(s, &redirect_uri, &example, p);
            let issuer = s.string("issuer", "", p);
            let authorize_url = optional_url(s, "authorize_url", p);
            let token_url = optional_url(s, "token_url", p);
            let userinfo_url = optional_url(s, "userinfo_url", p);
            let jwks_url = optional_url(s, "jwks_url", p);
            if !is_provider_url(&issuer) {
                p.push(s.problem(
                    "issuer",
                    format!("{issuer:?}"),
                    "set the issuer URL exactly as the provider writes it (its `iss`), e.g. \"https://accounts.google.com\"; it must be https (plain http only on loopback)",
                ));
            }
            let scopes = s.strings("scopes", &["openid", "email", "profile"], p);
            if !scopes.iter().any(|sc| sc == "openid") {
                p.push(s.problem(
                    "scopes",
                    format!("{scopes:?}"),
                    "OpenID Connect needs the \"openid\" scope",
                ));
            }
            let pkce = s.bool("pkce", true, p);
            if !pkce && client_secret.is_empty() {
                p.push(s.problem(
                    "pkce",
                    "false",
                    "a client without a secret needs PKCE, or anyone who sees a code can redeem it: keep pkce = true or set the client secret",
                ));
            }
            Some(ProviderConfig::Oidc(OidcConfig {
                id,
                display_name,
                issuer,
                client_id,
                client_secret,
                redirect_uri,
                scopes,
                authorize_url,
                token_url,
                userinfo_url,
                jwks_url,
                pkce,
                timeout_ms,
            }))
        }
    }
}

/// `[a-z0-9-]{1,32}`, not starting or ending with '-'.
pub fn is_provider_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

/// Whether `issuer` is Kakao's: Kakao's own issuer, or the issuer a Kakao entry declares (a
/// local fake's). An OpenID Connect entry on it logs in Kakao users, keyed by their Kakao user
/// id like a `kind = "kakao"` entry's.
pub fn is_kakao_issuer(issuer: &str, providers: &[ProviderConfig]) -> bool {
    let issuer = issuer.trim_end_matches('/');
    issuer == KAKAO_ISSUER
        || providers.iter().any(|p| {
            matches!(p, ProviderConfig::Kakao(k) if k.issuer.trim_end_matches('/') == issuer)
        })
}
