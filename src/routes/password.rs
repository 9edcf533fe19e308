//! `POST /password`: change the password with the current one. Every other
//! session of the user ends; the one making the change stays signed in.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use crate::audit::{self, Event};
use crate::auth::credentials::check_password_strength;
use crate::auth::extract::{Authenticated, ClientInfo};
use crate::auth::throttle;
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/password", post(change_password))
}

#[derive(Deserialize)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(state): State<AppState>,
    auth: Authenticated,
    client: ClientInfo,
    body: Result<Json<PasswordChange>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(change) = body?;
    let user_id = auth.user_id()?;
    let user = match state.store.user_by_id(user_id).await? {
        Some(u) if u.disabled_at.is_none() => u,
        _ => return Err(ApiError::InvalidToken),
    };
    // A stolen access token must not become a way to guess the password.
    let counters =
        throttle::login_counters(&state.config.throttle, &user.username, client.ip.as_deref());
    throttle::check(&state, &counters).await?;
    let verified = state
        .hasher
        .verify(&change.current_password, Some(&user.password_hash))
        .await
        .map_err(ApiError::Internal)?;
    if !verified {
        throttle::record_failure(&state, &counters).await?;
        audit::record(
            &state,
            Event::new("password_change_failed", &client).user(user.id, &user.username),
        )
        .await;
        return Err(ApiError::WrongCurrentPassword);
    }
    check_password_strength(&change.new_password)?;

    let hash = state
        .hasher
        .hash(&change.new_password)
        .await
        .map_err(ApiError::Internal)?;
    let now = state.clock.now();
    state.store.set_password_hash(user.id, &hash, now).await?;
    let ended = state
        .store
        .revoke_user_sessions(user.id, Some(&auth.0.sid), "password_changed", now)
        .await?;
    throttle::record_success(&state, &counters).await?;
    audit::record(
        &state,
        Event::new("password_changed", &client)
            .user(user.id, &user.username)
            .session(&auth.0.sid)
            .detail(format!("{ended} other sessions revoked")),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
