//! Second factors (README, "Second factor"): TOTP secrets (sealed before
//! they reach the store), recovery codes (hashed), and the logins that wait
//! for their second step.

use async_trait::async_trait;

use super::StoreResult;

/// An account's TOTP factor, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpFactor {
    /// The secret, sealed (`auth/sealed.rs`): never the secret itself.
    pub secret: Vec<u8>,
    /// When a code confirmed it; `None` while enrolment is pending.
    pub confirmed_at: Option<i64>,
    /// The last time step a code was accepted for: a code of this step or
    /// an earlier one never works again.
    pub last_step: i64,
}

// The sealed secret stays out of `Debug` output all the same.
impl std::fmt::Debug for TotpFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpFactor")
            .field("confirmed_at", &self.confirmed_at)
            .field("last_step", &self.last_step)
            .finish_non_exhaustive()
    }
}

/// A login whose password was checked, waiting for its second step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogin {
    /// The account.
    pub user_id: i64,
    /// The credentials version the password check verified: the session is
    /// created only if it is still the user's.
    pub credentials_version: i64,
    /// The login's "Keep me signed in".
    pub remember: bool,
    /// When it dies, in Unix seconds.
    pub expires_at: i64,
    /// Codes tried so far, counted before each is checked.
    pub attempts: i64,
}

/// A pending login's row as both stores select it: user id, credentials
/// version, "Keep me signed in", expiry, attempts.
pub(crate) type PendingLoginRow = (i64, i64, bool, i64, i64);

impl From<PendingLoginRow> for PendingLogin {
    fn from(
        (user_id, credentials_version, remember, expires_at, attempts): PendingLoginRow,
    ) -> Self {
        Self {
            user_id,
            credentials_version,
            remember,
            expires_at,
            attempts,
        }
    }
}

/// Second factors, keyed by account. Rows go with their account.
#[async_trait]
pub trait SecondFactors: Send + Sync {
    /// The account's TOTP factor, pending or confirmed.
    async fn totp_factor(&self, user_id: i64) -> StoreResult<Option<TotpFactor>>;
    /// Stores a pending factor with this sealed secret, replacing a pending
    /// one; false (and nothing changes) when a confirmed one exists.
    async fn begin_totp(&self, user_id: i64, secret: &[u8], now: i64) -> StoreResult<bool>;
    /// Confirms the pending factor, its code accepted at `step`, with these
    /// recovery codes (hashed) in place of any: in one transaction, only if
    /// it is still pending and its sealed secret is still `secret`.
    async fn confirm_totp(
        &self,
        user_id: i64,
        secret: &[u8],
        step: i64,
        codes: &[[u8; 32]],
        now: i64,
    ) -> StoreResult<bool>;
    /// Replaces the factor's sealed secret `old` with `new` (the same secret
    /// sealed under the current key): only if it is still `old`.
    async fn reseal_totp(&self, user_id: i64, old: &[u8], new: &[u8]) -> StoreResult<bool>;
    /// Records a code accepted at `step`: true only if the factor is
    /// confirmed and `step` is later than any accepted before, so a code
    /// used twice, even at the same instant, works once.
    async fn use_totp_step(&self, user_id: i64, step: i64) -> StoreResult<bool>;
    /// Counts one more TOTP code about to be checked against the account's
    /// confirmed factor, unless `cap` codes in a row have been wrong
    /// already: then `false`, and nothing is counted. An accepted code
    /// ([`SecondFactors::use_totp_step`]) sets the count back to 0.
    async fn count_totp_code(&self, user_id: i64, cap: i64) -> StoreResult<bool>;
    /// Uses the recovery code whose hash is `hash`: true once. Its use sets
    /// the count of wrong TOTP codes back to 0, as an accepted code does.
    async fn use_recovery_code(&self, user_id: i64, hash: &[u8], now: i64) -> StoreResult<bool>;
    /// Replaces the account's recovery codes, if it has a confirmed factor.
    async fn replace_recovery_codes(&self, user_id: i64, codes: &[[u8; 32]]) -> StoreResult<bool>;
    /// The recovery codes not used yet.
    async fn recovery_codes_left(&self, user_id: i64) -> StoreResult<i64>;
    /// Removes the account's factor and recovery codes, and its pending
    /// logins; false when it had none.
    async fn remove_second_factor(&self, user_id: i64) -> StoreResult<bool>;
    /// Stores a pending login under the hash of its cookie's value.
    async fn begin_pending_login(&self, hash: &[u8], login: &PendingLogin) -> StoreResult<()>;
    /// Counts one code against the pending login, before it is checked:
    /// `None` when there is no such login, it expired, or it has had
    /// `max_attempts` already (then it is deleted).
    async fn attempt_pending_login(
        &self,
        hash: &[u8],
        now: i64,
        max_attempts: i64,
    ) -> StoreResult<Option<PendingLogin>>;
    /// The pending login, if it is still waiting (not expired), without
    /// counting an attempt: for showing its page again.
    async fn pending_login(&self, hash: &[u8], now: i64) -> StoreResult<Option<PendingLogin>>;
    /// Ends a pending login: true for the one caller that ends it.
    async fn end_pending_login(&self, hash: &[u8]) -> StoreResult<bool>;
    /// Deletes up to `limit` pending logins expired before `now`.
    async fn delete_expired_pending_logins(&self, now: i64, limit: i64) -> StoreResult<u64>;
}
