//! A fake OpenID Connect issuer for `authgate dev` and the tests, behaving as the spec says an
//! issuer does, on a loopback port: discovery, a JWKS (RS256 or ES256 keys, rotated on demand),
//! an authorize page of test users, single-use codes bound to the redirect URI, the PKCE
//! challenge and the `nonce`, a token endpoint that authenticates the client (in the body or with
//! HTTP Basic, as its discovery says) and returns a signed `id_token`, and user info. Faults:
//! the usual ones (500, an HTML body, a hang), and `id_token`s a relying party must refuse
//! (forged, expired, another audience or issuer, the wrong nonce, `alg: none`, HMAC keyed with
//! the public key, an unknown `kid`, several audiences without `azp`, none at all).
//!
//! Its signing keys are in `fake_keys/`: public test keys, two of each kind so it can rotate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sha2::Digest;
use tokio::net::TcpListener;

use super::fakes::{self, back_to_client, random_token, Fake, Incoming};
use super::fakes::Fault;
use crate::localhttp::{self, html_escape, Reply};

const RSA_KEYS: [&str; 2] = [
    include_str!("fake_keys/rsa-a.pem"),
    include_str!("fake_keys/rsa-b.pem"),
];
const EC_KEYS: [&str; 2] = [
    include_str!("fake_keys/ec-a.pem"),
    include_str!("fake_keys/ec-b.pem"),
];

/// A test account on the fake issuer.
#[derive(Debug, Clone)]
pub struct FakeOidcUser {
    pub sub: String,
    pub name: String,
    pub email: String,
    pub email_verified: bool,
    /// The `id_token` carries only `sub`: name and email come from user info.
    pub sparse_id_token: bool,
}

pub fn default_oidc_users() -> Vec<FakeOidcUser> {
    let user = |sub: &str, name: &str, email: &str, verified: bool, sparse: bool| FakeOidcUser {
        sub: sub.into(),
        name: name.into(),
        email: email.into(),
        email_verified: verified,
        sparse_id_token: sparse,
    };
    vec![
        user("248289761001", "Jane Doe", "jane@example.test", true, false),
        user(
            "248289761002",
            "John Roe",
            "john@example.test",
            false,
            false,
        ),
        user("248289761003", "Sparse Sam", "sam@example.test", true, true),
    ]
}

/// An `id_token` a relying party must refuse, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenFault {
    None,
    /// Signed, then one byte of the signature changed.
    Forged,
    Expired,
    WrongAudience,
    WrongIssuer,
    WrongNonce,
    /// `alg: none` and no signature.
    AlgNone,
    /// HS256 keyed with the issuer's public RSA key (algorithm confusion).
    HmacWithPublicKey,
    /// Signed with a key the JWKS never publishes.
    UnknownKid,
    /// `aud` lists another client too, and there is no `azp`.
    SeveralAudiencesNoAzp,
    /// The token response has no `id_token`.
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    RS256,
    ES256,
}

pub struct FakeOidcConfig {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    pub users: Vec<FakeOidcUser>,
    pub alg: SigningAlg,
    /// Discovery lists `client_secret_post`; otherwise only HTTP Basic is accepted.
    pub secret_in_body: bool,
}

struct Grant {
    sub: String,
    redirect_uri: String,
    challenge: Option<String>,
    nonce: Option<String>,
}

struct State {
    codes: HashMap<String, Grant>,
    tokens: HashMap<String, String>,
    fault: Fault,
    userinfo_fault: Fault,
    id_token_fault: IdTokenFault,
    /// Which of the two keys of its kind signs (0 or 1): `rotate_keys` flips it.
    key: usize,
    /// RFC 9207: discovery says `authorization_response_iss_parameter_supported` and every
    /// authorization response carries `iss`.
    iss_parameter: bool,
    /// Users whose address the issuer no longer calls verified.
    unverified: std::collections::HashSet<String>,
}

#[derive(Clone)]
pub struct FakeOidc {
    pub addr: SocketAddr,
    cfg: Arc<FakeOidcConfig>,
    state: Arc<Mutex<State>>,
    jwks_fetches: Arc<AtomicUsize>,
    discovery_fetches: Arc<AtomicUsize>,
}

impl Fake for FakeOidc {
    async fn handle(&self, req: Incoming) -> Reply {
        match req.path.as_str() {
            "/.well-known/openid-configuration" => {
                self.discovery_fetches.fetch_add(1, Ordering::Relaxed);
                match self.faulty().await {
                    Some(r) => r,
                    None => self.discovery(),
                }
            }
            "/jwks" => {
                self.jwks_fetches.fetch_add(1, Ordering::Relaxed);
                self.jwks()
            }
            "/authorize" => self.authorize_page(&req.query),
            "/authorize/approve" => self.approve(&req.query),
            "/token" if req.post => match self.faulty().await {
                Some(r) => r,
                None => self.token(&req.form, req.authorization.as_deref()),
            },
            "/userinfo" => {
                let fault = self.state.lock().unwrap().userinfo_fault;
                match Self::fail(fault).await {
                    Some(r) => r,
                    None => self.userinfo(req.bearer()),
                }
            }
            _ => oauth_error(404, "not_found", "no such endpoint"),
        }
    }

    fn bad_body(&self) -> Reply {
        oauth_error(400, "invalid_request", "bad body")
    }
}

impl FakeOidc {
    /// Serves on `listener` (spawned on the current runtime).
    pub fn serve(listener: TcpListener, cfg: FakeOidcConfig) -> FakeOidc {
        let addr = listener.local_addr().expect("bound listener");
        let fake = FakeOidc {
            addr,
            cfg: Arc::new(cfg),
            state: Arc::new(Mutex::new(State {
                codes: HashMap::new(),
                tokens: HashMap::new(),
                fault: Fault::None,
                userinfo_fault: Fault::None,
                id_token_fault: IdTokenFault::None,
                key: 0,
                iss_parameter: false,
                unverified: Default::default(),
            })),
            jwks_fetches: Arc::new(AtomicUsize::new(0)),
            discovery_fetches: Arc::new(AtomicUsize::new(0)),
        };
        fakes::spawn(listener, &fake);
        fake
    }

    /// The issuer identifier, as its discovery and `iss` write it.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_fault(&self, fault: Fault) {
        self.state.lock().unwrap().fault = fault;
    }

    /// A fault of the user-info endpoint alone.
    pub fn set_userinfo_fault(&self, fault: Fault) {
        self.state.lock().unwrap().userinfo_fault = fault;
    }

    pub fn set_id_token_fault(&self, fault: IdTokenFault) {
        self.state.lock().unwrap().id_token_fault = fault;
    }

    /// Signs with the other key from now on; the JWKS publishes only the new one.
    pub fn rotate_keys(&self) {
        let mut st = self.state.lock().unwrap();
        st.key = 1 - st.key;
    }

    /// Whether the issuer speaks RFC 9207 (advertised in discovery, `iss` on every redirect).
    pub fn set_iss_parameter(&self, on: bool) {
        self.state.lock().unwrap().iss_parameter = on;
    }

    /// From now on the issuer says `email_verified: false` for `sub`'s address.
    pub fn stop_vouching_for_email(&self, sub: &str) {
        self.state.lock().unwrap().unverified.insert(sub.to_string());
    }

    fn email_verified(&self, user: &FakeOidcUser) -> bool {
        user.email_verified && !self.state.lock().unwrap().unverified.contains(&user.sub)
    }

    pub fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::Relaxed)
    }

    pub fn discovery_fetches(&self) -> usize {
        self.discovery_fetches.load(Ordering::Relaxed)
    }

    async fn faulty(&self) -> Option<Reply> {
        let fault = self.state.lock().unwrap().fault;
        Self::fail(fault).await
    }

    async fn fail(fault: Fault) -> Option<Reply> {
        fault
            .answer(|| oauth_error(500, "server_error", "internal error"))
            .await
    }

    fn discovery(&self) -> Reply {
        let iss = self.issuer();
        let methods = if self.cfg.secret_in_body {
            json!(["client_secret_post", "client_secret_basic"])
        } else {
            json!(["client_secret_basic"])
        };
        localhttp::json(
            200,
            &json!({
                "issuer": iss,
                "authorization_endpoint": format!("{iss}/authorize"),
                "token_endpoint": format!("{iss}/token"),
                "userinfo_endpoint": format!("{iss}/userinfo"),
                "jwks_uri": format!("{iss}/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": methods,
                "scopes_supported": ["openid", "email", "profile"],
                "authorization_response_iss_parameter_supported": self.state.lock().unwrap().iss_parameter,
            }),
        )
    }

    fn jwks(&self) -> Reply {
        let key = self.state.lock().unwrap().key;
        localhttp::json(200, &jwks(self.cfg.alg, key))
    }

    /// What is wrong with an authorize request, if anything.
    fn check_client(&self, q: &HashMap<String, String>) -> Result<(), &'static str> {
        if q.get("client_id") != Some(&self.cfg.client_id) {
            return Err("unknown client_id");
        }
        if !self
            .cfg
            .redirect_uris
            .iter()
            .any(|r| Some(r) == q.get("redirect_uri"))
        {
            return Err("redirect_uri is not registered");
        }
        if q.get("response_type").map(String::as_str) != Some("code") {
            return Err("response_type must be code");
        }
        if !q
            .get("scope")
            .is_some_and(|s| s.split(' ').any(|s| s == "openid"))
        {
            return Err("scope must include openid");
        }
        Ok(())
    }

    fn authorize_page(&self, q: &HashMap<String, String>) -> Reply {
        if let Err(what) = self.check_client(q) {
            return localhttp::reply(400, "text/html", format!("<h1>{what}</h1>"));
        }
        let pass_on = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(q.iter())
            .finish();
        let users: String = self
            .cfg
            .users
            .iter()
            .map(|u| {
                format!(
                    "<li><a class=user href=\"/authorize/approve?{}&amp;user={}\">{} <small>({})</small></a></li>",
                    html_escape(&pass_on),
                    html_escape(&u.sub),
                    html_escape(&u.name),
                    html_escape(&u.email)
                )
            })
            .collect();
        localhttp::reply(
            200,
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><html><head><meta charset=utf-8><title>Example OpenID Connect issuer</title>\
                 <style>body{{font-family:sans-serif;max-width:30em;margin:3em auto}}a.user{{display:block;padding:.6em;\
                 margin:.4em 0;background:#e8eefc;color:#000;border-radius:6px;text-decoration:none}}</style></head>\
                 <body><h1>Example issuer</h1><p>authgate's offline stand-in for an OpenID Connect provider. Sign in as:</p>\
                 <ul>{users}</ul></body></html>"
            ),
        )
    }

    fn approve(&self, q: &HashMap<String, String>) -> Reply {
        if let Err(what) = self.check_client(q) {
            return localhttp::reply(400, "text/html", format!("<h1>{what}</h1>"));
        }
        let Some(user) = q
            .get("user")
            .filter(|sub| self.cfg.users.iter().any(|u| &u.sub == *sub))
        else {
            return localhttp::reply(400, "text/html", "<p>Unknown test user.</p>");
        };
        let challenge = match (
            q.get("code_challenge"),
            q.get("code_challenge_method").map(String::as_str),
        ) {
            (Some(c), Some("S256")) => Some(c.clone()),
            (Some(_), _) => {
                return back_to_client(q, &[("error", "invalid_request")]);
            }
            (None, _) => None,
        };
        let code = random_token(32);
        self.state.lock().unwrap().codes.insert(
            code.clone(),
            Grant {
                sub: user.clone(),
                redirect_uri: q["redirect_uri"].clone(),
                challenge,
                nonce: q.get("nonce").cloned(),
            },
        );
        if self.state.lock().unwrap().iss_parameter {
            let iss = self.issuer();
            return back_to_client(q, &[("code", &code), ("iss", &iss)]);
        }
        back_to_client(q, &[("code", &code)])
    }

    /// Client authentication as discovery advertises it.
    fn client_ok(&self, f: &HashMap<String, String>, authorization: Option<&str>) -> bool {
        let basic = authorization
            .and_then(|a| a.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|pair| {
                let (id, secret) = pair.split_once(':')?;
                let decode = |s: &str| {
                    url::form_urlencoded::parse(format!("x={s}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                };
                Some((decode(id)?, decode(secret)?))
            });
        match basic {
            Some((id, secret)) => id == self.cfg.client_id && secret == self.cfg.client_secret,
            None => {
                self.cfg.secret_in_body
                    && f.get("client_id") == Some(&self.cfg.client_id)
                    && f.get("client_secret") == Some(&self.cfg.client_secret)
            }
        }
    }

    fn token(&self, f: &HashMap<String, String>, authorization: Option<&str>) -> Reply {
        if !self.client_ok(f, authorization) {
            return oauth_error(401, "invalid_client", "client authentication failed");
        }
        if f.get("grant_type").map(String::as_str) != Some("authorization_code") {
            return oauth_error(400, "unsupported_grant_type", "only authorization_code");
        }
        let mut st = self.state.lock().unwrap();
        let Some(grant) = f.get("code").and_then(|c| st.codes.remove(c)) else {
            return oauth_error(400, "invalid_grant", "unknown or used code");
        };
        if f.get("redirect_uri") != Some(&grant.redirect_uri) {
            return oauth_error(400, "invalid_grant", "redirect_uri mismatch");
        }
        if let Some(challenge) = &grant.challenge {
            let ok = f.get("code_verifier").is_some_and(|v| {
                URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(v.as_bytes())) == *challenge
            });
            if !ok {
                return oauth_error(400, "invalid_grant", "PKCE verification failed");
            }
        }
        let access = random_token(32);
        st.tokens.insert(access.clone(), grant.sub.clone());
        let (fault, key) = (st.id_token_fault, st.key);
        drop(st);
        let mut answer =
            json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600});
        if fault != IdTokenFault::Missing {
            answer["id_token"] = json!(self.id_token(&grant, fault, key));
        }
        localhttp::json(200, &answer)
    }

    fn id_token(&self, grant: &Grant, fault: IdTokenFault, key: usize) -> String {
        let user = self
            .cfg
            .users
            .iter()
            .find(|u| u.sub == grant.sub)
            .expect("codes name known users");
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let mut claims = json!({
            "iss": self.issuer(), "sub": user.sub, "aud": self.cfg.client_id,
            "iat": now, "exp": now + 300, "auth_time": now,
        });
        if let Some(nonce) = &grant.nonce {
            claims["nonce"] = json!(nonce);
        }
        if !user.sparse_id_token {
            claims["name"] = json!(user.name);
            claims["email"] = json!(user.email);
            claims["email_verified"] = json!(self.email_verified(user));
            claims["picture"] = json!(format!("https://example.test/avatars/{}.png", user.sub));
        }
        sign(claims, fault, self.cfg.alg, key)
    }

    fn userinfo(&self, bearer: Option<&str>) -> Reply {
        let sub = {
            let st = self.state.lock().unwrap();
            let Some(sub) = bearer.and_then(|t| st.tokens.get(t)) else {
                return oauth_error(401, "invalid_token", "unknown access token");
            };
            sub.clone()
        };
        let user = self
            .cfg
            .users
            .iter()
            .find(|u| u.sub == sub)
            .expect("known user");
        localhttp::json(
            200,
            &json!({
                "sub": user.sub, "name": user.name, "email": user.email,
                "email_verified": self.email_verified(user),
                "picture": format!("https://example.test/avatars/{}.png", user.sub),
            }),
        )
    }
}

fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    localhttp::json(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// The key id of one of the fake keys.
pub(crate) fn kid(alg: SigningAlg, key: usize) -> String {
    let kind = match alg {
        SigningAlg::RS256 => "rsa",
        SigningAlg::ES256 => "ec",
    };
    format!("{kind}-{}", ["a", "b"][key])
}

pub(crate) fn signing(alg: SigningAlg, key: usize) -> (Algorithm, EncodingKey) {
    match alg {
        SigningAlg::RS256 => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(RSA_KEYS[key].as_bytes()).expect("fake key"),
        ),
        SigningAlg::ES256 => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(EC_KEYS[key].as_bytes()).expect("fake key"),
        ),
    }
}

/// The JWKS that publishes fake key `key` (0 or 1) of kind `alg`.
pub(super) fn jwks(alg: SigningAlg, key: usize) -> serde_json::Value {
    let (algorithm, encoding) = signing(alg, key);
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, algorithm).expect("public parts");
    jwk.common.key_id = Some(kid(alg, key));
    jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
    json!({ "keys": [jwk] })
}

/// `claims` signed with fake key `key`, spoilt as `fault` says.
pub(super) fn sign(
    mut claims: serde_json::Value,
    fault: IdTokenFault,
    alg_kind: SigningAlg,
    key: usize,
) -> String {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    match fault {
        IdTokenFault::Expired => {
            claims["exp"] = json!(now - 3600);
            claims["iat"] = json!(now - 3900);
        }
        IdTokenFault::WrongAudience => claims["aud"] = json!("someone-else"),
        IdTokenFault::WrongIssuer => claims["iss"] = json!("https://evil.example"),
        IdTokenFault::WrongNonce => claims["nonce"] = json!("not-the-nonce"),
        IdTokenFault::SeveralAudiencesNoAzp => {
            claims["aud"] = json!([claims["aud"].clone(), "someone-else"])
        }
        _ => {}
    }
    let (alg, encoding) = signing(alg_kind, key);
    let mut header = Header::new(alg);
    header.kid = Some(kid(alg_kind, key));
    match fault {
        IdTokenFault::AlgNone => {
            let head = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string());
            let body = URL_SAFE_NO_PAD.encode(claims.to_string());
            format!("{head}.{body}.")
        }
        IdTokenFault::HmacWithPublicKey => {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = Some(kid(alg_kind, key));
            let jwk =
                jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, alg).expect("public parts");
            let public = serde_json::to_vec(&jwk).expect("serialisable");
            jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(&public)).expect("signs")
        }
        IdTokenFault::UnknownKid => {
            let other = 1 - key;
            let (alg, encoding) = signing(alg_kind, other);
            let mut h = Header::new(alg);
            h.kid = Some("never-published".into());
            jsonwebtoken::encode(&h, &claims, &encoding).expect("signs")
        }
        _ => {
            let token = jsonwebtoken::encode(&header, &claims, &encoding).expect("signs");
            if fault == IdTokenFault::Forged {
                let (rest, sig) = token.rsplit_once('.').expect("three parts");
                let mut sig = sig.as_bytes().to_vec();
                sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
                format!("{rest}.{}", String::from_utf8(sig).expect("base64"))
            } else {
                token
            }
        }
    }
}
