//! Security events: written to the store's audit trail and to the log. Only
//! identifiers go in (user, session, address, request id), never a secret.
//!
//! Rejections an attacker can repeat at will (a refused origin, a throttled
//! login or sign-up, a busy refusal) are aggregated: the first of a minute
//! from one address is written and logged at once, the rest of that minute
//! only add to its `count`, written when the minute is over (README, "Audit
//! trail and logs"). A flood of them costs one row and two log lines a
//! minute, not a durable write each.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::auth::extract::ClientInfo;
use crate::state::AppState;
use crate::store::{AuditEvent, Store};

/// Kinds recorded as one row per address and minute.
const AGGREGATED: &[&str] = &[
    "origin_rejected",
    "login_throttled",
    "registration_throttled",
    "login_busy",
];

/// Addresses tracked at once; past it, every count is written out.
const MAX_TRACKED: usize = 10_000;

pub struct Event(AuditEvent);

impl Event {
    pub fn new(kind: &str, client: &ClientInfo) -> Self {
        Self(AuditEvent {
            kind: kind.to_owned(),
            ip: client.ip.clone(),
            request_id: client.request_id.clone(),
            ..AuditEvent::default()
        })
    }

    pub fn user(mut self, id: i64, username: &str) -> Self {
        self.0.user_id = Some(id);
        self.0.username = Some(username.to_owned());
        self
    }

    pub fn username(mut self, username: &str) -> Self {
        self.0.username = Some(username.chars().take(64).collect());
        self
    }

    pub fn user_id(mut self, id: i64) -> Self {
        self.0.user_id = Some(id);
        self
    }

    pub fn session(mut self, id: &str) -> Self {
        self.0.session_id = Some(id.to_owned());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }
}

/// The counts of aggregated events not yet written.
#[derive(Debug, Default)]
pub struct Aggregator {
    open: Mutex<HashMap<(String, Option<String>), Open>>,
}

#[derive(Debug, Clone)]
struct Open {
    minute: i64,
    /// The row written for the minute's first event.
    row: i64,
    /// Events since that row, not yet added to its count.
    more: i64,
}

/// Where an event goes.
enum Route {
    /// A first of its minute (or not aggregated): write and log it.
    Write,
    /// Counted in memory.
    Counted,
}

impl Aggregator {
    fn route(&self, event: &AuditEvent) -> (Route, Vec<Open>) {
        if !AGGREGATED.contains(&event.kind.as_str()) {
            return (Route::Write, Vec::new());
        }
        let Ok(mut open) = self.open.lock() else {
            return (Route::Write, Vec::new());
        };
        let minute = event.at.div_euclid(60);
        let key = (event.kind.clone(), event.ip.clone());
        if let Some(o) = open.get_mut(&key)
            && o.minute == minute
        {
            o.more += 1;
            return (Route::Counted, Vec::new());
        }
        let mut done: Vec<Open> = open.remove(&key).into_iter().collect();
        if open.len() >= MAX_TRACKED {
            done.extend(open.drain().map(|(_, o)| o));
        }
        (Route::Write, done)
    }

    fn opened(&self, event: &AuditEvent, row: i64) {
        if !AGGREGATED.contains(&event.kind.as_str()) {
            return;
        }
        if let Ok(mut open) = self.open.lock() {
            let key = (event.kind.clone(), event.ip.clone());
            let minute = event.at.div_euclid(60);
            match open.get_mut(&key) {
                // Two firsts raced; the other row stands, this one stays at 1.
                Some(o) if o.minute == minute => {}
                _ => {
                    open.insert(
                        key,
                        Open {
                            minute,
                            row,
                            more: 0,
                        },
                    );
                }
            }
        }
    }

    /// Takes the counts of minutes before `now`'s (of every minute when
    /// `now` is `None`).
    fn take(&self, now: Option<i64>) -> Vec<Open> {
        let Ok(mut open) = self.open.lock() else {
            return Vec::new();
        };
        match now {
            None => open.drain().map(|(_, o)| o).collect(),
            Some(now) => {
                let minute = now.div_euclid(60);
                let done: Vec<_> = open
                    .iter()
                    .filter(|(_, o)| o.minute < minute)
                    .map(|(k, _)| k.clone())
                    .collect();
                done.into_iter().filter_map(|k| open.remove(&k)).collect()
            }
        }
    }
}

/// Records the event. A failed write is logged and does not fail the request:
/// the action the event describes has already happened.
pub async fn record(state: &AppState, Event(mut event): Event) {
    event.at = state.clock.now();
    let (route, done) = state.audit.route(&event);
    write_counts(state.store.as_ref(), done).await;
    if let Route::Counted = route {
        return;
    }
    let e = &event;
    if e.kind == "refresh_token_reused" {
        tracing::warn!(event = %e.kind, user_id = e.user_id, session_id = e.session_id, ip = e.ip, "refresh token reuse detected; session revoked");
    } else {
        tracing::info!(event = %e.kind, user_id = e.user_id, username = e.username, session_id = e.session_id, ip = e.ip, detail = e.detail, "audit");
    }
    match state.store.record_event(event.clone()).await {
        Ok(row) => state.audit.opened(&event, row),
        Err(err) => tracing::error!(error = %err, "could not record audit event"),
    }
}

/// Writes the counts of aggregated events whose minute is over (all of them
/// when `everything`, at shutdown). Runs every few seconds beside the server.
pub async fn flush(state: &AppState, everything: bool) {
    let now = (!everything).then(|| state.clock.now());
    let done = state.audit.take(now);
    write_counts(state.store.as_ref(), done).await;
}

/// Every few seconds, writes the counts of minutes that are over, until
/// `stop` turns true; then writes what is left.
pub async fn run_flusher(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(5));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        flush(&state, false).await;
    }
    flush(&state, true).await;
}

async fn write_counts(store: &dyn Store, done: Vec<Open>) {
    for o in done.into_iter().filter(|o| o.more > 0) {
        tracing::info!(
            row = o.row,
            more = o.more,
            "audit: repeated events of one address in one minute, counted on the first one's row"
        );
        if let Err(err) = store.add_to_event_count(o.row, o.more).await {
            tracing::error!(error = %err, "could not record audit event counts");
        }
    }
}
