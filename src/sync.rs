//! Keeping every instance in step with the store: the revocations and per-user cut-offs that
//! any instance (or `authgate revoke`) writes, loaded at start and read every second from
//! sync points (`store/revocations.rs` explains why that misses nothing, however late a row
//! commits); spooled cut-offs handed to the store (`lifecycle.rs`); hourly pruning.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::providers::set::EVENT_MAX_AGE;
use crate::store::{Store, StoreError, SyncPoint};
use crate::tokens::cutoff::Cutoffs;
use crate::tokens::revocation::Revocations;

/// How long after a cut-off second it is kept: longer than any access token issued before it
/// can live (`access_ttl` and the leeway), with an hour's margin for a TTL lowered since.
pub fn cutoff_horizon(access_ttl_seconds: i64, leeway_seconds: i64) -> i64 {
    access_ttl_seconds + leeway_seconds + 3600
}

/// Reads rows `(id, a, b)` page by page, each page after the last id of the one before, until a
/// page is empty, handing every row's `a` and `b` to `apply`.
async fn each_row<A, B, F, Fut>(
    mut fetch: F,
    mut apply: impl FnMut(&A, &B),
) -> Result<(), StoreError>
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<(i64, A, B)>, StoreError>>,
{
    let mut after = 0;
    loop {
        let rows = fetch(after).await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.0;
        for (_, a, b) in &rows {
            apply(a, b);
        }
    }
}

fn unix_now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// The in-memory state the sync fills.
pub struct Synced {
    pub store: Store,
    pub revocations: Arc<Revocations>,
    pub cutoffs: Arc<Cutoffs>,
    pub lifecycle: Arc<Lifecycle>,
    pub metrics: Arc<Metrics>,
    /// [`cutoff_horizon`] of the configuration served; a reload may only raise it (a longer
    /// `access_ttl_minutes` makes tokens outlive a cut-off longer), never lower it.
    pub horizon: Arc<AtomicI64>,
}

impl Synced {
    /// Loads every revocation and cut-off that can still matter; returns the sync point taken
    /// *before* loading, so whatever commits during the load is read by the sync.
    pub async fn load(&self) -> Result<SyncPoint, StoreError> {
        let point = self.store.sync_point().await?;
        each_row(
            |after| self.store.revocations_since(after, unix_now()),
            |jti, exp| self.revocations.revoke(jti, *exp),
        )
        .await?;
        each_row(
            |after| self.store.cutoffs_since(after, unix_now() - self.horizon()),
            |user, at| {
                self.cutoffs.cut(*user, *at);
            },
        )
        .await?;
        self.gauges();
        tracing::info!(
            revoked = self.revocations.len(),
            cut_off_users = self.cutoffs.len(),
            "revocations and user cut-offs loaded"
        );
        Ok(point)
    }

    fn gauges(&self) {
        self.metrics
            .revoked_tokens
            .set(self.revocations.len() as i64);
        self.metrics
            .user_cutoffs_held
            .set(self.cutoffs.len() as i64);
    }

    /// One sync pass: every revocation and cut-off from sync point `point` on, paged.
    async fn read_from(&self, point: SyncPoint) -> Result<(), StoreError> {
        each_row(
            |after| self.store.revocations_from(point, after, unix_now()),
            |jti, exp| self.revocations.revoke(jti, *exp),
        )
        .await?;
        each_row(
            |after| {
                self.store
                    .cutoffs_from(point, after, unix_now() - self.horizon())
            },
            |user, at| {
                if self.cutoffs.cut(*user, *at) {
                    tracing::info!(user, "user cut-off picked up from the store");
                }
            },
        )
        .await
    }

    fn horizon(&self) -> i64 {
        self.horizon.load(Ordering::Relaxed)
    }

    /// Every second: spooled cut-offs to the store (`lifecycle.rs`), then what other instances
    /// wrote. Each pass takes a new sync point before it reads from the previous one. Store
    /// outages only delay it: it resumes from the last point it read from.
    pub async fn run(self, mut point: SyncPoint) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune = Instant::now();
        let mut last_purge = Instant::now();
        let mut failing = false;
        let mut replay_failing = false;
        loop {
            tick.tick().await;
            if last_purge.elapsed() > Duration::from_secs(60) {
                last_purge = Instant::now();
                self.revocations.purge();
                self.cutoffs.purge(unix_now() - self.horizon());
                self.gauges();
            }
            // The spool on its own, bounded: a cut-off the store refuses or a store that hangs
            // must not hold up the sync of everything else.
            match tokio::time::timeout(Duration::from_secs(5), self.lifecycle.replay()).await {
                Ok(Ok(_)) => replay_failing = false,
                Ok(Err(e)) if !replay_failing => {
                    tracing::warn!(error = %e, "spooled user cut-offs not taken by the store yet; trying every second");
                    replay_failing = true;
                }
                Err(_) if !replay_failing => {
                    tracing::warn!("the store did not take the spooled user cut-offs within 5 s; trying every second");
                    replay_failing = true;
                }
                _ => {}
            }
            let pass = async {
                let next = self.store.sync_point().await?;
                self.read_from(point).await?;
                Ok::<_, StoreError>(next)
            };
            match pass.await {
                Ok(next) => {
                    if failing {
                        tracing::info!("store reachable again: revocation sync resumed");
                        failing = false;
                    }
                    point = next;
                    self.gauges();
                }
                Err(e) if !failing => {
                    tracing::warn!(error = %e, "revocation sync failed; verifying from memory until the store is back");
                    failing = true;
                }
                Err(_) => {}
            }
            self.metrics
                .user_cutoffs_spooled
                .set(self.lifecycle.pending() as i64);
            if last_prune.elapsed() > Duration::from_secs(3600) {
                last_prune = Instant::now();
                let now = unix_now();
                if let Err(e) = self
                    .store
                    .prune(now, now - self.horizon(), now - 2 * EVENT_MAX_AGE)
                    .await
                {
                    tracing::warn!(error = %e, "pruning expired tokens failed");
                }
            }
        }
    }
}
