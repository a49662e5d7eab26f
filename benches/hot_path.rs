//! Micro-benchmarks of the per-request work: target check + routing, forged-header detection,
//! and HS256 verification including the revocation lookup. Run with `cargo bench`.

use std::hint::black_box;
use std::sync::Arc;

use authgate::config::Config;
use authgate::identity::HeaderRules;
use authgate::routes::{check_target, Router};
use authgate::tokens::jwt::{Issuer, Subject, Verifier};
use authgate::tokens::revocation::Revocations;
use criterion::{criterion_group, criterion_main, Criterion};

const CONFIG: &str = r#"
[jwt]
secret = "benchmark-secret-0123456789abcdef0123456789"
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
"#;

fn hot_path(c: &mut Criterion) {
    let config = Config::parse(CONFIG, std::path::Path::new("."), &|_| None).expect("bench config");
    let router = Router::new(&config.routes, |_| 0);
    let rules = HeaderRules::new(&config.identity);
    let revocations = Arc::new(Revocations::new());
    for i in 0..10_000 {
        revocations.revoke(&format!("revoked-{i}"), i64::MAX / 2);
    }
    let verifier = Verifier::new(&config.jwt, revocations);
    let who = Subject {
        user_id: 42,
        username: "kakao_42".into(),
        email: Some("user42@example.com".into()),
        nickname: Some("Forty Two".into()),
        provider: "kakao".into(),
    };
    let (token, _) = Issuer::new(&config.jwt).issue_access(&who).unwrap();

    c.bench_function("check_target + route", |b| {
        b.iter(|| {
            let path = check_target(black_box(b"/api/orders/123?expand=items")).unwrap();
            black_box(
                router
                    .find(Some("gateway.example"), path, &http::Method::GET)
                    .unwrap()
                    .0,
            )
        })
    });
    let names = [
        "host",
        "user-agent",
        "accept",
        "authorization",
        "x-request-id",
        "cookie",
        "x_user_id",
    ];
    c.bench_function("forged header scan (7 headers)", |b| {
        b.iter(|| {
            names
                .iter()
                .filter(|n| rules.is_forgeable(black_box(n)))
                .count()
        })
    });
    c.bench_function("verify HS256 + revocation lookup", |b| {
        b.iter(|| black_box(verifier.verify(black_box(&token)).unwrap().exp))
    });
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
