//! Guessing limits with exponential back-off, kept in the store so they hold
//! across instances and restarts (README, "Passwords and login").
//!
//! An attempt is *reserved* before its password is verified: one transaction
//! counts it against every counter it is charged to, or refuses it when any
//! of them is in its back-off. So requests arriving at the same instant can
//! never verify more than the allowance, however many there are. A success
//! then settles: counters about the account are cleared, the address gets
//! its attempt back; a failure simply stays counted.
//!
//! Which counters (OWASP authentication cheat sheet, "Slow down online
//! guessing attacks with device cookies"): a client presenting a device
//! cookie that counts for the account (`devices.rs`) is judged by that
//! device's counter and by one the account's devices share, twice as
//! generous as the account's own, so other people's guesses never lock the
//! owner out and no number of device cookies buys unlimited guesses. Any
//! other client is charged to the account from this address (tight), the
//! address (one client spraying many accounts) and the account from anywhere
//! (distributed guessing).

use std::net::IpAddr;

use crate::auth::{ApiError, Auth};
use crate::clock::seconds;
use crate::config::ThrottlePolicy;
use crate::store::{Allowance, Reservation};

/// Failures are forgotten after an hour without an attempt.
pub const WINDOW: i64 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnSuccess {
    /// The counter is about this account: a success clears it.
    Clear,
    /// The counter is about the address: a success gives its attempt back.
    Release,
    /// Every attempt counts, successful or not (sign-ups).
    Keep,
}

#[derive(Debug, Clone)]
struct Counter {
    allowance: Allowance,
    on_success: OnSuccess,
}

/// The counters one attempt is charged to, in key order (so concurrent
/// reservations lock rows in one order and never deadlock).
#[derive(Debug, Clone)]
pub struct Counters(Vec<Counter>);

impl Counters {
    fn new(mut counters: Vec<Counter>) -> Self {
        counters.sort_by(|a, b| a.allowance.key.cmp(&b.allowance.key));
        Self(counters)
    }
}

/// A device cookie verified for an account: the account's id and the
/// device's id.
#[derive(Debug, Clone, Copy)]
pub struct Device<'a> {
    pub user_id: i64,
    pub id: &'a str,
}

/// How many times the account-wide allowance device holders share is of
/// `THROTTLE_LOGIN_ACCOUNT` (README, "The device cookie").
pub const DEVICES_ACCOUNT_FACTOR: i64 = 2;

/// The counters of a login (or of re-entering the password for a change or
/// a step-up): the device's own and the account's devices' when `device` is
/// a device cookie that counts for this account, otherwise the account's,
/// the pair's and the address's.
pub fn login_counters(
    policy: &ThrottlePolicy,
    username: &str,
    ip: Option<&str>,
    device: Option<Device<'_>>,
) -> Counters {
    if let Some(device) = device {
        return Counters::new(vec![
            Counter {
                allowance: Allowance {
                    key: format!("{}{}", device_prefix(device.user_id), device.id),
                    free: policy.login_pair,
                },
                on_success: OnSuccess::Clear,
            },
            Counter {
                allowance: Allowance {
                    key: devices_key(device.user_id),
                    free: policy.login_account.saturating_mul(DEVICES_ACCOUNT_FACTOR),
                },
                on_success: OnSuccess::Clear,
            },
        ]);
    }
    let mut counters = vec![Counter {
        allowance: Allowance {
            key: account_key(username),
            free: policy.login_account,
        },
        on_success: OnSuccess::Clear,
    }];
    if let Some(address) = ip.map(address_key) {
        counters.push(Counter {
            allowance: Allowance {
                key: format!("{}{address}", pair_prefix(username)),
                free: policy.login_pair,
            },
            on_success: OnSuccess::Clear,
        });
        counters.push(Counter {
            allowance: Allowance {
                key: format!("login-ip:{address}"),
                free: policy.login_address,
            },
            on_success: OnSuccess::Release,
        });
    }
    Counters::new(counters)
}

// The keys that name an account. Usernames hold no `|` and user ids no `:`,
// so each prefix below is one account's alone.
fn account_key(username: &str) -> String {
    format!("login-user:{username}")
}

fn pair_prefix(username: &str) -> String {
    format!("login-pair:{username}|")
}

fn device_prefix(user_id: i64) -> String {
    format!("login-device:{user_id}:")
}

fn devices_key(user_id: i64) -> String {
    format!("login-devices:{user_id}")
}

/// The counters that name an account, for its erasure: the exact keys and
/// the key prefixes (README, "Deleting an account").
pub fn account_counters(username: &str, user_id: i64) -> (Vec<String>, Vec<String>) {
    (
        vec![
            account_key(username),
            devices_key(user_id),
            mail_reset_key(user_id),
            mail_verify_key(user_id),
            format!("second-factor:{user_id}"),
        ],
        vec![pair_prefix(username), device_prefix(user_id)],
    )
}

/// Reset links mailed to an account: per account only, so that nobody else
/// can spend a victim's allowance by naming their address elsewhere, and a
/// request about one account tells nothing about another's (README,
/// "Account recovery").
pub fn mail_reset_key(user_id: i64) -> String {
    format!("mail-reset:{user_id}")
}

/// Verification links asked for by an account.
pub fn mail_verify_key(user_id: i64) -> String {
    format!("mail-verify:{user_id}")
}

/// Verification links mailed to one address, whichever accounts ask: named
/// by a keyed tag, never the address.
pub fn mail_verify_to_key(address_tag: &str) -> String {
    format!("mail-verify-to:{address_tag}")
}

/// Reset links asked for from one client address, whatever names they carry.
pub fn mail_ip_key(ip: &str) -> String {
    format!("mail-ip:{}", address_key(ip))
}

/// Second-factor codes tried for one account, from anywhere: as many as
/// `THROTTLE_LOGIN_PAIR` before the back-off, cleared by a right one (README,
/// "Second factor"). Each pending login has its own, smaller allowance too.
pub fn second_factor_counters(policy: &ThrottlePolicy, user_id: i64) -> Counters {
    Counters::new(vec![Counter {
        allowance: Allowance {
            key: format!("second-factor:{user_id}"),
            free: policy.login_pair,
        },
        on_success: OnSuccess::Clear,
    }])
}

/// Sign-ups from one address: every attempt counts, successful or not, so a
/// script cannot mint accounts (or probe for taken names) at speed.
pub fn registration_counters(policy: &ThrottlePolicy, ip: Option<&str>) -> Counters {
    Counters::new(
        ip.map(|ip| Counter {
            allowance: Allowance {
                key: format!("register-ip:{}", address_key(ip)),
                free: policy.register_address,
            },
            on_success: OnSuccess::Keep,
        })
        .into_iter()
        .collect(),
    )
}

/// The unit an address is limited as: an IPv4 address, or the /64 an IPv6
/// address is in (one subscriber is usually given a whole /64, so its 2^64
/// addresses are one client; RFC 6177). IPv4-mapped IPv6 is IPv4.
pub fn address_key(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                format!("{}/64", std::net::Ipv6Addr::from(segments))
            }
        },
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => ip.to_owned(),
    }
}

impl Auth {
    /// Counts the attempt against every counter before any work is done, or
    /// refuses it (`429` with `Retry-After`) while one is in its back-off.
    pub(crate) async fn reserve_attempt(&self, counters: &Counters) -> Result<(), ApiError> {
        if counters.0.is_empty() {
            return Ok(());
        }
        let allowances: Vec<Allowance> = counters.0.iter().map(|c| c.allowance.clone()).collect();
        let now = self.now();
        match self
            .store()
            .throttle_reserve(
                &allowances,
                now,
                WINDOW,
                seconds(self.config().throttle.max_delay),
            )
            .await?
        {
            Reservation::Granted => Ok(()),
            Reservation::Refused { until } => Err(ApiError::TooManyAttempts {
                retry_after: (until - now).max(1),
            }),
        }
    }

    /// Settles a successful attempt; a failed one needs nothing (it stays counted).
    pub(crate) async fn settle_success(&self, counters: &Counters) -> Result<(), ApiError> {
        let keys = |want: OnSuccess| -> Vec<&str> {
            counters
                .0
                .iter()
                .filter(|c| c.on_success == want)
                .map(|c| c.allowance.key.as_str())
                .collect()
        };
        let (clear, release) = (keys(OnSuccess::Clear), keys(OnSuccess::Release));
        if clear.is_empty() && release.is_empty() {
            return Ok(());
        }
        self.store().throttle_settle(&clear, &release).await?;
        Ok(())
    }

    /// Gives back an attempt that was reserved but never made (the check could
    /// not run: the hashing queue was full).
    pub(crate) async fn release_attempt(&self, counters: &Counters) -> Result<(), ApiError> {
        let keys: Vec<&str> = counters
            .0
            .iter()
            .map(|c| c.allowance.key.as_str())
            .collect();
        if !keys.is_empty() {
            self.store().throttle_settle(&[], &keys).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::address_key;

    #[test]
    fn ipv6_addresses_are_limited_by_their_64() {
        assert_eq!(address_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            address_key("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            "2001:db8:1:2::/64"
        );
        assert_eq!(address_key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(address_key("203.0.113.7"), "203.0.113.7");
    }
}
