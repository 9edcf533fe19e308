//! Step-up (README, "Step-up: a recent password"): an action that needs a
//! recent password asks for one with RFC 9470's challenge, and
//! `POST /reauthenticate` gives it: the password checked again, admitted and
//! throttled exactly as a login, and a fresh access token whose `auth_time`
//! (RFC 9068 §2.2.1) is now. An account with a second factor gives a code
//! too (README, "Second factor"), so `auth_time` always means every factor
//! the account has, and the session's `amr` says so.

use std::time::Duration;

use crate::auth::second_factor::SECOND_FACTOR_AMR;
use crate::auth::{
    AccessClaims, ApiError, AuditKind, Auth, ClientInfo, Event, Issued, LiveToken,
    SecondFactorProof,
};
use crate::clock::seconds;

impl Auth {
    /// Checks the password again for the token's session. On success the
    /// session's `auth_time` becomes now, and so does that of the access
    /// token returned (and of every token its rotations issue); the refresh
    /// cookie does not change. A wrong password is `InvalidCredentials`,
    /// counted by the throttle as a login's; `devices` are the device
    /// cookies the request carried. An account with a second factor gives
    /// `proof` too: without it, `SecondFactorRequired` (before the password
    /// is checked); a wrong one, `InvalidCode`.
    pub async fn reauthenticate(
        &self,
        token: &LiveToken,
        password: &str,
        proof: Option<SecondFactorProof<'_>>,
        devices: &[String],
        client: &ClientInfo,
    ) -> Result<Issued, ApiError> {
        if password.is_empty() {
            return Err(ApiError::InvalidRequest("password is required".into()));
        }
        let user = match self.store().user_by_id(token.user_id()).await? {
            Some(u) if u.disabled_at.is_none() => u,
            _ => return Err(ApiError::InvalidToken),
        };
        let second_factor = self.has_second_factor(user.id).await?;
        if second_factor && proof.is_none() {
            return Err(ApiError::SecondFactorRequired);
        }
        let session_id = &token.session().id;
        if !self.recheck(&user, password, client, devices).await? {
            self.record(
                Event::new(AuditKind::ReauthenticationFailed, client)
                    .user(user.id, &user.username)
                    .session(session_id),
            )
            .await;
            return Err(ApiError::InvalidCredentials);
        }
        let amr = match proof.filter(|_| second_factor) {
            Some(proof) => {
                self.check_second_factor(&user, proof, client).await?;
                SECOND_FACTOR_AMR
            }
            None => "pwd",
        };
        let now = self.now();
        let access_keys = self.signing_access_keys(now).await?;
        // Recorded only over the hash just verified, and only while the
        // session lives: a password change or a revocation that won the race
        // leaves nothing to step up.
        let Some(session) = self
            .store()
            .reauthenticate_session(session_id, &user.password_hash, now, amr)
            .await?
        else {
            return Err(match self.live_session(token.claims().clone()).await {
                // Still live, so the password changed meanwhile.
                Ok(_) => ApiError::InvalidCredentials,
                Err(e) => e,
            });
        };
        self.record(
            Event::new(AuditKind::Reauthenticated, client)
                .user(user.id, &user.username)
                .session(session_id),
        )
        .await;
        self.issue_access(&access_keys, &session, &user, now)
    }

    /// Refuses a token whose password was last checked more than `max_age`
    /// ago: `401 insufficient_user_authentication`, with the challenge of
    /// RFC 9470 §3 naming `max_age`. The client re-authenticates and tries
    /// again.
    pub fn require_recent_authentication(
        &self,
        claims: &AccessClaims,
        max_age: Duration,
    ) -> Result<(), ApiError> {
        let max_age = seconds(max_age);
        if self.now().saturating_sub(claims.auth_time) <= max_age {
            Ok(())
        } else {
            Err(ApiError::InsufficientUserAuthentication {
                max_age,
                second_factor: false,
            })
        }
    }

    /// As [`Auth::require_recent_authentication`], and that authentication
    /// used a second factor ([`AccessClaims::used_second_factor`]): what
    /// removing a factor or replacing its recovery codes asks for. The
    /// refusal's challenge names `acr_values="mfa"` (RFC 9470 §3).
    pub fn require_recent_second_factor(
        &self,
        claims: &AccessClaims,
        max_age: Duration,
    ) -> Result<(), ApiError> {
        let max_age = seconds(max_age);
        let recent = self.now().saturating_sub(claims.auth_time) <= max_age;
        if recent && claims.used_second_factor() {
            Ok(())
        } else {
            Err(ApiError::InsufficientUserAuthentication {
                max_age,
                second_factor: true,
            })
        }
    }
}
