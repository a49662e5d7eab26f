//! `Config::parse` as `authgate check` meets it: every problem at once, the documented defaults,
//! the environment's overrides, and the cross-checks.

use super::jwt::SEED_PLACEHOLDER_SECRET;
use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Config, Problems> {
    Config::parse(text, Path::new("."), &no_env)
}

fn minimal(extra: &str) -> String {
    format!(
        "[jwt]\nsecret = \"{SECRET}\"\n[[upstreams]]\nname = \"app\"\naddrs = [\"127.0.0.1:3000\"]\n\
         [[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\n{extra}"
    )
}

#[test]
fn minimal_file_gets_documented_defaults() {
    let c = parse(&minimal("")).unwrap();
    assert_eq!(c.server.listen, "0.0.0.0:8000".parse().unwrap());
    assert_eq!(c.server.admin_listen, "127.0.0.1:9091".parse().unwrap());
    assert_eq!(c.server.threads, 2);
    assert_eq!(c.server.grace_period_seconds, 10);
    assert!(c.server.trusted_proxies.is_empty());
    assert_eq!(
        (
            c.server.client_header_timeout_ms,
            c.server.keepalive_timeout_ms,
            c.server.max_connections,
            c.server.max_connections_per_ip
        ),
        (10_000, 60_000, 8192, 256)
    );
    assert_eq!(c.jwt.max_token_bytes, 8192);
    assert_eq!(c.jwt.algorithm, JwtAlgorithm::HS256);
    assert_eq!(
        (c.jwt.issuer.as_str(), c.jwt.audience.as_str()),
        ("authgate", "authgate")
    );
    assert_eq!(
        (
            c.jwt.access_ttl_minutes,
            c.jwt.refresh_ttl_days,
            c.jwt.leeway_seconds
        ),
        (30, 7, 30)
    );
    assert_eq!(c.identity.user_id, "X-User-Id");
    assert_eq!(c.identity.strip_prefix, "X-User-");
    assert_eq!(
        c.login_path(),
        "/api/auth/login",
        "no provider: the login page"
    );
    let u = &c.upstreams[0];
    assert_eq!(
        (
            u.connect_timeout_ms,
            u.read_timeout_ms,
            u.health_check_path.clone()
        ),
        (1000, 30000, None)
    );
    let r = &c.routes[0];
    assert_eq!(
        (
            r.auth,
            r.on_unauthenticated,
            r.host.clone(),
            r.case_sensitive
        ),
        (
            AuthMode::Required,
            OnUnauthenticated::Status401,
            None,
            false
        )
    );
}

#[test]
fn every_problem_is_reported_with_key_value_and_fix() {
    let text = r#"
        [server]
        listn = "0.0.0.0:1"
        threads = 0
        trusted_proxies = ["10.0.0.0/8", "nonsense"]
        [jwt]
        secret = "short"
        algorithm = "HS384"
        [[upstreams]]
        name = "app"
        addrs = ["not an address"]
        [[routes]]
        name = "a"
        path_prefix = "/api/../x"
        upstream = "missing"
        auth = "sometimes"
        [[routes]]
        name = "b"
        path_prefix = "/api"
        upstream = "app"
        [[routes]]
        name = "c"
        path_prefix = "/api"
        upstream = "app"
    "#;
    let problems = parse(text).err().unwrap().0;
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for expected in [
        "server.listn",
        "server.threads",
        "server.trusted_proxies",
        "jwt.algorithm",
        "upstreams[0].addrs",
        "routes[0].path_prefix",
        "routes[0].upstream",
        "routes[0].auth",
        "routes[2].path_prefix",
    ] {
        assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
    }
    let listn = problems.iter().find(|p| p.key == "server.listn").unwrap();
    assert!(listn.fix.contains("did you mean `listen`"), "{listn}");
    let threads = problems.iter().find(|p| p.key == "server.threads").unwrap();
    assert_eq!(threads.value, "0");
    assert!(threads.fix.contains("from 1 to 256"));
    let up = problems
        .iter()
        .find(|p| p.key == "routes[0].upstream")
        .unwrap();
    assert!(up.fix.contains("app"), "{up}");
}

#[test]
fn weak_or_placeholder_secrets_are_refused_and_never_printed() {
    for secret in ["", "short", PLACEHOLDER_SECRET, SEED_PLACEHOLDER_SECRET] {
        let text = minimal("").replace(SECRET, secret);
        let problems = parse(&text).err().unwrap().0;
        let p = problems
            .iter()
            .find(|p| p.key == "jwt.secret")
            .expect("secret problem");
        if !secret.is_empty() {
            assert!(!p.to_string().contains(secret), "secret leaked: {p}");
        }
    }
}

#[test]
fn seed_env_vars_override_the_file() {
    let env = |k: &str| match k {
        "JWT_SECRET_KEY" => Some("x".repeat(40)),
        "JWT_ACCESS_TOKEN_EXPIRE_MINUTES" => Some("5".into()),
        "JWT_REFRESH_TOKEN_EXPIRE_DAYS" => Some("14".into()),
        _ => None,
    };
    let text = minimal("").replace(SECRET, PLACEHOLDER_SECRET);
    let c = Config::parse(&text, Path::new("."), &env).unwrap();
    assert_eq!((c.jwt.access_ttl_minutes, c.jwt.refresh_ttl_days), (5, 14));
    let bad = |k: &str| (k == "JWT_ACCESS_TOKEN_EXPIRE_MINUTES").then(|| "soon".to_string());
    let problems = Config::parse(&minimal(""), Path::new("."), &bad)
        .err()
        .unwrap()
        .0;
    assert_eq!(problems[0].key, "JWT_ACCESS_TOKEN_EXPIRE_MINUTES (env)");
}

#[test]
fn kakao_is_off_without_a_client_id_and_the_seed_env_turns_it_on() {
    let c = parse(&minimal("")).unwrap();
    assert!(c.providers.is_empty());
    assert_eq!(c.store.url, "sqlite://authgate.db");
    assert!(c.auth.require_state);
    let env = |k: &str| match k {
        "KAKAO_CLIENT_ID" => Some("rest-key".to_string()),
        "KAKAO_CLIENT_SECRET" => Some("s3cret".to_string()),
        "KAKAO_REDIRECT_URI" => Some("https://app.example/api/auth/kakao/callback".to_string()),
        _ => None,
    };
    let c = Config::parse(&minimal(""), Path::new("."), &env).unwrap();
    let [ProviderConfig::Kakao(k)] = c.providers.as_slice() else {
        panic!("one Kakao provider: {:?}", c.providers.len());
    };
    assert_eq!(
        (k.client_id.as_str(), k.client_secret.as_str()),
        ("rest-key", "s3cret")
    );
    assert_eq!(
        k.scopes,
        ["profile_nickname", "profile_image", "account_email"]
    );
    assert_eq!(k.token_url, "https://kauth.kakao.com/oauth/token");
    assert!(k.pkce);
    let problems = parse(&minimal(
        "[kakao]\nclient_id = \"x\"\nredirect_uri = \"ftp://x\"\ntoken_url = \"not a url\"\npkce = \"yes\"\n\
         [store]\nurl = \"mysql://u:hunter2@db/x\"\n[auth]\nallowed_redirect_origins = [\"https://a.example/path\"]\n",
    ))
    .err()
    .unwrap()
    .0;
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for k in [
        "kakao.redirect_uri",
        "kakao.token_url",
        "kakao.pkce",
        "store.url",
        "auth.allowed_redirect_origins",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    assert!(
        !problems.iter().any(|p| p.to_string().contains("hunter2")),
        "password leaked"
    );
}

#[test]
fn rate_limits_and_logs_have_defaults_and_per_route_overrides() {
    let c = parse(&minimal("[routes.rate_limit]\nper_minute = 5\nburst = 2\n")).unwrap();
    assert_eq!(
        c.rate_limit.auth,
        Limit {
            per_minute: 10,
            burst: 10
        }
    );
    assert_eq!(
        c.rate_limit.user,
        Limit {
            per_minute: 600,
            burst: 100
        }
    );
    assert_eq!(
        c.rate_limit.ip,
        Limit {
            per_minute: 600,
            burst: 100
        }
    );
    assert_eq!(
        c.routes[0].rate_limit,
        Some(Limit {
            per_minute: 5,
            burst: 2
        })
    );
    assert_eq!(
        (c.log.format, c.log.level.as_str()),
        (LogFormat::Text, "info")
    );
    let problems = parse(&minimal(
        "[routes.rate_limit]\nper_min = 5\n[rate_limit]\nauth_burst = 0\n[log]\nformat = \"xml\"\nlevel = \"loud\"\n",
    ))
    .err()
    .unwrap()
    .0;
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for k in [
        "routes[0].rate_limit.per_min",
        "rate_limit.auth_burst",
        "log.format",
        "log.level",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
}

#[test]
fn duplicate_host_and_prefix_is_refused_but_different_hosts_are_fine() {
    let two = |h1: &str, h2: &str| {
        minimal(&format!(
            "[[routes]]\nname=\"x\"\npath_prefix=\"/x\"\nhost=\"{h1}\"\nupstream=\"app\"\n\
             [[routes]]\nname=\"y\"\npath_prefix=\"/x\"\nhost=\"{h2}\"\nupstream=\"app\"\n"
        ))
    };
    assert!(parse(&two("a.example", "b.example")).is_ok());
    assert!(parse(&two("a.example", "A.example")).is_err());
    assert!(parse(&two("a.example", "a.example.")).is_err());
}

#[test]
fn prefixes_equal_but_for_case_are_one_route_and_refused() {
    let two = |p1: &str, p2: &str, extra: &str| {
        minimal(&format!(
            "[[routes]]\nname=\"x\"\npath_prefix=\"{p1}\"\nupstream=\"app\"\n{extra}\n\
             [[routes]]\nname=\"y\"\npath_prefix=\"{p2}\"\nupstream=\"app\"\n"
        ))
    };
    let problems = parse(&two("/App", "/app", "")).err().unwrap().0;
    let p = problems
        .iter()
        .find(|p| p.key == "routes[2].path_prefix")
        .unwrap_or_else(|| panic!("{problems:?}"));
    assert!(p.fix.contains("but for case"), "{p}");
    assert!(p.fix.contains("routes[1]"), "{p}");
    // Opting one route out of case-insensitive matching does not make them two routes.
    assert!(parse(&two("/App", "/app", "case_sensitive = true")).is_err());
    assert!(parse(&two("/app", "/apps", "")).is_ok());
}

#[test]
fn prefixes_must_be_plain() {
    for ok in ["/", "/api", "/api/v1", "/a-b_c~d"] {
        assert!(is_valid_prefix(ok), "{ok}");
    }
    for bad in [
        "", "api", "/api/", "//", "/a//b", "/a/./b", "/a/..", "/a%2fb", "/a;b", "/a b", "/a\\b",
    ] {
        assert!(!is_valid_prefix(bad), "{bad}");
    }
}

#[test]
fn syntax_errors_are_one_clear_problem() {
    let problems = parse("[server\nlisten = 1").err().unwrap().0;
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key, "(syntax)");
}

#[test]
fn provider_endpoints_are_https_or_loopback() {
    for ok in [
        "https://accounts.google.com",
        "https://idp.example:8443/realms/x",
        "http://127.0.0.1:8080",
        "http://127.1.2.3/x",
        "http://[::1]:9000",
        "http://localhost:3000",
    ] {
        assert!(is_provider_url(ok), "{ok}");
    }
    for bad in [
        "http://accounts.google.com",
        "http://10.0.0.1",
        "http://localhost.evil.example",
        "javascript:alert(1)",
        "data:text/html,x",
        "https://",
        "ftp://127.0.0.1",
        "",
    ] {
        assert!(!is_provider_url(bad), "{bad}");
    }
}

#[test]
fn identity_headers_never_take_a_meaning_of_their_own_and_assertions_need_a_public_key() {
    for (identity, key) in [
        ("user_id = \"Set-Cookie\"", "identity.user_id"),
        ("email = \"content_length\"", "identity.email"),
        (
            "assertion_header = \"X-Forwarded-User\"",
            "identity.assertion_header",
        ),
        ("nickname = \"X-User-Id\"", "identity.nickname"),
    ] {
        let err = parse(&minimal(&format!("[identity]\n{identity}\n")))
            .err()
            .unwrap_or_else(|| panic!("{identity} accepted"));
        assert!(err.0.iter().any(|p| p.key == key), "{identity}: {err}");
    }
    let ed = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let eddsa = |extra: &str| {
        minimal(extra).replace(
            &format!("secret = \"{SECRET}\""),
            "algorithm = \"EdDSA\"\nprivate_key_file = \"ed25519.pem\"",
        )
    };
    let with = |text: String| Config::parse(&text, &ed, &no_env);
    assert!(with(eddsa("[identity]\nassertion = true\n")).is_ok());
    // An upstream named like the access tokens' audience would take them for assertions.
    let named = eddsa("[identity]\nassertion = true\n")
        .replace("name = \"app\"", "name = \"authgate\"")
        .replace("upstream = \"app\"", "upstream = \"authgate\"");
    let err = with(named).err().expect("refused");
    assert!(err.0.iter().any(|p| p.key == "upstreams[0].name"), "{err}");
    let err = parse(&minimal("[identity]\nassertion = true\n"))
        .err()
        .expect("HS256 refused");
    assert!(err.0.iter().any(|p| p.key == "identity.assertion"), "{err}");
    // Per route as well.
    let err = parse(&minimal("assertion = true\n"))
        .err()
        .expect("HS256 refused");
    assert!(err.0.iter().any(|p| p.key == "identity.assertion"), "{err}");
    assert!(parse(&minimal("[auth]\nforward_auth_secret = \"short\"\n")).is_err());
}

#[test]
fn a_previous_key_keeps_the_kid_it_had_when_it_was_current() {
    use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePublicKey};
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let eddsa = minimal("").replace(
        &format!("secret = \"{SECRET}\""),
        "algorithm = \"EdDSA\"\nprivate_key_file = \"ed25519.pem\"",
    );
    let was_current = Config::parse(&eddsa, &fixtures, &no_env).unwrap();
    let kid = was_current.jwt.keys.as_ref().unwrap().kid.clone();
    let dir = tempfile::tempdir().unwrap();
    let private = std::fs::read_to_string(fixtures.join("ed25519.pem")).unwrap();
    let public = ed25519_dalek::SigningKey::from_pkcs8_pem(&private)
        .unwrap()
        .verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    std::fs::write(dir.path().join("old.pub.pem"), public).unwrap();
    std::fs::copy(fixtures.join("ed25519.pem"), dir.path().join("old.pem")).unwrap();
    for previous in [
        "public_key_file = \"old.pub.pem\"",
        "private_key_file = \"old.pem\"",
    ] {
        let text = minimal("").replace(
            "[[upstreams]]",
            &format!("[[jwt.previous_keys]]\nalgorithm = \"EdDSA\"\n{previous}\n[[upstreams]]"),
        );
        let rotated = Config::parse(&text, dir.path(), &no_env).unwrap();
        assert_eq!(rotated.jwt.previous_keys[0].kid, kid, "{previous}");
        assert_eq!(
            rotated
                .jwt
                .verify_keys()
                .iter()
                .map(|k| k.algorithm)
                .collect::<Vec<_>>(),
            vec![JwtAlgorithm::HS256, JwtAlgorithm::EdDSA],
            "each key keeps its own algorithm"
        );
    }
    // The current key listed as a previous one is a mistake.
    let text = eddsa.replace(
        "[[upstreams]]",
        "[[jwt.previous_keys]]\nalgorithm = \"EdDSA\"\nprivate_key_file = \"ed25519.pem\"\n[[upstreams]]",
    );
    assert!(Config::parse(&text, &fixtures, &no_env).is_err());
    let text = minimal("").replace(
        "[[upstreams]]",
        "[[jwt.previous_keys]]\nalgorithm = \"HS256\"\nsecret_env = \"UNSET_VAR\"\n[[upstreams]]",
    );
    assert!(Config::parse(&text, &fixtures, &no_env).is_err());
}

#[test]
fn a_misspelt_secret_is_never_printed() {
    let err = parse(&minimal("[kakao]\nclient_secrte = \"s3cr3t-value\"\n"))
        .err()
        .expect("unknown key");
    let text = err.to_string();
    assert!(
        text.contains("client_secrte") && !text.contains("s3cr3t-value"),
        "{text}"
    );
}

#[test]
fn data_dir_holds_the_sqlite_file_and_the_spool_whatever_the_config_says_relatively() {
    let base = Path::new("/etc/authgate");
    // No data_dir: SQLite relative to the working directory, the spool beside the config.
    let c = Config::parse(&minimal(""), base, &no_env).unwrap();
    assert_eq!(c.store.url, "sqlite://authgate.db");
    assert_eq!(c.store.spool_file, base.join("authgate-spool.jsonl"));
    assert_eq!(c.store.data_dir, None);
    // The image's environment moves both into the volume.
    let env = |k: &str| (k == "AUTHGATE_DATA_DIR").then(|| "/var/lib/authgate".to_string());
    let c = Config::parse(&minimal(""), base, &env).unwrap();
    assert_eq!(c.store.url, "sqlite:///var/lib/authgate/authgate.db");
    assert_eq!(
        c.store.spool_file,
        Path::new("/var/lib/authgate/authgate-spool.jsonl")
    );
    for (url, placed) in [
        ("sqlite:x.db?mode=rwc", "sqlite:///data/x.db?mode=rwc"),
        ("sqlite:///abs/x.db", "sqlite:///abs/x.db"),
        ("sqlite::memory:", "sqlite::memory:"),
        ("postgres://u@db/x", "postgres://u@db/x"),
    ] {
        let text = minimal(&format!("[store]\nurl = \"{url}\"\ndata_dir = \"/data\"\nspool_file = \"/spool/s.jsonl\"\n"));
        let c = Config::parse(&text, base, &no_env).unwrap();
        assert_eq!(c.store.url, placed, "{url}");
        assert_eq!(c.store.spool_file, Path::new("/spool/s.jsonl"));
    }
    // The URL from the environment (a PostgreSQL password kept out of the file).
    let env = |k: &str| (k == "AUTHGATE_STORE_URL").then(|| "postgres://u:p@db/x".to_string());
    assert_eq!(
        Config::parse(&minimal(""), base, &env).unwrap().store.url,
        "postgres://u:p@db/x"
    );
}
