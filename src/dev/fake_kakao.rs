//! A fake Kakao for `authgate dev` and the tests: it behaves as `docs/providers.md` §What the fakes reproduce says Kakao
//! does, on a loopback port. Authorize shows a page of test users (or cancels with
//! `access_denied`); codes are single-use, bound to the redirect URI and the PKCE challenge, and
//! expire; the token endpoint checks client_id/client_secret (client_secret_post) and answers in
//! Kakao's shapes (`bearer` lowercase, space-separated scope, `{"error","error_description",
//! "error_code"}`); `/v2/user/me` omits unconsented fields and sets the `*_needs_agreement` flags;
//! kapi errors use `{"msg","code"}`. With `openid` in the scope (Kakao's OpenID Connect mode) the
//! token response carries a signed `id_token` and `/.well-known/jwks.json` publishes its key.
//! Faults (500, an HTML body, a hang, a spoilt `id_token`) can be switched on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;
use sha2::Digest;
use tokio::net::TcpListener;

use super::fake_oidc::{self, IdTokenFault, SigningAlg};
use super::fakes::{self, back_to_client, random_token, Fake, Incoming};
use crate::localhttp::{self, html_escape, Reply};

/// A test account on the fake.
#[derive(Debug, Clone)]
pub struct FakeUser {
    pub id: i64,
    pub nickname: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub profile_image: String,
}

/// The accounts `authgate dev` and the tests log in as.
pub fn default_users() -> Vec<FakeUser> {
    let user = |id: i64, nickname: &str, email: Option<&str>, verified: bool| FakeUser {
        id,
        nickname: nickname.into(),
        email: email.map(str::to_string),
        email_verified: verified,
        profile_image: format!("https://k.kakaocdn.net/dn/fake/{id}/img_640x640.jpg"),
    };
    vec![
        user(1_000_001, "라이언", Some("ryan@kakao.test"), true),
        user(1_000_002, "어피치", Some("apeach@kakao.test"), false),
        user(1_000_003, "무지", None, false),
    ]
}

pub use super::fakes::Fault;

struct Grant {
    user: i64,
    redirect_uri: String,
    challenge: Option<String>,
    scopes: Vec<String>,
    nonce: Option<String>,
    issued: Instant,
}

struct State {
    codes: HashMap<String, Grant>,
    tokens: HashMap<String, (i64, Vec<String>)>,
    fault: Fault,
    /// Added to the age of every code, to test expiry without waiting ten minutes.
    code_age_offset: Duration,
    id_token_fault: IdTokenFault,
}

pub struct FakeKakaoConfig {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    pub users: Vec<FakeUser>,
}

const CODE_TTL: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct FakeKakao {
    pub addr: SocketAddr,
    cfg: Arc<FakeKakaoConfig>,
    state: Arc<Mutex<State>>,
}

fn oauth_error(status: u16, error: &str, description: &str, code: &str) -> Reply {
    localhttp::json(
        status,
        &json!({"error": error, "error_description": description, "error_code": code}),
    )
}

impl Fake for FakeKakao {
    async fn handle(&self, req: Incoming) -> Reply {
        let q = &req.query;
        match req.path.as_str() {
            "/oauth/authorize" => self.authorize_page(q),
            "/oauth/authorize/approve" => self.approve(q),
            "/oauth/authorize/cancel" => self.cancel(q),
            "/.well-known/jwks.json" => {
                localhttp::json(200, &fake_oidc::jwks(SigningAlg::RS256, 0))
            }
            "/.well-known/openid-configuration" => self.discovery(),
            "/v1/oidc/userinfo" => self.oidc_userinfo(req.bearer()),
            "/oauth/token" if req.post => match self.faulty().await {
                Some(r) => r,
                None => self.token(&req.form),
            },
            "/v2/user/me" => match self.faulty().await {
                Some(r) => r,
                None => self.me(req.bearer()),
            },
            _ => localhttp::json(404, &json!({"msg": "not found", "code": -1})),
        }
    }

    fn bad_body(&self) -> Reply {
        localhttp::json(400, &json!({"msg": "bad body", "code": -2}))
    }
}

impl FakeKakao {
    /// Serves on `listener` (spawned on the current runtime).
    pub fn serve(listener: TcpListener, cfg: FakeKakaoConfig) -> FakeKakao {
        let addr = listener.local_addr().expect("bound listener");
        let fake = FakeKakao {
            addr,
            cfg: Arc::new(cfg),
            state: Arc::new(Mutex::new(State {
                codes: HashMap::new(),
                tokens: HashMap::new(),
                fault: Fault::None,
                code_age_offset: Duration::ZERO,
                id_token_fault: IdTokenFault::None,
            })),
        };
        fakes::spawn(listener, &fake);
        fake
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_fault(&self, fault: Fault) {
        self.state.lock().unwrap().fault = fault;
    }

    /// In OpenID Connect mode, spoils the `id_token`s issued from now on.
    pub fn set_id_token_fault(&self, fault: IdTokenFault) {
        self.state.lock().unwrap().id_token_fault = fault;
    }

    /// Makes every code issued so far (and later) look `by` older.
    pub fn age_codes(&self, by: Duration) {
        self.state.lock().unwrap().code_age_offset += by;
    }

    async fn faulty(&self) -> Option<Reply> {
        let fault = self.state.lock().unwrap().fault;
        fault
            .answer(|| oauth_error(500, "server_error", "internal error", "KOE500"))
            .await
    }

    /// The checks Kakao makes before showing its login page: the error page's body when one fails.
    fn check_client(&self, q: &HashMap<String, String>) -> Result<(), &'static str> {
        if q.get("client_id") != Some(&self.cfg.client_id) {
            return Err("<h1>KOE101</h1><p>Invalid app key.</p>");
        }
        let redirect_uri = q.get("redirect_uri").map(String::as_str).unwrap_or("");
        if !self.cfg.redirect_uris.iter().any(|r| r == redirect_uri) {
            return Err("<h1>KOE006</h1><p>Unregistered redirect_uri.</p>");
        }
        if q.get("response_type").map(String::as_str) != Some("code") {
            return Err("<h1>KOE002</h1><p>response_type must be code.</p>");
        }
        Ok(())
    }

    fn authorize_page(&self, q: &HashMap<String, String>) -> Reply {
        if let Err(page) = self.check_client(q) {
            return localhttp::reply(400, "text/html", page);
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
                    "<li><a class=user href=\"/oauth/authorize/approve?{}&amp;user={}\">{} <small>({})</small></a></li>",
                    html_escape(&pass_on),
                    u.id,
                    html_escape(&u.nickname),
                    html_escape(u.email.as_deref().unwrap_or("no email"))
                )
            })
            .collect();
        localhttp::reply(
            200,
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><html><head><meta charset=utf-8><title>Fake Kakao login</title>\
                 <style>body{{font-family:sans-serif;max-width:30em;margin:3em auto}}a.user{{display:block;padding:.6em;\
                 margin:.4em 0;background:#fee500;color:#000;border-radius:6px;text-decoration:none}}</style></head>\
                 <body><h1>Fake Kakao</h1><p>authgate's offline stand-in for Kakao Login. Log in as:</p><ul>{users}</ul>\
                 <p><a href=\"/oauth/authorize/cancel?{}\">Cancel</a></p></body></html>",
                html_escape(&pass_on)
            ),
        )
    }

    fn approve(&self, q: &HashMap<String, String>) -> Reply {
        if let Err(page) = self.check_client(q) {
            return localhttp::reply(400, "text/html", page);
        }
        let Some(user) = q
            .get("user")
            .and_then(|u| u.parse::<i64>().ok())
            .filter(|id| self.cfg.users.iter().any(|u| u.id == *id))
        else {
            return localhttp::reply(400, "text/html", "<p>Unknown test user.</p>");
        };
        let challenge = match (
            q.get("code_challenge"),
            q.get("code_challenge_method").map(String::as_str),
        ) {
            (Some(c), Some("S256")) => Some(c.clone()),
            (Some(_), _) => {
                return back_to_client(
                    q,
                    &[
                        ("error", "invalid_request"),
                        ("error_description", "code_challenge_method must be S256"),
                    ],
                )
            }
            (None, _) => None,
        };
        let code = random_token(32);
        // Kakao's own clients separate consent items with commas; OpenID Connect clients send
        // the standard space-separated list. Both name the same items.
        let scopes = q
            .get("scope")
            .map(|s| {
                s.split([',', ' '])
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        self.state.lock().unwrap().codes.insert(
            code.clone(),
            Grant {
                user,
                redirect_uri: q["redirect_uri"].clone(),
                challenge,
                scopes,
                nonce: q.get("nonce").cloned(),
                issued: Instant::now(),
            },
        );
        back_to_client(q, &[("code", &code)])
    }

    fn cancel(&self, q: &HashMap<String, String>) -> Reply {
        if let Err(page) = self.check_client(q) {
            return localhttp::reply(400, "text/html", page);
        }
        back_to_client(
            q,
            &[
                ("error", "access_denied"),
                ("error_description", "User denied access"),
            ],
        )
    }

    fn token(&self, f: &HashMap<String, String>) -> Reply {
        if f.get("client_id") != Some(&self.cfg.client_id) {
            return oauth_error(401, "invalid_client", "invalid app key", "KOE101");
        }
        if !self.cfg.client_secret.is_empty()
            && f.get("client_secret") != Some(&self.cfg.client_secret)
        {
            return oauth_error(401, "invalid_client", "Bad client credentials", "KOE010");
        }
        if f.get("grant_type").map(String::as_str) != Some("authorization_code") {
            return oauth_error(
                400,
                "unsupported_grant_type",
                "grant_type not supported",
                "KOE003",
            );
        }
        let code = f.get("code").cloned().unwrap_or_default();
        let mut st = self.state.lock().unwrap();
        let age_offset = st.code_age_offset;
        // Single use: the code is gone whatever happens next.
        let Some(grant) = st.codes.remove(&code) else {
            return oauth_error(
                400,
                "invalid_grant",
                &format!("authorization code not found for code={code}"),
                "KOE320",
            );
        };
        if grant.issued.elapsed() + age_offset > CODE_TTL {
            return oauth_error(
                400,
                "invalid_grant",
                &format!("authorization code not found for code={code}"),
                "KOE320",
            );
        }
        if f.get("redirect_uri") != Some(&grant.redirect_uri) {
            return oauth_error(400, "invalid_grant", "redirect_uri mismatch", "KOE303");
        }
        if let Some(challenge) = &grant.challenge {
            let ok = f.get("code_verifier").is_some_and(|v| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(sha2::Sha256::digest(v.as_bytes()))
                    == *challenge
            });
            if !ok {
                return oauth_error(400, "invalid_grant", "code_verifier is invalid", "KOE320");
            }
        }
        let access = random_token(40);
        let mut scope: Vec<String> = grant.scopes.clone();
        scope.sort();
        let id_token_fault = st.id_token_fault;
        st.tokens
            .insert(access.clone(), (grant.user, grant.scopes.clone()));
        drop(st);
        let mut answer = json!({
            "token_type": "bearer", "access_token": access, "expires_in": 21599,
            "refresh_token": random_token(40), "refresh_token_expires_in": 5183999,
            "scope": scope.join(" "),
        });
        if grant.scopes.iter().any(|s| s == "openid") {
            answer["id_token"] = json!(self.id_token(&grant, id_token_fault));
        }
        localhttp::json(200, &answer)
    }

    /// Kakao's `id_token` (`docs/providers.md` §Kakao OpenID Connect): issued by the fake's own base URL (Kakao's is
    /// `https://kauth.kakao.com`), the app key as `aud`, the user id as `sub`, the nonce echoed,
    /// and the consented profile; email only when valid and verified. RS256 with a `kid`.
    fn id_token(&self, grant: &Grant, fault: IdTokenFault) -> String {
        let user = self
            .cfg
            .users
            .iter()
            .find(|u| u.id == grant.user)
            .expect("codes name known users");
        let has = |s: &str| grant.scopes.iter().any(|x| x == s);
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let mut claims = json!({
            "iss": self.base_url(), "aud": self.cfg.client_id, "sub": user.id.to_string(),
            "iat": now, "exp": now + 21599, "auth_time": now,
        });
        if let Some(nonce) = &grant.nonce {
            claims["nonce"] = json!(nonce);
        }
        if has("profile_nickname") {
            claims["nickname"] = json!(user.nickname);
        }
        if has("profile_image") {
            claims["picture"] = json!(user.profile_image);
        }
        if let (Some(email), true, true) = (&user.email, user.email_verified, has("account_email"))
        {
            claims["email"] = json!(email);
        }
        fake_oidc::sign(claims, fault, SigningAlg::RS256, 0)
    }

    /// Kakao's OpenID Connect discovery document (`docs/providers.md` §Kakao OpenID Connect), on the fake's base URL.
    fn discovery(&self) -> Reply {
        let base = self.base_url();
        localhttp::json(
            200,
            &json!({
                "issuer": base,
                "authorization_endpoint": format!("{base}/oauth/authorize"),
                "token_endpoint": format!("{base}/oauth/token"),
                "userinfo_endpoint": format!("{base}/v1/oidc/userinfo"),
                "jwks_uri": format!("{base}/.well-known/jwks.json"),
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "request_uri_parameter_supported": false,
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "claims_supported": ["iss", "aud", "sub", "auth_time", "exp", "iat", "nonce",
                    "nickname", "picture", "email"],
            }),
        )
    }

    /// Kakao's OpenID Connect user info: the consented profile as standard claims; the email
    /// with `email_verified`.
    fn oidc_userinfo(&self, bearer: Option<&str>) -> Reply {
        let (user, scopes) = match self.token_owner(bearer) {
            Ok(owner) => owner,
            Err(refused) => return refused,
        };
        let has = |s: &str| scopes.iter().any(|x| x == s);
        let mut claims = json!({"sub": user.id.to_string()});
        if has("profile_nickname") {
            claims["nickname"] = json!(user.nickname);
        }
        if has("profile_image") {
            claims["picture"] = json!(user.profile_image);
        }
        if let (Some(email), true) = (&user.email, has("account_email")) {
            claims["email"] = json!(email);
            claims["email_verified"] = json!(user.email_verified);
        }
        localhttp::json(200, &claims)
    }

    /// The user and consented scopes an access token was issued for, or Kakao's 401.
    fn token_owner(&self, bearer: Option<&str>) -> Result<(&FakeUser, Vec<String>), Reply> {
        let st = self.state.lock().unwrap();
        let Some((user_id, scopes)) = bearer.and_then(|t| st.tokens.get(t)).cloned() else {
            return Err(localhttp::json(
                401,
                &json!({"msg": "this access token does not exist", "code": -401}),
            ));
        };
        let user = self
            .cfg
            .users
            .iter()
            .find(|u| u.id == user_id)
            .expect("tokens name known users");
        Ok((user, scopes))
    }

    fn me(&self, bearer: Option<&str>) -> Reply {
        let (user, scopes) = match self.token_owner(bearer) {
            Ok(owner) => owner,
            Err(refused) => return refused,
        };
        let has = |s: &str| scopes.iter().any(|x| x == s);
        let mut profile = serde_json::Map::new();
        if has("profile_nickname") {
            profile.insert("nickname".into(), json!(user.nickname));
            profile.insert("is_default_nickname".into(), json!(false));
        }
        if has("profile_image") {
            profile.insert("profile_image_url".into(), json!(user.profile_image));
            profile.insert(
                "thumbnail_image_url".into(),
                json!(user.profile_image.replace("640x640", "110x110")),
            );
            profile.insert("is_default_image".into(), json!(false));
        }
        let mut account = serde_json::Map::new();
        account.insert(
            "profile_nickname_needs_agreement".into(),
            json!(!has("profile_nickname")),
        );
        account.insert(
            "profile_image_needs_agreement".into(),
            json!(!has("profile_image")),
        );
        if !profile.is_empty() {
            account.insert("profile".into(), serde_json::Value::Object(profile));
        }
        match (&user.email, has("account_email")) {
            (Some(email), true) => {
                account.insert("email_needs_agreement".into(), json!(false));
                account.insert("is_email_valid".into(), json!(true));
                account.insert("is_email_verified".into(), json!(user.email_verified));
                account.insert("email".into(), json!(email));
            }
            _ => {
                account.insert("email_needs_agreement".into(), json!(true));
            }
        }
        let mut me = json!({"id": user.id, "connected_at": "2026-01-01T00:00:00Z", "kakao_account": account});
        if has("profile_nickname") {
            me["properties"] = json!({"nickname": user.nickname});
        }
        localhttp::json(200, &me)
    }
}
