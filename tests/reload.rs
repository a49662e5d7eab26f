//! Live reload against the real binary: routes, upstreams and keys change by `SIGHUP`, the admin
//! listener's `POST /reload`, `authgate reload` and a change of the file, while requests run;
//! an invalid file changes nothing; a key rotation logs nobody out.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// The gateway's configuration file with everything after `[server]` replaced by `rest`.
fn rewrite(gw: &Gateway, rest: &str) {
    let path = gw.dir.path().join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let (server, _) = text.split_once("\n[jwt]").expect("a [jwt] section");
    std::fs::write(
        &path,
        format!("{server}\n{}", rest.replace("{secret}", SECRET)),
    )
    .unwrap();
}

fn jwt() -> String {
    "[jwt]\nsecret = \"{secret}\"\n[rate_limit]\nip_per_minute = 1000000\nip_burst = 1000000\n"
        .into()
}

fn upstream(name: &str, up: &Upstream) -> String {
    format!(
        "[[upstreams]]\nname = \"{name}\"\naddrs = [\"{}\"]\n",
        up.addr
    )
}

fn route(name: &str, prefix: &str, upstream: &str, auth: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"{upstream}\"\nauth = \"{auth}\"\n"
    )
}

/// One upstream and a public route `/a` to it.
fn public_a(up: &Upstream) -> String {
    format!(
        "{}{}{}",
        jwt(),
        upstream("app", up),
        route("a", "/a", "app", "public")
    )
}

async fn admin_reload(gw: &Gateway) -> RawResponse {
    raw(gw.admin, &request("POST", "/reload", &[], "")).await
}

fn sighup(gw: &Gateway) {
    Command::new("kill")
        .args(["-HUP", &gw.child.id().to_string()])
        .status()
        .unwrap();
}

/// Polls `path` until it answers `status` (a reload by signal or file change is asynchronous).
async fn until_status(gw: &Gateway, path: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = gw.get(path, &[]).await;
        if r.status == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still answers {} (waiting for {status})\n{}",
            r.status,
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `authgate reload -c config` (the gateway's admin address comes from the file).
fn reload_cli(config: impl AsRef<std::path::Path>) -> std::process::Output {
    Command::new(bin())
        .args(["reload", "-c"])
        .arg(config.as_ref())
        .env_remove("JWT_SECRET_KEY")
        .output()
        .unwrap()
}

#[tokio::test]
async fn routes_change_under_load_and_nothing_fails_that_either_configuration_would_serve() {
    let up = Upstream::start("app").await;
    let base = public_a(&up);
    let gw = Gateway::start_with(&base, "grace_period_seconds = 1\nwatch_config = true").await;

    // A load loop on /a and /b for the whole test, recording every answer.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<(String, u16)>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, seen, addr) = (stop.clone(), seen.clone(), gw.addr);
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for path in ["/a/x", "/b/x"] {
                    let r = raw(addr, &get(path, &[])).await;
                    seen.lock().unwrap().push((path.to_string(), r.status));
                }
            }
        }));
    }
    // A keep-alive connection opened before the reloads, used after them.
    let mut kept = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let keepalive =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: gateway.test\r\n\r\n").into_bytes();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    kept.write_all(&keepalive("/a/first")).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    tokio::time::sleep(Duration::from_millis(300)).await;
    // 1. /b added, by SIGHUP.
    rewrite(&gw, &format!("{base}{}", route("b", "/b", "app", "public")));
    sighup(&gw);
    until_status(&gw, "/b/x", 200).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 2. /a made to require a token, by the admin listener.
    let with_b = format!(
        "{}{}{}{}",
        jwt(),
        upstream("app", &up),
        route("a", "/a", "app", "required"),
        route("b", "/b", "app", "public")
    );
    rewrite(&gw, &with_b);
    let r = admin_reload(&gw).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"], "ok");
    assert_eq!(gw.get("/a/x", &[]).await.status, 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 3. /b removed, by the file watch.
    rewrite(
        &gw,
        &format!(
            "{}{}{}",
            jwt(),
            upstream("app", &up),
            route("a", "/a", "app", "required")
        ),
    );
    until_status(&gw, "/b/x", 404).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    // The connection from before the reloads still works, under the new configuration.
    kept.write_all(&keepalive("/a/second")).await.unwrap();
    let n = kept.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 401"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.len() > 100,
        "the load loop ran ({} requests)",
        seen.len()
    );
    for (path, status) in seen.iter() {
        let fine: &[u16] = if path.starts_with("/a") {
            &[200, 401]
        } else {
            &[404, 200]
        };
        assert!(
            fine.contains(status),
            "{path} answered {status}\n{}",
            gw.log()
        );
    }
    for (path, status) in [("/a/x", 200), ("/a/x", 401), ("/b/x", 200), ("/b/x", 404)] {
        assert!(
            seen.iter().any(|(p, s)| p == path && *s == status),
            "{path} never answered {status}: the reload happened under load"
        );
    }
    let scrape = gw.admin_get("/metrics").await.text();
    // Three changes; the file watch may also have seen the files written before a SIGHUP or
    // a POST, which reloads the same file again.
    let reloads = metric(&scrape, "authgate_config_reloads_total{result=\"ok\"}").unwrap();
    assert!((3.0..=5.0).contains(&reloads), "{scrape}");
}

#[tokio::test]
async fn an_invalid_file_leaves_the_running_configuration_serving() {
    let up = Upstream::start("app").await;
    let base = public_a(&up);
    let gw = Gateway::start(&base).await;
    let hash_before = gw.admin_get("/metrics").await.text();
    rewrite(
        &gw,
        &format!("{}{}", base, route("b", "/b", "nowhere", "sometimes")),
    );
    let r = admin_reload(&gw).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let body: Value = r.json();
    assert_eq!(body["result"], "invalid");
    let problems = body["problems"].to_string();
    assert!(
        problems.contains("routes[1].upstream") && problems.contains("routes[1].auth"),
        "{problems}"
    );
    // Still the old configuration, and the log says why.
    assert_eq!(gw.get("/a/x", &[]).await.status, 200);
    assert_eq!(gw.get("/b/x", &[]).await.status, 404);
    assert!(gw.log().contains("routes[1].auth"), "{}", gw.log());
    // `authgate reload` refuses it before asking the gateway.
    let out = reload_cli(gw.dir.path().join("config.toml"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("routes[1].upstream"));
    let scrape = gw.admin_get("/metrics").await.text();
    assert_eq!(
        metric(&scrape, "authgate_config_reloads_total{result=\"invalid\"}"),
        Some(1.0)
    );
    let info = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("authgate_config_info{"))
            .map(str::to_string)
    };
    assert_eq!(
        info(&scrape),
        info(&hash_before),
        "the served hash is unchanged"
    );
    // Settings that need a restart are reported, and the rest is applied.
    rewrite(
        &gw,
        &format!("{}{}", base, route("b", "/b", "app", "public")),
    );
    let text = std::fs::read_to_string(gw.dir.path().join("config.toml"))
        .unwrap()
        .replace("threads = 1", "threads = 3");
    std::fs::write(gw.dir.path().join("config.toml"), text).unwrap();
    let out = reload_cli(gw.dir.path().join("config.toml"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("server.threads"), "{stdout}");
    assert_eq!(gw.get("/b/x", &[]).await.status, 200);
    assert_ne!(
        info(&gw.admin_get("/metrics").await.text()),
        info(&hash_before)
    );
}

#[tokio::test]
async fn an_upstream_address_changed_by_reload_receives_the_traffic() {
    let (one, two) = (Upstream::start("one").await, Upstream::start("two").await);
    let base = |up: &Upstream| {
        format!(
            "{}{}{}",
            jwt(),
            upstream("app", up),
            route("a", "/a", "app", "public")
        )
    };
    let gw = Gateway::start(&base(&one)).await;
    assert_eq!(gw.get("/a/x", &[]).await.status, 200);
    assert_eq!((one.count(), two.count()), (1, 0));
    rewrite(&gw, &base(&two));
    assert_eq!(admin_reload(&gw).await.status, 200);
    for _ in 0..5 {
        assert_eq!(gw.get("/a/x", &[]).await.status, 200);
    }
    assert_eq!((one.count(), two.count()), (1, 5));
}

/// An Ed25519 key of the test's own, as the rotation's new key.
fn new_ed25519_pem(dir: &std::path::Path) -> std::path::PathBuf {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let key = ed25519_dalek::SigningKey::from_bytes(&rand::random());
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    let path = dir.join("new.pem");
    std::fs::write(&path, pem.as_bytes()).unwrap();
    path
}

#[tokio::test]
async fn keys_rotate_without_logging_anyone_out_and_the_jwks_follows() {
    let fake = fake_kakao(&[REDIRECT_URI]).await;
    let up = Upstream::start("app").await;
    let db = tempfile::tempdir().unwrap();
    let old_key = fixture("ed25519.pem").display().to_string();
    let new_key = new_ed25519_pem(db.path()).display().to_string();
    let with_keys = |current: &str, previous: Option<&str>| {
        let previous = previous.map_or(String::new(), |p| {
            format!("[[jwt.previous_keys]]\nalgorithm = \"EdDSA\"\nprivate_key_file = \"{p}\"\n")
        });
        login_config(
            &fake,
            &up,
            &sqlite_url(db.path()),
            "require_state = false",
            "",
        )
        .replace(
            "[jwt]\nsecret = \"{secret}\"",
            &format!("[jwt]\nalgorithm = \"EdDSA\"\nprivate_key_file = \"{current}\"\n{previous}"),
        )
    };
    let gw = Gateway::start(&with_keys(&old_key, None)).await;
    let kids = |gw: &Gateway| {
        let gw_addr = gw.addr;
        async move {
            let jwks = raw(gw_addr, &get("/.well-known/jwks.json", &[]))
                .await
                .json();
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let kid_of = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let before = seed_login(&gw, &fake, RYAN).await;
    let old_token = before["access_token"].as_str().unwrap().to_string();
    let old_kid = kid_of(&old_token);
    assert_eq!(kids(&gw).await, vec![old_kid.clone()]);
    let api = |token: &str| {
        let (addr, auth) = (gw.addr, bearer(token));
        async move {
            raw(addr, &get("/api/orders", &[("Authorization", &auth)]))
                .await
                .status
        }
    };
    assert_eq!(api(&old_token).await, 200);

    // The new key current, the old one verify-only.
    rewrite(&gw, &with_keys(&new_key, Some(&old_key)));
    let r = admin_reload(&gw).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        api(&old_token).await,
        200,
        "a token of the old key still works"
    );
    let after = seed_login(&gw, &fake, RYAN).await;
    let new_token = after["access_token"].as_str().unwrap().to_string();
    let new_kid = kid_of(&new_token);
    assert_ne!(new_kid, old_kid, "new tokens carry the new key's kid");
    assert_eq!(api(&new_token).await, 200);
    assert_eq!(kids(&gw).await, vec![new_kid.clone(), old_kid.clone()]);
    // Refresh tokens are opaque: the one from before the rotation rotates.
    assert_eq!(
        post_refresh(&gw, &before["refresh_token"]).await.status,
        200
    );

    // The old key dropped: its tokens are refused (cached ones too), the new ones stay.
    rewrite(&gw, &with_keys(&new_key, None));
    assert_eq!(admin_reload(&gw).await.status, 200);
    let r = gw
        .get("/api/orders", &[("Authorization", &bearer(&old_token))])
        .await;
    r.assert_gateway_error(401, "INVALID_TOKEN");
    assert_eq!(api(&new_token).await, 200);
    assert_eq!(kids(&gw).await, vec![new_kid]);
}

/// Trusted proxies in another order are the same setting: no restart is reported for it.
#[tokio::test]
async fn reordered_trusted_proxies_need_no_restart() {
    let up = Upstream::start("app").await;
    let config = format!(
        "{}{}{}",
        jwt(),
        upstream("app", &up),
        route("a", "/a", "app", "public")
    );
    let gw = Gateway::start_with(
        &config,
        "grace_period_seconds = 1\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\"]",
    )
    .await;
    let reload = |from: &str, to: &str| {
        let path = gw.dir.path().join("config.toml");
        let text = std::fs::read_to_string(&path).unwrap().replace(from, to);
        std::fs::write(&path, text).unwrap();
        let out = reload_cli(&path);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = reload(
        "[\"10.0.0.0/8\", \"192.0.2.1\"]",
        "[\"192.0.2.1\", \"10.0.0.0/8\"]",
    );
    assert!(
        out.contains("\"needs_restart\":[]"),
        "reordered only: {out}"
    );
    let out = reload("[\"192.0.2.1\", \"10.0.0.0/8\"]", "[\"192.0.2.1\"]");
    assert!(
        out.contains("server (other than"),
        "a changed list needs a restart: {out}"
    );
}
