//! Ending every session of a user at once, as Kakao and operators do it: the unlink webhook, the
//! account-status events (security event tokens), `authgate revoke` and the admin listener.
//! Two gateway processes share one store (PostgreSQL when `AUTHGATE_TEST_POSTGRES_URL` is set,
//! else one SQLite file); the fake Kakao sends the webhooks as Kakao does.

mod support;

use std::time::{Duration, Instant};

use authgate::dev::fake_kakao::FakeUser;
use authgate::dev::fake_kakao_webhooks::EventFault;
use support::*;

const ADMIN_KEY: &str = "0123456789abcdef0123456789abcdef";
const APP_ID: &str = "1234567";

/// Kakao user ids no other test uses: the PostgreSQL test database is shared.
fn fresh_id() -> i64 {
    10_000_000 + rand::random::<u32>() as i64
}

fn user(id: i64) -> FakeUser {
    FakeUser {
        id,
        nickname: format!("user{id}"),
        email: None,
        email_verified: false,
        profile_image: format!("https://k.kakaocdn.net/dn/fake/{id}/img.jpg"),
    }
}

struct Setup {
    a: Gateway,
    b: Gateway,
    fake: FakeKakao,
    _up: Upstream,
    _db: tempfile::TempDir,
}

async fn setup(users: &[i64]) -> Setup {
    setup_with(users, None, |c| c).await
}

/// Two gateways on one store with Kakao's webhooks configured for the fake; `store_url` overrides
/// the store (PostgreSQL when available, else SQLite).
async fn setup_with(
    users: &[i64],
    store_url: Option<String>,
    edit: impl Fn(String) -> String,
) -> Setup {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = FakeKakao::serve(
        listener,
        FakeKakaoConfig {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uris: vec![REDIRECT_URI.into()],
            users: users.iter().map(|id| user(*id)).collect(),
        },
    );
    let up = Upstream::start("app").await;
    let db = tempfile::tempdir().unwrap();
    let store_url = store_url
        .or_else(postgres_url)
        .unwrap_or_else(|| sqlite_url(db.path()));
    let k = fake.base_url();
    let kakao_extra = format!(
        "admin_key = \"{ADMIN_KEY}\"\napp_id = \"{APP_ID}\"\nissuer = \"{k}\"\njwks_url = \"{k}/.well-known/jwks.json\""
    );
    let config = edit(login_config(
        &fake,
        &up,
        &store_url,
        "require_state = false",
        &kakao_extra,
    ));
    let a = Gateway::start(&config).await;
    // Each process its own spool (a spool belongs to one process).
    let b = Gateway::start(&a.rest_config().replace(".jsonl\"", "-b.jsonl\"")).await;
    Setup {
        a,
        b,
        fake,
        _up: up,
        _db: db,
    }
}

/// One session: `(Authorization value, refresh token)`.
async fn login(gw: &Gateway, fake: &FakeKakao, id: i64) -> (String, String) {
    let t = seed_login(gw, fake, id).await;
    (
        bearer(t["access_token"].as_str().unwrap()),
        t["refresh_token"].as_str().unwrap().to_string(),
    )
}

async fn api_status(gw: &Gateway, auth: &str) -> u16 {
    gw.get("/api/orders", &[("Authorization", auth)])
        .await
        .status
}

/// Waits up to 2 s for both instances to refuse `auth`; panics with the log otherwise.
async fn refused_on_both_within_2s(s: &Setup, auth: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let a = s.a.get("/api/orders", &[("Authorization", auth)]).await;
        let b = s.b.get("/api/orders", &[("Authorization", auth)]).await;
        if a.status == 401 && b.status == 401 {
            a.assert_gateway_error(401, "TOKEN_REVOKED");
            b.assert_gateway_error(401, "TOKEN_REVOKED");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still accepted ({} / {}) after 2 s\n{}\n{}",
            a.status,
            b.status,
            s.a.log(),
            s.b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn still_accepted_on_both(s: &Setup, auth: &str, what: &str) {
    assert_eq!(api_status(&s.a, auth).await, 200, "{what} (a)");
    assert_eq!(api_status(&s.b, auth).await, 200, "{what} (b)");
}

fn unlink_url(gw: &Gateway) -> String {
    format!("http://{}/api/auth/kakao/unlink", gw.addr)
}

fn events_url(gw: &Gateway) -> String {
    format!("http://{}/api/auth/kakao/events", gw.addr)
}

#[tokio::test]
async fn an_unlink_ends_every_session_of_the_user_on_both_instances_and_nobody_elses() {
    let (gone, stays) = (fresh_id(), fresh_id());
    let s = setup(&[gone, stays]).await;
    let (auth1, refresh1) = login(&s.a, &s.fake, gone).await;
    let (auth2, refresh2) = login(&s.b, &s.fake, gone).await;
    let (other, other_refresh) = login(&s.a, &s.fake, stays).await;

    // A wrong or missing admin key, or another app's id, changes nothing.
    for key in ["", "wrong", &ADMIN_KEY[1..], &format!("{ADMIN_KEY}x")] {
        let (status, _) = s
            .fake
            .send_unlink(&unlink_url(&s.a), key, APP_ID, gone, true)
            .await
            .unwrap();
        assert_eq!(status, 401, "key {key:?}");
    }
    let (status, _) = s
        .fake
        .send_unlink(&unlink_url(&s.a), ADMIN_KEY, "7654321", gone, true)
        .await
        .unwrap();
    assert_eq!(status, 400, "another app");
    let r =
        s.a.send(&request(
            "POST",
            "/api/auth/kakao/unlink",
            &[
                ("Authorization", &format!("Bearer {ADMIN_KEY}")),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            &format!("app_id={APP_ID}&user_id={gone}"),
        ))
        .await;
    assert_eq!(r.status, 401, "the key must come as KakaoAK");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    still_accepted_on_both(&s, &auth1, "after refused unlinks").await;

    // Kakao's call, answered 200 well within its 3 s.
    let (status, took) = s
        .fake
        .send_unlink(&unlink_url(&s.b), ADMIN_KEY, APP_ID, gone, true)
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", s.b.log());
    assert!(took < Duration::from_secs(3), "{took:?}");
    refused_on_both_within_2s(&s, &auth1, "first session").await;
    refused_on_both_within_2s(&s, &auth2, "second session").await;
    for (gw, refresh) in [(&s.a, &refresh1), (&s.b, &refresh2)] {
        post_refresh(gw, refresh)
            .await
            .assert_gateway_error(400, "INVALID_REFRESH_TOKEN");
    }
    still_accepted_on_both(&s, &other, "another user").await;
    assert_eq!(post_refresh(&s.b, &other_refresh).await.status, 200);

    // Unknown users are answered 200 too, by GET as well.
    let (status, _) = s
        .fake
        .send_unlink(&unlink_url(&s.a), ADMIN_KEY, APP_ID, fresh_id(), false)
        .await
        .unwrap();
    assert_eq!(status, 200);
    // The user may come back: a new login works at once, on either instance.
    let (again, _) = login(&s.a, &s.fake, gone).await;
    still_accepted_on_both(&s, &again, "a login after the unlink").await;

    let scrape = s.b.admin_get("/metrics").await.text();
    assert_eq!(
        metric(&scrape, "authgate_user_cutoffs_total{reason=\"unlink\"}"),
        Some(1.0),
        "{scrape}"
    );
}

#[tokio::test]
async fn every_cutting_event_ends_the_session_and_the_others_do_not() {
    let cutting = [
        "user-unlinked",
        "tokens-revoked",
        "sessions-revoked",
        "account-disabled",
        "account-purged",
        "credential-compromise",
        "credential-change-required",
    ];
    let harmless = [
        "user-linked",
        "user-scope-consent",
        "user-profile-changed",
        "token-issued",
        "account-enabled",
        "some-future-event",
    ];
    let ids: Vec<i64> = (0..cutting.len() + harmless.len())
        .map(|_| fresh_id())
        .collect();
    let s = setup(&ids).await;
    let mut sessions = Vec::new();
    for id in &ids {
        sessions.push(login(&s.a, &s.fake, *id).await.0);
    }
    for (i, name) in cutting.iter().chain(&harmless).enumerate() {
        let set = s
            .fake
            .security_event(name, ids[i], CLIENT_ID, EventFault::None);
        let (status, body) = s.fake.push_event(&events_url(&s.a), &set).await.unwrap();
        assert_eq!(status, 202, "{name}: {body}\n{}", s.a.log());
    }
    for (i, name) in cutting.iter().enumerate() {
        refused_on_both_within_2s(&s, &sessions[i], name).await;
    }
    for (i, name) in harmless.iter().enumerate() {
        still_accepted_on_both(&s, &sessions[cutting.len() + i], name).await;
    }
}

#[tokio::test]
async fn forged_replayed_and_misaddressed_events_change_nothing() {
    let (id, replayed) = (fresh_id(), fresh_id());
    let s = setup(&[id, replayed]).await;
    let (auth, _) = login(&s.a, &s.fake, id).await;
    let cases = [
        (EventFault::Unsigned, "invalid_request"),
        (EventFault::ForeignKey, "invalid_key"),
        (EventFault::WrongIssuer, "invalid_issuer"),
        (EventFault::WrongAudience, "invalid_audience"),
        (EventFault::WrongType, "invalid_request"),
        (EventFault::Stale, "invalid_request"),
    ];
    for (fault, err) in cases {
        let set = s
            .fake
            .security_event("account-disabled", id, CLIENT_ID, fault);
        let (status, body) = s.fake.push_event(&events_url(&s.b), &set).await.unwrap();
        assert_eq!(status, 400, "{fault:?}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["err"], err, "{fault:?}");
    }
    // The right token as another media type, and an id_token-shaped body.
    let good = s
        .fake
        .security_event("account-disabled", id, CLIENT_ID, EventFault::None);
    let r =
        s.a.send(&request(
            "POST",
            "/api/auth/kakao/events",
            &[("Content-Type", "application/json")],
            &good,
        ))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["err"], "invalid_request");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    still_accepted_on_both(&s, &auth, "after refused events").await;

    // A delivered event, replayed after the user logged in again, changes nothing the second time.
    let (first, _) = login(&s.a, &s.fake, replayed).await;
    let set = s
        .fake
        .security_event("account-disabled", replayed, CLIENT_ID, EventFault::None);
    let (status, _) = s.fake.push_event(&events_url(&s.a), &set).await.unwrap();
    assert_eq!(status, 202);
    refused_on_both_within_2s(&s, &first, "the event").await;
    let (second, _) = login(&s.a, &s.fake, replayed).await;
    for gw in [&s.a, &s.b] {
        let (status, _) = s.fake.push_event(&events_url(gw), &set).await.unwrap();
        assert_eq!(status, 202, "a replay is accepted and ignored");
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    still_accepted_on_both(&s, &second, "the session after a replayed event").await;
}

#[tokio::test]
async fn operators_revoke_by_command_and_admin_listener_and_both_say_what_they_did() {
    let (by_cli, by_admin, bystander) = (fresh_id(), fresh_id(), fresh_id());
    let s = setup(&[by_cli, by_admin, bystander]).await;
    let (cli_auth, _) = login(&s.a, &s.fake, by_cli).await;
    let (admin_auth, _) = login(&s.b, &s.fake, by_admin).await;
    let (other, _) = login(&s.a, &s.fake, bystander).await;

    let config = s.a.dir.path().join("config.toml");
    let out = std::process::Command::new(bin())
        .args(["revoke", "--user", &format!("kakao:{by_cli}"), "-c"])
        .arg(&config)
        .env_remove("JWT_SECRET_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("cut off user(s)") && stdout.contains("1 refresh token(s) revoked"),
        "{stdout}"
    );
    refused_on_both_within_2s(&s, &cli_auth, "authgate revoke").await;

    // The admin listener takes our user id; the public listener has no such route.
    // An operator looks the id up as /profile shows it.
    let profile =
        s.b.get("/api/auth/profile", &[("Authorization", &admin_auth)])
            .await;
    let uid = profile.json()["id"].as_i64().unwrap();
    let public =
        s.a.send(&request("POST", &format!("/users/{uid}/revoke"), &[], ""))
            .await;
    assert_ne!(public.status, 200);
    still_accepted_on_both(&s, &admin_auth, "the public listener revokes nothing").await;
    // A web page cannot make an operator's browser do it.
    for header in [
        ("Origin", "https://evil.example"),
        ("Origin", "null"),
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Site", "same-site"),
    ] {
        let r = raw(
            s.a.admin,
            &request("POST", &format!("/users/{uid}/revoke"), &[header], ""),
        )
        .await;
        assert_eq!(r.status, 403, "{header:?}");
    }
    still_accepted_on_both(&s, &admin_auth, "a browser revokes nothing").await;
    let r = raw(
        s.a.admin,
        &request("POST", &format!("/users/{uid}/revoke"), &[], ""),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["users"], serde_json::json!([uid]));
    assert_eq!(r.json()["refresh_tokens_revoked"], 1);
    refused_on_both_within_2s(&s, &admin_auth, "admin revoke").await;
    still_accepted_on_both(&s, &other, "a bystander").await;

    let r = raw(s.a.admin, &request("POST", "/users/-5/revoke", &[], "")).await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (404, Some("USER_NOT_FOUND"))
    );
    let r = raw(s.a.admin, &request("POST", "/users/bob/revoke", &[], "")).await;
    assert_eq!(r.status, 400);
    let r = raw(s.a.admin, &get(&format!("/users/{uid}/revoke"), &[])).await;
    assert_eq!(r.status, 405);
    let out = std::process::Command::new(bin())
        .args(["revoke", "--user", "kakao:1", "-c"])
        .arg(&config)
        .env_remove("JWT_SECRET_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unknown user is an error");
    assert!(String::from_utf8_lossy(&out.stdout).contains("no user kakao:1"));
}

/// SQLite locked by another process stands for a store that does not answer: the unlink is
/// answered in time and spooled; it takes effect when the store is back, and survives a crash of
/// the gateway before then.
#[tokio::test]
async fn an_unlink_with_the_store_down_is_answered_in_time_and_applied_once_it_is_back() {
    use sqlx::Connection;
    let (first, second) = (fresh_id(), fresh_id());
    let db = tempfile::tempdir().unwrap();
    let url = sqlite_url(db.path());
    let spool = db.path().join("spool.jsonl");
    let spool_line = format!("busy_timeout_ms = 300\nspool_file = {:?}", spool);
    let s = setup_with(&[first, second], Some(url.clone()), |c| {
        c.replace("busy_timeout_ms = 300", &spool_line)
    })
    .await;
    let (auth1, refresh1) = login(&s.a, &s.fake, first).await;
    let (auth2, _) = login(&s.a, &s.fake, second).await;

    let mut lock = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();
    for id in [first, second] {
        let (status, took) = s
            .fake
            .send_unlink(&unlink_url(&s.a), ADMIN_KEY, APP_ID, id, true)
            .await
            .unwrap();
        assert_eq!(status, 200, "{}", s.a.log());
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
    // Both wait in the spool (the file, or the copy a failed replay left), and the gauge says so.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let scrape = s.a.admin_get("/metrics").await.text();
        if metric(&scrape, "authgate_user_cutoffs_spooled") == Some(2.0) {
            break;
        }
        assert!(Instant::now() < deadline, "{scrape}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Not in force anywhere yet: the store has not taken them.
    assert_eq!(api_status(&s.b, &auth1).await, 200);

    // The gateway that holds the spool dies before the store is back, and starts again.
    let rest = s.a.rest_config();
    let mut a = s.a;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    drop(lock);
    let a = Gateway::start(&rest).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    for auth in [&auth1, &auth2] {
        loop {
            let (x, y) = (api_status(&a, auth).await, api_status(&s.b, auth).await);
            if (x, y) == (401, 401) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not applied: {x} {y}\n{}",
                a.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    post_refresh(&a, &refresh1)
        .await
        .assert_gateway_error(400, "INVALID_REFRESH_TOKEN");
    assert!(
        !spool.exists() && !db.path().join("spool.jsonl.replaying").exists(),
        "the spool is emptied once applied"
    );
}
