//! `/sessions`: the caller's active sessions, and revoking one or all of them.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Event};
use crate::auth::extract::{Authenticated, ClientInfo};
use crate::clock::rfc3339;
use crate::error::{ApiError, ErrorBody};
use crate::routes::openapi::BearerRefusals;
use crate::state::AppState;
use crate::store::Session;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, revoke_all))
        .routes(routes!(revoke_one))
}

/// One active session of the caller.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionView {
    id: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    last_used_at: String,
    /// When the session ends unless used: the idle or the absolute expiry,
    /// whichever comes first.
    #[schema(format = DateTime)]
    expires_at: String,
    #[schema(required = true)]
    user_agent: Option<String>,
    /// The client address seen at sign-in.
    #[schema(required = true)]
    ip: Option<String>,
    /// True for the session of the access token making this request.
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

/// The caller's active sessions.
#[utoipa::path(
    get, path = "/sessions", tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Active sessions of the token's user", body = [SessionView],
            links(("revoke_first" = (
                operation_id = "revoke_one",
                parameters(("id" = "$response.body#/0/id")),
                description = "Revoke the first session listed",
            )))),
        BearerRefusals,
    )
)]
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

/// Revokes one of the caller's sessions.
#[utoipa::path(
    delete, path = "/sessions/{id}", tag = "sessions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "A session id from `GET /sessions`", min_length = 1)),
    responses(
        (status = 204, description = "Revoked"),
        BearerRefusals,
        (status = 404, description = "`not_found`: no live session of the caller has this id", body = ErrorBody),
    )
)]
async fn revoke_one(
    State(state): State<AppState>,
    auth: Authenticated,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id?;
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

/// Revokes every session of the caller ("log out everywhere").
#[utoipa::path(
    delete, path = "/sessions", tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every session of the caller is revoked"),
        BearerRefusals,
    )
)]
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
