//! The account's second factor (README, "Second factor"): `POST /me/totp`
//! starts a TOTP enrolment, `POST /me/totp/confirm` turns it on with a code,
//! `DELETE /me/totp` removes it, `POST /me/recovery-codes` replaces the
//! recovery codes. The sign-in's second step is `POST /login/second-factor`
//! (`login.rs`).

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{ApiError, Auth, ClientInfo, TotpEnrolment};
use crate::routes::error::ErrorBody;
use crate::routes::extract::LiveSession;
use crate::routes::openapi::BodyRefusals;

pub(crate) fn router() -> OpenApiRouter<Auth> {
    OpenApiRouter::new()
        .routes(routes!(enroll, remove))
        .routes(routes!(confirm))
        .routes(routes!(recovery_codes))
}

/// A pending enrolment, for the authenticator app.
#[derive(Serialize, ToSchema)]
pub struct Enrolment {
    /// The secret in base32, for typing into the app.
    #[schema(examples("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"))]
    secret: String,
    /// `otpauth://totp/latchkey:ann?secret=…&issuer=latchkey`, for a QR code.
    otpauth_uri: String,
    /// That URI as a QR code: an SVG document, drawn here so that no page
    /// needs a script of someone else's (`/app` shows it as an image).
    qr_svg: String,
}

// The secret stays out of logs.
impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Enrolment(…)")
    }
}

impl From<TotpEnrolment> for Enrolment {
    fn from(enrolment: TotpEnrolment) -> Self {
        Self {
            qr_svg: qr_svg(&enrolment.otpauth_uri),
            secret: enrolment.secret,
            otpauth_uri: enrolment.otpauth_uri,
        }
    }
}

impl Enrolment {
    /// The secret, for a page to show beside the QR code.
    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }

    /// The QR code, an SVG document.
    pub(crate) fn qr_svg(&self) -> &str {
        &self.qr_svg
    }
}

/// `uri` as a QR code in SVG; empty if it cannot be one (it always can: an
/// otpauth URI is far below a QR code's capacity).
fn qr_svg(uri: &str) -> String {
    match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build(),
        Err(_) => String::new(),
    }
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct Code {
    /// A six-digit code from the app.
    #[schema(examples("123456"), max_length = 16)]
    code: String,
}

/// Recovery codes: shown this once, each works once.
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    #[schema(examples(json!(["abcde-fghij", "klmno-pqrst"])))]
    recovery_codes: Vec<String>,
}

/// Starts a TOTP enrolment: a new secret, pending until
/// `POST /me/totp/confirm`. Needs a password checked within
/// `REAUTH_MAX_AGE` seconds.
#[utoipa::path(
    post, path = "/me/totp", tag = "account", operation_id = "enroll_totp",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Pending: the secret and its URI", body = Enrolment),
        (status = 400, description = "`invalid_request`: a second factor is already on, or more \
            than one `Authorization` header", body = ErrorBody),
        (status = 401, description = "`unauthenticated`, `invalid_token`, or \
            `insufficient_user_authentication` (RFC 9470 §3; `POST /reauthenticate` answers it)",
            body = ErrorBody, headers(("www-authenticate" = String))),
    )
)]
async fn enroll(
    State(auth): State<Auth>,
    LiveSession(token): LiveSession,
) -> Result<Json<Enrolment>, ApiError> {
    auth.require_recent_authentication(token.claims(), auth.config().tokens.reauth_max_age)?;
    Ok(Json(auth.enroll_totp(&token).await?.into()))
}

/// Turns the pending TOTP factor on with a current code; answers ten
/// recovery codes, shown this once.
#[utoipa::path(
    post, path = "/me/totp/confirm", tag = "account", operation_id = "confirm_totp",
    security(("bearer" = [])),
    request_body(content = Code, content_type = "application/json"),
    responses(
        (status = 200, description = "On: the recovery codes", body = RecoveryCodes),
        (status = 400, description = "`invalid_request`: nothing pending, a malformed body, or \
            more than one `Authorization` header", body = ErrorBody),
        (status = 401, description = "`invalid_code`: not the current code; or `unauthenticated` \
            or `invalid_token`", body = ErrorBody),
        BodyRefusals,
        (status = 429, description = "`too_many_attempts`: too many codes for this account",
            body = ErrorBody, headers(("retry-after" = String))),
    )
)]
async fn confirm(
    State(auth): State<Auth>,
    LiveSession(token): LiveSession,
    client: ClientInfo,
    body: Result<Json<Code>, JsonRejection>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let Json(body) = body?;
    let recovery_codes = auth.confirm_totp(&token, &body.code, &client).await?;
    Ok(Json(RecoveryCodes { recovery_codes }))
}

/// Removes the second factor and its recovery codes. Needs a recent
/// authentication that used the second factor (`POST /reauthenticate` with a
/// code).
#[utoipa::path(
    delete, path = "/me/totp", tag = "account", operation_id = "remove_totp",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "`invalid_request`: more than one `Authorization` header",
            body = ErrorBody),
        (status = 401, description = "`unauthenticated`, `invalid_token`, or \
            `insufficient_user_authentication`: the last authentication is too old or used no \
            second factor", body = ErrorBody, headers(("www-authenticate" = String))),
        (status = 404, description = "`not_found`: no second factor is on", body = ErrorBody),
    )
)]
async fn remove(
    State(auth): State<Auth>,
    LiveSession(token): LiveSession,
    client: ClientInfo,
) -> Result<StatusCode, ApiError> {
    auth.require_recent_second_factor(token.claims(), auth.config().tokens.reauth_max_age)?;
    auth.remove_totp(&token, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ten new recovery codes in place of the old. Needs a recent
/// authentication that used the second factor.
#[utoipa::path(
    post, path = "/me/recovery-codes", tag = "account", operation_id = "new_recovery_codes",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new codes; the old work no more", body = RecoveryCodes),
        (status = 400, description = "`invalid_request`: more than one `Authorization` header",
            body = ErrorBody),
        (status = 401, description = "`unauthenticated`, `invalid_token`, or \
            `insufficient_user_authentication`: the last authentication is too old or used no \
            second factor", body = ErrorBody, headers(("www-authenticate" = String))),
        (status = 404, description = "`not_found`: no second factor is on", body = ErrorBody),
    )
)]
async fn recovery_codes(
    State(auth): State<Auth>,
    LiveSession(token): LiveSession,
) -> Result<Json<RecoveryCodes>, ApiError> {
    auth.require_recent_second_factor(token.claims(), auth.config().tokens.reauth_max_age)?;
    let recovery_codes = auth.new_recovery_codes(&token).await?;
    Ok(Json(RecoveryCodes { recovery_codes }))
}
