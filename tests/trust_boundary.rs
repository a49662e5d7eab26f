//! The trust boundary over real sockets: no spelling of a request reaches an upstream under
//! weaker rules than the route it means, and nothing a client sends makes the gateway pay, hang
//! or log at will. One test per case of the issue that asked for it (cases 1-8).

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn token() -> String {
    bearer(&hs256(&claims()))
}

/// 1. Case: `/APP/settings` is the `/app` route (required), not `/` (optional), and goes
/// upstream byte for byte; the auth prefix is ours in any case.
#[tokio::test]
async fn a_prefix_in_another_case_takes_the_same_route() {
    let up = Upstream::start("demo").await;
    let gw = Gateway::start(&dev_routes(&up, "")).await;
    for path in ["/APP/settings", "/App", "/aPI/orders?x=1"] {
        gw.get(path, &[])
            .await
            .assert_gateway_error(401, "UNAUTHORIZED");
    }
    assert_eq!(up.count(), 0, "an anonymous request reached the upstream");
    let r = gw
        .get("/APP/settings", &[("Authorization", &token())])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.last();
    assert_eq!(seen.target, "/APP/settings", "forwarded as received");
    assert_eq!(seen.one("X-User-Id"), Some("42"));
    // What Windows servers and Unicode-folding frameworks read as `/app` is refused outright.
    for path in [
        "/app./settings",
        "/app%20/settings",
        "/app::$DATA/settings",
        "/%EF%BD%81pp/settings",
        "/%C5%BFettings",
        "/a%C4%B1pp",
    ] {
        gw.get(path, &[])
            .await
            .assert_gateway_error(400, "BAD_REQUEST");
    }
    // The gateway's own prefix in another case is the gateway's (unknown there), never upstream.
    let r = gw.send(&request("POST", "/API/AUTH/logout", &[], "")).await;
    r.assert_gateway_error(404, "NOT_FOUND");
    assert_eq!(up.count(), 1);
}

/// 2. Host: a trailing dot, case and port name the same host; hosts no upstream could read as
/// one name are refused.
#[tokio::test]
async fn a_host_with_a_trailing_dot_takes_the_host_route() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&format!(
        r#"
[jwt]
secret = "{{secret}}"
[[upstreams]]
name = "app"
addrs = ["{}"]
[[routes]]
name = "admin"
path_prefix = "/"
host = "admin.example"
upstream = "app"
auth = "required"
[[routes]]
name = "public"
path_prefix = "/"
upstream = "app"
auth = "public"
"#,
        up.addr
    ))
    .await;
    let get_as = |host: &'static str| {
        let gw = &gw;
        async move {
            gw.send(&format!(
                "GET /users HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            ))
            .await
        }
    };
    for host in [
        "admin.example.",
        "ADMIN.Example.",
        "admin.example.:8443",
        "admin.example",
    ] {
        get_as(host).await.assert_gateway_error(401, "UNAUTHORIZED");
    }
    for host in [
        "admin..example",
        ".admin.example",
        "admin.example..",
        "a/b",
        "admin.example:x",
    ] {
        let r = get_as(host).await;
        assert_eq!(r.status, 400, "{host}: {r:?}");
        r.assert_gateway_error(400, "BAD_REQUEST");
    }
    let two = gw
        .send("GET /users HTTP/1.1\r\nHost: www.example\r\nHost: admin.example\r\nConnection: close\r\n\r\n")
        .await;
    two.assert_gateway_error(400, "BAD_REQUEST");
    // Without a Host an upstream serves its default virtual host: no route can protect that.
    for request in [
        "GET /users HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /users HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
        "GET /users HTTP/1.0\r\n\r\n",
    ] {
        gw.send(request)
            .await
            .assert_gateway_error(400, "BAD_REQUEST");
    }
    assert_eq!(up.count(), 0);
    assert_eq!(get_as("www.example").await.status, 200);
    // The upstream gets the host as it was routed: `WWW.Example.` is not another virtual host
    // to it than to us.
    assert_eq!(get_as("WWW.Example.:8080").await.status, 200);
    assert_eq!(up.last().one("Host"), Some("www.example:8080"));
    assert_eq!(up.last().one("X-Forwarded-Host"), Some("www.example:8080"));
}

/// 3. Methods: a path inside a route that does not allow the method is refused there (405 with
/// `Allow`) and never falls through to a shorter prefix; HEAD is allowed wherever GET is.
#[tokio::test]
async fn a_method_a_route_does_not_allow_never_falls_through() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&format!(
        r#"
[jwt]
secret = "{{secret}}"
[[upstreams]]
name = "app"
addrs = ["{}"]
[[routes]]
name = "public"
path_prefix = "/"
upstream = "app"
auth = "public"
[[routes]]
name = "writes"
path_prefix = "/api/items"
methods = ["POST", "PUT"]
upstream = "app"
auth = "required"
[[routes]]
name = "reads"
path_prefix = "/reports"
methods = ["GET"]
upstream = "app"
auth = "required"
"#,
        up.addr
    ))
    .await;
    let r = gw.get("/api/items/7", &[]).await;
    r.assert_gateway_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(r.header("allow"), Some("POST, PUT"));
    let r = gw.send(&request("DELETE", "/API/Items", &[], "")).await;
    r.assert_gateway_error(405, "METHOD_NOT_ALLOWED");
    // HEAD belongs to the GET route: authenticated there, never the public fallback.
    let r = gw.send(&request("HEAD", "/reports/q3", &[], "")).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(up.count(), 0, "a refused method reached the upstream");
    let r = gw
        .send(&request(
            "HEAD",
            "/reports/q3",
            &[("Authorization", &token())],
            "",
        ))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(up.last().method, "HEAD");
    assert_eq!(up.last().one("X-User-Id"), Some("42"));
    // A method override would turn the allowed POST into a DELETE upstream: never forwarded.
    let r = gw
        .send(&request(
            "POST",
            "/api/items",
            &[
                ("Authorization", &token()),
                ("X-HTTP-Method-Override", "DELETE"),
                ("X-Method-Override", "DELETE"),
                ("X_HTTP_Method", "DELETE"),
            ],
            "",
        ))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = up.last();
    assert!(
        !seen
            .headers
            .iter()
            .any(|(k, _)| k.to_ascii_lowercase().contains("method")),
        "{:?}",
        seen.headers
    );
}

/// 4. Cookies: a non-ASCII cookie beside ours neither hides ours from the gateway nor keeps them
/// in what is forwarded; the other cookies arrive byte for byte.
#[tokio::test]
async fn session_cookies_are_read_and_removed_whatever_other_cookies_hold() {
    let up = Upstream::start("demo").await;
    let gw = Gateway::start(&dev_routes(&up, "")).await;
    let access = hs256(&claims());
    let cookie = format!("nick=라이언; authgate_access={access}; theme=dark; authgate_refresh=r1");
    // A browser navigation on a redirect route: the access cookie is found, no login loop.
    let r = gw
        .get("/app/home", &[("Cookie", &cookie), ("Accept", "text/html")])
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = up.last();
    assert_eq!(seen.one("X-User-Id"), Some("42"));
    assert_eq!(seen.all("Cookie"), vec!["nick=라이언; theme=dark"]);
    // Several Cookie headers, bytes that are not UTF-8 at all: kept exactly, ours removed.
    let mut raw_request =
        b"GET /app/x HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n".to_vec();
    raw_request.extend_from_slice(b"Cookie: a=\xff\xfe; authgate_access=");
    raw_request.extend_from_slice(access.as_bytes());
    raw_request.extend_from_slice(b"\r\nCookie: authgate_state=s\r\n\r\n");
    let (r, _) = raw_keepalive(gw.addr, &raw_request).await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = up.last();
    assert_eq!(
        seen.all("Cookie"),
        vec![String::from_utf8_lossy(b"a=\xff\xfe").as_ref()]
    );
    assert!(
        !seen.headers.iter().any(|(_, v)| v.contains("authgate_")),
        "{:?}",
        seen.headers
    );
}

/// 5. Forwarding headers: from an untrusted peer every spelling is removed; behind a trusted
/// proxy, garbage left of the real client in `X-Forwarded-For` does not make the proxy the key.
#[tokio::test]
async fn every_forwarding_header_from_an_untrusted_peer_is_removed() {
    let up = Upstream::start("app").await;
    let config = public_route(&up, "[rate_limit]\nip_per_minute = 60\nip_burst = 2");
    let forged = [
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Prefix", "/admin"),
        ("X-Forwarded-Scheme", "https"),
        ("X-Forwarded-Ssl", "on"),
        ("X-Forwarded-Server", "evil"),
        ("X-Forwarded-Path", "/admin"),
        ("Front-End-Https", "on"),
        ("X_Forwarded_Proto", "https"),
        ("X-Url-Scheme", "https"),
        ("True-Client-IP", "1.2.3.4"),
    ];
    let gw = Gateway::start(&config).await;
    assert_eq!(gw.get("/x", &forged).await.status, 200);
    let seen = up.last();
    for (name, _) in forged {
        assert!(
            seen.all(name).is_empty(),
            "{name} reached the upstream: {:?}",
            seen.headers
        );
    }
    assert_eq!(seen.one("X-Forwarded-Proto"), Some("http"));

    let trusted = Gateway::start_with(&config, "trusted_proxies = [\"127.0.0.1/32\"]").await;
    assert_eq!(trusted.get("/x", &forged[..2]).await.status, 200);
    assert_eq!(
        up.last().one("X-Forwarded-Prefix"),
        Some("/admin"),
        "a trusted proxy's is kept"
    );
    // Upstream, X-Forwarded-For is the client and the proxies only: what the client wrote to
    // the left is not passed on (an upstream reading the leftmost entry reads the client), and
    // an underscore spelling of ours (CGI's HTTP_X_FORWARDED_PROTO) never passes, even here.
    let r = trusted
        .get(
            "/x",
            &[
                ("X-Forwarded-For", "10.0.0.1, 1.2.3.4, 198.51.100.9"),
                ("X_Forwarded_Proto", "https"),
                ("X_Forwarded_Prefix", "/admin"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.one("X-Forwarded-For"), Some("198.51.100.9, 127.0.0.1"));
    assert_eq!(seen.one("X-Forwarded-Proto"), Some("http"));
    assert!(seen.all("X_Forwarded_Proto").is_empty() && seen.all("X_Forwarded_Prefix").is_empty());
    // A chain from a trusted proxy that names no client is refused, not guessed at.
    trusted
        .get("/x", &[("X-Forwarded-For", "1.2.3.4, not-an-address")])
        .await
        .assert_gateway_error(400, "BAD_REQUEST");
    let via = |client: &'static str| {
        let gw = &trusted;
        async move {
            gw.get(
                "/x",
                &[("X-Forwarded-For", &format!("garbage, not-an-ip, {client}"))],
            )
            .await
            .status
        }
    };
    assert_eq!(via("198.51.100.7").await, 200);
    assert_eq!(via("198.51.100.7").await, 200);
    assert_eq!(
        via("198.51.100.7").await,
        429,
        "the client's own bucket ran out"
    );
    assert_eq!(
        via("198.51.100.8").await,
        200,
        "another client is not the proxy's bucket"
    );
}

/// 6. Cost before refusal: oversized tokens are refused unread, a client whose anonymous budget
/// ran out gets 429 before any signature check, and 400/404 spend that budget.
#[tokio::test]
async fn refused_clients_cannot_make_the_gateway_pay() {
    let up = Upstream::start("demo").await;
    let gw = Gateway::start(&dev_routes(
        &up,
        "[rate_limit]\nip_per_minute = 6\nip_burst = 3",
    ))
    .await;
    // Correctly signed, but over 8 KiB: refused without decoding.
    let mut big = claims();
    big["pad"] = serde_json::json!("x".repeat(9000));
    gw.get("/api/x", &[("Authorization", &bearer(&hs256(&big)))])
        .await
        .assert_gateway_error(401, "INVALID_TOKEN");

    // A valid token used before the flood stays usable: it needs no signature check.
    let known = token();
    assert_eq!(
        gw.get("/api/x", &[("Authorization", &known)]).await.status,
        200
    );
    // Forged tokens spend the IP budget (one spent above)...
    let forged = format!("{}x", hs256(&claims()));
    for _ in 0..2 {
        gw.get("/api/x", &[("Authorization", &bearer(&forged))])
            .await
            .assert_gateway_error(401, "INVALID_TOKEN");
    }
    gw.get("/api/x", &[("Authorization", &bearer(&forged))])
        .await
        .assert_gateway_error(429, "RATE_LIMIT_EXCEEDED");
    // ...and once it is spent, even a valid token never checked before waits: checking its
    // signature is the work a flood would make us do.
    gw.get("/api/x", &[("Authorization", &token())])
        .await
        .assert_gateway_error(429, "RATE_LIMIT_EXCEEDED");
    assert_eq!(
        gw.get("/api/x", &[("Authorization", &known)]).await.status,
        200
    );

    // 404s and 400s spend a budget of their own.
    let other = Gateway::start(&format!(
        "[jwt]\nsecret = \"{{secret}}\"\n[rate_limit]\nip_per_minute = 6\nip_burst = 3\n\
         [[upstreams]]\nname = \"app\"\naddrs = [\"{}\"]\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"app\"\nauth = \"public\"\n",
        up.addr
    ))
    .await;
    other
        .get("/nothing", &[])
        .await
        .assert_gateway_error(404, "NOT_FOUND");
    other
        .get("/api/../x", &[])
        .await
        .assert_gateway_error(400, "BAD_REQUEST");
    other
        .get("/nothing", &[])
        .await
        .assert_gateway_error(404, "NOT_FOUND");
    other
        .get("/nothing", &[])
        .await
        .assert_gateway_error(429, "RATE_LIMIT_EXCEEDED");
}

/// 6. On a redirect route, a client refused by its IP budget does not get a refresh rotated
/// (a store write) for its expired cookie.
#[tokio::test]
async fn a_limited_client_does_not_drive_refresh_rotations() {
    let fake = fake_kakao(&[REDIRECT_URI]).await;
    let up = Upstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("a.db").display());
    let config = login_config(&fake, &up, &store, "require_state = false", "").replace(
        "auth_burst = 100000",
        "auth_burst = 100000\nip_per_minute = 6\nip_burst = 2",
    );
    let gw = Gateway::start(&config).await;
    let tokens = seed_login(&gw, &fake, RYAN).await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let mut expired = claims();
    expired["exp"] = serde_json::json!(now() - 3600);
    expired["iat"] = serde_json::json!(now() - 7200);
    let cookie = format!(
        "authgate_access={}; authgate_refresh={refresh}",
        hs256(&expired)
    );
    for _ in 0..2 {
        gw.get("/web/x", &[("Authorization", "Bearer forged")])
            .await
            .assert_gateway_error(401, "INVALID_TOKEN");
    }
    gw.get("/web/x", &[("Authorization", "Bearer forged")])
        .await
        .assert_gateway_error(429, "RATE_LIMIT_EXCEEDED");
    let r = gw
        .get("/web/x", &[("Cookie", &cookie), ("Accept", "text/html")])
        .await;
    r.assert_gateway_error(429, "RATE_LIMIT_EXCEEDED");
    assert!(r.header("set-cookie").is_none());
    // The refresh token was not rotated: it still works, once.
    let r = post_refresh(&gw, refresh).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// 7. Framing: ambiguous or malformed bodies are 400 JSON with the connection closed on every
/// route, and never reach the upstream.
#[tokio::test]
async fn ambiguous_framing_is_400_and_closes_on_every_route() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&public_route(&up, "")).await;
    for path in ["/upload", "/api/auth/refresh"] {
        for framing in [
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            "Content-Length: -1\r\n\r\n",
            "Content-Length: 0x10\r\n\r\n",
            "Transfer-Encoding: gzip\r\n\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ] {
            let request = format!("POST {path} HTTP/1.1\r\nHost: gateway.test\r\n{framing}");
            let (r, closed) = raw_keepalive(gw.addr, request.as_bytes()).await;
            r.assert_gateway_error(400, "BAD_REQUEST");
            assert!(closed, "{path} {framing:?}: the connection stayed open");
        }
        // A chunk size out of range: found while the body is read, still the client's fault.
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nx\r\n0\r\n\r\n"
        );
        let (r, closed) = raw_keepalive(gw.addr, request.as_bytes()).await;
        r.assert_gateway_error(400, "BAD_REQUEST");
        assert!(closed, "{path}: a bad chunk left the connection open");
    }
    // A request line Pingora must escape first (a space in the target) is checked all the same.
    for request in [
        "POST /upload/a b HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /upload/a b HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 5, 5\r\n\r\nhello",
    ] {
        let (r, closed) = raw_keepalive(gw.addr, request.as_bytes()).await;
        r.assert_gateway_error(400, "BAD_REQUEST");
        assert!(closed, "{request:?}");
    }
    // Only the bad-chunk request could have started upstream (its head goes before its body).
    assert!(up.count() <= 1, "{:?}", up.seen());
    let log = gw.log();
    assert!(!log.contains("ERROR"), "{log}");
}

/// 8. Slow and abusive connections: a head that dribbles in is cut off with 408, idle
/// keep-alive connections are closed, connections over the per-address cap are refused at
/// once, other clients are served meanwhile, and none of it writes an ERROR line.
#[tokio::test]
async fn slow_heads_idle_connections_and_connection_floods_are_bounded() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start_with(
        &public_route(&up, ""),
        "client_header_timeout_ms = 1500\nkeepalive_timeout_ms = 1000\nmax_connections_per_ip = 40",
    )
    .await;
    let started = Instant::now();
    // 50 clients from one address: each sends part of a head, then a header line every 300 ms.
    let mut slow = Vec::new();
    for i in 0..50 {
        let addr = gw.addr;
        slow.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _ = s
                .write_all(b"GET / HTTP/1.1\r\nHost: gateway.test\r\n")
                .await;
            let mut got = Vec::new();
            for n in 0.. {
                let mut buf = [0u8; 1024];
                tokio::select! {
                    r = s.read(&mut buf) => match r {
                        Ok(0) | Err(_) => break,
                        Ok(k) => got.extend_from_slice(&buf[..k]),
                    },
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {
                        if s.write_all(format!("X-Slow-{i}-{n}: 1\r\n").as_bytes()).await.is_err() {
                            break;
                        }
                    }
                }
            }
            (parse_response(&got), Instant::now())
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Meanwhile another client is served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = raw_from("127.0.0.2", gw.addr, &get("/x", &[])).await;
    assert_eq!(other.status, 200, "{other:?}");
    let mut timed_out = 0;
    let mut capped = 0;
    for t in slow {
        let (r, ended) = t.await.unwrap();
        match r.status {
            408 => {
                r.assert_gateway_error(408, "REQUEST_TIMEOUT");
                timed_out += 1;
                assert!(
                    ended - started < Duration::from_secs(5),
                    "held for {:?}",
                    ended - started
                );
            }
            429 => {
                r.assert_gateway_error(429, "TOO_MANY_CONNECTIONS");
                capped += 1;
            }
            s => panic!("status {s}: {r:?}"),
        }
    }
    assert_eq!((timed_out, capped), (40, 10));

    // An idle keep-alive connection is closed after keepalive_timeout_ms.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let idle = Instant::now();
    let eof = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    assert!(matches!(eof, Ok(Ok(0))), "{eof:?}");
    assert!(
        idle.elapsed() >= Duration::from_millis(900),
        "{:?}",
        idle.elapsed()
    );

    // Clients that hang up mid-head are counted, not logged as errors.
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: gat").await.unwrap();
        drop(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let scrape = gw.admin_get("/metrics").await.text();
    assert_eq!(
        metric(
            &scrape,
            "authgate_client_errors_total{kind=\"header_timeout\"}"
        ),
        Some(40.0)
    );
    assert_eq!(
        metric(
            &scrape,
            "authgate_client_errors_total{kind=\"connection_limit_per_ip\"}"
        ),
        Some(10.0)
    );
    assert_eq!(
        metric(
            &scrape,
            "authgate_client_errors_total{kind=\"disconnected\"}"
        ),
        Some(20.0)
    );
    assert_eq!(metric(&scrape, "authgate_open_connections"), Some(0.0));
    let log = gw.log();
    assert!(!log.contains("ERROR"), "{log}");
}

/// 8. The total cap: over `max_connections`, a new connection is refused at once with 503.
#[tokio::test]
async fn connections_over_the_total_cap_are_refused_at_once() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start_with(&public_route(&up, ""), "max_connections = 3").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(gw.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = Instant::now();
    let r = raw_from("127.0.0.3", gw.addr, &get("/x", &[])).await;
    r.assert_gateway_error(503, "TOO_MANY_CONNECTIONS");
    assert!(refused.elapsed() < Duration::from_secs(1));
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gw.get("/x", &[]).await.status, 200);
}
