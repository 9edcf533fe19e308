//! Device cookies (README, "The device cookie"; OWASP authentication cheat
//! sheet, "device cookies"): a browser that signed in to an account before is
//! judged by its own failure counter, so other people's guesses never lock
//! its owner out. What makes one count:
//!
//! - its signature (`JWT_REFRESH_SECRET`) and its account;
//! - its record in the store, written at its last login under the account's
//!   credentials version then: a password change, a reset or a disable moves
//!   the version, and every device issued before stops counting;
//! - its place among the account's [`MAX_DEVICES`] most recently used: a new
//!   one pushes out the oldest, so no one can stockpile them.
//!
//! And device holders together still meet an account-wide limit
//! (`throttle::login_counters`).

use crate::auth::Auth;
use crate::auth::error::ApiError;
use crate::random;
use crate::store::{NewDevice, User};

/// Devices an account keeps; a login from another drops the least recently
/// used.
pub const MAX_DEVICES: i64 = 10;

impl Auth {
    /// The device id of the first of `cookies` that counts for `user` now.
    pub(crate) async fn known_device(
        &self,
        user: &User,
        cookies: &[String],
    ) -> Result<Option<String>, ApiError> {
        let now = self.now();
        let account = user.id.to_string();
        for token in cookies {
            let Ok(claims) = self.token_keys().verify_device(token, now) else {
                continue;
            };
            if claims.sub != account {
                continue;
            }
            let version = self
                .store()
                .device_credentials(user.id, &claims.did)
                .await?;
            if version == Some(user.credentials_version) {
                return Ok(Some(claims.did));
            }
        }
        Ok(None)
    }

    /// Records a login from `device` (a known one, or `None` for a new id),
    /// under the credentials it verified, and returns its device id. A
    /// failure to record only costs the browser its exemption, so it does
    /// not fail the login.
    pub(crate) async fn remember_device(&self, user: &User, device: Option<String>) -> String {
        let id = device.unwrap_or_else(random::device_id);
        let recorded = self
            .store()
            .remember_device(
                NewDevice {
                    user_id: user.id,
                    id: &id,
                    credentials_version: user.credentials_version,
                    now: self.now(),
                },
                MAX_DEVICES,
            )
            .await;
        match recorded {
            Ok(0) => {}
            Ok(dropped) => tracing::debug!(user_id = user.id, dropped, "older devices forgotten"),
            Err(e) => tracing::warn!(user_id = user.id, error = %e, "could not record a device"),
        }
        id
    }
}
