//! `POST /reauthenticate`: the password again, for the token's session
//! (README, "Step-up: a recent password").

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{ApiError, Auth, BrowserCookies, ClientInfo, Issued, SecondFactorProof};
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
    /// With a second factor on: a six-digit code from the authenticator app
    /// (README, "Second factor").
    #[schema(examples("123456"), max_length = 16)]
    code: Option<String>,
    /// With a second factor on, instead of `code`: a recovery code.
    #[schema(max_length = 32)]
    recovery_code: Option<String>,
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
            challenge: the token was fine); `second_factor_required`: the account has a second \
            factor and no code or recovery code came; `invalid_code`: it was wrong or used; or `unauthenticated` (no token) or `invalid_token` \
            (bad or expired, or its session no longer live), each with its `WWW-Authenticate` \
            challenge as on every Bearer endpoint", body = ErrorBody),
        (status = 403, description = "`second_factor_locked`: 100 wrong codes in a row for the \
            account, so codes are no longer checked (a recovery code still is)",
            body = ErrorBody),
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
    let given = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
    let (code, recovery_code) = (given(&body.code), given(&body.recovery_code));
    let proof = match (&code, &recovery_code) {
        (Some(code), _) => Some(SecondFactorProof::Code(code)),
        (None, Some(code)) => Some(SecondFactorProof::RecoveryCode(code)),
        (None, None) => None,
    };
    auth.reauthenticate(&token, &body.password, proof, &cookies.devices, &client)
        .await
}
