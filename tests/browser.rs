//! Sessions as a real browser lives them: headless Chromium (Debian's `chromium`), driven over
//! WebDriver (`chromedriver`, Debian's `chromium-driver`) with fantoccini, against the real
//! binary. `scripts/ensure-tools` installs both; without them these tests fail, they never skip.
//!
//! fantoccini rather than chromiumoxide: WebDriver is the W3C standard, chromedriver comes in
//! the same Debian package set as the browser (always the matching version), and the crate is
//! small, where a CDP client is a large generated protocol crate that costs minutes of build on
//! every CI run. Cookies are read and written through WebDriver, which sees HttpOnly ones.
//!
//! Journeys: the `authgate dev` demo click-through; an access cookie that expires (a one-minute
//! TTL) and a reload that refreshes transparently; five parallel loads after expiry; the
//! upstream down during a refresh, then up; logout after expiry; the seed's `kakaoAuth.js` in a
//! page; a cross-origin form POST refused; signing in and refreshing over HTTPS and HTTP/2.

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use support::*;

// ---------------------------------------------------------------------------------------------
// The browser

/// One chromedriver per test binary; browser sessions one at a time (two cores: parallel
/// Chromiums only make every test slower and flakier).
struct Driver {
    url: String,
    _child: Child,
}

static DRIVER: std::sync::OnceLock<Driver> = std::sync::OnceLock::new();
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn driver() -> &'static Driver {
    DRIVER.get_or_init(|| {
        let port = free_addr().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/ensure-tools installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            url: format!("http://127.0.0.1:{port}"),
            _child: child,
        }
    })
}

/// A fresh headless Chromium with an empty profile.
struct Browser {
    client: Client,
    _profile: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl std::ops::Deref for Browser {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

async fn browser() -> Browser {
    let turn = ONE_AT_A_TIME.lock().await;
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                // The HTTPS journey's certificate comes from a CA made in the test.
                "--ignore-certificate-errors",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver().url)
        .await
        .expect("a Chromium session (Debian's chromium; scripts/ensure-tools installs it)");
    Browser {
        client,
        _profile: profile,
        _turn: turn,
    }
}

impl Browser {
    async fn text(&self, css: &str) -> String {
        self.find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn click(&self, what: Locator<'_>) {
        self.find(what)
            .await
            .unwrap_or_else(|e| panic!("{what:?}: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn body(&self) -> String {
        self.text("body").await
    }

    /// The value of one of the browser's cookies (HttpOnly included).
    async fn cookie(&self, name: &str) -> Option<String> {
        self.get_all_cookies()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.name() == name)
            .map(|c| c.value().to_string())
    }

    /// Replaces a cookie's value, keeping everything else the gateway set (HttpOnly, path,
    /// SameSite).
    async fn set_cookie(&self, name: &str, value: &str) {
        if name.starts_with("__Host-") {
            // WebDriver's add-cookie always gives a domain, which a `__Host-` cookie may not
            // carry: set it through Chromium's DevTools protocol instead, as the gateway does.
            let url = self.current_url().await.unwrap();
            let cmd = Cdp(json!({"cmd": "Network.setCookie", "params": {
                "name": name, "value": value, "url": url.origin().ascii_serialization(),
                "path": "/", "secure": true, "httpOnly": true, "sameSite": "Lax"
            }}));
            let done = self.issue_cmd(cmd).await.unwrap();
            assert_eq!(done["success"], true, "{done}");
            return;
        }
        let mut c = self.get_named_cookie(name).await.unwrap();
        c.set_value(value.to_string());
        self.delete_cookie(name).await.unwrap();
        self.add_cookie(c).await.unwrap();
    }

    /// Runs `script` (an async function body that returns a value) in the page.
    async fn run(&self, script: &str) -> Value {
        let wrapped = format!(
            "const done = arguments[arguments.length - 1];\
             (async () => {{ {script} }})().then(done, e => done({{error: String(e)}}));"
        );
        self.execute_async(&wrapped, vec![]).await.unwrap()
    }
}

/// A Chromium DevTools command through chromedriver (`goog/cdp/execute`).
#[derive(Debug)]
struct Cdp(Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or("")
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.0.to_string()))
    }
}

/// An expired access token for user 1 (Ryan in the fake Kakao), signed with the test key: what
/// the browser holds once `access_ttl_minutes` have passed.
fn expired_access() -> String {
    let mut c = claims();
    c["sub"] = json!("1");
    c["user_id"] = json!(1);
    c["exp"] = json!(now() - 120);
    c["iat"] = json!(now() - 1920);
    hs256(&c)
}

// ---------------------------------------------------------------------------------------------
// The app behind the gateway

/// An upstream app with pages: `/web/*` shows who the gateway says is signed in, `/seed/*`
/// serves the seed's client, and `/form` a page with a form that posts to `/web/transfer`.
async fn app(addr: SocketAddr) -> Upstream {
    let pages: Responder = Arc::new(|seen: &Seen| {
        let path = seen.target.split('?').next().unwrap_or("");
        let html = |body: String| {
            Some((
                200,
                "text/html; charset=utf-8",
                format!("<!doctype html><html><head><meta charset=utf-8></head><body>{body}</body></html>")
                    .into_bytes(),
            ))
        };
        match path {
            "/seed/kakaoAuth.js" => Some((
                200,
                "text/javascript; charset=utf-8",
                std::fs::read(fixture("kakaoAuth.js")).unwrap(),
            )),
            p if p.starts_with("/seed/") => html(
                "<button id=\"kakao-login-btn\">Kakao</button>\
                 <script src=\"/seed/kakaoAuth.js\"></script>"
                    .into(),
            ),
            "/web/transfer" => html(format!(
                "<p id=who>{} {}</p>",
                seen.method,
                seen.one("x-user-id").unwrap_or("nobody")
            )),
            p if p.starts_with("/web") => html(format!(
                "<p id=who>{}|{}</p>",
                seen.one("x-user-id").unwrap_or("nobody"),
                seen.one("x-user-nickname").unwrap_or("")
            )),
            _ => None,
        }
    });
    Upstream::start_with("app", addr, pages).await
}

/// [`app`] again on the address it had, once the old listener is gone.
async fn app_again(addr: SocketAddr) -> Upstream {
    for _ in 0..50 {
        if std::net::TcpListener::bind(addr).is_ok() {
            return app(addr).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{addr} stayed taken");
}

/// The gateway in front of [`app`], the fake Kakao sending browsers back to it: `/web`
/// required with redirect to login, `/seed` public, the seed's API under `/api/auth`.
struct Site {
    gw: Gateway,
    app: Upstream,
    fake: FakeKakao,
    /// `http://127.0.0.1:port`, or `https://localhost:port` for [`site_over_https`].
    origin: String,
    _certs: Option<tempfile::TempDir>,
}

const BROWSER_FLOW: &str = "/api/auth/kakao/callback";

/// `callback` is the redirect URI's path: the gateway's browser flow, or an SPA's own page.
async fn site(jwt_extra: &str, auth_extra: &str, callback: &str) -> Site {
    site_on(jwt_extra, auth_extra, callback, false).await
}

/// A [`site`] whose browser uses the gateway's HTTPS listener (HTTP/2 by ALPN).
async fn site_over_https(jwt_extra: &str) -> Site {
    site_on(jwt_extra, "", BROWSER_FLOW, true).await
}

async fn site_on(jwt_extra: &str, auth_extra: &str, callback: &str, https: bool) -> Site {
    // The fake must know the gateway's address before it starts: pick the port first.
    let gw_addr = free_addr();
    let (origin, server, certs) = if https {
        let dir = tempfile::tempdir().unwrap();
        let ca = support::pki::Ca::new("browser test CA");
        let (cert, key) = ca.leaf(&["localhost"]).write(dir.path(), "gw");
        let tls = free_addr();
        (
            format!("https://localhost:{}", tls.port()),
            format!(
                "grace_period_seconds = 1\ntls_listen = \"{tls}\"\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"",
                cert.display(),
                key.display()
            ),
            Some(dir),
        )
    } else {
        (
            format!("http://{gw_addr}"),
            "grace_period_seconds = 1".to_string(),
            None,
        )
    };
    let fake = fake_kakao(&[
        &format!("{origin}/api/auth/kakao/callback"),
        &format!("{origin}/seed/callback.html"),
    ])
    .await;
    let app = app("127.0.0.1:0".parse().unwrap()).await;
    let k = fake.base_url();
    let config = format!(
        r#"
[jwt]
secret = "{{secret}}"
{jwt_extra}
[auth]
{auth_extra}
[rate_limit]
auth_per_minute = 100000
auth_burst = 100000
[kakao]
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
redirect_uri = "{origin}{callback}"
authorize_url = "{k}/oauth/authorize"
token_url = "{k}/oauth/token"
userinfo_url = "{k}/v2/user/me"
[[upstreams]]
name = "app"
addrs = ["{}"]
health_check_interval_ms = 200
[[routes]]
name = "web"
path_prefix = "/web"
upstream = "app"
auth = "required"
on_unauthenticated = "redirect"
[[routes]]
name = "pages"
path_prefix = "/"
upstream = "app"
auth = "public"
"#,
        app.addr
    );
    let gw = Gateway::start_at_with(gw_addr, &config, &server).await;
    Site {
        gw,
        app,
        fake,
        origin,
        _certs: certs,
    }
}

/// A [`site`] and a browser in which Ryan has logged in.
async fn signed_in(jwt_extra: &str, auth_extra: &str, callback: &str) -> (Site, Browser) {
    let s = site(jwt_extra, auth_extra, callback).await;
    let b = browser().await;
    s.log_in(&b).await;
    (s, b)
}

impl Site {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// Logs Ryan in the way a browser does: `/web/home` redirects to login, the fake Kakao's
    /// page, a click on Ryan, the callback, back on `/web/home`.
    async fn log_in(&self, b: &Browser) {
        b.goto(&self.url("/web/home")).await.unwrap();
        b.find(Locator::Css(&format!("a.user[href*='user={RYAN}']")))
            .await
            .expect("the fake Kakao's login page")
            .click()
            .await
            .unwrap();
        b.wait()
            .for_url(&url::Url::parse(&self.url("/web/home")).unwrap())
            .await
            .unwrap();
        assert_eq!(b.text("#who").await, "1|라이언");
    }

    async fn metric(&self, series: &str) -> Option<f64> {
        metric(&self.gw.admin_get("/metrics").await.text(), series)
    }
}

// ---------------------------------------------------------------------------------------------
// Journeys

#[tokio::test]
async fn the_dev_demo_logs_in_by_clicking_through_to_app() {
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin) = (free_addr(), free_addr());
    let mut demo = Command::new(bin())
        .args([
            "dev",
            "--listen",
            &listen.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ])
        .current_dir(dir.path())
        .env_remove("AUTHGATE_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _kill = KillOnDrop(&mut demo);
    let deadline = Instant::now() + Duration::from_secs(20);
    while raw(admin, &get("/readyz", &[])).await.status != 200 {
        assert!(
            Instant::now() < deadline,
            "authgate dev did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = browser().await;
    b.goto(&format!("http://{listen}/")).await.unwrap();
    assert!(
        b.body().await.contains("Not signed in"),
        "{}",
        b.body().await
    );
    // The login page offers both of the demo's providers; each logs in as its own user.
    let app_url = url::Url::parse(&format!("http://{listen}/app")).unwrap();
    b.click(Locator::LinkText("Log in")).await;
    b.click(Locator::LinkText("Log in with Kakao")).await;
    b.click(Locator::Css("a.user")).await;
    b.wait().for_url(&app_url).await.unwrap();
    let page = b.body().await;
    assert!(page.contains("Signed in as"), "{page}");
    assert_eq!(forwarded(&b, "x-user-provider").await, "kakao");
    b.click(Locator::Css("button")).await;
    b.wait()
        .for_url(&url::Url::parse(&format!("http://{listen}/")).unwrap())
        .await
        .unwrap();
    b.click(Locator::LinkText("Log in")).await;
    b.click(Locator::LinkText("Log in with Example ID")).await;
    b.click(Locator::Css("a.user")).await;
    b.wait().for_url(&app_url).await.unwrap();
    let page = b.body().await;
    assert!(page.contains("Signed in as Jane Doe"), "{page}");
    assert_eq!(forwarded(&b, "x-user-provider").await, "example");
    assert_eq!(forwarded(&b, "x-user-email").await, "jane@example.test");
    b.clone().close().await.unwrap();
}

/// A header the demo app shows it received.
async fn forwarded(b: &Browser, name: &str) -> String {
    b.find(Locator::XPath(&format!("//tr[th='{name}']/td")))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .text()
        .await
        .unwrap()
}

struct KillOnDrop<'a>(&'a mut Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A one-minute access token really expires in the browser; a reload refreshes it unseen.
#[tokio::test]
async fn an_expired_access_cookie_is_refreshed_on_reload() {
    let (s, b) = signed_in(
        "access_ttl_minutes = 1\nleeway_seconds = 0",
        "",
        BROWSER_FLOW,
    )
    .await;
    let (access, refresh) = (
        b.cookie("authgate_access").await.unwrap(),
        b.cookie("authgate_refresh").await.unwrap(),
    );
    // The token's own `exp` passes; the cookie (which outlives it) is still there.
    tokio::time::sleep(Duration::from_secs(61)).await;
    s.gw.get("/web/x", &[("Authorization", &bearer(&access))])
        .await
        .assert_gateway_error(401, "TOKEN_EXPIRED");
    b.refresh().await.unwrap();
    assert_eq!(b.text("#who").await, "1|라이언");
    assert_ne!(b.cookie("authgate_access").await.unwrap(), access);
    assert_ne!(b.cookie("authgate_refresh").await.unwrap(), refresh);
    b.clone().close().await.unwrap();
}

/// The same journey on the HTTPS listener: Chromium speaks HTTP/2, the session cookies are
/// `__Host-` and `Secure` without any trusted proxy, the upstream is told `https`, and an
/// expired access cookie is refreshed over HTTP/2 as over HTTP/1.1.
#[tokio::test]
async fn a_browser_signs_in_and_refreshes_over_https_and_http2() {
    let s = site_over_https("").await;
    let b = browser().await;
    s.log_in(&b).await;
    let protocol = b
        .run("return performance.getEntriesByType('navigation')[0].nextHopProtocol;")
        .await;
    assert_eq!(protocol, "h2");
    let cookies = b.get_all_cookies().await.unwrap();
    let access = cookies
        .iter()
        .find(|c| c.name() == "__Host-authgate_access")
        .unwrap_or_else(|| panic!("no __Host- access cookie: {cookies:?}"));
    assert_eq!(access.secure(), Some(true));
    assert_eq!(access.http_only(), Some(true));
    assert!(
        b.cookie("authgate_access").await.is_none(),
        "plain-named cookie over https"
    );
    let seen = s.app.last();
    assert_eq!(seen.one("x-forwarded-proto"), Some("https"));
    assert!(
        seen.all("cookie").iter().all(|c| !c.contains("authgate_")),
        "the session cookies reached the upstream: {:?}",
        seen.all("cookie")
    );
    // Expired: the next load over HTTP/2 refreshes it unseen.
    let before = b.cookie("__Host-authgate_refresh").await.unwrap();
    b.set_cookie("__Host-authgate_access", &expired_access())
        .await;
    b.refresh().await.unwrap();
    assert_eq!(b.text("#who").await, "1|라이언");
    assert_ne!(b.cookie("__Host-authgate_refresh").await.unwrap(), before);
    let metrics = s.gw.admin_get("/metrics").await.text();
    assert!(metric(&metrics, "authgate_tls_handshakes_total{result=\"ok\"}").unwrap() >= 1.0);
    b.clone().close().await.unwrap();
}

/// Five frames loading at once with the same expired cookie: all signed in, the family intact,
/// no theft alarm.
#[tokio::test]
async fn five_parallel_loads_after_expiry_all_stay_signed_in() {
    let (s, b) = signed_in("", "", BROWSER_FLOW).await;
    b.set_cookie("authgate_access", &expired_access()).await;
    let who = b
        .run(
            "const frames = [1, 2, 3, 4, 5].map(i => { const f = document.createElement('iframe'); \
             f.src = '/web/tab' + i; document.body.appendChild(f); \
             return new Promise(r => f.onload = () => r(f.contentDocument.body.innerText)); }); \
             return await Promise.all(frames);",
        )
        .await;
    assert_eq!(who, json!(vec!["1|라이언"; 5]), "{who}");
    assert_eq!(
        s.metric("authgate_refresh_reuse_detected_total").await,
        Some(0.0)
    );
    // The family is intact: the session goes on, and its refresh token still rotates.
    b.goto(&s.url("/web/later")).await.unwrap();
    assert_eq!(b.text("#who").await, "1|라이언");
    let refresh = b.cookie("authgate_refresh").await.unwrap();
    assert_eq!(post_refresh(&s.gw, &refresh).await.status, 200);
    b.clone().close().await.unwrap();
}

/// The upstream is down while a browser's cookie is refreshed: the gateway's own 503 carries
/// the new cookies, so once the upstream is back the browser is still signed in.
#[tokio::test]
async fn a_refresh_during_an_upstream_outage_is_not_lost() {
    let (mut s, b) = signed_in("", "refresh_reuse_grace_seconds = 0", BROWSER_FLOW).await;
    let refresh = b.cookie("authgate_refresh").await.unwrap();
    let addr = s.app.addr;
    s.app.stop();
    drop(std::mem::replace(
        &mut s.app,
        Upstream::start("placeholder").await,
    ));
    // Wait for the health check to notice.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.gw.admin_get("/readyz").await.status == 200 {
        assert!(Instant::now() < deadline, "the outage was never noticed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.set_cookie("authgate_access", &expired_access()).await;
    b.goto(&s.url("/web/home")).await.unwrap();
    assert!(
        b.body().await.contains("UPSTREAM_UNAVAILABLE"),
        "{}",
        b.body().await
    );
    let rotated = b.cookie("authgate_refresh").await.unwrap();
    assert_ne!(
        rotated, refresh,
        "the rotation reached the browser with the 503"
    );
    s.app = app_again(addr).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.gw.admin_get("/readyz").await.status != 200 {
        assert!(Instant::now() < deadline, "the upstream never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // No grace window here: only the cookies from the 503 can keep this browser signed in.
    b.set_cookie("authgate_access", &expired_access()).await;
    b.goto(&s.url("/web/home")).await.unwrap();
    assert_eq!(b.text("#who").await, "1|라이언");
    assert_eq!(
        s.metric("authgate_refresh_reuse_detected_total").await,
        Some(0.0)
    );
    b.clone().close().await.unwrap();
}

/// Logout after the access token expired ends the session for good.
#[tokio::test]
async fn logout_after_expiry_signs_out_for_good() {
    let (s, b) = signed_in("", "", BROWSER_FLOW).await;
    let refresh = b.cookie("authgate_refresh").await.unwrap();
    b.set_cookie("authgate_access", &expired_access()).await;
    let status = b
        .run("const r = await fetch('/api/auth/logout', {method: 'POST'}); return r.status;")
        .await;
    assert_eq!(status, json!(200));
    assert_eq!(b.cookie("authgate_access").await, None);
    assert_eq!(b.cookie("authgate_refresh").await, None);
    // The next visit is a login, not a silent refresh; the refresh token is dead everywhere.
    b.goto(&s.url("/web/home")).await.unwrap();
    assert!(
        b.current_url()
            .await
            .unwrap()
            .as_str()
            .starts_with(&s.fake.base_url()),
        "{}",
        b.current_url().await.unwrap()
    );
    post_refresh(&s.gw, &refresh)
        .await
        .assert_gateway_error(400, "INVALID_REFRESH_TOKEN");
    b.clone().close().await.unwrap();
}

/// The seed guide's `kakaoAuth.js`, unchanged, in a page: login, profile, the retry after a
/// refresh when its access token has expired, and logout.
#[tokio::test]
async fn the_seeds_kakao_auth_client_works_unchanged() {
    let s = site("", "require_state = false", "/seed/callback.html").await;
    let b = browser().await;
    b.goto(&s.url("/seed/index.html")).await.unwrap();
    let login_url = b
        .run("const c = new KakaoAuthClient(location.origin + '/api'); return await c.getKakaoLoginUrl();")
        .await;
    // The SPA registered its own page as the redirect URI; the user logs in at Kakao.
    b.goto(login_url.as_str().expect("a login URL"))
        .await
        .unwrap();
    b.find(Locator::Css(&format!("a.user[href*='user={RYAN}']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait()
        .for_element(Locator::Id("kakao-login-btn"))
        .await
        .unwrap();
    assert!(b
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/seed/callback.html"));
    let profile = b
        .run(
            "const c = new KakaoAuthClient(location.origin + '/api'); \
             const code = new URLSearchParams(location.search).get('code'); \
             await c.processKakaoCallback(code); \
             return await c.getUserProfile();",
        )
        .await;
    assert_eq!(profile["nickname"], "라이언", "{profile}");
    assert_eq!(profile["social_provider"], "kakao");
    // Its access token expires: authenticatedRequest gets 401, refreshes, retries, succeeds.
    let retried = b
        .run(&format!(
            "const c = new KakaoAuthClient(location.origin + '/api'); \
             const before = c.refreshToken; \
             c.accessToken = '{}'; \
             const r = await c.authenticatedRequest('/auth/profile'); \
             return {{status: r.status, body: await r.json(), rotated: c.refreshToken !== before, \
                      stored: localStorage.getItem('access_token') === c.accessToken}};",
            expired_access()
        ))
        .await;
    assert_eq!(retried["status"], 200, "{retried}");
    assert_eq!(retried["body"]["nickname"], "라이언");
    assert_eq!(retried["rotated"], true);
    assert_eq!(retried["stored"], true);
    let out = b
        .run(
            "const c = new KakaoAuthClient(location.origin + '/api'); \
             const refresh = c.refreshToken; await c.logout(); \
             return {refresh, left: localStorage.getItem('refresh_token')};",
        )
        .await;
    assert_eq!(out["left"], Value::Null);
    post_refresh(&s.gw, out["refresh"].as_str().unwrap())
        .await
        .assert_gateway_error(400, "INVALID_REFRESH_TOKEN");
    b.clone().close().await.unwrap();
}

/// A form on another origin of the same site (another port here; a sibling subdomain in
/// production) posts to a cookie-authenticated route: the browser sends the cookies, the
/// gateway refuses. The same form on our own origin goes through.
#[tokio::test]
async fn a_cross_origin_form_post_is_refused() {
    let (s, b) = signed_in("", "", BROWSER_FLOW).await;
    let form = |target: String| {
        format!(
            "<form id=f method=post action=\"{target}\"><input name=amount value=100></form>\
             <script>document.getElementById('f').submit()</script>"
        )
    };
    let target = s.url("/web/transfer");
    let page = form(target.clone());
    let other: Responder =
        Arc::new(move |_: &Seen| Some((200, "text/html", page.clone().into_bytes())));
    let elsewhere = Upstream::start_with("other", "127.0.0.1:0".parse().unwrap(), other).await;
    b.goto(&format!("http://{}/form", elsewhere.addr))
        .await
        .unwrap();
    b.wait()
        .for_url(&url::Url::parse(&target).unwrap())
        .await
        .unwrap();
    let refused = b.body().await;
    assert!(refused.contains("CSRF_REJECTED"), "{refused}");
    assert!(
        !s.app.seen().iter().any(|r| r.method == "POST"),
        "the forged write reached the upstream"
    );
    // From our own page it is an ordinary form post.
    b.goto(&s.url("/web/home")).await.unwrap();
    b.run(&format!(
        "document.body.innerHTML = {}; document.getElementById('f').submit(); return true;",
        serde_json::to_string(&form("/web/transfer".into())).unwrap()
    ))
    .await;
    b.wait()
        .for_url(&url::Url::parse(&target).unwrap())
        .await
        .unwrap();
    assert_eq!(b.text("#who").await, "POST 1");
    b.clone().close().await.unwrap();
}
