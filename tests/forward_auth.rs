//! Forward-auth with a real nginx in front (Debian's `nginx`, `auth_request`): nginx asks
//! authgate about each request and proxies to a recording upstream itself. Traefik's and
//! Envoy's conventions are spoken to authgate directly from the trusted proxy's address. And the
//! signed identity assertion, verified the way an upstream would: with the published JWKS.

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// The address nginx (the trusted proxy) talks to authgate from.
const EDGE: &str = "127.0.0.2";
/// `auth.forward_auth_secret`: only the edge's own questions carry it.
const EDGE_SECRET: &str = "edge-secret-0123456789abcdef";

fn fixture_key() -> String {
    fixture("ed25519.pem").display().to_string()
}

/// authgate with an EdDSA key (assertions need a public key), the fake Kakao, the assertion on,
/// and 127.0.0.2 as its trusted proxy. Routes: `/api` (401), `/web` (redirect), `/public`.
async fn authgate(fake: &FakeKakao, up: &Upstream, db: &std::path::Path) -> Gateway {
    let config = login_config(fake, up, &sqlite_url(db), "require_state = false", "")
        .replace(
            "[jwt]\nsecret = \"{secret}\"",
            &format!(
                "[jwt]\nalgorithm = \"EdDSA\"\nprivate_key_file = \"{}\"",
                fixture_key()
            ),
        )
        .replace(
            "[auth]",
            &format!(
                "[identity]\nassertion = true\n[auth]\nforward_auth_secret = \"{EDGE_SECRET}\""
            ),
        );
    let config = format!(
        "{config}\n[[routes]]\nname = \"public\"\npath_prefix = \"/public\"\nupstream = \"app\"\nauth = \"public\"\n\
         [[routes]]\nname = \"quiet\"\npath_prefix = \"/quiet\"\nupstream = \"app\"\nassertion = false\n"
    );
    Gateway::start_with(
        &config,
        &format!("grace_period_seconds = 1\ntrusted_proxies = [\"{EDGE}/32\"]"),
    )
    .await
}

struct Nginx {
    addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// nginx in front of `up`, asking `gw` with `auth_request` as the README shows.
    async fn start(gw: &Gateway, up: &Upstream) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addr();
        let d = dir.path().display();
        let conf = format!(
            r#"
worker_processes 1; daemon off; master_process off;
pid {d}/nginx.pid; error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
  upstream authgate {{ server {gw}; }}
  upstream app {{ server {up}; }}
  server {{
    listen {addr};
    # Ask authgate about every request.
    location / {{
      auth_request /_authgate;
      auth_request_set $auth_user $upstream_http_x_user_id;
      auth_request_set $auth_email $upstream_http_x_user_email;
      auth_request_set $auth_nickname $upstream_http_x_user_nickname;
      auth_request_set $auth_provider $upstream_http_x_user_provider;
      auth_request_set $auth_assertion $upstream_http_x_authgate_assertion;
      auth_request_set $auth_location $upstream_http_location;
      auth_request_set $auth_access_cookie $upstream_http_x_authgate_access_cookie;
      auth_request_set $auth_refresh_cookie $upstream_http_x_authgate_refresh_cookie;
      # Set (or, when empty, removed): what a client sent under these names never arrives.
      proxy_set_header X-User-Id $auth_user;
      proxy_set_header X-User-Email $auth_email;
      proxy_set_header X-User-Nickname $auth_nickname;
      proxy_set_header X-User-Provider $auth_provider;
      proxy_set_header X-Authgate-Assertion $auth_assertion;
      proxy_set_header Host $http_host;
      add_header Set-Cookie $auth_access_cookie always;
      add_header Set-Cookie $auth_refresh_cookie always;
      error_page 401 = @login;
      proxy_pass http://app;
    }}
    location = /_authgate {{
      internal;
      proxy_pass http://authgate/api/auth/authz/auth-request;
      proxy_bind {EDGE};
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Authgate-Forward-Auth-Secret "{EDGE_SECRET}";
    }}
    # Clients never ask themselves.
    location ^~ /api/auth/authz/ {{ return 404; }}
    # A browser sent to log in; an API client gets the 401.
    location @login {{
      if ($auth_location) {{ return 302 $auth_location; }}
      return 401 '{{"error":"UNAUTHORIZED"}}';
    }}
    # The login routes themselves go to authgate.
    location /api/auth/ {{
      proxy_pass http://authgate;
      proxy_bind {EDGE};
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
}}
"#,
            gw = gw.addr,
            up = up.addr,
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new(nginx())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let n = Nginx { addr, child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start:\n{}",
                n.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        n
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> RawResponse {
        raw(self.addr, &get(path, headers)).await
    }
}

fn nginx() -> String {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("nginx is installed (scripts/ensure-tools installs it)")
        .to_string()
}

struct Setup {
    gw: Gateway,
    nginx: Nginx,
    up: Upstream,
    fake: FakeKakao,
    _db: tempfile::TempDir,
}

async fn setup() -> Setup {
    let fake = fake_kakao(&[REDIRECT_URI]).await;
    let up = Upstream::start("app").await;
    let db = tempfile::tempdir().unwrap();
    let gw = authgate(&fake, &up, db.path()).await;
    let nginx = Nginx::start(&gw, &up).await;
    Setup {
        gw,
        nginx,
        up,
        fake,
        _db: db,
    }
}

/// Ryan logs in (the seed's flow): his tokens, `Authorization` value and user id.
async fn ryan(s: &Setup) -> (Value, String, i64) {
    let tokens = seed_login(&s.gw, &s.fake, RYAN).await;
    let auth = bearer(tokens["access_token"].as_str().unwrap());
    let uid =
        s.gw.get("/api/auth/profile", &[("Authorization", &auth)])
            .await
            .json()["id"]
            .as_i64()
            .unwrap();
    (tokens, auth, uid)
}

/// Verifies an assertion as an upstream would: the key by `kid` from the JWKS, `aud` its name.
async fn verify_assertion(gw: &Gateway, assertion: &str, audience: &str) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_slice(&gw.get("/.well-known/jwks.json", &[]).await.body).unwrap();
    let header = jsonwebtoken::decode_header(assertion).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("the kid is published");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    v.set_audience(&[audience]);
    v.set_issuer(&["authgate"]);
    jsonwebtoken::decode::<Value>(
        assertion,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .expect("a valid assertion")
    .claims
}

#[tokio::test]
async fn nginx_auth_request_lets_the_user_through_with_a_verifiable_identity_and_nothing_forged() {
    let s = setup().await;
    let (_, auth, uid) = ryan(&s).await;
    let uid = uid.to_string();

    let r = s
        .nginx
        .get(
            "/api/orders?x=1",
            &[
                ("Authorization", &auth),
                ("X-User-Id", "999"),
                ("X-Authgate-Assertion", "forged"),
            ],
        )
        .await;
    assert_eq!(
        r.status,
        200,
        "{}\n{}\n{}",
        r.text(),
        s.nginx.log(),
        s.gw.log()
    );
    let seen = s.up.last();
    assert_eq!(seen.all("x-user-id"), vec![uid.as_str()], "only authgate's");
    assert_eq!(seen.one("x-user-email"), Some("ryan@kakao.test"));
    let assertions = seen.all("x-authgate-assertion");
    assert_eq!(assertions.len(), 1, "{assertions:?}");
    let claims = verify_assertion(&s.gw, assertions[0], "app").await;
    assert_eq!(claims["sub"], json!(uid));
    assert_eq!(claims["provider"], json!("kakao"));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        60
    );

    // No token: an API client gets 401, and nothing reaches the upstream.
    let before = s.up.count();
    let r = s
        .nginx
        .get(
            "/api/orders",
            &[("X-User-Id", "1"), ("Accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    // A browser on a redirect route is sent to log in, coming back where it was.
    let r = s
        .nginx
        .get("/web/home?tab=2", &[("Accept", "text/html")])
        .await;
    assert_eq!(r.status, 302, "{}\n{}", r.text(), s.nginx.log());
    // (nginx makes it absolute with the request's host.)
    let location = r.header("location").unwrap();
    assert!(
        location.ends_with("/api/auth/kakao/login?next=/web/home%3Ftab%3D2"),
        "{location}"
    );
    // A client cannot ask the question itself through the edge, whatever it describes.
    let r = s
        .nginx
        .get(
            "/api/auth/authz/auth-request",
            &[
                ("X-Original-URL", "http://gateway.test/api/orders"),
                ("X-Original-Method", "GET"),
                ("Authorization", &auth),
            ],
        )
        .await;
    assert_eq!(r.status, 404);
    // ...and that login route is authgate's, through nginx.
    let r = s
        .nginx
        .get("/api/auth/kakao/login?next=/web/home", &[])
        .await;
    assert_eq!(r.status, 302);
    assert!(r
        .header("location")
        .unwrap()
        .starts_with(&s.fake.base_url()));
    // A forged token, or one spelled another way, is refused the same.
    let r = s
        .nginx
        .get("/api/orders", &[("Authorization", "Bearer not.a.token")])
        .await;
    assert_eq!(r.status, 401);
    // A public route: through, with no identity, whatever the client claims.
    let r = s
        .nginx
        .get(
            "/public/x",
            &[("X-User-Id", "1"), ("X-Authgate-Assertion", "forged")],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = s.up.last();
    assert!(seen.all("x-user-id").is_empty() && seen.all("x-authgate-assertion").is_empty());
    assert_eq!(s.up.count(), before + 1, "only the public request arrived");

    // Logged out: the same token is refused.
    assert_eq!(post_logout(&s.gw, &auth).await.status, 200);
    let r = s
        .nginx
        .get("/api/orders", &[("Authorization", &auth)])
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn an_expired_session_cookie_is_refreshed_and_nginx_passes_the_new_cookies_back() {
    let s = setup().await;
    let (tokens, _, uid) = ryan(&s).await;
    let mut c = claims();
    c["sub"] = json!(uid.to_string());
    c["exp"] = json!(now() - 120);
    c["iat"] = json!(now() - 1000);
    let key =
        jsonwebtoken::EncodingKey::from_ed_pem(&std::fs::read(fixture_key()).unwrap()).unwrap();
    let expired = sign(jsonwebtoken::Algorithm::EdDSA, &c, &key);
    let cookie = format!(
        "authgate_access={expired}; authgate_refresh={}",
        tokens["refresh_token"].as_str().unwrap()
    );
    let r = s
        .nginx
        .get("/web/home", &[("Cookie", &cookie), ("Accept", "text/html")])
        .await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), s.gw.log());
    let set = r.set_cookies();
    assert_eq!(set.len(), 2, "{set:?}");
    assert!(set[0].starts_with("authgate_access=") && set[1].starts_with("authgate_refresh="));
    assert_eq!(s.up.last().one("x-user-id"), Some(uid.to_string().as_str()));
    // The new pair works; the old refresh token is spent.
    let renewed = cookies(&r);
    let r = s
        .nginx
        .get(
            "/web/home",
            &[("Cookie", &renewed), ("Accept", "text/html")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.set_cookies().is_empty(), "nothing to rotate");
}

/// Traefik, Caddy and HAProxy send `X-Forwarded-*`; Envoy puts the path after the endpoint.
#[tokio::test]
async fn traefik_and_envoy_conventions_and_untrusted_peers() {
    let s = setup().await;
    let tokens = seed_login(&s.gw, &s.fake, RYAN).await;
    let auth = bearer(tokens["access_token"].as_str().unwrap());
    fn traefik(
        uri: &str,
        method: &str,
        extra: &[(&'static str, &str)],
    ) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("X-Forwarded-Method", method.to_string()),
            ("X-Forwarded-Proto", "https".to_string()),
            ("X-Forwarded-Host", "app.example".to_string()),
            ("X-Forwarded-Uri", uri.to_string()),
        ];
        h.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        h
    }
    let ask = |h: Vec<(&'static str, String)>, path: &'static str| {
        let addr = s.gw.addr;
        async move {
            let mut h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            h.push(("X-Authgate-Forward-Auth-Secret", EDGE_SECRET));
            raw_from(EDGE, addr, &get(path, &h)).await
        }
    };
    let fa = "/api/auth/authz/forward-auth";
    let r = ask(
        traefik("/api/orders", "GET", &[("Authorization", &auth)]),
        fa,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("x-user-id").is_some() && r.header("x-authgate-assertion").is_some());
    assert_eq!(
        r.header("x-envoy-auth-headers-to-remove"),
        Some("x-user-id,x-user-email,x-user-nickname,x-user-provider,x-authgate-assertion")
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // A browser without a session: Traefik returns our 302 as it is.
    let r = ask(traefik("/web/home", "GET", &[("Accept", "text/html")]), fa).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("/api/auth/kakao/login?next=/web/home")
    );
    // The route's rules apply to the original request: its method, its target checks.
    let r = ask(
        traefik("/api/../admin", "GET", &[("Authorization", &auth)]),
        fa,
    )
    .await;
    assert_eq!(r.status, 400);
    let r = ask(traefik("/nowhere", "GET", &[("Authorization", &auth)]), fa).await;
    assert_eq!(r.status, 404);
    // A method is never assumed, a host never respelled.
    let mut no_method = traefik("/api/orders", "GET", &[("Authorization", &auth)]);
    no_method.remove(0);
    assert_eq!(ask(no_method, fa).await.status, 400);
    let mut upper = traefik("/api/orders", "GET", &[("Authorization", &auth)]);
    upper[2].1 = "App.Example".into();
    assert_eq!(ask(upper, fa).await.status, 400);
    // A cookie-authenticated WebSocket from another site: its Upgrade never reaches us, its
    // handshake headers do.
    let ws = ask(
        traefik(
            "/api/socket",
            "GET",
            &[
                (
                    "Cookie",
                    &format!(
                        "__Host-authgate_access={}",
                        tokens["access_token"].as_str().unwrap()
                    ),
                ),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13"),
                ("Origin", "https://evil.example"),
            ],
        ),
        fa,
    )
    .await;
    ws.assert_gateway_error(403, "CSRF_REJECTED");
    // Over https the session cookies carry the __Host- names: a plain-named one is no session.
    let r = ask(
        traefik("/api/x", "GET", &[("Cookie", "authgate_access=x")]),
        fa,
    )
    .await;
    assert_eq!(r.status, 401);
    // Envoy: the original path after the endpoint, the method and Host its own.
    let r = ask(
        vec![("Authorization", auth.clone())],
        "/api/auth/authz/forward-auth/api/orders?x=1",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = ask(vec![], "/api/auth/authz/forward-auth/api/orders").await;
    assert_eq!(r.status, 401);
    // A client's X-Forwarded-Uri passed on by Envoy never replaces the path it forwards.
    let r = ask(
        vec![
            ("Authorization", auth.clone()),
            ("X-Forwarded-Uri", "/public/x".into()),
        ],
        "/api/auth/authz/forward-auth/api/orders",
    )
    .await;
    assert_eq!(r.status, 400);
    let r = ask(
        vec![("Authorization", auth.clone())],
        "/api/auth/authz/forward-auth/api/%2e%2e/admin",
    )
    .await;
    assert_eq!(r.status, 400, "the original path is checked like any");
    // nginx's endpoint turns refusals nginx cannot pass on into 403, naming the real one.
    let r = ask(
        vec![
            ("X-Original-URL", "http://app.example/nowhere".into()),
            ("X-Original-Method", "GET".into()),
            ("Authorization", auth.clone()),
        ],
        "/api/auth/authz/auth-request",
    )
    .await;
    assert_eq!(
        (r.status, r.header("x-authgate-error")),
        (403, Some("NOT_FOUND"))
    );
    // Ambiguous questions are refused.
    let r = ask(
        vec![
            ("X-Original-URL", "http://app.example/api/a".into()),
            ("X-Original-URL", "http://app.example/public/b".into()),
            ("X-Original-Method", "GET".into()),
        ],
        "/api/auth/authz/auth-request",
    )
    .await;
    assert_eq!(r.status, 403, "two URLs: 400 inside, 403 for nginx");
    assert_eq!(r.header("x-authgate-error"), Some("BAD_REQUEST"));
    // A path alone would take its host from a header the client can send through the edge.
    let r = ask(
        vec![
            ("X-Original-URL", "/public/x".into()),
            ("X-Original-Method", "GET".into()),
        ],
        "/api/auth/authz/auth-request",
    )
    .await;
    assert_eq!(r.header("x-authgate-error"), Some("BAD_REQUEST"));

    // The edge's address without the edge's secret: a client that got through the edge.
    let r = raw_from(
        EDGE,
        s.gw.addr,
        &get(
            fa,
            &traefik("/api/orders", "GET", &[("Authorization", &auth)])
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        ),
    )
    .await;
    r.assert_gateway_error(403, "FORBIDDEN");

    // Anyone but the trusted proxy is refused, whatever it says.
    let r =
        s.gw.get(
            fa,
            &[
                ("X-Forwarded-Uri", "/api/orders"),
                ("X-Forwarded-Host", "app.example"),
                ("Authorization", &auth),
            ],
        )
        .await;
    r.assert_gateway_error(403, "FORBIDDEN");
    let r =
        s.gw.get(
            "/api/auth/authz/auth-request",
            &[("X-Original-URL", "/public/x")],
        )
        .await;
    r.assert_gateway_error(403, "FORBIDDEN");
}

/// Proxied by authgate itself: the assertion goes to every route that asks for it, a client's
/// copy never, and it is signed once per token and upstream.
#[tokio::test]
async fn proxied_requests_carry_the_assertion_where_the_route_wants_it() {
    let s = setup().await;
    let tokens = seed_login(&s.gw, &s.fake, RYAN).await;
    let auth = bearer(tokens["access_token"].as_str().unwrap());
    let r =
        s.gw.get(
            "/api/orders",
            &[("Authorization", &auth), ("x_authgate_assertion", "forged")],
        )
        .await;
    assert_eq!(r.status, 200);
    let first = s.up.last().all("x-authgate-assertion").join(",");
    let claims = verify_assertion(&s.gw, &first, "app").await;
    assert_eq!(claims["email"], json!("ryan@kakao.test"));
    s.gw.get("/api/orders", &[("Authorization", &auth)]).await;
    assert_eq!(
        s.up.last().one("x-authgate-assertion"),
        Some(first.as_str()),
        "reused"
    );
    let r =
        s.gw.get(
            "/quiet/x",
            &[("Authorization", &auth), ("X-Authgate-Assertion", "forged")],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = s.up.last();
    assert!(
        seen.all("x-authgate-assertion").is_empty(),
        "assertion = false"
    );
    assert!(seen.one("x-user-id").is_some());
}
