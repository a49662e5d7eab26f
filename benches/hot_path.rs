//! Micro-benchmarks of the per-request work: token verification (HS256, RS256, EdDSA; with and
//! without the verified-token cache), the revocation lookup with 1,000,000 revoked entries, the
//! rate-limit check, and route match + header rewrite. `cargo bench --bench hot_path`; CI only
//! runs them once in test mode.

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use authgate::config::{AuthMode, Config, RouteConfig};
use authgate::identity::{self, HeaderRules};
use authgate::limits::Limits;
use authgate::routes::{check_host, check_target, Router};
use authgate::tokens::jwt::{Issuer, Subject, Verifier};
use authgate::tokens::revocation::Revocations;
use criterion::{criterion_group, criterion_main, Criterion};

fn config(jwt: &str) -> Config {
    let text = format!(
        r#"
[jwt]
{jwt}
[[upstreams]]
name = "app"
addrs = ["127.0.0.1:3000"]
[[routes]]
name = "root"
path_prefix = "/"
upstream = "app"
auth = "public"
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "app"
[[routes]]
name = "admin"
path_prefix = "/api/admin"
upstream = "app"
[[routes]]
name = "health"
path_prefix = "/api/health"
upstream = "app"
auth = "public"
"#
    );
    Config::parse(
        &text,
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        &|_| None,
    )
    .expect("bench config")
}

fn who() -> Subject {
    Subject {
        user_id: 42,
        username: "kakao_42".into(),
        email: Some("user42@example.com".into()),
        nickname: Some("Forty Two".into()),
        provider: "kakao".into(),
    }
}

fn verification(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    for (name, jwt) in [
        (
            "HS256",
            "secret = \"benchmark-secret-0123456789abcdef0123456789\"",
        ),
        (
            "RS256",
            "algorithm = \"RS256\"\nprivate_key_file = \"tests/fixtures/rs256-2048.pem\"",
        ),
        (
            "EdDSA",
            "algorithm = \"EdDSA\"\nprivate_key_file = \"tests/fixtures/ed25519.pem\"",
        ),
    ] {
        for cached in [false, true] {
            let entries = if cached { 10_000 } else { 0 };
            let cfg = config(&format!("{jwt}\nverified_cache_entries = {entries}"));
            let verifier = Verifier::new(&cfg.jwt, Arc::new(Revocations::new()), Arc::default());
            let (token, _) = Issuer::new(&cfg.jwt)
                .issue_access(&who(), jsonwebtoken::get_current_timestamp() as i64)
                .unwrap();
            let label = format!("{name}{}", if cached { " cached" } else { "" });
            group.bench_function(label, |b| {
                b.iter(|| black_box(verifier.verify(black_box(&token)).unwrap().exp))
            });
        }
    }
    group.finish();
}

fn revocation(c: &mut Criterion) {
    let revocations = Revocations::new();
    for i in 0..1_000_000 {
        revocations.revoke(&format!("{i:032x}"), i64::MAX / 2);
    }
    let mut group = c.benchmark_group("revocation, 1,000,000 revoked");
    let present = format!("{:032x}", 123_456);
    let absent = format!("{:032x}", 9_999_999);
    group.bench_function("hit", |b| {
        b.iter(|| black_box(revocations.is_revoked(black_box(&present))))
    });
    group.bench_function("miss", |b| {
        b.iter(|| black_box(revocations.is_revoked(black_box(&absent))))
    });
    group.finish();
}

fn rate_limit(c: &mut Criterion) {
    let cfg = config("secret = \"benchmark-secret-0123456789abcdef0123456789\"\n[rate_limit]\nuser_per_minute = 1000000\nuser_burst = 1000000\nip_per_minute = 1000000\nip_burst = 1000000");
    let router = Router::new(&cfg.routes, |_| 0);
    let limits = Limits::new(&cfg.rate_limit, router.routes());
    let ip: IpAddr = "198.51.100.7".parse().unwrap();
    let mut group = c.benchmark_group("rate limit");
    // Spread over many keys so no key exhausts its burst: this measures the allowed path.
    let users: Vec<String> = (0..4096).map(|i| i.to_string()).collect();
    let mut i = 0usize;
    group.bench_function("per user, allowed", |b| {
        b.iter(|| {
            i = (i + 1) % users.len();
            black_box(limits.check_user(1, black_box(&users[i])).is_ok())
        })
    });
    let ips: Vec<IpAddr> = (0..4096u32)
        .map(|n| IpAddr::from((0xc633_6400u32 + n).to_be_bytes()))
        .collect();
    group.bench_function("per ip, allowed", |b| {
        b.iter(|| {
            i = (i + 1) % ips.len();
            black_box(
                limits
                    .check_ip(0, black_box(identity::rate_key(ips[i])))
                    .is_ok(),
            )
        })
    });
    // The refusal path, as under a flood from one client.
    for _ in 0..1_000_001 {
        let _ = limits.check_ip(0, ip);
    }
    group.bench_function("per ip, refused", |b| {
        b.iter(|| black_box(limits.check_ip(0, black_box(ip)).is_err()))
    });
    group.finish();
}

fn route_and_headers(c: &mut Criterion) {
    let cfg = config("secret = \"benchmark-secret-0123456789abcdef0123456789\"");
    let router = Router::new(&cfg.routes, |_| 0);
    let rules = HeaderRules::new(&cfg.identity);
    let names = [
        "host",
        "user-agent",
        "accept",
        "accept-encoding",
        "authorization",
        "x-request-id",
        "cookie",
        "x_user_id",
    ];
    c.bench_function("route match + header rewrite", |b| {
        b.iter(|| {
            let path = check_target(black_box(b"/api/orders/123?expand=items")).unwrap();
            let host = check_host(black_box(b"gateway.example:8443")).unwrap();
            let route = router.find(Some(host), path, &http::Method::GET).unwrap().0;
            let forged = names
                .iter()
                .filter(|n| {
                    let n = black_box(n);
                    rules.is_forgeable(n)
                        || identity::is_set_by_us(n)
                        || identity::is_forwarding_header(n)
                })
                .count();
            let client = identity::client(
                black_box("203.0.113.9".parse().unwrap()),
                false,
                std::iter::empty(),
                &[],
            );
            black_box((route, forged, client))
        })
    });
}

/// Routing cost against the table's size: a request only the catch-all takes, among 3 routes
/// and among 10,000 (the performance issue: within 3% of each other).
fn routing_scale(c: &mut Criterion) {
    let route = |name: &str, prefix: &str| RouteConfig {
        auth: AuthMode::Public,
        ..RouteConfig::new(name, prefix, "app")
    };
    let mut group = c.benchmark_group("route a catch-all request");
    for n in [3usize, 10_000] {
        let mut routes = vec![route("root", "/")];
        routes.extend((1..n).map(|i| route(&format!("r{i}"), &format!("/service-{i}/v1"))));
        let router = Router::new(&routes, |_| 0);
        group.bench_function(format!("{n} routes"), |b| {
            b.iter(|| {
                let path = check_target(black_box(b"/static/js/app.min.js?v=3")).unwrap();
                black_box(router.find(None, path, &http::Method::GET).unwrap().0)
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    verification,
    revocation,
    rate_limit,
    route_and_headers,
    routing_scale
);
criterion_main!(benches);
