//! Sessions on PostgreSQL. Rotations go through the group commit
//! (`store/group_commit.rs`), which writes its batches with [`Batched`].

use async_trait::async_trait;
use sqlx::PgPool;

use super::PostgresStore;
use crate::store::from_sqlx::RotatedRow;
use crate::store::from_sqlx::{Row, all, optional};
use crate::store::group_commit::{Batch, Rotation};
use crate::store::{
    Created, IdleTimeouts, NewSession, OrDatabase, RevokeReason, Rotated, Session, Sessions,
    StoreResult,
};

/// The compare-and-set of `Sessions::rotate_session` for a batch, one row of
/// the arrays per rotation: one statement, so one atomic compare-and-set
/// per session. Under READ COMMITTED a concurrent update of the same row
/// waits for the first to commit and then re-checks the `WHERE` against the
/// row as it now is: the generation has moved on, so the second update
/// matches nothing. Two callers, on any instances, can never both advance
/// the chain. A session named twice in one batch is updated once
/// (PostgreSQL uses one joined row per target row). Each session is found
/// by its primary key (`= ANY`), whatever the planner knows of the arrays:
/// a join to `users` in the update let a generic plan walk every session
/// of a user instead; the user is read after, by its own key.
const ROTATE: &str = "WITH rotated AS ( \
         UPDATE sessions s SET generation = s.generation + 1, rotated_at = b.now, \
             last_used_at = b.now, \
             idle_expires_at = LEAST(b.now + CASE WHEN s.remember THEN b.remembered \
                 ELSE b.not_remembered END, s.absolute_expires_at) \
         FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[]) \
             AS b(id, generation, now, remembered, not_remembered) \
         WHERE s.id = ANY($1::TEXT[]) AND s.id = b.id AND s.generation = b.generation \
             AND s.revoked_at IS NULL \
             AND s.idle_expires_at > b.now AND s.absolute_expires_at > b.now \
             AND s.credentials_version = (SELECT u.credentials_version FROM users u \
                 WHERE u.id = s.user_id AND u.disabled_at IS NULL) \
         RETURNING s.*) \
     SELECT r.id, r.user_id, r.generation, r.rotated_at, r.created_at, r.last_used_at, \
         r.idle_expires_at, r.absolute_expires_at, r.revoked_at, r.revoked_reason, \
         r.user_agent, r.ip, r.credentials_version, r.auth_time, r.remember, r.amr, \
         u.username AS user_username, \
         u.password_hash AS user_password_hash, u.role AS user_role, \
         u.created_at AS user_created_at, u.disabled_at AS user_disabled_at, \
         u.credentials_version AS user_credentials_version, \
         u.email AS user_email, u.email_verified AS user_email_verified \
     FROM rotated r JOIN users u ON u.id = r.user_id";

/// Times a batch is tried when PostgreSQL ends it as a deadlock's victim
/// (or a serialization failure's).
const ATTEMPTS: usize = 3;

/// The group commit's batches on PostgreSQL: one statement, its own
/// transaction, so one commit record and one flush however many rotations
/// it holds (one at a time for each, before).
pub(super) struct Batched(pub(super) PgPool);

#[async_trait]
impl Batch for Batched {
    async fn apply(&self, batch: &[Rotation]) -> StoreResult<Vec<Rotated>> {
        // Rows are locked in the arrays' order, so every instance takes
        // them in the same one (by id). Two batches of other instances that
        // share two sessions can still deadlock under another plan; the one
        // PostgreSQL ends changed nothing, and is tried again.
        let mut order: Vec<&Rotation> = batch.iter().collect();
        order.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let ids: Vec<&str> = order.iter().map(|r| r.id.as_str()).collect();
        let generations: Vec<i64> = order.iter().map(|r| r.generation).collect();
        let nows: Vec<i64> = order.iter().map(|r| r.now).collect();
        let remembered: Vec<i64> = order.iter().map(|r| r.idle.remembered).collect();
        let not_remembered: Vec<i64> = order.iter().map(|r| r.idle.not_remembered).collect();
        let mut attempt = 1;
        loop {
            let updated = sqlx::query_as::<_, RotatedRow>(ROTATE)
                .bind(&ids)
                .bind(&generations)
                .bind(&nows)
                .bind(&remembered)
                .bind(&not_remembered)
                .fetch_all(&self.0)
                .await;
            match updated {
                Err(sqlx::Error::Database(e))
                    if matches!(e.code().as_deref(), Some("40P01" | "40001"))
                        && attempt < ATTEMPTS =>
                {
                    attempt += 1;
                }
                updated => {
                    let updated = updated.db()?;
                    return Ok(updated.into_iter().map(Rotated::from).collect());
                }
            }
        }
    }
}

/// Revokes every live session of a user but `except`: on its own, or inside
/// the transaction that has just moved the user's credentials version.
pub(super) async fn revoke_all_in<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    user_id: i64,
    except: Option<&str>,
    reason: RevokeReason,
    now: i64,
) -> Result<u64, sqlx::Error> {
    // Locked in id order, as an account's erasure locks them, so the two
    // never deadlock.
    Ok(sqlx::query(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id IN \
             (SELECT id FROM sessions \
              WHERE user_id = $3 AND revoked_at IS NULL AND ($4::TEXT IS NULL OR id <> $4) \
              ORDER BY id FOR UPDATE)",
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
impl Sessions for PostgresStore {
    /// The user's row is locked first (`FOR UPDATE`): a password change or a
    /// disable on another instance waits for this session to commit and then
    /// revokes it, or has committed and this one sees the version moved.
    /// Logins of one user are serialised by the same lock, so the eviction
    /// below counts every session that exists.
    async fn create_session(
        &self,
        s: NewSession,
        max_per_user: i64,
    ) -> StoreResult<Option<Created>> {
        let mut tx = self.pool.begin().await.db()?;
        let current: Option<i64> = sqlx::query_scalar(
            "SELECT credentials_version FROM users \
             WHERE id = $1 AND disabled_at IS NULL FOR UPDATE",
        )
        .bind(s.user_id)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        if current != Some(s.credentials_version) {
            return Ok(None);
        }
        let insert = concat!(
            "INSERT INTO sessions (id, user_id, generation, rotated_at, created_at, last_used_at, \
             idle_expires_at, absolute_expires_at, user_agent, ip, credentials_version, \
             auth_time, remember, amr) \
             VALUES ($1, $2, 0, $3, $3, $3, $4, $5, $6, $7, $8, $3, $9, $10) RETURNING ",
            session_columns!(),
            ""
        );
        let Row(session) = sqlx::query_as::<_, Row<Session>>(insert)
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
            .fetch_one(&mut *tx)
            .await
            .db()?;
        // The new session is the most recently used; ties keep it too.
        let evicted: Vec<String> = sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = $5 \
             WHERE id IN (SELECT id FROM sessions \
                 WHERE user_id = $2 AND revoked_at IS NULL \
                     AND idle_expires_at > $1 AND absolute_expires_at > $1 \
                 ORDER BY id = $3 DESC, last_used_at DESC, created_at DESC, id \
                 OFFSET $4) \
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
            " FROM sessions WHERE id = $1"
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

    /// One statement, as a rotation: a password change or disable that
    /// commits first has moved the hash or the version, or revoked the
    /// session, and this update then matches nothing.
    async fn reauthenticate_session(
        &self,
        id: &str,
        verified_hash: &str,
        now: i64,
        amr: &str,
    ) -> StoreResult<Option<Session>> {
        let sql = "UPDATE sessions s SET auth_time = $1, amr = $4 FROM users u \
             WHERE s.id = $2 AND s.revoked_at IS NULL \
                 AND s.idle_expires_at > $1 AND s.absolute_expires_at > $1 AND u.id = s.user_id \
                 AND u.credentials_version = s.credentials_version AND u.disabled_at IS NULL \
                 AND u.password_hash = $3 \
             RETURNING s.id, s.user_id, s.generation, s.rotated_at, s.created_at, s.last_used_at, \
                 s.idle_expires_at, s.absolute_expires_at, s.revoked_at, s.revoked_reason, \
                 s.user_agent, s.ip, s.credentials_version, s.auth_time, s.remember, s.amr";
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
            "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
             WHERE id = $3 AND revoked_at IS NULL AND ($4::BIGINT IS NULL OR user_id = $4)",
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
             WHERE user_id = $1 AND revoked_at IS NULL \
                 AND idle_expires_at > $2 AND absolute_expires_at > $2 \
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
             (SELECT id FROM sessions WHERE absolute_expires_at <= $1 LIMIT $2)",
        )
        .bind(now)
        .bind(limit)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(done.rows_affected())
    }
}
