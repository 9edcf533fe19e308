//! `POST /password`: change the password with the current one. Every other
//! session of the user ends; the one making the change stays signed in.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::password::policy::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
use crate::auth::{ApiError, Auth, BrowserCookies, ClientInfo};
use crate::routes::error::ErrorBody;
use crate::routes::extract::LiveSession;
use crate::routes::openapi::{BodyRefusals, LiveBearerRefusals};

pub(crate) fn router() -> OpenApiRouter<Auth> {
    OpenApiRouter::new().routes(routes!(change_password))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct PasswordChange {
    current_password: String,
    #[schema(schema_with = new_password_schema)]
    new_password: String,
}

fn new_password_schema() -> utoipa::openapi::Object {
    crate::routes::register::password_schema(
        ", and not one of the 10,000 most\ncommon passwords (compared case-insensitively), as \
         for `POST /register`;\notherwise `422 weak_password`. Normalisation can shorten a \
         password, so\none within these bounds may still be refused.",
    )
    .build()
}

/// Changes the caller's password. Every other session of the user is
/// revoked; the one making the change stays signed in.
#[utoipa::path(
    post, path = "/password", tag = "account",
    security(("bearer" = [])),
    request_body(content = PasswordChange, content_type = "application/json"),
    responses(
        (status = 204, description = "Changed; the other sessions are revoked"),
        LiveBearerRefusals,
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
    State(auth): State<Auth>,
    LiveSession(token): LiveSession,
    client: ClientInfo,
    cookies: BrowserCookies,
    body: Result<Json<PasswordChange>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(change) = body?;
    auth.change_password(
        &token,
        &change.current_password,
        &change.new_password,
        &cookies.devices,
        &client,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
