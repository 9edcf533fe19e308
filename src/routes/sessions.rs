//! `/sessions`: the caller's active sessions, and revoking one or all of them.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{ApiError, Auth, ClientInfo};
use crate::clock::rfc3339;
use crate::routes::error::ErrorBody;
use crate::routes::extract::LiveSession;
use crate::routes::openapi::LiveBearerRefusals;
use crate::store::Session;

pub(crate) fn router() -> OpenApiRouter<Auth> {
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
    /// Signed in with "Keep me signed in": the refresh cookie outlives the
    /// browser. False: it is a session cookie, and the session ends after
    /// `SESSION_IDLE_TIMEOUT_NO_REMEMBER` unused.
    remembered: bool,
}

impl SessionView {
    fn new(s: Session, current_sid: &str) -> Self {
        Self {
            current: s.id == current_sid,
            created_at: rfc3339(s.created_at),
            last_used_at: rfc3339(s.last_used_at),
            // The session ends at whichever comes first.
            expires_at: rfc3339(s.expires_at()),
            remembered: s.remember,
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
        LiveBearerRefusals,
    )
)]
async fn list(
    State(auth): State<Auth>,
    LiveSession(token): LiveSession,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let sessions = auth.sessions(&token).await?;
    Ok(Json(
        sessions
            .into_iter()
            .map(|s| SessionView::new(s, &token.session().id))
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
        LiveBearerRefusals,
        (status = 404, description = "`not_found`: no live session of the caller has this id", body = ErrorBody),
    )
)]
async fn revoke_one(
    State(auth): State<Auth>,
    LiveSession(token): LiveSession,
    client: ClientInfo,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id?;
    auth.revoke_session(&token, &id, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes every session of the caller ("log out everywhere").
#[utoipa::path(
    delete, path = "/sessions", tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every session of the caller is revoked"),
        LiveBearerRefusals,
    )
)]
async fn revoke_all(
    State(auth): State<Auth>,
    LiveSession(token): LiveSession,
    client: ClientInfo,
) -> Result<StatusCode, ApiError> {
    auth.revoke_all_sessions(&token, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}
