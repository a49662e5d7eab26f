//! Rate limits that cannot be dodged, Prometheus metrics and access logs, over sockets.

mod support;

use serde_json::json;
use support::*;

fn limited_config(
    fake: &FakeKakao,
    up: &Upstream,
    db: &std::path::Path,
    rate_limit: &str,
) -> String {
    // The same login setup, with this test's limits instead of the generous test defaults.
    let base = login_config(fake, up, &sqlite_url(db), "require_state = false", "");
    let (head, tail) = base.split_once("[rate_limit]").unwrap();
    let (_, after) = tail.split_once("[auth]").unwrap();
    format!("{head}[rate_limit]\n{rate_limit}\n[auth]{after}")
}

#[tokio::test]
async fn the_eleventh_auth_request_in_a_minute_is_429_and_other_clients_are_served() {
    let fake = fake_kakao(&[REDIRECT_URI]).await;
    let up = Upstream::start("app").await;
    let db = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&limited_config(&fake, &up, db.path(), "")).await;
    for i in 0..10 {
        // Rotating X-Forwarded-For from an untrusted peer changes nothing.
        let forged = format!("203.0.113.{i}");
        let r = gw
            .get(
                "/api/auth/kakao/login-url",
                &[("X-Forwarded-For", &forged), ("X-Real-IP", &forged)],
            )
            .await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    let r = gw
        .get(
            "/api/auth/kakao/login-url",
            &[("X-Forwarded-For", "198.51.100.77")],
        )
        .await;
    r.assert_gateway_error(429, "RATE_LIMIT_EXCEEDED");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry), "{retry}");
    assert_eq!(r.header("ratelimit-limit"), Some("10"));
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    assert_eq!(
        r.header("ratelimit-reset"),
        Some(retry.to_string().as_str())
    );
    // The public keys are not a login endpoint: never limited with it (HS256 here, so 404).
    gw.get("/.well-known/jwks.json", &[])
        .await
        .assert_gateway_error(404, "NOT_FOUND");
    // Another address is a different client.
    let other = raw_from("127.0.0.2", gw.addr, &get("/api/auth/kakao/login-url", &[])).await;
    assert_eq!(other.status, 200, "{}", other.text());
    let scrape = gw.admin_get("/metrics").await.text();
    assert_eq!(
        metric(&scrape, "authgate_rate_limited_total{scope=\"auth\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_real_client_is_limited() {
    let fake = fake_kakao(&[REDIRECT_URI]).await;
    let up = Upstream::start("app").await;
    let db = tempfile::tempdir().unwrap();
    let gw = Gateway::start_with(
        &limited_config(&fake, &up, db.path(), "auth_per_minute = 3\nauth_burst = 3"),
        "trusted_proxies = [\"127.0.0.1/32\"]",
    )
    .await;
    let via_proxy = |client: &'static str| [("X-Forwarded-For", client)];
    for _ in 0..3 {
        assert_eq!(
            gw.get("/api/auth/kakao/login-url", &via_proxy("198.51.100.1"))
                .await
                .status,
            200
        );
    }
    gw.get("/api/auth/kakao/login-url", &via_proxy("198.51.100.1"))
        .await
        .assert_gateway_error(429, "RATE_LIMIT_EXCEEDED");
    // A spoofed hop to the left of the real client changes nothing.
    gw.get(
        "/api/auth/kakao/login-url",
        &[("X-Forwarded-For", "1.1.1.1, 198.51.100.1")],
    )
    .await
    .assert_gateway_error(429, "RATE_LIMIT_EXCEEDED");
    assert_eq!(
        gw.get("/api/auth/kakao/login-url", &via_proxy("198.51.100.2"))
            .await
            .status,
        200
    );
    // IPv6 clients share their /64.
    for _ in 0..3 {
        assert_eq!(
            gw.get("/api/auth/kakao/login-url", &via_proxy("2001:db8:1:2::1"))
                .await
                .status,
            200
        );
    }
    gw.get(
        "/api/auth/kakao/login-url",
        &via_proxy("2001:db8:1:2:ffff::9"),
    )
    .await
    .assert_gateway_error(429, "RATE_LIMIT_EXCEEDED");
}

#[tokio::test]
async fn users_have_their_own_limits_and_bad_tokens_count_against_the_ip() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&format!(
        r#"
[jwt]
secret = "{{secret}}"
[rate_limit]
ip_per_minute = 60
ip_burst = 3
[[upstreams]]
name = "app"
addrs = ["{}"]
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "app"
[routes.rate_limit]
per_minute = 60
burst = 2
"#,
        up.addr
    ))
    .await;
    let token = |sub: &str| {
        let mut c = claims();
        c["sub"] = json!(sub);
        bearer(&hs256(&c))
    };
    let alice = token("alice");
    for _ in 0..2 {
        assert_eq!(
            gw.get("/api/x", &[("Authorization", &alice)]).await.status,
            200
        );
    }
    let r = gw.get("/api/x", &[("Authorization", &alice)]).await;
    r.assert_gateway_error(429, "RATE_LIMIT_EXCEEDED");
    assert_eq!(r.header("ratelimit-limit"), Some("2"));
    // Bob, from the same address, is not affected.
    assert_eq!(
        gw.get("/api/x", &[("Authorization", &token("bob"))])
            .await
            .status,
        200
    );
    // Forged tokens claiming to be carol count against the address, never against carol.
    let mut forged = claims();
    forged["sub"] = json!("carol");
    let forged = bearer(&sign(
        jsonwebtoken::Algorithm::HS256,
        &forged,
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-secret-not-the-secret-000"),
    ));
    for _ in 0..3 {
        gw.get("/api/x", &[("Authorization", &forged)])
            .await
            .assert_gateway_error(401, "INVALID_TOKEN");
    }
    gw.get("/api/x", &[("Authorization", &forged)])
        .await
        .assert_gateway_error(429, "RATE_LIMIT_EXCEEDED");
    // Carol's own budget is untouched (from her own address: this one is now refused before
    // any new signature is checked).
    let carol = raw_from(
        "127.0.0.2",
        gw.addr,
        &get("/api/x", &[("Authorization", &token("carol"))]),
    )
    .await;
    assert_eq!(carol.status, 200, "carol keeps her own limit");
    gw.get("/api/x", &[("Authorization", &token("carol"))])
        .await
        .assert_gateway_error(429, "RATE_LIMIT_EXCEEDED");
    let scrape = gw.admin_get("/metrics").await.text();
    assert_eq!(
        metric(&scrape, "authgate_rate_limited_total{scope=\"user\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&scrape, "authgate_rate_limited_total{scope=\"ip\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric(&scrape, "authgate_auth_failures_total{reason=\"invalid\"}"),
        Some(3.0)
    );
}

/// The login journey at trace level with JSON logs, then the scrape and the log.
#[tokio::test]
async fn metrics_move_with_the_journey_and_the_log_holds_no_secret() {
    let fake = fake_kakao(&[REDIRECT_URI]).await;
    let up = Upstream::start("app").await;
    let db = tempfile::tempdir().unwrap();
    let config = login_config(
        &fake,
        &up,
        &sqlite_url(db.path()),
        "require_state = false\nrefresh_reuse_grace_seconds = 0",
        "",
    )
    .replacen(
        "[jwt]",
        "[log]\nformat = \"json\"\nlevel = \"trace\"\n[jwt]",
        1,
    )
    // The 101 unknown paths below spend the anonymous budget; this test is about series.
    .replacen(
        "auth_burst = 100000",
        "auth_burst = 100000\nip_burst = 1000",
        1,
    );
    let gw = Gateway::start(&config).await;

    let r = gw.get("/api/auth/kakao/login-url", &[]).await;
    let login_url = r.json()["login_url"].as_str().unwrap().to_string();
    let code = query_param(&approve(&fake, &login_url, RYAN).await, "code").unwrap();
    let tokens = post_callback(&gw, &code).await.json();
    let (access, refresh) = (
        tokens["access_token"].as_str().unwrap(),
        tokens["refresh_token"].as_str().unwrap(),
    );
    let auth = bearer(access);
    assert_eq!(
        gw.get(
            "/api/orders?secret_query=1",
            &[
                ("Authorization", &auth),
                ("Cookie", "session=cookie-value-123")
            ]
        )
        .await
        .status,
        200
    );
    let rotated = post_refresh(&gw, &refresh).await.json();
    let reuse = post_refresh(&gw, &refresh).await;
    reuse.assert_gateway_error(400, "INVALID_REFRESH_TOKEN");
    gw.get("/api/orders", &[("Authorization", "Bearer not.a.token")])
        .await
        .assert_gateway_error(401, "INVALID_TOKEN");
    let access2 = rotated["access_token"].as_str().unwrap();
    let r = post_logout(&gw, &bearer(access2)).await;
    assert_eq!(r.status, 200);
    // The public listener never serves /metrics.
    gw.get("/metrics", &[])
        .await
        .assert_gateway_error(404, "NOT_FOUND");
    // Random paths add no series.
    let series = |s: &str| s.lines().filter(|l| l.starts_with("authgate_")).count();
    let before = series(&gw.admin_get("/metrics").await.text());
    for i in 0..100 {
        gw.get(&format!("/random/{i}/{}", rand::random::<u64>()), &[])
            .await;
    }
    // Pingora records a request just after answering it: wait for the last one to land.
    let unmatched = "authgate_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let scrape = loop {
        let scrape = gw.admin_get("/metrics").await.text();
        if metric(&scrape, unmatched) == Some(101.0) || std::time::Instant::now() > deadline {
            break scrape;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(
        series(&scrape) <= before + 4,
        "random paths created series: {} -> {}",
        before,
        series(&scrape)
    );
    assert_eq!(
        metric(
            &scrape,
            "authgate_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
        ),
        Some(101.0)
    );

    for (series, value) in [
        ("authgate_logins_total{provider=\"kakao\",result=\"success\"}", 1.0),
        ("authgate_tokens_issued_total{kind=\"access\"}", 2.0),
        ("authgate_tokens_issued_total{kind=\"refresh\"}", 2.0),
        ("authgate_refresh_reuse_detected_total", 1.0),
        ("authgate_revoked_tokens", 1.0),
        ("authgate_auth_failures_total{reason=\"invalid\"}", 1.0),
        ("authgate_requests_total{method=\"GET\",route=\"api\",status=\"200\"}", 1.0),
        ("authgate_requests_total{method=\"POST\",route=\"auth\",status=\"200\"}", 3.0),
        ("authgate_requests_total{method=\"POST\",route=\"auth\",status=\"400\"}", 1.0),
        ("authgate_upstream_duration_seconds_count{upstream=\"app\"}", 1.0),
        ("authgate_request_duration_seconds_count{route=\"api\"}", 2.0),
        ("authgate_provider_request_duration_seconds_count{endpoint=\"token\",provider=\"kakao\"}", 1.0),
        ("authgate_provider_request_duration_seconds_count{endpoint=\"userinfo\",provider=\"kakao\"}", 1.0),
        ("authgate_requests_in_flight", 0.0),
    ] {
        assert_eq!(metric(&scrape, series), Some(value), "{series} in\n{scrape}");
    }
    assert!(scrape.contains(&format!(
        "authgate_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));

    // One JSON access record per request, with the fields and without the query.
    let log = gw.log();
    let records: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "authgate::access")
        .collect();
    let orders = records
        .iter()
        .find(|r| r["route"] == "api" && r["status"] == 200)
        .expect("an access record for /api/orders");
    for field in [
        "request_id",
        "client_ip",
        "method",
        "latency_ms",
        "upstream",
        "user_id",
    ] {
        assert!(orders.get(field).is_some(), "{field} missing from {orders}");
    }
    assert_eq!(orders["path"], "/api/orders");
    assert_eq!(orders["upstream"], "app");
    assert_eq!(orders["client_ip"], "127.0.0.1");
    assert!(records.len() >= 108, "{} records", records.len());
    for secret in [
        access,
        refresh,
        access2,
        rotated["refresh_token"].as_str().unwrap(),
        code.as_str(),
        CLIENT_SECRET,
        SECRET,
        "cookie-value-123",
        "secret_query",
    ] {
        assert!(!log.contains(secret), "the log contains a secret: {secret}");
    }
    // The JWT's signature part alone must not appear either.
    assert!(!log.contains(access.rsplit('.').next().unwrap()));
}

#[tokio::test]
async fn control_characters_in_logged_values_are_escaped() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&format!(
        "[jwt]\nsecret = \"{{secret}}\"\n[[upstreams]]\nname = \"app\"\naddrs = [\"{}\"]\n\
         [[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"public\"\n",
        up.addr
    ))
    .await;
    // A raw ESC and a fake log line in the target: refused, and logged escaped.
    let r = gw
        .send("GET /x\x1b[31mred\\\"\x7f HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    let log = gw.log();
    assert!(
        !log.contains('\x1b') && !log.contains('\x7f'),
        "raw control characters reached the log"
    );
}
