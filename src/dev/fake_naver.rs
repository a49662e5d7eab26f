//! A fake Naver Login for the tests, behaving as Naver's docs say (`docs/providers.md` §Naver): an authorize
//! page of test users that requires `state`, a token endpoint that answers every failure with
//! 200 and an `error` field and wants the `state` again, and the profile API
//! (`{"resultcode":"00","response":{...}}`, `024` for a bad token). Faults as the other fakes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::net::TcpListener;

use super::fakes::{self, back_to_client, random_token, Fake, Incoming};
use super::fakes::Fault;
use crate::localhttp::{self, html_escape, Reply};

#[derive(Debug, Clone)]
pub struct FakeNaverUser {
    /// Opaque, up to 64 characters.
    pub id: String,
    pub nickname: String,
    pub email: String,
}

pub fn default_naver_users() -> Vec<FakeNaverUser> {
    vec![FakeNaverUser {
        id: "32742776-HK8jzL0nmiqr2xRG3f3pTlzZc5UWt8sMXnqrA1lH7X4".into(),
        nickname: "네이버사용자".into(),
        email: "user@naver.test".into(),
    }]
}

pub struct FakeNaverConfig {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    pub users: Vec<FakeNaverUser>,
}

struct State {
    codes: HashMap<String, (String, String)>,
    tokens: HashMap<String, String>,
    fault: Fault,
}

#[derive(Clone)]
pub struct FakeNaver {
    pub addr: SocketAddr,
    cfg: Arc<FakeNaverConfig>,
    state: Arc<Mutex<State>>,
}

impl Fake for FakeNaver {
    async fn handle(&self, req: Incoming) -> Reply {
        let fault = self.state.lock().unwrap().fault;
        if !req.path.starts_with("/oauth2.0/authorize") {
            let server_error = || localhttp::reply(500, "text/html", "<h1>500</h1>");
            if let Some(reply) = fault.answer(server_error).await {
                return reply;
            }
        }
        match req.path.as_str() {
            "/oauth2.0/authorize" => self.authorize_page(&req.query),
            "/oauth2.0/authorize/approve" => self.approve(&req.query),
            "/oauth2.0/token" => {
                // Naver takes the token request's fields in the query or the body.
                let mut params = req.query.clone();
                params.extend(req.form.clone());
                self.token(&params)
            }
            "/v1/nid/me" => self.me(req.bearer()),
            _ => localhttp::json(404, &json!({"resultcode": "404", "message": "not found"})),
        }
    }

    fn bad_body(&self) -> Reply {
        localhttp::json(400, &json!({"error": "invalid_request"}))
    }
}

impl FakeNaver {
    pub fn serve(listener: TcpListener, cfg: FakeNaverConfig) -> FakeNaver {
        let addr = listener.local_addr().expect("bound listener");
        let fake = FakeNaver {
            addr,
            cfg: Arc::new(cfg),
            state: Arc::new(Mutex::new(State {
                codes: HashMap::new(),
                tokens: HashMap::new(),
                fault: Fault::None,
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

    /// Whether Naver would show its login page for this authorize request.
    fn valid(&self, q: &HashMap<String, String>) -> bool {
        q.get("client_id") == Some(&self.cfg.client_id)
            && self
                .cfg
                .redirect_uris
                .iter()
                .any(|r| Some(r) == q.get("redirect_uri"))
            && q.get("response_type").map(String::as_str) == Some("code")
            && q.get("state").is_some_and(|s| !s.is_empty())
    }

    fn authorize_page(&self, q: &HashMap<String, String>) -> Reply {
        if !self.valid(q) {
            return localhttp::reply(400, "text/html", "<h1>잘못된 요청</h1>");
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
                    "<li><a class=user href=\"/oauth2.0/authorize/approve?{}&amp;user={}\">{}</a></li>",
                    html_escape(&pass_on),
                    html_escape(&u.id),
                    html_escape(&u.nickname)
                )
            })
            .collect();
        localhttp::reply(
            200,
            "text/html; charset=utf-8",
            format!("<!doctype html><html><head><meta charset=utf-8><title>Fake Naver</title></head><body><ul>{users}</ul></body></html>"),
        )
    }

    fn approve(&self, q: &HashMap<String, String>) -> Reply {
        if !self.valid(q) {
            return localhttp::reply(400, "text/html", "<h1>잘못된 요청</h1>");
        }
        let Some(user) = q
            .get("user")
            .filter(|id| self.cfg.users.iter().any(|u| &u.id == *id))
        else {
            return localhttp::reply(400, "text/html", "<p>Unknown test user.</p>");
        };
        let code = random_token(24);
        self.state
            .lock()
            .unwrap()
            .codes
            .insert(code.clone(), (user.clone(), q["state"].clone()));
        back_to_client(q, &[("code", &code)])
    }

    /// Every failure is a 200 with `error`, as Naver answers.
    fn token(&self, f: &HashMap<String, String>) -> Reply {
        let error =
            |e: &str, d: &str| localhttp::json(200, &json!({"error": e, "error_description": d}));
        if f.get("client_id") != Some(&self.cfg.client_id)
            || f.get("client_secret") != Some(&self.cfg.client_secret)
        {
            return error("invalid_client", "client authentication failed");
        }
        if f.get("grant_type").map(String::as_str) != Some("authorization_code") {
            return error("unsupported_grant_type", "grant_type is wrong");
        }
        let mut st = self.state.lock().unwrap();
        let Some((user, state)) = f.get("code").and_then(|c| st.codes.remove(c)) else {
            return error("invalid_request", "no valid data in session");
        };
        if f.get("state") != Some(&state) {
            return error("invalid_request", "state mismatch");
        }
        let access = random_token(32);
        st.tokens.insert(access.clone(), user);
        localhttp::json(
            200,
            &json!({"access_token": access, "refresh_token": random_token(32), "token_type": "bearer", "expires_in": "3600"}),
        )
    }

    fn me(&self, bearer: Option<&str>) -> Reply {
        let st = self.state.lock().unwrap();
        let Some(id) = bearer.and_then(|t| st.tokens.get(t)) else {
            return localhttp::json(
                401,
                &json!({"resultcode": "024", "message": "Authentication failed"}),
            );
        };
        let user = self
            .cfg
            .users
            .iter()
            .find(|u| &u.id == id)
            .expect("known user");
        localhttp::json(
            200,
            &json!({"resultcode": "00", "message": "success", "response": {
                "id": user.id, "nickname": user.nickname, "name": user.nickname, "email": user.email,
                "profile_image": format!("https://phinf.pstatic.net/fake/{}.png", &user.id[..8]),
            }}),
        )
    }
}
