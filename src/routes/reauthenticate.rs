//! `POST /reauthenticate`: the password again, for the token's session
//! (README, "Step-up: a recent password").

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{ApiError, Auth, BrowserCookies, ClientInfo, Issued};
use crate::routes::error::ErrorBody;
use crate::routes::extract::LiveSession;
use crate::routes::openapi::BodyRefusals;
use crate::routes::respond::TokenBody;

pub(crate) fn router() -> OpenApiRouter<Auth> {
    OpenApiRouter::new().routes(routes!(reauthenticate))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct Reauthentication {
    /// The account's password.
    #[schema(min_length = 1, examples("correct horse battery"))]
    password: String,
}

/// Checks the caller's password again. Admitted and throttled exactly as a
/// login (the device cookie counts too). Answers a fresh access token whose
/// `auth_time` is now; its session's later tokens carry the same
/// `auth_time`. The refresh cookie does not change.
#[utoipa::path(
    post, path = "/reauthenticate", tag = "account",
    security(("bearer" = [])),
    request_body(content = Reauthentication, content_type = "application/json"),
    responses(
        (status = 200, description = "The password is right: a fresh access token", body = TokenBody),
        (status = 400, description = "`invalid_request`: a missing or malformed field, or more \
            than one `Authorization` header", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`: the password is wrong (no \
            challenge: the token was fine); or `unauthenticated` (no token) or `invalid_token` \
            (bad or expired, or its session no longer live), each with its `WWW-Authenticate` \
            challenge as on every Bearer endpoint", body = ErrorBody),
        BodyRefusals,
        (status = 429, description = "`too_many_attempts` for this account or address",
            body = ErrorBody, headers(("retry-after" = String))),
        (status = 503, description = "`server_busy`: too many password checks in flight for \
            this address or account, or the hashing queue is full", body = ErrorBody,
            headers(("retry-after" = String))),
    )
)]
async fn reauthenticate(
    State(auth): State<Auth>,
    LiveSession(token): LiveSession,
    client: ClientInfo,
    cookies: BrowserCookies,
    body: Result<Json<Reauthentication>, JsonRejection>,
) -> Result<Issued, ApiError> {
    let Json(body) = body?;
    auth.reauthenticate(&token, &body.password, &cookies.devices, &client)
        .await
}
