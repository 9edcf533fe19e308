//! The store: everything latchkey keeps, behind one trait with one
//! implementation per database. All SQL lives below this module; callers see
//! only these types and [`StoreError`].

use async_trait::async_trait;

mod postgres;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("username taken")]
    UsernameTaken,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A group commit failed: every rotation in it shares the one error.
    #[error("database error in a batch: {0}")]
    Batch(std::sync::Arc<sqlx::Error>),
}

#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    /// Bumped by every password change and by disabling, in the same
    /// transaction that revokes the user's sessions: a login or rotation that
    /// verified older credentials finds it moved and creates nothing.
    pub credentials_version: i64,
}

// The hash stays out of `Debug`, and so out of any log line that prints a user.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .field("disabled_at", &self.disabled_at)
            .field("credentials_version", &self.credentials_version)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub password_hash: &'a str,
    pub role: &'a str,
}

/// A session: one sign-in on one device, with its refresh-token chain.
///
/// No token material is stored. The chain's position is `generation`; the
/// current refresh token is the JWT that signs (`id`, `generation`,
/// `rotated_at`, `idle_expires_at`), so only the holder of the refresh secret
/// can produce it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Session {
    pub id: String,
    pub user_id: i64,
    pub generation: i64,
    /// When the chain last advanced (the session's start for generation 0).
    pub rotated_at: i64,
    pub created_at: i64,
    pub last_used_at: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// The user's credentials version when the session began (or when this
    /// session itself changed the password); it lives only while they agree.
    pub credentials_version: i64,
}

/// A session as a rotation left it, with its user as the user is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub session: Session,
    pub user: User,
}

/// The row a rotation returns: the session's columns, then its user's under
/// `user_` names (`id` and `created_at` exist in both tables).
#[derive(sqlx::FromRow)]
struct RotatedRow {
    #[sqlx(flatten)]
    session: Session,
    user_username: String,
    user_password_hash: String,
    user_role: String,
    user_created_at: i64,
    user_disabled_at: Option<i64>,
    user_credentials_version: i64,
}

impl From<RotatedRow> for Rotated {
    fn from(row: RotatedRow) -> Self {
        Self {
            user: User {
                id: row.session.user_id,
                username: row.user_username,
                password_hash: row.user_password_hash,
                role: row.user_role,
                created_at: row.user_created_at,
                disabled_at: row.user_disabled_at,
                credentials_version: row.user_credentials_version,
            },
            session: row.session,
        }
    }
}

/// The back-off a counter's `count`-th attempt imposes on the next one:
/// none until the allowance `free` is reached, then 1 s, 2 s, 4 s… capped.
pub(crate) fn throttle_delay(count: i64, free: i64, max_delay: i64) -> Option<i64> {
    let over = count.checked_sub(free).filter(|over| *over >= 0)?;
    let exponent = u32::try_from(over.min(20)).unwrap_or(20);
    Some(2_i64.pow(exponent).min(max_delay))
}

impl Session {
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.idle_expires_at > now && self.absolute_expires_at > now
    }
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub user_id: i64,
    /// The version of the credentials that were verified for this login:
    /// the session is created only if it is still the user's.
    pub credentials_version: i64,
    pub now: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// A session just created, and the least recently used sessions of the
/// same user it pushed out (`MAX_SESSIONS_PER_USER`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub session: Session,
    pub evicted: Vec<String>,
}

/// A password change: applied only if the stored hash is still the one the
/// current password was verified against (compare-and-set).
#[derive(Debug, Clone)]
pub struct PasswordChange<'a> {
    pub user_id: i64,
    pub verified_hash: &'a str,
    pub new_hash: &'a str,
    /// The session making the change, which stays signed in.
    pub keep_session: Option<&'a str>,
    pub now: i64,
}

/// One throttle counter an attempt is charged to, and how many attempts it
/// allows before each further one must wait (see `auth::throttle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowance {
    pub key: String,
    pub free: i64,
}

/// The outcome of reserving an attempt against a set of counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Counted against every counter; the work may go ahead.
    Granted,
    /// Some counter is in its back-off until then; nothing was counted.
    Refused { until: i64 },
}

/// A security event, kept for the audit trail. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEvent {
    pub at: i64,
    pub kind: String,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub session_id: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
    /// How many identical events this row stands for (repeated rejections
    /// from one address within a minute are kept as one row).
    pub count: i64,
}

impl Default for AuditEvent {
    fn default() -> Self {
        Self {
            at: 0,
            kind: String::new(),
            user_id: None,
            username: None,
            session_id: None,
            ip: None,
            request_id: None,
            detail: None,
            count: 1,
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers when the database does.
    async fn ping(&self) -> StoreResult<()>;

    async fn create_user(&self, user: NewUser<'_>, now: i64) -> StoreResult<User>;
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>>;
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>>;
    /// Sets a new password hash outright (an operator's reset): the
    /// credentials version moves and every session of the user is revoked,
    /// in one transaction. Returns the sessions revoked.
    async fn set_password_hash(&self, user_id: i64, hash: &str, now: i64) -> StoreResult<u64>;
    /// Re-hashes the same password (a stronger cost or format), only if the
    /// stored hash is still `verified_hash`, so it never overwrites a newer
    /// password. The credentials version does not move. Returns whether it applied.
    async fn upgrade_password_hash(
        &self,
        user_id: i64,
        verified_hash: &str,
        new_hash: &str,
    ) -> StoreResult<bool>;
    /// Changes the password if the stored hash is still the verified one; in
    /// the same transaction the credentials version moves, every other
    /// session is revoked (`password_changed`) and the kept session moves to
    /// the new version. `None` when the hash had changed meanwhile.
    async fn change_password(&self, change: PasswordChange<'_>) -> StoreResult<Option<u64>>;
    /// Disables the account: the credentials version moves and every session
    /// is revoked (`user_disabled`), in one transaction. `None` when there is
    /// no such user; otherwise the sessions revoked.
    async fn disable_user(&self, user_id: i64, now: i64) -> StoreResult<Option<u64>>;
    /// Re-enables a disabled account; false when there is no such user.
    async fn enable_user(&self, user_id: i64) -> StoreResult<bool>;

    /// Creates the session only if the user is enabled and still at the
    /// session's credentials version (else `None`), and revokes the least
    /// recently used live sessions beyond `max_per_user`
    /// (`session_evicted`), in one transaction.
    async fn create_session(
        &self,
        session: NewSession,
        max_per_user: i64,
    ) -> StoreResult<Option<Created>>;
    async fn session(&self, id: &str) -> StoreResult<Option<Session>>;
    /// Advances the chain only if it is still at `generation` and the session
    /// is live: one atomic compare-and-set, so concurrent callers presenting
    /// the same token can never both win. The idle expiry slides to
    /// `now + idle_ttl`, capped at the absolute expiry. The session's user
    /// comes back from the same statement: a rotation is one round trip.
    async fn rotate_session(
        &self,
        id: &str,
        generation: i64,
        now: i64,
        idle_ttl: i64,
    ) -> StoreResult<Option<Rotated>>;
    /// Revokes a live session; with `owner`, only if it belongs to that user.
    /// Returns whether a session was revoked by this call.
    async fn revoke_session(
        &self,
        id: &str,
        owner: Option<i64>,
        reason: &str,
        now: i64,
    ) -> StoreResult<bool>;
    /// Revokes every live session of a user, but `except` when given;
    /// returns how many.
    async fn revoke_user_sessions(
        &self,
        user_id: i64,
        except: Option<&str>,
        reason: &str,
        now: i64,
    ) -> StoreResult<u64>;
    /// The user's sessions that are neither revoked nor expired, newest first.
    async fn active_sessions(&self, user_id: i64, now: i64) -> StoreResult<Vec<Session>>;

    /// Writes an event; returns its row id.
    async fn record_event(&self, event: AuditEvent) -> StoreResult<i64>;
    /// Adds `more` to the count of the event in row `id`.
    async fn add_to_event_count(&self, id: i64, more: i64) -> StoreResult<()>;
    /// The newest audit events, newest first.
    async fn recent_events(&self, limit: i64) -> StoreResult<Vec<AuditEvent>>;
    /// Audit events at or after `since`, of one user when given, oldest first.
    async fn events(
        &self,
        user_id: Option<i64>,
        since: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEvent>>;

    /// Counts one attempt against every counter, atomically and before the
    /// attempt's work is done, unless one of them is in its back-off (then
    /// nothing is counted). Counts quiet for `window` seconds start again;
    /// a counter that reaches its allowance blocks the next attempt for
    /// 1 s, 2 s, 4 s… up to `max_delay`.
    async fn throttle_reserve(
        &self,
        counters: &[Allowance],
        now: i64,
        window: i64,
        max_delay: i64,
    ) -> StoreResult<Reservation>;
    /// Settles a successful attempt: `clear` counters are deleted; `release`
    /// counters give back the attempt reserved for it.
    async fn throttle_settle(&self, clear: &[&str], release: &[&str]) -> StoreResult<()>;

    /// Deletes up to `limit` sessions whose absolute expiry is at or before
    /// `now`; returns how many. Such a session can never be used again.
    async fn delete_expired_sessions(&self, now: i64, limit: i64) -> StoreResult<u64>;
    /// Deletes up to `limit` audit events older than `before`, oldest first.
    async fn delete_events_before(&self, before: i64, limit: i64) -> StoreResult<u64>;
    /// Deletes up to `limit` throttle counters untouched since `before` and
    /// no longer blocking at `now`.
    async fn delete_stale_throttles(&self, before: i64, now: i64, limit: i64) -> StoreResult<u64>;

    /// Closes the connection pool; in-flight queries finish first.
    async fn close(&self);
}

/// Opens the store `database` names, applying its migrations.
pub async fn open(database: &crate::config::Database) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    use crate::config::Database;
    Ok(match database {
        Database::SqliteFile(path) => std::sync::Arc::new(SqliteStore::open(path).await?),
        Database::SqliteMemory => std::sync::Arc::new(SqliteStore::in_memory().await?),
        Database::Postgres(url) => std::sync::Arc::new(PostgresStore::connect(url).await?),
    })
}
