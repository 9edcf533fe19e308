//! Live checks on account actions (README, "How sessions work"): an access
//! token is stateless and outlives a logout or revocation by up to
//! `JWT_EXPIRATION`, which is fine for reading (`/protected`) but not for
//! acting on the account. Every account action therefore takes a
//! [`LiveToken`], which only [`Auth::live_session`] makes: one primary-key
//! lookup of the token's session.

use crate::auth::{AccessClaims, ApiError, Auth};
use crate::store::{Session, User};

/// An access token whose session was live when it was checked: not logged
/// out, revoked, evicted or expired, and its user not deleted.
#[derive(Debug, Clone)]
pub struct LiveToken {
    claims: AccessClaims,
    session: Session,
}

impl LiveToken {
    /// The token's claims.
    pub fn claims(&self) -> &AccessClaims {
        &self.claims
    }

    /// The token's session, as it was when checked.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The token's user.
    pub fn user_id(&self) -> i64 {
        self.session.user_id
    }
}

impl Auth {
    /// The token's session, if it is still live: the check every account
    /// action makes (`401 invalid_token` otherwise).
    pub async fn live_session(&self, claims: AccessClaims) -> Result<LiveToken, ApiError> {
        let user_id = claims.user_id()?;
        match self.store().session(&claims.sid).await? {
            Some(session) if session.is_live(self.now()) && session.user_id == user_id => {
                Ok(LiveToken { claims, session })
            }
            _ => Err(ApiError::InvalidToken),
        }
    }

    /// The account a live token belongs to, as stored now.
    pub async fn account(&self, token: &LiveToken) -> Result<User, ApiError> {
        self.store()
            .user_by_id(token.user_id())
            .await?
            // Erased since the session was checked: no longer live.
            .ok_or(ApiError::InvalidToken)
    }
}
