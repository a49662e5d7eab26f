//! TLS on both sides over real sockets, with certificates made in the test: the HTTPS listener
//! (HTTP/1.1, and HTTP/2 through a real curl) running the whole pipeline, SNI choosing the
//! certificate, a renewal on disk served without a restart or a dropped connection, HTTPS
//! upstreams verified against a test CA (a wrong CA or name refused), mutual TLS, HTTP/2 to an
//! upstream, the handshake and expiry metrics, and `authgate check` on certificate files.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::pki::*;
use support::*;

fn token() -> String {
    bearer(&hs256(&claims()))
}

/// `[server]` lines for an HTTPS listener on `tls` with the default certificate `default` and
/// SNI certificates (names, cert, key) after it.
fn tls_server(
    tls: std::net::SocketAddr,
    default: (&Path, &Path),
    sni: &[(&str, &Path, &Path)],
) -> String {
    let mut s = format!(
        "grace_period_seconds = 1\ntls_listen = \"{tls}\"\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        default.0.display(),
        default.1.display()
    );
    for (names, cert, key) in sni {
        s += &format!(
            "[[server.tls.certs]]\nserver_names = [{names}]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            key.display()
        );
    }
    s
}

struct Site {
    gw: Gateway,
    up: Upstream,
    tls: std::net::SocketAddr,
    ca: Ca,
    default: Leaf,
    api: Leaf,
    dir: tempfile::TempDir,
}

/// The dev routes behind an HTTPS listener: the default certificate for `localhost` and
/// 127.0.0.1, an SNI one for `api.test` and `*.api.test`.
async fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("authgate test CA");
    let default = ca.leaf(&["localhost", "127.0.0.1"]);
    let api = ca.leaf(&["api.test", "*.api.test"]);
    let d = default.write(dir.path(), "default");
    let a = api.write(dir.path(), "api");
    let up = Upstream::start("demo").await;
    let tls = free_addr();
    let server = tls_server(
        tls,
        (&d.0, &d.1),
        &[("\"api.test\", \"*.api.test\"", &a.0, &a.1)],
    );
    let gw = Gateway::start_with(&dev_routes(&up, ""), &server).await;
    Site {
        gw,
        up,
        tls,
        ca,
        default,
        api,
        dir,
    }
}

/// curl, without blocking the test's runtime (the upstream runs on it).
async fn curl(args: &[&str]) -> (String, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .await
        .expect("curl (scripts/ensure-tools installs it)");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn https_and_http2_run_the_whole_pipeline() {
    let s = site().await;
    let ca_file = s.ca.write(s.dir.path(), "ca.pem");
    // HTTP/1.1 over TLS: verified, forged identity gone, the scheme is https without any
    // trusted proxy.
    let r = https(
        s.tls,
        "localhost",
        &s.ca,
        &get(
            "/app/x",
            &[
                ("Authorization", &token()),
                ("X-User-Id", "1"),
                ("X-Forwarded-Proto", "http"),
            ],
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = s.up.last();
    assert_eq!(seen.one("x-user-id"), Some("42"));
    assert_eq!(seen.one("x-forwarded-proto"), Some("https"));
    https(s.tls, "localhost", &s.ca, &get("/app/x", &[]))
        .await
        .assert_gateway_error(401, "UNAUTHORIZED");
    // The plain listener still says http.
    assert_eq!(
        s.gw.get("/app/x", &[("Authorization", &token())])
            .await
            .status,
        200
    );
    assert_eq!(s.up.last().one("x-forwarded-proto"), Some("http"));

    // HTTP/2 with a real client.
    let url = format!("https://localhost:{}/app/h2?q=1", s.tls.port());
    let resolve = format!("localhost:{}:127.0.0.1", s.tls.port());
    let auth = format!("Authorization: {}", token());
    let (out, err) = curl(&[
        "--http2",
        "--cacert",
        ca_file.to_str().unwrap(),
        "--resolve",
        &resolve,
        "-H",
        &auth,
        "-H",
        "X-User-Id: 1",
        "-w",
        "\n%{http_version} %{http_code}",
        &url,
    ])
    .await;
    assert!(
        out.ends_with("\n2 200"),
        "curl: {out} {err}\n{}",
        s.gw.log()
    );
    let seen = s.up.last();
    assert_eq!(seen.target, "/app/h2?q=1");
    assert_eq!(
        seen.one("x-user-id"),
        Some("42"),
        "forged header stripped over h2 too"
    );
    assert_eq!(
        seen.one("host"),
        Some(&*format!("localhost:{}", s.tls.port()))
    );
    assert_eq!(seen.one("x-forwarded-proto"), Some("https"));
    assert!(seen.one("x-request-id").is_some());
    let (out, _) = curl(&[
        "--http2",
        "--cacert",
        ca_file.to_str().unwrap(),
        "--resolve",
        &resolve,
        "-w",
        "\n%{http_version} %{http_code}",
        &url,
    ])
    .await;
    assert!(
        out.ends_with("\n2 401") && out.contains("UNAUTHORIZED"),
        "{out}"
    );
    // Several requests on one HTTP/2 connection, in parallel.
    let (out, err) = curl(&[
        "--http2",
        "--parallel",
        "--parallel-immediate",
        "--cacert",
        ca_file.to_str().unwrap(),
        "--resolve",
        &resolve,
        "-H",
        &auth,
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code} %{num_connects}\n",
        &url,
        &url,
        &url,
    ])
    .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out} {err}");
    assert!(lines.iter().all(|l| l.starts_with("2 200")), "{out}");

    // A client that does not speak TLS to the TLS port, and one that gives up mid-handshake.
    let r = raw(s.tls, &get("/app/x", &[])).await;
    assert_ne!(r.status, 200);
    let metrics = s.gw.admin_get("/metrics").await.text();
    assert!(
        metric(&metrics, "authgate_tls_handshakes_total{result=\"ok\"}").unwrap() >= 6.0,
        "{metrics}"
    );
    assert!(metric(&metrics, "authgate_tls_handshakes_total{result=\"failed\"}").unwrap() >= 1.0);
    let expiry = metric(
        &metrics,
        "authgate_tls_cert_expiry_timestamp_seconds{name=\"default\"}",
    )
    .unwrap();
    assert!(
        (expiry - (now() + 90 * 86400) as f64).abs() < 86400.0 * 2.0,
        "{expiry}"
    );
    assert!(metric(
        &metrics,
        "authgate_tls_cert_expiry_timestamp_seconds{name=\"api.test\"}"
    )
    .is_some());
}

#[tokio::test]
async fn sni_picks_the_certificate() {
    let s = site().await;
    for (sni, leaf) in [
        ("api.test", &s.api),
        ("API.test", &s.api),
        ("v2.api.test", &s.api),
        ("localhost", &s.default),
        // Not a name of ours: the default (which the client then refuses).
    ] {
        let c = connect(s.tls, sni, &s.ca, &[b"h2", b"http/1.1"]).await;
        assert!(presented(&c) == leaf.der, "{sni} got the wrong certificate");
        assert_eq!(
            agreed(&c).as_deref(),
            Some(&b"h2"[..]),
            "h2 is offered by ALPN"
        );
    }
    let err = try_connect(s.tls, "other.test", &s.ca, &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    // By IP address (no SNI at all): the default certificate.
    let c = connect(s.tls, "127.0.0.1", &s.ca, &[b"http/1.1"]).await;
    assert!(presented(&c) == s.default.der);
    assert_eq!(agreed(&c).as_deref(), Some(&b"http/1.1"[..]));
    // Only TLS 1.2 and 1.3 are spoken.
    let mut c = connect(s.tls, "api.test", &s.ca, &[]).await;
    assert!(matches!(
        c.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    ));
    let r = exchange(
        &mut c,
        &keep_alive(get("/", &[])).replace("gateway.test", "api.test"),
    )
    .await;
    assert_eq!(r.status, 200);
}

/// Waits until a new handshake asking for `sni` is given `leaf`.
async fn served(s: &Site, sni: &str, leaf: &Leaf, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let c = connect(s.tls, sni, &s.ca, &[]).await;
        if presented(&c) == leaf.der {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sni}: the new certificate was not served:\n{}",
            s.gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart_or_a_dropped_connection() {
    let s = site().await;
    let mut open = connect(s.tls, "localhost", &s.ca, &[b"http/1.1"]).await;
    assert_eq!(
        exchange(&mut open, &for_host(&keep_alive(get("/", &[])), "localhost"))
            .await
            .status,
        200
    );

    // A half-written renewal: the new certificate beside the old key. Refused, logged, the
    // old pair still served.
    let renewed = s.ca.leaf(&["localhost", "127.0.0.1"]);
    std::fs::write(s.dir.path().join("default.pem"), &renewed.cert_pem).unwrap();
    let deadline = Instant::now() + Duration::from_secs(12);
    while !s.gw.log().contains("cannot be served") {
        assert!(
            Instant::now() < deadline,
            "no error logged:\n{}",
            s.gw.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let c = connect(s.tls, "localhost", &s.ca, &[]).await;
    assert!(
        presented(&c) == s.default.der,
        "a mismatched pair was served"
    );

    // The key follows: the watch serves the new pair, with no signal.
    std::fs::write(s.dir.path().join("default.key"), &renewed.key_pem).unwrap();
    served(&s, "localhost", &renewed, Duration::from_secs(12)).await;
    // The connection opened before the renewal still works.
    let r = exchange(
        &mut open,
        &for_host(
            &keep_alive(get("/app/x", &[("Authorization", &token())])),
            "localhost",
        ),
    )
    .await;
    assert_eq!(r.status, 200);

    // SIGHUP (a certbot deploy hook) reads them as well, here a new SNI certificate.
    let again = s.ca.leaf(&["api.test", "*.api.test"]);
    again.write(s.dir.path(), "api");
    Command::new("kill")
        .args(["-HUP", &s.gw.child.id().to_string()])
        .status()
        .unwrap();
    served(&s, "api.test", &again, Duration::from_secs(5)).await;
    let r = exchange(&mut open, &for_host(&keep_alive(get("/", &[])), "localhost")).await;
    assert_eq!(r.status, 200, "the old connection survived the reload");
}

/// The gateway in front of one HTTPS upstream; `upstream` is the `[[upstreams]]` body after
/// `name` and `addrs`.
async fn via(up: &TlsUpstream, upstream: &str) -> Gateway {
    let rest = format!(
        "[jwt]\nsecret = \"{{secret}}\"\n[[upstreams]]\nname = \"secure\"\naddrs = [\"{}\"]\n{upstream}\n\
         [[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"secure\"\nauth = \"required\"\n",
        up.addr
    );
    Gateway::start(&rest).await
}

#[tokio::test]
async fn https_upstreams_are_verified() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("upstream CA");
    let other = Ca::new("someone else's CA");
    let leaf = ca.leaf(&["secure.internal", "127.0.0.1"]);
    let up = TlsUpstream::start("secure", &leaf, None).await;
    let ca_file = ca.write(dir.path(), "ca.pem");
    let other_file = other.write(dir.path(), "other.pem");

    // Verified by the address (an IP in the certificate) and by a name.
    for extra in ["", "sni = \"secure.internal\""] {
        let gw = via(
            &up,
            &format!("tls = true\nca_file = \"{}\"\n{extra}", ca_file.display()),
        )
        .await;
        let r = gw.get("/orders", &[("Authorization", &token())]).await;
        assert_eq!(r.status, 200, "{extra}: {}\n{}", r.text(), gw.log());
        assert_eq!(r.json()["version"], "HTTP/1.1");
    }
    let arrived = up.count();
    assert_eq!(up.seen().last().unwrap().one("x-user-id"), Some("42"));

    // A certificate from another CA, or for another name: 502, logged, nothing sent.
    for (extra, why) in [
        (
            format!("ca_file = \"{}\"", other_file.display()),
            "UnknownIssuer",
        ),
        (
            format!(
                "ca_file = \"{}\"\nsni = \"wrong.internal\"",
                ca_file.display()
            ),
            "not valid for name",
        ),
        // The system roots do not know the test CA.
        (String::new(), "UnknownIssuer"),
    ] {
        let gw = via(&up, &format!("tls = true\n{extra}")).await;
        let r = gw.get("/orders", &[("Authorization", &token())]).await;
        r.assert_gateway_error(502, "UPSTREAM_UNAVAILABLE");
        let log = gw.log();
        assert!(
            log.contains(why),
            "{extra}: the log does not say why:\n{log}"
        );
    }
    assert_eq!(
        up.count(),
        arrived,
        "a request went to an unverified upstream"
    );

    // verify = false reaches it anyway, after a loud warning at start.
    let gw = via(&up, "tls = true\nverify = false").await;
    assert!(gw.log().contains("NOT verified"), "{}", gw.log());
    assert_eq!(
        gw.get("/orders", &[("Authorization", &token())])
            .await
            .status,
        200
    );

    // HTTP/2 to the upstream when asked for, through an HTTP health check with the same TLS.
    let gw = via(
        &up,
        &format!("tls = true\nh2 = true\nca_file = \"{}\"\nhealth_check_path = \"/healthz\"\nhealth_check_interval_ms = 200", ca_file.display()),
    )
    .await;
    let r = gw.get("/orders", &[("Authorization", &token())]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), gw.log());
    assert_eq!(r.json()["version"], "HTTP/2.0");
    let last = up.seen().last().unwrap().clone();
    assert_eq!(last.one("x-user-id"), Some("42"));
    assert!(
        up.seen().iter().any(|s| s.target == "/healthz"),
        "no TLS health check arrived"
    );
}

#[tokio::test]
async fn mutual_tls_to_an_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("upstream CA");
    let clients = Ca::new("client CA");
    let up = TlsUpstream::start("secure", &ca.leaf(&["127.0.0.1"]), Some(&clients)).await;
    let ca_file = ca.write(dir.path(), "ca.pem");
    let gw = via(
        &up,
        &format!("tls = true\nca_file = \"{}\"", ca_file.display()),
    )
    .await;
    gw.get("/x", &[("Authorization", &token())])
        .await
        .assert_gateway_error(502, "UPSTREAM_UNAVAILABLE");
    assert_eq!(up.count(), 0);
    drop(gw);

    let (cert, key) = clients
        .leaf(&["gateway.internal"])
        .write(dir.path(), "client");
    let gw = via(
        &up,
        &format!(
            "tls = true\nca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"",
            ca_file.display(),
            cert.display(),
            key.display()
        ),
    )
    .await;
    let r = gw.get("/x", &[("Authorization", &token())]).await;
    assert_eq!(r.status, 200, "{}\n{}", r.text(), gw.log());
    assert_eq!(up.count(), 1);
}

/// `authgate check` on a configuration with `server` lines and one upstream (`addrs` defaults to
/// one address); whether it passed, and what it printed.
fn check(dir: &Path, server: &str, upstream: &str) -> (bool, String) {
    let cfg = dir.join("config.toml");
    let addrs = if upstream.contains("addrs") {
        ""
    } else {
        "addrs = [\"127.0.0.1:1\"]\n"
    };
    std::fs::write(
        &cfg,
        format!(
            "[server]\n{server}\n[jwt]\nsecret = \"{SECRET}\"\n[[upstreams]]\nname = \"app\"\n{addrs}{upstream}\n\
             [[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn check_reads_the_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("CA");
    let good = ca.leaf(&["localhost"]);
    let other = ca.leaf(&["localhost"]);
    good.write(d, "good");
    std::fs::write(d.join("other.key"), &other.key_pem).unwrap();
    ca.leaf_for_days(&["localhost"], -1).write(d, "expired");
    ca.leaf_for_days(&["localhost"], 5).write(d, "soon");
    ca.leaf(&["api.test"]).write(d, "api");
    ca.leaf(&[]).write(d, "nosan");
    let server = |cert: &str, key: &str, extra: &str| {
        format!("tls_listen = \"127.0.0.1:8443\"\n[server.tls]\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n{extra}")
    };

    let ok = |server: &str, upstream: &str| {
        let (passed, out) = check(d, server, upstream);
        assert!(passed, "{out}");
        out
    };
    let refused = |server: &str, upstream: &str, says: &[&str]| {
        let (passed, out) = check(d, server, upstream);
        assert!(!passed, "passed: {out}");
        for s in says {
            assert!(out.contains(s), "{s:?} missing from {out}");
        }
    };
    let out = ok(&server("good.pem", "good.key", ""), "");
    assert!(!out.contains("warning"), "{out}");
    refused(
        &server("good.pem", "other.key", ""),
        "",
        &["server.tls.cert_file", "is not the key of"],
    );
    // Expired: check refuses it (the gateway still starts, see below).
    refused(
        &server("expired.pem", "expired.key", ""),
        "",
        &["expired at", "renew it"],
    );
    let out = ok(&server("soon.pem", "soon.key", ""), "");
    assert!(
        out.contains("warning") && out.contains("within 14 days"),
        "{out}"
    );
    refused(&server("missing.pem", "good.key", ""), "", &["cannot read"]);
    refused(
        &server("nosan.pem", "nosan.key", ""),
        "",
        &["no subjectAltName"],
    );
    let sni = "[[server.tls.certs]]\nserver_names = [\"api.test\", \"www.api.test\"]\ncert_file = \"api.pem\"\nkey_file = \"api.key\"\n";
    refused(
        &server("good.pem", "good.key", sni),
        "",
        &["\"www.api.test\"", "does not cover"],
    );
    refused("tls_listen = \"127.0.0.1:8443\"", "", &["[server.tls]"]);
    refused(
        &server("good.pem", "good.key", "").replace(":8443", ":0"),
        "",
        &["server.tls_listen", "not 0"],
    );

    let out = ok("", "tls = true\nverify = false\nh2 = true");
    assert!(out.contains("not checked"), "{out}");
    refused(
        "",
        "h2 = true\nsni = \"x.internal\"",
        &["upstreams[0].h2", "upstreams[0].sni"],
    );
    refused(
        "",
        "tls = true\nverify = false\nca_file = \"good.pem\"",
        &["upstreams[0].verify"],
    );
    refused(
        "",
        "addrs = [\"localhost:1\", \"127.0.0.1:2\"]\ntls = true\nhealth_check_path = \"/healthz\"",
        &["upstreams[0].sni", "health check"],
    );
    ok("", "addrs = [\"localhost:1\", \"127.0.0.1:2\"]\ntls = true\nsni = \"app.internal\"\nhealth_check_path = \"/healthz\"");
    refused(
        "",
        "tls = true\nclient_cert_file = \"good.pem\"",
        &["both the certificate and its key"],
    );
}

/// A failed renewal must not keep the gateway from starting (or reloading): it serves the
/// expired certificate, logs an error, and the gauge shows it.
#[tokio::test]
async fn an_expired_certificate_does_not_stop_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let (cert, key) = ca
        .leaf_for_days(&["localhost"], -1)
        .write(dir.path(), "expired");
    let up = Upstream::start("demo").await;
    let tls = free_addr();
    let gw = Gateway::start_with(&dev_routes(&up, ""), &tls_server(tls, (&cert, &key), &[])).await;
    assert!(gw.log().contains("EXPIRED"), "{}", gw.log());
    let metrics = gw.admin_get("/metrics").await.text();
    let at = metric(
        &metrics,
        "authgate_tls_cert_expiry_timestamp_seconds{name=\"default\"}",
    )
    .unwrap();
    assert!(at < now() as f64);
    // A client that checks refuses it; the plain listener serves on.
    assert!(try_connect(tls, "localhost", &ca, &[]).await.is_err());
    assert_eq!(gw.get("/", &[]).await.status, 200);
}
