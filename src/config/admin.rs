//! `[admin]`: who may act on the admin listener. Operators' actions (`POST /reload`,
//! `POST /users/{id}/revoke`, and what the operator API adds) need a bearer token; the file holds
//! only each token's SHA-256, so it can be committed.
//!
//! ```toml
//! [[admin.tokens]]
//! name = "ops"          # logged with every action it authorises
//! sha256 = "9f86d0…"    # hex SHA-256 of the token: `authgate admin-token --name ops` prints both
//! ```
//!
//! The environment variable `AUTHGATE_ADMIN_TOKEN` adds one more token, named `env`, given in
//! the clear (a Kubernetes Secret, say). With no token at all, operators' actions are answered
//! only to loopback peers.

use sha2::{Digest, Sha256};

use super::reader::Sec;
use super::{EnvLookup, Problem};

/// Shortest token accepted: 32 bytes, as `authgate admin-token` makes (256 bits).
pub const MIN_ADMIN_TOKEN_BYTES: usize = 32;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct AdminConfig {
    pub tokens: Vec<AdminToken>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    pub name: String,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.tokens.iter().map(|t| t.name.as_str()).collect();
        f.debug_struct("AdminConfig").field("tokens", &names).finish()
    }
}

pub fn sha256(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

pub(super) fn read_admin(s: &Sec<'_>, env: EnvLookup<'_>, p: &mut Vec<Problem>) -> AdminConfig {
    s.only_keys(&["tokens"], p);
    let mut tokens: Vec<AdminToken> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for t in s.array_of_tables("tokens", p) {
        t.only_keys(&["name", "sha256"], p);
        let name = t.nonempty_string("name", "", p);
        if !name.is_empty() && !is_token_name(&name) {
            p.push(t.problem(
                "name",
                format!("{name:?}"),
                "use 1 to 64 of a-z, A-Z, 0-9, '-', '_', '.', '@': it appears in the log",
            ));
        }
        if name == "env" {
            p.push(t.problem(
                "name",
                "\"env\"",
                "\"env\" names the token from AUTHGATE_ADMIN_TOKEN: choose another name",
            ));
        }
        if names.contains(&name) {
            p.push(t.problem(
                "name",
                format!("{name:?}"),
                "two tokens have this name: give each its own, so the log says who acted",
            ));
        }
        names.push(name.clone());
        let hex = t.nonempty_string("sha256", "", p);
        match parse_sha256(&hex) {
            Some(sha256) => tokens.push(AdminToken { name, sha256 }),
            None => p.push(t.problem(
                "sha256",
                format!("{:?}", hex.chars().take(80).collect::<String>()),
                "64 hex digits, the SHA-256 of the token: `authgate admin-token --name NAME` prints it",
            )),
        }
    }
    // Trimmed, as a presented token is: a Secret mounted from a file often ends in a newline.
    if let Some(token) = env("AUTHGATE_ADMIN_TOKEN").map(|t| t.trim().to_string()) {
        if token.len() < MIN_ADMIN_TOKEN_BYTES {
            p.push(Problem {
                key: "AUTHGATE_ADMIN_TOKEN (env)".into(),
                value: format!("({} bytes)", token.len()),
                fix: format!(
                    "use at least {MIN_ADMIN_TOKEN_BYTES} bytes: `authgate admin-token --name env` prints one"
                ),
            });
        } else {
            tokens.push(AdminToken {
                name: "env".into(),
                sha256: sha256(token.as_bytes()),
            });
        }
    }
    AdminConfig { tokens }
}

fn is_token_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}
