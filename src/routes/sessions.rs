//! `/sessions`: the caller's active sessions, and revoking one or all of them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Serialize;

use crate::audit::{self, Event};
use crate::auth::extract::{Authenticated, ClientInfo};
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Session;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/sessions", get(list).delete(revoke_all))
        .route("/sessions/{id}", delete(revoke_one))
}

#[derive(Debug, Serialize)]
struct SessionView {
    id: String,
    created_at: String,
    last_used_at: String,
    expires_at: String,
    user_agent: Option<String>,
    ip: Option<String>,
    current: bool,
}

impl SessionView {
    fn new(s: Session, current_sid: &str) -> Self {
        Self {
            current: s.id == current_sid,
            created_at: rfc3339(s.created_at),
            last_used_at: rfc3339(s.last_used_at),
            // The session ends at whichever comes first.
            expires_at: rfc3339(s.idle_expires_at.min(s.absolute_expires_at)),
            id: s.id,
            user_agent: s.user_agent,
            ip: s.ip,
        }
    }
}

async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let sessions = state
        .store
        .active_sessions(auth.user_id()?, state.clock.now())
        .await?;
    Ok(Json(
        sessions
            .into_iter()
            .map(|s| SessionView::new(s, &auth.0.sid))
            .collect(),
    ))
}

async fn revoke_one(
    State(state): State<AppState>,
    auth: Authenticated,
    client: ClientInfo,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user_id = auth.user_id()?;
    let revoked = state
        .store
        .revoke_session(&id, Some(user_id), "revoked_by_user", state.clock.now())
        .await?;
    if !revoked {
        return Err(ApiError::NotFound);
    }
    audit::record(
        &state,
        Event::new("session_revoked", &client)
            .user(user_id, &auth.0.username)
            .session(&id),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke_all(
    State(state): State<AppState>,
    auth: Authenticated,
    client: ClientInfo,
) -> Result<StatusCode, ApiError> {
    let user_id = auth.user_id()?;
    let count = state
        .store
        .revoke_user_sessions(user_id, None, "revoked_everywhere", state.clock.now())
        .await?;
    audit::record(
        &state,
        Event::new("sessions_revoked_all", &client)
            .user(user_id, &auth.0.username)
            .session(&auth.0.sid)
            .detail(format!("{count} sessions")),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
