//! The session lifecycle: start one at login, rotate its refresh token at
//! `/token` (with the grace path and reuse detection of API.md), end it at
//! logout. The single source of truth is the session row; see `Store::rotate_session`.

use crate::audit::{self, Event};
use crate::auth::credentials::Verified;
use crate::auth::extract::ClientInfo;
use crate::error::ApiError;
use crate::random;
use crate::state::AppState;
use crate::store::{NewSession, Rotated, Session, User};

/// What a successful login or refresh hands back to the client.
#[derive(Debug)]
pub struct Issued {
    pub session: Session,
    pub user: User,
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds the refresh cookie should live.
    pub refresh_max_age: i64,
    /// A new device cookie's value, after a login (see `auth::throttle`).
    pub device_token: Option<String>,
}

/// Starts a session for credentials just verified. It is created only if
/// they are still the user's: a password change or a disable that won the
/// race since the check leaves this login with `401` and no session.
pub async fn start(
    state: &AppState,
    verified: Verified,
    client: &ClientInfo,
) -> Result<Issued, ApiError> {
    let Verified { user, device } = verified;
    let now = state.clock.now();
    let config = &state.config;
    let absolute_expires_at = now + config.session_max_lifetime;
    let created = state
        .store
        .create_session(
            NewSession {
                id: random::session_id(),
                user_id: user.id,
                credentials_version: user.credentials_version,
                now,
                idle_expires_at: (now + config.jwt_refresh_expiration).min(absolute_expires_at),
                absolute_expires_at,
                user_agent: client.user_agent.clone(),
                ip: client.ip.clone(),
            },
            config.max_sessions_per_user,
        )
        .await?;
    let Some(created) = created else {
        audit::record(
            state,
            Event::new("login_failed", client)
                .user(user.id, &user.username)
                .detail("credentials changed during the login"),
        )
        .await;
        return Err(ApiError::InvalidCredentials);
    };
    let session = created.session;
    audit::record(
        state,
        Event::new("login_succeeded", client)
            .user(user.id, &user.username)
            .session(&session.id),
    )
    .await;
    for evicted in &created.evicted {
        audit::record(
            state,
            Event::new("session_evicted", client)
                .user(user.id, &user.username)
                .session(evicted)
                .detail(format!(
                    "more than {} sessions; least recently used ended",
                    config.max_sessions_per_user
                )),
        )
        .await;
    }
    let device_token = state
        .keys
        .issue_device(user.id, &device, now)
        .map_err(ApiError::Internal)?;
    let mut issued = issue(state, session, user, now)?;
    issued.device_token = Some(device_token);
    Ok(issued)
}

/// Rotation, API.md rules 1–4. Any refusal means the cookie is useless.
pub async fn refresh(
    state: &AppState,
    token: &str,
    client: &ClientInfo,
) -> Result<Issued, ApiError> {
    let now = state.clock.now();
    let claims = state
        .keys
        .verify_refresh(token)
        .map_err(|_| ApiError::InvalidRefreshToken)?;
    let ttl = state.config.jwt_refresh_expiration;
    // A token past its own `exp` is never exchanged (RFC 7519 §4.1.4). It is
    // still read below: an expired *older* token of a live session is a
    // stolen copy like any other, and revokes it.
    let unexpired = claims.exp > now;

    // Rule 1: the current token advances the chain, atomically.
    if unexpired
        && let Some(Rotated { session, user }) = state
            .store
            .rotate_session(&claims.sid, claims.generation, now, ttl)
            .await?
    {
        if user.disabled_at.is_some() {
            return Err(ApiError::InvalidRefreshToken);
        }
        return issue(state, session, user, now);
    }

    // The compare-and-set lost: find out why from the session as it is now.
    let Some(session) = state.store.session(&claims.sid).await? else {
        return Err(ApiError::InvalidRefreshToken);
    };
    if !session.is_live(now) || claims.generation > session.generation {
        return Err(ApiError::InvalidRefreshToken);
    }
    let previous = claims.generation + 1 == session.generation;
    let in_grace = now - session.rotated_at < state.config.refresh_reuse_grace;
    if previous && in_grace && !unexpired {
        return Err(ApiError::InvalidRefreshToken);
    }
    if previous && in_grace {
        // Rule 2 (and rule 4's losers): hand back the current token unchanged.
        let user = live_user(state, &session).await?;
        return issue(state, session, user, now);
    }
    if claims.generation < session.generation {
        // Rule 3: an old token came back, so someone kept a copy. End it all.
        // Of several copies presented at once, only the one that revoked the
        // session records the event.
        let revoked = state
            .store
            .revoke_session(&session.id, None, "refresh_token_reused", now)
            .await?;
        if !revoked {
            return Err(ApiError::RefreshTokenReused);
        }
        audit::record(
            state,
            Event::new("refresh_token_reused", client)
                .user_id(session.user_id)
                .session(&session.id)
                .detail(format!(
                    "presented generation {} of {}",
                    claims.generation, session.generation
                )),
        )
        .await;
        return Err(ApiError::RefreshTokenReused);
    }
    // Same generation but the update did not apply: the session ended meanwhile.
    Err(ApiError::InvalidRefreshToken)
}

/// Ends the session a refresh token belongs to, if the token is genuine.
/// Expired or superseded tokens still end their session: logging out must
/// never be harder than staying in. Of several cookies, each genuine one
/// ends its session (`routes/logout.rs`).
pub async fn end(
    state: &AppState,
    token: &str,
    reason: &str,
    client: &ClientInfo,
) -> Result<(), ApiError> {
    let Ok(claims) = state.keys.verify_refresh(token) else {
        return Ok(());
    };
    let now = state.clock.now();
    if state
        .store
        .revoke_session(&claims.sid, None, reason, now)
        .await?
    {
        let user_id = claims.sub.parse().ok();
        let mut event = Event::new(reason, client).session(&claims.sid);
        if let Some(id) = user_id {
            event = event.user_id(id);
        }
        audit::record(state, event).await;
    }
    Ok(())
}

async fn live_user(state: &AppState, session: &Session) -> Result<User, ApiError> {
    match state.store.user_by_id(session.user_id).await? {
        Some(user)
            if user.disabled_at.is_none()
                && user.credentials_version == session.credentials_version =>
        {
            Ok(user)
        }
        _ => Err(ApiError::InvalidRefreshToken),
    }
}

fn issue(state: &AppState, session: Session, user: User, now: i64) -> Result<Issued, ApiError> {
    let access_token = state
        .keys
        .issue_access(&user, &session.id, now)
        .map_err(ApiError::Internal)?;
    let refresh_token = state
        .keys
        .issue_refresh(&session)
        .map_err(ApiError::Internal)?;
    Ok(Issued {
        device_token: None,
        refresh_max_age: session.idle_expires_at - now,
        session,
        user,
        access_token,
        refresh_token,
    })
}
