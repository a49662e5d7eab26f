//! The SQL store: users, hashed rotating refresh tokens, revoked access tokens.
//!
//! One schema on SQLite (the embedded default: a file, WAL) and PostgreSQL (several instances),
//! through sqlx's `Any` driver so every query is written once. Parameters use `$N`, which both
//! accept. Migrations are embedded per backend and run at start-up. Times are Unix seconds.
//!
//! Every pool and connection here belongs to the application runtime (see `server.rs`): call
//! these methods only from tasks running there.
//!
//! This file: connecting, users, housekeeping. `refresh.rs`: refresh-token families and their
//! rotation. `revocations.rs`: revoked access tokens and how other instances read them.
//! `cutoffs.rs`: per-user cut-offs and the security events acted on.

mod cutoffs;
mod refresh;
mod revocations;

pub use cutoffs::{CutOff, Whom};
pub use refresh::{Presented, RefreshOwner, Rotation};
pub use revocations::SyncPoint;

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

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    pub backend: Backend,
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
    /// Creates or updates the user a provider vouched for. The email is the provider's word at
    /// this login: an address it no longer calls verified (or no longer shares) is cleared, never
    /// kept from an earlier login, since upstreams believe `X-User-Email`. An empty nickname or a
    /// missing picture keeps the earlier one (those are display data, not identity).
    pub async fn upsert_user(&self, u: &ProviderUser, now: i64) -> Result<User> {
        let username = format!("{}_{}", u.provider, u.provider_user_id);
        let row = sqlx::query(concat!(
            "INSERT INTO users (provider, provider_user_id, username, email, nickname, profile_image, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (provider, provider_user_id) DO UPDATE SET \
               email = excluded.email, \
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

    /// Deletes rows nobody can use any more: cut-offs at or before `cutoffs_before` (every
    /// token they refuse has expired), security events older than `events_before` (their
    /// `iat` is refused as too old anyway).
    pub async fn prune(&self, now: i64, cutoffs_before: i64, events_before: i64) -> Result<()> {
        sqlx::query("DELETE FROM user_cutoffs WHERE not_before <= $1")
            .bind(cutoffs_before)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM security_events WHERE received_at < $1")
            .bind(events_before)
            .execute(&self.pool)
            .await?;
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

    /// Every provider id some user logged in with.
    pub async fn user_providers(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT provider FROM users")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("provider").map_err(Into::into))
            .collect()
    }

    /// Counts, for tests and the demo.
    pub async fn count(&self, table: &str) -> Result<i64> {
        let sql = match table {
            "users" => "SELECT COUNT(*) AS n FROM users",
            "refresh_tokens" => "SELECT COUNT(*) AS n FROM refresh_tokens",
            "revoked_tokens" => "SELECT COUNT(*) AS n FROM revoked_tokens",
            "user_cutoffs" => "SELECT COUNT(*) AS n FROM user_cutoffs",
            other => panic!("no table {other}"),
        };
        let row = sqlx::query(sql).fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh SQLite file, and the test PostgreSQL when `AUTHGATE_TEST_POSTGRES_URL` is set and
    /// not empty (empty means "skip PostgreSQL", as `scripts/test` documents). PostgreSQL is
    /// shared, so every test uses its own random ids.
    pub(crate) async fn stores() -> (Vec<Store>, tempfile::TempDir) {
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

    pub(crate) fn uniq() -> String {
        format!("{:x}", rand::random::<u64>())
    }

    pub(crate) fn kakao(id: &str, email: Option<&str>) -> ProviderUser {
        ProviderUser {
            provider: "kakao".into(),
            provider_user_id: id.into(),
            email: email.map(str::to_string),
            nickname: format!("nick{id}"),
            profile_image: None,
        }
    }

    #[tokio::test]
    async fn users_are_upserted_on_provider_and_id_never_on_email_and_an_unverified_email_is_cleared() {
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
            // The provider no longer vouches for the address: it is gone, not kept.
            assert_eq!(
                (again.id, again.email.as_deref(), again.created_at),
                (a.id, None, 100)
            );
            assert_eq!(
                s.user(a.id).await.unwrap().unwrap().nickname,
                format!("nick{id1}")
            );
        }
    }
}
