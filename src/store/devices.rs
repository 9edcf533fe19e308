//! Device cookies' records: which browsers have signed in to an account under
//! its current credentials (README, "The device cookie").

use async_trait::async_trait;

use super::StoreResult;

/// A device an account signed in from, for [`Devices::remember_device`].
/// Times are Unix seconds.
#[derive(Debug, Clone)]
pub struct NewDevice<'a> {
    /// The account.
    pub user_id: i64,
    /// The random id the device cookie carries.
    pub id: &'a str,
    /// The account's credentials version the login verified.
    pub credentials_version: i64,
    /// When the login happened.
    pub now: i64,
}

/// Device cookies' records. Rows are deleted with their account.
#[async_trait]
pub trait Devices: Send + Sync {
    /// The credentials version `user_id`'s device `id` was last signed in
    /// under; `None` when the account has no such device (never issued, or
    /// dropped for newer ones).
    async fn device_credentials(&self, user_id: i64, id: &str) -> StoreResult<Option<i64>>;
    /// Records a login from `device` (new, or seen before) if the account's
    /// credentials version is still `device.credentials_version`, then
    /// deletes the account's devices of older versions and all but the
    /// `keep` most recently used of that version, in one transaction.
    /// Returns how many were deleted.
    async fn remember_device(&self, device: NewDevice<'_>, keep: i64) -> StoreResult<u64>;
}
