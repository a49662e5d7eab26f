//! The `authgate` command line: `run`, `check`, `reload`, `healthcheck`, `admin-token`, `dev`
//! and `revoke`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use authgate::config::{self, Config};
use clap::{Parser, Subcommand};

// mimalloc: Pingora allocates per request (headers, buffers); the system allocator costs several
// percent of throughput under load (benches/load.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "authgate",
    version,
    about = "A reverse-proxy authentication gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway.
    Run {
        #[arg(short, long, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Validate a configuration file and print every problem (exit 0 valid, 2 invalid).
    Check {
        #[arg(short, long, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Check a configuration file, then make the gateway running with it (its admin_listen)
    /// serve it without a restart (exit 0 reloaded, 1 refused, 2 invalid).
    Reload {
        #[arg(short, long, default_value = "config.toml")]
        config: PathBuf,
    },
    /// End every session of a user now: writes a cut-off to the store; running gateways refuse
    /// the user's tokens within their sync interval (a second).
    Revoke {
        /// Our user id (the tokens' `sub`, e.g. 42) or provider:subject (e.g. kakao:1234567890).
        #[arg(long)]
        user: String,
        #[arg(short, long, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Print a new admin token and the `[[admin.tokens]]` lines (its SHA-256) to add to the
    /// configuration. The token itself is shown once and stored nowhere.
    AdminToken {
        /// The name the log gives every action taken with it (a person, a tool).
        #[arg(long)]
        name: String,
    },
    /// Ask the running gateway whether it is ready (`GET /readyz` on its admin listener): exit 0
    /// ready, 1 not ready or no answer. For container health checks; needs no shell or curl.
    Healthcheck {
        /// The configuration whose `server.admin_listen` to ask (only that key is read).
        #[arg(short, long, default_value = "config.toml")]
        config: PathBuf,
        /// Ask this address instead of the file's `server.admin_listen`.
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
        /// `/readyz` (ready for traffic) or `/healthz` (the process answers at all: liveness).
        #[arg(long, default_value = "/readyz", value_parser = ["/readyz", "/healthz"])]
        path: String,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Start an offline demo: the gateway in front of a demo app, no configuration needed.
    #[cfg(feature = "dev")]
    Dev {
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: String,
        #[arg(long, default_value = "127.0.0.1:9091")]
        admin_listen: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS crypto provider for the whole process (Pingora's rustls and reqwest both use it).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Check { config } => match Config::load(&config, &config::process_env) {
            Ok(c) => {
                let findings = config::findings(&c);
                if !findings.refused.is_empty() {
                    println!(
                        "{}: {} certificate problem(s):",
                        config.display(),
                        findings.refused.len()
                    );
                    for e in findings.refused {
                        println!("  - {e}");
                    }
                    return ExitCode::from(2);
                }
                let login = if c.providers.is_empty() {
                    "login off (no [kakao] client_id, no [[providers]])".to_string()
                } else {
                    let ids: Vec<String> = c
                        .providers
                        .iter()
                        .map(|p| format!("{} ({})", p.id(), p.kind()))
                        .collect();
                    format!("login via {}", ids.join(", "))
                };
                println!(
                    "{}: OK ({} upstream(s), {} route(s), {:?}, store {}, {login})",
                    config.display(),
                    c.upstreams.len(),
                    c.routes.len(),
                    c.jwt.algorithm,
                    config::redact_url(&c.store.url),
                );
                for warning in findings.warnings {
                    println!("warning: {warning}");
                }
                ExitCode::SUCCESS
            }
            Err(problems) => {
                println!("{}: {problems}", config.display());
                ExitCode::from(2)
            }
        },
        Command::Run { config } => match load_with_text(&config) {
            Ok((c, text)) => {
                init_logging(&c.log);
                let source = authgate::server::Source {
                    text,
                    path: Some(config),
                };
                exit(run(c, source))
            }
            Err(problems) => {
                eprintln!(
                    "{}: {problems}\nrefusing to start; `authgate check -c {}` lists the same.",
                    config.display(),
                    config.display()
                );
                ExitCode::from(2)
            }
        },
        #[cfg(feature = "dev")]
        Command::Dev {
            listen,
            admin_listen,
        } => exit(dev(&listen, &admin_listen)),
        Command::Reload { config } => match Config::load(&config, &config::process_env) {
            Ok(c) => reload(&c, &config),
            Err(problems) => {
                println!("{}: {problems}\nnot reloaded.", config.display());
                ExitCode::from(2)
            }
        },
        Command::AdminToken { name } => {
            let (token, digest) = authgate::admin_client::new_admin_token();
            println!(
                "# The token (give it to whoever acts as {name:?}; it is not shown again and not stored):\n\
                 {token}\n\n\
                 # For config.toml (a hash: the file may be committed):\n\
                 [[admin.tokens]]\n\
                 name = {name:?}\n\
                 sha256 = \"{digest}\"\n\n\
                 # Use it: curl -H \"Authorization: Bearer $TOKEN\" -X POST http://ADMIN/reload,\n\
                 # or AUTHGATE_ADMIN_TOKEN=$TOKEN authgate reload"
            );
            ExitCode::SUCCESS
        }
        Command::Healthcheck {
            config,
            admin,
            path,
            timeout_ms,
        } => match admin.map_or_else(|| authgate::admin_client::admin_listen_of(&config), Ok) {
            Ok(admin) => healthcheck(admin, &path, timeout_ms),
            Err(e) => {
                eprintln!("authgate: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Revoke { user, config } => match Config::load(&config, &config::process_env) {
            Ok(c) => exit(revoke(&c, &user)),
            Err(problems) => {
                eprintln!("{}: {problems}", config.display());
                ExitCode::from(2)
            }
        },
    }
}

fn init_logging(log: &config::LogConfig) {
    authgate::logging::init(log);
}

/// The file's text and the configuration parsed from exactly that text (its digest names it).
fn load_with_text(path: &std::path::Path) -> Result<(Config, String), config::Problems> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        config::Problems(vec![config::Problem {
            key: "(file)".into(),
            value: path.display().to_string(),
            fix: format!("cannot read it: {e}"),
        }])
    })?;
    let base = path.parent().unwrap_or(std::path::Path::new("."));
    Config::parse(&text, base, &config::process_env).map(|c| (c, text))
}

fn exit(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config, source: authgate::server::Source) -> anyhow::Result<()> {
    let app = authgate::server::app_runtime()?;
    authgate::server::run(config, source, &app)
}

/// `authgate reload`: the file is valid; ask the running gateway (`POST /reload` on its admin
/// listener) to serve it, and print what it says.
fn reload(config: &Config, config_path: &std::path::Path) -> ExitCode {
    let admin = config.server.admin_listen;
    let token = config::process_env("AUTHGATE_ADMIN_TOKEN").map(|t| t.trim().to_string());
    let answer = authgate::admin_client::request(
        admin,
        http::Method::POST,
        "/reload",
        std::time::Duration::from_secs(30),
        token.as_deref(),
    );
    match answer {
        Ok((status, body)) => {
            println!("{body}");
            let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            // The gateway reads its own file with its own environment: say so when that is not
            // the text checked here.
            let local = std::fs::read_to_string(config_path).map(|t| authgate::reload::hash(&t));
            if let (Ok(local), Some(served)) = (&local, answer["hash"].as_str()) {
                if answer["result"] == "ok" && local != served {
                    eprintln!("authgate: the gateway serves {served}, not this file's {local}: it reads its own configuration path");
                }
            }
            match (status, answer["result"].as_str()) {
                (200, _) => ExitCode::SUCCESS,
                (_, Some("invalid")) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
        Err(e) => {
            eprintln!("authgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `authgate healthcheck`: `GET /readyz` on the admin listener; 0 when it answers 200, else 1
/// with what it said. Needs no shell or curl in the image (Docker's `HEALTHCHECK`, Kubernetes'
/// exec probes).
fn healthcheck(admin: std::net::SocketAddr, path: &str, timeout_ms: u64) -> ExitCode {
    let answer = authgate::admin_client::request(
        admin,
        http::Method::GET,
        path,
        std::time::Duration::from_millis(timeout_ms),
        None,
    );
    match answer {
        Ok((200, _)) => ExitCode::SUCCESS,
        Ok((status, body)) => {
            eprintln!("authgate: {path} answered {status}: {}", body.trim());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("authgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `authgate revoke`: straight to the store (the gateways read it from there); no spool here,
/// an operator sees the failure and runs it again.
fn revoke(config: &Config, user: &str) -> anyhow::Result<()> {
    use authgate::lifecycle::{describe, operator_request, Outcome};
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let req = operator_request(user, now).map_err(|e| anyhow::anyhow!(e))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let done = rt
        .block_on(async {
            let store = authgate::store::Store::connect(
                &config.store.url,
                std::time::Duration::from_millis(config.store.busy_timeout_ms),
                2,
            )
            .await?;
            store.cut_off(&req.whom(), &req.reason, None).await
        })
        .with_context(|| format!("store at {}", config::redact_url(&config.store.url)))?;
    let unknown = done.users.is_empty();
    println!("{}", describe(user, &Outcome::Done(done)));
    if unknown {
        anyhow::bail!("no such user");
    }
    Ok(())
}

#[cfg(feature = "dev")]
/// The offline demo: a random secret, SQLite in `./authgate-dev.db`, two identity providers (the
/// fake Kakao and a fake OpenID Connect issuer) and the demo upstream on free loopback ports, and
/// routes that show a login arriving at an app.
fn dev(listen: &str, admin_listen: &str) -> anyhow::Result<()> {
    use authgate::dev::fake_oidc::{
        default_oidc_users, FakeOidc, FakeOidcConfig, SigningAlg,
    };
    use authgate::dev::fake_kakao::{default_users, FakeKakao, FakeKakaoConfig};
    let app = authgate::server::app_runtime()?;
    let demo = app.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let demo_addr = demo.local_addr()?;
    app.spawn(authgate::dev::demo::serve(demo));
    let redirect_uri = format!("http://{listen}/api/auth/kakao/callback");
    let client_secret = format!("{:032x}", rand::random::<u128>());
    let fake = app.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Ok::<_, std::io::Error>(FakeKakao::serve(
            listener,
            FakeKakaoConfig {
                client_id: "authgate-dev".into(),
                client_secret: client_secret.clone(),
                redirect_uris: vec![redirect_uri.clone()],
                users: default_users(),
            },
        ))
    })?;
    let kakao = fake.base_url();
    let example_redirect = format!("http://{listen}/api/auth/example/callback");
    let example_secret = format!("{:032x}", rand::random::<u128>());
    let example = app.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Ok::<_, std::io::Error>(FakeOidc::serve(
            listener,
            FakeOidcConfig {
                client_id: "authgate-dev".into(),
                client_secret: example_secret.clone(),
                redirect_uris: vec![example_redirect.clone()],
                users: default_oidc_users(),
                alg: SigningAlg::RS256,
                secret_in_body: false,
            },
        ))
    })?;
    let issuer = example.issuer();
    let secret = format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    );
    let text = format!(
        r#"
[server]
listen = "{listen}"
admin_listen = "{admin_listen}"
grace_period_seconds = 1
[jwt]
secret = "{secret}"
[store]
url = "sqlite://authgate-dev.db"
[kakao]
client_id = "authgate-dev"
client_secret = "{client_secret}"
redirect_uri = "{redirect_uri}"
authorize_url = "{kakao}/oauth/authorize"
token_url = "{kakao}/oauth/token"
userinfo_url = "{kakao}/v2/user/me"
[[providers]]
id = "example"
kind = "oidc"
display_name = "Example ID"
issuer = "{issuer}"
client_id = "authgate-dev"
client_secret = "{example_secret}"
redirect_uri = "{example_redirect}"
[[upstreams]]
name = "demo"
addrs = ["{demo_addr}"]
{routes}"#,
        routes = authgate::dev::demo::ROUTES
    );
    // The demo's own values must not be overridden by a developer's seed .env.
    let config = Config::parse(&text, std::path::Path::new("."), &|_| None)
        .map_err(|p| anyhow::anyhow!("{p}"))
        .context("dev configuration")?;
    init_logging(&config.log);
    println!(
        "authgate dev: the offline demo (SQLite in ./authgate-dev.db, a fake Kakao at {kakao},\n\
         \x20 a fake OpenID Connect issuer at {issuer})\n\
         \x20 open            http://{listen}/        and click \"Log in\"\n\
         \x20 protected page  http://{listen}/app     (redirects to the login page: Kakao or Example ID)\n\
         \x20 seed API        http://{listen}/api/auth/kakao/login-url, /refresh, /profile, /logout\n\
         \x20 admin           http://{admin_listen}/readyz\n\
         Stop with Ctrl-C."
    );
    authgate::server::run(config, authgate::server::Source { path: None, text }, &app)
}
