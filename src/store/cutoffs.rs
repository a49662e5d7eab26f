//! Per-user cut-offs and the security events already acted on.
//!
//! A cut-off revokes every refresh token of the user and records "tokens issued at or before
//! `not_before` are dead" in one transaction, under the user's lock (PostgreSQL), so a rotation
//! or logout racing it is ordered before or after it, never between. Other instances read
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
}

impl Store {
    /// Ends every session of `whom` begun at or before second `at`: their refresh tokens created
    /// by then are revoked, and a cut-off row tells every instance to refuse their access
    /// tokens issued by then. Doing it again changes nothing (a spool replay may). With
    /// `event`, the event's `jti` is recorded too, and an event seen before does nothing.
    pub async fn cut_off(
        &self,
        whom: &Whom,
        at: i64,
        now: i64,
        reason: &str,
        event: Option<&str>,
    ) -> Result<CutOff> {
        let mut tx = self.pool.begin().await?;
        if let Some(jti) = event {
            let new = sqlx::query(
                "INSERT INTO security_events (jti, received_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
            )
            .bind(jti)
            .bind(now)
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
        // Locked as rotation and logout lock them (`refresh.rs`); SQLite has one writer anyway.
        let lock = match self.backend {
            Backend::Postgres => " ORDER BY id FOR UPDATE",
            Backend::Sqlite => " ORDER BY id",
        };
        let rows = match whom {
            Whom::User(id) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT id FROM users WHERE id = $1{lock}"
                )))
                .bind(*id)
                .fetch_all(&mut *tx)
                .await?
            }
            Whom::Subject { providers, subject } => {
                let list: Vec<String> = (0..providers.len())
                    .map(|i| format!("${}", i + 2))
                    .collect();
                let sql =
                    format!(
                    "SELECT id FROM users WHERE provider_user_id = $1 AND provider IN ({}){lock}",
                    if list.is_empty() { "NULL".to_string() } else { list.join(", ") }
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(subject.as_str());
                for p in providers {
                    q = q.bind(p.as_str());
                }
                q.fetch_all(&mut *tx).await?
            }
        };
        let mut done = CutOff::default();
        for row in &rows {
            let user: i64 = row.try_get("id")?;
            done.refresh_revoked += sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $1 \
                 WHERE user_id = $2 AND revoked_at IS NULL AND created_at <= $3",
            )
            .bind(now)
            .bind(user)
            .bind(at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(
                "INSERT INTO user_cutoffs (user_id, not_before, reason, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(user)
            .bind(at)
            .bind(reason)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            done.users.push(user);
        }
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
    async fn a_cut_off_revokes_the_users_refresh_tokens_and_is_read_by_the_sync() {
        let (stores, _d) = stores().await;
        for s in stores {
            let kid = uniq();
            let u = s.upsert_user(&kakao(&kid, None), 100).await.unwrap();
            let other = s.upsert_user(&kakao(&uniq(), None), 100).await.unwrap();
            for (user, n) in [(u.id, 2), (other.id, 1)] {
                for _ in 0..n {
                    let h = uniq();
                    s.insert_refresh(&h, user, &uniq(), 100, 10_000)
                        .await
                        .unwrap();
                }
            }
            let point = s.sync_point().await.unwrap();
            let whom = Whom::Subject {
                providers: vec!["naver".into(), "kakao".into()],
                subject: kid.clone(),
            };
            let done = s.cut_off(&whom, 500, 500, "unlink", None).await.unwrap();
            assert_eq!((done.users.clone(), done.refresh_revoked), (vec![u.id], 2));
            let read = s.cutoffs_from(point, 0, 0).await.unwrap();
            assert!(read.iter().any(|r| (r.1, r.2) == (u.id, 500)), "{read:?}");
            assert!(!read.iter().any(|r| r.1 == other.id));
            let loaded = s.cutoffs_since(0, 400).await.unwrap();
            assert!(loaded.iter().any(|r| r.1 == u.id));
            assert!(
                s.cutoffs_since(0, 500)
                    .await
                    .unwrap()
                    .iter()
                    .all(|r| r.1 != u.id),
                "past its horizon it is not loaded"
            );
            // A session begun after the cut-off survives the same cut-off applied again.
            let later = uniq();
            s.insert_refresh(&later, u.id, &uniq(), 550, 10_000)
                .await
                .unwrap();
            let replayed = s.cut_off(&whom, 500, 560, "unlink", None).await.unwrap();
            assert_eq!(replayed.refresh_revoked, 0);
            assert!(s.refresh_family(&later, 560).await.unwrap().is_some());
            let again = s
                .cut_off(&Whom::User(u.id), 600, 600, "operator", None)
                .await
                .unwrap();
            assert_eq!(
                (again.users, again.refresh_revoked),
                (vec![u.id], 1),
                "a later cut-off ends the later session"
            );
            // Unknown people: nothing to do, no error.
            let nobody = Whom::Subject {
                providers: vec!["kakao".into()],
                subject: uniq(),
            };
            assert!(s
                .cut_off(&nobody, 600, 600, "unlink", None)
                .await
                .unwrap()
                .users
                .is_empty());
            let wrong_provider = Whom::Subject {
                providers: vec!["google".into()],
                subject: kid.clone(),
            };
            assert!(s
                .cut_off(&wrong_provider, 600, 600, "unlink", None)
                .await
                .unwrap()
                .users
                .is_empty());
            assert!(s
                .cut_off(&Whom::User(-1), 600, 600, "operator", None)
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
                .cut_off(&whom, 500, 500, "account-disabled", Some(&jti))
                .await
                .unwrap();
            assert_eq!((first.users, first.duplicate), (vec![u.id], false));
            let replay = s
                .cut_off(&whom, 900, 900, "account-disabled", Some(&jti))
                .await
                .unwrap();
            assert!(replay.duplicate && replay.users.is_empty());
            let rows = s.cutoffs_since(0, 0).await.unwrap();
            assert_eq!(rows.iter().filter(|r| r.1 == u.id).count(), 1);
        }
    }
}
