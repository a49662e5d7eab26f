//! Which client headers are stripped before forwarding and which identity headers are injected.
//! Pure: the proxy applies these rules to Pingora's request header.
//!
//! Upstreams trust `X-User-*` because only the gateway can set them. So every client header that
//! could be mistaken for one is removed first, whatever its case and whether it spells `-` as `_`
//! (several servers, e.g. nginx with `underscores_in_headers` or CGI/WSGI stacks, fold `_` into
//! `-`): the configured identity headers, anything under `strip_prefix`, and the names other auth
//! proxies use (`X-Forwarded-User`, `X-Forwarded-Email`, `X-Auth-Request-*`), and the headers
//! some frameworks read the request path from (`X-Original-URL`, `X-Rewrite-URL`, ...).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::IdentityConfig;

/// Header names compared in canonical form: lower case, `_` read as `-`.
#[derive(Debug, Clone)]
pub struct HeaderRules {
    exact: Vec<String>,
    prefixes: Vec<String>,
    /// The injected names, in the configured spelling.
    pub user_id: http::HeaderName,
    pub email: http::HeaderName,
    pub nickname: http::HeaderName,
    pub provider: http::HeaderName,
}

fn canonical(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                b.to_ascii_lowercase() as char
            }
        })
        .collect()
}

impl HeaderRules {
    pub fn new(cfg: &IdentityConfig) -> HeaderRules {
        let name =
            |n: &str| http::HeaderName::from_bytes(n.as_bytes()).expect("validated by config");
        let mut exact: Vec<String> = [&cfg.user_id, &cfg.email, &cfg.nickname, &cfg.provider]
            .iter()
            .map(|n| canonical(n))
            .collect();
        exact.extend(["x-forwarded-user", "x-forwarded-email"].map(String::from));
        // Headers some frameworks (IIS, Symfony, Laravel) take the request path from: routing
        // decided on the real target must not be overridden upstream by a client's copy.
        exact.extend(
            [
                "x-original-url",
                "x-rewrite-url",
                "x-forwarded-uri",
                "x-original-uri",
            ]
            .map(String::from),
        );
        HeaderRules {
            exact,
            prefixes: vec![canonical(&cfg.strip_prefix), "x-auth-request-".into()],
            user_id: name(&cfg.user_id),
            email: name(&cfg.email),
            nickname: name(&cfg.nickname),
            provider: name(&cfg.provider),
        }
    }

    /// True when a client header with this name must not reach the upstream.
    pub fn is_forgeable(&self, name: &str) -> bool {
        // Fast path: almost every header is far from the identity names; compare without
        // allocating by folding byte by byte.
        let eq = |canon: &str| {
            canon.len() == name.len() && canon.bytes().zip(name.bytes()).all(|(c, n)| c == fold(n))
        };
        let starts = |canon: &str| {
            name.len() >= canon.len() && canon.bytes().zip(name.bytes()).all(|(c, n)| c == fold(n))
        };
        self.exact.iter().any(|c| eq(c)) || self.prefixes.iter().any(|c| starts(c))
    }
}

fn fold(b: u8) -> u8 {
    if b == b'_' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

/// A client's `X-Request-Id` is kept only when it is a short token that is safe to log and echo.
pub fn is_acceptable_request_id(v: &[u8]) -> bool {
    (1..=64).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A fresh 128-bit request id in hex.
pub fn new_request_id() -> String {
    let n: u128 = rand::random();
    format!("{n:032x}")
}

/// The `X-Forwarded-For` value to send upstream. A trusted proxy's chain is kept and the peer
/// appended; from anyone else the client-supplied chain is dropped, since an upstream reading
/// its left end would otherwise believe whatever the client wrote.
pub fn forwarded_for(peer: IpAddr, existing: Option<&[u8]>, trusted: &[IpNet]) -> String {
    match existing {
        Some(chain) if is_trusted(peer, trusted) && !chain.is_empty() && chain.len() <= 1024 => {
            match std::str::from_utf8(chain) {
                Ok(chain) if chain.bytes().all(|b| b.is_ascii_graphic() || b == b' ') => {
                    format!("{chain}, {peer}")
                }
                _ => peer.to_string(),
            }
        }
        _ => peer.to_string(),
    }
}

pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&peer))
}

/// `X-Forwarded-Proto`: a trusted proxy's `http`/`https` is kept; otherwise the scheme of our
/// own listener.
pub fn forwarded_proto(
    peer: IpAddr,
    client_value: Option<&[u8]>,
    trusted: &[IpNet],
) -> &'static str {
    match client_value {
        Some(b"https") if is_trusted(peer, trusted) => "https",
        _ => "http",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> HeaderRules {
        HeaderRules::new(&IdentityConfig {
            user_id: "X-User-Id".into(),
            email: "X-User-Email".into(),
            nickname: "X-User-Nickname".into(),
            provider: "X-User-Provider".into(),
            strip_prefix: "X-User-".into(),
        })
    }

    #[test]
    fn forged_identity_headers_in_any_spelling_are_stripped() {
        let r = rules();
        for name in [
            "X-User-Id",
            "x-user-id",
            "X_User_Id",
            "x_user-id",
            "X-USER-ROLE",
            "x-user-",
            "X-Forwarded-User",
            "x_forwarded_email",
            "X-Auth-Request-Email",
            "x-auth-request-user",
            "X-Original-URL",
            "x_rewrite_url",
        ] {
            assert!(r.is_forgeable(name), "{name}");
        }
        for name in [
            "X-User",
            "X-Userid",
            "Authorization",
            "X-Request-Id",
            "X-Forwarded-For",
            "Cookie",
            "user-agent",
        ] {
            assert!(!r.is_forgeable(name), "{name}");
        }
    }

    #[test]
    fn custom_identity_names_are_stripped_too() {
        let r = HeaderRules::new(&IdentityConfig {
            user_id: "Remote-User".into(),
            email: "Remote-Email".into(),
            nickname: "X-User-Nickname".into(),
            provider: "X-User-Provider".into(),
            strip_prefix: "X-Auth-".into(),
        });
        assert!(r.is_forgeable("remote_user"));
        assert!(r.is_forgeable("X-Auth-Anything"));
        assert!(r.is_forgeable("X-User-Nickname"));
        assert!(!r.is_forgeable("X-User-Role"));
    }

    #[test]
    fn request_ids() {
        assert!(is_acceptable_request_id(b"abc-123_x.y:z"));
        assert!(!is_acceptable_request_id(b""));
        assert!(!is_acceptable_request_id(&[b'a'; 65]));
        assert!(!is_acceptable_request_id(b"a b"));
        assert!(!is_acceptable_request_id(b"<script>"));
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert_ne!(id, new_request_id());
    }

    #[test]
    fn forwarded_for_believes_only_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            forwarded_for(proxy, Some(b"198.51.100.1"), &trusted),
            "198.51.100.1, 10.1.2.3"
        );
        assert_eq!(
            forwarded_for(client, Some(b"1.2.3.4"), &trusted),
            "203.0.113.9"
        );
        assert_eq!(forwarded_for(client, None, &trusted), "203.0.113.9");
        assert_eq!(forwarded_for(proxy, Some(b"bad\x01"), &trusted), "10.1.2.3");
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert!(is_trusted(mapped, &trusted));
        assert_eq!(forwarded_proto(proxy, Some(b"https"), &trusted), "https");
        assert_eq!(forwarded_proto(client, Some(b"https"), &trusted), "http");
    }
}
