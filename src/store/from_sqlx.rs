//! What sqlx hands back, read into the store's types: rows (for both
//! backends, by column name), unique violations and a pool's connections.

use sqlx::{ColumnIndex, Decode, FromRow, Type};

use super::{AuditEvent, Connections, QueuedMail, Rotated, Session, StoredKey, User};

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

/// A row read into one of the store's types. Only this private wrapper
/// implements sqlx's `FromRow`, never the public types themselves, so a sqlx
/// upgrade is no break of latchkey's API.
pub(super) struct Row<T>(pub(super) T);

/// The value of one row.
pub(super) fn one<T>(Row(value): Row<T>) -> T {
    value
}

/// The value of a row, if any.
pub(super) fn optional<T>(row: Option<Row<T>>) -> Option<T> {
    row.map(one)
}

/// The values of rows.
pub(super) fn all<T>(rows: Vec<Row<T>>) -> Vec<T> {
    rows.into_iter().map(one).collect()
}

/// `FromRow` for `Row<$type>`, each field read from the column of its name,
/// on either backend (the bounds name every column type the store reads;
/// `Option`s decode through their inner type's).
macro_rules! from_row {
    ($type:ident { $($field:ident),+ $(,)? }) => {
        impl<'r, R> FromRow<'r, R> for Row<$type>
        where
            R: sqlx::Row,
            &'static str: ColumnIndex<R>,
            i64: Decode<'r, R::Database> + Type<R::Database>,
            String: Decode<'r, R::Database> + Type<R::Database>,
            bool: Decode<'r, R::Database> + Type<R::Database>,
        {
            fn from_row(row: &'r R) -> sqlx::Result<Self> {
                Ok(Row($type {
                    $($field: row.try_get(stringify!($field))?,)+
                }))
            }
        }
    };
}

from_row!(User {
    id,
    username,
    password_hash,
    role,
    created_at,
    disabled_at,
    credentials_version,
    email,
    email_verified,
});

from_row!(QueuedMail {
    id,
    kind,
    recipient,
    user_id,
    link_id,
    attempts,
    created_at,
    next_attempt_at,
    failed_at,
    last_error,
});

from_row!(StoredKey {
    algorithm,
    seq,
    kid,
    public_key,
    created_at,
    signs_from,
    revoked_at,
});

from_row!(Session {
    id,
    user_id,
    generation,
    rotated_at,
    created_at,
    last_used_at,
    idle_expires_at,
    absolute_expires_at,
    revoked_at,
    revoked_reason,
    user_agent,
    ip,
    credentials_version,
    auth_time,
    remember,
    amr,
});

from_row!(AuditEvent {
    at,
    kind,
    user_id,
    username,
    session_id,
    ip,
    request_id,
    detail,
    count,
});

/// The row a rotation returns: the session's columns, then its user's under
/// `user_` names (`id` and `created_at` exist in both tables).
#[derive(sqlx::FromRow)]
pub(super) struct RotatedRow {
    #[sqlx(flatten)]
    session: Row<Session>,
    user_username: String,
    user_password_hash: String,
    user_role: String,
    user_created_at: i64,
    user_disabled_at: Option<i64>,
    user_credentials_version: i64,
    user_email: Option<String>,
    user_email_verified: bool,
}

impl From<RotatedRow> for Rotated {
    fn from(row: RotatedRow) -> Self {
        let Row(session) = row.session;
        Self {
            user: User {
                id: session.user_id,
                username: row.user_username,
                password_hash: row.user_password_hash,
                role: row.user_role,
                created_at: row.user_created_at,
                disabled_at: row.user_disabled_at,
                credentials_version: row.user_credentials_version,
                email: row.user_email,
                email_verified: row.user_email_verified,
            },
            session,
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
