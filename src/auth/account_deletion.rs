//! Deleting an account (README, "Deleting an account"; GDPR Art. 17): by its
//! user (`DELETE /me`, with a recent password) or by an operator
//! (`latchkey user delete`). The user, their sessions and their throttle
//! counters go; the audit events that concern them stay, with the user id
//! alone.

use crate::auth::credentials::throttle;
use crate::auth::{ApiError, Auth, ClientInfo, LiveToken, SetCookies};
use crate::store::{Erasure, RevokeReason, User};

impl Auth {
    /// Deletes the token's account. Asks for a password checked within
    /// `REAUTH_MAX_AGE` (`insufficient_user_authentication` otherwise).
    /// Returns the cookies that make the browser forget its refresh token
    /// and its device cookie, which names the account.
    pub async fn delete_account(&self, token: &LiveToken) -> Result<SetCookies, ApiError> {
        self.require_recent_authentication(token.claims(), self.config().tokens.reauth_max_age)?;
        let user = self
            .store()
            .user_by_id(token.user_id())
            .await?
            .ok_or(ApiError::InvalidToken)?;
        self.erase(&user, "by its user")
            .await?
            .ok_or(ApiError::InvalidToken)?;
        let policy = self.cookie_policy();
        Ok(SetCookies(vec![policy.clear(), policy.clear_device()]))
    }

    /// An operator deletes the account; returns the sessions that ended.
    /// `NotFound` when it is already gone.
    pub async fn delete_user(&self, user: &User) -> Result<u64, ApiError> {
        self.erase(user, "by the CLI")
            .await?
            .ok_or(ApiError::NotFound)
    }

    /// Erases the account in one transaction; the sessions that were live,
    /// or `None` when there was no such account.
    async fn erase(&self, user: &User, by: &str) -> Result<Option<u64>, ApiError> {
        let (throttle_keys, throttle_prefixes) =
            throttle::account_counters(&user.username, user.id);
        let ended = self
            .store()
            .delete_user(Erasure {
                user_id: user.id,
                throttle_keys: &throttle_keys,
                throttle_prefixes: &throttle_prefixes,
                now: self.now(),
            })
            .await?;
        if let Some(ended) = ended {
            // The user id alone: no name, address or request id, which
            // would undo the erasure.
            let reason = RevokeReason::AccountDeleted;
            self.sessions_ended(reason, ended, &ClientInfo::default(), |event| {
                event
                    .user_id(user.id)
                    .detail(format!("{by}; {ended} sessions ended"))
            })
            .await;
        }
        Ok(ended)
    }
}
