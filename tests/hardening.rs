//! What an attacker's read of the providers, Kakao's notifications, the admin listener, reload
//! and TLS found, each over real sockets against the real binary: every test here failed before
//! its fix. Refresh behind a carrier NAT is here too.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use authgate::dev::fake_oidc::{default_oidc_users, FakeOidc, FakeOidcConfig, SigningAlg};
use serde_json::json;
use support::pki::*;
use support::*;

const ORIGIN: &str = "http://gw.test";
const ADMIN_KEY: &str = "kakao-primary-admin-key-0123456789";
/// Jane at the example issuer: a verified address.
const JANE: &str = "248289761001";

fn redirect(id: &str) -> String {
    format!("{ORIGIN}/api/auth/{id}/callback")
}

fn local(url: &str) -> String {
    url.strip_prefix(ORIGIN)
        .unwrap_or_else(|| panic!("not ours: {url}"))
        .to_string()
}

/// The browser flow by hand: `/{id}/login`, the user picks `user` on the provider's page at
/// `provider` (`approve_path` there), the callback with the state cookie. The callback's answer.
async fn browser_login(
    gw: &Gateway,
    id: &str,
    provider: SocketAddr,
    approve_path: &str,
    user: &str,
) -> RawResponse {
    let r = gw.get(&format!("/api/auth/{id}/login"), &[]).await;
    assert_eq!(r.status, 302, "{}\n{}", r.text(), gw.log());
    let jar = cookies(&r);
    let authorize = url::Url::parse(r.header("location").unwrap()).unwrap();
    let query = authorize.query().unwrap_or("");
    let back = raw(
        provider,
        &get(&format!("{approve_path}?{query}&user={user}"), &[]),
    )
    .await;
    assert_eq!(back.status, 302, "{}", back.text());
    let back = back.header("location").unwrap().to_string();
    gw.get(&local(&back), &[("Cookie", &jar)]).await
}

/// The access and refresh tokens of a browser login's cookies (plain http: unprefixed names).
fn session_of(r: &RawResponse) -> (String, String) {
    assert_eq!(r.status, 302, "the callback: {}", r.text());
    let value = |name: &str| {
        r.set_cookies()
            .iter()
            .find_map(|c| c.strip_prefix(&format!("{name}=")))
            .and_then(|c| c.split(';').next())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| panic!("no {name} cookie: {:?}", r.set_cookies()))
            .to_string()
    };
    (value("authgate_access"), value("authgate_refresh"))
}

async fn admin_post(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    raw(gw.admin, &request("POST", path, headers, "")).await
}

// ---------------------------------------------------------------------------------------------
// 1. Kakao's notifications reach Kakao users of a generic OpenID Connect entry

#[tokio::test]
async fn an_unlink_ends_the_sessions_of_a_kakao_user_who_logged_in_through_a_generic_oidc_entry() {
    let fake = fake_kakao(&[&redirect("kakao"), &redirect("kakao-oidc")]).await;
    let up = Upstream::start("app").await;
    let k = fake.base_url();
    let config = format!(
        r#"
[jwt]
secret = "{{secret}}"
[rate_limit]
auth_per_minute = 100000
auth_burst = 100000
[kakao]
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
redirect_uri = "{kakao}"
authorize_url = "{k}/oauth/authorize"
token_url = "{k}/oauth/token"
userinfo_url = "{k}/v2/user/me"
issuer = "{k}"
jwks_url = "{k}/.well-known/jwks.json"
admin_key = "{ADMIN_KEY}"
[[providers]]
id = "kakao-oidc"
kind = "oidc"
issuer = "{k}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
redirect_uri = "{oidc}"
scopes = ["openid", "profile_nickname", "account_email"]
[[upstreams]]
name = "app"
addrs = ["{up}"]
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "app"
auth = "required"
"#,
        kakao = redirect("kakao"),
        oidc = redirect("kakao-oidc"),
        up = up.addr,
    );
    let gw = Gateway::start(&config).await;
    let login = browser_login(&gw, "kakao-oidc", fake.addr, "/oauth/authorize/approve", &RYAN.to_string()).await;
    let (access, refresh) = session_of(&login);
    let r = gw.get("/api/me", &[("Authorization", &bearer(&access))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().one("x-user-provider"), Some("kakao-oidc"));

    // Kakao says Ryan unlinked the app: every session of his ends, whichever entry it came
    // through.
    let r = gw
        .send(&request(
            "POST",
            "/api/auth/kakao/unlink",
            &[
                ("Authorization", &format!("KakaoAK {ADMIN_KEY}")),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            &format!("app_id=1&user_id={RYAN}&referrer_type=UNLINK_FROM_APPS"),
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    gw.get("/api/me", &[("Authorization", &bearer(&access))])
        .await
        .assert_gateway_error(401, "TOKEN_REVOKED");
    post_refresh(&gw, &refresh)
        .await
        .assert_gateway_error(400, "INVALID_REFRESH_TOKEN");
    // `check` steers such an entry to Kakao's own kind.
    let out = std::process::Command::new(bin())
        .args(["check", "-c"])
        .arg(gw.dir.path().join("config.toml"))
        .env("JWT_SECRET_KEY", SECRET)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("warning: providers \"kakao-oidc\"") && said.contains("kind = \"kakao\" with oidc = true"),
        "{said}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. A public key that is not the private key's half

fn pem_pair(dir: &std::path::Path, stem: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let private = dir.join(format!("{stem}.key"));
    let public = dir.join(format!("{stem}.pub"));
    std::fs::write(&private, key.serialize_pem()).unwrap();
    std::fs::write(&public, key.public_key_pem()).unwrap();
    (private, public)
}

#[tokio::test]
async fn a_public_key_that_is_not_the_private_keys_half_is_refused_by_check_and_by_reload() {
    let up = Upstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let (old_private, old_public) = pem_pair(dir.path(), "old");
    let (new_private, _) = pem_pair(dir.path(), "new");
    let config = |private: &std::path::Path| {
        format!(
            "[jwt]\nalgorithm = \"EdDSA\"\nprivate_key_file = \"{}\"\npublic_key_file = \"{}\"\n\
             [[upstreams]]\nname = \"app\"\naddrs = [\"{}\"]\n\
             [[routes]]\nname = \"pub\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"public\"\n",
            private.display(),
            old_public.display(),
            up.addr
        )
    };
    let gw = Gateway::start(&config(&old_private)).await;
    // The rotation that replaced only the private key.
    let path = gw.dir.path().join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(
            &old_private.display().to_string(),
            &new_private.display().to_string(),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("jwt.public_key_file")
            && said.contains("is not the public half of private_key_file")
            && said.contains("new.key"),
        "{said}"
    );
    let r = admin_post(&gw, "/reload", &[]).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["result"], "invalid", "{}", r.text());
    assert!(r.text().contains("is not the public half"), "{}", r.text());
    // Still serving the old pair, whose tokens verify.
    assert_eq!(gw.admin_get("/readyz").await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// 3. Two cut-offs in one second

#[tokio::test]
async fn a_token_issued_between_two_cut_offs_in_one_second_is_dead_after_the_second() {
    let fake = fake_kakao(&[REDIRECT_URI]).await;
    let up = Upstream::start("app").await;
    let db = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&login_config(
        &fake,
        &up,
        &sqlite_url(db.path()),
        "require_state = false",
        "",
    ))
    .await;
    let first = seed_login(&gw, &fake, RYAN).await;
    let id = gw
        .get("/api/auth/profile", &[("Authorization", &bearer(first["access_token"].as_str().unwrap()))])
        .await
        .json()["id"]
        .as_i64()
        .unwrap();
    // Start at the beginning of a second: what follows takes well under one.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    tokio::time::sleep(Duration::from_nanos(1_000_000_000 - u64::from(now.subsec_nanos()) + 5_000_000)).await;
    let r = admin_post(&gw, &format!("/users/{id}/revoke"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A login right after the cut-off works (it is stamped with the next second)...
    let second = seed_login(&gw, &fake, RYAN).await;
    let access = second["access_token"].as_str().unwrap().to_string();
    let r = gw.get("/api/x", &[("Authorization", &bearer(&access))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // ...and a second cut-off, still within that second, ends it too.
    let r = admin_post(&gw, &format!("/users/{id}/revoke"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let elapsed_in_second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - now.as_secs();
    gw.get("/api/x", &[("Authorization", &bearer(&access))])
        .await
        .assert_gateway_error(401, "TOKEN_REVOKED");
    post_refresh(&gw, &second["refresh_token"])
        .await
        .assert_gateway_error(400, "INVALID_REFRESH_TOKEN");
    // The sequence ran inside one second (so this proves the same-second case).
    assert_eq!(elapsed_in_second, 1, "the two cut-offs were not in one second");
}

// ---------------------------------------------------------------------------------------------
// 4. RFC 9207: the authorization response's issuer

struct Oidc {
    gw: Gateway,
    oidc: FakeOidc,
    up: Upstream,
}

async fn oidc_site() -> Oidc {
    let oidc = FakeOidc::serve(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        FakeOidcConfig {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uris: vec![redirect("example")],
            users: default_oidc_users(),
            alg: SigningAlg::RS256,
            secret_in_body: false,
        },
    );
    let up = Upstream::start("app").await;
    let config = format!(
        r#"
[jwt]
secret = "{{secret}}"
[rate_limit]
auth_per_minute = 100000
auth_burst = 100000
[[providers]]
id = "example"
kind = "oidc"
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
redirect_uri = "{redirect}"
[[upstreams]]
name = "app"
addrs = ["{up}"]
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "app"
auth = "required"
"#,
        issuer = oidc.issuer(),
        redirect = redirect("example"),
        up = up.addr,
    );
    let gw = Gateway::start(&config).await;
    Oidc { gw, oidc, up }
}

/// `/example/login`, Jane approves: the state cookie and the callback path the issuer sent
/// the browser back to.
async fn approved(s: &Oidc) -> (String, String) {
    let r = s.gw.get("/api/auth/example/login", &[]).await;
    assert_eq!(r.status, 302, "{}", r.text());
    let jar = cookies(&r);
    let authorize = url::Url::parse(r.header("location").unwrap()).unwrap();
    let back = raw(
        s.oidc.addr,
        &get(
            &format!("/authorize/approve?{}&user={JANE}", authorize.query().unwrap()),
            &[],
        ),
    )
    .await;
    assert_eq!(back.status, 302, "{}", back.text());
    (jar, local(back.header("location").unwrap()))
}

#[tokio::test]
async fn a_callback_naming_another_issuer_is_refused_before_its_code_is_redeemed() {
    let s = oidc_site().await;
    // A mix-up: the response names another authorization server.
    let (jar, back) = approved(&s).await;
    let r = s
        .gw
        .get(
            &format!("{back}&iss=https%3A%2F%2Fattacker.example"),
            &[("Cookie", &jar)],
        )
        .await;
    r.assert_gateway_error(400, "LOGIN_FAILED");
    assert!(s.gw.log().contains("RFC 9207"), "{}", s.gw.log());
    // The code was never sent to the token endpoint: it still redeems once.
    let r = s.gw.get(&back, &[("Cookie", &jar)]).await;
    assert_eq!(r.status, 302, "the code was spent: {}", r.text());
    // Our own issuer, named exactly, passes.
    let (jar, back) = approved(&s).await;
    let iss: String = url::form_urlencoded::byte_serialize(s.oidc.issuer().as_bytes()).collect();
    let r = s
        .gw
        .get(&format!("{back}&iss={iss}"), &[("Cookie", &jar)])
        .await;
    assert_eq!(r.status, 302, "{}", r.text());
    let _ = &s.up;
}

#[tokio::test]
async fn an_issuer_that_promises_the_iss_parameter_must_send_it() {
    let s = oidc_site().await;
    s.oidc.set_iss_parameter(true);
    // Discovery is read at the first login: this issuer now advertises RFC 9207.
    let (jar, back) = approved(&s).await;
    assert!(back.contains("iss="), "the issuer sends iss: {back}");
    let without: String = {
        let u = url::Url::parse(&format!("{ORIGIN}{back}")).unwrap();
        let kept: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| k != "iss")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let q = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(kept)
            .finish();
        format!("{}?{q}", u.path())
    };
    s.gw
        .get(&without, &[("Cookie", &jar)])
        .await
        .assert_gateway_error(400, "LOGIN_FAILED");
    let r = s.gw.get(&back, &[("Cookie", &jar)]).await;
    assert_eq!(r.status, 302, "with its iss: {}", r.text());
}

// ---------------------------------------------------------------------------------------------
// 5. An email the provider no longer vouches for

#[tokio::test]
async fn an_email_the_provider_stopped_calling_verified_is_no_longer_forwarded() {
    let s = oidc_site().await;
    let (jar, back) = approved(&s).await;
    let (access, _) = session_of(&s.gw.get(&back, &[("Cookie", &jar)]).await);
    let r = s.gw.get("/api/x", &[("Authorization", &bearer(&access))]).await;
    assert_eq!(r.status, 200);
    assert_eq!(s.up.last().one("x-user-email"), Some("jane@example.test"));
    s.oidc.stop_vouching_for_email(JANE);
    let (jar, back) = approved(&s).await;
    let (access, refresh) = session_of(&s.gw.get(&back, &[("Cookie", &jar)]).await);
    let r = s.gw.get("/api/x", &[("Authorization", &bearer(&access))]).await;
    assert_eq!(r.status, 200);
    assert_eq!(s.up.last().one("x-user-email"), None, "{:?}", s.up.last());
    // Nor after a refresh, which reads the stored user.
    let r = post_refresh(&s.gw, &refresh).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let access = r.json()["access_token"].as_str().unwrap().to_string();
    s.gw.get("/api/x", &[("Authorization", &bearer(&access))]).await;
    assert_eq!(s.up.last().one("x-user-email"), None);
    let profile = s
        .gw
        .get("/api/auth/profile", &[("Authorization", &bearer(&access))])
        .await;
    assert_eq!(profile.json()["email"], "", "{}", profile.text());
}

// ---------------------------------------------------------------------------------------------
// 6. SNI and Host must agree over TLS

#[tokio::test]
async fn a_host_the_sni_certificate_does_not_cover_is_421_over_http1_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("authgate test CA");
    let a = ca.leaf(&["a.test", "localhost"]);
    let b = ca.leaf(&["b.test"]);
    let (a_cert, a_key) = a.write(dir.path(), "a");
    let (b_cert, b_key) = b.write(dir.path(), "b");
    let up = Upstream::start("app").await;
    let tls = free_addr();
    let server = format!(
        "grace_period_seconds = 1\ntls_listen = \"{tls}\"\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
         [[server.tls.certs]]\nserver_names = [\"b.test\"]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        a_cert.display(),
        a_key.display(),
        b_cert.display(),
        b_key.display()
    );
    let routes = format!(
        "[jwt]\nsecret = \"{{secret}}\"\n[[upstreams]]\nname = \"app\"\naddrs = [\"{}\"]\n\
         [[routes]]\nname = \"b-admin\"\nhost = \"b.test\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"public\"\n\
         [[routes]]\nname = \"a\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"public\"\n",
        up.addr
    );
    let gw = Gateway::start_with(&routes, &server).await;
    let host = |h: &str| for_host(&keep_alive(get("/", &[])), h);
    // HTTP/1.1: SNI a.test, Host b.test.
    let mut c = connect(tls, "a.test", &ca, &[b"http/1.1"]).await;
    let r = exchange(&mut c, &host("a.test")).await;
    assert_eq!(r.status, 200, "its own host: {}", r.text());
    let seen = up.count();
    let r = exchange(&mut c, &host("b.test")).await;
    r.assert_gateway_error(421, "MISDIRECTED_REQUEST");
    assert_eq!(up.count(), seen, "nothing reached b.test's routes");
    // The same spelled otherwise: upper case, a trailing dot, a port.
    for other in ["B.TEST", "b.test.", &format!("b.test:{}", tls.port())] {
        let mut c = connect(tls, "a.test", &ca, &[b"http/1.1"]).await;
        exchange(&mut c, &host(other))
            .await
            .assert_gateway_error(421, "MISDIRECTED_REQUEST");
    }
    // Asked for by its own name, b.test is served.
    let mut c = connect(tls, "b.test", &ca, &[b"http/1.1"]).await;
    assert_eq!(exchange(&mut c, &host("b.test")).await.status, 200);
    // HTTP/2 (curl): SNI a.test, :authority b.test.
    let (out, err) = {
        let o = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--http2", "-o", "/dev/null", "-w", "%{http_code} %{http_version}"])
            .arg("--cacert")
            .arg(ca.write(dir.path(), "ca"))
            .args(["--connect-to", &format!("a.test:{}:127.0.0.1:{}", tls.port(), tls.port())])
            .args(["-H", "Host: b.test"])
            .arg(format!("https://a.test:{}/", tls.port()))
            .output()
            .await
            .unwrap();
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(out, "421 2", "{err}");
    let scrape = gw.admin_get("/metrics").await.text();
    assert!(
        metric(&scrape, "authgate_client_errors_total{kind=\"misdirected\"}").is_some_and(|n| n >= 5.0),
        "{scrape}"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Security events cannot make us fetch Kakao's keys for anyone

/// A gateway whose Kakao keys come from `keys` (an endpoint that fails), `rate_limit` lines
/// added.
async fn events_site(keys: &Upstream, rate_limit: &str) -> (Gateway, FakeKakao, Upstream, tempfile::TempDir) {
    let fake = fake_kakao(&[REDIRECT_URI]).await;
    let up = Upstream::start("app").await;
    let db = tempfile::tempdir().unwrap();
    let config = login_config(&fake, &up, &sqlite_url(db.path()), "", "")
        .replace(
            "[kakao]\n",
            &format!("[kakao]\njwks_url = \"http://{}/jwks\"\n", keys.addr),
        )
        .replace("[rate_limit]\n", &format!("[rate_limit]\n{rate_limit}"));
    (Gateway::start(&config).await, fake, up, db)
}

/// A security event token as anyone can post one: its signature is never checked, since the
/// keys it would be checked with cannot be had.
fn event(i: usize) -> String {
    let header = authgate_b64(br#"{"alg":"RS256","typ":"secevent+jwt","kid":"k1"}"#);
    let body = authgate_b64(format!(r#"{{"iss":"x","jti":"j{i}"}}"#).as_bytes());
    request(
        "POST",
        "/api/auth/kakao/events",
        &[("Content-Type", "application/secevent+jwt")],
        &format!("{header}.{body}.c2ln"),
    )
}

/// Kakao's key endpoint, failing: it counts what reaches it.
async fn failing_keys() -> Upstream {
    Upstream::start_with(
        "kakao-keys",
        "127.0.0.1:0".parse().unwrap(),
        std::sync::Arc::new(|_: &Seen| Some((500, "application/json", b"{}".to_vec()))),
    )
    .await
}

#[tokio::test]
async fn unauthenticated_security_events_make_one_key_fetch_not_one_each() {
    let keys = failing_keys().await;
    let (gw, _fake, _up, _db) = events_site(&keys, "").await;
    // Twenty one after the other, then twenty at once.
    for i in 0..20 {
        let r = gw.send(&event(i)).await;
        assert_eq!(r.status, 503, "keys unavailable: {}", r.text());
    }
    let addr = gw.addr;
    let tasks: Vec<_> = (20..40)
        .map(|i| {
            let req = event(i);
            tokio::spawn(async move { raw(addr, &req).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 503);
    }
    assert_eq!(keys.count(), 1, "one fetch for forty posts within 10 s");
}

#[tokio::test]
async fn webhooks_have_a_per_address_budget_of_their_own() {
    let keys = failing_keys().await;
    let (gw, _fake, _up, _db) =
        events_site(&keys, "webhook_per_minute = 60\nwebhook_burst = 30\n").await;
    for i in 0..30 {
        assert_eq!(gw.send(&event(i)).await.status, 503);
    }
    // The webhooks' budget (30) is spent: more are 429 ...
    gw.send(&event(99))
        .await
        .assert_gateway_error(429, "RATE_LIMIT_EXCEEDED");
    // ... while the login budget of the same address is untouched.
    let r = gw.get("/api/auth/kakao/login-url", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let scrape = gw.admin_get("/metrics").await.text();
    assert_eq!(
        metric(&scrape, "authgate_rate_limited_total{scope=\"webhook\"}"),
        Some(1.0),
        "{scrape}"
    );
}

fn authgate_b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// 8. A provider removed by reload

#[tokio::test]
async fn a_provider_removed_by_reload_ends_its_users_sessions_and_no_other() {
    let s = oidc_site().await;
    let (jar, back) = approved(&s).await;
    let (access, refresh) = session_of(&s.gw.get(&back, &[("Cookie", &jar)]).await);
    // A token of a provider still configured after the reload (minted with the key).
    let mut other = claims();
    other["provider"] = json!("kept");
    let other = hs256(&other);
    // Reload with `example` gone and `kept` (another issuer entry) in its place.
    let path = s.gw.dir.path().join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("id = \"example\"", "id = \"kept\"").replace("/example/callback", "/kept/callback")).unwrap();
    assert_eq!(s.gw.get("/api/x", &[("Authorization", &bearer(&access))]).await.status, 200);
    let r = admin_post(&s.gw, "/reload", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    s.gw.get("/api/x", &[("Authorization", &bearer(&access))])
        .await
        .assert_gateway_error(401, "TOKEN_REVOKED");
    post_refresh(&s.gw, &refresh)
        .await
        .assert_gateway_error(400, "INVALID_REFRESH_TOKEN");
    assert_eq!(
        s.gw.get("/api/x", &[("Authorization", &bearer(&other))]).await.status,
        200,
        "a configured provider's users keep their sessions"
    );
    assert!(s.gw.log().contains("no longer configured"), "{}", s.gw.log());
}

// ---------------------------------------------------------------------------------------------
// 9. The admin listener's actions need a credential

/// A local address that is not loopback, to reach the admin listener from "another host".
fn outside_address() -> std::net::IpAddr {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    // No packet is sent: connecting a UDP socket only picks the route's source address.
    probe.connect("192.0.2.1:9").expect("a route off this host");
    let ip = probe.local_addr().unwrap().ip();
    assert!(
        !ip.is_loopback() && !ip.is_unspecified(),
        "this machine has no non-loopback address: {ip}"
    );
    ip
}

async fn raw_via(source: std::net::IpAddr, to: SocketAddr, request: &str) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let mut s = socket.connect(to).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await;
    parse_response(&buf)
}

#[tokio::test]
async fn without_an_admin_token_operator_actions_are_answered_only_on_loopback() {
    let outside = outside_address();
    let up = Upstream::start("app").await;
    // admin_listen on every address: the way the Dockerfile used to suggest.
    let admin_port = free_addr().port();
    let gw = Gateway::start_opts(
        &public_route(&up, ""),
        "grace_period_seconds = 1",
        Some(SocketAddr::from(([0, 0, 0, 0], admin_port))),
        &[],
    )
    .await;
    let admin = SocketAddr::new(outside, admin_port);
    for path in ["/reload", "/users/1/revoke"] {
        let r = raw_via(outside, admin, &request("POST", path, &[], "")).await;
        r.assert_gateway_error(403, "FORBIDDEN");
    }
    // Probes and metrics stay open.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = raw_via(outside, admin, &get(path, &[])).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    // From loopback it still works (a local operator's `authgate reload`).
    let local = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let r = raw(local, &request("POST", "/reload", &[], "")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(gw.log().contains("admin=loopback"), "{}", gw.log());
    // `check` says what is open.
    let out = std::process::Command::new(bin())
        .args(["check", "-c"])
        .arg(gw.dir.path().join("config.toml"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("warning: server.admin_listen") && said.contains("no admin token is configured"),
        "{said}"
    );
    assert!(gw.log().contains("no admin token is configured"), "the start-up log says so too");
}

#[tokio::test]
async fn with_admin_tokens_every_operator_action_needs_one_and_is_logged_with_its_name() {
    // `authgate admin-token` prints a token and the lines to paste.
    let out = std::process::Command::new(bin())
        .args(["admin-token", "--name", "ops"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let token = printed
        .lines()
        .find(|l| l.len() == 64 && l.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("{printed}"))
        .to_string();
    let lines: String = printed
        .lines()
        .skip_while(|l| *l != "[[admin.tokens]]")
        .take(3)
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(lines.contains("name = \"ops\"") && lines.contains("sha256 = \""), "{printed}");
    let up = Upstream::start("app").await;
    let env_token = "e".repeat(40);
    let rest = format!("{}{lines}", public_route(&up, ""));
    let gw = Gateway::start_opts(
        &rest,
        "grace_period_seconds = 1",
        None,
        &[("AUTHGATE_ADMIN_TOKEN", &env_token)],
    )
    .await;
    let revoke = "/users/kakao:1/revoke";
    // None, a wrong one, a second Authorization, another scheme: refused, loopback or not.
    for headers in [
        vec![],
        vec![("Authorization", "Bearer not-the-token-0123456789abcdef0123456789")],
        vec![("Authorization", format!("Basic {token}").leak() as &str)],
    ] {
        let r = admin_post(&gw, revoke, &headers).await;
        assert_eq!(r.status, 401, "{headers:?}: {}", r.text());
        assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")));
    }
    let r = raw(
        gw.admin,
        &request(
            "POST",
            "/reload",
            &[("Authorization", &bearer(&token)), ("Authorization", &bearer(&token))],
            "",
        ),
    )
    .await;
    assert_eq!(r.status, 401, "two Authorization headers: {}", r.text());
    // The pasted token, and the one from the environment.
    let r = admin_post(&gw, revoke, &[("Authorization", &bearer(&token))]).await;
    r.assert_gateway_error(404, "USER_NOT_FOUND");
    let r = admin_post(&gw, "/reload", &[("Authorization", &bearer(&env_token))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let log = gw.log();
    assert!(log.contains("admin=ops") && log.contains("admin=env"), "{log}");
    assert!(!log.contains(&token) && !log.contains(&env_token), "tokens are never logged");
    // `authgate reload` sends the token from its environment.
    let reload = |token: Option<&str>| {
        let mut c = std::process::Command::new(bin());
        c.args(["reload", "-c"]).arg(gw.dir.path().join("config.toml"));
        c.env_remove("AUTHGATE_ADMIN_TOKEN").env("JWT_SECRET_KEY", SECRET);
        if let Some(t) = token {
            c.env("AUTHGATE_ADMIN_TOKEN", t);
        }
        c.output().unwrap()
    };
    let out = reload(None);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let out = reload(Some(&token));
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn short_or_malformed_admin_tokens_are_configuration_problems() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let base = format!(
        "[jwt]\nsecret = \"{SECRET}\"\n[[upstreams]]\nname = \"app\"\naddrs = [\"127.0.0.1:1\"]\n\
         [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"app\"\n"
    );
    std::fs::write(
        &path,
        format!("{base}[[admin.tokens]]\nname = \"ops\"\nsha256 = \"abc\"\n[[admin.tokens]]\nname = \"ops\"\nsha256 = \"{}\"\n", "a".repeat(64)),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "-c"])
        .arg(&path)
        .env("AUTHGATE_ADMIN_TOKEN", "short")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{said}");
    for expected in [
        "admin.tokens[0].sha256",
        "admin.tokens[1].name",
        "AUTHGATE_ADMIN_TOKEN (env)",
    ] {
        assert!(said.contains(expected), "{expected}: {said}");
    }
    assert!(!said.contains("short"), "the token itself is never printed: {said}");
}

// ---------------------------------------------------------------------------------------------
// Refresh behind a carrier NAT

#[tokio::test]
async fn five_hundred_users_behind_one_address_each_refresh_and_a_family_in_a_loop_is_refused() {
    let fake = fake_kakao(&[REDIRECT_URI]).await;
    let up = Upstream::start("app").await;
    let db = tempfile::tempdir().unwrap();
    let store_url = sqlite_url(db.path());
    // The shipped limits, not the tests' usual generous ones.
    let config = login_config(&fake, &up, &store_url, "", "")
        .replace("auth_per_minute = 100000\nauth_burst = 100000\n", "");
    let gw = Gateway::start(&config).await;
    // Five hundred sessions, as five hundred phones behind one carrier address hold them.
    let mut tokens = Vec::new();
    for i in 0..500 {
        tokens.push(seeded_session(&store_url, "kakao", &format!("{}", 7_000_000 + i)).await);
    }
    let started = Instant::now();
    let mut refused = Vec::new();
    let mut next = Vec::new();
    for token in &tokens {
        let r = post_refresh(&gw, token).await;
        if r.status != 200 {
            refused.push((r.status, r.text()));
        } else {
            next.push(r.json()["refresh_token"].as_str().unwrap().to_string());
        }
    }
    assert!(started.elapsed() < Duration::from_secs(60), "within a minute");
    assert!(refused.is_empty(), "{} of 500 refused: {:?}", refused.len(), refused.first());
    // One session refreshing in a tight loop: a bug or a thief.
    let mut token = next.pop().unwrap();
    let mut answer = None;
    for _ in 0..20 {
        let r = post_refresh(&gw, &token).await;
        if r.status != 200 {
            answer = Some(r);
            break;
        }
        token = r.json()["refresh_token"].as_str().unwrap().to_string();
    }
    let r = answer.expect("a family refreshing twenty times at once is refused");
    r.assert_gateway_error(429, "RATE_LIMIT_EXCEEDED");
    assert!(r.header("retry-after").is_some_and(|v| v.parse::<u64>().unwrap() >= 1));
    // Other sessions from the same address are not held back by it.
    let r = post_refresh(&gw, next.pop().unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let scrape = gw.admin_get("/metrics").await.text();
    assert!(metric(&scrape, "authgate_rate_limited_total{scope=\"refresh_family\"}").is_some(), "{scrape}");
    // Logins keep their per-address budget (10 a minute).
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(gw.get("/api/auth/kakao/login-url", &[]).await.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1, "{statuses:?}");
}

// ---------------------------------------------------------------------------------------------
// From the attacker's read of the fixes above

/// A user with one fresh refresh token, written to the gateway's store as a login would.
async fn seeded_session(store_url: &str, provider: &str, subject: &str) -> String {
    let store = open_store(store_url).await;
    let t = now();
    let user = store
        .upsert_user(
            &authgate::store::ProviderUser {
                provider: provider.into(),
                provider_user_id: subject.into(),
                email: None,
                nickname: "seeded".into(),
                profile_image: None,
            },
            t,
        )
        .await
        .unwrap();
    let (token, hash) = authgate::tokens::refresh::new_refresh_token();
    store
        .insert_refresh(&hash, user.id, &authgate::tokens::refresh::new_family(), t, t + 86_400)
        .await
        .unwrap();
    token
}

#[tokio::test]
async fn a_thief_who_spends_the_familys_budget_cannot_hide_the_victims_reuse() {
    let fake = fake_kakao(&[REDIRECT_URI]).await;
    let up = Upstream::start("app").await;
    let db = tempfile::tempdir().unwrap();
    let store_url = sqlite_url(db.path());
    let gw = Gateway::start(&login_config(
        &fake,
        &up,
        &store_url,
        "refresh_reuse_grace_seconds = 1",
        "",
    ))
    .await;
    let stolen = seeded_session(&store_url, "kakao", "5550001").await;
    // The thief rotates the stolen token, then keeps the family's budget spent.
    let r = post_refresh(&gw, &stolen).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut thiefs = r.json()["refresh_token"].as_str().unwrap().to_string();
    let mut limited = false;
    for _ in 0..30 {
        let r = post_refresh(&gw, &thiefs).await;
        match r.status {
            200 => thiefs = r.json()["refresh_token"].as_str().unwrap().to_string(),
            429 => {
                limited = true;
                break;
            }
            other => panic!("{other}: {}", r.text()),
        }
    }
    assert!(limited, "the family's budget ran out");
    // Past the grace window the victim presents the original token: that is reuse, whatever
    // the family's budget, and the whole family ends.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    post_refresh(&gw, &stolen)
        .await
        .assert_gateway_error(400, "INVALID_REFRESH_TOKEN");
    post_refresh(&gw, &thiefs)
        .await
        .assert_gateway_error(400, "INVALID_REFRESH_TOKEN");
    assert!(gw.log().contains("refresh token reused"), "{}", gw.log());
}

#[tokio::test]
async fn restarting_without_any_provider_ends_the_sessions_of_those_the_store_knows() {
    let fake = fake_kakao(&[REDIRECT_URI]).await;
    let up = Upstream::start("app").await;
    let db = tempfile::tempdir().unwrap();
    let store_url = sqlite_url(db.path());
    let gw = Gateway::start(&login_config(&fake, &up, &store_url, "require_state = false", "")).await;
    let tokens = seed_login(&gw, &fake, RYAN).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let rest = gw.rest_config();
    drop(gw);
    // Login turned off (the only provider compromised, say), by a restart.
    let start = rest.find("[kakao]").unwrap();
    let end = start + rest[start..].find("[[upstreams]]").unwrap();
    let gw = Gateway::start(&format!("{}{}", &rest[..start], &rest[end..])).await;
    gw.get("/api/x", &[("Authorization", &bearer(&access))])
        .await
        .assert_gateway_error(401, "TOKEN_REVOKED");
    post_refresh(&gw, &tokens["refresh_token"])
        .await
        .assert_gateway_error(400, "INVALID_REFRESH_TOKEN");
    // Tokens of issuers this store never had a user of still pass (verify-only).
    let mut elsewhere = claims();
    elsewhere["provider"] = json!("elsewhere");
    assert_eq!(
        gw.get("/api/x", &[("Authorization", &bearer(&hs256(&elsewhere)))])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn an_admin_token_from_a_secret_file_with_a_trailing_newline_works() {
    let up = Upstream::start("app").await;
    let token = "f".repeat(48);
    let gw = Gateway::start_opts(
        &public_route(&up, ""),
        "grace_period_seconds = 1",
        None,
        &[("AUTHGATE_ADMIN_TOKEN", &format!("{token}\n"))],
    )
    .await;
    let r = admin_post(&gw, "/reload", &[("Authorization", &bearer(&token))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn a_callback_with_two_iss_parameters_believes_neither() {
    let s = oidc_site().await;
    let (jar, back) = approved(&s).await;
    let iss: String = url::form_urlencoded::byte_serialize(s.oidc.issuer().as_bytes()).collect();
    s.gw
        .get(
            &format!("{back}&iss={iss}&iss=https%3A%2F%2Fattacker.example"),
            &[("Cookie", &jar)],
        )
        .await
        .assert_gateway_error(400, "BAD_REQUEST");
}
