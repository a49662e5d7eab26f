//! The SQL store: users, hashed rotating refresh tokens, revoked access tokens.
//!
//! One schema on SQLite (the embedded default: a file, WAL) and PostgreSQL (several instances),
//! through sqlx's `Any` driver so every query is written once. Parameters use `$N`, which both
//! accept. Migrations are embedded per backend and run at start-up. Times are Unix seconds.
//!
//! Every pool and connection here belongs to the application runtime (see `server.rs`): call
//! these methods only from tasks running there.

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// The store could not be reached or refused the write; the API answers 503. Shared (`Arc`) so
/// one failure can answer every request that waited on it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("store unavailable: {0}")]
pub struct StoreError(std::sync::Arc<sqlx::Error>);

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError(std::sync::Arc::new(e))
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: i64,
    pub provider: String,
    pub provider_user_id: String,
    pub username: String,
    pub email: Option<String>,
    pub nickname: String,
    pub profile_image: Option<String>,
    pub created_at: i64,
}

/// What a provider told us about a user.
#[derive(Debug, Clone)]
pub struct ProviderUser {
    pub provider: String,
    pub provider_user_id: String,
    /// Only when the provider marks it valid and verified.
    pub email: Option<String>,
    pub nickname: String,
    pub profile_image: Option<String>,
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was live; it is now used and the new one is stored in its family.
    Rotated { user_id: i64 },
    /// The token had been used within the grace window (parallel page loads, a lost answer):
    /// the new one is stored in its family and the family stays intact.
    RotatedInGrace { user_id: i64 },
    /// The token had been used before the grace window: its whole family is now revoked.
    Reused { user_id: i64 },
    /// Unknown, expired or revoked.
    Invalid,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    pub backend: Backend,
}

/// How long the revocation insert may take on PostgreSQL before it fails (and logout answers 503).
pub const MAX_REVOCATION_WRITE: Duration = Duration::from_secs(5);
/// How far back each sync tick re-reads by `recorded_ms`; see `revocations_recorded_since`.
pub const SYNC_OVERLAP: Duration = Duration::from_secs(10);

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

/// Stores a refresh token (by hash) in `family`, on the pool or inside a rotation's transaction.
async fn insert_refresh_on<'e>(
    on: impl sqlx::Executor<'e, Database = sqlx::Any>,
    hash: &str,
    user_id: i64,
    family: &str,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, user_id, family_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash)
    .bind(user_id)
    .bind(family)
    .bind(now)
    .bind(expires_at)
    .execute(on)
    .await?;
    Ok(())
}

fn user_from(row: &AnyRow) -> std::result::Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        provider: row.try_get("provider")?,
        provider_user_id: row.try_get("provider_user_id")?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        nickname: row.try_get("nickname")?,
        profile_image: row.try_get("profile_image")?,
        created_at: row.try_get("created_at")?,
    })
}

macro_rules! user_columns {
    () => {
        "id, provider, provider_user_id, username, email, nickname, profile_image, created_at"
    };
}

impl Store {
    /// Connects (creating a SQLite file if missing), enables WAL, and runs the migrations.
    /// `busy_timeout` bounds how long a write waits for a locked SQLite database.
    pub async fn connect(url: &str, busy_timeout: Duration, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url).ok_or_else(|| {
            sqlx::Error::Configuration("store.url must start with sqlite: or postgres://".into())
        })?;
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_string(),
        };
        let busy_ms = busy_timeout.as_millis() as u64;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(busy_timeout + Duration::from_secs(1))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "PRAGMA busy_timeout = {busy_ms}"
                        )))
                        .execute(&mut *conn)
                        .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        if backend == Backend::Sqlite {
            // WAL is a property of the file: set once, readers never block the writer.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        let migrator = match backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| sqlx::Error::Migrate(Box::new(e)))?;
        Ok(Store { pool, backend })
    }

    /// Inserts or updates the user identified by (provider, provider id); never matched by email.
    pub async fn upsert_user(&self, u: &ProviderUser, now: i64) -> Result<User> {
        let username = format!("{}_{}", u.provider, u.provider_user_id);
        let row = sqlx::query(concat!(
            "INSERT INTO users (provider, provider_user_id, username, email, nickname, profile_image, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (provider, provider_user_id) DO UPDATE SET \
               email = COALESCE(excluded.email, users.email), \
               nickname = CASE WHEN excluded.nickname = '' THEN users.nickname ELSE excluded.nickname END, \
               profile_image = COALESCE(excluded.profile_image, users.profile_image), \
               updated_at = excluded.updated_at \
             RETURNING ",
            user_columns!()
        ))
        .bind(&u.provider)
        .bind(&u.provider_user_id)
        .bind(&username)
        .bind(&u.email)
        .bind(&u.nickname)
        .bind(&u.profile_image)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(user_from(&row)?)
    }

    pub async fn user(&self, id: i64) -> Result<Option<User>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from).transpose()?)
    }

    /// Stores a new refresh token (by hash) starting or continuing `family`.
    pub async fn insert_refresh(
        &self,
        hash: &str,
        user_id: i64,
        family: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        insert_refresh_on(&self.pool, hash, user_id, family, now, expires_at).await
    }

    /// Marks `old_hash` used and stores `new_hash` in its family, atomically: of any number of
    /// concurrent calls with one token exactly one rotates. A token used less than `grace`
    /// seconds ago gets a new token in its family as well; one used earlier revokes its whole
    /// family (reuse detection).
    pub async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: i64,
        new_expires_at: i64,
        grace: i64,
    ) -> Result<Rotation> {
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1 \
             RETURNING user_id, family_id",
        )
        .bind(now)
        .bind(old_hash)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = claimed {
            let user_id: i64 = row.try_get("user_id")?;
            let family: String = row.try_get("family_id")?;
            insert_refresh_on(&mut *tx, new_hash, user_id, &family, now, new_expires_at).await?;
            tx.commit().await?;
            return Ok(Rotation::Rotated { user_id });
        }
        let existing = sqlx::query(
            "SELECT user_id, family_id, used_at, revoked_at, expires_at FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(old_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let in_grace = |row: &AnyRow| -> std::result::Result<bool, sqlx::Error> {
            let used_at: Option<i64> = row.try_get("used_at")?;
            let revoked_at: Option<i64> = row.try_get("revoked_at")?;
            let expires_at: i64 = row.try_get("expires_at")?;
            Ok(grace > 0
                && revoked_at.is_none()
                && expires_at > now
                && used_at.is_some_and(|used| now - used < grace))
        };
        let outcome = match existing {
            Some(row) if in_grace(&row)? => {
                let user_id: i64 = row.try_get("user_id")?;
                let family: String = row.try_get("family_id")?;
                insert_refresh_on(&mut *tx, new_hash, user_id, &family, now, new_expires_at)
                    .await?;
                Rotation::RotatedInGrace { user_id }
            }
            // Reuse of a token whose family is already revoked (after logout, or an earlier
            // reuse) is no news: refused, not counted as another theft.
            Some(row)
                if row.try_get::<Option<i64>, _>("used_at")?.is_some()
                    && row.try_get::<Option<i64>, _>("revoked_at")?.is_none() =>
            {
                let user_id: i64 = row.try_get("user_id")?;
                let family: String = row.try_get("family_id")?;
                sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(&family)
                    .execute(&mut *tx)
                    .await?;
                Rotation::Reused { user_id }
            }
            _ => Rotation::Invalid,
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Whose refresh token this is, while it is unrevoked and unexpired (used or not: to end a
    /// session, knowing whose it is is enough): logout by refresh token alone.
    pub async fn refresh_owner(&self, hash: &str, now: i64) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT user_id FROM refresh_tokens WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("user_id")).transpose()?)
    }

    /// Logout: every refresh token of the user stops working.
    pub async fn revoke_user_refresh(&self, user_id: i64, now: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Records a revoked access token; idempotent. `recorded_ms` is the store's own clock, read
    /// in the statement itself, and the statement may take at most [`MAX_REVOCATION_WRITE`]:
    /// together they bound how late after its `recorded_ms` a revocation can become visible,
    /// which is what makes the sync's re-read window complete (see `revocations_recorded_since`).
    pub async fn revoke_access(
        &self,
        jti: &str,
        user_id: Option<i64>,
        expires_at: i64,
        now: i64,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO revoked_tokens (jti, user_id, expires_at, revoked_at, recorded_ms) \
             VALUES ($1, $2, $3, $4, {}) ON CONFLICT (jti) DO NOTHING",
            self.now_ms_sql()
        );
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SET LOCAL statement_timeout = {}",
                MAX_REVOCATION_WRITE.as_millis()
            )))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(jti)
            .bind(user_id)
            .bind(expires_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The store's clock in Unix milliseconds, as an SQL expression.
    fn now_ms_sql(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        }
    }

    /// The store's clock in Unix milliseconds: every instance compares `recorded_ms` with the
    /// same clock, whatever its own says.
    pub async fn now_ms(&self) -> Result<i64> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} AS t",
            self.now_ms_sql()
        )))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("t")?)
    }

    /// Unexpired revocations recorded at or after `since_ms` (store clock), from row
    /// `after_id` on, in pages: `(id, jti, exp)`. The sync reads every row recorded since a
    /// little before its previous read, so a row committed late is read on a later tick as
    /// long as it became visible within [`SYNC_OVERLAP`] of its `recorded_ms`; writes are
    /// bounded to [`MAX_REVOCATION_WRITE`], well inside that.
    pub async fn revocations_recorded_since(
        &self,
        since_ms: i64,
        after_id: i64,
        now: i64,
    ) -> Result<Vec<(i64, String, i64)>> {
        let rows = sqlx::query(
            "SELECT id, jti, expires_at FROM revoked_tokens \
             WHERE recorded_ms >= $1 AND id > $2 AND expires_at > $3 ORDER BY id LIMIT 10000",
        )
        .bind(since_ms)
        .bind(after_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        revocation_rows(&rows)
    }

    /// Revocations recorded after row `after_id` that have not expired yet: `(id, jti, exp)`.
    /// Used at start-up (`after_id = 0`) and by the sync task.
    pub async fn revocations_since(
        &self,
        after_id: i64,
        now: i64,
    ) -> Result<Vec<(i64, String, i64)>> {
        let rows = sqlx::query(
            "SELECT id, jti, expires_at FROM revoked_tokens WHERE id > $1 AND expires_at > $2 ORDER BY id LIMIT 10000",
        )
        .bind(after_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        revocation_rows(&rows)
    }

    /// Deletes rows nobody can use any more.
    pub async fn prune(&self, now: i64) -> Result<()> {
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
            .bind(now - 3600)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
            .bind(now - 86_400)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Counts, for tests and the demo.
    pub async fn count(&self, table: &str) -> Result<i64> {
        let sql = match table {
            "users" => "SELECT COUNT(*) AS n FROM users",
            "refresh_tokens" => "SELECT COUNT(*) AS n FROM refresh_tokens",
            "revoked_tokens" => "SELECT COUNT(*) AS n FROM revoked_tokens",
            other => panic!("no table {other}"),
        };
        let row = sqlx::query(sql).fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh SQLite file, and the test PostgreSQL when `AUTHGATE_TEST_POSTGRES_URL` is set and
    /// not empty (empty means "skip PostgreSQL", as `scripts/test` documents). PostgreSQL is
    /// shared, so every test uses its own random ids.
    async fn stores() -> (Vec<Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let mut v = vec![Store::connect(&url, Duration::from_secs(5), 4)
            .await
            .unwrap()];
        if let Some(pg) = std::env::var("AUTHGATE_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            v.push(
                Store::connect(&pg, Duration::from_secs(5), 4)
                    .await
                    .unwrap(),
            );
        }
        (v, dir)
    }

    fn uniq() -> String {
        format!("{:x}", rand::random::<u64>())
    }

    fn kakao(id: &str, email: Option<&str>) -> ProviderUser {
        ProviderUser {
            provider: "kakao".into(),
            provider_user_id: id.into(),
            email: email.map(str::to_string),
            nickname: format!("nick{id}"),
            profile_image: None,
        }
    }

    #[tokio::test]
    async fn users_are_upserted_on_provider_and_id_never_on_email() {
        let (stores, _d) = stores().await;
        for s in stores {
            let (id1, id2) = (uniq(), uniq());
            let a = s
                .upsert_user(&kakao(&id1, Some("same@example.com")), 100)
                .await
                .unwrap();
            let b = s
                .upsert_user(&kakao(&id2, Some("same@example.com")), 100)
                .await
                .unwrap();
            assert_ne!(a.id, b.id, "{:?}", s.backend);
            assert_eq!(a.username, format!("kakao_{id1}"));
            let again = s.upsert_user(&kakao(&id1, None), 200).await.unwrap();
            assert_eq!(
                (again.id, again.email.as_deref(), again.created_at),
                (a.id, Some("same@example.com"), 100)
            );
            assert_eq!(
                s.user(a.id).await.unwrap().unwrap().nickname,
                format!("nick{id1}")
            );
        }
    }

    #[tokio::test]
    async fn refresh_tokens_rotate_once_and_reuse_revokes_the_family() {
        let (stores, _d) = stores().await;
        for s in stores {
            let u = s.upsert_user(&kakao(&uniq(), None), 0).await.unwrap();
            let h = |n: &str| format!("{n}-{}", u.id);
            let fam = uniq();
            let rotate = |old: String, new: String, now: i64| {
                let s = s.clone();
                async move { s.rotate_refresh(&old, &new, now, 1000, 0).await.unwrap() }
            };
            s.insert_refresh(&h("h1"), u.id, &fam, 10, 1000)
                .await
                .unwrap();
            assert_eq!(
                rotate(h("h1"), h("h2"), 20).await,
                Rotation::Rotated { user_id: u.id }
            );
            assert_eq!(
                rotate(h("h1"), h("h3"), 30).await,
                Rotation::Reused { user_id: u.id }
            );
            // h2 belonged to the same family: revoked with it.
            assert_eq!(rotate(h("h2"), h("h4"), 40).await, Rotation::Invalid);
            assert_eq!(rotate(h("nope"), h("h5"), 40).await, Rotation::Invalid);
            s.insert_refresh(&h("old"), u.id, &uniq(), 10, 50)
                .await
                .unwrap();
            assert_eq!(
                rotate(h("old"), h("h6"), 60).await,
                Rotation::Invalid,
                "expired"
            );
        }
    }

    #[tokio::test]
    async fn a_token_presented_again_within_the_grace_window_keeps_its_family() {
        let (stores, _d) = stores().await;
        for s in stores {
            let u = s.upsert_user(&kakao(&uniq(), None), 0).await.unwrap();
            let h = |n: &str| format!("{n}-{}", u.id);
            s.insert_refresh(&h("g1"), u.id, &uniq(), 100, 10_000)
                .await
                .unwrap();
            let rotate = |old: String, new: String, now: i64| {
                let s = s.clone();
                async move { s.rotate_refresh(&old, &new, now, 10_000, 10).await.unwrap() }
            };
            assert_eq!(
                rotate(h("g1"), h("g2"), 200).await,
                Rotation::Rotated { user_id: u.id }
            );
            // Parallel loads a few seconds later: new tokens, same family, nothing revoked.
            for (i, at) in [201, 205, 209].into_iter().enumerate() {
                assert_eq!(
                    rotate(h("g1"), h(&format!("g1-again{i}")), at).await,
                    Rotation::RotatedInGrace { user_id: u.id }
                );
            }
            assert_eq!(
                rotate(h("g2"), h("g3"), 209).await,
                Rotation::Rotated { user_id: u.id },
                "the winner's token is intact"
            );
            assert_eq!(
                s.refresh_owner(&h("g1-again0"), 209).await.unwrap(),
                Some(u.id)
            );
            // After the window it is theft again: the family goes.
            assert_eq!(
                rotate(h("g1"), h("late"), 210).await,
                Rotation::Reused { user_id: u.id }
            );
            assert_eq!(rotate(h("g3"), h("g4"), 211).await, Rotation::Invalid);
            assert_eq!(s.refresh_owner(&h("g3"), 211).await.unwrap(), None);
            // A revoked family gets nothing even within the window.
            s.insert_refresh(&h("r1"), u.id, &uniq(), 300, 10_000)
                .await
                .unwrap();
            assert_eq!(
                rotate(h("r1"), h("r2"), 300).await,
                Rotation::Rotated { user_id: u.id }
            );
            s.revoke_user_refresh(u.id, 301).await.unwrap();
            assert_eq!(rotate(h("r1"), h("r3"), 302).await, Rotation::Invalid);
        }
    }

    #[tokio::test]
    async fn revocations_are_read_back_in_order_and_by_when_the_store_recorded_them() {
        let (stores, _d) = stores().await;
        for s in stores {
            let before = s.now_ms().await.unwrap();
            let (a, b) = (uniq(), uniq());
            s.revoke_access(&a, Some(1), 5000, 10).await.unwrap();
            s.revoke_access(&a, Some(1), 5000, 11).await.unwrap();
            s.revoke_access(&uniq(), None, 5, 10).await.unwrap();
            s.revoke_access(&b, None, 6000, 12).await.unwrap();
            let after = s.now_ms().await.unwrap();
            assert!(
                after >= before && after - before < 60_000,
                "{before} {after}"
            );
            let recent = s.revocations_recorded_since(before, 0, 100).await.unwrap();
            assert_eq!(
                recent.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
                [a.clone(), b.clone()],
                "{:?}",
                s.backend
            );
            // Paged by id within the window.
            let rest = s
                .revocations_recorded_since(before, recent[0].0, 100)
                .await
                .unwrap();
            assert_eq!(rest.len(), 1);
            assert!(s
                .revocations_recorded_since(after + 1, 0, 100)
                .await
                .unwrap()
                .is_empty());
            let all = s.revocations_since(0, 100).await.unwrap();
            assert!(all.iter().any(|r| r.1 == a) && all.iter().any(|r| r.1 == b));
        }
    }
}
