//! The threads password hashing runs on: a fixed number of them (one per
//! core), so hashing never runs on the async workers and its concurrency is
//! bounded, and at a lower scheduling priority (Linux: nice +5), so that when
//! the CPU is contended the token checks and rotations on the async workers
//! go first. A login flood slows logins, not every API call behind it.
//! With idle cores the priority changes nothing.
//!
//! The queue is bounded: past `QUEUE_PER_THREAD` jobs per thread a new one is
//! refused at once ([`HashError::Busy`], answered `503 server_busy`), so a flood of logins
//! meets a quick refusal instead of an ever longer wait.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::oneshot;

/// How much hashing yields to the async workers: at nice +5 a hashing thread
/// weighs a third of a worker thread when both want the same core.
const NICENESS: i32 = 5;

/// Jobs waiting or running per hashing thread before new ones are refused:
/// at bcrypt cost 12 (about a quarter of a second a hash) a full queue is a
/// wait of about four seconds.
pub const QUEUE_PER_THREAD: usize = 16;

type Job = Box<dyn FnOnce() + Send>;

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The hashing queue is full: try again shortly (`503 server_busy`).
    #[error("the password hashing queue is full")]
    Busy,
    /// bcrypt, or a hashing thread, failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

#[derive(Clone)]
pub(crate) struct HashPool {
    jobs: mpsc::Sender<Job>,
    /// Jobs queued or running.
    pending: Arc<AtomicUsize>,
    threads: usize,
    capacity: usize,
    held: Arc<Hold>,
    /// How long each job ran (`latchkey_password_hash_duration_seconds`).
    durations: Histogram,
}

/// While held, hashing threads start no new job (see [`HashPool::hold`]).
#[derive(Default)]
struct Hold {
    held: Mutex<usize>,
    released: Condvar,
}

impl Hold {
    fn wait_until_released(&self) {
        let Ok(mut held) = self.held.lock() else {
            return;
        };
        while *held > 0 {
            held = match self.released.wait(held) {
                Ok(h) => h,
                Err(_) => return,
            };
        }
    }
}

/// Keeps the hashing threads from starting jobs until dropped.
#[must_use]
pub struct HoldGuard(Arc<Hold>);

impl Drop for HoldGuard {
    fn drop(&mut self) {
        if let Ok(mut held) = self.0.held.lock() {
            *held = held.saturating_sub(1);
            self.0.released.notify_all();
        }
    }
}

impl HashPool {
    /// Starts `threads` hashing threads, which record each job's time in
    /// `durations`; they end when the last handle is dropped.
    pub(crate) fn new(threads: usize, durations: Histogram) -> Self {
        let threads = threads.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let held = Arc::new(Hold::default());
        for n in 0..threads {
            let queue = queue.clone();
            let held = held.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("latchkey-hash-{n}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => {
                                held.wait_until_released();
                                job();
                            }
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        Self {
            jobs,
            pending: Arc::new(AtomicUsize::new(0)),
            threads,
            capacity: threads * QUEUE_PER_THREAD,
            held,
            durations,
        }
    }

    /// The histogram of job times.
    pub(crate) fn durations(&self) -> Histogram {
        self.durations.clone()
    }

    /// Holds the hashing threads at a chosen point: jobs queue up, none
    /// starts until the guard is dropped. For tests that need a login to wait
    /// at its password check, and for filling the queue on purpose.
    pub(crate) fn hold(&self) -> HoldGuard {
        if let Ok(mut held) = self.held.held.lock() {
            *held += 1;
        }
        HoldGuard(self.held.clone())
    }

    /// Hashing threads.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Jobs that may be queued or running at once.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Jobs queued or running now.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Runs `work` on a hashing thread, or fails at once with
    /// [`HashError::Busy`] when
    /// the queue is full. Work whose caller has gone away by the time its
    /// turn comes (the client hung up) is skipped.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, HashError> {
        // Counted up front so that concurrent callers cannot all slip under the bound.
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(HashError::Busy);
        }
        let pending = PendingSlot(self.pending.clone());
        let durations = self.durations.clone();
        let (done, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _pending = pending;
            if !done.is_closed() {
                let started = Instant::now();
                let result = work();
                durations.observe(started.elapsed().as_secs_f64());
                let _ = done.send(result);
            }
        });
        self.jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("no password hashing thread is running"))?;
        let result = answer
            .await
            .map_err(|_| anyhow::anyhow!("a password hashing thread stopped"))?;
        Ok(result?)
    }
}

/// One place in the queue, given back when the job has run or was dropped.
struct PendingSlot(Arc<AtomicUsize>);

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // On Linux, setpriority on a thread id applies to that thread alone.
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), NICENESS) {
        tracing::warn!(error = %e, "cannot lower the priority of a password hashing thread");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {
    let _ = NICENESS;
}
