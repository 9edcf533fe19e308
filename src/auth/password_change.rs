//! Changing one's password with the current one (README, "Endpoints":
//! `POST /password`). Every other session of the user ends; the one making
//! the change stays signed in.

use crate::auth::{ApiError, AuditKind, Auth, ClientInfo, Event, LiveToken};
use crate::store::{PasswordChange, RevokeReason};

impl Auth {
    /// Changes the password of the token's user. The current password is
    /// admitted, counted and settled exactly as a login's, so a stolen
    /// access token is no way to guess it; `devices` are the device cookies
    /// the request carried.
    pub async fn change_password(
        &self,
        token: &LiveToken,
        current_password: &str,
        new_password: &str,
        devices: &[String],
        client: &ClientInfo,
    ) -> Result<(), ApiError> {
        let user = match self.store().user_by_id(token.user_id()).await? {
            Some(u) if u.disabled_at.is_none() => u,
            _ => return Err(ApiError::InvalidToken),
        };
        let verified = self
            .recheck(&user, current_password, client, devices)
            .await?;
        if !verified {
            self.record(
                Event::new(AuditKind::PasswordChangeFailed, client).user(user.id, &user.username),
            )
            .await;
            return Err(ApiError::WrongCurrentPassword);
        }
        let hash = self.hash_new_password(new_password).await?;
        // Applied only over the hash just verified, with the other sessions
        // revoked in the same transaction: a concurrent change or login
        // cannot slip between the check and the change.
        let ended = self
            .store()
            .change_password(PasswordChange {
                user_id: user.id,
                verified_hash: &user.password_hash,
                new_hash: &hash,
                keep_session: Some(&token.session().id),
                now: self.now(),
            })
            .await?
            .ok_or(ApiError::WrongCurrentPassword)?;
        self.sessions_ended(RevokeReason::PasswordChanged, ended, client, |event| {
            event
                .user(user.id, &user.username)
                .session(&token.session().id)
                .detail(format!("{ended} other sessions revoked"))
        })
        .await;
        Ok(())
    }
}
