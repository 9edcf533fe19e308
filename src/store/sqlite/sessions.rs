//! Sessions on SQLite. Rotations go through the group commit
//! (`store/group_commit.rs`), which writes its batches with [`Batched`].

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, SqlitePool};

use super::{SqliteStore, begin_write};
use crate::store::from_sqlx::{RotatedRow, Row, all, optional};
use crate::store::group_commit::{Batch, MAX_BATCH, Rotation};
use crate::store::{
    Created, IdleTimeouts, NewSession, OrDatabase, RevokeReason, Rotated, Session, Sessions,
    StoreResult,
};

/// The compare-and-set of `Sessions::rotate_session`, for `rows` rotations at
/// once: each row of `b` is (id, generation, now, idle timeout when
/// remembered, idle timeout when not). SQLite applies one joined row per
/// target row. RETURNING may name only `sessions`, but scalar subqueries may
/// read `users` (primary-key lookups).
fn rotate_statement(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        concat!(
            "UPDATE sessions SET generation = generation + 1, rotated_at = b.column3, \
                 last_used_at = b.column3, \
                 idle_expires_at = MIN(b.column3 \
                     + CASE WHEN remember THEN b.column4 ELSE b.column5 END, \
                     absolute_expires_at) \
             FROM (VALUES {values}) AS b \
             WHERE sessions.id = b.column1 AND sessions.generation = b.column2 \
                 AND revoked_at IS NULL \
                 AND idle_expires_at > b.column3 AND absolute_expires_at > b.column3 \
                 AND credentials_version = (SELECT credentials_version FROM users \
                     WHERE users.id = user_id AND disabled_at IS NULL) \
             RETURNING ",
            session_columns!(),
            ", (SELECT username FROM users WHERE users.id = user_id) AS user_username, \
               (SELECT password_hash FROM users WHERE users.id = user_id) AS user_password_hash, \
               (SELECT role FROM users WHERE users.id = user_id) AS user_role, \
               (SELECT created_at FROM users WHERE users.id = user_id) AS user_created_at, \
               (SELECT disabled_at FROM users WHERE users.id = user_id) AS user_disabled_at, \
               (SELECT credentials_version FROM users WHERE users.id = user_id) \
                   AS user_credentials_version, \
               (SELECT email FROM users WHERE users.id = user_id) AS user_email, \
               (SELECT email_verified FROM users WHERE users.id = user_id) \
                   AS user_email_verified"
        ),
        values = values
    )
}

/// One statement per power of two up to `MAX_BATCH` (smaller batches are
/// padded with rows that match nothing), so that a handful of prepared
/// statements serve every batch size. (At 5 parameters a rotation, far below
/// SQLite's 32,766.)
static STATEMENTS: LazyLock<Vec<Arc<str>>> = LazyLock::new(|| {
    std::iter::successors(Some(1_usize), |n| (*n < MAX_BATCH).then_some(n * 2))
        .map(|rows| rotate_statement(rows).into())
        .collect()
});

/// The group commit's batches on SQLite: one `UPDATE … FROM (VALUES …)`
/// statement, its own transaction, so one commit and one trip to sqlx's
/// connection thread however many rotations it holds.
pub(super) struct Batched(pub(super) SqlitePool);

#[async_trait]
impl Batch for Batched {
    async fn apply(&self, batch: &[Rotation]) -> StoreResult<Vec<Rotated>> {
        let rows = batch.len().next_power_of_two();
        let sql = STATEMENTS[rows.trailing_zeros() as usize].clone();
        let mut query = sqlx::query_as::<_, RotatedRow>(AssertSqlSafe(sql));
        for r in batch {
            query = query
                .bind(r.id.as_str())
                .bind(r.generation)
                .bind(r.now)
                .bind(r.idle.remembered)
                .bind(r.idle.not_remembered);
        }
        for _ in batch.len()..rows {
            query = query
                .bind("")
                .bind(-1_i64)
                .bind(0_i64)
                .bind(0_i64)
                .bind(0_i64);
        }
        let updated = query.fetch_all(&self.0).await.db()?;
        Ok(updated.into_iter().map(Rotated::from).collect())
    }
}

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
        // Through the group commit: see `store/group_commit.rs`.
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
