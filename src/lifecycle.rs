//! Ending every session of a user at once: Kakao's unlink calls and account-status events, and
//! operators (`authgate revoke`, the admin listener's `POST /users/{id}/revoke`).
//!
//! A cut-off is durable before it is acknowledged: written to the store (refresh tokens revoked
//! and a cut-off row, one transaction, see `store/cutoffs.rs`), then applied to this instance's
//! memory; other instances read it from the store within a sync interval (`sync.rs`).
//!
//! When the store does not take it in time (down, or slower than Kakao's 3 s patience), the
//! cut-off goes to the *spool*, a JSON-lines file (`store.spool_file`) flushed to disk before
//! the caller hears "accepted". The sync task replays the spool every second until the store
//! takes it, and at start-up, so neither an outage nor a restart loses it. Replays are
//! idempotent: a cut-off revokes only refresh tokens created up to its own second, and an
//! event is recorded by `jti`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::store::{CutOff, Store, StoreError, Whom};
use crate::tokens::cutoff::Cutoffs;

/// One cut-off as it is asked for, and as the spool keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Our user id, or a provider subject (`providers` and `subject`).
    #[serde(default)]
    pub user: Option<i64>,
    #[serde(default)]
    pub providers: Vec<String>,
    #[serde(default)]
    pub subject: Option<String>,
    /// The cut-off second: tokens issued at or before it are dead.
    pub at: i64,
    /// Metric label and store column: `unlink`, an event name, `operator`.
    pub reason: String,
    /// The security event's `jti`, when an event asked for it.
    #[serde(default)]
    pub event: Option<String>,
}

impl Request {
    pub fn whom(&self) -> Whom {
        match (self.user, &self.subject) {
            (Some(id), _) => Whom::User(id),
            (None, subject) => Whom::Subject {
                providers: self.providers.clone(),
                subject: subject.clone().unwrap_or_default(),
            },
        }
    }
}

/// What became of a cut-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// In the store and in this instance's memory.
    Done(CutOff),
    /// In the spool: applied once the store is back.
    Spooled,
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("the store did not take the cut-off ({0}) and the spool could not keep it: {1}")]
    Lost(String, std::io::Error),
}

pub struct Lifecycle {
    store: Store,
    cutoffs: Arc<Cutoffs>,
    metrics: Arc<Metrics>,
    spool: PathBuf,
    /// One writer of the spool at a time (appends and the replay's hand-over).
    spool_lock: tokio::sync::Mutex<()>,
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

impl Lifecycle {
    pub fn new(
        store: Store,
        cutoffs: Arc<Cutoffs>,
        metrics: Arc<Metrics>,
        spool: PathBuf,
    ) -> Lifecycle {
        Lifecycle {
            store,
            cutoffs,
            metrics,
            spool,
            spool_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Cuts off a user durably: in the store if it answers within `wait`, else in the spool.
    /// Counted in `authgate_user_cutoffs_total{reason}` when it cut someone off or was spooled
    /// (unknown users and replayed events are not).
    pub async fn cut_off(&self, req: Request, wait: Duration) -> Result<Outcome, LifecycleError> {
        let why = match tokio::time::timeout(wait, self.apply(&req)).await {
            Ok(Ok(done)) => {
                if !done.users.is_empty() {
                    self.count(&req.reason);
                }
                return Ok(Outcome::Done(done));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", wait.as_millis()),
        };
        self.spool_one(&req)
            .await
            .map_err(|e| LifecycleError::Lost(why.clone(), e))?;
        tracing::warn!(reason = %req.reason, store_error = %why, spool = %self.spool.display(),
            "user cut-off spooled: applied once the store takes it");
        self.count(&req.reason);
        Ok(Outcome::Spooled)
    }

    fn count(&self, reason: &str) {
        self.metrics.user_cutoffs.with_label_values(&[reason]).inc();
    }

    /// Store first, then this instance's memory.
    async fn apply(&self, req: &Request) -> Result<CutOff, StoreError> {
        let done = self
            .store
            .cut_off(
                &req.whom(),
                req.at,
                now(),
                &req.reason,
                req.event.as_deref(),
            )
            .await?;
        for user in &done.users {
            self.cutoffs.cut(*user, req.at);
        }
        self.metrics
            .user_cutoffs_held
            .set(self.cutoffs.len() as i64);
        Ok(done)
    }

    fn replaying(&self) -> PathBuf {
        let mut p = self.spool.clone().into_os_string();
        p.push(".replaying");
        p.into()
    }

    async fn spool_one(&self, req: &Request) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(req).expect("a request serialises");
        line.push(b'\n');
        let _guard = self.spool_lock.lock().await;
        let path = self.spool.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            f.write_all(&line)?;
            f.sync_all()
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// How many cut-offs wait in the spool (lines of both files).
    pub fn pending(&self) -> usize {
        [self.spool.clone(), self.replaying()]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
            .sum()
    }

    /// Hands every spooled cut-off to the store; those it takes leave the spool. Called by the
    /// sync task every second (cheap when there is no spool file) and at start-up.
    pub async fn replay(&self) -> Result<usize, StoreError> {
        let replaying = self.replaying();
        {
            // New arrivals go on to a fresh spool while this one is replayed; a replay file left
            // by an earlier failure is finished first.
            let _guard = self.spool_lock.lock().await;
            if !replaying.exists() {
                match std::fs::rename(&self.spool, &replaying) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                    Err(e) => {
                        tracing::error!(error = %e, spool = %self.spool.display(), "cannot read the spool");
                        return Ok(0);
                    }
                }
            }
        }
        let text = match std::fs::read_to_string(&replaying) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, spool = %replaying.display(), "cannot read the spool");
                return Ok(0);
            }
        };
        let mut applied = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let req: Request = match serde_json::from_str(line) {
                Ok(r) => r,
                Err(e) => {
                    // Only a torn last line (a crash mid-append) can get here; it was never
                    // acknowledged.
                    tracing::error!(error = %e, "skipping an unreadable spool line");
                    continue;
                }
            };
            // An error leaves the file for the next pass; what was applied is applied again then,
            // which changes nothing.
            let done = self.apply(&req).await?;
            tracing::info!(reason = %req.reason, users = ?done.users, "spooled user cut-off applied");
            applied += 1;
        }
        if let Err(e) = std::fs::remove_file(&replaying) {
            tracing::error!(error = %e, spool = %replaying.display(), "cannot remove the replayed spool");
        }
        Ok(applied)
    }
}

/// An operator's name for a user: our id (`42`) or a provider subject (`kakao:1234567890`).
pub fn operator_request(user: &str, at: i64) -> Result<Request, String> {
    let user = user.trim();
    let mut req = Request {
        user: None,
        providers: Vec::new(),
        subject: None,
        at,
        reason: "operator".into(),
        event: None,
    };
    if let Ok(id) = user.parse::<i64>() {
        req.user = Some(id);
    } else if let Some((provider, subject)) = user
        .split_once(':')
        .filter(|(p, s)| !p.is_empty() && !s.is_empty())
    {
        req.providers = vec![provider.to_string()];
        req.subject = Some(subject.to_string());
    } else {
        return Err(format!(
            "{user:?} is neither a user id (42) nor provider:subject (kakao:1234567890)"
        ));
    }
    Ok(req)
}

/// What an operator is told.
pub fn describe(user: &str, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Done(d) if d.users.is_empty() => format!("no user {user} in the store: nothing to revoke"),
        Outcome::Done(d) => format!(
            "cut off user(s) {:?} ({user}): {} refresh token(s) revoked, every access token issued until now refused; other instances follow within their sync interval",
            d.users, d.refresh_revoked
        ),
        Outcome::Spooled => format!(
            "the store is unavailable: the cut-off of {user} is spooled and applied once the store is back"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_name_users_by_id_or_provider_subject() {
        assert_eq!(operator_request("42", 5).unwrap().whom(), Whom::User(42));
        assert_eq!(
            operator_request("kakao:123", 5).unwrap().whom(),
            Whom::Subject {
                providers: vec!["kakao".into()],
                subject: "123".into()
            }
        );
        for bad in ["", "kakao:", ":1", "bob"] {
            assert!(operator_request(bad, 5).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn spool_lines_round_trip() {
        let r = Request {
            user: None,
            providers: vec!["kakao".into()],
            subject: Some("1".into()),
            at: 9,
            reason: "unlink".into(),
            event: Some("e".into()),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
    }
}
