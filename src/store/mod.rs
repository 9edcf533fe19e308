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
            },
            session: row.session,
        }
    }
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
    pub now: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// A security event, kept for the audit trail. Never holds a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEvent {
    pub at: i64,
    pub kind: String,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub session_id: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Answers when the database does.
    async fn ping(&self) -> StoreResult<()>;

    async fn create_user(&self, user: NewUser<'_>, now: i64) -> StoreResult<User>;
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>>;
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>>;
    async fn set_password_hash(&self, user_id: i64, hash: &str, now: i64) -> StoreResult<()>;
    /// Disables (`Some(now)`) or re-enables (`None`) an account; false when
    /// there is no such user.
    async fn set_disabled(&self, user_id: i64, disabled_at: Option<i64>) -> StoreResult<bool>;

    async fn create_session(&self, session: NewSession) -> StoreResult<Session>;
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

    async fn record_event(&self, event: AuditEvent) -> StoreResult<()>;
    /// The newest audit events, newest first.
    async fn recent_events(&self, limit: i64) -> StoreResult<Vec<AuditEvent>>;
    /// Audit events at or after `since`, of one user when given, oldest first.
    async fn events(
        &self,
        user_id: Option<i64>,
        since: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEvent>>;

    /// Until when `key` is blocked (0 when it is not).
    async fn throttle_blocked_until(&self, key: &str) -> StoreResult<i64>;
    /// Counts a failure against `key` and returns the count; counts older
    /// than `window` seconds start again from one.
    async fn throttle_record_failure(&self, key: &str, now: i64, window: i64) -> StoreResult<i64>;
    async fn throttle_block(&self, key: &str, until: i64) -> StoreResult<()>;
    async fn throttle_clear(&self, key: &str) -> StoreResult<()>;

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
