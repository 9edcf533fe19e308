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
    Allowance, AuditEvent, Created, NewSession, NewUser, PasswordChange, Reservation, Rotated,
    RotatedRow, Session, Store, StoreError, StoreResult, User, throttle_delay,
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
        "id, username, password_hash, role, created_at, disabled_at, credentials_version"
    };
}
macro_rules! session_columns {
    () => {
        "id, user_id, generation, rotated_at, created_at, last_used_at, idle_expires_at, \
         absolute_expires_at, revoked_at, revoked_reason, user_agent, ip, credentials_version"
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

/// Revokes every live session of a user but `except`: on its own, or inside
/// the transaction that has just moved the user's credentials version.
async fn revoke_all_in<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    user_id: i64,
    except: Option<&str>,
    reason: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
         WHERE user_id = $3 AND revoked_at IS NULL AND ($4::TEXT IS NULL OR id <> $4)",
    )
    .bind(now)
    .bind(reason)
    .bind(user_id)
    .bind(except)
    .execute(executor)
    .await?
    .rows_affected())
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

    async fn set_password_hash(&self, user_id: i64, hash: &str, now: i64) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE users SET password_hash = $1, updated_at = $2, \
                 credentials_version = credentials_version + 1 WHERE id = $3",
        )
        .bind(hash)
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let revoked = revoke_all_in(&mut *tx, user_id, None, "password_reset", now).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn upgrade_password_hash(
        &self,
        user_id: i64,
        verified_hash: &str,
        new_hash: &str,
    ) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3")
                .bind(new_hash)
                .bind(user_id)
                .bind(verified_hash)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The `UPDATE users` takes the user's row lock first, so a concurrent
    /// `create_session` (which locks the same row) either committed before it,
    /// and its session is revoked here, or waits and then finds the version moved.
    async fn change_password(&self, c: PasswordChange<'_>) -> StoreResult<Option<u64>> {
        let mut tx = self.pool.begin().await?;
        let version: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET password_hash = $1, updated_at = $2, \
                 credentials_version = credentials_version + 1 \
             WHERE id = $3 AND password_hash = $4 RETURNING credentials_version",
        )
        .bind(c.new_hash)
        .bind(c.now)
        .bind(c.user_id)
        .bind(c.verified_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(version) = version else {
            return Ok(None);
        };
        let revoked = revoke_all_in(
            &mut *tx,
            c.user_id,
            c.keep_session,
            "password_changed",
            c.now,
        )
        .await?;
        sqlx::query("UPDATE sessions SET credentials_version = $1 WHERE id = $2 AND user_id = $3")
            .bind(version)
            .bind(c.keep_session)
            .bind(c.user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(revoked))
    }

    async fn disable_user(&self, user_id: i64, now: i64) -> StoreResult<Option<u64>> {
        let mut tx = self.pool.begin().await?;
        let found = sqlx::query(
            "UPDATE users SET disabled_at = COALESCE(disabled_at, $1), \
                 credentials_version = credentials_version + 1 WHERE id = $2",
        )
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if found == 0 {
            return Ok(None);
        }
        let revoked = revoke_all_in(&mut *tx, user_id, None, "user_disabled", now).await?;
        tx.commit().await?;
        Ok(Some(revoked))
    }

    async fn enable_user(&self, user_id: i64) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

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
        let mut tx = self.pool.begin().await?;
        let current: Option<i64> = sqlx::query_scalar(
            "SELECT credentials_version FROM users \
             WHERE id = $1 AND disabled_at IS NULL FOR UPDATE",
        )
        .bind(s.user_id)
        .fetch_optional(&mut *tx)
        .await?;
        if current != Some(s.credentials_version) {
            return Ok(None);
        }
        let insert = concat!(
            "INSERT INTO sessions (id, user_id, generation, rotated_at, created_at, last_used_at, \
             idle_expires_at, absolute_expires_at, user_agent, ip, credentials_version) \
             VALUES ($1, $2, 0, $3, $3, $3, $4, $5, $6, $7, $8) RETURNING ",
            session_columns!(),
            ""
        );
        let session: Session = sqlx::query_as(insert)
            .bind(&s.id)
            .bind(s.user_id)
            .bind(s.now)
            .bind(s.idle_expires_at)
            .bind(s.absolute_expires_at)
            .bind(&s.user_agent)
            .bind(&s.ip)
            .bind(s.credentials_version)
            .fetch_one(&mut *tx)
            .await?;
        // The new session is the most recently used; ties keep it too.
        let evicted: Vec<String> = sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = 'session_evicted' \
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
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Created { session, evicted }))
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
                 AND u.credentials_version = s.credentials_version AND u.disabled_at IS NULL \
             RETURNING s.id, s.user_id, s.generation, s.rotated_at, s.created_at, s.last_used_at, \
                 s.idle_expires_at, s.absolute_expires_at, s.revoked_at, s.revoked_reason, \
                 s.user_agent, s.ip, s.credentials_version, u.username AS user_username, \
                 u.password_hash AS user_password_hash, u.role AS user_role, \
                 u.created_at AS user_created_at, u.disabled_at AS user_disabled_at, \
                 u.credentials_version AS user_credentials_version";
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
        Ok(revoke_all_in(&self.pool, user_id, except, reason, now).await?)
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

    async fn record_event(&self, e: AuditEvent) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO audit_events \
                 (at, kind, user_id, username, session_id, ip, request_id, detail, count) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(e.at)
        .bind(&e.kind)
        .bind(e.user_id)
        .bind(&e.username)
        .bind(&e.session_id)
        .bind(&e.ip)
        .bind(&e.request_id)
        .bind(&e.detail)
        .bind(e.count)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn add_to_event_count(&self, id: i64, more: i64) -> StoreResult<()> {
        sqlx::query("UPDATE audit_events SET count = count + $1 WHERE id = $2")
            .bind(more)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn recent_events(&self, limit: i64) -> StoreResult<Vec<AuditEvent>> {
        Ok(sqlx::query_as(
            "SELECT at, kind, user_id, username, session_id, ip, request_id, detail, count \
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
            "SELECT at, kind, user_id, username, session_id, ip, request_id, detail, count \
             FROM audit_events WHERE at >= $1 AND ($2::BIGINT IS NULL OR user_id = $2) \
             ORDER BY at, id LIMIT $3",
        )
        .bind(since)
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// One transaction: each upsert locks its counter's row, so a concurrent
    /// reservation on any instance waits for this one to commit and then sees
    /// its count and back-off (`ON CONFLICT DO UPDATE` re-reads the newest
    /// row version). Counters are taken in one order (the caller sorts them),
    /// so two reservations never deadlock.
    async fn throttle_reserve(
        &self,
        counters: &[Allowance],
        now: i64,
        window: i64,
        max_delay: i64,
    ) -> StoreResult<Reservation> {
        let mut tx = self.pool.begin().await?;
        for c in counters {
            // No row comes back while the counter is in its back-off.
            let count: Option<i64> = sqlx::query_scalar(
                "INSERT INTO throttle (key, failures, blocked_until, updated_at) \
                 VALUES ($1, 1, 0, $2) \
                 ON CONFLICT (key) DO UPDATE SET \
                     failures = CASE WHEN throttle.updated_at < $2 - $3 THEN 1 \
                         ELSE throttle.failures + 1 END, \
                     updated_at = $2 \
                 WHERE throttle.blocked_until <= $2 \
                 RETURNING failures",
            )
            .bind(&c.key)
            .bind(now)
            .bind(window)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(count) = count else {
                let until: i64 =
                    sqlx::query_scalar("SELECT blocked_until FROM throttle WHERE key = $1")
                        .bind(&c.key)
                        .fetch_one(&mut *tx)
                        .await?;
                // Dropping the transaction rolls back what was counted so far.
                return Ok(Reservation::Refused { until });
            };
            if let Some(delay) = throttle_delay(count, c.free, max_delay) {
                sqlx::query("UPDATE throttle SET blocked_until = $1 WHERE key = $2")
                    .bind(now + delay)
                    .bind(&c.key)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(Reservation::Granted)
    }

    async fn throttle_settle(&self, clear: &[&str], release: &[&str]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for key in clear {
            sqlx::query("DELETE FROM throttle WHERE key = $1")
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        for key in release {
            sqlx::query(
                "UPDATE throttle SET failures = failures - 1 WHERE key = $1 AND failures > 0",
            )
            .bind(key)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
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
