//! Verified addresses (README, "Email addresses"): `PUT /me/email` asks to
//! change the account's address, `POST /me/email/verification` sends the
//! link again, `POST /email/verify` uses it, and its page. Routed only
//! while latchkey sends mail (`routes/mod.rs`).

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{ApiError, Auth, ClientInfo};
use crate::routes::body::JsonOrForm;
use crate::routes::error::ErrorBody;
use crate::routes::extract::{Base, LiveSession};
use crate::routes::openapi::BodyRefusals;
use crate::routes::origin::AllowedOrigin;
use crate::routes::pages::{form_message, refused, render};
use crate::routes::recovery::{Accepted, MAX_TOKEN_CHARS, within};

pub(crate) fn router() -> OpenApiRouter<Auth> {
    OpenApiRouter::new()
        .routes(routes!(change_email))
        .routes(routes!(resend_verification))
        .routes(routes!(verify_page, verify))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct NewEmail {
    /// The address to verify; it becomes the account's once its link is
    /// used. Otherwise `400 invalid_request`.
    #[schema(format = Email, max_length = 254, examples("ann@example.org"))]
    email: String,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct VerifyEmail {
    /// The token from the mailed link (its fragment's `token`).
    #[schema(min_length = 1, max_length = 128)]
    token: String,
}

#[derive(Template)]
#[template(path = "verify.html")]
struct VerifyPage<'a> {
    base: &'a str,
    done: bool,
    error: Option<&'a str>,
    token: &'a str,
}

/// Mails a link to `email`; the address becomes the account's (verified)
/// when the link is used, and the old one, if verified, is told. Needs a
/// password checked within `REAUTH_MAX_AGE` seconds (`auth_time`).
#[utoipa::path(
    put, path = "/me/email", tag = "account", operation_id = "change_email",
    security(("bearer" = [])),
    request_body(content = NewEmail, content_type = "application/json"),
    responses(
        (status = 202, description = "The link is on its way", body = Accepted),
        (status = 400, description = "`invalid_request`: not an address latchkey takes, or more \
            than one `Authorization` header", body = ErrorBody),
        (status = 401, description = "`unauthenticated`, `invalid_token` (bad or expired, or its \
            session no longer live), or `insufficient_user_authentication`: the password was \
            last checked more than `REAUTH_MAX_AGE` seconds ago (RFC 9470 §3; `POST \
            /reauthenticate` answers it)", body = ErrorBody, headers(("www-authenticate" = String))),
        BodyRefusals,
        (status = 429, description = "`too_many_attempts`: `MAIL_PER_HOUR` mails to this account \
            or address already", body = ErrorBody, headers(("retry-after" = String))),
    )
)]
async fn change_email(
    State(auth): State<Auth>,
    LiveSession(token): LiveSession,
    body: Result<Json<NewEmail>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    auth.require_recent_authentication(token.claims(), auth.config().tokens.reauth_max_age)?;
    let Json(new) = body?;
    auth.change_email(&token, &new.email).await?;
    Ok(accepted(
        "A link to confirm the address is on its way to it.",
    ))
}

/// Mails the link for the account's unverified address again.
#[utoipa::path(
    post, path = "/me/email/verification", tag = "account", operation_id = "resend_email_verification",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The link is on its way", body = Accepted),
        (status = 400, description = "`invalid_request`: the account has no address waiting to \
            be verified, or more than one `Authorization` header", body = ErrorBody),
        (status = 401, description = "`unauthenticated` or `invalid_token` (bad or expired, or \
            its session no longer live)", body = ErrorBody, headers(("www-authenticate" = String))),
        (status = 429, description = "`too_many_attempts`: `MAIL_PER_HOUR` mails to this account \
            or address already", body = ErrorBody, headers(("retry-after" = String))),
    )
)]
async fn resend_verification(
    State(auth): State<Auth>,
    LiveSession(token): LiveSession,
) -> Result<Response, ApiError> {
    auth.resend_verification(&token).await?;
    Ok(accepted(
        "A link to confirm the address is on its way to it.",
    ))
}

fn accepted(message: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            message: message.to_owned(),
        }),
    )
        .into_response()
}

/// The page the verification link opens. The token is in the link's
/// fragment, which no server sees; the page's script reads it into the form.
#[utoipa::path(
    get, path = "/email/verify", tag = "pages", operation_id = "verify_email_page",
    responses(
        (status = 200, description = "The page", body = String, content_type = "text/html"),
    )
)]
async fn verify_page(base: Base) -> Response {
    let page = VerifyPage {
        base: &base.0,
        done: false,
        error: None,
        token: "",
    };
    render(StatusCode::OK, &page)
}

/// Verifies an address with its link's token: it becomes the account's,
/// verified (it signs in, and reset links go there), and the verified
/// address it replaces is told.
#[utoipa::path(
    post, path = "/email/verify", tag = "account", operation_id = "verify_email",
    request_body(content(
        (VerifyEmail = "application/json"),
        (VerifyEmail = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Verified (the HTML form): a page saying so",
            body = String, content_type = "text/html"),
        (status = 204, description = "Verified"),
        (status = 400, description = "`invalid_token`: the link is unknown, used or expired \
            (one answer for all three); `invalid_request`: a malformed field, or the address is \
            verified on another account or is another account's username (the HTML form: its \
            page again, with the error)",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 403, description = "`forbidden_origin`: a cross-site request", body = ErrorBody),
        BodyRefusals,
    )
)]
async fn verify(
    State(auth): State<Auth>,
    _: AllowedOrigin,
    client: ClientInfo,
    base: Base,
    body: JsonOrForm<VerifyEmail>,
) -> Result<Response, ApiError> {
    match body {
        JsonOrForm::Json(v) => {
            within("token", &v.token, MAX_TOKEN_CHARS)?;
            auth.verify_email(&v.token, &client).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        JsonOrForm::Form(v) => {
            let result = match within("token", &v.token, MAX_TOKEN_CHARS) {
                Ok(()) => auth.verify_email(&v.token, &client).await,
                Err(e) => Err(e),
            };
            let error = result.as_ref().err().map(form_message);
            let page = VerifyPage {
                base: &base.0,
                done: result.is_ok(),
                error: error.as_deref(),
                token: &v.token,
            };
            Ok(match &result {
                Ok(()) => render(StatusCode::OK, &page),
                Err(e) => refused(render(crate::routes::error::status(e), &page), e),
            })
        }
    }
}
