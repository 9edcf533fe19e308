//! Throttle counters: attempts reserved before their work is done.

use async_trait::async_trait;

use super::StoreResult;

/// One throttle counter an attempt is charged to, and how many attempts it
/// allows before each further one must wait (see `auth::throttle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowance {
    /// The counter's key, naming what it counts the attempts of (an
    /// account, an address, a device…).
    pub key: String,
    /// The attempts allowed before back-off begins (a `THROTTLE_*` setting).
    pub free: i64,
}

/// The outcome of reserving an attempt against a set of counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Counted against every counter; the work may go ahead.
    Granted,
    /// Some counter is in its back-off until then; nothing was counted.
    Refused {
        /// When the back-off ends, in Unix seconds.
        until: i64,
    },
}

/// The back-off a counter's `count`-th attempt imposes on the next one:
/// none until the allowance `free` is reached, then 1 s, 2 s, 4 s… capped.
pub(super) fn throttle_delay(count: i64, free: i64, max_delay: i64) -> Option<i64> {
    let over = count.checked_sub(free).filter(|over| *over >= 0)?;
    let exponent = u32::try_from(over.min(20)).unwrap_or(20);
    Some(2_i64.pow(exponent).min(max_delay))
}

/// Throttle counters, keyed by [`Allowance::key`]. Times are Unix seconds.
#[async_trait]
pub trait Throttles: Send + Sync {
    /// Counts one attempt against every counter, atomically and before the
    /// attempt's work is done, unless one of them is in its back-off (then
    /// nothing is counted). Counts quiet for `window` seconds start again;
    /// a counter that reaches its allowance blocks the next attempt for
    /// 1 s, 2 s, 4 s… up to `max_delay`.
    async fn throttle_reserve(
        &self,
        counters: &[Allowance],
        now: i64,
        window: i64,
        max_delay: i64,
    ) -> StoreResult<Reservation>;
    /// Counts one use against every counter in `keys`, atomically, unless
    /// one of them has counted `limit` uses already, the last less than
    /// `window` seconds ago (then nothing is counted). A hard quota, for
    /// what must not happen more than `limit` times an hour (mail), where
    /// [`Throttles::throttle_reserve`] slows guessing down.
    async fn quota_take(
        &self,
        keys: &[&str],
        limit: i64,
        now: i64,
        window: i64,
    ) -> StoreResult<Reservation>;
    /// Settles a successful attempt: `clear` counters are deleted; `release`
    /// counters give back the attempt reserved for it.
    async fn throttle_settle(&self, clear: &[&str], release: &[&str]) -> StoreResult<()>;
    /// Deletes up to `limit` throttle counters untouched since `before` and
    /// no longer blocking at `now`.
    async fn delete_stale_throttles(&self, before: i64, now: i64, limit: i64) -> StoreResult<u64>;
}
