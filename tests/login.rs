//! Kakao login and the token lifecycle over sockets: the `authgate` binary, the fake Kakao, a
//! recording upstream, and a real SQLite file or PostgreSQL server.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

struct Setup {
    gw: Gateway,
    fake: FakeKakao,
    up: Upstream,
    store_url: String,
    _db: tempfile::TempDir,
}

async fn setup_with(store_url: Option<&str>, auth_extra: &str, kakao_extra: &str) -> Setup {
    setup_edited(store_url, auth_extra, kakao_extra, |_, config| config).await
}

/// Like [`setup_with`], with a last edit of the config text (given the fake's base URL).
async fn setup_edited(
    store_url: Option<&str>,
    auth_extra: &str,
    kakao_extra: &str,
    edit: impl Fn(&str, String) -> String,
) -> Setup {
    let fake = fake_kakao(&[REDIRECT_URI, "http://other.test/callback"]).await;
    let up = Upstream::start("app").await;
    let db = tempfile::tempdir().unwrap();
    let store_url = store_url
        .map(str::to_string)
        .unwrap_or_else(|| sqlite_url(db.path()));
    let config = login_config(&fake, &up, &store_url, auth_extra, kakao_extra);
    let gw = Gateway::start(&edit(&fake.base_url(), config)).await;
    Setup {
        gw,
        fake,
        up,
        store_url,
        _db: db,
    }
}

/// The seed's single-page client sends only `code`: the documented legacy setting. Reuse is
/// theft at once here (no grace window), as the seed had it; the window has tests of its own.
async fn seed_setup(store_url: Option<&str>) -> Setup {
    setup_with(
        store_url,
        "require_state = false\nrefresh_reuse_grace_seconds = 0",
        "",
    )
    .await
}

async fn journey(s: Setup) {
    let Setup {
        gw,
        fake,
        up,
        store_url,
        _db,
    } = s;
    // login-url carries what Kakao needs.
    let r = gw.get("/api/auth/kakao/login-url", &[]).await;
    assert_eq!(r.status, 200, "{r:?}\n{}", gw.log());
    let login_url = r.json()["login_url"].as_str().unwrap().to_string();
    for (k, v) in [
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT_URI),
        ("response_type", "code"),
    ] {
        assert_eq!(
            query_param(&login_url, k).as_deref(),
            Some(v),
            "{login_url}"
        );
    }
    assert_eq!(
        query_param(&login_url, "scope").as_deref(),
        Some("profile_nickname,profile_image,account_email")
    );
    assert!(query_param(&login_url, "state").is_some());

    let back = approve(&fake, &login_url, RYAN).await;
    let code = query_param(&back, "code").unwrap();
    let r = post_callback(&gw, &code).await;
    assert_eq!(r.status, 200, "{r:?}\n{}", gw.log());
    let tokens = r.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 1800);
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    assert!(
        refresh.len() >= 43 && !refresh.contains('.'),
        "opaque refresh token: {refresh}"
    );

    // profile, with the seed client's headers.
    let auth = bearer(&access);
    let r = gw
        .get(
            "/api/auth/profile",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let p = r.json();
    assert_eq!(p["username"], format!("kakao_{RYAN}"));
    assert_eq!(p["email"], "ryan@kakao.test");
    assert_eq!(p["nickname"], "라이언");
    assert_eq!(p["is_social_user"], true);
    assert_eq!(p["social_provider"], "kakao");
    assert!(p["profile_image"].as_str().unwrap().starts_with("https://"));
    assert!(p["created_at"].as_str().unwrap().ends_with('Z'));
    let user_id = p["id"].as_i64().unwrap();

    // A protected request: the upstream sees the user.
    let r = gw.get("/api/orders", &[("Authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.one("X-User-Id"), Some(user_id.to_string().as_str()));
    assert_eq!(seen.one("X-User-Email"), Some("ryan@kakao.test"));
    assert_eq!(seen.one("X-User-Nickname"), Some("라이언"));
    assert_eq!(seen.one("X-User-Provider"), Some("kakao"));

    // Refresh rotates.
    let r = post_refresh(&gw, &refresh).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rotated = r.json();
    let access2 = rotated["access_token"].as_str().unwrap().to_string();
    let refresh2 = rotated["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh2, refresh);
    assert_ne!(access2, access);

    // The old refresh token again: refused, and the family (refresh2 too) is revoked.
    let r = post_refresh(&gw, &refresh).await;
    r.assert_gateway_error(400, "INVALID_REFRESH_TOKEN");
    let r = post_refresh(&gw, &refresh2).await;
    r.assert_gateway_error(400, "INVALID_REFRESH_TOKEN");

    // Logout revokes the presented access token.
    let auth2 = bearer(&access2);
    let r = post_logout(&gw, &auth2).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["message"].is_string());
    gw.get("/api/orders", &[("Authorization", &auth2)])
        .await
        .assert_gateway_error(401, "TOKEN_REVOKED");
    gw.get("/api/auth/profile", &[("Authorization", &auth2)])
        .await
        .assert_gateway_error(401, "TOKEN_REVOKED");

    // A restart on the same store still refuses it.
    let rest = gw.rest_config();
    drop(gw);
    let gw = Gateway::start(&rest).await;
    gw.get("/api/orders", &[("Authorization", &auth2)])
        .await
        .assert_gateway_error(401, "TOKEN_REVOKED");
    // The first access token was not presented at logout; it still works until it expires.
    assert_eq!(
        gw.get("/api/orders", &[("Authorization", &auth)])
            .await
            .status,
        200
    );
    let store = open_store(&store_url).await;
    assert!(store.count("revoked_tokens").await.unwrap() >= 1);
}

#[tokio::test]
async fn the_seed_clients_whole_journey_on_sqlite() {
    journey(seed_setup(None).await).await;
}

#[tokio::test]
async fn the_seed_clients_whole_journey_on_postgres() {
    let Some(pg) = postgres_url() else {
        eprintln!("AUTHGATE_TEST_POSTGRES_URL unset: skipped");
        return;
    };
    journey(seed_setup(Some(&pg)).await).await;
}

#[tokio::test]
async fn the_browser_flow_uses_state_pkce_and_httponly_cookies() {
    let s = setup_with(None, "refresh_reuse_grace_seconds = 1", "").await;
    let r =
        s.gw.get("/web/dashboard?tab=2", &[("Accept", "text/html")])
            .await;
    assert_eq!(r.status, 302);
    let login = r.header("location").unwrap().to_string();
    let r = s.gw.get(&login, &[]).await;
    assert_eq!(r.status, 302, "{}", r.text());
    let authorize = r.header("location").unwrap().to_string();
    assert_eq!(
        query_param(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let state_cookie = cookies(&r);
    assert!(
        state_cookie.starts_with("authgate_state="),
        "{state_cookie}"
    );
    let set = r.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );

    let back = approve(&s.fake, &authorize, RYAN).await;
    let callback = back.strip_prefix("http://app.test").unwrap().to_string();
    // Without the state cookie (another browser): refused.
    s.gw.get(&callback, &[])
        .await
        .assert_gateway_error(400, "INVALID_STATE");
    let back = approve(&s.fake, &authorize, RYAN).await;
    let callback = back.strip_prefix("http://app.test").unwrap().to_string();
    let r = s.gw.get(&callback, &[("Cookie", &state_cookie)]).await;
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(r.header("location"), Some("/web/dashboard?tab=2"));
    let session = cookies(&r);
    assert!(
        session.contains("authgate_access=") && session.contains("authgate_refresh="),
        "{session}"
    );

    // The cookie authenticates browser requests; the upstream never sees the gateway's cookies.
    let r =
        s.gw.get(
            "/web/dashboard",
            &[("Cookie", &format!("theme=dark; {session}"))],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = s.up.last();
    assert_eq!(seen.one("X-User-Nickname"), Some("라이언"));
    assert_eq!(seen.one("Cookie"), Some("theme=dark"));

    // An expired access cookie with a valid refresh cookie: refreshed on the fly.
    let refresh_cookie = session
        .split("; ")
        .find(|c| c.starts_with("authgate_refresh="))
        .unwrap();
    let mut old = claims();
    old["exp"] = json!(now() - 3600);
    let expired = format!("authgate_access={}; {refresh_cookie}", hs256(&old));
    let r =
        s.gw.get(
            "/web/dashboard",
            &[("Cookie", &expired), ("Accept", "text/html")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let renewed = cookies(&r);
    assert!(
        renewed.contains("authgate_access=") && renewed.contains("authgate_refresh="),
        "{renewed}"
    );
    assert_eq!(s.up.last().one("X-User-Email"), Some("ryan@kakao.test"));
    // Presented again at once (another tab, a lost answer): within the grace window, a new pair.
    let r =
        s.gw.get(
            "/web/dashboard",
            &[("Cookie", &expired), ("Accept", "text/html")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // After the window it is reuse: the family is revoked and the browser must log in again.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r =
        s.gw.get(
            "/web/dashboard",
            &[("Cookie", &expired), ("Accept", "text/html")],
        )
        .await;
    assert_eq!(r.status, 302);
}

#[tokio::test]
async fn state_is_required_by_default_and_must_be_ours() {
    let s = setup_with(None, "", "").await;
    let r = s.gw.get("/api/auth/kakao/login-url", &[]).await;
    let login_url = r.json()["login_url"].as_str().unwrap().to_string();
    // The browser that asked keeps the state as a cookie.
    let jar = cookies(&r);
    assert!(jar.starts_with("authgate_state="), "{jar}");
    assert!(
        query_param(&login_url, "code_challenge").is_some(),
        "PKCE when the state comes back"
    );
    let back = approve(&s.fake, &login_url, RYAN).await;
    let code = query_param(&back, "code").unwrap();
    let r = post_callback(&s.gw, &code).await;
    r.assert_gateway_error(400, "INVALID_STATE");
    let forged =
        s.gw.send(&json_post(
            "/api/auth/kakao/callback",
            &json!({"code": code, "state": "eyJ9.forged"}),
            &[("Cookie", &jar)],
        ))
        .await;
    forged.assert_gateway_error(400, "INVALID_STATE");
    let back = approve(&s.fake, &login_url, RYAN).await;
    let (code, state) = (
        query_param(&back, "code").unwrap(),
        query_param(&back, "state").unwrap(),
    );
    // Whoever holds the callback URL (code and state, from history or a log) but not the
    // browser's state cookie cannot redeem it, by POST or GET, even sending the state as the
    // cookie: the cookie is a secret of its own, and the PKCE verifier comes from it.
    let state_q: String = url::form_urlencoded::byte_serialize(state.as_bytes()).collect();
    let as_cookie = format!("authgate_state={state}");
    for cookie in [None, Some(as_cookie.as_str())] {
        let headers: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
        let stolen =
            s.gw.send(&json_post(
                "/api/auth/kakao/callback",
                &json!({"code": code, "state": state}),
                &headers,
            ))
            .await;
        stolen.assert_gateway_error(400, "INVALID_STATE");
        s.gw.get(
            &format!("/api/auth/kakao/callback?code={code}&state={state_q}"),
            &headers,
        )
        .await
        .assert_gateway_error(400, "INVALID_STATE");
    }
    // The browser that started the login can (the fake consumed nothing yet: state is checked first).
    let r =
        s.gw.send(&json_post(
            "/api/auth/kakao/callback",
            &json!({"code": code, "state": state}),
            &[("Cookie", &jar)],
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Form bodies work too.
    let back = approve(&s.fake, &login_url, RYAN).await;
    let form = format!(
        "code={}&state={}",
        query_param(&back, "code").unwrap(),
        url::form_urlencoded::byte_serialize(query_param(&back, "state").unwrap().as_bytes())
            .collect::<String>()
    );
    let r =
        s.gw.send(&request(
            "POST",
            "/api/auth/kakao/callback",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Cookie", &jar),
            ],
            &form,
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Nothing was written: no user, no refresh token.
async fn assert_nothing_issued(store_url: &str) {
    let store = open_store(store_url).await;
    assert_eq!(store.count("users").await.unwrap(), 0);
    assert_eq!(store.count("refresh_tokens").await.unwrap(), 0);
}

#[tokio::test]
async fn bad_codes_are_login_failures_that_never_echo_the_code() {
    let s = seed_setup(None).await;
    let callback = |code: &str| json_post("/api/auth/kakao/callback", &json!({"code": code}), &[]);
    let r = s.gw.send(&callback("made-up-code-123")).await;
    r.assert_gateway_error(400, "KAKAO_LOGIN_FAILED");
    assert!(!r.text().contains("made-up-code-123"));
    assert!(
        !s.gw.log().contains("made-up-code-123"),
        "the code reached the log"
    );

    let login_url = s.gw.get("/api/auth/kakao/login-url", &[]).await.json()["login_url"]
        .as_str()
        .unwrap()
        .to_string();
    // Expired: issued over ten minutes ago.
    let code = query_param(&approve(&s.fake, &login_url, RYAN).await, "code").unwrap();
    s.fake.age_codes(Duration::from_secs(601));
    s.gw.send(&callback(&code))
        .await
        .assert_gateway_error(400, "KAKAO_LOGIN_FAILED");
    assert_nothing_issued(&s.store_url).await;

    // redirect_uri mismatch: the code was issued for another registered URI.
    let other = login_url.replace(
        &url::form_urlencoded::byte_serialize(REDIRECT_URI.as_bytes()).collect::<String>(),
        &url::form_urlencoded::byte_serialize(b"http://other.test/callback").collect::<String>(),
    );
    assert_ne!(other, login_url);
    let s2 = seed_setup(None).await;
    let code = query_param(&approve(&s2.fake, &other, RYAN).await, "code").unwrap();
    s2.gw
        .send(&callback(&code))
        .await
        .assert_gateway_error(400, "KAKAO_LOGIN_FAILED");
    assert_nothing_issued(&s2.store_url).await;

    // Reused: the first exchange works, the second fails.
    let code = query_param(
        &approve(
            &s2.fake,
            &login_url.replace(&s.fake.base_url(), &s2.fake.base_url()),
            RYAN,
        )
        .await,
        "code",
    )
    .unwrap();
    assert_eq!(s2.gw.send(&callback(&code)).await.status, 200);
    s2.gw
        .send(&callback(&code))
        .await
        .assert_gateway_error(400, "KAKAO_LOGIN_FAILED");

    // Denied consent in the browser flow.
    let r = s2.gw.get("/api/auth/kakao/login", &[]).await;
    let state_cookie = cookies(&r);
    let authorize = r.header("location").unwrap().to_string();
    let u = url::Url::parse(&authorize).unwrap();
    let cancel = raw(
        s2.fake.addr,
        &get(
            &format!("/oauth/authorize/cancel?{}", u.query().unwrap()),
            &[],
        ),
    )
    .await;
    let back = cancel
        .header("location")
        .unwrap()
        .strip_prefix("http://app.test")
        .unwrap()
        .to_string();
    assert!(back.contains("error=access_denied"));
    s2.gw
        .get(&back, &[("Cookie", &state_cookie)])
        .await
        .assert_gateway_error(400, "KAKAO_LOGIN_FAILED");
}

#[tokio::test]
async fn kakao_outages_are_502_and_timeouts_504_with_nothing_issued() {
    let s = seed_setup(None).await;
    let login_url = s.gw.get("/api/auth/kakao/login-url", &[]).await.json()["login_url"]
        .as_str()
        .unwrap()
        .to_string();
    for (fault, status, code) in [
        (Fault::ServerError, 502, "KAKAO_UNAVAILABLE"),
        (Fault::HtmlBody, 502, "KAKAO_UNAVAILABLE"),
    ] {
        let kakao_code = query_param(&approve(&s.fake, &login_url, RYAN).await, "code").unwrap();
        s.fake.set_fault(fault);
        let r = post_callback(&s.gw, &kakao_code).await;
        r.assert_gateway_error(status, code);
        s.fake.set_fault(Fault::None);
    }
    assert_nothing_issued(&s.store_url).await;

    // Hang past the timeout.
    let s = setup_with(None, "require_state = false", "timeout_ms = 500").await;
    let kakao_code = query_param(
        &approve(
            &s.fake,
            &login_url.replace(&url_base(&login_url), &s.fake.base_url()),
            RYAN,
        )
        .await,
        "code",
    )
    .unwrap();
    s.fake.set_fault(Fault::Hang);
    let started = Instant::now();
    let r = post_callback(&s.gw, &kakao_code).await;
    r.assert_gateway_error(504, "KAKAO_TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_nothing_issued(&s.store_url).await;

    // Connection refused: Kakao's address answers nothing.
    let closed = free_addr();
    let s = setup_edited(None, "require_state = false", "", |fake, config| {
        config.replace(
            &format!("token_url = \"{fake}"),
            &format!("token_url = \"http://{closed}"),
        )
    })
    .await;
    let r = post_callback(&s.gw, &"whatever").await;
    r.assert_gateway_error(502, "KAKAO_UNAVAILABLE");
    assert!(!r.text().contains(&closed.port().to_string()));
}

fn url_base(u: &str) -> String {
    let u = url::Url::parse(u).unwrap();
    format!("{}://{}", u.scheme(), u.host_str().unwrap())
        + &u.port().map(|p| format!(":{p}")).unwrap_or_default()
}

#[tokio::test]
async fn without_a_grace_window_twenty_concurrent_refreshes_let_exactly_one_through_and_revoke_the_family() {
    let s = seed_setup(None).await;
    let tokens = seed_login(&s.gw, &s.fake, RYAN).await;
    let body = json!({"refresh_token": tokens["refresh_token"]});
    let addr = s.gw.addr;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let req = json_post("/api/auth/refresh", &body, &[]);
            tokio::spawn(async move { raw(addr, &req).await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let summary: Vec<(u16, String)> = answers
        .iter()
        .map(|r| (r.status, r.json()["error"].as_str().unwrap_or("").to_string()))
        .collect();
    let through: Vec<&RawResponse> = answers.iter().filter(|r| r.status == 200).collect();
    assert_eq!(through.len(), 1, "{summary:?}");
    // The others are reuse (400, and the family is revoked), or refused before the store is
    // asked because one session is refreshing far too often (429, the per-family limit).
    for (status, code) in &summary {
        assert!(
            matches!(
                (*status, code.as_str()),
                (200, "") | (400, "INVALID_REFRESH_TOKEN") | (429, "RATE_LIMIT_EXCEEDED")
            ),
            "{summary:?}"
        );
    }
    assert!(
        summary.iter().any(|(s, _)| *s == 400),
        "a reuse revoked the family: {summary:?}"
    );
    // The one successor died with its family.
    let successor = json!({"refresh_token": through[0].json()["refresh_token"]});
    post_refresh(&s.gw, &successor["refresh_token"])
        .await
        .assert_gateway_error(400, "INVALID_REFRESH_TOKEN");
}

/// With the default grace window, twenty tabs refreshing one token at once all get a session,
/// the same one, and leave the family intact.
#[tokio::test]
async fn within_the_grace_window_concurrent_refreshes_all_get_a_working_session() {
    let s = setup_with(None, "require_state = false", "").await;
    let tokens = seed_login(&s.gw, &s.fake, RYAN).await;
    let body = json!({"refresh_token": tokens["refresh_token"]});
    let addr = s.gw.addr;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let req = json_post("/api/auth/refresh", &body, &[]);
            tokio::spawn(async move { raw(addr, &req).await })
        })
        .collect();
    let mut issued = std::collections::HashSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        issued.insert(r.json()["refresh_token"].as_str().unwrap().to_string());
    }
    // One successor, whoever asked and when: the family never forks into branches.
    assert_eq!(issued.len(), 1, "{issued:?}");
    let next = issued.iter().next().unwrap();
    let r = post_refresh(&s.gw, next).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let scrape = s.gw.admin_get("/metrics").await.text();
    assert_eq!(
        metric(&scrape, "authgate_refresh_reuse_detected_total"),
        Some(0.0),
        "no false theft alarm"
    );
}

#[tokio::test]
async fn open_redirect_attempts_all_land_on_the_root() {
    let s = setup_with(
        None,
        "allowed_redirect_origins = [\"https://app.example\"]",
        "",
    )
    .await;
    for (next, expected) in [
        ("//evil.example", "/"),
        ("//evil.example/%2F..", "/"),
        ("/%2F%2Fevil.example", "/"),
        ("/\\evil.example", "/"),
        ("/%5Cevil.example", "/"),
        ("https://evil.example/", "/"),
        ("https://app.example.evil.example/", "/"),
        ("https://app.example@evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/%0d%0aSet-Cookie:x=1", "/"),
        ("/a/../../evil", "/"),
        (
            "https://app.example/after-login",
            "https://app.example/after-login",
        ),
        ("/dashboard?tab=1", "/dashboard?tab=1"),
    ] {
        let q: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
        let r =
            s.gw.get(&format!("/api/auth/kakao/login?next={q}"), &[])
                .await;
        assert_eq!(r.status, 302, "{next}: {}", r.text());
        let state_cookie = cookies(&r);
        let back = approve(&s.fake, r.header("location").unwrap(), RYAN).await;
        let callback = back.strip_prefix("http://app.test").unwrap().to_string();
        let r = s.gw.get(&callback, &[("Cookie", &state_cookie)]).await;
        assert_eq!(r.status, 302, "{next}: {}", r.text());
        assert_eq!(r.header("location"), Some(expected), "next = {next:?}");
    }
}

#[tokio::test]
async fn a_locked_sqlite_store_gives_503_verifying_goes_on_and_it_recovers_by_itself() {
    use sqlx::Connection;
    let s = seed_setup(None).await;
    let tokens = seed_login(&s.gw, &s.fake, RYAN).await;
    let auth = bearer(tokens["access_token"].as_str().unwrap());
    let login_url = s.gw.get("/api/auth/kakao/login-url", &[]).await.json()["login_url"]
        .as_str()
        .unwrap()
        .to_string();
    let users_before = open_store(&s.store_url)
        .await
        .count("refresh_tokens")
        .await
        .unwrap();

    // Another process holds the write lock: every write waits past busy_timeout.
    let mut lock = sqlx::SqliteConnection::connect(&s.store_url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();

    let code = query_param(&approve(&s.fake, &login_url, 1_000_003).await, "code").unwrap();
    post_callback(&s.gw, &code)
        .await
        .assert_gateway_error(503, "STORE_UNAVAILABLE");
    post_refresh(&s.gw, &tokens["refresh_token"])
        .await
        .assert_gateway_error(503, "STORE_UNAVAILABLE");
    post_logout(&s.gw, &auth)
        .await
        .assert_gateway_error(503, "STORE_UNAVAILABLE");
    // Verification needs no store.
    assert_eq!(
        s.gw.get("/api/orders", &[("Authorization", &auth)])
            .await
            .status,
        200
    );

    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    drop(lock);
    let store = open_store(&s.store_url).await;
    assert_eq!(
        store.count("refresh_tokens").await.unwrap(),
        users_before,
        "nothing issued during the outage"
    );
    // Back by itself: the refresh token survived the failed attempt.
    let r = post_refresh(&s.gw, &tokens["refresh_token"]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_logout(&s.gw, &auth).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn two_instances_on_one_postgres_agree_on_logout_within_two_seconds() {
    let Some(pg) = postgres_url() else {
        eprintln!("AUTHGATE_TEST_POSTGRES_URL unset: skipped");
        return;
    };
    let a = seed_setup(Some(&pg)).await;
    let b = Gateway::start(&a.gw.rest_config()).await;
    let tokens = seed_login(&a.gw, &a.fake, RYAN).await;
    let auth = bearer(tokens["access_token"].as_str().unwrap());
    assert_eq!(
        b.get("/api/orders", &[("Authorization", &auth)])
            .await
            .status,
        200
    );
    let r = post_logout(&a.gw, &auth).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let logged_out = Instant::now();
    loop {
        let r = b.get("/api/orders", &[("Authorization", &auth)]).await;
        if r.status == 401 {
            r.assert_gateway_error(401, "TOKEN_REVOKED");
            break;
        }
        assert!(
            logged_out.elapsed() < Duration::from_secs(2),
            "instance B still accepts the token"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The refresh token died with the logout on both.
    let r = post_refresh(&b, &tokens["refresh_token"]).await;
    r.assert_gateway_error(400, "INVALID_REFRESH_TOKEN");
}

#[tokio::test]
async fn jwks_publishes_only_the_public_key() {
    let rs256 = format!(
        "algorithm = \"RS256\"\nprivate_key_file = \"{}\"",
        fixture("rs256-2048.pem").display()
    );
    // `_db` holds the SQLite file's folder: dropping it would delete the store under the gateway.
    let Setup { gw, fake, _db, .. } =
        setup_edited(None, "require_state = false", "", |_, config| {
            config.replace("secret = \"{secret}\"", &rs256)
        })
        .await;
    let r = gw.get("/.well-known/jwks.json", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let key = &r.json()["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["alg"].as_str()),
        (Some("RSA"), Some("RS256"))
    );
    for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        assert!(key.get(private).is_none(), "{private} published");
    }
    let tokens = seed_login(&gw, &fake, RYAN).await;
    let header = jsonwebtoken::decode_header(tokens["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());
    // An upstream can verify our token with the published key alone.
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&["authgate"]);
    jsonwebtoken::decode::<serde_json::Value>(
        tokens["access_token"].as_str().unwrap(),
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
        &v,
    )
    .unwrap();

    // HS256: there is no public key to publish.
    let s = seed_setup(None).await;
    s.gw.get("/.well-known/jwks.json", &[])
        .await
        .assert_gateway_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn auth_routes_answer_wrong_methods_and_bodies_clearly() {
    let s = seed_setup(None).await;
    s.gw.send(&request("GET", "/api/auth/refresh", &[], ""))
        .await
        .assert_gateway_error(405, "METHOD_NOT_ALLOWED");
    s.gw.send(&request("DELETE", "/api/auth/profile", &[], ""))
        .await
        .assert_gateway_error(405, "METHOD_NOT_ALLOWED");
    s.gw.get("/api/auth/nothing-here", &[])
        .await
        .assert_gateway_error(404, "NOT_FOUND");
    s.gw.send(&request(
        "POST",
        "/api/auth/refresh",
        &[("Content-Type", "application/json")],
        "{not json",
    ))
    .await
    .assert_gateway_error(400, "BAD_REQUEST");
    s.gw.send(&json_post("/api/auth/kakao/callback", &json!({}), &[]))
        .await
        .assert_gateway_error(400, "BAD_REQUEST");
    let big = format!("{{\"refresh_token\": \"{}\"}}", "x".repeat(40_000));
    s.gw.send(&request(
        "POST",
        "/api/auth/refresh",
        &[("Content-Type", "application/json")],
        &big,
    ))
    .await
    .assert_gateway_error(413, "PAYLOAD_TOO_LARGE");
    s.gw.get("/api/auth/profile", &[])
        .await
        .assert_gateway_error(401, "UNAUTHORIZED");
    assert_eq!(s.up.count(), 0, "auth routes never reach the upstream");
}

#[tokio::test]
async fn an_email_is_kept_only_when_kakao_marks_it_valid_and_verified() {
    let s = seed_setup(None).await;
    // 어피치 has an email Kakao has not verified; 무지 gave no email consent.
    for user in [1_000_002, 1_000_003] {
        let tokens = seed_login(&s.gw, &s.fake, user).await;
        let auth = bearer(tokens["access_token"].as_str().unwrap());
        let profile =
            s.gw.get("/api/auth/profile", &[("Authorization", &auth)])
                .await
                .json();
        assert_eq!(profile["email"], "", "{profile}");
        assert_eq!(profile["username"], format!("kakao_{user}"));
        assert_eq!(
            s.gw.get("/api/orders", &[("Authorization", &auth)])
                .await
                .status,
            200
        );
        assert!(
            s.up.last().all("X-User-Email").is_empty(),
            "no email header without a verified email"
        );
    }
}
