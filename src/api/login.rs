//! The login flow, the same for every provider: `{prefix}/{id}/login-url`, `/{id}/login`,
//! `/{id}/callback` (GET for browsers, POST for single-page clients), and `{prefix}/login`, a
//! page with one button per provider.
//!
//! The `state` binds a login to the browser that started it and to its provider: `login-url`
//! and `login` give the browser a random secret as its state cookie and put its HMAC in the
//! signed state; a callback whose state was issued for another provider, or does not match the
//! browser's secret, is refused (login CSRF). The PKCE verifier and the OpenID Connect `nonce`
//! are derived from the secret, which never appears in a URL, so a callback URL from a history,
//! a log or a proxy cannot be redeemed anywhere but in that browser; nothing is stored. Only
//! `auth.require_state = false`, for the seed's single-page client that posts `code` alone,
//! skips the check (and PKCE with it; its Kakao needs neither).

use serde::Deserialize;
use serde_json::json;

use super::{now, safe_next, ApiReply, ApiRequest, AuthApi};
use crate::cookies;
use crate::error::GatewayError;
use crate::localhttp::html_escape;
use crate::providers::{LoginRequest, Provider, ProviderError};
use crate::tokens::state::{Binding, StateSigner};

/// What a callback gets from its verified state.
struct Checked {
    next: String,
    verifier: Option<String>,
    /// The OpenID Connect nonce ("" when the browser's secret did not come back).
    nonce: String,
}

#[derive(Deserialize)]
struct CallbackBody {
    code: Option<String>,
    state: Option<String>,
    /// RFC 9207's `iss`, passed on by a client that read it from the redirect.
    #[serde(default)]
    iss: Option<String>,
}

/// A provider's failure as the client sees it: Kakao keeps the seed's `KAKAO_*` codes.
pub(super) fn failed(provider: &Provider, e: ProviderError) -> GatewayError {
    if provider.is_kakao() {
        GatewayError::Provider(e)
    } else {
        GatewayError::OtherProvider(e)
    }
}

impl AuthApi {
    /// The provider's authorize URL for a new login, and the browser secret for its state cookie.
    async fn start_login(
        &self,
        provider: &Provider,
        next: &str,
        pkce: bool,
    ) -> Result<(String, Binding), GatewayError> {
        let pkce = pkce && provider.pkce();
        let (token, _, binding) =
            self.state
                .issue(provider.id(), next, pkce, now(), self.state_ttl);
        let challenge =
            pkce.then(|| StateSigner::pkce_challenge(&self.state.pkce_verifier(&binding)));
        let url = provider
            .authorize_url(
                &token,
                challenge.as_deref(),
                &self.state.oidc_nonce(&binding),
            )
            .await
            .map_err(|e| failed(provider, e))?;
        Ok((url, binding))
    }

    fn state_cookie(&self, value: &str, max_age: i64, secure: bool) -> String {
        cookies::set_cookie(cookies::names(secure).state, value, max_age, secure)
    }

    pub(super) async fn login_url(
        &self,
        provider: &Provider,
        req: &ApiRequest,
    ) -> Result<ApiReply, GatewayError> {
        // A legacy client that will not send the state back cannot complete PKCE either.
        let (url, binding) = self.start_login(provider, "/", self.require_state).await?;
        Ok(
            ApiReply::json(200, json!({"login_url": url})).cookie(self.state_cookie(
                &binding.0,
                self.state_ttl,
                req.secure,
            )),
        )
    }

    pub(super) async fn login(
        &self,
        provider: &Provider,
        req: &ApiRequest,
    ) -> Result<ApiReply, GatewayError> {
        let next = safe_next(req.query("next").as_deref(), &self.allowed_origins);
        let (url, binding) = self.start_login(provider, &next, true).await?;
        Ok(ApiReply::redirect(&url).cookie(self.state_cookie(
            &binding.0,
            self.state_ttl,
            req.secure,
        )))
    }

    /// `{prefix}/login?next=`: one button per provider, each starting that provider's login.
    pub(super) fn login_page(&self, req: &ApiRequest) -> Result<ApiReply, GatewayError> {
        let next = safe_next(req.query("next").as_deref(), &self.allowed_origins);
        let next_q: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
        let buttons: String = self
            .providers
            .iter()
            .map(|p| {
                format!(
                    "<li><a class=\"provider {id}\" href=\"{prefix}/{id}/login?next={next_q}\">Log in with {name}</a></li>",
                    id = html_escape(p.id()),
                    prefix = html_escape(&self.prefix),
                    name = html_escape(p.display_name()),
                )
            })
            .collect();
        let body = if buttons.is_empty() {
            "<p>No identity provider is configured.</p>".to_string()
        } else {
            format!("<ul>{buttons}</ul>")
        };
        let page = format!(
            "<!doctype html><html><head><meta charset=utf-8><title>Log in</title>\
             <style>body{{font-family:sans-serif;max-width:24em;margin:4em auto}}ul{{list-style:none;padding:0}}\
             a.provider{{display:block;padding:.7em;margin:.5em 0;border:1px solid #ccc;border-radius:6px;\
             text-decoration:none;color:#000;text-align:center}}</style></head>\
             <body><h1>Log in</h1>{body}</body></html>"
        );
        Ok(ApiReply::html(200, page))
    }

    /// What a verified state gives a callback, or the error for a bad one. With `required`, a
    /// state must come back with the browser secret it was issued with (the state cookie).
    /// Without (`require_state = false`), a state with no cookie is accepted only for Kakao's
    /// plain flow without PKCE (the seed's client, which needs nothing derived from the secret).
    fn check_state(
        &self,
        provider: &Provider,
        state: Option<&str>,
        cookie: Option<&str>,
        required: bool,
    ) -> Result<Option<Checked>, GatewayError> {
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
            .filter(|s| s.v == provider.id())
            .ok_or(GatewayError::InvalidState)?;
        // The browser's own secret: login CSRF, and a callback URL redeemed elsewhere.
        let binding = match cookie {
            Some(c) => Some(
                self.state
                    .binding(&parsed, c)
                    .ok_or(GatewayError::InvalidState)?,
            ),
            None if required || parsed.p || !provider.takes_legacy_callbacks() => {
                return Err(GatewayError::InvalidState)
            }
            None => None,
        };
        Ok(Some(Checked {
            verifier: binding
                .as_ref()
                .filter(|_| parsed.p)
                .map(|b| self.state.pkce_verifier(b)),
            nonce: binding
                .as_ref()
                .map(|b| self.state.oidc_nonce(b))
                .unwrap_or_default(),
            next: parsed.x,
        }))
    }

    pub(super) async fn browser_callback(
        &self,
        provider: &Provider,
        req: &ApiRequest,
    ) -> Result<ApiReply, GatewayError> {
        // The browser flow always needs its state, and the cookie that proves it is this browser's.
        let state = req.query("state");
        let checked = self
            .check_state(provider, state.as_deref(), req.cookie(|n| n.state), true)?
            .expect("required");
        if let Some(err) = req.query("error") {
            // Whatever the URL says, logged quoted and short.
            let err: String = err.chars().take(64).collect();
            return Err(failed(
                provider,
                ProviderError::LoginFailed(format!("authorize returned {err:?}")),
            ));
        }
        let code = req
            .query("code")
            .filter(|c| !c.is_empty() && c.len() <= 512)
            .ok_or_else(|| GatewayError::BadRequest("callback without a code".into()))?;
        // RFC 9207's `iss` names one issuer: given twice, neither is believed.
        if req.query_count("iss") > 1 {
            return Err(GatewayError::BadRequest("iss is given more than once".into()));
        }
        let iss = req.query("iss");
        let issued = self
            .redeem(
                provider,
                &code,
                checked.verifier.as_deref(),
                &checked.nonce,
                state.as_deref().unwrap_or(""),
                iss.as_deref(),
            )
            .await?;
        let mut reply = ApiReply::redirect(&checked.next);
        for c in self.session_cookies(&issued, req.secure) {
            reply = reply.cookie(c);
        }
        Ok(reply.cookie(self.state_cookie("", 0, req.secure)))
    }

    pub(super) async fn json_callback(
        &self,
        provider: &Provider,
        req: &ApiRequest,
    ) -> Result<ApiReply, GatewayError> {
        let content_type = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut body = if req.body.is_empty() {
            CallbackBody {
                code: None,
                state: None,
                iss: None,
            }
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            let f: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(&req.body)
                    .into_owned()
                    .collect();
            CallbackBody {
                code: f.get("code").cloned(),
                state: f.get("state").cloned(),
                iss: f.get("iss").cloned(),
            }
        } else {
            serde_json::from_slice(&req.body)
                .map_err(|_| GatewayError::BadRequest("callback body is not JSON".into()))?
        };
        body.code = body.code.or_else(|| req.query("code"));
        body.state = body.state.or_else(|| req.query("state"));
        if req.query_count("iss") + usize::from(body.iss.is_some()) > 1 {
            return Err(GatewayError::BadRequest("iss is given more than once".into()));
        }
        body.iss = body.iss.or_else(|| req.query("iss"));
        let code = body
            .code
            .filter(|c| !c.is_empty() && c.len() <= 512)
            .ok_or_else(|| GatewayError::BadRequest("code is required".into()))?;
        // With `require_state`, a state and the browser's own state cookie, as on the GET flow:
        // the PKCE verifier comes from the state, so a state alone would let whoever holds a
        // callback URL redeem it by POST.
        let checked = self.check_state(
            provider,
            body.state.as_deref(),
            req.cookie(|n| n.state),
            self.require_state,
        )?;
        // Without a state (the seed's legacy client) there is no nonce to check: only Kakao's
        // plain OAuth flow works that way (Naver requires the state; OIDC needs the nonce).
        let (verifier, nonce) = match checked {
            Some(c) => (c.verifier, c.nonce),
            None if provider.takes_legacy_callbacks() => (None, String::new()),
            None => return Err(GatewayError::InvalidState),
        };
        let issued = self
            .redeem(
                provider,
                &code,
                verifier.as_deref(),
                &nonce,
                body.state.as_deref().unwrap_or(""),
                body.iss.as_deref(),
            )
            .await?;
        let reply = self.token_response(&issued);
        Ok(if self.require_state {
            reply.cookie(self.state_cookie("", 0, req.secure))
        } else {
            reply
        })
    }

    /// The code turned into a user (stored) and a new session.
    async fn redeem(
        &self,
        provider: &Provider,
        code: &str,
        code_verifier: Option<&str>,
        nonce: &str,
        state: &str,
        iss: Option<&str>,
    ) -> Result<super::Issued, GatewayError> {
        let user = provider
            .login(LoginRequest {
                code,
                code_verifier,
                nonce,
                state,
                iss,
            })
            .await
            .map_err(|e| failed(provider, e))?;
        self.issue_for(&self.store.upsert_user(&user, now()).await?)
            .await
    }
}
