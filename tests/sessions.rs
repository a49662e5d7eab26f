//! Browser sessions over sockets: what the real-browser tests (`tests/browser.rs`) show, in the
//! corners a browser cannot easily reach: cookie names behind https, every CSRF spelling, every
//! way to log out, the rotated cookies on every kind of answer, and revocation sync across two
//! instances under a burst of logouts.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

async fn login_setup(
    auth_extra: &str,
    server_extra: &str,
) -> (Gateway, FakeKakao, Upstream, tempfile::TempDir) {
    login_setup_edited(auth_extra, server_extra, |c| c).await
}

async fn login_setup_edited(
    auth_extra: &str,
    server_extra: &str,
    edit: impl Fn(String) -> String,
) -> (Gateway, FakeKakao, Upstream, tempfile::TempDir) {
    let fake = fake_kakao(&[REDIRECT_URI]).await;
    let up = Upstream::start("app").await;
    let db = tempfile::tempdir().unwrap();
    let config = login_config(&fake, &up, &sqlite_url(db.path()), auth_extra, "");
    let gw = Gateway::start_with(&edit(config), server_extra).await;
    (gw, fake, up, db)
}

/// The browser flow for Ryan: returns the session cookies as one `Cookie` value and the
/// callback's answer.
async fn browser_login(
    gw: &Gateway,
    fake: &FakeKakao,
    headers: &[(&str, &str)],
) -> (String, RawResponse) {
    let r = gw
        .get("/api/auth/kakao/login?next=/web/home", headers)
        .await;
    assert_eq!(r.status, 302, "{}", r.text());
    let state = cookies(&r);
    let back = approve(fake, r.header("location").unwrap(), RYAN).await;
    let callback = back.strip_prefix("http://app.test").unwrap().to_string();
    let mut with_state: Vec<(&str, &str)> = headers.to_vec();
    with_state.push(("Cookie", &state));
    let r = gw.get(&callback, &with_state).await;
    assert_eq!(r.status, 302, "{}", r.text());
    (cookies(&r), r)
}

fn expired_for_ryan() -> String {
    let mut c = claims();
    c["sub"] = json!("1");
    c["exp"] = json!(now() - 600);
    c["iat"] = json!(now() - 2400);
    hs256(&c)
}

/// 6. Behind https the cookies are `__Host-` (Secure, Path=/, no Domain), and only those are
/// read: a plain `authgate_access` planted by a sibling subdomain is nobody.
#[tokio::test]
async fn over_https_cookies_are_host_only_and_planted_ones_are_ignored() {
    let (gw, fake, up, _db) = login_setup("", "trusted_proxies = [\"127.0.0.1/32\"]").await;
    let https = [("X-Forwarded-Proto", "https")];
    let (jar, r) = browser_login(&gw, &fake, &https).await;
    let set = r.set_cookies();
    for name in ["__Host-authgate_access=", "__Host-authgate_refresh="] {
        let c = set
            .iter()
            .find(|c| c.starts_with(name))
            .unwrap_or_else(|| panic!("{set:?}"));
        assert!(
            c.contains("; Secure") && c.contains("Path=/;") && !c.contains("Domain"),
            "{c}"
        );
    }
    assert!(jar.contains("__Host-authgate_access="), "{jar}");
    let r = gw
        .get(
            "/web/home",
            &[("X-Forwarded-Proto", "https"), ("Cookie", &jar)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        !up.last()
            .headers
            .iter()
            .any(|(_, v)| v.contains("authgate_")),
        "{:?}",
        up.last().headers
    );
    // A sibling subdomain can set `authgate_access` for the parent domain, never `__Host-`.
    let planted = format!("authgate_access={}", hs256(&claims()));
    gw.get(
        "/api/orders",
        &[("X-Forwarded-Proto", "https"), ("Cookie", &planted)],
    )
    .await
    .assert_gateway_error(401, "UNAUTHORIZED");
    // On plain http (the dev demo) the plain names are the ones.
    let (plain, _) = browser_login(&gw, &fake, &[]).await;
    assert!(plain.starts_with("authgate_access="), "{plain}");
}

/// 6. Cookie-authenticated writes must come from our own pages; bearer ones are unaffected.
#[tokio::test]
async fn cookie_authenticated_writes_need_a_same_origin_request() {
    let (gw, fake, up, _db) =
        login_setup("allowed_redirect_origins = [\"https://app.example\"]", "").await;
    let (jar, _) = browser_login(&gw, &fake, &[]).await;
    let post = |extra: Vec<(&'static str, String)>| {
        let gw = &gw;
        let jar = jar.clone();
        async move {
            let mut h: Vec<(&str, &str)> = vec![("Cookie", jar.as_str())];
            h.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
            gw.send(&request("POST", "/api/transfer", &h, "{}")).await
        }
    };
    for refused in [
        vec![],
        vec![("Sec-Fetch-Site", "same-site".to_string())],
        vec![("Sec-Fetch-Site", "cross-site".to_string())],
        vec![("Origin", "http://evil.example".to_string())],
        vec![("Origin", "null".to_string())],
        vec![("Origin", "http://gateway.test.evil.example".to_string())],
        vec![("Origin", "https://gateway.test".to_string())],
        vec![
            ("Sec-Fetch-Site", "same-site".to_string()),
            ("Origin", "http://sibling.gateway.test".to_string()),
        ],
    ] {
        post(refused.clone())
            .await
            .assert_gateway_error(403, "CSRF_REJECTED");
    }
    assert_eq!(up.count(), 0, "a forged write reached the upstream");
    for allowed in [
        vec![("Sec-Fetch-Site", "same-origin".to_string())],
        vec![("Sec-Fetch-Site", "none".to_string())],
        vec![("Origin", "http://gateway.test".to_string())],
        vec![("Origin", "HTTP://Gateway.Test".to_string())],
        vec![("Origin", "https://app.example".to_string())],
    ] {
        assert_eq!(post(allowed.clone()).await.status, 200, "{allowed:?}");
    }
    // Safe methods with the cookie, and writes with a bearer token, never need it.
    assert_eq!(gw.get("/api/orders", &[("Cookie", &jar)]).await.status, 200);
    let r = gw
        .send(&request(
            "DELETE",
            "/api/orders/1",
            &[
                ("Authorization", &bearer(&hs256(&claims()))),
                ("Origin", "http://evil.example"),
            ],
            "",
        ))
        .await;
    assert_eq!(r.status, 200);
}

/// 3. Logout works whatever the browser holds, and the clearing cookies always go.
#[tokio::test]
async fn logout_works_with_an_expired_token_a_refresh_token_or_nothing_usable() {
    let (gw, fake, _up, _db) = login_setup("", "").await;
    let is_cleared = |r: &RawResponse| {
        let set = r.set_cookies();
        set.iter()
            .any(|c| c.starts_with("authgate_access=;") && c.contains("Max-Age=0"))
            && set
                .iter()
                .any(|c| c.starts_with("authgate_refresh=;") && c.contains("Max-Age=0"))
    };
    // An expired (correctly signed) bearer token, as the seed's client sends after idling.
    let tokens = seed_login_with_state(&gw, &fake).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let mut old = claims();
    old["sub"] = json!("1");
    old["exp"] = json!(now() - 3600);
    let r = post_logout(&gw, &bearer(&hs256(&old))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(is_cleared(&r));
    post_refresh(&gw, &refresh)
        .await
        .assert_gateway_error(400, "INVALID_REFRESH_TOKEN");

    // The refresh cookie alone.
    let (jar, _) = browser_login(&gw, &fake, &[]).await;
    let refresh_cookie = jar
        .split("; ")
        .find(|c| c.starts_with("authgate_refresh="))
        .unwrap();
    let r = gw
        .send(&request(
            "POST",
            "/api/auth/logout",
            &[("Cookie", refresh_cookie)],
            "",
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(is_cleared(&r));
    let value = refresh_cookie.trim_start_matches("authgate_refresh=");
    post_refresh(&gw, value)
        .await
        .assert_gateway_error(400, "INVALID_REFRESH_TOKEN");

    // `{"refresh_token"}` in the body, with a forged access token beside it.
    let tokens = seed_login_with_state(&gw, &fake).await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let r = gw
        .send(&json_post(
            "/api/auth/logout",
            &json!({ "refresh_token": refresh }),
            &[("Authorization", "Bearer forged.token.here")],
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    post_refresh(&gw, refresh)
        .await
        .assert_gateway_error(400, "INVALID_REFRESH_TOKEN");

    // Nothing usable: refused, and still the browser's cookies are cleared.
    let r = gw.send(&request("POST", "/api/auth/logout", &[], "")).await;
    r.assert_gateway_error(401, "UNAUTHORIZED");
    assert!(is_cleared(&r));
    let r = post_logout(&gw, "Bearer forged.token.here").await;
    r.assert_gateway_error(401, "INVALID_TOKEN");
    assert!(is_cleared(&r));
}

/// Login through `login-url` and the POST callback with the state and its cookie.
async fn seed_login_with_state(gw: &Gateway, fake: &FakeKakao) -> serde_json::Value {
    let r = gw.get("/api/auth/kakao/login-url", &[]).await;
    let jar = cookies(&r);
    let login_url = r.json()["login_url"].as_str().unwrap().to_string();
    let back = approve(fake, &login_url, RYAN).await;
    let r = gw
        .send(&json_post(
            "/api/auth/kakao/callback",
            &json!({"code": query_param(&back, "code"), "state": query_param(&back, "state")}),
            &[("Cookie", &jar)],
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// 1. A refresh rotated for a request the gateway then answers itself (here a 429) still hands
/// the browser its new cookies: the old refresh token is spent.
#[tokio::test]
async fn rotated_cookies_go_with_the_gateways_own_answers() {
    let (gw, fake, _up, _db) = login_setup_edited("refresh_reuse_grace_seconds = 0", "", |c| {
        c.replace(
            "[rate_limit]",
            "[rate_limit]\nuser_per_minute = 1\nuser_burst = 1",
        )
    })
    .await;
    let (jar, _) = browser_login(&gw, &fake, &[]).await;
    let refresh = jar
        .split("; ")
        .find(|c| c.starts_with("authgate_refresh="))
        .unwrap()
        .to_string();
    // Spend Ryan's one request, then arrive with an expired access cookie: the refresh
    // happens, the user limit refuses, and the 429 carries the rotated cookies.
    assert_eq!(gw.get("/web/a", &[("Cookie", &jar)]).await.status, 200);
    let expired = format!("authgate_access={}; {refresh}", expired_for_ryan());
    let r = gw
        .get("/web/b", &[("Cookie", &expired), ("Accept", "text/html")])
        .await;
    r.assert_gateway_error(429, "RATE_LIMIT_EXCEEDED");
    let renewed = cookies(&r);
    assert!(
        renewed.contains("authgate_access=") && renewed.contains("authgate_refresh="),
        "{r:?}"
    );
    assert!(!renewed.contains(&refresh), "a new refresh token");
}

/// 5. Two instances on one PostgreSQL; a few hundred logouts at once, spread over both: every
/// revoked token is refused by both within two seconds.
#[tokio::test]
async fn a_burst_of_logouts_on_two_instances_is_seen_by_both_within_two_seconds() {
    let Some(pg) = postgres_url() else {
        eprintln!("AUTHGATE_TEST_POSTGRES_URL unset: skipped");
        return;
    };
    let fake = fake_kakao(&[REDIRECT_URI]).await;
    let up = Upstream::start("app").await;
    let config = login_config(&fake, &up, &pg, "", "")
        .replace(
            "busy_timeout_ms = 300",
            "busy_timeout_ms = 5000\nmax_connections = 16",
        )
        // 600 refused tokens from one address below: this test is about revocation only.
        .replace(
            "auth_burst = 100000",
            "auth_burst = 100000\nip_burst = 100000",
        );
    let a = Gateway::start(&config).await;
    let b = Gateway::start(&a.rest_config()).await;
    let tokens: Vec<String> = (0..300)
        .map(|i| {
            let mut c = claims();
            c["sub"] = json!(format!("{}", 900_000 + i));
            bearer(&hs256(&c))
        })
        .collect();
    // Both accept every token before.
    for t in tokens.iter().step_by(50) {
        assert_eq!(a.get("/api/x", &[("Authorization", t)]).await.status, 200);
        assert_eq!(b.get("/api/x", &[("Authorization", t)]).await.status, 200);
    }
    let started = Instant::now();
    let logouts: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let addr = if i % 2 == 0 { a.addr } else { b.addr };
            let req = request("POST", "/api/auth/logout", &[("Authorization", t)], "");
            tokio::spawn(async move { raw(addr, &req).await.status })
        })
        .collect();
    for l in logouts {
        assert_eq!(l.await.unwrap(), 200);
    }
    let all_logged_out = started.elapsed();
    // Within two seconds of the last logout, both refuse every one of them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut passed = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        for (name, gw) in [("a", &a), ("b", &b)] {
            let r = gw.get("/api/x", &[("Authorization", t)]).await;
            if r.status != 401 || r.json()["error"] != "TOKEN_REVOKED" {
                passed.push((i, name, r.status));
            }
        }
    }
    assert!(
        passed.is_empty(),
        "{} revoked tokens still passed 2 s after the logouts ({all_logged_out:?}), e.g. {:?}",
        passed.len(),
        &passed[..passed.len().min(10)]
    );
}

/// A WebSocket is a GET, but a two-way channel: authenticated by the cookie, it must come from a
/// page of ours (cross-site WebSocket hijacking).
#[tokio::test]
async fn cookie_authenticated_websockets_need_a_same_origin_page() {
    let (gw, fake, up, _db) = login_setup("", "").await;
    let (jar, _) = browser_login(&gw, &fake, &[]).await;
    let upgrade = |origin: &'static str| {
        let (gw, jar) = (&gw, jar.clone());
        async move {
            let req = format!(
                "GET /api/socket HTTP/1.1\r\nHost: gateway.test\r\nConnection: Upgrade\r\n\
                 Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {origin}\r\nCookie: {jar}\r\n\r\n"
            );
            let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut s, req.as_bytes())
                .await
                .unwrap();
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(
                Duration::from_secs(10),
                tokio::io::AsyncReadExt::read(&mut s, &mut buf),
            )
            .await
            .unwrap()
            .unwrap();
            parse_response(&buf[..n])
        }
    };
    upgrade("http://sibling.gateway.test")
        .await
        .assert_gateway_error(403, "CSRF_REJECTED");
    assert_eq!(up.count(), 0);
    assert_eq!(upgrade("http://gateway.test").await.status, 101);
}

/// Behind a chain of trusted proxies the scheme is the nearest one's: the last value.
#[tokio::test]
async fn the_scheme_is_the_nearest_trusted_proxys() {
    let (gw, _fake, _up, _db) = login_setup("", "trusted_proxies = [\"127.0.0.1/32\"]").await;
    let state_cookie = |proto: &'static str| {
        let gw = &gw;
        async move {
            let r = gw
                .get("/api/auth/kakao/login-url", &[("X-Forwarded-Proto", proto)])
                .await;
            r.set_cookies()[0].split('=').next().unwrap().to_string()
        }
    };
    assert_eq!(state_cookie("https").await, "__Host-authgate_state");
    assert_eq!(state_cookie("http, https").await, "__Host-authgate_state");
    assert_eq!(state_cookie("HTTPS").await, "__Host-authgate_state");
    assert_eq!(state_cookie("https, http").await, "authgate_state");
    assert_eq!(state_cookie("ftp").await, "authgate_state");
}

/// A logout that only has a refresh token ends that session, not the user's others.
#[tokio::test]
async fn a_logout_by_refresh_token_ends_only_its_own_session() {
    let (gw, fake, _up, _db) = login_setup("", "").await;
    let laptop = seed_login_with_state(&gw, &fake).await;
    let phone = seed_login_with_state(&gw, &fake).await;
    let r = gw
        .send(&json_post(
            "/api/auth/logout",
            &json!({ "refresh_token": laptop["refresh_token"] }),
            &[],
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    post_refresh(&gw, laptop["refresh_token"].as_str().unwrap())
        .await
        .assert_gateway_error(400, "INVALID_REFRESH_TOKEN");
    assert_eq!(
        post_refresh(&gw, phone["refresh_token"].as_str().unwrap())
            .await
            .status,
        200,
        "the phone's session goes on"
    );
    // An access token too old to have come with any live refresh token identifies nobody.
    let mut ancient = claims();
    ancient["sub"] = json!("1");
    ancient["exp"] = json!(now() - 8 * 86_400);
    post_logout(&gw, &bearer(&hs256(&ancient)))
        .await
        .assert_gateway_error(401, "TOKEN_EXPIRED");
}

/// Rotated cookies never ride on an informational answer, which browsers ignore: an upstream
/// that sends 103 Early Hints before its answer still hands the browser its new session.
#[tokio::test]
async fn rotated_cookies_skip_informational_answers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let early_hints = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n\
                          HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    let fake = fake_kakao(&[REDIRECT_URI]).await;
    let db = tempfile::tempdir().unwrap();
    let up = Upstream::start("unused").await;
    let config = login_config(
        &fake,
        &up,
        &sqlite_url(db.path()),
        "refresh_reuse_grace_seconds = 0",
        "",
    )
    .replace(&up.addr.to_string(), &early_hints.to_string());
    let gw = Gateway::start(&config).await;
    let (jar, _) = browser_login(&gw, &fake, &[]).await;
    let refresh = jar
        .split("; ")
        .find(|c| c.starts_with("authgate_refresh="))
        .unwrap()
        .to_string();
    let expired = format!("authgate_access={}; {refresh}", expired_for_ryan());
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        format!(
            "GET /web/page HTTP/1.1\r\nHost: gateway.test\r\nAccept: text/html\r\n\
             Cookie: {expired}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&all).into_owned();
    let final_start = text
        .find("HTTP/1.1 200")
        .unwrap_or_else(|| panic!("{text}"));
    let (informational, answer) = text.split_at(final_start);
    assert!(informational.starts_with("HTTP/1.1 103"), "{text}");
    assert!(
        !informational.to_ascii_lowercase().contains("set-cookie"),
        "{text}"
    );
    let answer = parse_response(answer.as_bytes());
    assert!(
        answer
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("authgate_refresh=") && !c.starts_with(&refresh)),
        "{text}"
    );
    assert_eq!(answer.header("cache-control"), Some("private, no-store"));
}
