//! The request pipeline over real sockets: the `authgate` binary in front of recording upstreams.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// Two upstreams: `app` behind `/`, `/api` (required), `/api/public` (public), `/maybe`
/// (optional), `/web` (redirect), and `admin` behind `/api/admin`.
fn two_upstreams(app: &Upstream, admin: &Upstream) -> String {
    format!(
        r#"
[jwt]
secret = "{{secret}}"
[[upstreams]]
name = "app"
addrs = ["{app}"]
read_timeout_ms = 800
[[upstreams]]
name = "admin"
addrs = ["{admin}"]
[[routes]]
name = "root"
path_prefix = "/"
upstream = "app"
auth = "public"
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "app"
auth = "required"
[[routes]]
name = "public"
path_prefix = "/api/public"
upstream = "app"
auth = "public"
[[routes]]
name = "admin"
path_prefix = "/api/admin"
upstream = "admin"
auth = "required"
[[routes]]
name = "maybe"
path_prefix = "/maybe"
upstream = "app"
auth = "optional"
[[routes]]
name = "web"
path_prefix = "/web"
upstream = "app"
auth = "required"
on_unauthenticated = "redirect"
"#,
        app = app.addr,
        admin = admin.addr
    )
}

async fn setup() -> (Gateway, Upstream, Upstream) {
    let app = Upstream::start("app").await;
    let admin = Upstream::start("admin").await;
    let gw = Gateway::start(&two_upstreams(&app, &admin)).await;
    (gw, app, admin)
}

const IDENTITY: [&str; 4] = [
    "X-User-Id",
    "X-User-Email",
    "X-User-Nickname",
    "X-User-Provider",
];

#[tokio::test]
async fn public_route_is_forwarded_without_a_token_and_forged_identity_is_stripped() {
    let (gw, app, _) = setup().await;
    let r = gw
        .get(
            "/api/public/items?x=1",
            &[
                ("X-User-Id", "1"),
                ("X-Auth-Request-Email", "boss@corp"),
                ("X-Original-URL", "/api/admin"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["upstream"], "app");
    let seen = app.last();
    assert_eq!(seen.target, "/api/public/items?x=1");
    for h in IDENTITY
        .iter()
        .chain(&["X-Auth-Request-Email", "X-Original-URL"])
    {
        assert!(
            seen.all(h).is_empty(),
            "{h} reached the upstream: {:?}",
            seen.headers
        );
    }
    assert!(seen.one("X-Request-Id").is_some());
    assert_eq!(seen.one("X-Forwarded-For"), Some("127.0.0.1"));
    assert_eq!(seen.one("X-Forwarded-Proto"), Some("http"));
    assert_eq!(seen.one("X-Forwarded-Host"), Some("gateway.test"));
}

#[tokio::test]
async fn forwarding_headers_are_the_gateways_own_unless_a_trusted_proxy_sent_them() {
    let (gw, app, admin) = setup().await;
    let r = gw
        .get(
            "/api/public/x",
            &[
                ("X-Forwarded-For", "203.0.113.9"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "evil.example"),
                ("Forwarded", "for=203.0.113.9;proto=https"),
                ("X-Real-IP", "203.0.113.9"),
                ("X-Request-Id", "first"),
                ("X-Request-Id", "second"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = app.last();
    assert_eq!(seen.one("X-Forwarded-For"), Some("127.0.0.1"));
    assert_eq!(seen.one("X-Forwarded-Proto"), Some("http"));
    assert_eq!(seen.one("X-Forwarded-Host"), Some("gateway.test"));
    assert!(seen.all("Forwarded").is_empty(), "{:?}", seen.headers);
    assert!(seen.all("X-Real-IP").is_empty(), "{:?}", seen.headers);
    // Two ids are not one acceptable id: a fresh one replaces both, and the client gets it.
    let id = seen.one("X-Request-Id").unwrap();
    assert!(id.len() == 32 && id != "first" && id != "second", "{id}");
    assert_eq!(r.header("x-request-id"), Some(id));

    // Behind a trusted proxy its chain is extended and what it said is kept.
    let trusted = Gateway::start_with(
        &two_upstreams(&app, &admin),
        "trusted_proxies = [\"127.0.0.1/32\"]",
    )
    .await;
    let r = trusted
        .get(
            "/api/public/x",
            &[
                ("X-Forwarded-For", "198.51.100.1"),
                ("X-Forwarded-For", "198.51.100.2"),
                ("X-Forwarded-Proto", "https"),
                ("Forwarded", "for=198.51.100.2"),
                ("X-Real-IP", "198.51.100.2"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = app.last();
    // The chain is the client (the rightmost hop that is not a trusted proxy) and the proxies:
    // what the client wrote further left is not passed on.
    assert_eq!(seen.one("X-Forwarded-For"), Some("198.51.100.2, 127.0.0.1"));
    assert_eq!(seen.one("X-Forwarded-Proto"), Some("https"));
    assert_eq!(seen.one("Forwarded"), Some("for=198.51.100.2"));
    assert_eq!(seen.one("X-Real-IP"), Some("198.51.100.2"));
}

#[tokio::test]
async fn protected_route_needs_a_valid_token() {
    let (gw, app, _) = setup().await;

    let r = gw.get("/api/orders", &[]).await;
    r.assert_gateway_error(401, "UNAUTHORIZED");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"authgate\"")
    );

    let r = gw
        .get("/api/orders", &[("Authorization", "Bearer not.a.jwt")])
        .await;
    r.assert_gateway_error(401, "INVALID_TOKEN");
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"invalid_token\""));
    let r = gw
        .get("/api/orders", &[("Authorization", "Basic dXNlcjpwYXNz")])
        .await;
    r.assert_gateway_error(401, "INVALID_TOKEN");
    assert_eq!(app.count(), 0, "a refused request reached the upstream");

    let r = gw
        .get(
            "/api/orders",
            &[("Authorization", &bearer(&hs256(&claims())))],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(app.count(), 1);
}

#[tokio::test]
async fn upstream_sees_exactly_one_verified_copy_of_each_identity_header() {
    let (gw, app, _) = setup().await;
    let token = hs256(&claims());
    let forged = [
        ("Authorization", bearer(&token)),
        ("X-User-Id", "1".to_string()),
        ("x-user-id", "2".to_string()),
        ("X_User_Id", "3".to_string()),
        ("X-User-Id", "4".to_string()),
        ("X-User-Email", "admin@corp.example".to_string()),
        ("x_user_email", "root@corp.example".to_string()),
        ("X-User-Nickname", "Admin".to_string()),
        ("X-User-Provider", "local".to_string()),
        ("X-User-Role", "admin".to_string()),
        ("X-Forwarded-User", "admin".to_string()),
        ("X-Forwarded-For", "10.0.0.1".to_string()),
    ];
    let headers: Vec<(&str, &str)> = forged.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = gw.get("/api/me", &headers).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = app.last();
    for (name, expected) in [
        ("X-User-Id", "42"),
        ("X-User-Email", "user42@example.com"),
        ("X-User-Nickname", "Forty Two"),
        ("X-User-Provider", "kakao"),
    ] {
        let values: Vec<&str> = seen
            .all(name)
            .into_iter()
            .chain(seen.all(&name.replace('-', "_")))
            .collect();
        assert_eq!(values, vec![expected], "{name}: {:?}", seen.headers);
    }
    assert!(seen.all("X-User-Role").is_empty());
    assert!(seen.all("X-Forwarded-User").is_empty());
    // A client that is not a trusted proxy cannot plant an address in the chain.
    assert_eq!(seen.one("X-Forwarded-For"), Some("127.0.0.1"));
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused_before_the_upstream() {
    let (gw, app, _) = setup().await;
    let with = |k: &str, v: serde_json::Value| {
        let mut c = claims();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    use base64::Engine;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims())
    );
    let hs384 = sign(
        jsonwebtoken::Algorithm::HS384,
        &claims(),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    );
    let rsa_key =
        jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(fixture("rs256-2048.pem")).unwrap())
            .unwrap();
    let rs256 = sign(jsonwebtoken::Algorithm::RS256, &claims(), &rsa_key);
    let other_secret = sign(
        jsonwebtoken::Algorithm::HS256,
        &claims(),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-that-is-long-enough-000"),
    );

    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", alg_none, "INVALID_TOKEN"),
        ("HS384", hs384, "INVALID_TOKEN"),
        ("RS256", rs256, "INVALID_TOKEN"),
        ("other secret", other_secret, "INVALID_TOKEN"),
        (
            "expired",
            hs256(&with("exp", json!(now() - 3600))),
            "TOKEN_EXPIRED",
        ),
        (
            "future nbf",
            hs256(&with("nbf", json!(now() + 3600))),
            "INVALID_TOKEN",
        ),
        (
            "wrong iss",
            hs256(&with("iss", json!("evil"))),
            "INVALID_TOKEN",
        ),
        (
            "wrong aud",
            hs256(&with("aud", json!("other-app"))),
            "INVALID_TOKEN",
        ),
        (
            "refresh type",
            hs256(&with("type", json!("refresh"))),
            "INVALID_TOKEN",
        ),
        ("missing jti", hs256(&without("jti")), "INVALID_TOKEN"),
        ("missing sub", hs256(&without("sub")), "INVALID_TOKEN"),
    ];
    for (what, token, code) in &cases {
        let r = gw
            .get("/api/orders", &[("Authorization", &bearer(token))])
            .await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        r.assert_gateway_error(401, code);
    }
    let good = bearer(&hs256(&claims()));
    let r = gw
        .get(
            "/api/orders",
            &[("Authorization", &good), ("Authorization", &good)],
        )
        .await;
    r.assert_gateway_error(401, "INVALID_TOKEN");
    assert_eq!(
        app.count(),
        0,
        "a refused token reached the upstream: {:?}",
        app.seen()
    );
}

#[tokio::test]
async fn optional_routes_forward_anonymous_requests_but_refuse_bad_tokens() {
    let (gw, app, _) = setup().await;
    let r = gw.get("/maybe", &[("X-User-Id", "7")]).await;
    assert_eq!(r.status, 200);
    assert!(app.last().all("X-User-Id").is_empty());
    let r = gw
        .get("/maybe", &[("Authorization", &bearer(&hs256(&claims())))])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(app.last().one("X-User-Id"), Some("42"));
    let r = gw
        .get("/maybe", &[("Authorization", "Bearer garbage")])
        .await;
    r.assert_gateway_error(401, "INVALID_TOKEN");
    assert_eq!(app.count(), 2);
}

#[tokio::test]
async fn browsers_are_redirected_to_login_and_api_clients_get_401() {
    let (gw, app, _) = setup().await;
    let r = gw
        .get(
            "/web/dashboard?tab=1",
            &[("Accept", "text/html,application/xhtml+xml")],
        )
        .await;
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some("/api/auth/login?next=/web/dashboard%3Ftab%3D1")
    );
    // No provider is configured here: the login page says so rather than failing.
    let page = gw.get("/api/auth/login?next=/web/dashboard", &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("No identity provider is configured"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = gw
        .get("/web/dashboard", &[("Accept", "application/json")])
        .await;
    r.assert_gateway_error(401, "UNAUTHORIZED");
    let r = gw
        .send(&request(
            "POST",
            "/web/form",
            &[("Accept", "text/html")],
            "",
        ))
        .await;
    r.assert_gateway_error(401, "UNAUTHORIZED");
    assert_eq!(app.count(), 0);
}

#[tokio::test]
async fn ambiguous_targets_get_400_and_never_reach_the_upstream() {
    let (gw, app, admin) = setup().await;
    let token = bearer(&hs256(&claims()));
    for target in [
        "/api/public/../admin",
        "/api/public/./x",
        "/api/public/%2e%2e/admin",
        "/api/public/%2E%2E/admin",
        "/api/public/.%2e/admin",
        "/api/public%2f..%2fadmin",
        "/api/public%2Fx",
        "/api/public%5cx",
        "/api/public\\x",
        "/api/public/%00",
        "/api/public/a%0d%0aX-User-Id:%201",
        "/api/public/x#frag",
        "/api/public/x;jsessionid=1",
        "/api/public//admin",
        "/api/%61dmin",
        "/api/public/%252e%252e/admin",
        "/api/public/%zz",
    ] {
        let r = gw.get(target, &[("Authorization", &token)]).await;
        assert_eq!(r.status, 400, "{target}: {}", r.text());
        r.assert_gateway_error(400, "BAD_REQUEST");
    }
    // A raw control character in the request line.
    let r = gw
        .send("GET /api/public/a\x01b HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n")
        .await;
    assert!(r.status == 400, "{r:?}");
    assert_eq!(
        app.count() + admin.count(),
        0,
        "app saw {:?}, admin saw {:?}",
        app.seen(),
        admin.seen()
    );
    // The query never takes part, and may hold what the path may not.
    let r = gw.get("/api/public/x?redirect=../../a;b", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(app.last().target, "/api/public/x?redirect=../../a;b");
}

#[tokio::test]
async fn unknown_paths_get_404_and_wrong_methods_405_json() {
    let app = Upstream::start("app").await;
    let gw = Gateway::start(&format!(
        "[jwt]\nsecret = \"{{secret}}\"\n[[upstreams]]\nname = \"app\"\naddrs = [\"{}\"]\n\
         [[routes]]\nname = \"reads\"\npath_prefix = \"/api\"\nmethods = [\"GET\"]\nupstream = \"app\"\nauth = \"public\"\n",
        app.addr
    ))
    .await;
    gw.get("/other", &[])
        .await
        .assert_gateway_error(404, "NOT_FOUND");
    gw.get("/apix", &[])
        .await
        .assert_gateway_error(404, "NOT_FOUND");
    let r = gw.send(&request("DELETE", "/api/x", &[], "")).await;
    r.assert_gateway_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(gw.get("/api/x", &[]).await.status, 200);
    assert_eq!(app.count(), 1);
}

#[tokio::test]
async fn longest_prefix_routes_across_two_upstreams() {
    let (gw, app, admin) = setup().await;
    let token = bearer(&hs256(&claims()));
    for (path, expected) in [
        ("/api/admin/users", "admin"),
        ("/api/admin", "admin"),
        ("/api/administrator", "app"),
        ("/api/orders", "app"),
        ("/apix", "app"),
        ("/", "app"),
    ] {
        let r = gw.get(path, &[("Authorization", &token)]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.json()["upstream"], expected, "{path}");
        assert_eq!(r.json()["target"], path);
    }
    assert_eq!((app.count(), admin.count()), (4, 2));
}

fn one_upstream(addrs: &[std::net::SocketAddr], extra: &str) -> String {
    let addrs: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[jwt]\nsecret = \"{{secret}}\"\n[[upstreams]]\nname = \"app\"\naddrs = [{}]\n{extra}\n\
         [[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"public\"\n",
        addrs.join(", ")
    )
}

#[tokio::test]
async fn requests_are_spread_round_robin_over_backends() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = Gateway::start(&one_upstream(&[a.addr, b.addr], "")).await;
    let mut names = Vec::new();
    for _ in 0..6 {
        let r = gw.get("/x", &[]).await;
        assert_eq!(r.status, 200);
        names.push(r.json()["upstream"].as_str().unwrap().to_string());
    }
    assert_eq!((a.count(), b.count()), (3, 3), "{names:?}");
    assert!(
        names.windows(2).all(|w| w[0] != w[1]),
        "not alternating: {names:?}"
    );
}

#[tokio::test]
async fn a_refusing_backend_is_retried_for_idempotent_methods_only() {
    let (good, bad) = (Upstream::start("good").await, Upstream::start("bad").await);
    // Health checks are slow here so the stopped backend still looks healthy.
    let gw = Gateway::start(&one_upstream(
        &[good.addr, bad.addr],
        "health_check_interval_ms = 3600000",
    ))
    .await;
    // The one health check has passed for both; only then does the backend go away.
    good.wait_health_checked().await;
    bad.wait_health_checked().await;
    bad.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..4 {
        let r = gw.get("/x", &[]).await;
        assert_eq!(
            r.status,
            200,
            "GET should be retried on the good backend: {}",
            r.text()
        );
        assert_eq!(r.json()["upstream"], "good");
    }
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = gw.send(&request("POST", "/x", &[], "{}")).await;
        statuses.push(r.status);
        if r.status != 200 {
            r.assert_gateway_error(502, "UPSTREAM_UNAVAILABLE");
            assert!(!r.text().contains("127.0.0.1"), "{}", r.text());
        }
    }
    assert!(
        statuses.contains(&502),
        "a POST to the refusing backend must not be retried: {statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
}

#[tokio::test]
async fn upstream_down_gives_502_then_503_once_health_checks_notice() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&one_upstream(&[up.addr], "health_check_interval_ms = 300")).await;
    assert_eq!(gw.get("/x", &[]).await.status, 200);
    assert_eq!(gw.admin_get("/readyz").await.status, 200);
    up.stop();
    let port = up.addr.port().to_string();
    let first = gw.get("/x", &[]).await;
    assert!(matches!(first.status, 502 | 503), "{first:?}");
    first.assert_gateway_error(first.status, "UPSTREAM_UNAVAILABLE");
    assert!(!first.text().contains(&port));
    // Within a few checks the backend is marked down: 503 and not ready.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = gw.get("/x", &[]).await;
        if r.status == 503 {
            r.assert_gateway_error(503, "UPSTREAM_UNAVAILABLE");
            assert!(!r.text().contains(&port) && !r.text().contains("127.0.0.1"));
            break;
        }
        assert!(Instant::now() < deadline, "never 503: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = gw.admin_get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.json()["upstreams_without_healthy_backend"],
        json!(["app"])
    );
    // It comes back by itself.
    let _up = Upstream::start_on("app", up.addr).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.get("/x", &[]).await.status != 200 {
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gw.admin_get("/readyz").await.status, 200);
}

#[tokio::test]
async fn a_hung_upstream_gives_504() {
    let (gw, app, _) = setup().await;
    let started = Instant::now();
    let r = gw
        .get("/api/public/slow", &[("x-test-delay-ms", "20000")])
        .await;
    r.assert_gateway_error(504, "UPSTREAM_TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(app.count(), 1);
}

#[tokio::test]
async fn request_ids_are_kept_when_well_formed_and_echoed() {
    let (gw, app, _) = setup().await;
    let r = gw.get("/api/public", &[("X-Request-Id", "abc-123")]).await;
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    assert_eq!(app.last().one("X-Request-Id"), Some("abc-123"));
    let r = gw
        .get(
            "/api/public",
            &[("X-Request-Id", "<script>alert(1)</script>")],
        )
        .await;
    let id = r.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(app.last().one("X-Request-Id"), Some(id.as_str()));
    let r = gw.get("/nowhere-but-root-route-is-public", &[]).await;
    assert_eq!(r.status, 200);
    let r = gw.get("/api/orders", &[]).await;
    assert!(
        r.header("x-request-id").is_some(),
        "errors carry the id too"
    );
}

#[tokio::test]
async fn websocket_upgrades_pass_through_on_authenticated_routes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (gw, app, _) = setup().await;
    let token = bearer(&hs256(&claims()));
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "GET /api/ws HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: {token}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"hello through the tunnel").await.unwrap();
    let mut echoed = vec![0u8; 24];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"hello through the tunnel");
    assert_eq!(app.last().one("X-User-Id"), Some("42"));

    // Without a token the upgrade is refused like any request.
    let r = gw
        .send("GET /api/ws HTTP/1.1\r\nHost: gateway.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        .await;
    r.assert_gateway_error(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_turns_readiness_off() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start_with(&one_upstream(&[up.addr], ""), "grace_period_seconds = 3").await;
    assert_eq!(gw.admin_get("/readyz").await.status, 200);
    let addr = gw.addr;
    let in_flight =
        tokio::spawn(async move { raw(addr, &get("/slow", &[("x-test-delay-ms", "1500")])).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    gw.sigterm();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let r = gw.admin_get("/readyz").await;
        if r.status == 503 {
            assert_eq!(r.json()["status"], "draining");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readiness never turned 503: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200, "the in-flight request was cut: {r:?}");
    let mut gw = gw;
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 15 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status:?}\n{}", gw.log());
    assert!(
        sent.elapsed() < Duration::from_secs(3 + 5 + 2),
        "took {:?}",
        sent.elapsed()
    );
}
