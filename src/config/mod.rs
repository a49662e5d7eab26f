//! The configuration: `config.toml` plus the seed's environment variables, read into a validated
//! [`Config`].
//!
//! This module owns the file format and every default. It reads the TOML key by key rather than
//! through one `serde` derive so that `authgate check` can report *every* problem at once, each
//! naming the key, the bad value and the fix, instead of stopping at the first. Unknown keys are
//! problems too. Nothing here touches the network or Pingora; keys named by the file are read and
//! parsed here so a bad key file is a config problem, not a crash at the first request.
//!
//! One file a section: `server.rs` (`[server]`, `[log]`, `[store]`), `jwt.rs`, `auth.rs`
//! (`[identity]`, `[auth]`, `[rate_limit]`), `providers.rs` (`[kakao]`, `[[providers]]`),
//! `routes.rs` (`[[upstreams]]`, `[[routes]]`); `reader.rs` is the key-by-key reader they share.
//! This file: the whole [`Config`], its cross-section checks, and the tests of the file format.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use toml::Table;

mod admin;
mod auth;
mod jwt;
mod providers;
mod reader;
mod routes;
mod server;
mod tls;

pub use admin::*;
pub use auth::*;
pub use jwt::*;
pub use providers::*;
pub use routes::*;
pub use server::*;
pub use tls::*;

use reader::Sec;

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
    /// Every identity provider, `[kakao]` first when its `client_id` is set, then
    /// `[[providers]]` in file order; empty: login is off, tokens are only verified.
    pub providers: Vec<ProviderConfig>,
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    pub rate_limit: RateLimitConfig,
    pub log: LogConfig,
    /// Who may act on the admin listener.
    pub admin: AdminConfig,
}

/// Reads environment overrides; a closure so tests need not touch the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// What `authgate check` says about a valid configuration beyond its problems.
#[derive(Debug, Default)]
pub struct Findings {
    /// Refused by `check` although the gateway still starts with them (a failed renewal must
    /// not keep it from restarting): served and upstream client certificates that have expired
    /// or are not valid yet.
    pub refused: Vec<String>,
    /// Served certificates that expire within 14 days, upstreams whose certificates are not
    /// verified.
    pub warnings: Vec<String>,
}

/// Reads each certificate file once more to judge its dates (`authgate check`).
pub fn findings(c: &Config) -> Findings {
    let (mut refused, mut warnings) = c
        .server
        .tls
        .as_ref()
        .map(crate::tls::listener::expiry_findings)
        .unwrap_or_default();
    let now = crate::tokens::now();
    for u in &c.upstreams {
        let Some(tls) = &u.tls else { continue };
        if !tls.verify {
            warnings.push(format!(
                "upstreams \"{}\": verify = false, its certificate is not checked: anyone on the path can read and alter its traffic",
                u.name
            ));
        }
        let Some(pair) = &tls.client else { continue };
        if let Ok(l) = crate::tls::load_pair(&pair.cert_file, &pair.key_file) {
            if l.not_after < now || l.not_before > now {
                refused.push(format!(
                    "upstreams \"{}\": the client certificate {} is valid only from {} to {}: the upstream will refuse it",
                    u.name,
                    pair.cert_file.display(),
                    crate::tls::format_time(l.not_before),
                    crate::tls::format_time(l.not_after)
                ));
            }
        }
    }
    warnings.extend(deployment_warnings(c));
    Findings { refused, warnings }
}

/// What a valid configuration leaves open, said by `check` and logged when the gateway starts
/// or reloads it: each a sentence with the fix.
pub fn deployment_warnings(c: &Config) -> Vec<String> {
    let mut w = Vec::new();
    if !c.server.admin_listen.ip().is_loopback() && c.admin.tokens.is_empty() {
        w.push(format!(
            "server.admin_listen = {} is reachable from other hosts and no admin token is configured: \
             operators' actions (POST /reload, /users/{{id}}/revoke) are refused to every non-loopback peer; \
             add [[admin.tokens]] (`authgate admin-token --name NAME`) or set AUTHGATE_ADMIN_TOKEN",
            c.server.admin_listen
        ));
    }
    // Without our own TLS listener or a trusted proxy to say so, no request is ever https here:
    // the session cookies go out unprefixed and without `Secure`, so a sibling subdomain can
    // plant its own (cookie tossing). The usual cause: TLS ends at a load balancer that is not
    // in trusted_proxies.
    if c.server.tls_listen.is_none() && c.server.trusted_proxies.is_empty() {
        if let Some(p) = c
            .providers
            .iter()
            .find(|p| p.redirect_uri().starts_with("https://"))
        {
            w.push(format!(
                "providers \"{}\": redirect_uri {} is https, but authgate can never see https (no server.tls_listen, no server.trusted_proxies): \
                 the session cookies lose their __Host- prefix and Secure flag; if TLS ends at a load balancer, add its address to \
                 server.trusted_proxies so its X-Forwarded-Proto is believed",
                p.id(),
                p.redirect_uri()
            ));
        }
    }
    for p in &c.providers {
        if let ProviderConfig::Oidc(o) = p {
            if is_kakao_issuer(&o.issuer, &c.providers) {
                w.push(format!(
                    "providers \"{}\": an OpenID Connect entry on Kakao's issuer ({}) has no unlink or account-status webhook of its own: \
                     declare it kind = \"kakao\" with oidc = true (keep id = \"{}\" and its users keep their accounts); \
                     until then only a kind = \"kakao\" entry with the same client_id ends its users' sessions when Kakao says so",
                    o.id, o.issuer, o.id
                ));
            }
        }
    }
    w
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
                "providers",
                "upstreams",
                "routes",
                "rate_limit",
                "log",
                "admin",
            ],
            &mut p,
        );

        let server = read_server(&top.table("server", &mut p), base_dir, &mut p);
        let jwt = read_jwt(&top.table("jwt", &mut p), base_dir, env, &mut p);
        let identity = read_identity(&top.table("identity", &mut p), &mut p);
        let auth = read_auth(&top.table("auth", &mut p), env, &mut p);
        let store = read_store(&top.table("store", &mut p), base_dir, env, &mut p);
        // Each provider with the key it was declared under, for the cross-checks' messages.
        let mut declared: Vec<(String, ProviderConfig)> =
            read_kakao(&top.table("kakao", &mut p), env, &mut p)
                .map(|k| ("kakao".to_string(), ProviderConfig::Kakao(k)))
                .into_iter()
                .collect();
        for (i, s) in top.array_of_tables("providers", &mut p).iter().enumerate() {
            if let Some(provider) = read_provider(s, env, &mut p) {
                declared.push((format!("providers[{i}]"), provider));
            }
        }
        check_providers(&declared, &auth, &mut p);
        let providers: Vec<ProviderConfig> = declared.into_iter().map(|(_, c)| c).collect();
        let rate_limit = read_rate_limit(&top.table("rate_limit", &mut p), &mut p);
        let log = read_log(&top.table("log", &mut p), &mut p);
        let admin = read_admin(&top.table("admin", &mut p), env, &mut p);
        let upstreams: Vec<UpstreamConfig> = top
            .array_of_tables("upstreams", &mut p)
            .iter()
            .map(|s| read_upstream(s, base_dir, &mut p))
            .collect();
        let routes: Vec<RouteConfig> = top
            .array_of_tables("routes", &mut p)
            .iter()
            .map(|s| read_route(s, &mut p))
            .collect();
        cross_check(&server, &upstreams, &routes, &mut p);
        let asserted = identity.assertion || routes.iter().any(|r| r.assertion == Some(true));
        if let Some((i, u)) = upstreams
            .iter()
            .enumerate()
            .find(|(_, u)| asserted && u.name == jwt.audience)
        {
            p.push(Problem {
                key: format!("upstreams[{i}].name"),
                value: format!("{:?}", u.name),
                fix: "equal to jwt.audience: an access token, which upstreams see in Authorization, would pass there as an identity assertion (its `aud` is the upstream's name); rename one".into(),
            });
        }
        if asserted && jwt.algorithm == JwtAlgorithm::HS256 {
            p.push(Problem {
                key: "identity.assertion".into(),
                value: "true with jwt.algorithm = HS256".into(),
                fix: "upstreams verify the assertion with the gateway's public key: use jwt.algorithm = \"RS256\" or \"EdDSA\" with a private_key_file, or turn the assertion off".into(),
            });
        }

        if p.is_empty() {
            Ok(Config {
                server,
                jwt,
                identity,
                auth,
                store,
                providers,
                upstreams,
                routes,
                rate_limit,
                log,
                admin,
            })
        } else {
            Err(Problems(p))
        }
    }
}

impl Config {
    /// Where `on_unauthenticated = "redirect"` sends browsers: straight to the provider's login
    /// when there is one, else the page with a button for each.
    pub fn login_path(&self) -> String {
        match self.providers.as_slice() {
            [only] => format!("{}/{}/login", self.auth.prefix, only.id()),
            _ => format!("{}/login", self.auth.prefix),
        }
    }
}

/// Provider ids are unique (they name paths, users and metrics), Kakao is declared once, and
/// Kakao's OIDC mode has the state its `nonce` comes from. `declared`: each provider with the
/// key it was declared under.
fn check_providers(declared: &[(String, ProviderConfig)], auth: &AuthConfig, p: &mut Vec<Problem>) {
    let mut ids: Vec<(&str, &str)> = Vec::new();
    for (key, provider) in declared {
        let id = provider.id();
        match ids.iter().find(|(other, _)| *other == id) {
            Some((_, first)) if !id.is_empty() => p.push(Problem {
                key: format!("{key}.id"),
                value: format!("{id:?}"),
                fix: format!(
                    "{first} already has this id: provider ids must be unique (they name paths, users and metrics; [kakao] is \"kakao\")"
                ),
            }),
            _ => ids.push((id, key)),
        }
    }
    let kakaos: Vec<&str> = declared
        .iter()
        .filter(|(_, c)| matches!(c, ProviderConfig::Kakao(_)))
        .map(|(key, _)| key.as_str())
        .collect();
    if let [first, again, ..] = kakaos.as_slice() {
        let first = if *first == "kakao" { "[kakao]" } else { first };
        p.push(Problem {
            key: format!("{again}.kind"),
            value: "\"kakao\"".into(),
            fix: format!("{first} already declares Kakao: declare it once, as [kakao] or as one [[providers]] table with kind = \"kakao\""),
        });
    }
    for (key, provider) in declared {
        if matches!(provider, ProviderConfig::Kakao(k) if k.oidc) && !auth.require_state {
            p.push(Problem {
                key: format!("{key}.oidc"),
                value: "true with auth.require_state = false".into(),
                fix: "OpenID Connect binds each login to its state (the nonce comes from it): set auth.require_state = true, or oidc = false for a client that posts the code alone".into(),
            });
        }
    }
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

#[cfg(test)]
mod tests;
