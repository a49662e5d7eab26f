//! Test support: the real `authgate` binary on free loopback ports, real HTTP upstreams that
//! record exactly what reaches them, a raw HTTP/1.1 client that sends targets and header lines
//! byte for byte, and token minting with `jsonwebtoken`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub mod pki;

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_authgate")
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Upstream that records requests

/// One request as the upstream received it: header names in the case they arrived.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    /// Every value of a header, matched case-insensitively.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn one(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(
            all.len() <= 1,
            "{name} arrived {} times: {all:?}",
            all.len()
        );
        all.first().copied()
    }
}

/// A [`Responder`]'s content type with more header lines after it (the upstream writes the
/// content type as it is given): an answer with `Cache-Control`, `Vary` and the like.
pub fn content_type_with(content_type: &str, headers: &[(&str, &str)]) -> &'static str {
    let mut v = content_type.to_string();
    for (k, value) in headers {
        v.push_str(&format!("\r\n{k}: {value}"));
    }
    Box::leak(v.into_boxed_str())
}

/// What an upstream answers a request with: status, content type and body; `None` for the
/// default JSON answer.
pub type Responder = Arc<dyn Fn(&Seen) -> Option<(u16, &'static str, Vec<u8>)> + Send + Sync>;

/// A real HTTP/1.1 server on a free port. It answers `200 {"upstream": name, "target": ...}`
/// (or what its [`Responder`] says), waits `x-test-delay-ms` first when asked, and tunnels
/// bytes back after a `101` for upgrades.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(name: &str, addr: SocketAddr) -> Upstream {
        Self::start_with(name, addr, Arc::new(|_: &Seen| None)).await
    }

    /// An upstream that answers with `respond` (pages, scripts) where it returns `Some`.
    pub async fn start_with(name: &str, addr: SocketAddr, respond: Responder) -> Upstream {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (n, s) = (name.to_string(), seen.clone());
        let conns = Arc::new(Mutex::new(Vec::new()));
        let c = conns.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let conn = tokio::spawn(serve_conn(stream, n.clone(), s.clone(), respond.clone()));
                c.lock().unwrap().push(conn.abort_handle());
            }
        });
        Upstream {
            name: name.into(),
            addr,
            seen,
            task,
            conns,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream received nothing")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Connections accepted so far, including health checks that send no request.
    pub fn connections(&self) -> usize {
        self.conns.lock().unwrap().len()
    }

    /// Waits until the gateway's TCP health check has connected at least once.
    pub async fn wait_health_checked(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.connections() == 0 {
            assert!(
                Instant::now() < deadline,
                "{} was never health-checked",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Closes the listener and every open connection: the backend is gone.
    pub fn stop(&self) {
        self.task.abort();
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve_conn(
    mut stream: TcpStream,
    name: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    respond: Responder,
) {
    let mut buf = Vec::new();
    loop {
        let Some(head_end) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or("").split(' ');
        let method = request_line.next().unwrap_or("").to_string();
        let target = request_line.next().unwrap_or("").to_string();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| {
                l.split_once(':')
                    .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            })
            .collect();
        let header = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        buf.drain(..head_end + 4);
        while buf.len() < len {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..len).collect();
        let upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let delay = header("x-test-delay-ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0u64);
        let request = Seen {
            method: method.clone(),
            target: target.clone(),
            headers,
            body,
        };
        let custom = respond(&request);
        seen.lock().unwrap().push(request);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if upgrade {
            let _ = stream
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                .await;
            let (mut r, mut w) = stream.into_split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
            return;
        }
        let (status, content_type, body) = custom.unwrap_or_else(|| {
            (
                200,
                "application/json",
                json!({"upstream": name, "target": target})
                    .to_string()
                    .into_bytes(),
            )
        });
        let mut resp = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        if method != "HEAD" {
            resp.extend_from_slice(&body);
        }
        if stream.write_all(&resp).await.is_err() {
            return;
        }
    }
}

async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway process

pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub child: Child,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Gateway {
    /// Starts `authgate run` with `[server]` filled in (free ports, one thread, short grace) and
    /// `rest` (jwt, upstreams, routes) as given. `{secret}` in `rest` is replaced by [`SECRET`].
    pub async fn start(rest: &str) -> Gateway {
        Self::start_with(rest, "grace_period_seconds = 1").await
    }

    pub async fn start_with(rest: &str, server_extra: &str) -> Gateway {
        for _attempt in 0..3 {
            if let Some(gw) = Self::try_start(free_addr(), rest, server_extra).await {
                return gw;
            }
        }
        panic!("authgate did not start three times");
    }

    /// On a chosen address (one a fake provider already redirects to).
    pub async fn start_at(addr: SocketAddr, rest: &str) -> Gateway {
        Self::start_at_with(addr, rest, "grace_period_seconds = 1").await
    }

    pub async fn start_at_with(addr: SocketAddr, rest: &str, server_extra: &str) -> Gateway {
        Self::try_start(addr, rest, server_extra)
            .await
            .unwrap_or_else(|| panic!("authgate did not start on {addr}"))
    }

    /// With the admin listener bound to `admin_listen` (its port reached on 127.0.0.1) and
    /// `env` in the gateway's environment.
    pub async fn start_opts(rest: &str, server_extra: &str, admin_listen: Option<SocketAddr>, env: &[(&str, &str)]) -> Gateway {
        for _attempt in 0..3 {
            let admin_listen = admin_listen.unwrap_or_else(free_addr);
            if let Some(gw) = Self::try_start_opts(free_addr(), admin_listen, rest, server_extra, env).await {
                return gw;
            }
        }
        panic!("authgate did not start three times");
    }

    async fn try_start(addr: SocketAddr, rest: &str, server_extra: &str) -> Option<Gateway> {
        Self::try_start_opts(addr, free_addr(), rest, server_extra, &[]).await
    }

    async fn try_start_opts(
        addr: SocketAddr,
        admin_listen: SocketAddr,
        rest: &str,
        server_extra: &str,
        env: &[(&str, &str)],
    ) -> Option<Gateway> {
        let admin = SocketAddr::from(([127, 0, 0, 1], admin_listen.port()));
        let text = format!(
            "[server]\nlisten = \"{addr}\"\nadmin_listen = \"{admin_listen}\"\nthreads = 1\n{server_extra}\n{}",
            rest.replace("{secret}", SECRET)
        );
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, text).unwrap();
        let log = dir.path().join("authgate.log");
        let child = Command::new(bin())
            .args(["run", "-c"])
            .arg(&cfg)
            // The default store (sqlite://authgate.db) lands in the test's own folder.
            .current_dir(dir.path())
            .env_remove("JWT_SECRET_KEY")
            .env_remove("AUTHGATE_LOG")
            .env_remove("AUTHGATE_ADMIN_TOKEN")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut gw = Gateway {
            addr,
            admin,
            child,
            dir,
            log,
        };
        if gw.wait_ready().await {
            return Some(gw);
        }
        // A port taken between choosing and binding: the caller may try other ports.
        eprintln!("gateway did not start:\n{}", gw.log());
        None
    }

    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            // Our child, not whatever else might listen there: /healthz names the process.
            let health = raw(self.admin, &get("/healthz", &[])).await;
            let admin_up = health.status == 200
                && serde_json::from_slice::<Value>(&health.body)
                    .is_ok_and(|v| v["pid"] == self.child.id());
            if admin_up && TcpStream::connect(self.addr).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// This gateway's configuration without `[server]`, to start another one like it (on the
    /// same store) with [`Gateway::start`].
    pub fn rest_config(&self) -> String {
        let config = std::fs::read_to_string(self.dir.path().join("config.toml")).unwrap();
        let (_, rest) = config.split_once("\n[jwt]").expect("a [jwt] section");
        format!("[jwt]{rest}").replace(SECRET, "{secret}")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn send(&self, request: &str) -> RawResponse {
        raw(self.addr, request).await
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> RawResponse {
        raw(self.addr, &get(path, headers)).await
    }

    pub async fn admin_get(&self, path: &str) -> RawResponse {
        raw(self.admin, &get(path, &[])).await
    }

    pub fn sigterm(&self) {
        // SAFETY-free: `kill` is a separate process.
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 client

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The contract for every answer the gateway writes itself.
    pub fn assert_gateway_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.json()["error"], code, "{self:?}");
        assert!(self.json()["message"].is_string());
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert_eq!(
            self.header("content-length"),
            Some(self.body.len().to_string().as_str())
        );
        assert_eq!(self.header("cache-control"), Some("no-store"));
    }
}

/// A GET with `Host` and `Connection: close`; extra header lines are sent exactly as given.
pub fn get(path: &str, headers: &[(&str, &str)]) -> String {
    request("GET", path, headers, "")
}

pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r
}

/// Sends raw bytes and reads the whole response (the server closes after it).
pub async fn raw(addr: SocketAddr, request: &str) -> RawResponse {
    let fut = async {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            return RawResponse {
                status: 0,
                headers: vec![],
                body: vec![],
            };
        };
        s.write_all(request.as_bytes()).await.unwrap();
        // Read until the head and a Content-Length body are complete, or until EOF.
        let mut buf = Vec::new();
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let r = parse_response(&buf);
                let len = r
                    .header("content-length")
                    .and_then(|v| v.parse::<usize>().ok());
                if len.is_some_and(|len| buf.len() >= end + 4 + len) {
                    return r;
                }
            }
            let mut chunk = [0u8; 8192];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return parse_response(&buf),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("response within 30 s")
}

pub fn parse_response(buf: &[u8]) -> RawResponse {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return RawResponse {
            status: 0,
            headers: vec![],
            body: buf.to_vec(),
        };
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        })
        .collect();
    let mut body = buf[end + 4..].to_vec();
    if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The claims authgate issues, for user 42.
pub fn claims() -> Value {
    json!({
        "sub": "42", "user_id": 42, "username": "kakao_42", "email": "user42@example.com",
        "nickname": "Forty Two", "provider": "kakao", "type": "access",
        "jti": format!("jti-{}", rand::random::<u64>()), "iat": now(), "exp": now() + 600,
        "iss": "authgate", "aud": "authgate"
    })
}

pub fn hs256(claims: &Value) -> String {
    sign(
        jsonwebtoken::Algorithm::HS256,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

pub fn sign(
    alg: jsonwebtoken::Algorithm,
    claims: &Value,
    key: &jsonwebtoken::EncodingKey,
) -> String {
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), claims, key).unwrap()
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

// ---------------------------------------------------------------------------------------------
// Login against the fake Kakao

#[allow(unused_imports)]
pub use authgate::dev::fake_kakao::{default_users, FakeKakao, FakeKakaoConfig, Fault};

pub const CLIENT_ID: &str = "test-client-id";
pub const CLIENT_SECRET: &str = "test-client-secret";
/// Ryan: verified email, nickname 라이언.
pub const RYAN: i64 = 1_000_001;

/// A fake Kakao that accepts `redirect_uris`.
pub async fn fake_kakao(redirect_uris: &[&str]) -> FakeKakao {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    FakeKakao::serve(
        listener,
        FakeKakaoConfig {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uris: redirect_uris.iter().map(|s| s.to_string()).collect(),
            users: default_users(),
        },
    )
}

pub const REDIRECT_URI: &str = "http://app.test/api/auth/kakao/callback";

/// `[jwt]`, `[store]`, `[auth]`, `[kakao]` and two routes (`/api` required, `/web` redirect) in
/// front of `up`.
pub fn login_config(
    fake: &FakeKakao,
    up: &Upstream,
    store_url: &str,
    auth_extra: &str,
    kakao_extra: &str,
) -> String {
    let k = fake.base_url();
    format!(
        r#"
[jwt]
secret = "{{secret}}"
[store]
url = "{store_url}"
busy_timeout_ms = 300
[rate_limit]
# These tests log in many times from one address; the limits have tests of their own.
auth_per_minute = 100000
auth_burst = 100000
[auth]
{auth_extra}
[kakao]
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
redirect_uri = "{REDIRECT_URI}"
authorize_url = "{k}/oauth/authorize"
token_url = "{k}/oauth/token"
userinfo_url = "{k}/v2/user/me"
{kakao_extra}
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
        up = up.addr
    )
}

/// The user clicks their account on the fake's page: returns the `Location` Kakao sends back to.
pub async fn approve(fake: &FakeKakao, authorize_url: &str, user: i64) -> String {
    let u = url::Url::parse(authorize_url).unwrap();
    let page = raw(
        fake.addr,
        &get(&format!("{}?{}", u.path(), u.query().unwrap_or("")), &[]),
    )
    .await;
    assert_eq!(page.status, 200, "authorize page: {}", page.text());
    let link = format!(
        "/oauth/authorize/approve?{}&user={user}",
        u.query().unwrap_or("")
    );
    assert!(
        page.text().contains(&format!("user={user}")),
        "the page lists the user"
    );
    let r = raw(fake.addr, &get(&link, &[])).await;
    assert_eq!(r.status, 302, "{}", r.text());
    r.header("location").unwrap().to_string()
}

pub fn query_param(location: &str, key: &str) -> Option<String> {
    url::Url::parse(location)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

pub fn json_post(path: &str, body: &serde_json::Value, headers: &[(&str, &str)]) -> String {
    let mut h: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    request("POST", path, &h, &body.to_string())
}

/// The seed client's login: login-url, the user approves, POST callback with `{code}` only.
pub async fn seed_login(gw: &Gateway, fake: &FakeKakao, user: i64) -> Value {
    let r = gw.get("/api/auth/kakao/login-url", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let login_url = r.json()["login_url"].as_str().unwrap().to_string();
    let back = approve(fake, &login_url, user).await;
    let code = query_param(&back, "code").expect("a code");
    let r = post_callback(gw, &code).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), gw.log());
    r.json()
}

impl RawResponse {
    /// Every `Set-Cookie` value, whole.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Cookies from `Set-Cookie` headers, as one `Cookie` header value.
pub fn cookies(r: &RawResponse) -> String {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, v)| v.split(';').next())
        .filter(|kv| !kv.ends_with('='))
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn postgres_url() -> Option<String> {
    std::env::var("AUTHGATE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// Opens the gateway's store from the test, to look at what was (not) written.
pub async fn open_store(url: &str) -> authgate::store::Store {
    authgate::store::Store::connect(url, Duration::from_secs(5), 2)
        .await
        .unwrap()
}

pub fn sqlite_url(gw_dir: &Path) -> String {
    format!("sqlite://{}", gw_dir.join("authgate.db").display())
}

/// Like [`raw`], from a chosen loopback source address (127.0.0.2, ...): another client.
pub async fn raw_from(source: &str, addr: SocketAddr, request: &str) -> RawResponse {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await;
    parse_response(&buf)
}

/// The value of one sample line of a Prometheus scrape, e.g.
/// `metric(text, "authgate_logins_total{provider=\"kakao\",result=\"success\"}")`.
pub fn metric(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.trim().parse().ok())
    })
}

/// `POST /api/auth/refresh` with `{"refresh_token": token}`.
pub async fn post_refresh(gw: &Gateway, token: impl serde::Serialize) -> RawResponse {
    gw.send(&json_post(
        "/api/auth/refresh",
        &json!({ "refresh_token": token }),
        &[],
    ))
    .await
}

/// `POST /api/auth/logout` with `Authorization: <auth>` (a whole `Bearer ...` value).
pub async fn post_logout(gw: &Gateway, auth: &str) -> RawResponse {
    gw.send(&request(
        "POST",
        "/api/auth/logout",
        &[("Authorization", auth)],
        "",
    ))
    .await
}

/// `POST /api/auth/kakao/callback` with `{"code": code}`, as the seed's client sends it.
pub async fn post_callback(gw: &Gateway, code: impl serde::Serialize) -> RawResponse {
    gw.send(&json_post(
        "/api/auth/kakao/callback",
        &json!({ "code": code }),
        &[],
    ))
    .await
}

/// Sends raw bytes on a new connection that does not ask to be closed, reads one response, and
/// reports whether the gateway then closed the connection by itself (within two seconds).
pub async fn raw_keepalive(addr: SocketAddr, request: &[u8]) -> (RawResponse, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let r = parse_response(&buf);
                let len = r
                    .header("content-length")
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return true;
                }
            }
            let mut chunk = [0u8; 8192];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let open = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("a response within 30 s");
    let response = parse_response(&buf);
    if !open {
        return (response, true);
    }
    let mut rest = [0u8; 1024];
    let closed = matches!(
        tokio::time::timeout(Duration::from_secs(2), s.read(&mut rest)).await,
        Ok(Ok(0)) | Ok(Err(_))
    );
    (response, closed)
}

/// The `authgate dev` routes (`authgate::dev::demo::ROUTES`: `/` optional, `/app` required with
/// redirect, `/api` required) in front of `up`; `extra` goes after `[jwt]`.
pub fn dev_routes(up: &Upstream, extra: &str) -> String {
    format!(
        "[jwt]\nsecret = \"{{secret}}\"\n{extra}\n[[upstreams]]\nname = \"demo\"\naddrs = [\"{}\"]\n{}",
        up.addr,
        authgate::dev::demo::ROUTES
    )
}

/// One public route `/` in front of `up`; `extra` goes after `[jwt]`.
pub fn public_route(up: &Upstream, extra: &str) -> String {
    format!(
        "[jwt]\nsecret = \"{{secret}}\"\n{extra}\n[[upstreams]]\nname = \"app\"\naddrs = [\"{}\"]\n\
         [[routes]]\nname = \"pub\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"public\"\n",
        up.addr
    )
}
