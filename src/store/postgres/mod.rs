//! The shared PostgreSQL store (sqlx), for several latchkey instances behind
//! one load balancer. Same schema and behaviour as `sqlite/`, in PostgreSQL's
//! SQL: every instance sees one truth, so a rotation, a logout or a detected
//! reuse on one instance holds on all of them at once.
//!
//! The SQL is in one file per concern: `users.rs`, `sessions.rs`, `audit.rs`,
//! `throttle.rs`.

use std::str::FromStr;
use std::sync::Weak;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::group_commit::Rotations;
use super::{CommitObserver, Connections, OrDatabase, Pool, StoreResult};

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
        "id, username, password_hash, role, created_at, disabled_at, credentials_version, email, \
         email_verified"
    };
}
macro_rules! session_columns {
    () => {
        "id, user_id, generation, rotated_at, created_at, last_used_at, idle_expires_at, \
         absolute_expires_at, revoked_at, revoked_reason, user_agent, ip, credentials_version, \
         auth_time, remember, amr"
    };
}

mod audit;
mod devices;
mod mail;
mod second_factor;
mod sessions;
mod signing_keys;
mod throttle;
mod users;

/// The PostgreSQL [`Store`](super::Store), which several latchkey instances
/// can share.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    rotations: Rotations,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`) and applies migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .db()?
            .application_name("latchkey")
            // The compare-and-sets (rotation, the throttle) rely on READ
            // COMMITTED's re-check of a row another transaction changed
            // meanwhile; a server whose default is stricter would fail them
            // instead of settling them.
            .options([("default_transaction_isolation", "read committed")]);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .db()?;
        MIGRATOR.run(&pool).await.db()?;
        let rotations = Rotations::start(sessions::Batched(pool.clone()));
        Ok(Self { pool, rotations })
    }

    /// Closes the connection pool; in-flight queries finish first.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl Pool for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.db()?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    fn connections(&self) -> Connections {
        super::from_sqlx::connections(&self.pool)
    }

    fn observe_commits(&self, observer: Weak<dyn CommitObserver>) {
        self.rotations.observe(observer);
    }
}
