//! The store: everything latchkey keeps, behind one trait per concern
//! ([`Users`], [`Sessions`], [`Devices`], [`AuditLog`], [`Throttles`], [`SigningKeys`],
//! [`Outbox`], [`Links`], [`SecondFactors`], and the [`Pool`]
//! under them all), gathered by [`Store`], with one implementation per
//! database. Each implementation keeps its SQL in one file per concern
//! (`sqlite/sessions.rs`, `postgres/sessions.rs`, …) and its own migrations.
//! All SQL lives below this module; callers see only these types and
//! [`StoreError`], which names no database library.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::config::Database;

use async_trait::async_trait;

mod audit;
mod devices;
mod from_sqlx;
mod group_commit;
mod mail;
mod postgres;
mod second_factor;
mod sessions;
mod signing_keys;
mod sqlite;
mod throttle;
mod users;

pub use audit::{AuditEvent, AuditLog};
pub use devices::{Devices, NewDevice};
pub use mail::{
    EmailVerified, Links, LiveLink, MailKind, MailOutcome, NewLink, NewMail, Outbox, QueuedMail,
};
pub use postgres::PostgresStore;
pub use second_factor::{PendingLogin, SecondFactors, TotpFactor};
pub use sessions::{Created, IdleTimeouts, NewSession, RevokeReason, Rotated, Session, Sessions};
pub use signing_keys::{SigningKeys, StoredKey};
pub use sqlite::SqliteStore;
pub use throttle::{Allowance, Reservation, Throttles};
pub use users::{Erasure, NewUser, PasswordChange, User, Users};

/// What every store method returns.
pub type StoreResult<T> = Result<T, StoreError>;

/// Why a store call failed, whatever the database behind it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// [`Users::create_user`] found the username already in use.
    #[error("username taken")]
    UsernameTaken,
    /// [`Users::set_email`] found the address verified on another account.
    #[error("email taken")]
    EmailTaken,
    /// The database did not answer: a lost or refused connection, no free
    /// connection within the pool's wait, a lock held past the busy
    /// timeout, a file that cannot be read or written. Passing: the same
    /// call may succeed once it answers again (README, "When the database
    /// goes away").
    #[error("database unavailable: {0}")]
    Unavailable(Arc<dyn std::error::Error + Send + Sync>),
    /// The database failed otherwise; the cause is kept for the logs.
    /// Shared, because one failed group commit (SQLite) answers every
    /// rotation in it.
    #[error("database error: {0}")]
    Database(Arc<dyn std::error::Error + Send + Sync>),
}

/// When a call last found the database not answering (Unix seconds): an
/// outage is logged when it begins, not at every call it fails. One for the
/// process, which is one service over one database.
static LAST_UNAVAILABLE: AtomicI64 = AtomicI64::new(0);

/// Failures this far apart are two outages, each logged. Reads may go on
/// answering while writes fail (a lock held elsewhere), so a success does not
/// mark an outage's end; quiet does.
const OUTAGE_GAP: i64 = 60;

/// The connection pool every concern runs on.
#[async_trait]
pub trait Pool: Send + Sync {
    /// Answers when the database does.
    async fn ping(&self) -> StoreResult<()>;

    /// Closes the connection pool; in-flight queries finish first.
    async fn close(&self);

    /// The pool's connections at this moment, for the metrics (README,
    /// "Metrics"). Cheap: no query.
    fn connections(&self) -> Connections;

    /// Tells `observer` of every group commit from now on, for as long as it
    /// lives. Several observers may listen (one per service over the store);
    /// a store that commits rotations one by one has nothing to tell.
    fn observe_commits(&self, observer: Weak<dyn CommitObserver>) {
        let _ = observer;
    }
}

/// A pool's connections at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Connections {
    /// Lent to a query or a transaction.
    pub in_use: u32,
    /// Open, waiting to be lent.
    pub idle: u32,
    /// The most the pool opens at once.
    pub max: u32,
}

/// Hears of each group commit: several rotations applied in one transaction
/// (README, "Durability").
pub trait CommitObserver: Send + Sync {
    /// A batch of `rotations` took `took`, from the start of its statement to
    /// the end of its `COMMIT` (or of its failure).
    fn committed(&self, rotations: usize, took: Duration);
}

/// Everything latchkey keeps: what the application holds (`Arc<dyn Store>`).
/// Any type with every concern is one.
pub trait Store:
    Users
    + Sessions
    + Devices
    + AuditLog
    + Throttles
    + SigningKeys
    + Outbox
    + Links
    + SecondFactors
    + Pool
    + 'static
{
}

impl<T> Store for T where
    T: Users
        + Sessions
        + Devices
        + AuditLog
        + Throttles
        + SigningKeys
        + Outbox
        + Links
        + SecondFactors
        + Pool
        + 'static
{
}

/// `?` inside the store: a backend's error becomes [`StoreError::Database`].
/// Not a `From` impl, which would be public and tie callers to the backend's
/// error types.
trait OrDatabase<T> {
    fn db(self) -> StoreResult<T>;
}

impl<T, E> OrDatabase<T> for Result<T, E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn db(self) -> StoreResult<T> {
        self.map_err(|e| {
            let sqlx = (&e as &(dyn std::error::Error + 'static)).downcast_ref::<sqlx::Error>();
            if !sqlx.is_some_and(from_sqlx::is_unavailable) {
                return StoreError::Database(Arc::new(e));
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            if now - LAST_UNAVAILABLE.swap(now, Ordering::Relaxed) > OUTAGE_GAP {
                tracing::warn!(
                    error = %e,
                    "the database does not answer: requests that need it get 503 until it does"
                );
            }
            StoreError::Unavailable(Arc::new(e))
        })
    }
}

/// Opens the store `database` names, applying its migrations.
pub async fn open(database: &Database) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match database {
        Database::SqliteFile(path) => Arc::new(SqliteStore::open(path).await?),
        Database::SqliteMemory => Arc::new(SqliteStore::in_memory().await?),
        Database::Postgres(url) => Arc::new(PostgresStore::connect(url).await?),
    })
}
