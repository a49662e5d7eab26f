//! The `authgate` command line: `run`, `check` and `dev`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use authgate::config::{self, Config};
use clap::{Parser, Subcommand};

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
    /// Start an offline demo: the gateway in front of a demo app, no configuration needed.
    Dev {
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: String,
        #[arg(long, default_value = "127.0.0.1:9091")]
        admin_listen: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AUTHGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Check { config } => match Config::load(&config, &config::process_env) {
            Ok(c) => {
                println!(
                    "{}: OK ({} upstream(s), {} route(s), {:?})",
                    config.display(),
                    c.upstreams.len(),
                    c.routes.len(),
                    c.jwt.algorithm
                );
                ExitCode::SUCCESS
            }
            Err(problems) => {
                println!("{}: {problems}", config.display());
                ExitCode::from(2)
            }
        },
        Command::Run { config } => match Config::load(&config, &config::process_env) {
            Ok(c) => exit(run(c)),
            Err(problems) => {
                eprintln!(
                    "{}: {problems}\nrefusing to start; `authgate check -c {}` lists the same.",
                    config.display(),
                    config.display()
                );
                ExitCode::from(2)
            }
        },
        Command::Dev {
            listen,
            admin_listen,
        } => exit(dev(&listen, &admin_listen)),
    }
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

fn run(config: Config) -> anyhow::Result<()> {
    let app = authgate::server::app_runtime()?;
    authgate::server::run(config, &app)
}

/// The offline demo: a random secret, the demo upstream on a free loopback port, a public page
/// and a protected API in front of it, and a ready-made token to try.
fn dev(listen: &str, admin_listen: &str) -> anyhow::Result<()> {
    let app = authgate::server::app_runtime()?;
    let demo = app.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let demo_addr = demo.local_addr()?;
    app.spawn(authgate::demo::serve(demo));
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
[[upstreams]]
name = "demo"
addrs = ["{demo_addr}"]
[[routes]]
name = "public"
path_prefix = "/"
upstream = "demo"
auth = "public"
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "demo"
auth = "required"
"#
    );
    let config = Config::parse(&text, std::path::Path::new("."), &|_| None)
        .map_err(|p| anyhow::anyhow!("{p}"))
        .context("dev configuration")?;
    let who = authgate::tokens::jwt::Subject {
        user_id: 1,
        username: "kakao_1".into(),
        email: Some("demo@example.com".into()),
        nickname: Some("Demo".into()),
        provider: "kakao".into(),
    };
    let (token, _) = authgate::tokens::jwt::Issuer::new(&config.jwt).issue_access(&who)?;
    println!(
        "authgate dev: offline demo\n\
         \x20 public page:    http://{listen}/\n\
         \x20 protected API:  curl -i http://{listen}/api/hello            (401 without a token)\n\
         \x20                 curl -i -H 'Authorization: Bearer {token}' http://{listen}/api/hello\n\
         \x20 admin:          http://{admin_listen}/readyz\n\
         Stop with Ctrl-C."
    );
    authgate::server::run(config, &app)
}
