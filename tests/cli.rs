//! The command line as an operator meets it: `check`, refusals at start-up, `--version`, and
//! RS256 / EdDSA keys from files.

mod support;

use std::process::Command;

use support::*;

fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "rs256-2048.pem",
        "rs256-1024-too-small.pem",
        "ed25519.pem",
        "rs256-2048.pub.pem",
    ] {
        std::fs::copy(fixture(f), dir.path().join(f)).unwrap();
    }
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(bin())
        .args(["check", "-c"])
        .arg(&cfg)
        .env_remove("JWT_SECRET_KEY")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_lists_every_problem_with_key_value_and_fix() {
    let (code, out) = check(
        r#"
[server]
listen = "0.0.0.0:99999"
threads = "two"
colour = "blue"
[jwt]
secret = "short"
[[upstreams]]
name = "app"
addrs = ["127.0.0.1:3000"]
connect_timeout_ms = -5
[[routes]]
name = "api"
path_prefix = "/api/"
upstream = "ghost"
auth = "maybe"
[[routes]]
name = "api2"
path_prefix = "/api/"
upstream = "app"
on_unauthenticated = "login"
"#,
    );
    assert_eq!(code, 2, "{out}");
    for expected in [
        "server.listen = \"0.0.0.0:99999\"",
        "server.threads = \"two\"",
        "server.colour = \"blue\": unknown key",
        "jwt.secret = (5 bytes): HS256 needs at least 32 bytes",
        "upstreams[0].connect_timeout_ms = -5",
        "routes[0].path_prefix = \"/api/\"",
        "routes[0].upstream = \"ghost\": name one of the [[upstreams]]: app",
        "routes[0].auth = \"maybe\": use \"required\", \"public\" or \"optional\"",
        "routes[1].path_prefix = \"/api/\" (host \"\"): routes[0] already has this host + path_prefix",
        "routes[1].on_unauthenticated = \"login\"",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(out.contains("11 configuration problem(s)"), "{out}");
}

#[test]
fn check_validates_every_provider() {
    let (code, out) = check(&format!(
        r#"
[jwt]
secret = "{SECRET}"
[auth]
require_state = false
[kakao]
client_id = "k"
redirect_uri = "https://app.example/api/auth/kakao/callback"
oidc = true
[[providers]]
id = "google"
kind = "oidc"
client_id = "g"
client_secret = "s"
redirect_uri = "https://app.example/api/auth/google/callback"
scopes = ["email"]
[[providers]]
id = "google"
kind = "oidc"
issuer = "https://accounts.google.com"
client_id = "g2"
client_secret_env = "AUTHGATE_TEST_UNSET_SECRET"
redirect_uri = "https://app.example/api/auth/google/callback"
[[providers]]
id = "Naver_1"
kind = "naver"
client_id = "n"
redirect_uri = "ftp://x"
[[providers]]
id = "kakao-biz"
kind = "kakao"
client_id = "k2"
redirect_uri = "https://app.example/api/auth/kakao-biz/callback"
[[providers]]
id = "x"
kind = "saml"
[[providers]]
id = "corp"
kind = "oidc"
issuer = "http://idp.example"
client_id = "c"
redirect_uri = "https://app.example/api/auth/corp/callback"
pkce = false
[[upstreams]]
name = "app"
addrs = ["127.0.0.1:3000"]
[[routes]]
name = "all"
path_prefix = "/"
upstream = "app"
"#
    ));
    assert_eq!(code, 2, "{out}");
    for expected in [
        "providers[0].issuer = \"\": set the issuer URL",
        "providers[0].scopes = [\"email\"]: OpenID Connect needs the \"openid\" scope",
        "providers[1].id = \"google\": providers[0] already has this id",
        "providers[1].client_secret_env = \"AUTHGATE_TEST_UNSET_SECRET\": the environment variable",
        "providers[2].id = \"Naver_1\": use 1 to 32 of a-z, 0-9 and '-'",
        "providers[2].redirect_uri = \"ftp://x\"",
        "providers[2].client_secret = \"\": Naver needs the client secret",
        "providers[3].kind = \"kakao\": [kakao] already declares Kakao",
        "providers[4].kind = \"saml\": use \"oidc\"",
        "kakao.oidc = true with auth.require_state = false",
        "providers[5].issuer = \"http://idp.example\"",
        "providers[5].pkce = false: a client without a secret needs PKCE",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(out.contains("12 configuration problem(s)"), "{out}");
}

#[test]
fn check_explains_prefixes_that_differ_only_in_case() {
    let (code, out) = check(
        r#"
[jwt]
secret = "0123456789abcdef0123456789abcdef"
[[upstreams]]
name = "app"
addrs = ["127.0.0.1:3000"]
[[routes]]
name = "admin"
path_prefix = "/Admin"
upstream = "app"
[[routes]]
name = "admin-lower"
path_prefix = "/admin"
upstream = "app"
auth = "public"
"#,
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(
            "routes[1].path_prefix = \"/admin\" (host \"\"): routes[0] has \"/Admin\", the same prefix but for case"
        ),
        "{out}"
    );
    assert!(out.contains("ignoring ASCII case"), "{out}");
}

#[test]
fn check_accepts_a_valid_file_and_the_shipped_config_with_a_secret_from_the_environment() {
    let (code, out) = check(&format!(
        "[jwt]\nsecret = \"{SECRET}\"\n[[upstreams]]\nname = \"app\"\naddrs = [\"127.0.0.1:3000\"]\n\
         [[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\n"
    ));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK"));

    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let without = Command::new(bin())
        .args(["check", "-c"])
        .arg(&shipped)
        .env_remove("JWT_SECRET_KEY")
        .output()
        .unwrap();
    assert_eq!(
        without.status.code(),
        Some(2),
        "the placeholder secret must be refused"
    );
    assert!(
        String::from_utf8_lossy(&without.stdout).contains("jwt.secret = (the shipped placeholder)")
    );
    let with = Command::new(bin())
        .args(["check", "-c"])
        .arg(&shipped)
        .env(
            "JWT_SECRET_KEY",
            "a-real-secret-from-the-environment-0123456789",
        )
        .output()
        .unwrap();
    assert_eq!(
        with.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&with.stdout)
    );
}

#[test]
fn run_refuses_to_start_with_the_placeholder_secret() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let out = Command::new(bin())
        .args(["run", "-c"])
        .arg(&shipped)
        .env_remove("JWT_SECRET_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to start"));
}

#[test]
fn small_rsa_keys_and_missing_key_files_are_refused() {
    let rsa = |file: &str| {
        format!(
            "[jwt]\nalgorithm = \"RS256\"\nprivate_key_file = \"{file}\"\n[[upstreams]]\nname = \"app\"\n\
             addrs = [\"127.0.0.1:3000\"]\n[[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\n"
        )
    };
    let (code, out) = check(&rsa("rs256-1024-too-small.pem"));
    assert_eq!(code, 2);
    assert!(
        out.contains("1024-bit RSA") && out.contains("at least 2048 bits"),
        "{out}"
    );
    let (code, out) = check(&rsa("nope.pem"));
    assert_eq!(code, 2);
    assert!(
        out.contains("jwt.private_key_file = \"nope.pem\": cannot read"),
        "{out}"
    );
    let (code, out) = check(&rsa("ed25519.pem"));
    assert_eq!(code, 2, "an Ed25519 key is not an RSA key: {out}");
    assert_eq!(check(&rsa("rs256-2048.pem")).0, 0);
    let with_public = |public: &str| {
        rsa("rs256-2048.pem").replace(
            "[[upstreams]]",
            &format!("public_key_file = \"{public}\"\n[[upstreams]]"),
        )
    };
    assert_eq!(check(&with_public("rs256-2048.pub.pem")).0, 0);
    let (code, out) = check(&with_public("ed25519.pem"));
    assert_eq!(code, 2);
    assert!(
        out.contains("jwt.public_key_file = \"ed25519.pem\": not a RSA public PEM key"),
        "{out}"
    );
}

#[test]
fn version_is_printed() {
    let out = Command::new(bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("authgate {}", env!("CARGO_PKG_VERSION"))
    );
}

fn pem_gateway_config(alg: &str, key: &str, up: &Upstream) -> String {
    format!(
        "[jwt]\nalgorithm = \"{alg}\"\nprivate_key_file = \"{}\"\n[[upstreams]]\nname = \"app\"\naddrs = [\"{}\"]\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"app\"\n",
        fixture(key).display(),
        up.addr
    )
}

#[tokio::test]
async fn rs256_gateway_accepts_its_key_and_refuses_algorithm_confusion() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&pem_gateway_config("RS256", "rs256-2048.pem", &up)).await;
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(fixture("rs256-2048.pem")).unwrap())
            .unwrap();
    let good = sign(jsonwebtoken::Algorithm::RS256, &claims(), &key);
    let r = gw.get("/api/x", &[("Authorization", &bearer(&good))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().one("X-User-Id"), Some("42"));
    // The classic confusion: an HS256 token whose HMAC key is the public key PEM.
    let public_pem = std::fs::read(fixture("rs256-2048.pub.pem")).unwrap();
    let confused = sign(
        jsonwebtoken::Algorithm::HS256,
        &claims(),
        &jsonwebtoken::EncodingKey::from_secret(&public_pem),
    );
    gw.get("/api/x", &[("Authorization", &bearer(&confused))])
        .await
        .assert_gateway_error(401, "INVALID_TOKEN");
    gw.get("/api/x", &[("Authorization", &bearer(&hs256(&claims())))])
        .await
        .assert_gateway_error(401, "INVALID_TOKEN");
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn eddsa_gateway_verifies_ed25519_tokens() {
    let up = Upstream::start("app").await;
    let gw = Gateway::start(&pem_gateway_config("EdDSA", "ed25519.pem", &up)).await;
    let key =
        jsonwebtoken::EncodingKey::from_ed_pem(&std::fs::read(fixture("ed25519.pem")).unwrap())
            .unwrap();
    let good = sign(jsonwebtoken::Algorithm::EdDSA, &claims(), &key);
    assert_eq!(
        gw.get("/api/x", &[("Authorization", &bearer(&good))])
            .await
            .status,
        200
    );
    gw.get("/api/x", &[("Authorization", &bearer(&hs256(&claims())))])
        .await
        .assert_gateway_error(401, "INVALID_TOKEN");
}
