//! A forgotten password (README, "Account recovery"): `POST /password/forgot`
//! asks for a reset link, `POST /password/reset` uses it, and their pages.
//! Routed only while latchkey sends mail (`routes/mod.rs`).

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::password::policy::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
use crate::auth::{ApiError, Auth, ClientInfo};
use crate::routes::body::JsonOrForm;
use crate::routes::error::ErrorBody;
use crate::routes::extract::Base;
use crate::routes::openapi::BodyRefusals;
use crate::routes::origin::AllowedOrigin;
use crate::routes::pages::{form_message, refused, render};

pub(crate) fn router() -> OpenApiRouter<Auth> {
    OpenApiRouter::new()
        .routes(routes!(forgot_page, forgot))
        .routes(routes!(reset_page, reset))
}

/// What `POST /password/forgot` always answers.
const FORGOT_ANSWER: &str = "If an account matches and has a verified email address, a link to \
    choose a new password is on its way to it.";

/// The longest `login` taken: the longest address (RFC 5321), and so longer
/// than any username. The schemas below state these bounds as literals.
const MAX_LOGIN_CHARS: usize = 254;

/// The longest token taken: latchkey's are 65 characters.
pub(crate) const MAX_TOKEN_CHARS: usize = 128;

#[derive(Deserialize, ToSchema)]
pub(crate) struct ForgotPassword {
    /// A username, or an account's verified email address.
    #[schema(examples("ann"), min_length = 1, max_length = 254)]
    login: String,
}

/// `400 invalid_request` for a field outside its schema's length bounds:
/// what the description promises, whatever the rest of the request.
pub(crate) fn within(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let chars = value.chars().count();
    if chars == 0 || chars > max {
        return Err(ApiError::InvalidRequest(format!(
            "{field} must be 1 to {max} characters"
        )));
    }
    Ok(())
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct ResetPassword {
    /// The token from the mailed link (its fragment's `token`).
    #[schema(min_length = 1, max_length = 128)]
    token: String,
    #[schema(schema_with = reset_password_schema)]
    password: String,
}

fn reset_password_schema() -> utoipa::openapi::Object {
    crate::routes::register::password_schema(
        ", and not one of the 10,000 most\ncommon passwords, as for `POST /register`; \
         otherwise `422 weak_password` (the link still works).",
    )
    .build()
}

/// The answer of a request whose work goes on after it.
#[derive(Serialize, ToSchema)]
pub(crate) struct Accepted {
    /// What happens next, in words.
    pub(crate) message: String,
}

#[derive(Template)]
#[template(path = "forgot.html")]
struct ForgotPage<'a> {
    base: &'a str,
    asked: bool,
    answer: &'a str,
}

#[derive(Template)]
#[template(path = "reset.html")]
struct ResetPage<'a> {
    base: &'a str,
    done: bool,
    error: Option<&'a str>,
    token: &'a str,
}

/// The "Forgot your password?" form.
#[utoipa::path(
    get, path = "/password/forgot", tag = "pages", operation_id = "forgot_password_page",
    responses(
        (status = 200, description = "The form", body = String, content_type = "text/html"),
    )
)]
async fn forgot_page(base: Base) -> Response {
    let page = ForgotPage {
        base: &base.0,
        asked: false,
        answer: "",
    };
    render(StatusCode::OK, &page)
}

/// Asks for a password reset link. Always the same `202`, at once, for an
/// unknown account, one without a verified address, one that asked too
/// often and one whose link is on its way: the work happens after the
/// answer. A known account with a verified address gets a link, at most
/// `MAIL_PER_HOUR` an hour.
#[utoipa::path(
    post, path = "/password/forgot", tag = "account", operation_id = "forgot_password",
    request_body(content(
        (ForgotPassword = "application/json"),
        (ForgotPassword = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 202, description = "Asked (the HTML form: its page, saying so)",
            content((Accepted = "application/json"), (String = "text/html"))),
        (status = 400, description = "`invalid_request`: a missing or malformed field",
            body = ErrorBody),
        (status = 403, description = "`forbidden_origin`: a cross-site request", body = ErrorBody),
        BodyRefusals,
    )
)]
async fn forgot(
    State(auth): State<Auth>,
    _: AllowedOrigin,
    client: ClientInfo,
    base: Base,
    body: JsonOrForm<ForgotPassword>,
) -> Result<Response, ApiError> {
    let (JsonOrForm::Json(asked) | JsonOrForm::Form(asked)) = &body;
    within("login", &asked.login, MAX_LOGIN_CHARS)?;
    auth.forgot_password(&asked.login, &client);
    Ok(match body {
        JsonOrForm::Json(_) => (
            StatusCode::ACCEPTED,
            Json(Accepted {
                message: FORGOT_ANSWER.to_owned(),
            }),
        )
            .into_response(),
        JsonOrForm::Form(_) => {
            let page = ForgotPage {
                base: &base.0,
                asked: true,
                answer: FORGOT_ANSWER,
            };
            render(StatusCode::ACCEPTED, &page)
        }
    })
}

/// The form the reset link opens. The token is in the link's fragment,
/// which no server sees; the page's script reads it into the form.
#[utoipa::path(
    get, path = "/password/reset", tag = "pages", operation_id = "reset_password_page",
    responses(
        (status = 200, description = "The form", body = String, content_type = "text/html"),
    )
)]
async fn reset_page(base: Base) -> Response {
    let page = ResetPage {
        base: &base.0,
        done: false,
        error: None,
        token: "",
    };
    render(StatusCode::OK, &page)
}

/// Sets a new password with a reset link's token. Every session of the
/// account ends, every other reset link dies, and device cookies issued
/// before count no more. Nobody is signed in: sign in with the new password.
#[utoipa::path(
    post, path = "/password/reset", tag = "account", operation_id = "reset_password",
    request_body(content(
        (ResetPassword = "application/json"),
        (ResetPassword = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Set (the HTML form): a page saying so, with a link to sign in",
            body = String, content_type = "text/html"),
        (status = 204, description = "Set; every session of the account has ended"),
        (status = 400, description = "`invalid_token`: the link is unknown, used or expired \
            (one answer for all three); `invalid_request`: a missing or malformed field (the \
            HTML form: its page again, with the error)",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 403, description = "`forbidden_origin`: a cross-site request", body = ErrorBody),
        BodyRefusals,
        (status = 422, description = format!("`weak_password`: the password is under \
            {MIN_PASSWORD_CHARS} or over {MAX_PASSWORD_CHARS} characters, or one of the most \
            common passwords; the link still works (the HTML form: its page again, with the error)"),
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 503, description = "`server_busy`: the password hashing queue is full",
            body = ErrorBody, headers(("retry-after" = String))),
    )
)]
async fn reset(
    State(auth): State<Auth>,
    _: AllowedOrigin,
    client: ClientInfo,
    base: Base,
    body: JsonOrForm<ResetPassword>,
) -> Result<Response, ApiError> {
    match body {
        JsonOrForm::Json(r) => {
            within("token", &r.token, MAX_TOKEN_CHARS)?;
            auth.reset_password(&r.token, &r.password, &client).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        JsonOrForm::Form(r) => {
            let result = match within("token", &r.token, MAX_TOKEN_CHARS) {
                Ok(()) => auth.reset_password(&r.token, &r.password, &client).await,
                Err(e) => Err(e),
            };
            let error = result.as_ref().err().map(form_message);
            let page = ResetPage {
                base: &base.0,
                done: result.is_ok(),
                error: error.as_deref(),
                token: &r.token,
            };
            Ok(match &result {
                Ok(()) => render(StatusCode::OK, &page),
                Err(e) => refused(render(crate::routes::error::status(e), &page), e),
            })
        }
    }
}
