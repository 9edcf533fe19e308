//! The embedded SQLite store (sqlx). One file, WAL journal, `synchronous=FULL`:
//! a rotation is on disk before its response leaves, so a crash or power loss
//! never hands a client a cookie the database has forgotten.
//!
//! The SQL is in one file per concern: `users.rs`, `sessions.rs` (rotations
//! through the group commit, `store/group_commit.rs`), `audit.rs`, `throttle.rs`, `signing_keys.rs`.

use std::path::Path;
use std::str::FromStr;
use std::sync::Weak;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::group_commit::Rotations;
use super::{CommitObserver, Connections, OrDatabase, Pool, StoreResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

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

/// The SQLite [`Store`](super::Store): one database file (or a private
/// in-memory database), for a single latchkey instance.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    rotations: Rotations,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    ///
    /// A new file is created readable by its owner only: it holds password
    /// hashes. SQLite gives its `-wal` and `-shm` files the main file's mode.
    /// An existing file keeps whatever mode the operator gave it.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        create_private(path).db()?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // As the busy timeout: a request never waits longer for a
            // connection than for a lock (README, "When the database goes away").
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .db()?;
        Self::migrated(pool).await
    }

    /// A private in-memory database (one connection, so one database).
    pub async fn in_memory() -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .db()?
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .db()?;
        Self::migrated(pool).await
    }

    async fn migrated(pool: SqlitePool) -> StoreResult<Self> {
        MIGRATOR.run(&pool).await.db()?;
        let rotations = Rotations::start(sessions::Batched(pool.clone()));
        Ok(Self { pool, rotations })
    }

    /// Closes the connection pool; in-flight queries finish first.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A write transaction that takes SQLite's write lock at once: a deferred one
/// that reads first and then writes can fail with `SQLITE_BUSY` when another
/// connection wrote in between, whatever the busy timeout.
async fn begin_write(
    pool: &SqlitePool,
) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// Creates `path` empty with mode 0600 unless it exists (SQLite takes an
/// empty file for an empty database). `create_new` makes the check and the
/// creation one step, so an existing file is never touched.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl Pool for SqliteStore {
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
