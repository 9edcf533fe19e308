//! `POST /register`: open sign-up, when `REGISTRATION_OPEN` allows it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::credentials::{MAX_USERNAME_CHARS, USERNAME_PUNCTUATION, username_punctuation};
use crate::auth::password::policy::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
use crate::auth::{Auth, ClientInfo};
use crate::routes::body::JsonOrForm;
use crate::routes::error::ErrorBody;
use crate::routes::extract::Base;
use crate::routes::openapi::BodyRefusals;
use crate::routes::origin::AllowedOrigin;
use crate::routes::pages;
use serde_json::json;
use utoipa::openapi::{Object, ObjectBuilder, Type};

pub(crate) fn router() -> OpenApiRouter<Auth> {
    OpenApiRouter::new().routes(routes!(register))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct NewAccount {
    #[schema(schema_with = username_schema)]
    username: String,
    #[schema(schema_with = new_account_password_schema)]
    password: String,
    /// An email address for the account (README, "Email addresses"):
    /// stored lower-cased and unverified; another account may name the same
    /// one. Otherwise `400 invalid_request`.
    #[schema(format = Email, max_length = 254, examples("ann@example.com"))]
    email: Option<String>,
}

/// `username`, from the username rule (`auth/credentials/mod.rs`).
fn username_schema() -> Object {
    // A character class with `-` last, where it stands for itself.
    let (dash, others): (Vec<char>, Vec<char>) =
        USERNAME_PUNCTUATION.iter().partition(|c| **c == '-');
    let class: String = others.into_iter().chain(dash).collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!(
            "Letters, digits and `{}`; stored lower-cased.",
            username_punctuation()
        )))
        .pattern(Some(format!("^[A-Za-z0-9{class}]+$")))
        .min_length(Some(1))
        .max_length(Some(MAX_USERNAME_CHARS))
        .examples([json!("ann")])
        .build()
}

/// A new password, from the password rules (`auth/password/policy.rs`);
/// `more` ends its description.
pub(crate) fn password_schema(more: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!(
            "{MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters of any script, counted as \
             Unicode code points both\nas sent and after NFKC normalisation{more}"
        )))
        .min_length(Some(MIN_PASSWORD_CHARS))
        .max_length(Some(MAX_PASSWORD_CHARS))
}

fn new_account_password_schema() -> Object {
    password_schema(
        " (the form the password is compared\nand hashed in), and not one of the 10,000 most \
         common passwords\n(compared case-insensitively); otherwise `422 weak_password`.\n\
         Normalisation can shorten a password (`e` + a combining accent is one\ncharacter after \
         it), so one within these bounds may still be refused.",
    )
    .examples([json!("correct horse battery")])
    .build()
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Registered {
    /// The new user's id, as a string.
    #[schema(examples("1"))]
    id: String,
    #[schema(examples("ann"))]
    username: String,
}

/// Creates an account, when registration is open. API clients send JSON; the
/// HTML form is redirected (`303`) to the login page, or shown again with the
/// error.
#[utoipa::path(
    post, path = "/register", tag = "account",
    request_body(content(
        (NewAccount = "application/json"),
        (NewAccount = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 201, description = "Created (JSON)", body = Registered),
        (status = 303, description = "Created (the HTML form): on to the login page",
            headers(("location" = String, description = "`/login?registered=1`"))),
        (status = 400, description = format!("`invalid_request`: a missing or malformed field, or a \
            username that is not 1 to {MAX_USERNAME_CHARS} of the allowed characters (the HTML form: \
            its page again, with the error)"),
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 403, description = "`registration_closed`, or `forbidden_origin` for a cross-site \
            request (the HTML form: its page again, with the error)",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 409, description = "`username_taken` (the HTML form: its page again, with the error)",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        BodyRefusals,
        (status = 422, description = format!("`weak_password`: the password is under \
            {MIN_PASSWORD_CHARS} or over {MAX_PASSWORD_CHARS} characters (as sent or after NFKC \
            normalisation), or one of the most common passwords; the message says which (the HTML \
            form: its page again, with the error)"),
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 429, description = "`too_many_attempts`: too many sign-ups from this address \
            (the HTML form: its page again, with the error)",
            content((ErrorBody = "application/json"), (String = "text/html")),
            headers(("retry-after" = String))),
        (status = 503, description = "`server_busy`: the password hashing queue is full (the HTML form: its page \
            again, with the error)",
            content((ErrorBody = "application/json"), (String = "text/html")),
            headers(("retry-after" = String))),
    )
)]
async fn register(
    State(auth): State<Auth>,
    _: AllowedOrigin,
    client: ClientInfo,
    base: Base,
    body: JsonOrForm<NewAccount>,
) -> Response {
    match body {
        JsonOrForm::Json(a) => match auth
            .register(&a.username, &a.password, a.email.as_deref(), &client)
            .await
        {
            Ok(user) => (
                StatusCode::CREATED,
                Json(Registered {
                    id: user.id.to_string(),
                    username: user.username,
                }),
            )
                .into_response(),
            Err(e) => e.into_response(),
        },
        JsonOrForm::Form(a) => match auth
            .register(&a.username, &a.password, a.email.as_deref(), &client)
            .await
        {
            Ok(_) => Redirect::to(&base.to("/login?registered=1")).into_response(),
            Err(e) => pages::register_failed(&auth, &base, &e, &a.username),
        },
    }
}
