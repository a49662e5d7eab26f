//! Tokens the gateway trusts: JWT access tokens ([`jwt`]) and the revocation set ([`revocation`]).
//! Later: refresh-token rotation. No Pingora types and no I/O on the verification path.

pub mod jwt;
pub mod revocation;
