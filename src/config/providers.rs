//! `[kakao]`: the Kakao Login client, on when `client_id` is set (the seed's environment variables too).

use super::reader::{env_or, Sec};
use super::{EnvLookup, Problem};

#[derive(Debug, Clone)]
pub struct KakaoConfig {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub authorize_url: String,
    pub token_url: String,
    pub userinfo_url: String,
    pub pkce: bool,
    pub timeout_ms: u64,
}

const KAKAO_AUTHORIZE_URL: &str = "https://kauth.kakao.com/oauth/authorize";

const KAKAO_TOKEN_URL: &str = "https://kauth.kakao.com/oauth/token";

const KAKAO_USERINFO_URL: &str = "https://kapi.kakao.com/v2/user/me";

pub(super) fn read_kakao(
    s: &Sec<'_>,
    env: EnvLookup<'_>,
    p: &mut Vec<Problem>,
) -> Option<KakaoConfig> {
    s.only_keys(
        &[
            "client_id",
            "client_secret",
            "redirect_uri",
            "scopes",
            "authorize_url",
            "token_url",
            "userinfo_url",
            "pkce",
            "timeout_ms",
        ],
        p,
    );
    let client_id = env_or(env, "KAKAO_CLIENT_ID", || s.string("client_id", "", p));
    let client_secret = env_or(env, "KAKAO_CLIENT_SECRET", || {
        s.string("client_secret", "", p)
    });
    let redirect_uri = env_or(env, "KAKAO_REDIRECT_URI", || {
        s.string("redirect_uri", "", p)
    });
    let scopes = s.strings(
        "scopes",
        &["profile_nickname", "profile_image", "account_email"],
        p,
    );
    let url_key = |key: &str, default: &str, p: &mut Vec<Problem>| {
        let v = s.string(key, default, p);
        match url::Url::parse(&v) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => p.push(s.problem(
                key,
                format!("{v:?}"),
                format!("must be an absolute http(s) URL, default {default:?}"),
            )),
        }
        v
    };
    let authorize_url = url_key("authorize_url", KAKAO_AUTHORIZE_URL, p);
    let token_url = url_key("token_url", KAKAO_TOKEN_URL, p);
    let userinfo_url = url_key("userinfo_url", KAKAO_USERINFO_URL, p);
    let pkce = s.bool("pkce", true, p);
    let timeout_ms = s.int("timeout_ms", 5000, 100, 60_000, p);
    if client_id.is_empty() {
        return None;
    }
    if url::Url::parse(&redirect_uri)
        .map(|u| !matches!(u.scheme(), "http" | "https"))
        .unwrap_or(true)
    {
        p.push(s.problem(
            "redirect_uri",
            format!("{redirect_uri:?}"),
            "set the redirect URI registered at Kakao, e.g. \"https://app.example/api/auth/kakao/callback\" (env KAKAO_REDIRECT_URI)",
        ));
    }
    Some(KakaoConfig {
        client_id,
        client_secret,
        redirect_uri,
        scopes,
        authorize_url,
        token_url,
        userinfo_url,
        pkce,
        timeout_ms,
    })
}
