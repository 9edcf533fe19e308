//! Housekeeping: a background task that deletes what can never be used again
//! (sessions past their absolute expiry, throttle counters gone quiet) and
//! audit events past their retention, in bounded batches so no sweep holds
//! the database for long. It stops with the server.

use std::time::Duration;

use tokio::sync::watch;

use crate::auth::throttle;
use crate::state::AppState;
use crate::store::StoreResult;

/// Rows deleted per statement: small enough that a sweep never blocks a
/// login or rotation noticeably, on SQLite's single writer least of all.
pub const BATCH: i64 = 1000;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub sessions: u64,
    pub events: u64,
    pub throttles: u64,
}

/// Runs a sweep every `housekeeping_interval` until `stop` turns true.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(state.config.housekeeping_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        match sweep(&state, &stop).await {
            Ok(swept) if swept != Swept::default() => tracing::info!(?swept, "housekeeping"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "housekeeping failed; retrying at the next interval")
            }
        }
    }
}

/// One sweep: each kind of row in batches until none is left (or `stop`).
pub async fn sweep(state: &AppState, stop: &watch::Receiver<bool>) -> StoreResult<Swept> {
    let store = &state.store;
    let now = state.clock.now();
    let before = now - state.config.audit_retention;
    // Counters quiet for a whole window count from zero anyway.
    let quiet = now - throttle::WINDOW;
    Ok(Swept {
        sessions: drain(stop, || store.delete_expired_sessions(now, BATCH)).await?,
        events: drain(stop, || store.delete_events_before(before, BATCH)).await?,
        throttles: drain(stop, || store.delete_stale_throttles(quiet, now, BATCH)).await?,
    })
}

async fn drain<F, Fut>(stop: &watch::Receiver<bool>, mut batch: F) -> StoreResult<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<u64>>,
{
    let mut total = 0;
    loop {
        let deleted = batch().await?;
        total += deleted;
        if deleted < BATCH.unsigned_abs() || *stop.borrow() {
            return Ok(total);
        }
        // Let other writers in between batches.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
