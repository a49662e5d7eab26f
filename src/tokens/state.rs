//! The login `state`: a self-contained, HMAC-signed value carrying its expiry, where to go after
//! login, whether PKCE was used, the provider, and a MAC of a random secret that only the
//! browser that started the login holds (its state cookie). Being stateless, any instance sharing
//! the signing key accepts it and a login start writes nothing to the store.
//!
//! The PKCE verifier and the OpenID Connect `nonce` are derived from the browser's secret, not
//! from the state: the state travels in URLs (the authorize request, the callback, a log, a
//! history), the secret only in an HttpOnly cookie. So a callback URL redeemed anywhere but in
//! the browser that started the login lacks the verifier and the nonce, as PKCE intends.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginState {
    /// HMAC of the browser's secret ([`Binding`]), base64url.
    pub b: String,
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

/// The secret a login start gives the browser (as its state cookie): 256 random bits, base64url.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding(pub String);

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

    /// A new state and the browser secret it is bound to.
    pub fn issue(
        &self,
        provider: &str,
        next: &str,
        pkce: bool,
        now: i64,
        ttl: i64,
    ) -> (String, LoginState, Binding) {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        let binding = Binding(URL_SAFE_NO_PAD.encode(secret));
        let state = LoginState {
            b: URL_SAFE_NO_PAD.encode(
                self.mac(&[b"binding:", binding.0.as_bytes()])
                    .finalize()
                    .into_bytes(),
            ),
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
        (format!("{body}.{sig}"), state, binding)
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

    /// The browser's secret, from its state cookie, if it is the one `state` was issued with.
    pub fn binding(&self, state: &LoginState, cookie: &str) -> Option<Binding> {
        let expected = URL_SAFE_NO_PAD.decode(&state.b).ok()?;
        self.mac(&[b"binding:", cookie.as_bytes()])
            .verify_slice(&expected)
            .ok()
            .map(|()| Binding(cookie.to_string()))
    }

    /// RFC 7636 verifier (43 characters of base64url) for a login's browser secret.
    pub fn pkce_verifier(&self, binding: &Binding) -> String {
        URL_SAFE_NO_PAD.encode(
            self.mac(&[b"pkce:", binding.0.as_bytes()])
                .finalize()
                .into_bytes(),
        )
    }

    /// The OpenID Connect `nonce` for a login's browser secret: derived like the PKCE verifier,
    /// so it is never stored, and only the browser that started the login can complete it.
    pub fn oidc_nonce(&self, binding: &Binding) -> String {
        URL_SAFE_NO_PAD.encode(
            self.mac(&[b"oidc-nonce:", binding.0.as_bytes()])
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
        let (token, state, binding) = s.issue("google", "/next", true, 100, 600);
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
        // A state written before providers existed was Kakao's.
        let old: LoginState = serde_json::from_str(r#"{"b":"x","e":1,"x":"/","p":true}"#).unwrap();
        assert_eq!(old.v, "kakao");
        assert!(
            !token.contains(&binding.0),
            "the secret is not in the state"
        );
    }

    #[test]
    fn only_the_browsers_secret_yields_the_verifier_and_the_nonce() {
        let s = StateSigner::new(b"k1");
        let (token, state, binding) = s.issue("google", "/", true, 100, 600);
        assert_eq!(s.binding(&state, &binding.0), Some(binding.clone()));
        // The state itself (what a callback URL carries) is not the secret.
        assert_eq!(s.binding(&state, &token), None);
        assert_eq!(s.binding(&state, ""), None);
        let (_, other_state, other) = s.issue("google", "/", true, 100, 600);
        assert_eq!(s.binding(&state, &other.0), None);
        assert_eq!(s.binding(&other_state, &binding.0), None);
        assert_eq!(
            StateSigner::new(b"k2").binding(&state, &binding.0),
            None,
            "other key"
        );

        let v = s.pkce_verifier(&binding);
        assert_eq!(v.len(), 43);
        assert_eq!(StateSigner::pkce_challenge(&v).len(), 43);
        assert_eq!(
            v,
            StateSigner::new(b"k1").pkce_verifier(&binding),
            "derivable on any instance"
        );
        let nonce = s.oidc_nonce(&binding);
        assert_eq!(nonce, StateSigner::new(b"k1").oidc_nonce(&binding));
        assert_ne!(nonce, v, "the nonce is not the PKCE verifier");
        assert_ne!(nonce, s.oidc_nonce(&other));
    }
}
