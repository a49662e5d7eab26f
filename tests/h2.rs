//! The trust boundary over HTTP/2 (TLS, ALPN h2): the rules the HTTP/1.1 socket tests hold
//! (`trust_boundary.rs`) hold for every h2 request too: routes, hosts and methods; identity,
//! forwarding headers and cookies; malformed requests; the preface, body and upload deadlines;
//! rate limits shared with HTTP/1.1; the routed authority to an h2 upstream. Well-formed requests go through the `h2`
//! library's client; what that client refuses to send (upper-case names, connection-specific
//! headers, pseudo-header abuse) is written as raw frames with a literal HPACK encoding.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::pki::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn token() -> String {
    bearer(&hs256(&claims()))
}

struct Site {
    gw: Gateway,
    up: Upstream,
    tls: SocketAddr,
    ca: Ca,
    _dir: tempfile::TempDir,
}

/// `admin.test` (required, GET only) and everything else (`/app` required, `/` public) behind
/// an HTTPS listener whose certificate names `localhost` and `admin.test`.
async fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("h2 test CA");
    let (cert, key) = ca
        .leaf(&["localhost", "admin.test", "www.test"])
        .write(dir.path(), "gw");
    let up = Upstream::start("app").await;
    let tls = free_addr();
    let rest = format!(
        "[jwt]\nsecret = \"{{secret}}\"\n[[upstreams]]\nname = \"app\"\naddrs = [\"{}\"]\n\
         [[routes]]\nname = \"admin\"\nhost = \"admin.test\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"required\"\nmethods = [\"GET\"]\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/app\"\nupstream = \"app\"\nauth = \"required\"\n\
         [[routes]]\nname = \"pub\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"public\"\n",
        up.addr
    );
    let server = https_server(tls, &cert, &key, "client_header_timeout_ms = 1000");
    let gw = Gateway::start_with(&rest, &server).await;
    Site {
        gw,
        up,
        tls,
        ca,
        _dir: dir,
    }
}

/// `[server]` lines for an HTTPS listener on `tls` with one certificate, `extra` before them.
fn https_server(
    tls: SocketAddr,
    cert: &std::path::Path,
    key: &std::path::Path,
    extra: &str,
) -> String {
    format!(
        "grace_period_seconds = 1\n{extra}\ntls_listen = \"{tls}\"\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

type Client = h2::client::SendRequest<bytes::Bytes>;

async fn client(s: &Site) -> Client {
    h2_client(s.tls, &s.ca).await
}

async fn h2_client(addr: SocketAddr, ca: &Ca) -> Client {
    let tls = connect(addr, "localhost", ca, &[b"h2"]).await;
    assert_eq!(agreed(&tls).as_deref(), Some(&b"h2"[..]));
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// One request; the status and the body.
async fn send(c: &mut Client, req: http::Request<()>) -> (u16, String) {
    let c = c.clone().ready().await.unwrap();
    let mut c = c;
    let (resp, _) = c.send_request(req, true).unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    (status, String::from_utf8_lossy(&text).into_owned())
}

fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

#[tokio::test]
async fn routes_hosts_and_methods_decide_the_same_over_h2() {
    let s = site().await;
    let mut c = client(&s).await;
    let port = s.tls.port();
    let on = |host: &str, path: &str| format!("https://{host}:{port}{path}");

    // Case: `/APP/settings` is the required `/app` route.
    let (status, body) = send(&mut c, req("GET", &on("localhost", "/APP/settings"), &[])).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(s.up.count(), 0);
    let (status, _) = send(
        &mut c,
        req(
            "GET",
            &on("localhost", "/APP/settings"),
            &[("authorization", &token())],
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(s.up.last().target, "/APP/settings");

    // `:authority` is the host: the host route, in any case and with a trailing dot.
    for host in ["admin.test", "ADMIN.test", "admin.test."] {
        let (status, body) = send(&mut c, req("GET", &on(host, "/"), &[])).await;
        assert_eq!(status, 401, "{host}: {body}");
    }
    // A `host` that disagrees with `:authority` is refused, either way round: the route would
    // be chosen by one and the request delivered to the other.
    for (authority, host) in [("www.test", "admin.test"), ("admin.test", "www.test")] {
        let (status, body) = send(
            &mut c,
            req(
                "GET",
                &on(authority, "/"),
                &[("host", &format!("{host}:{port}"))],
            ),
        )
        .await;
        assert_eq!(status, 400, "{authority} / {host}: {body}");
    }
    // The same `host` as `:authority` is fine.
    let (status, _) = send(
        &mut c,
        req(
            "GET",
            &on("www.test", "/"),
            &[("host", &format!("www.test:{port}"))],
        ),
    )
    .await;
    assert_eq!(status, 200);
    // A method the route does not allow never falls through to the catch-all.
    let (status, body) = send(
        &mut c,
        req(
            "POST",
            &on("admin.test", "/"),
            &[("authorization", &token())],
        ),
    )
    .await;
    assert_eq!(status, 405, "{body}");
    // Dot-segments and encoded ones, as on HTTP/1.1.
    for path in ["/app/../admin", "/app/%2e%2e/admin", "/app//x", "/app%2fx"] {
        let (status, body) = send(
            &mut c,
            req(
                "GET",
                &on("localhost", path),
                &[("authorization", &token())],
            ),
        )
        .await;
        assert_eq!(status, 400, "{path}: {body}");
    }
    // CONNECT is not proxied.
    let connect = http::Request::builder()
        .method("CONNECT")
        .uri(format!("localhost:{port}"))
        .body(())
        .unwrap();
    let (status, _) = send(&mut c, connect).await;
    assert_eq!(status, 405);
    assert_eq!(s.up.count(), 2, "{:?}", s.up.seen());
}

#[tokio::test]
async fn identity_forwarding_headers_and_cookies_are_cleaned_over_h2() {
    let s = site().await;
    let mut c = client(&s).await;
    let url = format!("https://localhost:{}/app/x", s.tls.port());
    let (status, body) = send(
        &mut c,
        req(
            "GET",
            &url,
            &[
                ("authorization", &token()),
                ("x-user-id", "1"),
                ("x-user-email", "evil@example.com"),
                ("x-forwarded-for", "10.9.9.9"),
                ("x-forwarded-proto", "http"),
                ("forwarded", "for=10.9.9.9"),
                ("x-real-ip", "10.9.9.9"),
                // HTTP/2 may split cookies into several fields (RFC 9113 §8.2.3).
                ("cookie", "a=1"),
                ("cookie", "__Host-authgate_refresh=stolen; b=2"),
                ("cookie", "authgate_access=x"),
                ("te", "trailers"),
            ],
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = s.up.last();
    assert_eq!(seen.one("x-user-id"), Some("42"));
    assert_eq!(seen.one("x-user-email"), Some("user42@example.com"));
    assert_eq!(seen.one("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.one("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.one("forwarded"), None);
    assert_eq!(seen.one("x-real-ip"), None);
    // One Cookie line for an HTTP/1.1 upstream, without the gateway's cookies.
    assert_eq!(seen.all("cookie"), vec!["a=1; b=2"], "{:?}", seen.headers);
}

// ---------------------------------------------------------------------------------------------
// Raw frames: what a well-behaved client library will not send

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1), `first` holding the other bits.
fn integer(first: u8, n: u32, mut value: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A header block of literal fields, without indexing, names and values as given (no Huffman).
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        integer(0, 7, name.len(), &mut out);
        out.extend_from_slice(name.as_bytes());
        integer(0, 7, value.len(), &mut out);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

#[derive(Debug, PartialEq)]
enum Outcome {
    /// The stream was reset (RST_STREAM) or the connection ended (GOAWAY): refused by the h2 layer.
    Reset,
    Status(u16),
}

/// The digits of a Huffman-coded status (RFC 7541 Appendix B: 0-2 are five bits, 3-9 six).
fn huffman_digits(bytes: &[u8]) -> Option<u16> {
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let (mut i, mut n) = (0, 0u16);
    let take = |i: usize, k: usize| {
        bits.get(i..i + k)
            .map(|b| b.iter().fold(0u8, |a, x| a << 1 | x))
    };
    for _ in 0..3 {
        let five = take(i, 5)?;
        if five <= 2 {
            n = n * 10 + five as u16;
            i += 5;
        } else {
            let six = take(i, 6)?;
            if !(0b011001..=0b011111).contains(&six) {
                return None;
            }
            n = n * 10 + (six - 0b011001 + 3) as u16;
            i += 6;
        }
    }
    Some(n)
}

/// `:status` from the start of a response header block.
fn status_of(block: &[u8]) -> Option<u16> {
    let statics = [200, 204, 206, 304, 400, 404, 500];
    match block.first()? {
        b @ 0x88..=0x8e => Some(statics[(b - 0x88) as usize]),
        // A literal with the static name `:status` (index 8), then its value.
        0x48 | 0x08 | 0x18 => {
            let len = (block[1] & 0x7f) as usize;
            let value = block.get(2..2 + len)?;
            if block[1] & 0x80 != 0 {
                huffman_digits(value)
            } else {
                std::str::from_utf8(value).ok()?.parse().ok()
            }
        }
        _ => None,
    }
}

/// Sends one request as raw frames (`fields` in order, pseudo-headers included) and reads
/// until its answer or its reset.
async fn raw_h2(s: &Site, fields: &[(&str, &str)]) -> Outcome {
    let mut c = connect(s.tls, "localhost", &s.ca, &[b"h2"]).await;
    let mut out = PREFACE.to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    out.extend(frame(0x1, 0x5, 1, &block(fields)));
    c.write_all(&out).await.unwrap();
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        while buf.len() >= 9 {
            let len = (buf[0] as usize) << 16 | (buf[1] as usize) << 8 | buf[2] as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload: Vec<u8> = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            match (kind, stream) {
                (0x4, 0) if flags & 1 == 0 => c.write_all(&frame(0x4, 1, 0, &[])).await.unwrap(),
                (0x3, 1) | (0x7, _) => return Outcome::Reset,
                (0x1, 1) => {
                    return Outcome::Status(
                        status_of(&payload).unwrap_or_else(|| panic!("status in {payload:02x?}")),
                    )
                }
                _ => {}
            }
        }
        let mut chunk = [0u8; 16384];
        match tokio::time::timeout_at(deadline, c.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => return Outcome::Reset,
            Err(_) => panic!("no answer to {fields:?}"),
        }
    }
}

#[tokio::test]
async fn malformed_h2_requests_never_reach_an_upstream() {
    let s = site().await;
    let port = s.tls.port().to_string();
    let authority = format!("localhost:{port}");
    let admin = format!("admin.test:{port}");
    let t = token();
    let base = |path: &'static str| -> Vec<(&'static str, String)> {
        vec![
            (":method", "GET".into()),
            (":scheme", "https".into()),
            (":authority", authority.clone()),
            (":path", path.into()),
        ]
    };
    let fields = |v: &[(&'static str, String)]| -> Vec<(String, String)> {
        v.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    };
    // The well-formed request through the same raw path: answered (the harness works).
    let ok = fields(&base("/"));
    let as_refs = |v: &Vec<(String, String)>| -> Vec<(String, String)> { v.clone() };
    let run = |v: Vec<(String, String)>| {
        let s = &s;
        async move {
            let refs: Vec<(&str, &str)> = v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            raw_h2(s, &refs).await
        }
    };
    assert_eq!(run(as_refs(&ok)).await, Outcome::Status(200));
    assert_eq!(s.up.count(), 1);

    let mut cases: Vec<(&str, Vec<(String, String)>)> = Vec::new();
    // With a valid token on a required route: a refusal is the malformation's.
    let with = |extra: &[(&str, &str)], path: &'static str| {
        let mut v = fields(&base(path));
        v.push(("authorization".into(), t.clone()));
        v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        v
    };
    cases.push(("upper-case name", with(&[("X-User-Id", "1")], "/app/x")));
    cases.push((
        "upper-case name of ours",
        with(&[("Cookie", "authgate_access=x")], "/app/x"),
    ));
    cases.push((
        "connection header",
        with(&[("connection", "keep-alive")], "/app/x"),
    ));
    cases.push((
        "transfer-encoding",
        with(&[("transfer-encoding", "chunked")], "/app/x"),
    ));
    cases.push(("te other than trailers", with(&[("te", "gzip")], "/app/x")));
    cases.push(("upgrade", with(&[("upgrade", "websocket")], "/app/x")));
    cases.push(("content_length", with(&[("content_length", "5")], "/app/x")));
    cases.push((
        "transfer_encoding",
        with(&[("transfer_encoding", "chunked")], "/app/x"),
    ));
    cases.push((
        "unknown pseudo-header",
        with(&[(":protocol-x", "1")], "/app/x"),
    ));
    let mut late = fields(&base("/"));
    let path = late.remove(3);
    late.push(("accept".into(), "*/*".into()));
    late.push(path);
    cases.push(("pseudo-header after a regular one", late));
    let mut twice = fields(&base("/"));
    twice.push((":path".into(), "/app/x".into()));
    cases.push(("two :path", twice));
    let mut no_path = fields(&base("/"));
    no_path.remove(3);
    cases.push(("no :path", no_path));
    cases.push(("absolute :path", fields(&base("https://admin.test/"))));
    cases.push(("asterisk :path", fields(&base("*"))));
    cases.push(("dot-segments", with(&[], "/app/../admin")));
    cases.push((
        "authority and host disagree",
        with(&[("host", &admin)], "/app/x"),
    ));
    cases.push((
        "two hosts",
        with(&[("host", &authority), ("host", &admin)], "/app/x"),
    ));
    let mut no_authority = fields(&base("/"));
    no_authority.remove(2);
    cases.push(("neither :authority nor host", no_authority));
    cases.push(("userinfo in :authority", {
        let mut v = fields(&base("/"));
        v[2].1 = format!("evil@admin.test:{port}");
        v
    }));
    let mut anonymous = fields(&base("/app/x"));
    anonymous.push(("x-user-id".into(), "1".into()));
    cases.push(("forged identity on an anonymous request", anonymous));
    let mut forged = fields(&base("/app/x"));
    forged.push(("authorization".into(), format!("{t}x")));
    cases.push(("a forged token", forged));

    for (what, fields) in cases {
        let outcome = run(fields).await;
        assert!(
            matches!(outcome, Outcome::Reset | Outcome::Status(400..=499)),
            "{what}: {outcome:?}"
        );
        assert_eq!(
            s.up.count(),
            1,
            "{what} reached the upstream: {:?}",
            s.up.last()
        );
    }
    assert!(s.gw.admin_get("/healthz").await.status == 200, "still up");
}

/// A client that agrees on HTTP/2 and then sends nothing is closed within the request-head
/// timeout (one second here), as an HTTP/1.1 client that sends no head is.
#[tokio::test]
async fn an_h2_connection_that_never_sends_its_preface_is_closed() {
    let s = site().await;
    let mut c = connect(s.tls, "localhost", &s.ca, &[b"h2"]).await;
    assert_eq!(agreed(&c).as_deref(), Some(&b"h2"[..]));
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("still open after 5 s"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !s.gw.log().contains("H2 handshake error"),
        "a client wrote an error line"
    );
}

/// HTTP/2 on both sides: the upstream's `:authority` is the host as routed (lower case, no
/// trailing dot), with `X-Forwarded-Host` beside it, as an HTTP/1.1 upstream's `Host` is.
#[tokio::test]
async fn h2_end_to_end_forwards_the_routed_authority() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let (cert, key) = ca.leaf(&["localhost"]).write(dir.path(), "gw");
    let up = TlsUpstream::start("secure", &ca.leaf(&["127.0.0.1"]), None).await;
    let ca_file = ca.write(dir.path(), "ca.pem");
    let tls = free_addr();
    let rest = format!(
        "[jwt]\nsecret = \"{{secret}}\"\n[[upstreams]]\nname = \"secure\"\naddrs = [\"{}\"]\ntls = true\nh2 = true\nca_file = \"{}\"\n\
         [[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"secure\"\nauth = \"required\"\n",
        up.addr,
        ca_file.display()
    );
    let server = https_server(tls, &cert, &key, "");
    let gw = Gateway::start_with(&rest, &server).await;
    let mut c = h2_client(tls, &ca).await;
    let uri = format!("https://LocalHost.:{}/x", tls.port());
    let (status, body) = send(
        &mut c,
        req(
            "GET",
            &uri,
            &[("authorization", &token()), ("x-user-id", "1")],
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}\n{}", gw.log());
    let seen = up.seen().pop().unwrap();
    assert_eq!(seen.one("x-seen-version"), Some("HTTP/2.0"));
    let routed = format!("localhost:{}", tls.port());
    assert_eq!(
        seen.one("x-seen-authority"),
        Some(&*routed),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.one("x-forwarded-host"), Some(&*routed));
    assert_eq!(seen.one("x-user-id"), Some("42"));
}

/// A body to the gateway's own endpoints that stalls over HTTP/2 is answered `408` after 10 s,
/// as over HTTP/1.1 (Pingora's read timeout does nothing for h2 streams).
#[tokio::test]
async fn a_stalled_h2_body_to_the_api_times_out() {
    let s = site().await;
    let c = client(&s).await;
    let mut c = c.ready().await.unwrap();
    let uri = format!("https://localhost:{}/api/auth/refresh", s.tls.port());
    let request = http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/json")
        .header("content-length", "100")
        .body(())
        .unwrap();
    let (resp, mut body) = c.send_request(request, false).unwrap();
    body.send_data(bytes::Bytes::from_static(b"{\"refresh"), false)
        .unwrap();
    let started = std::time::Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(15), resp)
        .await
        .expect("no answer within 15 s")
        .unwrap();
    assert_eq!(resp.status(), 408);
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
}

/// A proxied upload that stalls over HTTP/2 holds its upstream connection no longer than the
/// upstream's `read_timeout_ms` (then `504`), as over HTTP/1.1.
#[tokio::test]
async fn a_stalled_h2_upload_is_bounded_by_the_upstream_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let (cert, key) = ca.leaf(&["localhost"]).write(dir.path(), "gw");
    let up = Upstream::start("app").await;
    let tls = free_addr();
    let rest = format!(
        "[jwt]\nsecret = \"{{secret}}\"\n[[upstreams]]\nname = \"app\"\naddrs = [\"{}\"]\nread_timeout_ms = 1000\n\
         [[routes]]\nname = \"pub\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"public\"\n",
        up.addr
    );
    let server = https_server(tls, &cert, &key, "");
    let _gw = Gateway::start_with(&rest, &server).await;
    let mut c = h2_client(tls, &ca).await.ready().await.unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("https://localhost:{}/upload", tls.port()))
        .header("content-length", "100")
        .body(())
        .unwrap();
    let (resp, mut body) = c.send_request(request, false).unwrap();
    body.send_data(bytes::Bytes::from_static(b"0123456789"), false)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .expect("no answer within 10 s")
        .unwrap();
    assert_eq!(resp.status(), 504);
}

/// Rate limits count HTTP/2 requests as HTTP/1.1 ones, in the same budget: streams on one
/// connection spend the client's anonymous budget, then forged tokens get 429 before any
/// signature check, on either protocol; a known token keeps working (its user's own budget).
#[tokio::test]
async fn h2_streams_spend_the_same_rate_limit_budget() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let (cert, key) = ca.leaf(&["localhost"]).write(dir.path(), "gw");
    let up = Upstream::start("app").await;
    let tls = free_addr();
    let rest = dev_routes(&up, "[rate_limit]\nip_per_minute = 6\nip_burst = 3");
    let server = https_server(tls, &cert, &key, "");
    let gw = Gateway::start_with(&rest, &server).await;
    let mut c = h2_client(tls, &ca).await;
    let url = format!("https://localhost:{}/api/x", tls.port());
    let known = token();
    let (status, _) = send(&mut c, req("GET", &url, &[("authorization", &known)])).await;
    assert_eq!(status, 200);
    let forged = bearer(&format!("{}x", hs256(&claims())));
    for _ in 0..3 {
        let (status, body) = send(&mut c, req("GET", &url, &[("authorization", &forged)])).await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, body) = send(&mut c, req("GET", &url, &[("authorization", &forged)])).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("RATE_LIMIT_EXCEEDED"), "{body}");
    // The same budget over HTTP/1.1 from the same address.
    gw.get("/api/x", &[("Authorization", &forged)])
        .await
        .assert_gateway_error(429, "RATE_LIMIT_EXCEEDED");
    let (status, _) = send(&mut c, req("GET", &url, &[("authorization", &known)])).await;
    assert_eq!(
        status, 200,
        "a known token needs no signature check and has its own budget"
    );
    assert_eq!(up.count(), 2);
}
