//! Exchanging the refresh cookie for a new access token and rotating it
//! (README, "Rotation rules"). The single source of truth is the session
//! row; see `Sessions::rotate_session` in the store.

use crate::auth::keys::key_set::KeySet;
use crate::auth::keys::tokens::RefreshClaims;
use crate::auth::metrics::RefreshOutcome;
use crate::auth::second_factor::proves_second_factor;
use crate::auth::{ApiError, Auth, BrowserCookies, ClientInfo, Issued, Presented, SetCookies};
use crate::clock::seconds;
use crate::store::RevokeReason;
use crate::store::{IdleTimeouts, Rotated, Session, StoreError, User};

/// A refused refresh: the error, and the cookies to send with it (the
/// clearing cookie when the presented one can never work again).
#[derive(Debug)]
pub struct Refused {
    /// Why.
    pub error: ApiError,
    /// Empty, or the cookie that makes the browser forget its refresh token.
    pub cookies: SetCookies,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            cookies: SetCookies::default(),
        }
    }
}

/// A refusal inside the rotation, with the outcome it counts as. Most
/// outcomes follow from the error; `expired` is said where it is known.
struct RotationRefusal {
    error: ApiError,
    outcome: RefreshOutcome,
}

impl RotationRefusal {
    fn expired() -> Self {
        Self {
            error: ApiError::InvalidRefreshToken,
            outcome: RefreshOutcome::Expired,
        }
    }
}

impl From<ApiError> for RotationRefusal {
    fn from(error: ApiError) -> Self {
        let outcome = match error {
            ApiError::InvalidRefreshToken => RefreshOutcome::Invalid,
            ApiError::RefreshTokenReused => RefreshOutcome::Reused,
            ApiError::MissingRefreshToken => RefreshOutcome::Missing,
            _ => RefreshOutcome::Error,
        };
        Self { error, outcome }
    }
}

impl From<StoreError> for Refused {
    fn from(error: StoreError) -> Self {
        ApiError::from(error).into()
    }
}

impl From<StoreError> for RotationRefusal {
    fn from(error: StoreError) -> Self {
        ApiError::from(error).into()
    }
}

impl Auth {
    /// Trades the refresh cookie for a new access token and a rotated
    /// cookie. Any refusal but a missing cookie or a failing store also
    /// clears the cookie: it is useless from then on.
    pub async fn refresh(
        &self,
        cookies: &BrowserCookies,
        client: &ClientInfo,
    ) -> Result<Issued, Refused> {
        let rotated = match &cookies.refresh {
            Presented::None => Err(ApiError::MissingRefreshToken.into()),
            // No telling which of several is genuine, so none is trusted.
            Presented::Ambiguous(_) => Err(ApiError::InvalidRefreshToken.into()),
            Presented::One(token) => self.rotate(token, client).await,
        };
        match rotated {
            Ok((issued, outcome)) => {
                self.metrics().refresh(outcome);
                Ok(issued)
            }
            Err(RotationRefusal { error, outcome }) => {
                self.metrics().refresh(outcome);
                Err(match error {
                    e @ (ApiError::InvalidRefreshToken | ApiError::RefreshTokenReused) => {
                        self.clearing(e)
                    }
                    e => e.into(),
                })
            }
        }
    }

    fn clearing(&self, error: ApiError) -> Refused {
        Refused {
            error,
            cookies: self.clearing_cookies(),
        }
    }

    /// Rotation rules 1–4 (README, "Rotation rules"), and which it was.
    async fn rotate(
        &self,
        token: &str,
        client: &ClientInfo,
    ) -> Result<(Issued, RefreshOutcome), RotationRefusal> {
        let now = self.now();
        let claims = self
            .token_keys()
            .verify_refresh(token)
            .map_err(|_| ApiError::InvalidRefreshToken)?;
        // A genuine session id, so the limiter keeps only real sessions. A
        // copy of an older token still ends the session (rule 3) when the
        // limit refuses: someone keeping a stolen session busy must not
        // shelter it from its owner's next refresh.
        if let Err(retry_after) = self.inner.refresh_limit.check(&claims.sid, now) {
            let session = self.store().session(&claims.sid).await?;
            if !session.is_some_and(|s| self.is_copy(&claims, &s, now)) {
                return Err(RotationRefusal {
                    error: ApiError::TooManyAttempts { retry_after },
                    outcome: RefreshOutcome::Throttled,
                });
            }
        }
        let idle = self.idle_timeouts();
        // Before the chain moves: a rotation that commits must be able to sign.
        let access_keys = self.signing_access_keys(now).await?;
        // A token past its own `exp` is never exchanged (RFC 7519 §4.1.4). It
        // is still read below: an expired *older* token of a live session is
        // a stolen copy like any other, and revokes it.
        let unexpired = claims.exp > now;

        // Rule 1: the current token advances the chain, atomically.
        if unexpired
            && let Some(Rotated { session, user }) = self
                .store()
                .rotate_session(&claims.sid, claims.generation, now, idle)
                .await?
        {
            if user.disabled_at.is_some() {
                return Err(ApiError::InvalidRefreshToken.into());
            }
            self.require_factor_of_role(&session, &user, client).await?;
            let issued = self.issue(&access_keys, &session, &user, now)?;
            return Ok((issued, RefreshOutcome::Rotated));
        }

        // The compare-and-set lost: find out why from the session as it is now.
        let Some(session) = self.store().session(&claims.sid).await? else {
            return Err(ApiError::InvalidRefreshToken.into());
        };
        if !session.is_live(now) {
            return Err(match session.revoked_at {
                None => RotationRefusal::expired(),
                Some(_) => ApiError::InvalidRefreshToken.into(),
            });
        }
        if claims.generation > session.generation {
            return Err(ApiError::InvalidRefreshToken.into());
        }
        let previous = claims.generation + 1 == session.generation;
        let in_grace = now - session.rotated_at < seconds(self.config().tokens.reuse_grace);
        if previous && in_grace && !unexpired {
            return Err(RotationRefusal::expired());
        }
        if previous && in_grace {
            // Rule 2 (and rule 4's losers): hand back the current token unchanged.
            let user = self.live_user(&session).await?;
            self.require_factor_of_role(&session, &user, client).await?;
            let issued = self.issue(&access_keys, &session, &user, now)?;
            return Ok((issued, RefreshOutcome::Grace));
        }
        if claims.generation < session.generation {
            // Rule 3: an old token came back, so someone kept a copy. End it
            // all. Of several copies presented at once, only the one that
            // revoked the session records the event.
            let reason = RevokeReason::RefreshTokenReused;
            let revoked = self
                .store()
                .revoke_session(&session.id, None, reason, now)
                .await?;
            if !revoked {
                return Err(ApiError::RefreshTokenReused.into());
            }
            self.sessions_ended(reason, 1, client, |event| {
                event
                    .user_id(session.user_id)
                    .session(&session.id)
                    .detail(format!(
                        "presented generation {} of {}",
                        claims.generation, session.generation
                    ))
            })
            .await;
            return Err(ApiError::RefreshTokenReused.into());
        }
        // The current generation, but the update did not apply: the token ran
        // out, or the session ended or its credentials changed meanwhile.
        if unexpired {
            Err(ApiError::InvalidRefreshToken.into())
        } else {
            Err(RotationRefusal::expired())
        }
    }

    /// Ends a session signed in with a password alone whose user's role
    /// requires a second factor (`SECOND_FACTOR_REQUIRED_ROLES`; README,
    /// "Second factor"): one from before the setting. Its user signs in
    /// again, and sets a factor up there.
    async fn require_factor_of_role(
        &self,
        session: &Session,
        user: &User,
        client: &ClientInfo,
    ) -> Result<(), RotationRefusal> {
        let required = self.config().accounts.second_factor_required(&user.role);
        if !required || proves_second_factor(session.amr.split_whitespace()) {
            return Ok(());
        }
        let reason = RevokeReason::SecondFactorRequired;
        if self
            .store()
            .revoke_session(&session.id, None, reason, self.now())
            .await?
        {
            self.sessions_ended(reason, 1, client, |event| {
                event.user(user.id, &user.username).session(&session.id)
            })
            .await;
        }
        Err(ApiError::InvalidRefreshToken.into())
    }

    /// Rule 3's test: `claims` name a live session at an older generation
    /// than its current one, and not the one just rotated away within the
    /// grace window.
    fn is_copy(&self, claims: &RefreshClaims, session: &Session, now: i64) -> bool {
        let grace = seconds(self.config().tokens.reuse_grace);
        let previous_in_grace =
            claims.generation + 1 == session.generation && now - session.rotated_at < grace;
        session.is_live(now) && claims.generation < session.generation && !previous_in_grace
    }

    async fn live_user(&self, session: &Session) -> Result<User, ApiError> {
        match self.store().user_by_id(session.user_id).await? {
            Some(user)
                if user.disabled_at.is_none()
                    && user.credentials_version == session.credentials_version =>
            {
                Ok(user)
            }
            _ => Err(ApiError::InvalidRefreshToken),
        }
    }

    /// How long a session may go unused, remembered or not (README, "How
    /// sessions work").
    pub(crate) fn idle_timeouts(&self) -> IdleTimeouts {
        let tokens = &self.config().tokens;
        IdleTimeouts {
            remembered: seconds(tokens.refresh_ttl),
            not_remembered: seconds(tokens.refresh_ttl_not_remembered),
        }
    }

    /// The tokens of a session at its current chain position, and its
    /// refresh cookie: living as long as the session's idle expiry, or, for
    /// a session not remembered, as long as the browser runs.
    pub(crate) fn issue(
        &self,
        access_keys: &KeySet,
        session: &Session,
        user: &User,
        now: i64,
    ) -> Result<Issued, ApiError> {
        let mut issued = self.issue_access(access_keys, session, user, now)?;
        let refresh_token = self
            .token_keys()
            .issue_refresh(session)
            .map_err(ApiError::Internal)?;
        let max_age = session.remember.then(|| session.idle_expires_at - now);
        let cookie = self.cookie_policy().set(refresh_token, max_age);
        issued.cookies = SetCookies(vec![cookie]);
        Ok(issued)
    }

    /// A session's access token alone, the refresh cookie unchanged, signed
    /// by `access_keys` ([`Auth::signing_access_keys`], taken before the
    /// store was written).
    pub(crate) fn issue_access(
        &self,
        access_keys: &KeySet,
        session: &Session,
        user: &User,
        now: i64,
    ) -> Result<Issued, ApiError> {
        let keys = self.token_keys();
        let access_token = keys
            .issue_access(access_keys, user, session, now)
            .map_err(ApiError::Internal)?;
        Ok(Issued {
            access_token,
            expires_in: keys.access_ttl(),
            cookies: SetCookies::default(),
        })
    }
}
