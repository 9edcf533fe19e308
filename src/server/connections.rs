//! The open connections, as the accept loop alone sees them: their tasks,
//! and which one has been idle longest when one must be shed to make room.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{AbortHandle, Id, JoinError, JoinSet};
use tokio::time::Instant;

use super::tracking::Tracker;

/// The open connections' tasks, and what the accept loop needs to pick one
/// to shed. Owned by the accept loop alone.
#[derive(Default)]
pub(super) struct Connections {
    pub(super) tasks: JoinSet<()>,
    open: HashMap<Id, Open>,
    accepted: u64,
}

struct Open {
    /// Order of acceptance: breaks ties between connections idle since the
    /// same microsecond.
    order: u64,
    tracker: Arc<Tracker>,
    task: AbortHandle,
}

/// What making room for a new connection took.
pub(super) struct Room {
    pub(super) made: bool,
    pub(super) shed: u64,
}

impl Connections {
    pub(super) fn spawn(
        &mut self,
        tracker: Arc<Tracker>,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let task = self.tasks.spawn(task);
        self.accepted += 1;
        let open = Open {
            order: self.accepted,
            tracker,
            task,
        };
        self.open.insert(open.task.id(), open);
    }

    pub(super) fn ended(&mut self, ended: Result<(Id, ()), JoinError>) {
        let id = match ended {
            Ok((id, ())) => id,
            Err(e) => {
                if e.is_panic() {
                    tracing::error!(error = %e, "a connection's task panicked");
                }
                e.id()
            }
        };
        self.open.remove(&id);
    }

    /// Sheds idle connections, oldest first, until one more fits under
    /// `max`; `made` is false when every open connection has a request in
    /// flight. A shed connection's socket is closed before this returns, so
    /// never more than `max` are open.
    pub(super) async fn make_room(&mut self, max: usize) -> Room {
        while let Some(ended) = self.tasks.try_join_next_with_id() {
            self.ended(ended);
        }
        let mut shed = 0;
        while self.tasks.len() >= max {
            if !self.shed_oldest_idle().await {
                return Room { made: false, shed };
            }
            shed += 1;
        }
        Room { made: true, shed }
    }

    /// Closes the connection that has waited longest with no request in
    /// flight, and waits until a connection's task has ended (that one, or
    /// one that ended meanwhile); false if none is idle.
    pub(super) async fn shed_oldest_idle(&mut self) -> bool {
        let oldest = self
            .open
            .iter()
            .filter_map(|(id, open)| Some((open.tracker.idle_since()?, open.order, *id)))
            .min();
        let Some((_, _, id)) = oldest else {
            return false;
        };
        if let Some(open) = self.open.remove(&id) {
            open.task.abort();
        }
        if let Some(ended) = self.tasks.join_next_with_id().await {
            self.ended(ended);
        }
        true
    }
}

/// Counts events and says when they are worth a log line: the first at
/// once, then at most one line every ten seconds with the counts since the
/// last, so that an attack cannot flood the logs.
#[derive(Default)]
pub(super) struct Throttled {
    counts: (u64, u64),
    last: Option<Instant>,
}

impl Throttled {
    const EVERY: Duration = Duration::from_secs(10);

    pub(super) fn count(&mut self, a: u64, b: u64) {
        self.counts.0 += a;
        self.counts.1 += b;
    }

    pub(super) fn due(&mut self) -> Option<(u64, u64)> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + Self::EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.counts))
    }

    /// The counts not reported yet, if any.
    pub(super) fn rest(&mut self) -> Option<(u64, u64)> {
        let counts = std::mem::take(&mut self.counts);
        (counts != (0, 0)).then_some(counts)
    }
}
