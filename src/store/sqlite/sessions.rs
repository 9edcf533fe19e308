//! Sessions on SQLite. Rotations go through the group commit
//! (`group_commit.rs`); everything else is here.

use async_trait::async_trait;

use super::{SqliteStore, begin_write};
use crate::store::from_sqlx::{Row, all, optional};
use crate::store::{
    Created, IdleTimeouts, NewSession, OrDatabase, RevokeReason, Rotated, Session, Sessions,
    StoreResult,
};

/// Revokes every live session of a user but `except`: on its own, or inside
/// the transaction that has just moved the user's credentials version.
pub(super) async fn revoke_all_in<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Sqlite>,
    user_id: i64,
    except: Option<&str>,
    reason: RevokeReason,
    now: i64,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE sessions SET revoked_at = ?1, revoked_reason = ?2 \
         WHERE user_id = ?3 AND revoked_at IS NULL AND (?4 IS NULL OR id <> ?4)",
    )
    .bind(now)
    .bind(reason.as_str())
    .bind(user_id)
    .bind(except)
    .execute(executor)
    .await?
    .rows_affected())
}

#[async_trait]
impl Sessions for SqliteStore {
    async fn create_session(
        &self,
        s: NewSession,
        max_per_user: i64,
    ) -> StoreResult<Option<Created>> {
        let insert = concat!(
            "INSERT INTO sessions (id, user_id, generation, rotated_at, created_at, last_used_at, \
             idle_expires_at, absolute_expires_at, user_agent, ip, credentials_version, \
             auth_time, remember, amr) \
             SELECT ?1, id, 0, ?3, ?3, ?3, ?4, ?5, ?6, ?7, credentials_version, ?3, ?9, ?10 \
             FROM users \
             WHERE id = ?2 AND credentials_version = ?8 AND disabled_at IS NULL RETURNING ",
            session_columns!(),
            ""
        );
        let mut tx = begin_write(&self.pool).await.db()?;
        let session: Option<Session> = sqlx::query_as::<_, Row<Session>>(insert)
            .bind(&s.id)
            .bind(s.user_id)
            .bind(s.now)
            .bind(s.idle_expires_at)
            .bind(s.absolute_expires_at)
            .bind(&s.user_agent)
            .bind(&s.ip)
            .bind(s.credentials_version)
            .bind(s.remember)
            .bind(&s.amr)
            .fetch_optional(&mut *tx)
            .await
            .db()
            .map(optional)?;
        let Some(session) = session else {
            return Ok(None);
        };
        // The new session is the most recently used; ties keep it too.
        let evicted: Vec<String> = sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = ?1, revoked_reason = ?5 \
             WHERE id IN (SELECT id FROM sessions \
                 WHERE user_id = ?2 AND revoked_at IS NULL \
                     AND idle_expires_at > ?1 AND absolute_expires_at > ?1 \
                 ORDER BY id = ?3 DESC, last_used_at DESC, created_at DESC, id \
                 LIMIT -1 OFFSET ?4) \
             RETURNING id",
        )
        .bind(s.now)
        .bind(s.user_id)
        .bind(&s.id)
        .bind(max_per_user)
        .bind(RevokeReason::SessionEvicted.as_str())
        .fetch_all(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(Some(Created { session, evicted }))
    }

    async fn session(&self, id: &str) -> StoreResult<Option<Session>> {
        let sql = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE id = ?1"
        );
        sqlx::query_as::<_, Row<Session>>(sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .db()
            .map(optional)
    }

    async fn rotate_session(
        &self,
        id: &str,
        generation: i64,
        now: i64,
        idle: IdleTimeouts,
    ) -> StoreResult<Option<Rotated>> {
        // Through the group commit: see `group_commit.rs`.
        self.rotations.rotate(id, generation, now, idle).await
    }

    async fn reauthenticate_session(
        &self,
        id: &str,
        verified_hash: &str,
        now: i64,
        amr: &str,
    ) -> StoreResult<Option<Session>> {
        let sql = concat!(
            "UPDATE sessions SET auth_time = ?1, amr = ?4 \
             WHERE id = ?2 AND revoked_at IS NULL \
                 AND idle_expires_at > ?1 AND absolute_expires_at > ?1 \
                 AND credentials_version = (SELECT credentials_version FROM users \
                     WHERE users.id = user_id AND disabled_at IS NULL AND password_hash = ?3) \
             RETURNING ",
            session_columns!()
        );
        sqlx::query_as::<_, Row<Session>>(sql)
            .bind(now)
            .bind(id)
            .bind(verified_hash)
            .bind(amr)
            .fetch_optional(&self.pool)
            .await
            .db()
            .map(optional)
    }

    async fn revoke_session(
        &self,
        id: &str,
        owner: Option<i64>,
        reason: RevokeReason,
        now: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = ?1, revoked_reason = ?2 \
             WHERE id = ?3 AND revoked_at IS NULL AND (?4 IS NULL OR user_id = ?4)",
        )
        .bind(now)
        .bind(reason.as_str())
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_user_sessions(
        &self,
        user_id: i64,
        except: Option<&str>,
        reason: RevokeReason,
        now: i64,
    ) -> StoreResult<u64> {
        revoke_all_in(&self.pool, user_id, except, reason, now)
            .await
            .db()
    }

    async fn active_sessions(&self, user_id: i64, now: i64) -> StoreResult<Vec<Session>> {
        let sql = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions \
             WHERE user_id = ?1 AND revoked_at IS NULL \
                 AND idle_expires_at > ?2 AND absolute_expires_at > ?2 \
             ORDER BY created_at DESC, id"
        );
        sqlx::query_as::<_, Row<Session>>(sql)
            .bind(user_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .db()
            .map(all)
    }

    async fn delete_expired_sessions(&self, now: i64, limit: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM sessions WHERE id IN \
             (SELECT id FROM sessions WHERE absolute_expires_at <= ?1 LIMIT ?2)",
        )
        .bind(now)
        .bind(limit)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(done.rows_affected())
    }
}
