//! Refresh-token families: storing, rotating with reuse detection and a grace window, and
//! revoking a family or every family of a user.
//!
//! On PostgreSQL every change to a user's tokens first locks that user's row: a rotation and a
//! logout that race would otherwise miss each other (the logout's `UPDATE` does not see the
//! rotation's uncommitted new token, which then outlives the logout). Taking the user lock first
//! in both orders them. SQLite serialises every writer already, and the rotation starts with its
//! write so it holds the file's write lock throughout.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Backend, Result, Store};

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was live; it is now used and its successor is stored in its family.
    Rotated { user_id: i64 },
    /// The token had been used within the grace window (parallel page loads, an answer the
    /// browser never got): its successor, the same one as the first time, is valid; nothing
    /// new is stored and the family stays intact.
    RotatedInGrace { user_id: i64 },
    /// The token had been used before the grace window: its whole family is now revoked.
    Reused { user_id: i64 },
    /// Unknown, expired or revoked.
    Invalid,
}

/// A stored refresh token, as [`Store::refresh_owner`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshOwner {
    pub user_id: i64,
    pub family: String,
    pub provider: String,
    pub presented: Presented,
}

/// What presenting a refresh token now would be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// A rotation: the token is live and unused, or used within the grace window.
    Fresh,
    /// Reuse after the window (theft: the family is revoked), or a revoked or expired token.
    Judged,
}

/// Stores a refresh token (by hash) in `family`, on the pool or inside a rotation's transaction;
/// a token already stored (a successor asked for again) is left as it is.
async fn insert_refresh_on<'e>(
    on: impl sqlx::Executor<'e, Database = sqlx::Any>,
    hash: &str,
    user_id: i64,
    family: &str,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, user_id, family_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (token_hash) DO NOTHING",
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

impl Store {
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

    /// On PostgreSQL, locks the user's row for the rest of `tx` (see the module docs).
    async fn lock_user(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        user_id: i64,
    ) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind(user_id)
                .fetch_optional(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Marks `old_hash` used and stores its successor `new_hash` in its family, atomically: of
    /// any number of concurrent calls with one token exactly one rotates. The successor is
    /// derived from the token (`tokens::refresh::successor`), so a token used less than `grace`
    /// seconds ago answers with that same successor again: however often it comes back in the
    /// window, the family never forks into branches that reuse detection could not see. A
    /// token used earlier revokes its whole family.
    pub async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: i64,
        new_expires_at: i64,
        grace: i64,
    ) -> Result<Rotation> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            let owner = sqlx::query("SELECT user_id FROM refresh_tokens WHERE token_hash = $1")
                .bind(old_hash)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(owner) = owner else {
                tx.commit().await?;
                return Ok(Rotation::Invalid);
            };
            self.lock_user(&mut tx, owner.try_get("user_id")?).await?;
        }
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
        let outcome = match existing {
            Some(row) if in_grace(&row, now, grace)? => {
                let user_id: i64 = row.try_get("user_id")?;
                // Stored at the first rotation; put back only if pruned meanwhile.
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

    /// The owner and family of a refresh token while it is unrevoked and unexpired (used or
    /// not): what a logout by refresh token alone ends.
    pub async fn refresh_family(&self, hash: &str, now: i64) -> Result<Option<(i64, String)>> {
        let row = sqlx::query(
            "SELECT user_id, family_id FROM refresh_tokens WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(|r| Ok::<_, sqlx::Error>((r.try_get("user_id")?, r.try_get("family_id")?)))
            .transpose()?)
    }

    /// What a refresh needs to know before it rotates: the token's owner, family and the
    /// provider the owner logged in with, and whether presenting it now is a rotation
    /// ([`Presented::Fresh`]: unused, or used within the grace window) or something
    /// [`Store::rotate_refresh`] must judge without any limit in its way (used before the window:
    /// reuse, which revokes the family; revoked or expired). `None`: no such token.
    pub async fn refresh_owner(
        &self,
        hash: &str,
        now: i64,
        grace: i64,
    ) -> Result<Option<RefreshOwner>> {
        let row = sqlx::query(
            "SELECT r.user_id, r.family_id, r.used_at, r.revoked_at, r.expires_at, u.provider \
             FROM refresh_tokens r JOIN users u ON u.id = r.user_id WHERE r.token_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let used_at: Option<i64> = row.try_get("used_at")?;
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        let live = revoked_at.is_none() && expires_at > now;
        Ok(Some(RefreshOwner {
            user_id: row.try_get("user_id")?,
            family: row.try_get("family_id")?,
            provider: row.try_get("provider")?,
            presented: match used_at {
                None if live => Presented::Fresh,
                Some(_) if in_grace(&row, now, grace)? => Presented::Fresh,
                _ => Presented::Judged,
            },
        }))
    }

    /// Ends one session: every token of the family stops working.
    pub async fn revoke_family(&self, user_id: i64, family: &str, now: i64) -> Result<u64> {
        self.revoke_where(user_id, "family_id = $2", family, now)
            .await
    }

    /// Logout: every refresh token of the user stops working.
    pub async fn revoke_user_refresh(&self, user_id: i64, now: i64) -> Result<u64> {
        self.revoke_where(
            user_id,
            "user_id = CAST($2 AS BIGINT)",
            &user_id.to_string(),
            now,
        )
        .await
    }

    /// Revokes the user's tokens that `condition` (on `$2`) picks, under the user's lock.
    async fn revoke_where(
        &self,
        user_id: i64,
        condition: &'static str,
        value: &str,
        now: i64,
    ) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        self.lock_user(&mut tx, user_id).await?;
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE {condition} AND revoked_at IS NULL"
        )))
        .bind(now)
        .bind(value)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

/// Used less than `grace` seconds from now, either way (another instance's clock may be a little
/// behind the one that rotated), and still unrevoked and unexpired.
fn in_grace(row: &AnyRow, now: i64, grace: i64) -> std::result::Result<bool, sqlx::Error> {
    let used_at: Option<i64> = row.try_get("used_at")?;
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    let expires_at: i64 = row.try_get("expires_at")?;
    Ok(grace > 0
        && revoked_at.is_none()
        && expires_at > now
        && used_at.is_some_and(|used| (now - used).abs() < grace))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{kakao, stores, uniq};
    use super::*;

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
    async fn within_the_grace_window_a_token_answers_with_its_one_successor() {
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
            let tokens = s.count("refresh_tokens").await.unwrap();
            assert_eq!(
                rotate(h("g1"), h("g2"), 200).await,
                Rotation::Rotated { user_id: u.id }
            );
            // Parallel loads a few seconds later: the same successor, nothing new stored.
            for at in [200, 205, 209] {
                assert_eq!(
                    rotate(h("g1"), h("g2"), at).await,
                    Rotation::RotatedInGrace { user_id: u.id }
                );
            }
            if s.backend == Backend::Sqlite {
                // (PostgreSQL is shared with tests running alongside.)
                assert_eq!(s.count("refresh_tokens").await.unwrap(), tokens + 1);
            }
            // An instance whose clock is a little behind the one that rotated: still the window.
            assert_eq!(
                rotate(h("g1"), h("g2"), 199).await,
                Rotation::RotatedInGrace { user_id: u.id }
            );
            s.insert_refresh(&h("k1"), u.id, &uniq(), 300, 10_000)
                .await
                .unwrap();
            assert_eq!(
                rotate(h("k1"), h("k2"), 300).await,
                Rotation::Rotated { user_id: u.id }
            );
            assert_eq!(
                rotate(h("k2"), h("k3"), 309).await,
                Rotation::Rotated { user_id: u.id },
                "the successor rotates normally"
            );
            // After the window it is theft again: the family goes.
            assert_eq!(
                rotate(h("k1"), h("k2"), 310).await,
                Rotation::Reused { user_id: u.id }
            );
            assert_eq!(rotate(h("k3"), h("k4"), 311).await, Rotation::Invalid);
            // A revoked family gets nothing even within the window.
            s.insert_refresh(&h("r1"), u.id, &uniq(), 400, 10_000)
                .await
                .unwrap();
            assert_eq!(
                rotate(h("r1"), h("r2"), 400).await,
                Rotation::Rotated { user_id: u.id }
            );
            s.revoke_user_refresh(u.id, 401).await.unwrap();
            assert_eq!(rotate(h("r1"), h("r2"), 402).await, Rotation::Invalid);
        }
    }

    #[tokio::test]
    async fn a_logout_by_refresh_token_ends_that_session_only() {
        let (stores, _d) = stores().await;
        for s in stores {
            let u = s.upsert_user(&kakao(&uniq(), None), 0).await.unwrap();
            let h = |n: &str| format!("{n}-{}", u.id);
            let (laptop, phone) = (uniq(), uniq());
            s.insert_refresh(&h("laptop"), u.id, &laptop, 10, 1000)
                .await
                .unwrap();
            s.insert_refresh(&h("phone"), u.id, &phone, 10, 1000)
                .await
                .unwrap();
            let found = s.refresh_family(&h("laptop"), 20).await.unwrap();
            assert_eq!(found, Some((u.id, laptop.clone())));
            assert_eq!(s.revoke_family(u.id, &laptop, 20).await.unwrap(), 1);
            assert_eq!(s.refresh_family(&h("laptop"), 21).await.unwrap(), None);
            assert!(s.refresh_family(&h("phone"), 21).await.unwrap().is_some());
            assert_eq!(
                s.refresh_family(&h("phone"), 1001).await.unwrap(),
                None,
                "expired"
            );
        }
    }

    #[tokio::test]
    async fn a_logout_racing_a_rotation_leaves_no_live_token() {
        let (stores, _d) = stores().await;
        for s in stores {
            for round in 0..40 {
                let u = s.upsert_user(&kakao(&uniq(), None), 0).await.unwrap();
                let (old, new) = (
                    format!("old-{round}-{}", u.id),
                    format!("new-{round}-{}", u.id),
                );
                s.insert_refresh(&old, u.id, &uniq(), 10, 10_000)
                    .await
                    .unwrap();
                let (a, b) = (s.clone(), s.clone());
                let (o, n) = (old.clone(), new.clone());
                let rotation =
                    tokio::spawn(async move { a.rotate_refresh(&o, &n, 20, 10_000, 10).await });
                let logout = tokio::spawn(async move { b.revoke_user_refresh(u.id, 20).await });
                let (rotated, logged_out) = (rotation.await.unwrap(), logout.await.unwrap());
                assert!(logged_out.is_ok(), "{logged_out:?}");
                assert!(rotated.is_ok(), "{rotated:?}");
                // Whichever came first, the logout ends every token of the user.
                assert_eq!(
                    s.refresh_family(&new, 30).await.unwrap(),
                    None,
                    "round {round} on {:?}: the rotated token outlived the logout",
                    s.backend
                );
            }
        }
    }
}
