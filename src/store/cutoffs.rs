//! Per-user cut-offs and the security events already acted on.
//!
//! A cut-off revokes every refresh token of the user and records "tokens issued at or before
//! `not_before` are dead" in one transaction, under the user's lock (PostgreSQL), so a rotation
//! or logout racing it is ordered before or after it, never between; `not_before` is the second
//! the lock was had, so whatever the racing rotation issued is at or before it. Other instances read
//! cut-offs from sync points exactly as revocations (`revocations.rs`).
//!
//! A security event (a Kakao SET) is recorded by its `jti` in the same transaction as the
//! cut-off it causes: either both are stored or neither, so a retried delivery after a failure
//! is acted on, and a replay of a delivered one is not.

use sqlx::Row;

use super::revocations::SyncPoint;
use super::{Backend, Result, Store, StoreError};

/// Whose tokens a cut-off ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whom {
    /// Our user id (the tokens' `sub`).
    User(i64),
    /// A provider's subject: every user with one of these provider ids and this provider user
    /// id (one Kakao app can be configured as several providers, e.g. plain and OIDC).
    Subject {
        providers: Vec<String>,
        subject: String,
    },
}

/// What [`Store::cut_off`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutOff {
    /// The users cut off (none: nobody we know).
    pub users: Vec<i64>,
    /// Refresh tokens revoked by it.
    pub refresh_revoked: u64,
    /// The event was acted on before: nothing was done.
    pub duplicate: bool,
    /// The cut-off second: tokens issued at or before it are dead.
    pub at: i64,
}

fn unix_now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

impl Store {
    /// Ends every session of `whom`: their refresh tokens are revoked, and a cut-off row tells
    /// every instance to refuse their access tokens issued up to the second the user's lock was
    /// taken ([`CutOff::at`], read from this machine's clock then, so a rotation that got the
    /// lock first is cut off too). With `event`, the event's `jti` is recorded too, and an event
    /// seen before does nothing.
    pub async fn cut_off(&self, whom: &Whom, reason: &str, event: Option<&str>) -> Result<CutOff> {
        let mut tx = self.pool.begin().await?;
        let received = unix_now();
        if let Some(jti) = event {
            let new = sqlx::query(
                "INSERT INTO security_events (jti, received_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
            )
            .bind(jti)
            .bind(received)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if new == 0 {
                tx.commit().await?;
                return Ok(CutOff {
                    duplicate: true,
                    ..CutOff::default()
                });
            }
        }
        // A write first: it takes the users' row locks on PostgreSQL (ordered with rotation and
        // logout, `refresh.rs`), and SQLite's write lock at once, never a read transaction that
        // a concurrent writer would make fail with BUSY_SNAPSHOT.
        let rows = match whom {
            Whom::User(id) => {
                sqlx::query("UPDATE users SET updated_at = updated_at WHERE id = $1 RETURNING id")
                    .bind(*id)
                    .fetch_all(&mut *tx)
                    .await?
            }
            Whom::Subject { providers, subject } => {
                let list: Vec<String> = (0..providers.len())
                    .map(|i| format!("${}", i + 2))
                    .collect();
                let sql = format!(
                    "UPDATE users SET updated_at = updated_at \
                     WHERE provider_user_id = $1 AND provider IN ({}) RETURNING id",
                    if list.is_empty() {
                        "NULL".to_string()
                    } else {
                        list.join(", ")
                    }
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(subject.as_str());
                for p in providers {
                    q = q.bind(p.as_str());
                }
                q.fetch_all(&mut *tx).await?
            }
        };
        // The cut-off second: now, but never at or before one of these users' earlier
        // cut-offs. After a cut-off at T, this user's tokens are stamped T + 1 or later
        // (`tokens::cutoff::Cutoffs::issue_at`); a second cut-off within second T must refuse
        // those too, so it takes T + 1. Under the users' locks, so cut-offs are ordered.
        let mut at = unix_now();
        for row in &rows {
            let user: i64 = row.try_get("id")?;
            let prev: Option<i64> =
                sqlx::query("SELECT MAX(not_before) AS m FROM user_cutoffs WHERE user_id = $1")
                    .bind(user)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("m")?;
            if let Some(prev) = prev {
                at = at.max(prev + 1);
            }
        }
        let mut done = CutOff {
            at,
            ..CutOff::default()
        };
        for row in &rows {
            let user: i64 = row.try_get("id")?;
            done.refresh_revoked += sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(at)
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(
                "INSERT INTO user_cutoffs (user_id, not_before, reason, created_at) VALUES ($1, $2, $3, $2)",
            )
            .bind(user)
            .bind(at)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            done.users.push(user);
        }
        done.users.sort_unstable();
        tx.commit().await?;
        Ok(done)
    }

    /// Cut-offs from sync point `point` on, from row `after_id` on, that can still refuse a
    /// token (`not_before` after `since`), in pages: `(id, user_id, not_before)`.
    pub async fn cutoffs_from(
        &self,
        point: SyncPoint,
        after_id: i64,
        since: i64,
    ) -> Result<Vec<(i64, i64, i64)>> {
        let sql = match self.backend {
            Backend::Postgres => {
                "SELECT id, user_id, not_before FROM user_cutoffs \
                 WHERE txid >= $1 AND id > $2 AND not_before > $3 ORDER BY id LIMIT 10000"
            }
            Backend::Sqlite => {
                "SELECT id, user_id, not_before FROM user_cutoffs \
                 WHERE id > $1 AND id > $2 AND not_before > $3 ORDER BY id LIMIT 10000"
            }
        };
        let rows = sqlx::query(sql)
            .bind(point.cutoffs)
            .bind(after_id)
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        cutoff_rows(&rows)
    }

    /// Every cut-off that can still refuse a token, after row `after_id`: the start-up load.
    pub async fn cutoffs_since(&self, after_id: i64, since: i64) -> Result<Vec<(i64, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT id, user_id, not_before FROM user_cutoffs WHERE id > $1 AND not_before > $2 ORDER BY id LIMIT 10000",
        )
        .bind(after_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        cutoff_rows(&rows)
    }
}

fn cutoff_rows(rows: &[sqlx::any::AnyRow]) -> Result<Vec<(i64, i64, i64)>> {
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("id")?,
                r.try_get("user_id")?,
                r.try_get("not_before")?,
            ))
        })
        .collect::<std::result::Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{kakao, stores, uniq};
    use super::*;

    #[tokio::test]
    async fn cut_offs_of_one_user_are_each_after_the_last_even_in_one_second() {
        let (stores, _d) = stores().await;
        for s in stores {
            let u = s.upsert_user(&kakao(&uniq(), None), 100).await.unwrap();
            let whom = Whom::User(u.id);
            let mut last = 0;
            // Far more than fit in one second of the clock: each is still after the one before.
            for _ in 0..5 {
                let done = s.cut_off(&whom, "operator", None).await.unwrap();
                assert!(done.at > last, "{:?}: {} after {last}", s.backend, done.at);
                last = done.at;
            }
            assert!(last <= unix_now() + 5, "{:?}", s.backend);
        }
    }

    #[tokio::test]
    async fn a_cut_off_revokes_the_users_refresh_tokens_and_is_read_by_the_sync() {
        let (stores, _d) = stores().await;
        for s in stores {
            let kid = uniq();
            let u = s.upsert_user(&kakao(&kid, None), 100).await.unwrap();
            let other = s.upsert_user(&kakao(&uniq(), None), 100).await.unwrap();
            let t = unix_now();
            for (user, n) in [(u.id, 2), (other.id, 1)] {
                for _ in 0..n {
                    s.insert_refresh(&uniq(), user, &uniq(), t, t + 10_000)
                        .await
                        .unwrap();
                }
            }
            let point = s.sync_point().await.unwrap();
            let whom = Whom::Subject {
                providers: vec!["naver".into(), "kakao".into()],
                subject: kid.clone(),
            };
            let done = s.cut_off(&whom, "unlink", None).await.unwrap();
            assert_eq!((done.users.clone(), done.refresh_revoked), (vec![u.id], 2));
            assert!(done.at >= t && done.at <= unix_now());
            let read = s.cutoffs_from(point, 0, 0).await.unwrap();
            assert!(
                read.iter().any(|r| (r.1, r.2) == (u.id, done.at)),
                "{read:?}"
            );
            assert!(!read.iter().any(|r| r.1 == other.id));
            let loaded = s.cutoffs_since(0, done.at - 1).await.unwrap();
            assert!(loaded.iter().any(|r| r.1 == u.id));
            assert!(
                s.cutoffs_since(0, done.at)
                    .await
                    .unwrap()
                    .iter()
                    .all(|r| r.1 != u.id),
                "past its horizon it is not loaded"
            );
            // Again by our id: a session begun since is ended as well.
            s.insert_refresh(&uniq(), u.id, &uniq(), t, t + 10_000)
                .await
                .unwrap();
            let again = s
                .cut_off(&Whom::User(u.id), "operator", None)
                .await
                .unwrap();
            assert_eq!((again.users, again.refresh_revoked), (vec![u.id], 1));
            // Unknown people: nothing to do, no error.
            let nobody = Whom::Subject {
                providers: vec!["kakao".into()],
                subject: uniq(),
            };
            assert!(s
                .cut_off(&nobody, "unlink", None)
                .await
                .unwrap()
                .users
                .is_empty());
            let wrong_provider = Whom::Subject {
                providers: vec!["google".into()],
                subject: kid.clone(),
            };
            assert!(s
                .cut_off(&wrong_provider, "unlink", None)
                .await
                .unwrap()
                .users
                .is_empty());
            assert!(s
                .cut_off(&Whom::User(-1), "operator", None)
                .await
                .unwrap()
                .users
                .is_empty());
        }
    }

    #[tokio::test]
    async fn an_event_is_acted_on_once() {
        let (stores, _d) = stores().await;
        for s in stores {
            let kid = uniq();
            let u = s.upsert_user(&kakao(&kid, None), 100).await.unwrap();
            let whom = Whom::Subject {
                providers: vec!["kakao".into()],
                subject: kid,
            };
            let jti = uniq();
            let first = s
                .cut_off(&whom, "account-disabled", Some(&jti))
                .await
                .unwrap();
            assert_eq!((first.users, first.duplicate), (vec![u.id], false));
            let replay = s
                .cut_off(&whom, "account-disabled", Some(&jti))
                .await
                .unwrap();
            assert!(replay.duplicate && replay.users.is_empty());
            let rows = s.cutoffs_since(0, 0).await.unwrap();
            assert_eq!(rows.iter().filter(|r| r.1 == u.id).count(), 1);
        }
    }

    /// A rotation that holds the user's lock when the cut-off comes: the cut-off waits for it and
    /// its second is not before the rotation's, so the rotated pair dies too.
    #[tokio::test]
    async fn a_cut_off_waits_for_a_rotation_holding_the_lock_and_ends_it_too() {
        let (stores, _d) = stores().await;
        for s in stores {
            if s.backend != Backend::Postgres {
                continue;
            }
            let kid = uniq();
            let u = s.upsert_user(&kakao(&kid, None), 100).await.unwrap();
            let mut rotation = s.pool.begin().await.unwrap();
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind(u.id)
                .fetch_one(&mut *rotation)
                .await
                .unwrap();
            let cut = {
                let s = s.clone();
                tokio::spawn(async move { s.cut_off(&Whom::User(u.id), "operator", None).await })
            };
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            let issued_at = unix_now();
            let t = issued_at;
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, user_id, family_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(uniq())
            .bind(u.id)
            .bind(uniq())
            .bind(t)
            .bind(t + 1000)
            .execute(&mut *rotation)
            .await
            .unwrap();
            rotation.commit().await.unwrap();
            let done = cut.await.unwrap().unwrap();
            assert_eq!(done.refresh_revoked, 1, "the rotated token");
            assert!(
                done.at >= issued_at,
                "an access token issued in the rotation is cut off"
            );
        }
    }
}
