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
//! A batch is one `UPDATE … FROM (VALUES …)` statement, so one commit and one
//! trip to sqlx's connection thread however many rotations it holds (a trip
//! per rotation costs two context switches, which on a busy core was most of
//! a refresh's time). It is all or nothing: if it fails, nothing in it
//! happened and every rotation in it is answered with the error, so each
//! client keeps the cookie it has, which is still the current one.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, RwLock, Weak};
use std::time::Instant;

use sqlx::{AssertSqlSafe, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::store::from_sqlx::RotatedRow;
use crate::store::{CommitObserver, IdleTimeouts, OrDatabase, Rotated, StoreResult};

/// Most rotations in one statement: bounds the time the write lock is held
/// (and stays far below SQLite's 32766 bound parameters, at 5 a rotation).
const MAX_BATCH: usize = 256;
/// Rotations waiting for the writer; callers wait for room beyond this.
const QUEUE: usize = 4096;

/// The compare-and-set of `Sessions::rotate_session`, for `rows` rotations at
/// once: each row of `b` is (id, generation, now, idle timeout when
/// remembered, idle timeout when not). A session named
/// twice at the same generation advances once (SQLite applies one joined row
/// per target row); the other finds nothing, as if it lost the race.
/// RETURNING may name only `sessions`, but scalar subqueries may read `users`
/// (primary-key lookups).
fn rotate_statement(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        concat!(
            "UPDATE sessions SET generation = generation + 1, rotated_at = b.column3, \
                 last_used_at = b.column3, \
                 idle_expires_at = MIN(b.column3 \
                     + CASE WHEN remember THEN b.column4 ELSE b.column5 END, \
                     absolute_expires_at) \
             FROM (VALUES {values}) AS b \
             WHERE sessions.id = b.column1 AND sessions.generation = b.column2 \
                 AND revoked_at IS NULL \
                 AND idle_expires_at > b.column3 AND absolute_expires_at > b.column3 \
                 AND credentials_version = (SELECT credentials_version FROM users \
                     WHERE users.id = user_id AND disabled_at IS NULL) \
             RETURNING ",
            session_columns!(),
            ", (SELECT username FROM users WHERE users.id = user_id) AS user_username, \
               (SELECT password_hash FROM users WHERE users.id = user_id) AS user_password_hash, \
               (SELECT role FROM users WHERE users.id = user_id) AS user_role, \
               (SELECT created_at FROM users WHERE users.id = user_id) AS user_created_at, \
               (SELECT disabled_at FROM users WHERE users.id = user_id) AS user_disabled_at, \
               (SELECT credentials_version FROM users WHERE users.id = user_id) \
                   AS user_credentials_version, \
               (SELECT email FROM users WHERE users.id = user_id) AS user_email, \
               (SELECT email_verified FROM users WHERE users.id = user_id) \
                   AS user_email_verified"
        ),
        values = values
    )
}

/// One statement per power of two up to `MAX_BATCH` (smaller batches are
/// padded with rows that match nothing), so that a handful of prepared
/// statements serve every batch size.
static STATEMENTS: LazyLock<Vec<Arc<str>>> = LazyLock::new(|| {
    std::iter::successors(Some(1_usize), |n| (*n < MAX_BATCH).then_some(n * 2))
        .map(|rows| rotate_statement(rows).into())
        .collect()
});

struct Rotation {
    id: String,
    generation: i64,
    now: i64,
    idle: IdleTimeouts,
    done: oneshot::Sender<StoreResult<Option<Rotated>>>,
}

/// The handle callers rotate through; cheap to clone. The writer task ends
/// when the last handle is dropped, or when the pool is closed.
#[derive(Debug, Clone)]
pub(super) struct Rotations {
    queue: mpsc::Sender<Rotation>,
    observers: Arc<Observers>,
}

/// Who hears of each batch (`Pool::observe_commits`): held weakly, so that a
/// service dropped while the store lives on stops listening.
#[derive(Default)]
struct Observers(RwLock<Vec<Weak<dyn CommitObserver>>>);

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Observers")
    }
}

impl Observers {
    fn add(&self, observer: Weak<dyn CommitObserver>) {
        if let Ok(mut observers) = self.0.write() {
            observers.retain(|o| o.strong_count() > 0);
            observers.push(observer);
        }
    }

    fn committed(&self, rotations: usize, took: std::time::Duration) {
        if let Ok(observers) = self.0.read() {
            for observer in observers.iter().filter_map(Weak::upgrade) {
                observer.committed(rotations, took);
            }
        }
    }
}

impl Rotations {
    pub(super) fn start(pool: SqlitePool) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        let observers = Arc::new(Observers::default());
        tokio::spawn(writer(pool, waiting, observers.clone()));
        Self { queue, observers }
    }

    pub(super) fn observe(&self, observer: Weak<dyn CommitObserver>) {
        self.observers.add(observer);
    }

    pub(super) async fn rotate(
        &self,
        id: &str,
        generation: i64,
        now: i64,
        idle: IdleTimeouts,
    ) -> StoreResult<Option<Rotated>> {
        let (done, answer) = oneshot::channel();
        let rotation = Rotation {
            id: id.to_owned(),
            generation,
            now,
            idle,
            done,
        };
        self.queue
            .send(rotation)
            .await
            .map_err(|_| sqlx::Error::PoolClosed)
            .db()?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed).db()?
    }
}

async fn writer(
    pool: SqlitePool,
    mut waiting: mpsc::Receiver<Rotation>,
    observers: Arc<Observers>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let started = Instant::now();
        let applied = apply(&pool, &batch).await;
        observers.committed(batch.len(), started.elapsed());
        match applied {
            Ok(sessions) => {
                for (rotation, session) in batch.drain(..).zip(sessions) {
                    // A caller that went away (its client hung up) still
                    // rotated; its client retries through the grace path.
                    let _ = rotation.done.send(Ok(session));
                }
            }
            Err(e) => {
                for rotation in batch.drain(..) {
                    let _ = rotation.done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The whole batch in one statement; the results in the batch's order.
async fn apply(pool: &SqlitePool, batch: &[Rotation]) -> StoreResult<Vec<Option<Rotated>>> {
    let rows = batch.len().next_power_of_two();
    let sql = STATEMENTS[rows.trailing_zeros() as usize].clone();
    let mut query = sqlx::query_as::<_, RotatedRow>(AssertSqlSafe(sql));
    for r in batch {
        query = query
            .bind(r.id.as_str())
            .bind(r.generation)
            .bind(r.now)
            .bind(r.idle.remembered)
            .bind(r.idle.not_remembered);
    }
    for _ in batch.len()..rows {
        query = query
            .bind("")
            .bind(-1_i64)
            .bind(0_i64)
            .bind(0_i64)
            .bind(0_i64);
    }
    let updated = query.fetch_all(pool).await.db()?;

    // Each updated row answers the first rotation of its session and generation.
    let mut waiting: HashMap<&str, Vec<(i64, usize)>> = HashMap::with_capacity(batch.len());
    for (i, r) in batch.iter().enumerate() {
        waiting
            .entry(r.id.as_str())
            .or_default()
            .push((r.generation, i));
    }
    let mut results: Vec<Option<Rotated>> = vec![None; batch.len()];
    for row in updated {
        let rotated = Rotated::from(row);
        let found = waiting
            .get_mut(rotated.session.id.as_str())
            .and_then(|rotations| {
                let at = rotations
                    .iter()
                    .position(|(generation, _)| *generation + 1 == rotated.session.generation)?;
                Some(rotations.remove(at).1)
            });
        if let Some(i) = found {
            results[i] = Some(rotated);
        }
    }
    Ok(results)
}
