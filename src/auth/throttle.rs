//! Login throttling with exponential back-off, kept in the store so it holds
//! across instances and restarts.
//!
//! Three counters per attempt (OWASP authentication cheat sheet): the account
//! from this address (tight), the address (catches one client spraying many
//! accounts) and the account from anywhere (catches distributed guessing, with
//! a high allowance so an attacker cannot cheaply lock a real user out).

use crate::config::ThrottlePolicy;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::StoreResult;

/// Failures are forgotten after an hour without one.
const WINDOW: i64 = 3600;

#[derive(Debug, Clone)]
pub struct Counter {
    key: String,
    /// Failures allowed before delays begin.
    free: i64,
    /// Whether a successful login clears it.
    cleared_by_success: bool,
}

pub fn login_counters(policy: &ThrottlePolicy, username: &str, ip: Option<&str>) -> Vec<Counter> {
    let mut counters = vec![Counter {
        key: format!("login-user:{username}"),
        free: policy.login_account,
        cleared_by_success: true,
    }];
    if let Some(ip) = ip {
        counters.push(Counter {
            key: format!("login-pair:{username}|{ip}"),
            free: policy.login_pair,
            cleared_by_success: true,
        });
        counters.push(Counter {
            key: format!("login-ip:{ip}"),
            free: policy.login_address,
            cleared_by_success: false,
        });
    }
    counters
}

/// Sign-ups from one address: every attempt counts, successful or not, so a
/// script cannot mint accounts (or probe for taken names) at speed.
pub fn registration_counters(policy: &ThrottlePolicy, ip: Option<&str>) -> Vec<Counter> {
    ip.map(|ip| Counter {
        key: format!("register-ip:{ip}"),
        free: policy.register_address,
        cleared_by_success: false,
    })
    .into_iter()
    .collect()
}

/// Refuses with `429` while any counter is in its back-off.
pub async fn check(state: &AppState, counters: &[Counter]) -> Result<(), ApiError> {
    let now = state.clock.now();
    let mut until = 0;
    for c in counters {
        until = until.max(state.store.throttle_blocked_until(&c.key).await?);
    }
    if until > now {
        return Err(ApiError::TooManyAttempts {
            retry_after: until - now,
        });
    }
    Ok(())
}

pub async fn record_failure(state: &AppState, counters: &[Counter]) -> StoreResult<()> {
    let now = state.clock.now();
    for c in counters {
        let failures = state
            .store
            .throttle_record_failure(&c.key, now, WINDOW)
            .await?;
        // After `free` failures every further attempt waits: 1 s, 2 s, 4 s…
        if failures >= c.free {
            let exponent = u32::try_from((failures - c.free).min(20)).unwrap_or(20);
            let delay = 2_i64.pow(exponent).min(state.config.throttle.max_delay);
            state.store.throttle_block(&c.key, now + delay).await?;
        }
    }
    Ok(())
}

pub async fn record_success(state: &AppState, counters: &[Counter]) -> StoreResult<()> {
    for c in counters.iter().filter(|c| c.cleared_by_success) {
        state.store.throttle_clear(&c.key).await?;
    }
    Ok(())
}
