//! More ways to log in, over sockets: a generic OpenID Connect issuer, Naver, and Kakao's OpenID
//! Connect mode, side by side in one gateway (the real binary, SQLite) against faithful fakes of
//! each. The browser flow is driven by hand here (the real-browser journey is in `browser.rs`).

mod support;

use std::net::SocketAddr;

use authgate::dev::fake_naver::{default_naver_users, FakeNaver, FakeNaverConfig};
use authgate::dev::fake_oidc::{
    default_oidc_users, FakeOidc, FakeOidcConfig, FakeOidcUser, IdTokenFault, SigningAlg,
};
use serde_json::json;
use support::*;

const ORIGIN: &str = "http://gw.test";
const JANE: &str = "248289761001";
/// An unverified email address.
const JOHN: &str = "248289761002";
/// Her `id_token` carries only `sub`: name and email come from user info.
const SAM: &str = "248289761003";
/// Claims Ryan's Kakao address, verified, at the example issuer: never the same user as Ryan.
const MALLORY: &str = "248289761666";

struct Site {
    gw: Gateway,
    oidc: FakeOidc,
    naver: FakeNaver,
    kakao: FakeKakao,
    up: Upstream,
    store_url: String,
    _db: tempfile::TempDir,
}

struct Options {
    alg: SigningAlg,
    secret_in_body: bool,
    /// Appended to the config (more providers, say); `{ISSUER}` and `{NAVER}` stand for the
    /// fakes' base URLs.
    extra: String,
    /// Kakao in its OpenID Connect mode.
    kakao_oidc: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            alg: SigningAlg::RS256,
            secret_in_body: false,
            extra: String::new(),
            kakao_oidc: true,
        }
    }
}

fn redirect(id: &str) -> String {
    format!("{ORIGIN}/api/auth/{id}/callback")
}

/// A gateway with three providers: `example` (OpenID Connect), `naver`, and `kakao` in its OIDC
/// mode, each against its fake.
async fn site(o: Options) -> Site {
    let mut users = default_oidc_users();
    users.push(FakeOidcUser {
        sub: MALLORY.into(),
        name: "Mallory".into(),
        email: "ryan@kakao.test".into(),
        email_verified: true,
        sparse_id_token: false,
    });
    let oidc = FakeOidc::serve(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        FakeOidcConfig {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uris: vec![redirect("example"), redirect("example-2")],
            users,
            alg: o.alg,
            secret_in_body: o.secret_in_body,
        },
    );
    let naver = FakeNaver::serve(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        FakeNaverConfig {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uris: vec![redirect("naver"), redirect("naver-bad")],
            users: default_naver_users(),
        },
    );
    let kakao = fake_kakao(&[&redirect("kakao")]).await;
    let up = Upstream::start("app").await;
    let db = tempfile::tempdir().unwrap();
    let store_url = sqlite_url(db.path());
    let (issuer, n, k) = (oidc.issuer(), naver.base_url(), kakao.base_url());
    let config = format!(
        r#"
[jwt]
secret = "{{secret}}"
[store]
url = "{store_url}"
[rate_limit]
auth_per_minute = 100000
auth_burst = 100000
[kakao]
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
redirect_uri = "{kakao_redirect}"
authorize_url = "{k}/oauth/authorize"
token_url = "{k}/oauth/token"
userinfo_url = "{k}/v2/user/me"
oidc = {kakao_oidc}
issuer = "{k}"
jwks_url = "{k}/.well-known/jwks.json"
timeout_ms = 1000
[[providers]]
id = "example"
kind = "oidc"
display_name = "Example ID"
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
redirect_uri = "{example_redirect}"
timeout_ms = 1000
[[providers]]
id = "naver"
kind = "naver"
display_name = "Naver"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
redirect_uri = "{naver_redirect}"
authorize_url = "{n}/oauth2.0/authorize"
token_url = "{n}/oauth2.0/token"
userinfo_url = "{n}/v1/nid/me"
timeout_ms = 1000
{extra}
[[upstreams]]
name = "app"
addrs = ["{up}"]
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "app"
auth = "required"
[[routes]]
name = "web"
path_prefix = "/web"
upstream = "app"
auth = "required"
on_unauthenticated = "redirect"
"#,
        kakao_redirect = redirect("kakao"),
        example_redirect = redirect("example"),
        naver_redirect = redirect("naver"),
        kakao_oidc = o.kakao_oidc,
        extra = o.extra.replace("{ISSUER}", &issuer).replace("{NAVER}", &n),
        up = up.addr,
    );
    let gw = Gateway::start(&config).await;
    Site {
        gw,
        oidc,
        naver,
        kakao,
        up,
        store_url,
        _db: db,
    }
}

/// The user picks `user` on the provider's page at `authorize_url`: the `Location` it sends
/// the browser back to.
async fn approve_at(
    addr: SocketAddr,
    authorize_url: &str,
    approve_path: &str,
    user: &str,
) -> String {
    let u = url::Url::parse(authorize_url).unwrap();
    let query = u.query().unwrap_or("");
    let page = raw(addr, &get(&format!("{}?{query}", u.path()), &[])).await;
    assert_eq!(page.status, 200, "authorize page: {}", page.text());
    let user_q: String = url::form_urlencoded::byte_serialize(user.as_bytes()).collect();
    assert!(
        page.text().contains(&format!("user={user_q}")),
        "the page lists {user}"
    );
    let r = raw(
        addr,
        &get(&format!("{approve_path}?{query}&user={user_q}"), &[]),
    )
    .await;
    assert_eq!(r.status, 302, "{}", r.text());
    r.header("location").unwrap().to_string()
}

/// The gateway-relative path and query of a URL on [`ORIGIN`].
fn local(url: &str) -> String {
    url.strip_prefix(ORIGIN)
        .unwrap_or_else(|| panic!("{url}"))
        .to_string()
}

impl Site {
    async fn approve(&self, id: &str, authorize_url: &str, user: &str) -> String {
        match id {
            "example" | "example-2" => {
                approve_at(self.oidc.addr, authorize_url, "/authorize/approve", user).await
            }
            "naver" | "naver-bad" => {
                approve_at(
                    self.naver.addr,
                    authorize_url,
                    "/oauth2.0/authorize/approve",
                    user,
                )
                .await
            }
            "kakao" => {
                approve_at(
                    self.kakao.addr,
                    authorize_url,
                    "/oauth/authorize/approve",
                    user,
                )
                .await
            }
            other => panic!("{other}"),
        }
    }

    /// The browser flow up to the callback: `/{id}/login?next=/web/home`, the provider's page,
    /// then the callback with the state cookie. The callback's answer.
    async fn browser_login(&self, id: &str, user: &str) -> RawResponse {
        let r = self
            .gw
            .get(&format!("/api/auth/{id}/login?next=/web/home"), &[])
            .await;
        assert_eq!(r.status, 302, "{}\n{}", r.text(), self.gw.log());
        let jar = cookies(&r);
        let back = self.approve(id, r.header("location").unwrap(), user).await;
        self.gw.get(&local(&back), &[("Cookie", &jar)]).await
    }

    /// The JSON flow: `/{id}/login-url`, the provider's page, `POST /{id}/callback` with the
    /// code and state and the state cookie. The callback's answer.
    async fn json_login(&self, id: &str, user: &str) -> RawResponse {
        let (jar, body) = self.approved(id, user).await;
        self.gw
            .send(&json_post(
                &format!("/api/auth/{id}/callback"),
                &body,
                &[("Cookie", &jar)],
            ))
            .await
    }

    /// The JSON flow up to its callback: the state cookie, and the body to post (code, state).
    async fn approved(&self, id: &str, user: &str) -> (String, serde_json::Value) {
        let r = self.gw.get(&format!("/api/auth/{id}/login-url"), &[]).await;
        assert_eq!(r.status, 200, "{}\n{}", r.text(), self.gw.log());
        let jar = cookies(&r);
        let login_url = r.json()["login_url"].as_str().unwrap().to_string();
        let back = self.approve(id, &login_url, user).await;
        let body = json!({
            "code": query_param(&back, "code").expect("a code"),
            "state": query_param(&back, "state").expect("the state"),
        });
        (jar, body)
    }

    async fn profile(&self, tokens: &serde_json::Value) -> serde_json::Value {
        let auth = bearer(tokens["access_token"].as_str().unwrap());
        let r = self
            .gw
            .get("/api/auth/profile", &[("Authorization", &auth)])
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }
}

// ---------------------------------------------------------------------------------------------
// The login page and routes

#[tokio::test]
async fn the_login_page_offers_every_provider_and_protected_pages_send_browsers_there() {
    let s = site(Options::default()).await;
    let r =
        s.gw.get("/web/home?tab=1", &[("Accept", "text/html")])
            .await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("/api/auth/login?next=/web/home%3Ftab%3D1"),
        "several providers: the page that lists them"
    );
    let page =
        s.gw.get("/api/auth/login?next=/web/home%3Ftab%3D1", &[])
            .await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let html = page.text();
    for (id, name) in [
        ("kakao", "Kakao"),
        ("example", "Example ID"),
        ("naver", "Naver"),
    ] {
        assert!(
            html.contains(&format!(
                "href=\"/api/auth/{id}/login?next=%2Fweb%2Fhome%3Ftab%3D1\""
            )) && html.contains(&format!("Log in with {name}<")),
            "{id}: {html}"
        );
    }
    // `next` is checked as everywhere: another origin becomes `/`.
    let html =
        s.gw.get("/api/auth/login?next=https://evil.example/", &[])
            .await
            .text();
    assert!(!html.contains("evil"), "{html}");
    assert!(html.contains("/api/auth/naver/login?next=%2F\""), "{html}");
    // Providers that are not configured have no routes.
    for path in [
        "/api/auth/google/login",
        "/api/auth/google/callback",
        "/api/auth/Example/login",
    ] {
        s.gw.get(path, &[])
            .await
            .assert_gateway_error(404, "NOT_FOUND");
    }
    assert_eq!(s.up.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// OpenID Connect

#[tokio::test]
async fn an_oidc_browser_login_reaches_the_app_with_the_issuers_identity() {
    let s = site(Options::default()).await;
    let r =
        s.gw.get("/api/auth/example/login?next=/web/home", &[])
            .await;
    assert_eq!(r.status, 302, "{}", r.text());
    let authorize = r.header("location").unwrap().to_string();
    assert!(
        authorize.starts_with(&format!("{}/authorize?", s.oidc.issuer())),
        "{authorize}"
    );
    for (k, v) in [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", redirect("example").as_str()),
        ("scope", "openid email profile"),
        ("code_challenge_method", "S256"),
    ] {
        assert_eq!(
            query_param(&authorize, k).as_deref(),
            Some(v),
            "{authorize}"
        );
    }
    let nonce = query_param(&authorize, "nonce").unwrap();
    assert!(nonce.len() >= 22, "{nonce}");
    let again =
        s.gw.get("/api/auth/example/login?next=/web/home", &[])
            .await;
    assert_ne!(
        query_param(again.header("location").unwrap(), "nonce").unwrap(),
        nonce,
        "a nonce per login"
    );

    let jar = cookies(&r);
    let back = s.approve("example", &authorize, JANE).await;
    let callback = local(&back);
    // Not this browser's: refused before the code is spent, also with the state (which the
    // URL carries) sent as the cookie.
    let state = query_param(&back, "state").unwrap();
    for jar in ["", &format!("authgate_state={state}")] {
        s.gw.get(&callback, &[("Cookie", jar)])
            .await
            .assert_gateway_error(400, "INVALID_STATE");
    }
    let r = s.gw.get(&callback, &[("Cookie", &jar)]).await;
    assert_eq!(r.status, 302, "{}\n{}", r.text(), s.gw.log());
    assert_eq!(r.header("location"), Some("/web/home"));
    let session = cookies(&r);
    assert!(session.contains("authgate_access="), "{session}");
    // The same callback again: the issuer refuses the spent code.
    s.gw.get(&callback, &[("Cookie", &jar)])
        .await
        .assert_gateway_error(400, "LOGIN_FAILED");

    let r = s.gw.get("/web/home", &[("Cookie", &session)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = s.up.last();
    assert_eq!(seen.one("X-User-Provider"), Some("example"));
    assert_eq!(seen.one("X-User-Email"), Some("jane@example.test"));
    assert_eq!(seen.one("X-User-Nickname"), Some("Jane Doe"));
    // One discovery and one key set for every login.
    assert_eq!((s.oidc.discovery_fetches(), s.oidc.jwks_fetches()), (1, 1));
}

#[tokio::test]
async fn an_oidc_json_login_keeps_only_verified_email_and_completes_claims_from_user_info() {
    // ES256 keys, and an issuer that takes the client secret in the body.
    let s = site(Options {
        alg: SigningAlg::ES256,
        secret_in_body: true,
        ..Options::default()
    })
    .await;
    let r = s.json_login("example", JANE).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), s.gw.log());
    let jane = s.profile(&r.json()).await;
    assert_eq!(jane["username"], format!("example_{JANE}"));
    assert_eq!(jane["social_provider"], "example");
    assert_eq!(jane["email"], "jane@example.test");
    assert_eq!(jane["nickname"], "Jane Doe");
    assert_eq!(
        jane["profile_image"],
        format!("https://example.test/avatars/{JANE}.png")
    );

    let john = s.profile(&s.json_login("example", JOHN).await.json()).await;
    assert_eq!(john["email"], "", "not verified: not kept");
    assert_eq!(john["nickname"], "John Roe");

    let sam = s.profile(&s.json_login("example", SAM).await.json()).await;
    assert_eq!(sam["nickname"], "Sparse Sam", "from user info");
    assert_eq!(sam["email"], "sam@example.test", "verified, from user info");

    // User info down: the login goes on with what the verified id_token says.
    s.oidc.set_userinfo_fault(Fault::ServerError);
    let r = s.json_login("example", SAM).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.profile(&r.json()).await["id"], sam["id"]);
    assert!(
        s.gw.log().contains("user info unavailable"),
        "{}",
        s.gw.log()
    );
    s.oidc.set_userinfo_fault(Fault::None);

    // The same person again is the same user.
    let again = s.profile(&s.json_login("example", JANE).await.json()).await;
    assert_eq!(again["id"], jane["id"]);
}

#[tokio::test]
async fn state_belongs_to_one_provider_and_a_json_callback_needs_it() {
    let s = site(Options::default()).await;
    let r = s.gw.get("/api/auth/example/login-url", &[]).await;
    let jar = cookies(&r);
    let login_url = r.json()["login_url"].as_str().unwrap().to_string();
    let back = s.approve("example", &login_url, JANE).await;
    let (code, state) = (
        query_param(&back, "code").unwrap(),
        query_param(&back, "state").unwrap(),
    );
    // No state: an OpenID Connect login has no nonce to check without it.
    s.gw.send(&json_post(
        "/api/auth/example/callback",
        &json!({"code": code}),
        &[("Cookie", &jar)],
    ))
    .await
    .assert_gateway_error(400, "INVALID_STATE");
    // Example's state at Naver's callback (and Kakao's): refused.
    for other in ["naver", "kakao"] {
        let r =
            s.gw.send(&json_post(
                &format!("/api/auth/{other}/callback"),
                &json!({"code": code, "state": state}),
                &[("Cookie", &jar)],
            ))
            .await;
        r.assert_gateway_error(400, "INVALID_STATE");
    }
    let r =
        s.gw.send(&json_post(
            "/api/auth/example/callback",
            &json!({"code": code, "state": state}),
            &[("Cookie", &jar)],
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn every_id_token_an_issuer_must_not_send_is_refused() {
    let s = site(Options::default()).await;
    // Why each is refused, as the log says it.
    let cases = [
        (IdTokenFault::Forged, "InvalidSignature"),
        (IdTokenFault::Expired, "ExpiredSignature"),
        (IdTokenFault::WrongAudience, "InvalidAudience"),
        (IdTokenFault::WrongIssuer, "InvalidIssuer"),
        (IdTokenFault::WrongNonce, "nonce is not this login's"),
        (IdTokenFault::AlgNone, "id_token refused: header"),
        (IdTokenFault::HmacWithPublicKey, "alg HS256 is not accepted"),
        (
            IdTokenFault::SeveralAudiencesNoAzp,
            "several audiences and no azp",
        ),
    ];
    for (fault, why) in cases {
        s.oidc.set_id_token_fault(fault);
        for flow in ["json", "browser"] {
            let r = match flow {
                "json" => s.json_login("example", JANE).await,
                _ => s.browser_login("example", JANE).await,
            };
            r.assert_gateway_error(400, "LOGIN_FAILED");
            assert!(
                r.set_cookies()
                    .iter()
                    .all(|c| !c.starts_with("authgate_access=")),
                "{fault:?}"
            );
        }
        assert!(s.gw.log().contains(why), "{fault:?}: {why}\n{}", s.gw.log());
    }
    // No id_token at all: the issuer is not speaking OpenID Connect.
    s.oidc.set_id_token_fault(IdTokenFault::Missing);
    s.json_login("example", JANE)
        .await
        .assert_gateway_error(502, "PROVIDER_UNAVAILABLE");
    // None of it made a user; a good token still logs in.
    s.oidc.set_id_token_fault(IdTokenFault::None);
    let r = s.json_login("example", JANE).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.profile(&r.json()).await["id"], 1, "the first user made");
    let scrape = s.gw.admin_get("/metrics").await.text();
    assert_eq!(
        metric(
            &scrape,
            "authgate_logins_total{provider=\"example\",result=\"login_failed\"}"
        ),
        Some(16.0)
    );
    assert_eq!(s.up.count(), 0);
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_keys_once_a_minute_then_fails_cleanly() {
    let s = site(Options::default()).await;
    assert_eq!(s.json_login("example", JANE).await.status, 200);
    assert_eq!(s.oidc.jwks_fetches(), 1);
    s.oidc.set_id_token_fault(IdTokenFault::UnknownKid);
    s.json_login("example", JANE)
        .await
        .assert_gateway_error(400, "LOGIN_FAILED");
    assert_eq!(
        s.oidc.jwks_fetches(),
        2,
        "fetched again for the unknown kid"
    );
    for _ in 0..3 {
        s.json_login("example", JANE)
            .await
            .assert_gateway_error(400, "LOGIN_FAILED");
    }
    assert_eq!(s.oidc.jwks_fetches(), 2, "not again within the minute");
    assert!(
        s.gw.log()
            .contains("does not publish (kid Some(\"never-published\"))"),
        "{}",
        s.gw.log()
    );
    s.oidc.set_id_token_fault(IdTokenFault::None);
    assert_eq!(
        s.json_login("example", JANE).await.status,
        200,
        "the known key still works"
    );
}

#[tokio::test]
async fn rotated_signing_keys_are_fetched_when_first_seen() {
    let s = site(Options::default()).await;
    assert_eq!(s.json_login("example", JANE).await.status, 200);
    s.oidc.rotate_keys();
    let r = s.json_login("example", JANE).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), s.gw.log());
    assert_eq!(s.oidc.jwks_fetches(), 2);
    assert_eq!(s.json_login("example", JANE).await.status, 200);
    assert_eq!(s.oidc.jwks_fetches(), 2, "the new key is kept");
}

#[tokio::test]
async fn an_issuer_down_or_slow_gives_the_documented_errors() {
    let s = site(Options::default()).await;
    // Discovery is fetched on first use: the gateway started although nothing was fetched.
    assert_eq!(s.oidc.discovery_fetches(), 0);
    for (fault, status, code) in [
        (Fault::ServerError, 502, "PROVIDER_UNAVAILABLE"),
        (Fault::HtmlBody, 502, "PROVIDER_UNAVAILABLE"),
        (Fault::Hang, 504, "PROVIDER_TIMEOUT"),
    ] {
        s.oidc.set_fault(fault);
        s.gw.get("/api/auth/example/login-url", &[])
            .await
            .assert_gateway_error(status, code);
        s.gw.get("/api/auth/example/login?next=/web/home", &[])
            .await
            .assert_gateway_error(status, code);
    }
    s.oidc.set_fault(Fault::None);
    let r = s.gw.get("/api/auth/example/login-url", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let jar = cookies(&r);
    let back = s
        .approve("example", r.json()["login_url"].as_str().unwrap(), JANE)
        .await;
    // The token endpoint fails after the user approved; discovery, cached, is not asked again.
    for (fault, status, code) in [
        (Fault::ServerError, 502, "PROVIDER_UNAVAILABLE"),
        (Fault::Hang, 504, "PROVIDER_TIMEOUT"),
    ] {
        s.oidc.set_fault(fault);
        s.gw.get(&local(&back), &[("Cookie", &jar)])
            .await
            .assert_gateway_error(status, code);
        // ...and a new login still starts from the cached discovery.
        assert_eq!(
            s.gw.get("/api/auth/example/login-url", &[]).await.status,
            200
        );
    }
    let scrape = s.gw.admin_get("/metrics").await.text();
    assert_eq!(
        metric(
            &scrape,
            "authgate_logins_total{provider=\"example\",result=\"provider_timeout\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&scrape, "authgate_provider_request_duration_seconds_count{endpoint=\"token\",provider=\"example\"}"),
        Some(2.0),
        "{scrape}"
    );
}

#[tokio::test]
async fn an_issuer_whose_discovery_names_another_issuer_is_refused() {
    // The same fake under a name its discovery does not use (a trailing slash): `iss` would
    // never match, so the provider is reported unusable rather than failing every login later.
    let s = site(Options {
        extra: format!(
            "[[providers]]\nid = \"example-2\"\nkind = \"oidc\"\nissuer = \"{{ISSUER}}/\"\n\
             client_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\nredirect_uri = \"{}\"\n",
            redirect("example-2")
        ),
        ..Options::default()
    })
    .await;
    s.gw.get("/api/auth/example-2/login-url", &[])
        .await
        .assert_gateway_error(502, "PROVIDER_UNAVAILABLE");
    assert!(s.gw.log().contains("they must be equal"), "{}", s.gw.log());
    assert_eq!(
        s.gw.get("/api/auth/example/login-url", &[]).await.status,
        200
    );
}

// ---------------------------------------------------------------------------------------------
// Naver

#[tokio::test]
async fn naver_logs_in_by_browser_and_by_json_without_keeping_an_unverifiable_email() {
    let s = site(Options::default()).await;
    let user = &default_naver_users()[0];
    let r = s.gw.get("/api/auth/naver/login?next=/web/home", &[]).await;
    let authorize = r.header("location").unwrap().to_string();
    assert!(query_param(&authorize, "state").is_some());
    assert_eq!(
        query_param(&authorize, "code_challenge"),
        None,
        "Naver has no PKCE"
    );
    assert_eq!(query_param(&authorize, "nonce"), None);

    let r = s.browser_login("naver", &user.id).await;
    assert_eq!(r.status, 302, "{}\n{}", r.text(), s.gw.log());
    let r = s.gw.get("/web/home", &[("Cookie", &cookies(&r))]).await;
    assert_eq!(r.status, 200);
    let seen = s.up.last();
    assert_eq!(seen.one("X-User-Provider"), Some("naver"));
    assert_eq!(seen.one("X-User-Nickname"), Some("네이버사용자"));
    assert_eq!(
        seen.one("X-User-Email"),
        None,
        "Naver does not say it verified the address"
    );

    let r = s.json_login("naver", &user.id).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let p = s.profile(&r.json()).await;
    assert_eq!(p["username"], format!("naver_{}", user.id));
    assert_eq!(p["social_provider"], "naver");
    assert!(p["profile_image"]
        .as_str()
        .unwrap()
        .starts_with("https://phinf.pstatic.net/"));
}

#[tokio::test]
async fn naver_errors_come_back_as_the_documented_codes() {
    // A second Naver client with the wrong secret: an operator's mistake, not the user's.
    let s = site(Options {
        extra: format!(
            "[[providers]]\nid = \"naver-bad\"\nkind = \"naver\"\nclient_id = \"{CLIENT_ID}\"\n\
             client_secret = \"not-the-secret\"\nredirect_uri = \"{}\"\n\
             authorize_url = \"{{NAVER}}/oauth2.0/authorize\"\ntoken_url = \"{{NAVER}}/oauth2.0/token\"\n\
             userinfo_url = \"{{NAVER}}/v1/nid/me\"\n",
            redirect("naver-bad")
        ),
        ..Options::default()
    })
    .await;
    let user = default_naver_users()[0].id.clone();
    s.json_login("naver-bad", &user)
        .await
        .assert_gateway_error(502, "PROVIDER_UNAVAILABLE");
    assert!(
        s.gw.log().contains("rejected the client credentials"),
        "{}",
        s.gw.log()
    );

    // A code used twice: Naver answers 200 with an `error`, which is the user's failed login.
    let (jar, body) = s.approved("naver", &user).await;
    let post = json_post("/api/auth/naver/callback", &body, &[("Cookie", &jar)]);
    assert_eq!(s.gw.send(&post).await.status, 200);
    s.gw.send(&post)
        .await
        .assert_gateway_error(400, "LOGIN_FAILED");
    // Without the state Naver requires: refused before Naver is asked.
    s.gw.send(&json_post(
        "/api/auth/naver/callback",
        &json!({"code": "x"}),
        &[("Cookie", &jar)],
    ))
    .await
    .assert_gateway_error(400, "INVALID_STATE");

    for (fault, status, code) in [
        (Fault::ServerError, 502, "PROVIDER_UNAVAILABLE"),
        (Fault::HtmlBody, 502, "PROVIDER_UNAVAILABLE"),
        (Fault::Hang, 504, "PROVIDER_TIMEOUT"),
    ] {
        s.naver.set_fault(fault);
        s.json_login("naver", &user)
            .await
            .assert_gateway_error(status, code);
        s.browser_login("naver", &user)
            .await
            .assert_gateway_error(status, code);
    }
    s.naver.set_fault(Fault::None);
    assert_eq!(s.json_login("naver", &user).await.status, 200);
}

/// `require_state = false` is for the seed's Kakao client: it lets no other provider's callback
/// through without the browser's secret, so a leaked callback URL stays useless.
#[tokio::test]
async fn the_legacy_setting_lets_only_kakaos_plain_flow_skip_the_browser_secret() {
    let s = site(Options {
        extra: "[auth]\nrequire_state = false\n".into(),
        kakao_oidc: false,
        ..Options::default()
    })
    .await;
    let user = default_naver_users()[0].id.clone();
    let (jar, body) = s.approved("naver", &user).await;
    s.gw.send(&json_post("/api/auth/naver/callback", &body, &[]))
        .await
        .assert_gateway_error(400, "INVALID_STATE");
    let r =
        s.gw.send(&json_post(
            "/api/auth/naver/callback",
            &body,
            &[("Cookie", &jar)],
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

// ---------------------------------------------------------------------------------------------
// Kakao's OpenID Connect mode, and users never merged

#[tokio::test]
async fn kakaos_oidc_mode_verifies_its_id_token_and_keeps_kakaos_error_codes() {
    let s = site(Options::default()).await;
    let r = s.gw.get("/api/auth/kakao/login-url", &[]).await;
    let login_url = r.json()["login_url"].as_str().unwrap().to_string();
    let scope = query_param(&login_url, "scope").unwrap();
    assert!(scope.split(',').any(|s| s == "openid"), "{scope}");
    assert!(query_param(&login_url, "nonce").is_some());

    let r = s.browser_login("kakao", &RYAN.to_string()).await;
    assert_eq!(r.status, 302, "{}\n{}", r.text(), s.gw.log());
    assert_eq!(r.header("location"), Some("/web/home"));
    let r = s.json_login("kakao", &RYAN.to_string()).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), s.gw.log());
    let ryan = s.profile(&r.json()).await;
    assert_eq!(ryan["username"], format!("kakao_{RYAN}"));
    assert_eq!(ryan["email"], "ryan@kakao.test");
    for (fault, why) in [
        (IdTokenFault::Forged, "InvalidSignature"),
        (IdTokenFault::WrongNonce, "nonce is not this login's"),
        (IdTokenFault::WrongAudience, "InvalidAudience"),
    ] {
        s.kakao.set_id_token_fault(fault);
        s.json_login("kakao", &RYAN.to_string())
            .await
            .assert_gateway_error(400, "KAKAO_LOGIN_FAILED");
        assert!(s.gw.log().contains(why), "{fault:?}");
    }
    s.kakao.set_id_token_fault(IdTokenFault::None);

    // Mallory's issuer vouches for Ryan's address: she is her own user all the same.
    let mallory = s
        .profile(&s.json_login("example", MALLORY).await.json())
        .await;
    assert_eq!(mallory["email"], "ryan@kakao.test");
    assert_ne!(mallory["id"], ryan["id"]);
    assert_eq!(mallory["social_provider"], "example");
    let store = open_store(&s.store_url).await;
    let ryan_row = store
        .user(ryan["id"].as_i64().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ryan_row.provider.as_str(), ryan_row.nickname.as_str()),
        ("kakao", "라이언")
    );
}
