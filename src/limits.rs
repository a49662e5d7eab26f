//! Rate limits (governor, GCRA): the gateway's auth routes per client IP, authenticated requests
//! per verified user, anonymous requests per client IP, each overridable per route. The client IP
//! comes from `identity::client_ip`, so rotating `X-Forwarded-For` from an untrusted peer changes
//! nothing. Keys are pruned by [`Limits::prune`] so memory stays bounded however many distinct
//! clients pass.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::config::{AuthMode, Limit, RateLimitConfig};
use crate::routes::Route;

/// Keys hashed with aHash: SipHash (governor's default) cost more than the rest of a check.
type Keyed<K> = RateLimiter<
    K,
    DashMapStateStore<K, ahash::RandomState>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// Which limit refused a request (the `scope` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Auth,
    Session,
    RefreshFamily,
    Webhook,
    User,
    Ip,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::Auth,
        Scope::Session,
        Scope::RefreshFamily,
        Scope::Webhook,
        Scope::User,
        Scope::Ip,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Scope::Auth => "auth",
            Scope::Session => "session",
            Scope::RefreshFamily => "refresh_family",
            Scope::Webhook => "webhook",
            Scope::User => "user",
            Scope::Ip => "ip",
        }
    }
}

/// A refusal, with what the 429's headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    pub scope: Scope,
    /// `RateLimit-Limit`: the burst.
    pub limit: u32,
    /// Seconds until a request would be allowed (`Retry-After`, `RateLimit-Reset`).
    pub retry_after_secs: u64,
    /// The exact wait behind `retry_after_secs`.
    pub wait: Duration,
}

struct Limiter<K: std::hash::Hash + Eq + Clone> {
    inner: Option<Keyed<K>>,
    limit: Limit,
    scope: Scope,
}

impl<K: std::hash::Hash + Eq + Clone> Limiter<K> {
    fn new(limit: Limit, scope: Scope) -> Limiter<K> {
        let inner = NonZeroU32::new(limit.per_minute).map(|per_minute| {
            let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::dashmap_with_clock_and_hasher(
                Quota::per_minute(per_minute).allow_burst(burst),
                DefaultClock::default(),
                ahash::RandomState::new(),
            )
            .with_middleware::<StateInformationMiddleware>()
        });
        Limiter {
            inner,
            limit,
            scope,
        }
    }

    fn check(&self, key: &K) -> Result<(), Exceeded> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        inner.check_key(key).map(|_| ()).map_err(|not_until| {
            // The limiter's own clock: building a new one calibrates it, which cost ~13 µs
            // per refusal (criterion), a gift to whoever floods us.
            let wait = not_until.wait_time_from(inner.clock().now());
            Exceeded {
                scope: self.scope,
                limit: self.limit.burst,
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                wait,
            }
        })
    }

    fn prune(&self) -> usize {
        match &self.inner {
            Some(inner) => {
                inner.retain_recent();
                inner.shrink_to_fit();
                inner.len()
            }
            None => 0,
        }
    }
}

/// The limiters for one route: its user and IP scopes, with its overrides.
struct RouteLimiters {
    /// The route's name: a reload hands these buckets to the route of the same name and limits.
    name: String,
    /// Keyed by a hash of `sub` (random per process): no allocation per request, and no
    /// collision anyone can aim for.
    user: Limiter<u64>,
    ip: Limiter<IpAddr>,
}

pub struct Limits {
    auth: Arc<Limiter<IpAddr>>,
    session: Arc<Limiter<IpAddr>>,
    webhook: Arc<Limiter<IpAddr>>,
    /// Keyed by a hash of the family id, with `user_keys`.
    refresh_family: Arc<Limiter<u64>>,
    /// Indexed like the router's routes (`Router::routes()`), built from the same configs.
    routes: Vec<Arc<RouteLimiters>>,
    /// Requests no route takes (400, 404), per client IP with the `[rate_limit] ip` rate.
    unrouted: Arc<Limiter<IpAddr>>,
    /// Client IPs whose anonymous budget on a route ran out, until it refills: checked before a
    /// token's signature is verified or a refresh rotated, so a refused client cannot make us
    /// pay for either. Governor cannot look at a bucket without spending from it, hence this.
    blocked: Blocked,
    user_keys: ahash::RandomState,
}

/// `(route, rate key)` -> when its IP bucket has a cell again.
struct Blocked {
    map: dashmap::DashMap<(usize, IpAddr), Instant, ahash::RandomState>,
    /// Entries in `map`, read without a lock: zero (no client blocked) is the common case.
    count: AtomicUsize,
}

impl Blocked {
    fn insert(&self, route: usize, ip: IpAddr, until: Instant) {
        if self.map.insert((route, ip), until).is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn until(&self, route: usize, ip: IpAddr) -> Option<Duration> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let until = *self.map.get(&(route, ip))?;
        until.checked_duration_since(Instant::now())
    }

    fn prune(&self) -> usize {
        let now = Instant::now();
        let mut removed = 0;
        self.map.retain(|_, until| {
            let keep = *until > now;
            removed += usize::from(!keep);
            keep
        });
        self.map.shrink_to_fit();
        // Only what was removed: an insert racing with this keeps its count. (A transient
        // wrap below zero only means a lookup that finds nothing.)
        self.count.fetch_sub(removed, Ordering::Relaxed);
        self.map.len()
    }
}

impl Limits {
    /// `routes` as `Router::routes()` orders them.
    pub fn new(cfg: &RateLimitConfig, routes: &[Route]) -> Limits {
        Limits::reloaded(cfg, routes, None)
    }

    /// Limits for a reloaded configuration that keep `old`'s buckets wherever the limit is the
    /// same: the auth and unrouted scopes, and each route's by its name. A client cannot reset
    /// its budget by waiting for a reload.
    pub fn reloaded(cfg: &RateLimitConfig, routes: &[Route], old: Option<&Limits>) -> Limits {
        let keep = |old: Option<&Arc<Limiter<IpAddr>>>, limit: Limit, scope: Scope| match old {
            Some(o) if o.limit == limit => o.clone(),
            _ => Arc::new(Limiter::new(limit, scope)),
        };
        let routes = routes
            .iter()
            .map(|r| {
                // A route's override sets the limit of the scope its requests are keyed by.
                let user = match (r.rate_limit, r.auth) {
                    (Some(l), AuthMode::Required | AuthMode::Optional) => l,
                    _ => cfg.user,
                };
                let ip = match (r.rate_limit, r.auth) {
                    (Some(l), AuthMode::Public | AuthMode::Optional) => l,
                    _ => cfg.ip,
                };
                let same = old.and_then(|o| {
                    o.routes
                        .iter()
                        .find(|l| l.name == r.name && l.user.limit == user && l.ip.limit == ip)
                });
                match same {
                    Some(l) => l.clone(),
                    None => Arc::new(RouteLimiters {
                        name: r.name.clone(),
                        user: Limiter::new(user, Scope::User),
                        ip: Limiter::new(ip, Scope::Ip),
                    }),
                }
            })
            .collect();
        Limits {
            auth: keep(old.map(|o| &o.auth), cfg.auth, Scope::Auth),
            session: keep(old.map(|o| &o.session), cfg.session, Scope::Session),
            webhook: keep(old.map(|o| &o.webhook), cfg.webhook, Scope::Webhook),
            refresh_family: match old {
                Some(o) if o.refresh_family.limit == cfg.refresh_family => {
                    o.refresh_family.clone()
                }
                _ => Arc::new(Limiter::new(cfg.refresh_family, Scope::RefreshFamily)),
            },
            routes,
            unrouted: keep(old.map(|o| &o.unrouted), cfg.ip, Scope::Ip),
            // Keyed by route index, which a reload may change; its entries last seconds.
            blocked: Blocked {
                map: dashmap::DashMap::with_hasher(ahash::RandomState::new()),
                count: AtomicUsize::new(0),
            },
            // The user buckets kept are keyed with this hasher.
            user_keys: old.map_or_else(ahash::RandomState::new, |o| o.user_keys.clone()),
        }
    }

    /// The login endpoints, per client IP.
    pub fn check_auth(&self, ip: IpAddr) -> Result<(), Exceeded> {
        self.auth.check(&ip)
    }

    /// Refresh, profile and logout, per client IP (a flood guard sized for carrier NAT).
    pub fn check_session(&self, ip: IpAddr) -> Result<(), Exceeded> {
        self.session.check(&ip)
    }

    /// Kakao's webhooks, per client IP.
    pub fn check_webhook(&self, ip: IpAddr) -> Result<(), Exceeded> {
        self.webhook.check(&ip)
    }

    /// One refresh of the refresh-token family `family`.
    pub fn check_refresh_family(&self, family: &str) -> Result<(), Exceeded> {
        if self.refresh_family.inner.is_none() {
            return Ok(());
        }
        self.refresh_family.check(&self.user_keys.hash_one(family))
    }

    /// An authenticated request on `route`, per verified user.
    pub fn check_user(&self, route: usize, sub: &str) -> Result<(), Exceeded> {
        let limiter = &self.routes[route].user;
        if limiter.inner.is_none() {
            return Ok(());
        }
        limiter.check(&self.user_keys.hash_one(sub))
    }

    /// An anonymous request on `route` (or one whose token was refused), per client IP. A
    /// refusal also marks the IP as [`Limits::ip_blocked`] until its bucket refills.
    pub fn check_ip(&self, route: usize, ip: IpAddr) -> Result<(), Exceeded> {
        self.routes[route].ip.check(&ip).inspect_err(|e| {
            self.blocked.insert(route, ip, Instant::now() + e.wait);
        })
    }

    /// A request that no route takes (a refused target, an unknown path), per client IP.
    pub fn check_unrouted(&self, ip: IpAddr) -> Result<(), Exceeded> {
        self.unrouted.check(&ip)
    }

    /// Without spending anything: whether `ip` ran out of its anonymous budget on `route` and
    /// must wait, as the refusal to answer.
    pub fn ip_blocked(&self, route: usize, ip: IpAddr) -> Result<(), Exceeded> {
        match self.blocked.until(route, ip) {
            None => Ok(()),
            Some(wait) => Err(Exceeded {
                scope: Scope::Ip,
                limit: self.routes[route].ip.limit.burst,
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                wait,
            }),
        }
    }

    /// Forgets keys whose limit has fully recovered; returns how many keys remain.
    pub fn prune(&self) -> usize {
        self.auth.prune()
            + self.session.prune()
            + self.webhook.prune()
            + self.refresh_family.prune()
            + self.unrouted.prune()
            + self.blocked.prune()
            + self
                .routes
                .iter()
                .map(|r| r.user.prune() + r.ip.prune())
                .sum::<usize>()
    }
}

/// Things held at once per client address: HTTP/2 streams open over all its connections (the
/// per-address connection cap would otherwise bound memory a hundred times less tightly over
/// HTTP/2), TLS handshakes under way. Callers leave trusted proxies out.
pub struct PerAddress {
    per_ip: dashmap::DashMap<IpAddr, u32, ahash::RandomState>,
    max: u32,
}

/// One place; given back when dropped.
pub struct Place {
    streams: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    pub fn new(max: u32) -> Arc<PerAddress> {
        Arc::new(PerAddress {
            per_ip: dashmap::DashMap::with_hasher(ahash::RandomState::new()),
            max,
        })
    }

    /// A place for one more from `key` (an `identity::rate_key`), or `None` when the address
    /// holds `max`.
    pub fn acquire(self: &Arc<Self>, key: IpAddr) -> Option<Place> {
        let mut n = self.per_ip.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Place {
            streams: self.clone(),
            ip: key,
        })
    }

    pub fn open(&self, key: IpAddr) -> u32 {
        self.per_ip.get(&key).map_or(0, |n| *n)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        // Removed at zero so the map only holds addresses with open streams.
        self.streams.per_ip.remove_if_mut(&self.ip, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

/// How often [`Limits::prune`] should run.
pub const PRUNE_EVERY: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OnUnauthenticated;

    fn route(auth: AuthMode, rate_limit: Option<Limit>) -> Route {
        Route {
            name: "r".into(),
            path_prefix: "/".into(),
            host: None,
            methods: vec![],
            allow: String::new(),
            case_sensitive: false,
            upstream: "app".into(),
            upstream_index: 0,
            auth,
            on_unauthenticated: OnUnauthenticated::Status401,
            rate_limit,
            assertion: None,
            shared_cache: false,
            body_on_delete: false,
            body_on_options: false,
        }
    }

    fn cfg() -> RateLimitConfig {
        RateLimitConfig {
            auth: Limit {
                per_minute: 10,
                burst: 10,
            },
            session: Limit {
                per_minute: 3000,
                burst: 600,
            },
            refresh_family: Limit {
                per_minute: 6,
                burst: 10,
            },
            webhook: Limit {
                per_minute: 600,
                burst: 300,
            },
            user: Limit {
                per_minute: 60,
                burst: 3,
            },
            ip: Limit {
                per_minute: 60,
                burst: 2,
            },
        }
    }

    #[test]
    fn places_are_counted_per_address_and_given_back() {
        let streams = PerAddress::new(2);
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let b: IpAddr = "198.51.100.2".parse().unwrap();
        let one = streams.acquire(a).unwrap();
        let _two = streams.acquire(a).unwrap();
        assert!(streams.acquire(a).is_none(), "the third from one address");
        assert!(streams.acquire(b).is_some(), "another address");
        drop(one);
        assert_eq!(streams.open(a), 1);
        let _three = streams.acquire(a).unwrap();
        drop(_three);
        drop(_two);
        assert_eq!(streams.per_ip.len(), 0, "addresses without streams are forgotten");
    }

    #[test]
    fn the_eleventh_auth_request_in_a_minute_is_refused_for_that_ip_only() {
        let r = route(AuthMode::Public, None);
        let limits = Limits::new(&cfg(), &[r]);
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let b: IpAddr = "198.51.100.2".parse().unwrap();
        for _ in 0..10 {
            limits.check_auth(a).unwrap();
        }
        let e = limits.check_auth(a).unwrap_err();
        assert_eq!((e.scope, e.limit), (Scope::Auth, 10));
        assert!((1..=6).contains(&e.retry_after_secs), "{e:?}");
        limits.check_auth(b).unwrap();
    }

    #[test]
    fn users_do_not_share_limits_and_overrides_apply() {
        let required = route(AuthMode::Required, None);
        let tight = route(
            AuthMode::Required,
            Some(Limit {
                per_minute: 60,
                burst: 1,
            }),
        );
        let off = route(
            AuthMode::Public,
            Some(Limit {
                per_minute: 0,
                burst: 1,
            }),
        );
        let limits = Limits::new(&cfg(), &[required, tight, off]);
        for _ in 0..3 {
            limits.check_user(0, "alice").unwrap();
        }
        assert!(limits.check_user(0, "alice").is_err());
        limits.check_user(0, "bob").unwrap();
        limits.check_user(1, "carol").unwrap();
        assert!(limits.check_user(1, "carol").is_err());
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        for _ in 0..100 {
            limits.check_ip(2, ip).unwrap();
        }
    }

    #[test]
    fn pruning_forgets_recovered_keys() {
        let r = route(AuthMode::Public, None);
        let limits = Limits::new(
            &RateLimitConfig {
                ip: Limit {
                    per_minute: 6_000_000,
                    burst: 1,
                },
                ..cfg()
            },
            &[r],
        );
        for i in 0..1000u32 {
            limits.check_ip(0, IpAddr::from(i.to_be_bytes())).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(limits.prune(), 0);
    }

    #[test]
    fn an_exhausted_ip_is_blocked_without_spending_until_it_refills() {
        let limits = Limits::new(
            &RateLimitConfig {
                ip: Limit {
                    per_minute: 600,
                    burst: 2,
                },
                ..cfg()
            },
            &[
                route(AuthMode::Required, None),
                route(AuthMode::Required, None),
            ],
        );
        let (a, b): (IpAddr, IpAddr) = (
            "198.51.100.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
        );
        limits.check_ip(0, a).unwrap();
        limits.check_ip(0, a).unwrap();
        // Looking does not spend: still not blocked, and never blocked before a refusal.
        for _ in 0..10 {
            limits.ip_blocked(0, a).unwrap();
        }
        let refused = limits.check_ip(0, a).unwrap_err();
        let blocked = limits.ip_blocked(0, a).unwrap_err();
        assert_eq!(blocked.scope, Scope::Ip);
        assert!(blocked.wait <= refused.wait && blocked.wait > Duration::ZERO);
        limits.ip_blocked(0, b).unwrap();
        limits.ip_blocked(1, a).unwrap();
        assert_eq!(limits.prune(), 2, "one IP key, one block");
        // 600 a minute: one cell every 100 ms.
        std::thread::sleep(Duration::from_millis(150));
        limits.ip_blocked(0, a).unwrap();
        limits.prune();
        assert_eq!(limits.blocked.count.load(Ordering::Relaxed), 0);
    }
}
