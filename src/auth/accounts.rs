//! An operator's actions on accounts (`latchkey user …`). Every change is
//! itself an audit event.

use crate::auth::credentials::normalize_username;
use crate::auth::{ApiError, AuditKind, Auth, ClientInfo, Event};
use crate::store::{RevokeReason, User};

impl Auth {
    /// The user of that name (compared as stored: trimmed, lower-cased).
    pub async fn user_named(&self, name: &str) -> Result<Option<User>, ApiError> {
        let name = normalize_username(name)?;
        Ok(self.store().user_by_name(&name).await?)
    }

    /// Disables the account: every session is revoked at once and logins
    /// are refused with the same answer as a wrong password. The credentials
    /// version moves in the same transaction, so a login or refresh that
    /// checked the account just before cannot leave a session behind.
    /// Returns the sessions ended; `NotFound` when the user is gone.
    pub async fn disable_user(&self, user: &User) -> Result<u64, ApiError> {
        let ended = self
            .store()
            .disable_user(user.id, self.now())
            .await?
            .ok_or(ApiError::NotFound)?;
        let reason = RevokeReason::UserDisabled;
        self.sessions_ended(reason, ended, &ClientInfo::default(), |event| {
            event
                .user(user.id, &user.username)
                .detail(format!("by the CLI; {ended} sessions revoked"))
        })
        .await;
        Ok(ended)
    }

    /// Lets a disabled account sign in again.
    pub async fn enable_user(&self, user: &User) -> Result<(), ApiError> {
        self.store().enable_user(user.id).await?;
        self.record(
            Event::new(AuditKind::UserEnabled, &ClientInfo::default())
                .user(user.id, &user.username)
                .detail("by the CLI"),
        )
        .await;
        Ok(())
    }
}
