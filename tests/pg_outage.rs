//! PostgreSQL stops under a running gateway and comes back. Its own test binary: cargo runs test
//! binaries one after another, so stopping the shared test server affects no other test.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

fn postgres(action: Option<&str>) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres-up");
    let out = Command::new(script).args(action).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts PostgreSQL again however the test ends, so later test binaries find it.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        postgres(None);
    }
}

#[tokio::test]
async fn postgres_stopped_gives_503_verifying_goes_on_and_it_recovers_by_itself() {
    let Some(pg) = postgres_url() else {
        eprintln!("AUTHGATE_TEST_POSTGRES_URL unset: skipped");
        return;
    };
    let fake = fake_kakao(&[REDIRECT_URI]).await;
    let up = Upstream::start("app").await;
    let admin_key = "0123456789abcdef0123456789abcdef";
    let gw = Gateway::start(&login_config(
        &fake,
        &up,
        &pg,
        "require_state = false",
        &format!("admin_key = \"{admin_key}\""),
    ))
    .await;
    let tokens = seed_login(&gw, &fake, RYAN).await;
    let muzi = seed_login(&gw, &fake, 1_000_003).await;
    let muzi = bearer(muzi["access_token"].as_str().unwrap());
    let auth = bearer(tokens["access_token"].as_str().unwrap());
    let login_url = gw.get("/api/auth/kakao/login-url", &[]).await.json()["login_url"]
        .as_str()
        .unwrap()
        .to_string();
    let code = query_param(&approve(&fake, &login_url, 1_000_002).await, "code").unwrap();

    postgres(Some("stop"));
    let restart = RestartOnDrop;
    let r = post_callback(&gw, &code).await;
    r.assert_gateway_error(503, "STORE_UNAVAILABLE");
    let r = post_refresh(&gw, &tokens["refresh_token"]).await;
    r.assert_gateway_error(503, "STORE_UNAVAILABLE");
    let r = post_logout(&gw, &auth).await;
    r.assert_gateway_error(503, "STORE_UNAVAILABLE");
    assert_eq!(
        gw.get("/api/orders", &[("Authorization", &auth)])
            .await
            .status,
        200,
        "verification needs no store"
    );
    // Kakao's unlink webhook is answered within its 3 s all the same, and kept in the spool.
    let (status, took) = fake
        .send_unlink(
            &format!("http://{}/api/auth/kakao/unlink", gw.addr),
            admin_key,
            "",
            1_000_003,
            true,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", gw.log());
    assert!(took < Duration::from_secs(3), "{took:?}");
    drop(restart);

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = post_refresh(&gw, &tokens["refresh_token"]).await;
        if r.status == 200 {
            break;
        }
        r.assert_gateway_error(503, "STORE_UNAVAILABLE");
        assert!(Instant::now() < deadline, "the gateway never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The spooled unlink reached the store and took effect.
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw
        .get("/api/orders", &[("Authorization", &muzi)])
        .await
        .status
        != 401
    {
        assert!(
            Instant::now() < deadline,
            "the spooled unlink was never applied\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
