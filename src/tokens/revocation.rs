//! The revocation set: `jti`s of access tokens that were revoked before they expired.
//!
//! Held in memory (moka) so that checking a valid token never touches the store; each entry
//! expires when its token would have, so the set only holds tokens that could still be used.
//! The login issue fills it from logout and from the store at start-up.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moka::sync::Cache;
use moka::Expiry;

/// A revoked `jti` maps to its token's `exp` (Unix seconds).
pub struct Revocations {
    set: Cache<Box<str>, i64>,
}

struct UntilExp;

impl Expiry<Box<str>, i64> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &Box<str>,
        exp: &i64,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(until(*exp))
    }

    fn expire_after_update(
        &self,
        _key: &Box<str>,
        exp: &i64,
        _now: std::time::Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(until(*exp))
    }
}

/// Kept a little past `exp` so a token accepted within the verification leeway stays refused.
const AFTER_EXP: Duration = Duration::from_secs(300);

fn until(exp: i64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    Duration::from_secs(exp.saturating_sub(now).max(0) as u64) + AFTER_EXP
}

impl Default for Revocations {
    fn default() -> Self {
        Self::new()
    }
}

impl Revocations {
    pub fn new() -> Revocations {
        Revocations {
            set: Cache::builder().expire_after(UntilExp).build(),
        }
    }

    pub fn revoke(&self, jti: &str, exp: i64) {
        self.set.insert(jti.into(), exp);
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        self.set.contains_key(jti)
    }

    pub fn len(&self) -> u64 {
        self.set.run_pending_tasks();
        self.set.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_until_shortly_after_expiry() {
        let r = Revocations::new();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        r.revoke("live", now + 60);
        r.revoke("long-gone", now - 3600);
        assert!(r.is_revoked("live"));
        assert!(!r.is_revoked("never"));
        assert_eq!(until(now - 3600), AFTER_EXP);
        assert!(until(now + 60) > Duration::from_secs(60 + 290));
    }
}
