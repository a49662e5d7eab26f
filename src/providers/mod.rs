//! Identity providers: the real Kakao client and the fake Kakao the demo and tests run against.

pub mod kakao;
pub mod mock;

/// How a login through the provider failed; `error.rs` turns each into its status and code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The user's code is bad, expired or reused, the redirect URI differs, or consent was denied.
    #[error("login failed: {0}")]
    LoginFailed(String),
    /// Unreachable, 5xx, or an answer that is not Kakao's JSON.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    #[error("provider timed out")]
    Timeout,
}
