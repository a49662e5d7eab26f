//! Per-user cut-offs: "every token of user U issued at or before second T is dead".
//!
//! A Kakao unlink or account-status event, or an operator, ends all of a user's sessions at
//! once without listing their `jti`s: the user's refresh tokens are revoked in the store, and
//! every access token whose `iat` is not after the cut-off is refused here. One hash lookup by
//! user id on the hot path, and none at all while no cut-off is held (one atomic load).
//!
//! Why "at or before": `iat` has whole seconds, and a token issued in the very second of the
//! cut-off may come from a login or rotation that raced it. Refusing it is the safe side; a
//! token issued later in that second on this instance is stamped with the next second instead
//! (see [`Cutoffs::issue_at`]), so a fresh login right after a cut-off works. A second cut-off
//! of the same user is therefore never at or before the first: it takes at least the next
//! second ([`Cutoffs::cut_anew`], and the store the same way), so it refuses the tokens stamped
//! ahead too. Whatever was issued before a cut-off is dead after it.
//!
//! Entries are dropped once every token they could refuse has expired ([`Cutoffs::purge`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

const SHARDS: usize = 16;

type Shard = RwLock<HashMap<i64, i64, ahash::RandomState>>;

pub struct Cutoffs {
    /// user id -> the cut-off second.
    shards: Box<[Shard]>,
    /// How many entries all shards hold: zero makes the hot-path check free.
    held: AtomicUsize,
}

impl Default for Cutoffs {
    fn default() -> Self {
        Self::new()
    }
}

impl Cutoffs {
    pub fn new() -> Cutoffs {
        Cutoffs {
            shards: (0..SHARDS)
                .map(|_| RwLock::new(HashMap::with_hasher(ahash::RandomState::new())))
                .collect(),
            held: AtomicUsize::new(0),
        }
    }

    fn shard(&self, user: i64) -> &Shard {
        &self.shards[user.rem_euclid(SHARDS as i64) as usize]
    }

    /// Records that every token of `user` issued at or before `at` is dead; a later cut-off
    /// replaces an earlier one, never the other way round. True when it changed anything.
    pub fn cut(&self, user: i64, at: i64) -> bool {
        let mut shard = self.shard(user).write().unwrap_or_else(|p| p.into_inner());
        match shard.get_mut(&user) {
            Some(t) if *t >= at => false,
            Some(t) => {
                *t = at;
                true
            }
            None => {
                shard.insert(user, at);
                self.held.fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    }

    /// Records a *new* cut-off of `user` asked for at `at`: it also refuses the tokens stamped
    /// after the user's previous cut-off (see [`Cutoffs::issue_at`]), so it is never at or
    /// before that one. The store orders cut-offs the same way (`store/cutoffs.rs`); this is
    /// for one it has not taken yet (spooled). Returns the second recorded.
    pub fn cut_anew(&self, user: i64, at: i64) -> i64 {
        let mut shard = self.shard(user).write().unwrap_or_else(|p| p.into_inner());
        let at = match shard.get(&user) {
            Some(t) => at.max(t + 1),
            None => {
                self.held.fetch_add(1, Ordering::Relaxed);
                at
            }
        };
        shard.insert(user, at);
        at
    }

    /// True when a token of `user` issued at `iat` is dead.
    #[inline]
    pub fn cuts_off(&self, user: i64, iat: i64) -> bool {
        if self.held.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.shard(user)
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&user)
            .is_some_and(|t| iat <= *t)
    }

    /// The `iat` for a token of `user` issued at `now`: the second after the user's cut-off
    /// when that is later, so a token issued in the second of a cut-off is not born dead.
    pub fn issue_at(&self, user: i64, now: i64) -> i64 {
        if self.held.load(Ordering::Relaxed) == 0 {
            return now;
        }
        match self
            .shard(user)
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&user)
        {
            Some(t) if *t >= now => t + 1,
            _ => now,
        }
    }

    /// Forgets cut-offs at or before `before`: every token they refuse has expired by then.
    /// Returns how many remain.
    pub fn purge(&self, before: i64) -> usize {
        for s in self.shards.iter() {
            let mut s = s.write().unwrap_or_else(|p| p.into_inner());
            let was = s.len();
            s.retain(|_, t| *t > before);
            // Under the shard's lock, like the increment in `cut`: the count never drops below
            // what the shards hold.
            self.held.fetch_sub(was - s.len(), Ordering::Relaxed);
        }
        self.len()
    }

    pub fn len(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_off_refuses_tokens_issued_up_to_its_second_and_only_its_users() {
        let c = Cutoffs::new();
        assert!(!c.cuts_off(7, 0), "nothing held");
        assert!(c.cut(7, 1000));
        assert!(c.cuts_off(7, 999) && c.cuts_off(7, 1000));
        assert!(!c.cuts_off(7, 1001), "issued after the cut-off");
        assert!(!c.cuts_off(8, 10), "another user");
        assert!(!c.cuts_off(-7, 10) && !c.cuts_off(7 + SHARDS as i64, 10));
        assert!(!c.cut(7, 900), "an older cut-off changes nothing");
        assert!(c.cuts_off(7, 1000));
        assert!(c.cut(7, 2000));
        assert!(c.cuts_off(7, 1500));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn tokens_issued_in_the_second_of_a_cut_off_are_stamped_after_it() {
        let c = Cutoffs::new();
        assert_eq!(c.issue_at(7, 1000), 1000);
        c.cut(7, 1000);
        assert_eq!(c.issue_at(7, 1000), 1001);
        assert!(!c.cuts_off(7, c.issue_at(7, 1000)));
        assert_eq!(c.issue_at(7, 1005), 1005);
        assert_eq!(c.issue_at(8, 1000), 1000);
    }

    #[test]
    fn a_second_cut_off_in_the_same_second_refuses_the_token_stamped_after_the_first() {
        let c = Cutoffs::new();
        assert_eq!(c.cut_anew(7, 1000), 1000);
        let stamped = c.issue_at(7, 1000);
        assert_eq!(stamped, 1001);
        assert!(!c.cuts_off(7, stamped), "a login right after the first lives");
        assert_eq!(c.cut_anew(7, 1000), 1001, "the second takes the next second");
        assert!(c.cuts_off(7, stamped), "and refuses the token issued before it");
        assert_eq!(c.issue_at(7, 1000), 1002);
        assert_eq!(c.cut_anew(8, 1000), 1000, "another user's first");
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn purged_once_nothing_they_refuse_can_be_alive() {
        let c = Cutoffs::new();
        c.cut(1, 100);
        c.cut(2, 200);
        assert_eq!(c.purge(150), 1);
        assert!(!c.cuts_off(1, 50));
        assert!(c.cuts_off(2, 150));
        assert_eq!(c.purge(300), 0);
        assert!(c.is_empty());
        assert!(!c.cuts_off(2, 150));
    }
}
