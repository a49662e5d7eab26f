//! Ending every session of a user at once: Kakao's unlink calls and account-status events, and
//! operators (`authgate revoke`, the admin listener's `POST /users/{id}/revoke`).
//!
//! A cut-off is durable before it is acknowledged: written to the store (refresh tokens revoked
//! and a cut-off row, one transaction, see `store/cutoffs.rs`), then applied to this instance's
//! memory; other instances read it from the store within a sync interval (`sync.rs`).
//!
//! When the store does not take it in time (down, or slower than Kakao's 3 s patience), the
//! cut-off goes to the *spool*, a JSON-lines file (`store.spool_file`, one process's: it holds
//! a lock on `{spool_file}.lock`) flushed to disk before the caller hears "accepted". The sync
//! task replays the spool every second until the store takes it, and at start-up, so neither an
//! outage nor a restart loses it. A replayed cut-off ends the sessions that exist when the store
//! takes it; what was applied leaves the spool at once, and an event is recorded by `jti`, so a
//! replay interrupted halfway does not act twice.

use std::path::{Path, PathBuf};
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
    /// When it was asked for; the store takes its own second (`store/cutoffs.rs`), and until
    /// then a spooled cut-off of a known user id refuses tokens up to this one here.
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
    /// Held for the process's life: no other process appends to or replays this spool.
    _owner: std::fs::File,
}

/// Creates or opens `path` for appending, owner-only (it holds provider user ids); a file it
/// creates is made durable in its directory too.
fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let existed = path.exists();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    if !existed {
        sync_dir(path)?;
    }
    Ok(f)
}

/// Makes a creation, rename or removal in `path`'s directory durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    p.into()
}

/// Replaces `path` with `lines`, atomically (a new file renamed over it).
fn rewrite(path: &Path, lines: &[&str]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = with_suffix(path, ".tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = open_append(&tmp)?;
    for line in lines {
        f.write_all(format!("\n{line}\n").as_bytes())?;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

impl Lifecycle {
    /// Fails when the spool's directory is not writable or another process owns the spool.
    pub fn new(
        store: Store,
        cutoffs: Arc<Cutoffs>,
        metrics: Arc<Metrics>,
        spool: PathBuf,
    ) -> std::io::Result<Lifecycle> {
        let owner = open_append(&with_suffix(&spool, ".lock"))?;
        owner.try_lock().map_err(|_| {
            std::io::Error::other(format!(
                "another authgate process uses the spool {} (give each its own store.spool_file)",
                spool.display()
            ))
        })?;
        Ok(Lifecycle {
            store,
            cutoffs,
            metrics,
            spool,
            spool_lock: tokio::sync::Mutex::new(()),
            _owner: owner,
        })
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
        // Known by our id: this instance refuses the user's tokens already.
        if let Some(user) = req.user {
            self.cutoffs.cut_anew(user, req.at);
        }
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
            .cut_off(&req.whom(), &req.reason, req.event.as_deref())
            .await?;
        for user in &done.users {
            self.cutoffs.cut(*user, done.at);
        }
        self.metrics
            .user_cutoffs_held
            .set(self.cutoffs.len() as i64);
        Ok(done)
    }

    fn replaying(&self) -> PathBuf {
        with_suffix(&self.spool, ".replaying")
    }

    async fn spool_one(&self, req: &Request) -> std::io::Result<()> {
        // A newline first as well: a line torn by a crash or a full disk before this one stays
        // a line of its own (skipped), never glued to this one.
        let line = format!(
            "\n{}\n",
            serde_json::to_string(req).expect("a request serialises")
        );
        let _guard = self.spool_lock.lock().await;
        let path = self.spool.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut f = open_append(&path)?;
            f.write_all(line.as_bytes())?;
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

    /// Hands every spooled cut-off to the store; those it takes leave the spool at once. Called
    /// by the sync task every second (cheap when there is no spool file), at start-up first.
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
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        for (i, line) in lines.iter().enumerate() {
            let req: Request = match serde_json::from_str(line) {
                Ok(r) => r,
                Err(e) => {
                    // A line torn by a crash or a full disk mid-append: never acknowledged.
                    tracing::error!(error = %e, "skipping an unreadable spool line");
                    continue;
                }
            };
            match self.apply(&req).await {
                Ok(done) => {
                    tracing::info!(reason = %req.reason, users = ?done.users, "spooled user cut-off applied")
                }
                Err(e) => {
                    // What was applied leaves the file now: it is not applied again later.
                    if i > 0 {
                        if let Err(e) = rewrite(&replaying, &lines[i..]) {
                            tracing::error!(error = %e, spool = %replaying.display(), "cannot shorten the spool");
                        }
                    }
                    return Err(e);
                }
            }
        }
        if let Err(e) = std::fs::remove_file(&replaying).and_then(|()| sync_dir(&replaying)) {
            tracing::error!(error = %e, spool = %replaying.display(), "cannot remove the replayed spool");
        }
        Ok(lines.len())
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
