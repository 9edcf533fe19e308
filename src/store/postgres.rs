//! The shared PostgreSQL store (sqlx), for several latchkey instances behind
//! one load balancer. Same schema and behaviour as `sqlite.rs`, in PostgreSQL's
//! SQL: every instance sees one truth, so a rotation, a logout or a detected
//! reuse on one instance holds on all of them at once.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{
    AuditEvent, NewSession, NewUser, Rotated, RotatedRow, Session, Store, StoreError, StoreResult,
    User,
};

// Applied at every start. Several instances starting at once on an empty
// database is safe: sqlx's PostgreSQL migrator (sqlx-postgres 0.9,
// `migrate.rs`, `Migrate::lock`) first takes `pg_advisory_lock` on a key
// derived from `current_database()`, and only then creates `_sqlx_migrations`,
// reads what is applied and applies the rest, each migration in its own
// transaction together with its bookkeeping row. The other instances wait on
// the lock, then find every migration applied and do nothing.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per instance. Each request needs at most one at a time; several
/// instances share the server's `max_connections` (100 by default).
const MAX_CONNECTIONS: u32 = 10;
/// How long a request waits for a free connection before it fails, rather
/// than queueing without bound.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

// Column lists as macros so queries stay `&'static str` (sqlx refuses built strings).
macro_rules! user_columns {
    () => {
        "id, username, password_hash, role, created_at, disabled_at"
    };
}
macro_rules! session_columns {
    () => {
        "id, user_id, generation, rotated_at, created_at, last_used_at, idle_expires_at, \
         absolute_expires_at, revoked_at, revoked_reason, user_agent, ip"
    };
}

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`) and applies migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)?.application_name("latchkey");
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await.map_err(sqlx::Error::from)?;
        Ok(Self { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_user(&self, user: NewUser<'_>, now: i64) -> StoreResult<User> {
        let sql = concat!(
            "INSERT INTO users (username, password_hash, role, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) RETURNING ",
            user_columns!(),
            ""
        );
        sqlx::query_as(sql)
            .bind(user.username)
            .bind(user.password_hash)
            .bind(user.role)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::UsernameTaken
                } else {
                    e.into()
                }
            })
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username = $1"
        );
        Ok(sqlx::query_as(sql)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
        Ok(sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn set_password_hash(&self, user_id: i64, hash: &str, now: i64) -> StoreResult<()> {
        sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(hash)
            .bind(now)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn create_session(&self, s: NewSession) -> StoreResult<Session> {
        let sql = concat!(
            "INSERT INTO sessions (id, user_id, generation, rotated_at, created_at, last_used_at, \
             idle_expires_at, absolute_expires_at, user_agent, ip) \
             VALUES ($1, $2, 0, $3, $3, $3, $4, $5, $6, $7) RETURNING ",
            session_columns!(),
            ""
        );
        Ok(sqlx::query_as(sql)
            .bind(&s.id)
            .bind(s.user_id)
            .bind(s.now)
            .bind(s.idle_expires_at)
            .bind(s.absolute_expires_at)
            .bind(&s.user_agent)
            .bind(&s.ip)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn session(&self, id: &str) -> StoreResult<Option<Session>> {
        let sql = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE id = $1"
        );
        Ok(sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// One statement, so one atomic compare-and-set. Under READ COMMITTED a
    /// concurrent update of the same row waits for the first to commit and
    /// then re-checks the `WHERE` against the row as it now is: the
    /// generation has moved on, so the second update matches nothing. Two
    /// callers, on any instances, can never both advance the chain.
    async fn rotate_session(
        &self,
        id: &str,
        generation: i64,
        now: i64,
        idle_ttl: i64,
    ) -> StoreResult<Option<Rotated>> {
        let sql = "UPDATE sessions s SET generation = s.generation + 1, rotated_at = $1, \
                 last_used_at = $1, idle_expires_at = LEAST($1 + $2, s.absolute_expires_at) \
             FROM users u \
             WHERE s.id = $3 AND s.generation = $4 AND s.revoked_at IS NULL \
                 AND s.idle_expires_at > $1 AND s.absolute_expires_at > $1 AND u.id = s.user_id \
             RETURNING s.id, s.user_id, s.generation, s.rotated_at, s.created_at, s.last_used_at, \
                 s.idle_expires_at, s.absolute_expires_at, s.revoked_at, s.revoked_reason, \
                 s.user_agent, s.ip, u.username AS user_username, \
                 u.password_hash AS user_password_hash, u.role AS user_role, \
                 u.created_at AS user_created_at, u.disabled_at AS user_disabled_at";
        let row: Option<RotatedRow> = sqlx::query_as(sql)
            .bind(now)
            .bind(idle_ttl)
            .bind(id)
            .bind(generation)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Rotated::from))
    }

    async fn revoke_session(
        &self,
        id: &str,
        owner: Option<i64>,
        reason: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
             WHERE id = $3 AND revoked_at IS NULL AND ($4::BIGINT IS NULL OR user_id = $4)",
        )
        .bind(now)
        .bind(reason)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_user_sessions(
        &self,
        user_id: i64,
        except: Option<&str>,
        reason: &str,
        now: i64,
    ) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
             WHERE user_id = $3 AND revoked_at IS NULL AND ($4::TEXT IS NULL OR id <> $4)",
        )
        .bind(now)
        .bind(reason)
        .bind(user_id)
        .bind(except)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn set_disabled(&self, user_id: i64, disabled_at: Option<i64>) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
            .bind(disabled_at)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
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
        Ok(sqlx::query_as(sql)
            .bind(user_id)
            .bind(now)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn record_event(&self, e: AuditEvent) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_events (at, kind, user_id, username, session_id, ip, request_id, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(e.at)
        .bind(&e.kind)
        .bind(e.user_id)
        .bind(&e.username)
        .bind(&e.session_id)
        .bind(&e.ip)
        .bind(&e.request_id)
        .bind(&e.detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn recent_events(&self, limit: i64) -> StoreResult<Vec<AuditEvent>> {
        Ok(sqlx::query_as(
            "SELECT at, kind, user_id, username, session_id, ip, request_id, detail \
             FROM audit_events ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn events(
        &self,
        user_id: Option<i64>,
        since: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEvent>> {
        Ok(sqlx::query_as(
            "SELECT at, kind, user_id, username, session_id, ip, request_id, detail \
             FROM audit_events WHERE at >= $1 AND ($2::BIGINT IS NULL OR user_id = $2) \
             ORDER BY at, id LIMIT $3",
        )
        .bind(since)
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn throttle_blocked_until(&self, key: &str) -> StoreResult<i64> {
        let until: Option<i64> =
            sqlx::query_scalar("SELECT blocked_until FROM throttle WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(until.unwrap_or(0))
    }

    /// One upsert: concurrent failures on several instances each count, and
    /// each caller sees the count its own failure made.
    async fn throttle_record_failure(&self, key: &str, now: i64, window: i64) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO throttle (key, failures, blocked_until, updated_at) VALUES ($1, 1, 0, $2) \
             ON CONFLICT (key) DO UPDATE SET \
                 failures = CASE WHEN throttle.updated_at < $2 - $3 THEN 1 ELSE throttle.failures + 1 END, \
                 updated_at = $2 \
             RETURNING failures",
        )
        .bind(key)
        .bind(now)
        .bind(window)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn throttle_block(&self, key: &str, until: i64) -> StoreResult<()> {
        sqlx::query("UPDATE throttle SET blocked_until = $1 WHERE key = $2")
            .bind(until)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn throttle_clear(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM throttle WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, now: i64, limit: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM sessions WHERE id IN \
             (SELECT id FROM sessions WHERE absolute_expires_at <= $1 LIMIT $2)",
        )
        .bind(now)
        .bind(limit)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn delete_events_before(&self, before: i64, limit: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM audit_events WHERE id IN \
             (SELECT id FROM audit_events WHERE at < $1 ORDER BY at LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn delete_stale_throttles(&self, before: i64, now: i64, limit: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM throttle WHERE key IN \
             (SELECT key FROM throttle WHERE updated_at < $1 AND blocked_until <= $2 LIMIT $3)",
        )
        .bind(before)
        .bind(now)
        .bind(limit)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
