//! Revoked access tokens, and how every instance reads the ones the others record.
//!
//! The sync must not miss a revocation. A cursor on row ids can: PostgreSQL assigns the id at
//! insert but shows the row at commit, so a row with a smaller id can appear after a larger
//! one was read. So the sync reads from a *sync point* instead ([`Store::sync_point`], taken
//! before each read) and on the next pass re-reads everything from the previous point:
//!
//! - PostgreSQL: every revocation carries the id of the transaction that wrote it (`txid`, a
//!   column default), and the point is `pg_snapshot_xmin`, the oldest transaction still running.
//!   Every transaction older than the point had finished before the read began, so its rows were
//!   visible to that read; rows of younger ones are read again next time. Exact, whatever the
//!   commit took.
//! - SQLite: one writer at a time, and a row's id is assigned inside the writer's lock, so ids
//!   become visible in order; the point is the highest id.
//!
//! Reading a row twice only inserts into the in-memory set again. Per-user cut-offs
//! (`cutoffs.rs`) are read from the same points.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Backend, Result, Store, StoreError};

/// Where a sync pass reads from: on PostgreSQL one transaction horizon for both tables, on
/// SQLite each table's highest id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPoint {
    pub revocations: i64,
    pub cutoffs: i64,
}

/// How long after its expiry a revocation is still read: a token within the verifier's leeway
/// still passes, and logout revokes even expired tokens.
const EXPIRED_MARGIN: i64 = 600;

fn revocation_rows(rows: &[AnyRow]) -> Result<Vec<(i64, String, i64)>> {
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("id")?,
                r.try_get("jti")?,
                r.try_get("expires_at")?,
            ))
        })
        .collect::<std::result::Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

impl Store {
    /// Records a revoked access token; idempotent.
    pub async fn revoke_access(
        &self,
        jti: &str,
        user_id: Option<i64>,
        expires_at: i64,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, user_id, expires_at, revoked_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(user_id)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Where the next reads of [`Store::revocations_from`] and [`Store::cutoffs_from`] must
    /// start so that, together with this read, nothing is missed (see the module docs).
    pub async fn sync_point(&self) -> Result<SyncPoint> {
        let sql = match self.backend {
            Backend::Postgres => {
                "SELECT CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS TEXT) AS BIGINT) AS p, \
                 0 AS c"
            }
            Backend::Sqlite => {
                "SELECT (SELECT COALESCE(MAX(id), 0) FROM revoked_tokens) AS p, \
                 (SELECT COALESCE(MAX(id), 0) FROM user_cutoffs) AS c"
            }
        };
        let row = sqlx::query(sql).fetch_one(&self.pool).await?;
        let p: i64 = row.try_get("p")?;
        Ok(match self.backend {
            Backend::Postgres => SyncPoint {
                revocations: p,
                cutoffs: p,
            },
            Backend::Sqlite => SyncPoint {
                revocations: p,
                cutoffs: row.try_get("c")?,
            },
        })
    }

    /// Revocations from sync point `point` on that can still matter, from row `after_id` on, in
    /// pages: `(id, jti, exp)`.
    pub async fn revocations_from(
        &self,
        point: SyncPoint,
        after_id: i64,
        now: i64,
    ) -> Result<Vec<(i64, String, i64)>> {
        let sql = match self.backend {
            Backend::Postgres => {
                "SELECT id, jti, expires_at FROM revoked_tokens \
                 WHERE txid >= $1 AND id > $2 AND expires_at > $3 ORDER BY id LIMIT 10000"
            }
            Backend::Sqlite => {
                "SELECT id, jti, expires_at FROM revoked_tokens \
                 WHERE id > $1 AND id > $2 AND expires_at > $3 ORDER BY id LIMIT 10000"
            }
        };
        let rows = sqlx::query(sql)
            .bind(point.revocations)
            .bind(after_id)
            .bind(now - EXPIRED_MARGIN)
            .fetch_all(&self.pool)
            .await?;
        revocation_rows(&rows)
    }

    /// Every revocation that can still matter, after row `after_id`, in pages: the start-up
    /// load (`after_id = 0` first).
    pub async fn revocations_since(
        &self,
        after_id: i64,
        now: i64,
    ) -> Result<Vec<(i64, String, i64)>> {
        let rows = sqlx::query(
            "SELECT id, jti, expires_at FROM revoked_tokens WHERE id > $1 AND expires_at > $2 ORDER BY id LIMIT 10000",
        )
        .bind(after_id)
        .bind(now - EXPIRED_MARGIN)
        .fetch_all(&self.pool)
        .await?;
        revocation_rows(&rows)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{stores, uniq};

    #[tokio::test]
    async fn revocations_are_read_from_a_sync_point_and_by_the_start_up_load() {
        let (stores, _d) = stores().await;
        for s in stores {
            let point = s.sync_point().await.unwrap();
            let (a, b, gone) = (uniq(), uniq(), uniq());
            s.revoke_access(&a, Some(1), 5000, 10).await.unwrap();
            s.revoke_access(&a, Some(1), 5000, 11).await.unwrap();
            s.revoke_access(&gone, None, 5, 10).await.unwrap();
            s.revoke_access(&b, None, 6000, 12).await.unwrap();
            // Long expired (5) is left out; shortly expired still counts (leeway). Only this
            // test's rows count: on the shared PostgreSQL a point may reach back to rows of
            // other tests whose transactions were open.
            let ours = |rows: Vec<(i64, String, i64)>| -> Vec<(i64, String, i64)> {
                rows.into_iter()
                    .filter(|r| [&a, &b, &gone].contains(&&r.1))
                    .collect()
            };
            let recent = ours(s.revocations_from(point, 0, 700).await.unwrap());
            let jtis: Vec<_> = recent.iter().map(|r| r.1.clone()).collect();
            assert!(
                jtis.contains(&a) && jtis.contains(&b),
                "{:?} {jtis:?}",
                s.backend
            );
            assert_eq!(recent.len(), 2, "{:?}", s.backend);
            // Paged by id.
            let rest = ours(s.revocations_from(point, recent[0].0, 700).await.unwrap());
            assert_eq!(rest.len(), 1);
            // A later point leaves out what was read before... on SQLite exactly; on
            // PostgreSQL rows of transactions still running at the point are read again.
            let later = s.sync_point().await.unwrap();
            assert!(later.revocations >= point.revocations);
            if s.backend == super::Backend::Sqlite {
                assert!(s.revocations_from(later, 0, 700).await.unwrap().is_empty());
            }
            let all = s.revocations_since(0, 700).await.unwrap();
            assert!(all.iter().any(|r| r.1 == a) && all.iter().any(|r| r.1 == b));
        }
    }

    /// The case a cursor on ids misses: a revocation whose transaction took its id first but
    /// committed after a later one had been read. Read from sync points, it is still found.
    #[tokio::test]
    async fn a_revocation_that_commits_late_is_still_read() {
        let (stores, _d) = stores().await;
        for s in stores {
            if s.backend != super::Backend::Postgres {
                continue;
            }
            let (late, early) = (uniq(), uniq());
            let p0 = s.sync_point().await.unwrap();
            let mut slow = s.pool.begin().await.unwrap();
            sqlx::query(
                "INSERT INTO revoked_tokens (jti, user_id, expires_at, revoked_at) VALUES ($1, NULL, 5000, 1)",
            )
            .bind(&late)
            .execute(&mut *slow)
            .await
            .unwrap();
            s.revoke_access(&early, None, 5000, 1).await.unwrap();
            let p1 = s.sync_point().await.unwrap();
            let first = s.revocations_from(p0, 0, 100).await.unwrap();
            assert!(first.iter().any(|r| r.1 == early));
            assert!(!first.iter().any(|r| r.1 == late), "not committed yet");
            let highest_seen = first.iter().map(|r| r.0).max().unwrap();
            slow.commit().await.unwrap();
            // A cursor on ids would move past it for good...
            let by_id = s.revocations_since(highest_seen, 100).await.unwrap();
            assert!(!by_id.iter().any(|r| r.1 == late));
            // ...the next read from the sync point finds it.
            let next = s.revocations_from(p1, 0, 100).await.unwrap();
            assert!(next.iter().any(|r| r.1 == late), "{next:?}");
        }
    }
}
