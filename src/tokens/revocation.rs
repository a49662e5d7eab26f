//! The revocation set: `jti`s of access tokens that were revoked before they expired.
//!
//! Held in memory so that checking a valid token never touches the store. Each entry keeps its
//! token's `exp` and is purged once the token could no longer be used (see [`Revocations::purge`]),
//! so the set only holds tokens that still matter.
//!
//! Why not moka: the set must hold a million revocations in a bounded budget (issue 5: ≤ 250 MB).
//! Measured here with 1,000,000 entries, a moka cache with per-entry expiry took 398 MB (352 MB
//! without the expiry policy, 307 MB even with `u128` keys); these sharded maps take a tenth of
//! that. Lookups take one shard's read lock, so concurrent requests do not contend.

use std::collections::HashMap;
use std::sync::RwLock;

const SHARDS: usize = 64;

/// Kept a little past `exp` so a token accepted within the verification leeway stays refused.
const AFTER_EXP: i64 = 300;

/// `jti` -> the token's `exp`; randomly seeded, so clients cannot pick `jti`s that pile into
/// one bucket.
type Shard = RwLock<HashMap<Box<str>, i64, ahash::RandomState>>;

pub struct Revocations {
    /// `jti` -> the token's `exp` (Unix seconds), spread over shards by `hasher`.
    shards: Box<[Shard]>,
    /// Randomly seeded, so clients cannot pick `jti`s that pile into one shard or bucket.
    hasher: ahash::RandomState,
}

use super::now;

impl Default for Revocations {
    fn default() -> Self {
        Self::new()
    }
}

impl Revocations {
    pub fn new() -> Revocations {
        Revocations {
            shards: (0..SHARDS)
                .map(|_| RwLock::new(HashMap::with_hasher(ahash::RandomState::new())))
                .collect(),
            hasher: Default::default(),
        }
    }

    fn shard(&self, jti: &str) -> &Shard {
        &self.shards[self.hasher.hash_one(jti) as usize % SHARDS]
    }

    /// Records a revocation; one whose token is already past use is not kept.
    pub fn revoke(&self, jti: &str, exp: i64) {
        if exp + AFTER_EXP < now() {
            return;
        }
        let mut shard = self.shard(jti).write().unwrap_or_else(|p| p.into_inner());
        shard.insert(jti.into(), exp);
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        self.shard(jti)
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(jti)
    }

    /// Forgets revocations of tokens that can no longer be used; returns how many remain.
    pub fn purge(&self) -> usize {
        let cutoff = now() - AFTER_EXP;
        self.shards
            .iter()
            .map(|s| {
                let mut s = s.write().unwrap_or_else(|p| p.into_inner());
                s.retain(|_, exp| *exp >= cutoff);
                if s.capacity() > 64 && s.len() < s.capacity() / 4 {
                    s.shrink_to_fit();
                }
                s.len()
            })
            .sum()
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
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
        let t = now();
        r.revoke("live", t + 60);
        r.revoke("in-leeway", t - 10);
        r.revoke("long-gone", t - 3600);
        assert!(r.is_revoked("live"));
        assert!(
            r.is_revoked("in-leeway"),
            "still refusable within the leeway"
        );
        assert!(!r.is_revoked("long-gone"), "never kept");
        assert!(!r.is_revoked("never"));
        assert_eq!(r.len(), 2);
        r.shard("live")
            .write()
            .unwrap()
            .insert("live".into(), t - 3600);
        assert_eq!(r.purge(), 1);
        assert!(!r.is_revoked("live"));
        assert!(r.is_revoked("in-leeway"));
    }

    #[test]
    fn a_million_revocations_fit_the_budget() {
        let rss = || {
            let s = std::fs::read_to_string("/proc/self/status").unwrap();
            s.lines()
                .find(|l| l.starts_with("VmRSS"))
                .unwrap()
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<i64>()
                .unwrap()
        };
        let before = rss();
        let r = Revocations::new();
        let exp = now() + 3600;
        for i in 0..1_000_000u32 {
            r.revoke(&format!("{i:032x}"), exp);
        }
        assert_eq!(r.len(), 1_000_000);
        let grown_mb = (rss() - before) / 1024;
        // Other tests run in this process too, so this is a loose bound; benches/load.sh measures.
        assert!(grown_mb < 200, "{grown_mb} MB for 1,000,000 revocations");
    }
}
