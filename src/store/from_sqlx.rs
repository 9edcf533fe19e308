//! What sqlx hands back, read into the store's types: rows (for both
//! backends, by column name), unique violations and a pool's connections.

use sqlx::{ColumnIndex, Decode, FromRow, Row, Type};

use super::{AuditEvent, Connections, Rotated, Session, StoredKey, User};

/// A pool's connections now, from its own counts (no query).
pub(super) fn connections<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Connections {
    let open = pool.size();
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(open);
    Connections {
        in_use: open - idle,
        idle,
        max: pool.options().get_max_connections(),
    }
}

impl<'r, R> FromRow<'r, R> for User
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> sqlx::Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            username: row.try_get("username")?,
            password_hash: row.try_get("password_hash")?,
            role: row.try_get("role")?,
            created_at: row.try_get("created_at")?,
            disabled_at: row.try_get("disabled_at")?,
            credentials_version: row.try_get("credentials_version")?,
        })
    }
}

impl<'r, R> FromRow<'r, R> for StoredKey
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> sqlx::Result<Self> {
        Ok(Self {
            algorithm: row.try_get("algorithm")?,
            seq: row.try_get("seq")?,
            kid: row.try_get("kid")?,
            public_key: row.try_get("public_key")?,
            created_at: row.try_get("created_at")?,
            signs_from: row.try_get("signs_from")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    }
}

impl<'r, R> FromRow<'r, R> for Session
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> sqlx::Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            generation: row.try_get("generation")?,
            rotated_at: row.try_get("rotated_at")?,
            created_at: row.try_get("created_at")?,
            last_used_at: row.try_get("last_used_at")?,
            idle_expires_at: row.try_get("idle_expires_at")?,
            absolute_expires_at: row.try_get("absolute_expires_at")?,
            revoked_at: row.try_get("revoked_at")?,
            revoked_reason: row.try_get("revoked_reason")?,
            user_agent: row.try_get("user_agent")?,
            ip: row.try_get("ip")?,
            credentials_version: row.try_get("credentials_version")?,
            auth_time: row.try_get("auth_time")?,
            remember: row.try_get("remember")?,
        })
    }
}

impl<'r, R> FromRow<'r, R> for AuditEvent
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> sqlx::Result<Self> {
        Ok(Self {
            at: row.try_get("at")?,
            kind: row.try_get("kind")?,
            user_id: row.try_get("user_id")?,
            username: row.try_get("username")?,
            session_id: row.try_get("session_id")?,
            ip: row.try_get("ip")?,
            request_id: row.try_get("request_id")?,
            detail: row.try_get("detail")?,
            count: row.try_get("count")?,
        })
    }
}

/// The row a rotation returns: the session's columns, then its user's under
/// `user_` names (`id` and `created_at` exist in both tables).
#[derive(sqlx::FromRow)]
pub(super) struct RotatedRow {
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

pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// Errors of a database that does not answer, rather than of the query:
/// they pass when it answers again (README, "When the database goes away").
pub(super) fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                // SQLSTATE (PostgreSQL, Appendix A): connection exceptions;
                // shutting down, restarting or not yet accepting
                // connections; out of connections.
                code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
            } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLite's result code, the primary code in the low byte of
                // an extended one: BUSY, LOCKED, READONLY (the file turned
                // read-only), IOERR, FULL, CANTOPEN.
                code.parse::<i32>()
                    .is_ok_and(|code| matches!(code & 0xff, 5 | 6 | 8 | 10 | 13 | 14))
            } else {
                false
            }
        }
        _ => false,
    }
}
