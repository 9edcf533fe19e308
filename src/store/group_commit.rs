//! Group commit for rotations, on either store.
//!
//! A durable commit waits for the disk to sync (SQLite with
//! `synchronous=FULL`, PostgreSQL with `synchronous_commit=on`), so rotations
//! committed one by one top out at the disk's sync rate, and on PostgreSQL
//! each one is also a statement, a transaction and a commit record of its
//! own. Instead every rotation goes to one writer task per store, which
//! applies all the rotations waiting at that moment in one statement and
//! answers each of them only after that statement's commit: the same
//! guarantee (nothing is answered before it is on disk), one sync and one
//! trip to the database per batch. Batches form by themselves while the
//! previous one commits; a lone rotation is committed at once, never held
//! back for company.
//!
//! Each store writes its batch its own way ([`Batch`]: SQLite's in
//! `sqlite/sessions.rs`, PostgreSQL's in `postgres/sessions.rs`), as one
//! statement that is all or nothing: if it fails, nothing in it happened and
//! every rotation in it is answered with the error, so each client keeps the
//! cookie it has, which is still the current one.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock, Weak};
use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::store::{CommitObserver, IdleTimeouts, OrDatabase, Rotated, StoreResult};

/// Most rotations in one statement: bounds the time the write lock is held.
pub(super) const MAX_BATCH: usize = 256;
/// Rotations waiting for the writer; callers wait for room beyond this.
const QUEUE: usize = 4096;

/// Writes a batch of rotations: the compare-and-set of
/// `Sessions::rotate_session` for every rotation of `batch` at once, in one
/// statement committed before it returns. A session named twice at the same
/// generation advances once; the other finds nothing, as if it lost the
/// race. The rows it returns are those it advanced, in any order.
#[async_trait]
pub(super) trait Batch: Send + Sync + 'static {
    async fn apply(&self, batch: &[Rotation]) -> StoreResult<Vec<Rotated>>;
}

/// One rotation waiting for its batch.
pub(super) struct Rotation {
    pub(super) id: String,
    pub(super) generation: i64,
    pub(super) now: i64,
    pub(super) idle: IdleTimeouts,
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
    pub(super) fn start(batch: impl Batch) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        let observers = Arc::new(Observers::default());
        tokio::spawn(writer(batch, waiting, observers.clone()));
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
    batch_writer: impl Batch,
    mut waiting: mpsc::Receiver<Rotation>,
    observers: Arc<Observers>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A caller that went away (its client hung up, or its request timed
        // out while an earlier batch waited) is not rotated: its client
        // still holds the current cookie and may present it again. Rotated
        // late, that cookie would be an old one outside the grace window,
        // and the session would end as stolen.
        batch.retain(|rotation| !rotation.done.is_closed());
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        let applied = batch_writer
            .apply(&batch)
            .await
            .map(|updated| answers(&batch, updated));
        observers.committed(batch.len(), started.elapsed());
        match applied {
            Ok(sessions) => {
                for (rotation, session) in batch.drain(..).zip(sessions) {
                    // A caller that went away during the commit still
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

/// Each rotation's answer, in the batch's order: each updated row answers
/// the first rotation of its session and generation.
fn answers(batch: &[Rotation], updated: Vec<Rotated>) -> Vec<Option<Rotated>> {
    let mut waiting: HashMap<&str, Vec<(i64, usize)>> = HashMap::with_capacity(batch.len());
    for (i, r) in batch.iter().enumerate() {
        waiting
            .entry(r.id.as_str())
            .or_default()
            .push((r.generation, i));
    }
    let mut results: Vec<Option<Rotated>> = vec![None; batch.len()];
    for rotated in updated {
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
    results
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed expectation should panic with its message
mod tests {
    use std::sync::Mutex;

    use tokio::sync::Notify;

    use super::*;

    /// A batch writer held at a chosen point: it says when a batch has
    /// begun, waits to be let go, and keeps the id of every rotation it was
    /// given. It advances no session.
    #[derive(Default)]
    struct Held {
        began: Notify,
        go: Notify,
        given: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Batch for Arc<Held> {
        async fn apply(&self, batch: &[Rotation]) -> StoreResult<Vec<Rotated>> {
            self.given
                .lock()
                .unwrap()
                .extend(batch.iter().map(|r| r.id.clone()));
            self.began.notify_one();
            self.go.notified().await;
            Ok(Vec::new())
        }
    }

    const IDLE: IdleTimeouts = IdleTimeouts {
        remembered: 60,
        not_remembered: 60,
    };

    /// Waits until `queued` rotations wait for the writer.
    async fn until_queued(rotations: &Rotations, queued: usize) {
        while rotations.queue.capacity() > QUEUE - queued {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_rotation_whose_caller_left_while_a_batch_was_held_is_not_applied() {
        let held = Arc::new(Held::default());
        let rotations = Rotations::start(held.clone());
        let rotate = |id: &'static str| {
            let rotations = rotations.clone();
            tokio::spawn(async move { rotations.rotate(id, 0, 1, IDLE).await })
        };
        let first = rotate("first");
        held.began.notified().await;
        // Queued behind the held batch; then its caller goes away.
        let gone = rotate("gone");
        until_queued(&rotations, 1).await;
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        let kept = rotate("kept");
        until_queued(&rotations, 2).await;

        held.go.notify_one();
        assert!(first.await.unwrap().unwrap().is_none());
        held.began.notified().await;
        held.go.notify_one();
        assert!(kept.await.unwrap().unwrap().is_none());
        assert_eq!(*held.given.lock().unwrap(), ["first", "kept"]);
    }
}
