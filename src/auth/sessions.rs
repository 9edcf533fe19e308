//! Listing and revoking sessions: a user's own (README, "Endpoints":
//! `/sessions`) and, for an operator, anyone's (`latchkey user sessions`,
//! `latchkey user revoke-sessions`).

use crate::auth::{ApiError, AuditKind, Auth, ClientInfo, Event, LiveToken};
use crate::store::{RevokeReason, Session, User};

/// The audit event of a session ended for this reason by the cookie's
/// holder or the user.
fn audit_kind(reason: RevokeReason) -> AuditKind {
    match reason {
        RevokeReason::Logout => AuditKind::Logout,
        RevokeReason::ReplacedByLogin => AuditKind::ReplacedByLogin,
        RevokeReason::RefreshTokenReused => AuditKind::RefreshTokenReused,
        RevokeReason::RevokedByUser => AuditKind::SessionRevoked,
        RevokeReason::RevokedEverywhere => AuditKind::SessionsRevokedAll,
        RevokeReason::RevokedByOperator => AuditKind::SessionsRevokedByOperator,
        RevokeReason::PasswordChanged => AuditKind::PasswordChanged,
        RevokeReason::UserDisabled => AuditKind::UserDisabled,
        RevokeReason::SessionEvicted => AuditKind::SessionEvicted,
        RevokeReason::AccountDeleted => AuditKind::AccountDeleted,
        RevokeReason::PasswordReset => AuditKind::PasswordReset,
        RevokeReason::SecondFactorEnrolled | RevokeReason::SecondFactorRequired => {
            AuditKind::PasswordOnlySessionsEnded
        }
    }
}

impl Auth {
    /// Sessions the store has just ended for `reason`: counted in
    /// `latchkey_sessions_revoked_total` and recorded as `reason`'s audit
    /// event, which `describe` fills in. The one place both happen, so
    /// neither is ever written without the other (README, "Metrics", "Audit
    /// trail and logs").
    pub(crate) async fn sessions_ended(
        &self,
        reason: RevokeReason,
        count: u64,
        client: &ClientInfo,
        describe: impl FnOnce(Event) -> Event,
    ) {
        self.metrics().sessions_revoked(reason, count);
        self.record(describe(Event::new(audit_kind(reason), client)))
            .await;
    }

    /// As [`Auth::sessions_ended`], for the sessions `ids`, each with an
    /// audit event of its own, written together.
    pub(crate) async fn each_session_ended(
        &self,
        reason: RevokeReason,
        ids: &[String],
        client: &ClientInfo,
        describe: impl Fn(Event, &str) -> Event,
    ) {
        if ids.is_empty() {
            return;
        }
        self.metrics().sessions_revoked(reason, ids.len() as u64);
        let events = ids
            .iter()
            .map(|id| describe(Event::new(audit_kind(reason), client), id))
            .collect();
        self.record_all(events).await;
    }

    /// The live sessions of the token's user, newest first.
    pub async fn sessions(&self, token: &LiveToken) -> Result<Vec<Session>, ApiError> {
        Ok(self
            .store()
            .active_sessions(token.user_id(), self.now())
            .await?)
    }

    /// Revokes one session of the token's user; `NotFound` when the user
    /// has no live session of that id.
    pub async fn revoke_session(
        &self,
        token: &LiveToken,
        session_id: &str,
        client: &ClientInfo,
    ) -> Result<(), ApiError> {
        let user_id = token.user_id();
        let reason = RevokeReason::RevokedByUser;
        let revoked = self
            .store()
            .revoke_session(session_id, Some(user_id), reason, self.now())
            .await?;
        if !revoked {
            return Err(ApiError::NotFound);
        }
        self.sessions_ended(reason, 1, client, |event| {
            event
                .user(user_id, &token.claims().username)
                .session(session_id)
        })
        .await;
        Ok(())
    }

    /// Revokes every session of the token's user ("log out everywhere");
    /// returns how many.
    pub async fn revoke_all_sessions(
        &self,
        token: &LiveToken,
        client: &ClientInfo,
    ) -> Result<u64, ApiError> {
        let user_id = token.user_id();
        let reason = RevokeReason::RevokedEverywhere;
        let count = self
            .store()
            .revoke_user_sessions(user_id, None, reason, self.now())
            .await?;
        self.sessions_ended(reason, count, client, |event| {
            event
                .user(user_id, &token.claims().username)
                .session(&token.session().id)
                .detail(format!("{count} sessions"))
        })
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
                    .revoke_session(id, Some(user.id), reason, now)
                    .await?;
                if !revoked {
                    return Err(ApiError::NotFound);
                }
                1
            }
            None => {
                self.store()
                    .revoke_user_sessions(user.id, None, reason, now)
                    .await?
            }
        };
        self.sessions_ended(reason, ended, &ClientInfo::default(), |event| {
            event
                .user(user.id, &user.username)
                .detail(format!("{ended} sessions"))
        })
        .await;
        Ok(ended)
    }
}
