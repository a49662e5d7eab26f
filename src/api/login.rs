//! The login flow: the authorize URL with a signed `state` (and PKCE), the browser redirect,
//! and both callbacks that turn Kakao's code into a session.
//!
//! The `state` binds a login to the browser that started it: `login-url` and `login` set it as
//! a cookie, and a callback whose state is not that cookie is refused (login CSRF, and a
//! callback URL from history or a log redeemed elsewhere). Only `auth.require_state = false`,
//! for the seed's single-page client that posts `code` alone, skips it (and PKCE with it).

use serde::Deserialize;
use serde_json::json;

use super::{now, safe_next, ApiReply, ApiRequest, AuthApi};
use crate::cookies;
use crate::error::GatewayError;
use crate::providers::kakao::KakaoClient;
use crate::providers::ProviderError;
use crate::tokens::state::StateSigner;

#[derive(Deserialize)]
struct CallbackBody {
    code: Option<String>,
    state: Option<String>,
}

impl AuthApi {
    fn kakao(&self) -> Result<&KakaoClient, GatewayError> {
        // Login is off when no client id is configured: the routes do not exist.
        self.kakao.as_ref().ok_or(GatewayError::NoRoute)
    }

    fn start_login(&self, next: &str, pkce: bool) -> Result<(String, String), GatewayError> {
        let kakao = self.kakao()?;
        let pkce = pkce && kakao.config().pkce;
        let (token, state) = self.state.issue(next, pkce, now(), self.state_ttl);
        let challenge =
            pkce.then(|| StateSigner::pkce_challenge(&self.state.pkce_verifier(&state)));
        Ok((kakao.authorize_url(&token, challenge.as_deref()), token))
    }

    fn state_cookie(&self, value: &str, max_age: i64, secure: bool) -> String {
        cookies::set_cookie(cookies::names(secure).state, value, max_age, secure)
    }

    pub(super) fn login_url(&self, req: &ApiRequest) -> Result<ApiReply, GatewayError> {
        // A legacy client that will not send the state back cannot complete PKCE either.
        let (url, state) = self.start_login("/", self.require_state)?;
        Ok(
            ApiReply::json(200, json!({"login_url": url})).cookie(self.state_cookie(
                &state,
                self.state_ttl,
                req.secure,
            )),
        )
    }

    pub(super) fn login(&self, req: &ApiRequest) -> Result<ApiReply, GatewayError> {
        let next = safe_next(req.query("next").as_deref(), &self.allowed_origins);
        let (url, state) = self.start_login(&next, true)?;
        Ok(ApiReply::redirect(&url).cookie(self.state_cookie(&state, self.state_ttl, req.secure)))
    }

    /// The `next` and PKCE verifier of a verified state, or the error for a bad one. With
    /// `required`, a state must come back and the browser's state cookie must be that state.
    fn check_state(
        &self,
        state: Option<&str>,
        cookie: Option<&str>,
        required: bool,
    ) -> Result<Option<(String, Option<String>)>, GatewayError> {
        let Some(state) = state else {
            return if required {
                Err(GatewayError::InvalidState)
            } else {
                Ok(None)
            };
        };
        let parsed = self
            .state
            .verify(state, now())
            .ok_or(GatewayError::InvalidState)?;
        // The state must be this browser's (login CSRF; a callback URL redeemed elsewhere).
        match cookie {
            Some(c) if c != state => return Err(GatewayError::InvalidState),
            None if required => return Err(GatewayError::InvalidState),
            _ => {}
        }
        let verifier = parsed.p.then(|| self.state.pkce_verifier(&parsed));
        Ok(Some((parsed.x, verifier)))
    }

    pub(super) async fn browser_callback(
        &self,
        req: &ApiRequest,
    ) -> Result<ApiReply, GatewayError> {
        let kakao = self.kakao()?;
        // The browser flow always needs its state, and the cookie that proves it is this browser's.
        let (next, verifier) = self
            .check_state(req.query("state").as_deref(), req.cookie(|n| n.state), true)?
            .expect("required");
        if let Some(err) = req.query("error") {
            return Err(ProviderError::LoginFailed(format!("authorize returned {err}")).into());
        }
        let code = req
            .query("code")
            .ok_or_else(|| GatewayError::BadRequest("callback without code".into()))?;
        let user = kakao.login(&code, verifier.as_deref()).await?;
        let issued = self
            .issue_for(&self.store.upsert_user(&user, now()).await?)
            .await?;
        let mut reply = ApiReply::redirect(&next);
        for c in self.session_cookies(&issued, req.secure) {
            reply = reply.cookie(c);
        }
        Ok(reply.cookie(self.state_cookie("", 0, req.secure)))
    }

    pub(super) async fn json_callback(&self, req: &ApiRequest) -> Result<ApiReply, GatewayError> {
        let kakao = self.kakao()?;
        let content_type = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut body = if req.body.is_empty() {
            CallbackBody {
                code: None,
                state: None,
            }
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            let f: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(&req.body)
                    .into_owned()
                    .collect();
            CallbackBody {
                code: f.get("code").cloned(),
                state: f.get("state").cloned(),
            }
        } else {
            serde_json::from_slice(&req.body)
                .map_err(|_| GatewayError::BadRequest("callback body is not JSON".into()))?
        };
        body.code = body.code.or_else(|| req.query("code"));
        body.state = body.state.or_else(|| req.query("state"));
        let code = body
            .code
            .filter(|c| !c.is_empty() && c.len() <= 512)
            .ok_or_else(|| GatewayError::BadRequest("code is required".into()))?;
        // With `require_state`, a state and the browser's own state cookie, as on the GET flow:
        // the PKCE verifier comes from the state, so a state alone would let whoever holds a
        // callback URL redeem it by POST.
        let checked = self.check_state(
            body.state.as_deref(),
            req.cookie(|n| n.state),
            self.require_state,
        )?;
        let verifier = checked.and_then(|(_, v)| v);
        let user = kakao.login(&code, verifier.as_deref()).await?;
        let issued = self
            .issue_for(&self.store.upsert_user(&user, now()).await?)
            .await?;
        let reply = self.token_response(&issued);
        Ok(if self.require_state {
            reply.cookie(self.state_cookie("", 0, req.secure))
        } else {
            reply
        })
    }
}
