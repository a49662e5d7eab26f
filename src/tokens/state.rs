//! The login `state`: a self-contained, HMAC-signed value carrying a nonce, its expiry, where to
//! go after login and whether PKCE was used. Being stateless, any instance sharing the signing key
//! accepts it and a login start writes nothing to the store. The PKCE verifier is derived from
//! the nonce with the same key, so it never has to be stored either.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginState {
    /// Random nonce.
    pub n: String,
    /// Expiry, Unix seconds.
    pub e: i64,
    /// Where to send the browser after login (already checked to be safe).
    pub x: String,
    /// Whether the authorize request carried a PKCE challenge.
    pub p: bool,
    /// The provider the login went to: a state is redeemed at that provider's callback only.
    /// (States issued before providers existed were Kakao's.)
    #[serde(default = "kakao")]
    pub v: String,
}

fn kakao() -> String {
    "kakao".into()
}

pub struct StateSigner {
    key: Vec<u8>,
}

impl StateSigner {
    pub fn new(key: &[u8]) -> StateSigner {
        StateSigner { key: key.to_vec() }
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        for p in parts {
            m.update(p);
        }
        m
    }

    pub fn issue(
        &self,
        provider: &str,
        next: &str,
        pkce: bool,
        now: i64,
        ttl: i64,
    ) -> (String, LoginState) {
        let mut nonce = [0u8; 16];
        rand::fill(&mut nonce);
        let state = LoginState {
            n: URL_SAFE_NO_PAD.encode(nonce),
            e: now + ttl,
            x: next.to_string(),
            p: pkce,
            v: provider.to_string(),
        };
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&state).expect("serialisable"));
        let sig = URL_SAFE_NO_PAD.encode(
            self.mac(&[b"state:", body.as_bytes()])
                .finalize()
                .into_bytes(),
        );
        (format!("{body}.{sig}"), state)
    }

    /// The state if it is ours, untampered and unexpired.
    pub fn verify(&self, token: &str, now: i64) -> Option<LoginState> {
        if token.len() > 2048 {
            return None;
        }
        let (body, sig) = token.split_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        self.mac(&[b"state:", body.as_bytes()])
            .verify_slice(&sig)
            .ok()?;
        let state: LoginState = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        (state.e > now).then_some(state)
    }

    /// RFC 7636 verifier (43 characters of base64url) for a state's nonce.
    pub fn pkce_verifier(&self, state: &LoginState) -> String {
        URL_SAFE_NO_PAD.encode(
            self.mac(&[b"pkce:", state.n.as_bytes()])
                .finalize()
                .into_bytes(),
        )
    }

    /// The OpenID Connect `nonce` for a state: derived like the PKCE verifier, so it is never
    /// stored, and only this login's state yields it.
    pub fn oidc_nonce(&self, state: &LoginState) -> String {
        URL_SAFE_NO_PAD.encode(
            self.mac(&[b"oidc-nonce:", state.n.as_bytes()])
                .finalize()
                .into_bytes(),
        )
    }

    pub fn pkce_challenge(verifier: &str) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_verify_only_untampered_unexpired_and_with_the_same_key() {
        let s = StateSigner::new(b"k1");
        let (token, state) = s.issue("google", "/next", true, 100, 600);
        assert_eq!(state.v, "google");
        assert_eq!(s.verify(&token, 200), Some(state.clone()));
        assert_eq!(s.verify(&token, 700), None, "expired");
        assert_eq!(
            StateSigner::new(b"k2").verify(&token, 200),
            None,
            "other key"
        );
        let forged = format!("{}x", token);
        assert_eq!(s.verify(&forged, 200), None);
        let (body, sig) = token.split_once('.').unwrap();
        let mut evil = state.clone();
        evil.x = "https://evil.example".into();
        let evil_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&evil).unwrap());
        assert_ne!(evil_body, body);
        assert_eq!(s.verify(&format!("{evil_body}.{sig}"), 200), None);
        let v = s.pkce_verifier(&state);
        assert_eq!(v.len(), 43);
        assert_eq!(StateSigner::pkce_challenge(&v).len(), 43);
        assert_eq!(
            v,
            StateSigner::new(b"k1").pkce_verifier(&state),
            "derivable on any instance"
        );
        let nonce = s.oidc_nonce(&state);
        assert_eq!(nonce, StateSigner::new(b"k1").oidc_nonce(&state));
        assert_ne!(nonce, v, "the nonce is not the PKCE verifier");
        assert_ne!(
            nonce,
            s.oidc_nonce(&s.issue("google", "/", true, 100, 600).1)
        );
        // A state from before providers existed was Kakao's.
        let old: LoginState = serde_json::from_str(r#"{"n":"x","e":1,"x":"/","p":true}"#).unwrap();
        assert_eq!(old.v, "kakao");
    }
}
