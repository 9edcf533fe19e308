//! Housekeeping: a background task that deletes what can never be used again
//! (sessions past their absolute expiry, throttle counters gone quiet, signing
//! keys no verifier can meet) and
//! audit events past their retention, in bounded batches so no sweep holds
//! the database for long. It stops with the server.

use std::time::Duration;

use tokio::sync::watch;

use crate::auth::Auth;
use crate::auth::credentials::throttle::WINDOW;
use crate::clock::seconds;
use crate::store::StoreResult;

/// Rows deleted per statement: small enough that a sweep never blocks a
/// login or rotation noticeably, on SQLite's single writer least of all.
pub const BATCH: i64 = 1000;

/// What one sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Sessions past their absolute expiry.
    pub sessions: u64,
    /// Audit events past `AUDIT_RETENTION`.
    pub events: u64,
    /// Throttle counters quiet for a whole window.
    pub throttles: u64,
    /// Signing keys past removal (README, "Signing keys").
    pub signing_keys: u64,
    /// Mails given up on and links expired, past `AUDIT_RETENTION`.
    pub mail: u64,
    /// Logins that waited for their second factor in vain.
    pub pending_logins: u64,
}

/// Runs a sweep every `housekeeping_interval` until `stop` turns true.
pub(crate) async fn run(auth: Auth, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(auth.config().housekeeping.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        match auth.sweep(&stop).await {
            Ok(swept) if swept != Swept::default() => tracing::info!(?swept, "housekeeping"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "housekeeping failed; retrying at the next interval")
            }
        }
    }
}

impl Auth {
    /// One sweep: each kind of row in batches until none is left (or
    /// `stop`). A hook for latchkey's own tests.
    #[doc(hidden)]
    pub async fn sweep(&self, stop: &watch::Receiver<bool>) -> StoreResult<Swept> {
        let store = self.store();
        let now = self.now();
        let before = now - seconds(self.config().housekeeping.audit_retention);
        // A counter quiet for a whole window counts nothing any more.
        let quiet = now - WINDOW;
        Ok(Swept {
            sessions: drain(stop, || store.delete_expired_sessions(now, BATCH)).await?,
            events: drain(stop, || store.delete_events_before(before, BATCH)).await?,
            throttles: drain(stop, || store.delete_stale_throttles(quiet, now, BATCH)).await?,
            signing_keys: self.sweep_keys().await?,
            mail: drain(stop, || store.delete_old_mail(before, BATCH)).await?,
            pending_logins: drain(stop, || store.delete_expired_pending_logins(now, BATCH)).await?,
        })
    }
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
