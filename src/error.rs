//! Every error the gateway answers itself, and the one place its status, public code and public
//! message are chosen. Messages are generic on purpose: the cause (which claim, which backend
//! address) goes to the log only, never into a response.

use crate::providers::ProviderError;
use crate::routes::TargetError;
use crate::store::StoreError;
use crate::tokens::jwt::TokenError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("bad request target: {0}")]
    BadTarget(#[from] TargetError),
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("the client closed the connection")]
    ClientGone,
    #[error("the client stalled sending its request")]
    RequestTimeout,
    #[error("no route matches")]
    NoRoute,
    /// Over TLS: the request's host is not covered by the certificate its connection was
    /// served (SNI chose another site's).
    #[error("the host is not covered by the certificate this connection was served")]
    Misdirected,
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("no healthy backend in upstream {0}")]
    NoHealthyBackend(String),
    #[error("upstream connection failed: {0}")]
    UpstreamFailed(String),
    #[error("upstream timed out: {0}")]
    UpstreamTimeout(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// With the `Allow` header's value.
    #[error("method not allowed (allowed: {0})")]
    MethodNotAllowed(String),
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// Kakao's failures (the seed's `KAKAO_*` codes).
    #[error("{0}")]
    Provider(#[from] ProviderError),
    /// Any other provider's failures.
    #[error("{0}")]
    OtherProvider(ProviderError),
    #[error("login state missing, forged, expired or not this browser's")]
    InvalidState,
    #[error("a cookie-authenticated write from another origin")]
    CsrfRejected,
    /// A forward-auth question from a peer outside `server.trusted_proxies`.
    #[error("forward-auth asked by a peer that is not a trusted proxy")]
    UntrustedPeer,
    #[error("refresh token refused: {0}")]
    InvalidRefreshToken(&'static str),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("rate limit ({}) exceeded", .0.scope.label())]
    RateLimited(crate::limits::Exceeded),
    /// This address has `server.h2_streams_per_ip` HTTP/2 streams open already.
    #[error("too many open HTTP/2 streams from this address")]
    TooManyStreams,
}

impl From<crate::limits::Exceeded> for GatewayError {
    fn from(e: crate::limits::Exceeded) -> Self {
        GatewayError::RateLimited(e)
    }
}

/// What the client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicError {
    pub status: u16,
    pub code: &'static str,
    pub message: &'static str,
    /// `WWW-Authenticate` for 401s (RFC 6750: no error code when no credentials were sent).
    pub www_authenticate: Option<&'static str>,
}

impl GatewayError {
    pub fn public(&self) -> PublicError {
        let (status, code, message) = match self {
            GatewayError::BadTarget(_) | GatewayError::BadRequest(_) | GatewayError::ClientGone => {
                (400, "BAD_REQUEST", "The request is malformed or ambiguous.")
            }
            GatewayError::NoRoute => (404, "NOT_FOUND", "No route matches this request."),
            GatewayError::Misdirected => (
                421,
                "MISDIRECTED_REQUEST",
                "This connection's certificate does not cover the requested host; open a new connection for it.",
            ),
            GatewayError::RequestTimeout => (
                408,
                "REQUEST_TIMEOUT",
                "The request was not received in time.",
            ),
            GatewayError::Token(t) => match t {
                TokenError::Missing => (401, "UNAUTHORIZED", "Authentication is required."),
                TokenError::Expired => (401, "TOKEN_EXPIRED", "The access token has expired."),
                TokenError::Revoked(_) | TokenError::CutOff(_) | TokenError::ProviderGone(_) => {
                    (401, "TOKEN_REVOKED", "The access token has been revoked.")
                }
                TokenError::Multiple | TokenError::NotBearer | TokenError::Invalid(_) => {
                    (401, "INVALID_TOKEN", "The access token is invalid.")
                }
            },
            GatewayError::NoHealthyBackend(_) => (
                503,
                "UPSTREAM_UNAVAILABLE",
                "The service is temporarily unavailable.",
            ),
            GatewayError::UpstreamFailed(_) => (
                502,
                "UPSTREAM_UNAVAILABLE",
                "The service is temporarily unavailable.",
            ),
            GatewayError::UpstreamTimeout(_) => (
                504,
                "UPSTREAM_TIMEOUT",
                "The service did not answer in time.",
            ),
            GatewayError::Internal(_) => (500, "INTERNAL_ERROR", "An internal error occurred."),
            GatewayError::MethodNotAllowed(_) => (
                405,
                "METHOD_NOT_ALLOWED",
                "This method is not allowed here.",
            ),
            GatewayError::PayloadTooLarge(_) => {
                (413, "PAYLOAD_TOO_LARGE", "The request body is too large.")
            }
            GatewayError::Provider(ProviderError::LoginFailed(_)) => {
                (400, "KAKAO_LOGIN_FAILED", "Kakao login failed.")
            }
            GatewayError::Provider(ProviderError::Unavailable(_)) => (
                502,
                "KAKAO_UNAVAILABLE",
                "Kakao is unavailable; try again later.",
            ),
            GatewayError::Provider(ProviderError::Timeout) => {
                (504, "KAKAO_TIMEOUT", "Kakao did not answer in time.")
            }
            GatewayError::OtherProvider(ProviderError::LoginFailed(_)) => {
                (400, "LOGIN_FAILED", "Login failed.")
            }
            GatewayError::OtherProvider(ProviderError::Unavailable(_)) => (
                502,
                "PROVIDER_UNAVAILABLE",
                "The identity provider is unavailable; try again later.",
            ),
            GatewayError::OtherProvider(ProviderError::Timeout) => (
                504,
                "PROVIDER_TIMEOUT",
                "The identity provider did not answer in time.",
            ),
            GatewayError::UntrustedPeer => (
                403,
                "FORBIDDEN",
                "Only the configured trusted proxies may ask this.",
            ),
            GatewayError::CsrfRejected => (
                403,
                "CSRF_REJECTED",
                "Cookie-authenticated writes must come from this site's own pages.",
            ),
            GatewayError::InvalidState => (
                400,
                "INVALID_STATE",
                "The login state is missing or invalid; start the login again.",
            ),
            GatewayError::InvalidRefreshToken(_) => (
                400,
                "INVALID_REFRESH_TOKEN",
                "The refresh token is invalid.",
            ),
            GatewayError::Store(_) => (
                503,
                "STORE_UNAVAILABLE",
                "The token store is unavailable; try again shortly.",
            ),
            GatewayError::RateLimited(_) => (
                429,
                "RATE_LIMIT_EXCEEDED",
                "Too many requests; retry after the time in Retry-After.",
            ),
            GatewayError::TooManyStreams => (
                429,
                "TOO_MANY_STREAMS",
                "Too many open requests from this address; retry when some have finished.",
            ),
        };
        let www_authenticate = match self {
            GatewayError::Token(TokenError::Missing) => Some("Bearer realm=\"authgate\""),
            GatewayError::Token(_) => Some("Bearer realm=\"authgate\", error=\"invalid_token\""),
            _ => None,
        };
        PublicError {
            status,
            code,
            message,
            www_authenticate,
        }
    }
}

impl GatewayError {
    /// Headers that belong to this error's answer besides the JSON basics.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if let Some(w) = self.public().www_authenticate {
            h.push(("www-authenticate", w.to_string()));
        }
        if let GatewayError::MethodNotAllowed(allow) = self {
            if !allow.is_empty() {
                h.push(("allow", allow.clone()));
            }
        }
        if let GatewayError::TooManyStreams = self {
            h.push(("retry-after", "1".to_string()));
        }
        if let GatewayError::RateLimited(e) = self {
            h.push(("retry-after", e.retry_after_secs.to_string()));
            h.push(("ratelimit-limit", e.limit.to_string()));
            h.push(("ratelimit-remaining", "0".to_string()));
            h.push(("ratelimit-reset", e.retry_after_secs.to_string()));
        }
        h
    }

    /// Label for `authgate_auth_failures_total`, for token errors.
    pub fn auth_failure_reason(&self) -> Option<&'static str> {
        match self {
            GatewayError::Token(t) => Some(match t {
                TokenError::Missing => "missing",
                TokenError::Multiple => "multiple_headers",
                TokenError::NotBearer => "not_bearer",
                TokenError::Expired => "expired",
                TokenError::Revoked(_) => "revoked",
                TokenError::CutOff(_) => "user_cut_off",
                TokenError::ProviderGone(_) => "provider_removed",
                TokenError::Invalid(_) => "invalid",
            }),
            _ => None,
        }
    }
}

impl PublicError {
    /// The seed's `{error, message}` JSON body.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"error": self.code, "message": self.message}))
            .expect("static strings serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let cases: Vec<(GatewayError, u16, &str)> = vec![
            (TargetError::Fragment.into(), 400, "BAD_REQUEST"),
            (GatewayError::NoRoute, 404, "NOT_FOUND"),
            (TokenError::Missing.into(), 401, "UNAUTHORIZED"),
            (TokenError::Multiple.into(), 401, "INVALID_TOKEN"),
            (TokenError::Expired.into(), 401, "TOKEN_EXPIRED"),
            (TokenError::Revoked("j".into()).into(), 401, "TOKEN_REVOKED"),
            (TokenError::CutOff(7).into(), 401, "TOKEN_REVOKED"),
            (TokenError::ProviderGone("x".into()).into(), 401, "TOKEN_REVOKED"),
            (
                GatewayError::NoHealthyBackend("app".into()),
                503,
                "UPSTREAM_UNAVAILABLE",
            ),
            (
                GatewayError::UpstreamFailed("10.0.0.1:80 refused".into()),
                502,
                "UPSTREAM_UNAVAILABLE",
            ),
            (
                GatewayError::UpstreamTimeout("x".into()),
                504,
                "UPSTREAM_TIMEOUT",
            ),
        ];
        for (e, status, code) in cases {
            let p = e.public();
            assert_eq!((p.status, p.code), (status, code), "{e}");
            let body: serde_json::Value = serde_json::from_slice(&p.body()).unwrap();
            assert_eq!(body["error"], code);
            let body = String::from_utf8(p.body()).unwrap();
            assert!(
                !body.contains("10.0.0.1") && !body.contains("abc"),
                "{body}"
            );
        }
        assert_eq!(
            GatewayError::from(TokenError::Missing)
                .public()
                .www_authenticate,
            Some("Bearer realm=\"authgate\"")
        );
        assert!(GatewayError::from(TokenError::Expired)
            .public()
            .www_authenticate
            .unwrap()
            .contains("invalid_token"));
    }
}
