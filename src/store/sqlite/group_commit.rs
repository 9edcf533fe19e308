//! Group commit for rotations on SQLite.
//!
//! With `synchronous=FULL` a commit returns only once the disk has synced the
//! WAL, and SQLite commits one writer at a time, so rotations committed one
//! by one top out at the disk's sync rate (a few thousand a second) with the
//! CPU mostly idle. Instead every rotation goes to one writer task, which
//! applies all the rotations waiting at that moment in one transaction and
//! answers each of them only after that transaction's COMMIT: the same
//! guarantee (nothing is answered before it is on disk), one sync per batch.
//! Batches form by themselves while the previous one syncs; a lone rotation
//! is committed at once, never held back for company.
//!
//! A batch is all or nothing: if any statement or the COMMIT fails, the
//! transaction rolls back and every rotation in it is answered with the error,
//! so its client keeps the cookie it has, which is still the current one.

use std::sync::Arc;

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use crate::store::{Rotated, RotatedRow, StoreError, StoreResult};

/// Most rotations in one transaction: bounds the time the write lock is held.
const MAX_BATCH: usize = 256;
/// Rotations waiting for the writer; callers wait for room beyond this.
const QUEUE: usize = 4096;

/// The compare-and-set of `Store::rotate_session` (see there).
/// SQLite's RETURNING names only the updated table, but scalar subqueries may
/// read others: each is a primary-key lookup on `users`.
const ROTATE: &str = concat!(
    "UPDATE sessions SET generation = generation + 1, rotated_at = ?1, last_used_at = ?1, \
         idle_expires_at = MIN(?1 + ?2, absolute_expires_at) \
     WHERE id = ?3 AND generation = ?4 AND revoked_at IS NULL \
         AND idle_expires_at > ?1 AND absolute_expires_at > ?1 \
     RETURNING ",
    session_columns!(),
    ", (SELECT username FROM users WHERE users.id = user_id) AS user_username, \
       (SELECT password_hash FROM users WHERE users.id = user_id) AS user_password_hash, \
       (SELECT role FROM users WHERE users.id = user_id) AS user_role, \
       (SELECT created_at FROM users WHERE users.id = user_id) AS user_created_at, \
       (SELECT disabled_at FROM users WHERE users.id = user_id) AS user_disabled_at"
);

struct Rotation {
    id: String,
    generation: i64,
    now: i64,
    idle_ttl: i64,
    done: oneshot::Sender<StoreResult<Option<Rotated>>>,
}

/// The handle callers rotate through; cheap to clone. The writer task ends
/// when the last handle is dropped, or when the pool is closed.
#[derive(Debug, Clone)]
pub(super) struct Rotations {
    queue: mpsc::Sender<Rotation>,
}

impl Rotations {
    pub(super) fn start(pool: SqlitePool) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(writer(pool, waiting));
        Self { queue }
    }

    pub(super) async fn rotate(
        &self,
        id: &str,
        generation: i64,
        now: i64,
        idle_ttl: i64,
    ) -> StoreResult<Option<Rotated>> {
        let (done, answer) = oneshot::channel();
        let rotation = Rotation {
            id: id.to_owned(),
            generation,
            now,
            idle_ttl,
            done,
        };
        self.queue
            .send(rotation)
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?;
        answer
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?
    }
}

async fn writer(pool: SqlitePool, mut waiting: mpsc::Receiver<Rotation>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match apply(&pool, &batch).await {
            Ok(sessions) => {
                for (rotation, session) in batch.drain(..).zip(sessions) {
                    // A caller that went away (its client hung up) still
                    // rotated; its client retries through the grace path.
                    let _ = rotation.done.send(Ok(session));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for rotation in batch.drain(..) {
                    let _ = rotation.done.send(Err(StoreError::Batch(e.clone())));
                }
            }
        }
    }
}

/// One transaction for the whole batch; the sessions in the batch's order.
async fn apply(pool: &SqlitePool, batch: &[Rotation]) -> Result<Vec<Option<Rotated>>, sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut sessions = Vec::with_capacity(batch.len());
    for r in batch {
        let row: Option<RotatedRow> = sqlx::query_as(ROTATE)
            .bind(r.now)
            .bind(r.idle_ttl)
            .bind(&r.id)
            .bind(r.generation)
            .fetch_optional(&mut *tx)
            .await?;
        sessions.push(row.map(Rotated::from));
    }
    tx.commit().await?;
    Ok(sessions)
}
