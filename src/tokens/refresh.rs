//! Refresh tokens: opaque random strings (256 bits), stored only as their SHA-256 hash.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// A new refresh token and the hash the store keeps.
pub fn new_refresh_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash(&token);
    (token, hash)
}

pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The token that replaces `presented` when it is rotated, and its hash: derived from it with
/// the server's key (HMAC-SHA-256), so asking again gives the same successor. Within the reuse
/// grace window a token comes back (parallel page loads, a lost answer) and must not fork its
/// family into branches reuse detection could not follow; only the server can compute it.
pub fn successor(key: &[u8], presented: &str) -> (String, String) {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"authgate refresh successor\0");
    mac.update(presented.as_bytes());
    let token = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    let hash = hash(&token);
    (token, hash)
}

/// A new rotation family id.
pub fn new_family() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let (a, ha) = new_refresh_token();
        let (b, _) = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(ha.len(), 64);
        assert_eq!(hash(&a), ha);
        assert!(!ha.contains(&a));
    }

    #[test]
    fn a_successor_is_fixed_by_the_token_and_the_key() {
        let (a, _) = new_refresh_token();
        let (b, _) = new_refresh_token();
        let (next, next_hash) = successor(b"key one", &a);
        assert_eq!(successor(b"key one", &a), (next.clone(), next_hash.clone()));
        assert_eq!(next.len(), 43);
        assert_eq!(hash(&next), next_hash);
        assert_ne!(successor(b"key one", &b).0, next);
        assert_ne!(successor(b"key two", &a).0, next);
        assert_ne!(next, a);
    }
}
