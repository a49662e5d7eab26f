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
    /// The injected names, in the configured spelling: what forward-auth answers carry
    /// (`proxy::forward_auth`). Proxied requests use [`WireNames`].
    pub user_id: bytes::Bytes,
    pub email: bytes::Bytes,
    pub nickname: bytes::Bytes,
    pub provider: bytes::Bytes,
    /// The signed identity assertion's header (`identity.assertion_header`).
    pub assertion: bytes::Bytes,
    /// The same names as `HeaderName`s (lower case), for editing the upstream request's header
    /// map directly (`proxy::upstream_request_filter`).
    pub wire: WireNames,
}

/// The injected header names as `HeaderName`s; a clone is a reference count.
#[derive(Debug, Clone)]
pub struct WireNames {
    pub user_id: http::HeaderName,
    pub email: http::HeaderName,
    pub nickname: http::HeaderName,
    pub provider: http::HeaderName,
    pub assertion: http::HeaderName,
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
        let name = |n: &str| {
            http::HeaderName::from_bytes(n.as_bytes()).expect("validated by config");
            bytes::Bytes::from(n.to_string())
        };
        // The assertion's header too, whether or not assertions are on: a client's copy would
        // otherwise reach an upstream that checks for one.
        let mut exact: Vec<String> = [
            &cfg.user_id,
            &cfg.email,
            &cfg.nickname,
            &cfg.provider,
            &cfg.assertion_header,
        ]
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
                "x-envoy-original-path",
            ]
            .map(String::from),
        );
        // Method overrides (ASP.NET Core, Laravel, Express method-override, Rails): the route's
        // methods and the CSRF rule judge the request's real method, so the upstream must too.
        exact.extend(
            [
                "x-http-method-override",
                "x-http-method",
                "x-method-override",
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
            assertion: name(&cfg.assertion_header),
            wire: {
                // `check` refuses names that are not header names.
                let wire = |n: &str| {
                    http::HeaderName::from_bytes(n.as_bytes()).expect("a checked header name")
                };
                WireNames {
                    user_id: wire(&cfg.user_id),
                    email: wire(&cfg.email),
                    nickname: wire(&cfg.nickname),
                    provider: wire(&cfg.provider),
                    assertion: wire(&cfg.assertion_header),
                }
            },
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

/// A fresh request id, ready to send: 32 hex digits, a random 64-bit prefix drawn once per
/// thread and a per-thread counter, so ids never repeat and cost no random draw per request.
pub fn new_request_id() -> http::HeaderValue {
    use std::cell::Cell;
    thread_local! {
        static NEXT: Cell<(u64, u64)> = Cell::new((rand::random(), 0));
    }
    let (prefix, count) = NEXT.with(|n| {
        let (prefix, count) = n.get();
        n.set((prefix, count.wrapping_add(1)));
        (prefix, count)
    });
    let mut hex = [0u8; 32];
    for (half, word) in [prefix, count].into_iter().enumerate() {
        for (i, byte) in word.to_be_bytes().into_iter().enumerate() {
            let at = half * 16 + i * 2;
            hex[at..at + 2].copy_from_slice(&HEX_PAIRS[byte as usize]);
        }
    }
    http::HeaderValue::from_bytes(&hex).expect("hex digits are a valid header value")
}

/// Each byte as two lower-case hex digits.
static HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = [HEX[b >> 4], HEX[b & 0xf]];
        b += 1;
    }
    t
};

/// An address as a header value. The last one formatted on each thread is kept: a keep-alive
/// connection, or a trusted proxy, sends request after request from one address, and a clone
/// only counts a reference where formatting and copying cost more than the rest of the header
/// rewrite.
pub fn ip_header_value(ip: IpAddr) -> http::HeaderValue {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<Option<(IpAddr, http::HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((cached, value)) if *cached == ip => value.clone(),
            _ => {
                let value = format_ip(ip);
                *last = Some((ip, value.clone()));
                value
            }
        }
    })
}

/// An address formatted on the stack (IPv4 by hand: `Display` costs more).
fn format_ip(ip: IpAddr) -> http::HeaderValue {
    use std::io::Write;
    if let IpAddr::V4(v4) = ip {
        let mut buf = [0u8; 15];
        let mut len = 0;
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                buf[len] = b'.';
                len += 1;
            }
            if octet >= 100 {
                buf[len] = b'0' + octet / 100;
                len += 1;
            }
            if octet >= 10 {
                buf[len] = b'0' + octet / 10 % 10;
                len += 1;
            }
            buf[len] = b'0' + octet % 10;
            len += 1;
        }
        return http::HeaderValue::from_bytes(&buf[..len]).expect("digits and dots");
    }
    let mut buf = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    write!(cursor, "{ip}").expect("an address fits in 48 bytes");
    let len = cursor.position() as usize;
    http::HeaderValue::from_bytes(&buf[..len]).expect("an address is a valid header value")
}

/// Who sent a request, as far as the gateway can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    /// The `X-Forwarded-For` to send upstream: the client, the trusted proxies between it and
    /// us, and the socket peer. What a client wrote further left is never passed on, so an
    /// upstream that reads the leftmost entry reads the real client.
    pub forwarded_for: http::HeaderValue,
}

/// The client's address: the socket peer, unless the peer is a trusted proxy; then
/// `X-Forwarded-For` is walked from the right, trusted hops skipped, and the first untrusted hop
/// is the client (nginx's `real_ip_recursive`). Only what trusted proxies appended is read, so a
/// client cannot choose its own address, and whatever it wrote further left does not matter,
/// garbage included. A chain of trusted hops only means its leftmost one. Hops may carry a port
/// (`192.0.2.1:5678`, `[2001:db8::1]:443`). `None` when a trusted proxy's chain names no client:
/// a hop where the client must be that is not an address, or more than [`MAX_HOPS`] trusted
/// hops; the request is refused then rather than guessed at. `X-Real-IP` and `Forwarded` are
/// never read.
pub fn client<'a>(
    peer: IpAddr,
    peer_trusted: bool,
    xff: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: &[IpNet],
) -> Option<Client> {
    if !peer_trusted {
        return Some(Client {
            ip: peer,
            forwarded_for: ip_header_value(peer),
        });
    }
    let mut values = xff.rev().peekable();
    if values.peek().is_none() {
        // A trusted proxy's own request (a health check), formatted cheaply.
        return Some(Client {
            ip: peer,
            forwarded_for: ip_header_value(peer),
        });
    }
    // Right to left: the peer, then each trusted hop, until the client.
    let mut chain = vec![peer];
    let mut ip = None;
    'walk: for value in values {
        for hop in value.rsplit(|&b| b == b',') {
            let hop = parse_hop(hop.trim_ascii())?;
            if chain.len() > MAX_HOPS {
                return None;
            }
            chain.push(hop);
            if !is_trusted(hop, trusted) {
                ip = Some(hop);
                break 'walk;
            }
        }
    }
    let ip = ip.unwrap_or(*chain.last().expect("the peer"));
    let mut value = Vec::with_capacity(chain.len() * 17);
    for (i, hop) in chain.iter().rev().enumerate() {
        if i > 0 {
            value.extend_from_slice(b", ");
        }
        value.extend_from_slice(ip_header_value(*hop).as_bytes());
    }
    Some(Client {
        ip,
        forwarded_for: http::HeaderValue::from_bytes(&value).expect("addresses are header-safe"),
    })
}

/// The client's address alone; see [`client`].
pub fn client_ip<'a>(
    peer: IpAddr,
    xff: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    client(peer, is_trusted(peer, trusted), xff, trusted).map(|c| c.ip)
}

/// More trusted hops than any real deployment chains: past them, the request is refused.
const MAX_HOPS: usize = 32;

fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(hop).ok()?;
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

/// Headers that tell an upstream where a request came from, which scheme, host, port or path
/// prefix the client used, or whether it was https. Rails, Spring, Django, Werkzeug's ProxyFix,
/// Express `trust proxy` and IIS build URLs and make security decisions from them, so from a peer
/// that is not a trusted proxy every one of them is removed (compared lower case with `_` read
/// as `-`): anything starting with `X-Forwarded-`, and the names in [`FORWARDING_HEADERS`].
pub fn is_forwarding_header(name: &str) -> bool {
    const PREFIX: &str = "x-forwarded-";
    let starts =
        name.len() >= PREFIX.len() && PREFIX.bytes().zip(name.bytes()).all(|(c, n)| c == fold(n));
    starts
        || FORWARDING_HEADERS.iter().any(|canon| {
            canon.len() == name.len() && canon.bytes().zip(name.bytes()).all(|(c, n)| c == fold(n))
        })
}

/// The headers the gateway sets itself, in any spelling a CGI-style upstream reads as the same
/// variable (`X_Forwarded_Proto` is `HTTP_X_FORWARDED_PROTO`): removed from every client,
/// trusted proxies included, before ours are added.
pub fn is_set_by_us(name: &str) -> bool {
    [
        "x-request-id",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    ]
    .iter()
    .any(|canon| {
        canon.len() == name.len() && canon.bytes().zip(name.bytes()).all(|(c, n)| c == fold(n))
    })
}

/// Besides every `X-Forwarded-*`: the other spellings of client address, scheme and host that
/// proxies, CDNs and frameworks use.
pub const FORWARDING_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
    "x-original-host",
    "x-host",
    "x-proxyuser-ip",
    "front-end-https",
    "x-url-scheme",
    "x-scheme",
    "x-arr-ssl",
    "x-https",
];

/// The rate-limit key for an address: IPv4 as is, IPv6 by its /64 (one subscriber's prefix),
/// IPv4-mapped IPv6 as the IPv4 address.
pub fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&peer))
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
            assertion: false,
            assertion_header: "X-Authgate-Assertion".into(),
        })
    }

    #[test]
    fn forged_identity_headers_in_any_spelling_are_stripped() {
        let r = rules();
        assert!(r.is_forgeable("X-Authgate-Assertion") && r.is_forgeable("x_authgate_assertion"));
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
            assertion: true,
            assertion_header: "Remote-Assertion".into(),
        });
        assert!(r.is_forgeable("remote_user"));
        assert!(r.is_forgeable("remote_assertion"));
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
        assert!(is_acceptable_request_id(id.as_bytes()));
        assert_ne!(id, new_request_id());
        for ip in [
            "192.0.2.1",
            "0.0.0.0",
            "10.100.9.255",
            "127.0.0.1",
            "2001:db8::1",
            "::ffff:192.0.2.1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_header_value(ip).to_str().unwrap(), ip.to_string());
        }
    }

    #[test]
    fn client_ip_is_the_rightmost_untrusted_hop_and_only_behind_trusted_proxies() {
        let trusted: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "192.0.2.7".parse::<IpAddr>().unwrap().into(),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let ci = |peer: &str, xff: &[&str]| {
            client_ip(ip(peer), xff.iter().map(|v| v.as_bytes()), &trusted)
        };
        // An untrusted peer is the client, whatever it claims.
        assert_eq!(ci("203.0.113.9", &["1.2.3.4"]), Some(ip("203.0.113.9")));
        // Behind trusted proxies: the rightmost hop that is not one of them.
        assert_eq!(
            ci("10.0.0.1", &["1.2.3.4, 198.51.100.2"]),
            Some(ip("198.51.100.2"))
        );
        assert_eq!(
            ci("10.0.0.1", &["1.2.3.4", "198.51.100.2, 10.9.9.9"]),
            Some(ip("198.51.100.2"))
        );
        assert_eq!(
            ci("10.0.0.1", &["198.51.100.2, 192.0.2.7"]),
            Some(ip("198.51.100.2"))
        );
        assert_eq!(ci("10.0.0.1", &[]), Some(ip("10.0.0.1")));
        assert_eq!(
            ci("10.0.0.1", &["10.1.1.1, 10.2.2.2"]),
            Some(ip("10.1.1.1")),
            "only proxies in the chain: the leftmost"
        );
        // Garbage the client wrote further left does not matter...
        assert_eq!(
            ci("10.0.0.1", &["garbage, \u{e9}, , 198.51.100.2"]),
            Some(ip("198.51.100.2"))
        );
        assert_eq!(
            ci("10.0.0.1", &["x", "198.51.100.2, 10.9.9.9"]),
            Some(ip("198.51.100.2"))
        );
        assert_eq!(
            ci(
                "10.0.0.1",
                &[&format!("{}198.51.100.2", "1.2.3.4, ".repeat(400))]
            ),
            Some(ip("198.51.100.2")),
            "a long forged prefix"
        );
        // ...but a hop where the client must be that is not an address names no client.
        assert_eq!(ci("10.0.0.1", &["1.2.3.4, garbage"]), None);
        assert_eq!(ci("10.0.0.1", &["1.2.3.4, "]), None);
        assert_eq!(ci("10.0.0.1", &["2001:db8::1"]), Some(ip("2001:db8::1")));
        assert_eq!(
            ci("10.0.0.1", &["198.51.100.2:5678"]),
            Some(ip("198.51.100.2"))
        );
        assert_eq!(
            ci("10.0.0.1", &["[2001:db8::1]:443"]),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            ci(
                "10.0.0.1",
                &[&format!("{}10.1.1.1", "10.1.1.1, ".repeat(40))]
            ),
            None,
            "absurdly many trusted hops"
        );
    }

    #[test]
    fn every_spelling_of_a_forwarding_header_is_recognised() {
        for name in [
            "x-forwarded-for",
            "X-Forwarded-Port",
            "x-forwarded-prefix",
            "X_Forwarded_Scheme",
            "x-forwarded-ssl",
            "x-forwarded-server",
            "x-forwarded-path",
            "Front-End-Https",
            "front_end_https",
            "Forwarded",
            "X-Real-IP",
            "x_real_ip",
            "True-Client-IP",
            "CF-Connecting-IP",
            "X-Url-Scheme",
        ] {
            assert!(is_forwarding_header(name), "{name}");
        }
        for name in [
            "x-forwarded",
            "x-request-id",
            "host",
            "forwardedx",
            "x-forward-for",
        ] {
            assert_eq!(is_forwarding_header(name), name == "x-forwarded", "{name}");
        }
    }

    #[test]
    fn ipv6_clients_share_a_key_per_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            rate_key(ip("2001:db8:1:2:aaaa::1")),
            rate_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            rate_key(ip("2001:db8:1:2::1")),
            rate_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(rate_key(ip("::ffff:198.51.100.2")), ip("198.51.100.2"));
        assert_eq!(rate_key(ip("198.51.100.2")), ip("198.51.100.2"));
    }

    #[test]
    fn forwarded_for_upstream_is_the_client_and_the_trusted_hops_only() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let xff = |peer: &str, values: &[&str]| {
            let peer = ip(peer);
            client(
                peer,
                is_trusted(peer, &trusted),
                values.iter().map(|v| v.as_bytes()),
                &trusted,
            )
            .map(|c| (c.ip, c.forwarded_for.to_str().unwrap().to_string()))
        };
        assert_eq!(
            xff("10.1.2.3", &["198.51.100.1"]),
            Some((ip("198.51.100.1"), "198.51.100.1, 10.1.2.3".into()))
        );
        // The client's own forged hops are not passed on; the proxies' are.
        assert_eq!(
            xff("10.1.2.3", &["1.2.3.4, evil\x01, 198.51.100.1, 10.0.0.9"]),
            Some((
                ip("198.51.100.1"),
                "198.51.100.1, 10.0.0.9, 10.1.2.3".into()
            ))
        );
        assert_eq!(
            xff(
                "10.1.2.3",
                &["1.2.3.4, ".repeat(300).as_str(), "198.51.100.1"]
            ),
            Some((ip("198.51.100.1"), "198.51.100.1, 10.1.2.3".into()))
        );
        assert_eq!(
            xff("203.0.113.9", &["1.2.3.4"]),
            Some((ip("203.0.113.9"), "203.0.113.9".into()))
        );
        assert_eq!(
            xff("10.1.2.3", &[]),
            Some((ip("10.1.2.3"), "10.1.2.3".into()))
        );
        assert_eq!(xff("10.1.2.3", &["bad"]), None);
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert!(is_trusted(mapped, &trusted));
    }
}
