//! Login and refresh throughput, for `benches/load.sh`: the fake Kakao in this process, the
//! authgate binary given on the command line on SQLite, and CONCURRENCY clients over loopback.
//!
//! Usage: login_load AUTHGATE_BINARY [LOGINS] [CONCURRENCY]
//! Prints `logins_per_sec <n>` and `refreshes_per_sec <n>`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use authgate::dev::fake_kakao::{default_users, FakeKakao, FakeKakaoConfig};

const REDIRECT: &str = "http://bench.test/api/auth/kakao/callback";

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let bin = args
        .next()
        .expect("usage: login_load AUTHGATE_BINARY [LOGINS] [CONCURRENCY]");
    let logins: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(5000);
    let concurrency: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(32);

    let fake = FakeKakao::serve(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        FakeKakaoConfig {
            client_id: "bench".into(),
            client_secret: "bench-secret".into(),
            redirect_uris: vec![REDIRECT.into()],
            users: default_users(),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (18181, 18191);
    let k = fake.base_url();
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
threads = 1
grace_period_seconds = 0
[jwt]
secret = "login-benchmark-secret-0123456789abcdef"
[store]
url = "sqlite://{db}"
[auth]
require_state = false
[rate_limit]
auth_per_minute = 0
[log]
level = "warn"
[kakao]
client_id = "bench"
client_secret = "bench-secret"
redirect_uri = "{REDIRECT}"
authorize_url = "{k}/oauth/authorize"
token_url = "{k}/oauth/token"
userinfo_url = "{k}/v2/user/me"
[[upstreams]]
name = "app"
addrs = ["127.0.0.1:9"]
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "app"
"#,
            db = dir.path().join("bench.db").display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(&bin)
        .args(["run", "-c"])
        .arg(dir.path().join("config.toml"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start authgate");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while http
        .get(format!("{base}/api/auth/kakao/login-url"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "authgate did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let login_url = http
        .get(format!("{base}/api/auth/kakao/login-url"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["login_url"]
        .as_str()
        .unwrap()
        .to_string();
    let query = url::Url::parse(&login_url)
        .unwrap()
        .query()
        .unwrap()
        .to_string();
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The user's part, before the clock starts: Kakao's consent screen is not ours to measure.
    let mut codes = Vec::with_capacity(logins);
    for i in 0..logins {
        let user = default_users()[i % 3].id;
        let r = no_redirect
            .get(format!("{k}/oauth/authorize/approve?{query}&user={user}"))
            .send()
            .await
            .unwrap();
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let code = url::Url::parse(&location)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .into_owned();
        codes.push(code);
    }

    let codes = Arc::new(std::sync::Mutex::new(codes));
    let refresh_tokens = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, base, codes, refresh_tokens) = (
                http.clone(),
                base.clone(),
                codes.clone(),
                refresh_tokens.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let Some(code) = codes.lock().unwrap().pop() else {
                        break;
                    };
                    let r = http
                        .post(format!("{base}/api/auth/kakao/callback"))
                        .json(&serde_json::json!({"code": code}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
                    let tokens: serde_json::Value = r.json().await.unwrap();
                    refresh_tokens
                        .lock()
                        .unwrap()
                        .push(tokens["refresh_token"].as_str().unwrap().to_string());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let login_rate = logins as f64 / started.elapsed().as_secs_f64();

    // Refresh: each client rotates its own chain, as a browser tab would.
    let chains: Vec<String> = refresh_tokens
        .lock()
        .unwrap()
        .drain(..concurrency.min(logins))
        .collect();
    let per_chain = logins / chains.len().max(1);
    let started = Instant::now();
    let tasks: Vec<_> = chains
        .into_iter()
        .map(|mut token| {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move {
                for _ in 0..per_chain {
                    let r = http
                        .post(format!("{base}/api/auth/refresh"))
                        .json(&serde_json::json!({"refresh_token": token}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
                    let tokens: serde_json::Value = r.json().await.unwrap();
                    token = tokens["refresh_token"].as_str().unwrap().to_string();
                }
            })
        })
        .collect();
    let refreshes = per_chain * tasks.len();
    for t in tasks {
        t.await.unwrap();
    }
    let refresh_rate = refreshes as f64 / started.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    println!("logins_per_sec {login_rate:.0}");
    println!("refreshes_per_sec {refresh_rate:.0}");
}
