//! The threads password hashing runs on: a fixed number of them (one per
//! core), so hashing never runs on the async workers and its concurrency is
//! bounded, and at a lower scheduling priority (Linux: nice +5), so that when
//! the CPU is contended the token checks and rotations on the async workers
//! go first. A login flood slows logins, not every API call behind it.
//! With idle cores the priority changes nothing.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// How much hashing yields to the async workers: at nice +5 a hashing thread
/// weighs a third of a worker thread when both want the same core.
const NICENESS: i32 = 5;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub(crate) struct HashPool {
    jobs: mpsc::Sender<Job>,
}

impl HashPool {
    /// Starts `threads` hashing threads; they end when the last handle is dropped.
    pub(crate) fn new(threads: usize) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = queue.clone();
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
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        Self { jobs }
    }

    /// Runs `work` on a hashing thread. Work whose caller has gone away by
    /// the time its turn comes (the client hung up) is skipped.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (done, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            if !done.is_closed() {
                let _ = done.send(work());
            }
        });
        self.jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("no password hashing thread is running"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("a password hashing thread stopped"))?
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
