//! Issuing and verifying: every claim rule, algorithm pinning, keys by `kid` across a rotation,
//! the verified-token cache, revocations and cut-offs.

use super::*;
use crate::config::{Config, JwtAlgorithm};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

fn verifier() -> Verifier {
    let text = format!(
        "[jwt]\nsecret = \"{SECRET}\"\n[[upstreams]]\nname=\"a\"\naddrs=[\"127.0.0.1:1\"]\n\
         [[routes]]\nname=\"r\"\npath_prefix=\"/\"\nupstream=\"a\"\n"
    );
    let cfg = Config::parse(&text, std::path::Path::new("."), &|_| None).unwrap();
    assert_eq!(cfg.jwt.algorithm, JwtAlgorithm::HS256);
    Verifier::new(&cfg.jwt, Arc::new(Revocations::new()), Arc::default())
}

use crate::tokens::now;

fn claims() -> serde_json::Value {
    json!({"sub": "7", "jti": "j1", "iat": now(), "exp": now() + 600, "iss": "authgate",
           "aud": "authgate", "type": "access", "email": "a@b.c", "nickname": "n", "provider": "kakao"})
}

fn sign(alg: jsonwebtoken::Algorithm, c: &serde_json::Value) -> String {
    encode(
        &Header::new(alg),
        c,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[test]
fn a_good_token_yields_its_claims() {
    let v = verifier();
    let c = v
        .verify(&sign(jsonwebtoken::Algorithm::HS256, &claims()))
        .unwrap();
    assert_eq!(
        (c.sub.as_str(), c.email.as_deref(), c.provider.as_deref()),
        ("7", Some("a@b.c"), Some("kakao"))
    );
    let h = &c.header_values;
    assert_eq!(h.sub, "7");
    assert_eq!(h.email.as_ref().unwrap(), "a@b.c");
    assert_eq!(h.nickname.as_ref().unwrap(), "n");
    assert_eq!(h.provider.as_ref().unwrap(), "kakao");
}

#[test]
fn claims_that_cannot_be_header_values() {
    let v = verifier();
    let hs = jsonwebtoken::Algorithm::HS256;
    let mut c = claims();
    c["nickname"] = json!("two\r\nX-User-Id: 1");
    let verified = v.verify(&sign(hs, &c)).unwrap();
    // Left out, and the other identity headers still go.
    assert_eq!(verified.header_values.nickname, None);
    assert_eq!(verified.header_values.email.as_ref().unwrap(), "a@b.c");
    c["sub"] = json!("7\n");
    assert!(matches!(
        v.verify(&sign(hs, &c)),
        Err(TokenError::Invalid(_))
    ));
}

#[test]
fn every_claim_rule_is_enforced() {
    let v = verifier();
    let hs = jsonwebtoken::Algorithm::HS256;
    let with = |k: &str, val: serde_json::Value| {
        let mut c = claims();
        c[k] = val;
        c
    };
    let without = |k: &str| {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    assert_eq!(
        v.verify(&sign(hs, &with("exp", json!(now() - 120)))),
        Err(TokenError::Expired)
    );
    // Within leeway is still fine.
    assert!(v.verify(&sign(hs, &with("exp", json!(now() - 5)))).is_ok());
    for bad in [
        with("nbf", json!(now() + 600)),
        with("iss", json!("someone-else")),
        with("aud", json!("other-app")),
        with("type", json!("refresh")),
        without("jti"),
        without("sub"),
        without("iat"),
        without("exp"),
        without("iss"),
        without("aud"),
        without("type"),
    ] {
        assert!(
            matches!(v.verify(&sign(hs, &bad)), Err(TokenError::Invalid(_))),
            "{bad}"
        );
    }
    // Another HMAC size with the same secret: the header never chooses the algorithm.
    assert!(matches!(
        v.verify(&sign(jsonwebtoken::Algorithm::HS384, &claims())),
        Err(TokenError::Invalid(_))
    ));
    // alg "none", unsigned.
    use base64::Engine;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims())
    );
    assert!(matches!(v.verify(&none), Err(TokenError::Invalid(_))));
    // Tampered payload.
    let good = sign(hs, &claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged = b64(&with("sub", json!("1")));
    parts[1] = &forged;
    assert!(matches!(
        v.verify(&parts.join(".")),
        Err(TokenError::Invalid(_))
    ));
}

#[test]
fn issued_tokens_verify() {
    let text = format!(
        "[jwt]\nsecret = \"{SECRET}\"\n[[upstreams]]\nname=\"a\"\naddrs=[\"127.0.0.1:1\"]\n\
         [[routes]]\nname=\"r\"\npath_prefix=\"/\"\nupstream=\"a\"\n"
    );
    let cfg = Config::parse(&text, std::path::Path::new("."), &|_| None).unwrap();
    let who = Subject {
        user_id: 42,
        username: "kakao_42".into(),
        email: None,
        nickname: Some("n".into()),
        provider: "kakao".into(),
    };
    let (token, exp) = Issuer::new(&cfg.jwt)
        .issue_access(&who, jsonwebtoken::get_current_timestamp() as i64)
        .unwrap();
    let c = verifier().verify(&token).unwrap();
    assert_eq!(
        (
            c.sub.as_str(),
            c.exp,
            c.email.clone(),
            c.nickname.as_deref()
        ),
        ("42", exp, None, Some("n"))
    );
}

const OLD: &str = "an-older-secret-0123456789abcdef-rotated";

fn rotation_config(previous: bool) -> Config {
    let prev = if previous {
        format!("[[jwt.previous_keys]]\nalgorithm = \"HS256\"\nsecret = \"{OLD}\"\n")
    } else {
        String::new()
    };
    let text = format!(
        "[jwt]\nsecret = \"{SECRET}\"\n{prev}[[upstreams]]\nname=\"a\"\naddrs=[\"127.0.0.1:1\"]\n\
         [[routes]]\nname=\"r\"\npath_prefix=\"/\"\nupstream=\"a\"\n"
    );
    Config::parse(&text, std::path::Path::new("."), &|_| None).unwrap()
}

fn sign_with(secret: &str, kid: Option<&str>, c: &serde_json::Value) -> String {
    let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
    h.kid = kid.map(str::to_string);
    encode(&h, c, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

#[test]
fn tokens_verify_with_the_key_their_kid_names_until_it_leaves_the_set() {
    let cfg = rotation_config(true);
    let old_kid = cfg.jwt.previous_keys[0].kid.clone();
    let current_kid = cfg.jwt.keys.as_ref().unwrap().kid.clone();
    assert_ne!(old_kid, current_kid);
    let v = Verifier::new(&cfg.jwt, Arc::new(Revocations::new()), Arc::default());
    assert_eq!(v.kids(), vec![current_kid.clone(), old_kid.clone()]);
    let old = sign_with(OLD, Some(&old_kid), &claims());
    assert!(v.verify(&old).is_ok(), "signed before the rotation");
    // Without a kid: the current key only.
    assert!(v.verify(&sign_with(SECRET, None, &claims())).is_ok());
    assert!(v.verify(&sign_with(OLD, None, &claims())).is_err());
    // A kid names the key; the signature must be that key's.
    assert!(v
        .verify(&sign_with(OLD, Some(&current_kid), &claims()))
        .is_err());
    assert!(v
        .verify(&sign_with(SECRET, Some(&old_kid), &claims()))
        .is_err());
    assert!(matches!(
        v.verify(&sign_with(OLD, Some("unknown"), &claims())),
        Err(TokenError::Invalid(_))
    ));
    // Issued tokens carry the current kid.
    let who = Subject {
        user_id: 7,
        username: "kakao_7".into(),
        email: None,
        nickname: None,
        provider: "kakao".into(),
    };
    let (issued, _) = Issuer::new(&cfg.jwt).issue_access(&who, now()).unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&issued).unwrap().kid,
        Some(current_kid.clone())
    );
    // The previous key dropped by a reload: its token is refused, though it was cached.
    v.set_keys(&rotation_config(false).jwt);
    assert!(matches!(v.verify(&old), Err(TokenError::Invalid(_))));
    assert!(v.verify(&issued).is_ok(), "the current key's stay");
}

#[test]
fn a_token_without_a_kid_follows_the_current_key_and_new_rules_empty_the_cache() {
    let v = Verifier::new(
        &rotation_config(false).jwt,
        Arc::new(Revocations::new()),
        Arc::default(),
    );
    let kidless = sign_with(SECRET, None, &claims());
    assert!(v.verify(&kidless).is_ok(), "cached now");
    // SECRET becomes a previous key: a token naming no key means the current one, which
    // did not sign it; the cache does not keep it alive.
    let text = format!(
        "[jwt]\nsecret = \"{OLD}\"\n[[jwt.previous_keys]]\nalgorithm = \"HS256\"\nsecret = \"{SECRET}\"\n\
         [[upstreams]]\nname=\"a\"\naddrs=[\"127.0.0.1:1\"]\n[[routes]]\nname=\"r\"\npath_prefix=\"/\"\nupstream=\"a\"\n"
    );
    let rotated = Config::parse(&text, std::path::Path::new("."), &|_| None).unwrap();
    v.set_keys(&rotated.jwt);
    assert!(matches!(v.verify(&kidless), Err(TokenError::Invalid(_))));
    // Another audience: tokens cached under the old one are checked again, and refused.
    let v = Verifier::new(
        &rotation_config(false).jwt,
        Arc::new(Revocations::new()),
        Arc::default(),
    );
    let named = sign_with(
        SECRET,
        Some(&rotation_config(false).jwt.keys.unwrap().kid),
        &claims(),
    );
    assert!(v.verify(&named).is_ok());
    let mut other = rotation_config(false);
    other.jwt.audience = "another".into();
    v.set_keys(&other.jwt);
    assert!(matches!(v.verify(&named), Err(TokenError::Invalid(_))));
}

#[test]
fn a_token_issued_in_the_future_is_refused() {
    let v = verifier();
    let mut ahead = claims();
    ahead["iat"] = json!(now() + 3600);
    assert!(matches!(
        v.verify(&sign(jsonwebtoken::Algorithm::HS256, &ahead)),
        Err(TokenError::Invalid(_))
    ));
}

#[test]
fn a_cut_off_refuses_the_users_older_tokens_cached_or_not_and_nobody_else() {
    let v = verifier();
    let mut old = claims();
    old["iat"] = json!(now() - 5);
    let old = sign(jsonwebtoken::Algorithm::HS256, &old);
    let mut other = claims();
    other["sub"] = json!("8");
    other["jti"] = json!("j8");
    let other = sign(jsonwebtoken::Algorithm::HS256, &other);
    assert!(v.verify(&old).is_ok(), "cached now");
    v.cutoffs.cut(7, now() - 1);
    assert_eq!(v.verify(&old), Err(TokenError::CutOff(7)), "a cache hit");
    let mut fresh = claims();
    fresh["iat"] = json!(now() - 4);
    fresh["jti"] = json!("j2");
    let fresh = sign(jsonwebtoken::Algorithm::HS256, &fresh);
    assert_eq!(v.verify(&fresh), Err(TokenError::CutOff(7)), "a miss");
    assert_eq!(
        v.verify_even_expired(&old),
        Err(TokenError::CutOff(7)),
        "logout too"
    );
    assert!(v.verify(&other).is_ok(), "another user");
    let mut later = claims();
    later["iat"] = json!(now() + 1);
    later["jti"] = json!("j3");
    assert!(v
        .verify(&sign(jsonwebtoken::Algorithm::HS256, &later))
        .is_ok());
}

#[test]
fn cached_tokens_still_expire_and_can_be_revoked() {
    let text = format!(
        "[jwt]\nsecret = \"{SECRET}\"\nleeway_seconds = 0\n[[upstreams]]\nname=\"a\"\naddrs=[\"127.0.0.1:1\"]\n\
         [[routes]]\nname=\"r\"\npath_prefix=\"/\"\nupstream=\"a\"\n"
    );
    let cfg = Config::parse(&text, std::path::Path::new("."), &|_| None).unwrap();
    let v = Verifier::new(&cfg.jwt, Arc::new(Revocations::new()), Arc::default());
    let mut short = claims();
    short["exp"] = json!(now() + 1);
    short["jti"] = json!("short");
    let short = sign(jsonwebtoken::Algorithm::HS256, &short);
    let long = sign(jsonwebtoken::Algorithm::HS256, &claims());
    assert!(v.verify(&short).is_ok() && v.verify(&long).is_ok());
    assert!(
        v.verified.as_ref().unwrap().contains_key(long.as_str()),
        "verified tokens are cached"
    );
    // A cached token is still checked for revocation...
    v.revocations.revoke("j1", now() + 600);
    assert_eq!(v.verify(&long), Err(TokenError::Revoked("j1".into())));
    // ...and for expiry.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(v.verify(&short), Err(TokenError::Expired));
    // A token that failed is never cached.
    let mut bad = long.clone();
    bad.push('x');
    assert!(v.verify(&bad).is_err());
    assert!(!v.verified.as_ref().unwrap().contains_key(bad.as_str()));
}

#[test]
fn tokens_over_the_size_limit_are_refused_unread() {
    let v = verifier();
    assert_eq!(v.max_token_bytes, 8192);
    let mut big = claims();
    big["pad"] = json!("x".repeat(9000));
    let big = sign(jsonwebtoken::Algorithm::HS256, &big);
    // Correctly signed, but too long to be one of ours: refused before any decoding.
    assert!(
        matches!(v.cached(&big), Some(Err(TokenError::Invalid(m))) if m.contains("max_token_bytes"))
    );
    assert!(v.verify(&big).is_err());
    let fine = sign(jsonwebtoken::Algorithm::HS256, &claims());
    assert!(
        v.cached(&fine).is_none(),
        "not yet verified: the signature decides"
    );
    assert!(v.verify(&fine).is_ok());
    assert!(matches!(v.cached(&fine), Some(Ok(_))));
}

#[test]
fn logout_accepts_an_expired_token_only_when_it_is_ours_and_not_revoked() {
    let v = verifier();
    let mut old = claims();
    old["exp"] = json!(now() - 3600);
    old["iat"] = json!(now() - 7200);
    old["jti"] = json!("old-one");
    let expired = sign(jsonwebtoken::Algorithm::HS256, &old);
    assert_eq!(v.verify(&expired).unwrap_err(), TokenError::Expired);
    assert_eq!(v.verify_even_expired(&expired).unwrap().jti, "old-one");
    let forged = encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &old,
        &EncodingKey::from_secret(b"another-secret-another-secret-000"),
    )
    .unwrap();
    assert!(matches!(
        v.verify_even_expired(&forged),
        Err(TokenError::Invalid(_))
    ));
    let mut refresh_type = old.clone();
    refresh_type["type"] = json!("refresh");
    assert!(v
        .verify_even_expired(&sign(jsonwebtoken::Algorithm::HS256, &refresh_type))
        .is_err());
    v.revocations.revoke("old-one", now() + 60);
    assert!(matches!(
        v.verify_even_expired(&expired),
        Err(TokenError::Revoked(_))
    ));
}

#[test]
fn revoked_tokens_are_refused() {
    let v = verifier();
    v.revocations.revoke("j1", now() + 600);
    assert_eq!(
        v.verify(&sign(jsonwebtoken::Algorithm::HS256, &claims())),
        Err(TokenError::Revoked("j1".into()))
    );
}

#[test]
fn bearer_extraction() {
    let one = |v: &'static str| Verifier::bearer([v.as_bytes()].into_iter());
    assert_eq!(Verifier::bearer(std::iter::empty()), Ok(None));
    assert_eq!(one("Bearer abc"), Ok(Some("abc")));
    assert_eq!(one("bearer abc"), Ok(Some("abc")));
    assert_eq!(one("Basic abc"), Err(TokenError::NotBearer));
    assert_eq!(one("Bearer"), Err(TokenError::NotBearer));
    assert_eq!(one("Bearer a b"), Err(TokenError::NotBearer));
    assert_eq!(
        Verifier::bearer([b"Bearer a".as_slice(), b"Bearer a"].into_iter()),
        Err(TokenError::Multiple)
    );
}
