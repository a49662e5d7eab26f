//! What a large configuration and a full verified-token cache cost in memory: the resident set
//! before and after building a route table of 10,000 routes (with its rate limiters), and
//! before and after 100,000 distinct access tokens verified into the cache.
//!
//! `cargo run --release --example memory` (the numbers in BENCHMARKS.md).

use std::sync::Arc;

use authgate::config::{Config, RouteConfig};
use authgate::limits::Limits;
use authgate::routes::Router;
use authgate::tokens::jwt::Verifier;
use authgate::tokens::revocation::Revocations;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &str = "memory-benchmark-secret-0123456789abcdef";

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    let text = format!(
        "[jwt]\nsecret = \"{SECRET}\"\nverified_cache_entries = 200000\n\
         [[upstreams]]\nname = \"app\"\naddrs = [\"127.0.0.1:3000\"]\n\
         [[routes]]\nname = \"root\"\npath_prefix = \"/\"\nupstream = \"app\"\n"
    );
    let cfg = Config::parse(&text, std::path::Path::new("."), &|_| None).expect("config");
    let base = rss_mb();

    let routes: Vec<RouteConfig> = (0..10_000)
        .map(|i| RouteConfig::new(&format!("route-{i}"), &format!("/service-{i}/v1"), "app"))
        .collect();
    let router = Router::new(&routes, |_| 0);
    let limits = Limits::new(&cfg.rate_limit, router.routes());
    let after_routes = rss_mb();

    let verifier = Verifier::new(&cfg.jwt, Arc::new(Revocations::new()), Arc::default());
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    for i in 0..100_000u64 {
        let claims = serde_json::json!({
            "sub": (i % 5000).to_string(), "jti": format!("{i:032x}"), "type": "access",
            "email": format!("user{i}@example.com"), "nickname": "user", "provider": "kakao",
            "iat": now, "exp": now + 3600, "iss": "authgate", "aud": "authgate",
        });
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &key,
        )
        .expect("signs");
        verifier.verify(&token).expect("verifies");
    }
    let after_tokens = rss_mb();

    println!("| what | RSS MB | grown by MB |");
    println!("|---|---:|---:|");
    println!("| a minimal configuration | {base:.1} | |");
    println!(
        "| + 10,000 routes (table, prefix index, rate limiters) | {after_routes:.1} | {:.1} |",
        after_routes - base
    );
    println!(
        "| + 100,000 verified tokens cached | {after_tokens:.1} | {:.1} |",
        after_tokens - after_routes
    );
    std::hint::black_box((router, limits, verifier));
}
