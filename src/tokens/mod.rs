//! Tokens the gateway issues and trusts: JWT access tokens ([`jwt`]), the revocation set
//! ([`revocation`]), per-user cut-offs ([`cutoff`]), opaque rotating refresh tokens ([`refresh`]) and the signed login state
//! with its PKCE verifier ([`state`]). No Pingora types and no I/O.

pub mod assertion;
pub mod cutoff;
pub mod jwt;
pub mod refresh;
pub mod revocation;
pub mod state;

/// The current Unix time in seconds: what every `iat`, `exp`, cut-off and expiry is compared with.
pub fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}
