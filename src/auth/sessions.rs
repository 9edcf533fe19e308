//! Listing and revoking sessions: a user's own (README, "Endpoints":
//! `/sessions`) and, for an operator, anyone's (`latchkey user sessions`,
//! `latchkey user revoke-sessions`).

use crate::auth::{AccessClaims, ApiError, AuditKind, Auth, ClientInfo, Event};
use crate::store::{Session, User};

/// Why a session ended, as the store keeps it in `revoked_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevokeReason {
    /// Its refresh cookie was sent to `POST /logout`.
    Logout,
    /// The browser signed in again with its cookie.
    ReplacedByLogin,
    /// An old refresh token of it came back (README, "Rotation rules").
    RefreshTokenReused,
    /// Its user revoked it from the sessions list.
    RevokedByUser,
    /// Its user logged out everywhere.
    RevokedEverywhere,
    /// An operator revoked it.
    RevokedByOperator,
}

impl RevokeReason {
    /// The name kept in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::ReplacedByLogin => "replaced_by_login",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::RevokedByUser => "revoked_by_user",
            Self::RevokedEverywhere => "revoked_everywhere",
            Self::RevokedByOperator => "revoked_by_operator",
        }
    }

    /// The audit event of a session ended for this reason by the cookie's
    /// holder.
    pub(crate) fn audit_kind(self) -> AuditKind {
        match self {
            Self::Logout => AuditKind::Logout,
            Self::ReplacedByLogin => AuditKind::ReplacedByLogin,
            Self::RefreshTokenReused => AuditKind::RefreshTokenReused,
            Self::RevokedByUser => AuditKind::SessionRevoked,
            Self::RevokedEverywhere => AuditKind::SessionsRevokedAll,
            Self::RevokedByOperator => AuditKind::SessionsRevokedByOperator,
        }
    }
}

impl Auth {
    /// The live sessions of the token's user, newest first.
    pub async fn sessions(&self, token: &AccessClaims) -> Result<Vec<Session>, ApiError> {
        let user_id = token.user_id()?;
        Ok(self.store().active_sessions(user_id, self.now()).await?)
    }

    /// Revokes one session of the token's user; `NotFound` when the user
    /// has no live session of that id.
    pub async fn revoke_session(
        &self,
        token: &AccessClaims,
        session_id: &str,
        client: &ClientInfo,
    ) -> Result<(), ApiError> {
        let user_id = token.user_id()?;
        let reason = RevokeReason::RevokedByUser;
        let revoked = self
            .store()
            .revoke_session(session_id, Some(user_id), reason.as_str(), self.now())
            .await?;
        if !revoked {
            return Err(ApiError::NotFound);
        }
        self.record(
            Event::new(reason.audit_kind(), client)
                .user(user_id, &token.username)
                .session(session_id),
        )
        .await;
        Ok(())
    }

    /// Revokes every session of the token's user ("log out everywhere");
    /// returns how many.
    pub async fn revoke_all_sessions(
        &self,
        token: &AccessClaims,
        client: &ClientInfo,
    ) -> Result<u64, ApiError> {
        let user_id = token.user_id()?;
        let reason = RevokeReason::RevokedEverywhere;
        let count = self
            .store()
            .revoke_user_sessions(user_id, None, reason.as_str(), self.now())
            .await?;
        self.record(
            Event::new(reason.audit_kind(), client)
                .user(user_id, &token.username)
                .session(&token.sid)
                .detail(format!("{count} sessions")),
        )
        .await;
        Ok(count)
    }

    /// An operator's view: the user's live sessions, newest first.
    pub async fn user_sessions(&self, user: &User) -> Result<Vec<Session>, ApiError> {
        Ok(self.store().active_sessions(user.id, self.now()).await?)
    }

    /// An operator revokes one session of the user (`session`), or all of
    /// them; returns how many ended, and `NotFound` when the named session
    /// is not a live one of the user's.
    pub async fn revoke_user_sessions(
        &self,
        user: &User,
        session: Option<&str>,
    ) -> Result<u64, ApiError> {
        let reason = RevokeReason::RevokedByOperator;
        let now = self.now();
        let ended = match session {
            Some(id) => {
                let revoked = self
                    .store()
                    .revoke_session(id, Some(user.id), reason.as_str(), now)
                    .await?;
                if !revoked {
                    return Err(ApiError::NotFound);
                }
                1
            }
            None => {
                self.store()
                    .revoke_user_sessions(user.id, None, reason.as_str(), now)
                    .await?
            }
        };
        self.record(
            Event::new(reason.audit_kind(), &ClientInfo::default())
                .user(user.id, &user.username)
                .detail(format!("{ended} sessions")),
        )
        .await;
        Ok(ended)
    }
}
