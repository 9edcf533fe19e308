//! How often one session may refresh (`MAX_REFRESHES_PER_MINUTE`; README,
//! "Rotation rules"): a client stuck in a refresh loop (a bug, a tab that
//! refreshes on every render) is answered `429` with `Retry-After` instead of
//! writing to the store without end.
//!
//! A generic cell rate algorithm per session id, in memory: a session may
//! refresh `limit` times at once, then once every `60 / limit` seconds. The
//! check is one short lock on one of [`SHARDS`] maps, never a store write,
//! so it costs the refresh path nothing it would notice. It is counted per
//! instance: behind a load balancer that spreads one session over `n`
//! instances a loop gets at most `n` times the limit, still bounded. It runs
//! only after the refresh token's signature is checked, so only genuine
//! session ids take room, and an entry whose allowance is whole again is
//! dropped as the map is swept.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

/// Independent locks, so concurrent refreshes of different sessions seldom
/// wait for each other.
const SHARDS: usize = 16;

/// A shard sweeps its whole-again entries when it has grown by this many
/// since its last sweep.
const SWEEP_EVERY: usize = 1024;

pub(crate) struct RefreshLimiter {
    /// Milliseconds one refresh uses of the minute's allowance.
    interval: i64,
    hasher: RandomState,
    shards: Vec<Mutex<Shard>>,
}

#[derive(Default)]
struct Shard {
    /// Session id → when its allowance is whole again (the theoretical
    /// arrival time), Unix milliseconds.
    whole_at: HashMap<Box<str>, i64>,
    /// `whole_at.len()` after the last sweep.
    swept_at_len: usize,
}

const WINDOW_MS: i64 = 60_000;

impl RefreshLimiter {
    /// `per_minute` refreshes per session a minute, all of them at once if
    /// need be.
    pub(crate) fn new(per_minute: i64) -> Self {
        Self {
            interval: (WINDOW_MS / per_minute.max(1)).max(1),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Counts a refresh of `session` at `now` (Unix seconds), or refuses it:
    /// `Err(seconds)` until the next one is allowed.
    pub(crate) fn check(&self, session: &str, now: i64) -> Result<(), i64> {
        let now = now.saturating_mul(1000);
        let index = (self.hasher.hash_one(session) % SHARDS as u64) as usize;
        let mut shard = self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let whole_at = shard.whole_at.get(session).copied().unwrap_or(now).max(now);
        let next = whole_at + self.interval;
        if next - now > WINDOW_MS {
            let wait_ms = next - now - WINDOW_MS;
            return Err((wait_ms + 999) / 1000);
        }
        match shard.whole_at.get_mut(session) {
            Some(at) => *at = next,
            None => {
                shard.whole_at.insert(session.into(), next);
                if shard.whole_at.len() >= shard.swept_at_len + SWEEP_EVERY {
                    shard.whole_at.retain(|_, at| *at > now);
                    shard.swept_at_len = shard.whole_at.len();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::RefreshLimiter;

    #[test]
    fn a_session_refreshes_its_minutes_worth_at_once_then_at_the_steady_rate() {
        let limiter = RefreshLimiter::new(60);
        for i in 0..60 {
            assert_eq!(limiter.check("a", 1000), Ok(()), "refresh {i}");
        }
        assert_eq!(limiter.check("a", 1000), Err(1));
        assert_eq!(limiter.check("b", 1000), Ok(()), "sessions are apart");
        assert_eq!(limiter.check("a", 1001), Ok(()));
        assert_eq!(limiter.check("a", 1001), Err(1));
        // A quiet minute makes the allowance whole again.
        for _ in 0..60 {
            assert_eq!(limiter.check("a", 1062), Ok(()));
        }
    }

    #[test]
    fn a_slow_limit_says_how_long_to_wait() {
        let limiter = RefreshLimiter::new(2);
        assert_eq!(limiter.check("a", 0), Ok(()));
        assert_eq!(limiter.check("a", 0), Ok(()));
        assert_eq!(limiter.check("a", 0), Err(30));
        assert_eq!(limiter.check("a", 29), Err(1));
        assert_eq!(limiter.check("a", 30), Ok(()));
    }

    #[test]
    #[allow(clippy::unwrap_used)] // a poisoned lock in a test should panic
    fn whole_again_entries_are_swept() {
        let limiter = RefreshLimiter::new(60);
        for i in 0..3000 {
            assert_eq!(limiter.check(&format!("s{i}"), 0), Ok(()));
        }
        // Two minutes later those are whole again: as new sessions arrive,
        // every shard sweeps and drops them.
        for i in 0..(super::SHARDS * super::SWEEP_EVERY * 2) {
            assert_eq!(limiter.check(&format!("t{i}"), 120), Ok(()));
        }
        let old: usize = limiter
            .shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap()
                    .whole_at
                    .keys()
                    .filter(|k| k.starts_with('s'))
                    .count()
            })
            .sum();
        assert_eq!(old, 0);
    }
}
