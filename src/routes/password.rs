//! `POST /password`: change the password with the current one. Every other
//! session of the user ends; the one making the change stays signed in.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Event};
use crate::auth::credentials::{self, check_password_strength};
use crate::auth::extract::{Authenticated, ClientInfo};
use crate::auth::password_policy::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
use crate::error::{ApiError, ErrorBody};
use crate::routes::openapi::{BearerRefusals, BodyRefusals};
use crate::state::AppState;
use crate::store::PasswordChange as StorePasswordChange;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(change_password))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct PasswordChange {
    current_password: String,
    /// 8 to 256 characters of any script, counted as Unicode code points both
    /// as sent and after NFKC normalisation, and not one of the 10,000 most
    /// common passwords (compared case-insensitively), as for `POST /register`;
    /// otherwise `422 weak_password`. Normalisation can shorten a password, so
    /// one within these bounds may still be refused.
    #[schema(min_length = 8, max_length = 256)]
    new_password: String,
}

/// Changes the caller's password. Every other session of the user is
/// revoked; the one making the change stays signed in.
#[utoipa::path(
    post, path = "/password", tag = "account",
    security(("bearer" = [])),
    request_body(content = PasswordChange, content_type = "application/json"),
    responses(
        (status = 204, description = "Changed; the other sessions are revoked"),
        BearerRefusals,
        (status = 403, description = "`wrong_current_password`", body = ErrorBody),
        BodyRefusals,
        (status = 422, description = format!("`weak_password`: the new password is under \
            {MIN_PASSWORD_CHARS} or over {MAX_PASSWORD_CHARS} characters (as sent or after NFKC \
            normalisation), or one of the most common passwords; the message says which"),
            body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many wrong current passwords",
            body = ErrorBody,
            headers(("retry-after" = String))),
        (status = 503, description = "`server_busy`: too many password checks in flight for \
            this address or account, or the hashing queue is full", body = ErrorBody,
            headers(("retry-after" = String))),
    )
)]
async fn change_password(
    State(state): State<AppState>,
    auth: Authenticated,
    client: ClientInfo,
    headers: HeaderMap,
    body: Result<Json<PasswordChange>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(change) = body?;
    let user_id = auth.user_id()?;
    let user = match state.store.user_by_id(user_id).await? {
        Some(u) if u.disabled_at.is_none() => u,
        _ => return Err(ApiError::InvalidToken),
    };
    // A stolen access token must not become a way to guess the password: the
    // check is admitted, counted and settled exactly as a login's.
    let devices = state.cookies.devices(&headers);
    let verified =
        credentials::recheck(&state, &user, &change.current_password, &client, &devices).await?;
    if !verified {
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
        .map_err(ApiError::from_hashing)?;
    // Applied only over the hash just verified, with the other sessions
    // revoked in the same transaction: a concurrent change or login cannot
    // slip between the check and the change.
    let ended = state
        .store
        .change_password(StorePasswordChange {
            user_id: user.id,
            verified_hash: &user.password_hash,
            new_hash: &hash,
            keep_session: Some(&auth.0.sid),
            now: state.clock.now(),
        })
        .await?
        .ok_or(ApiError::WrongCurrentPassword)?;
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
