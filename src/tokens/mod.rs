//! Tokens the gateway issues and trusts: JWT access tokens ([`jwt`]), the revocation set
//! ([`revocation`]), opaque rotating refresh tokens ([`refresh`]) and the signed login state
//! with its PKCE verifier ([`state`]). No Pingora types and no I/O.

pub mod jwt;
pub mod refresh;
pub mod revocation;
pub mod state;
