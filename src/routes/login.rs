//! `POST /login`: JSON for API clients, form-urlencoded for the HTML form;
//! and `POST /login/second-factor`, its second step for an account with a
//! second factor (README, "Second factor").

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{ApiError, Auth, BrowserCookies, ClientInfo, SecondFactorProof, SignIn};
use crate::routes::body::JsonOrForm;
use crate::routes::error::ErrorBody;
use crate::routes::extract::Base;
use crate::routes::openapi::BodyRefusals;
use crate::routes::origin::AllowedOrigin;
use crate::routes::pages::{self, safe_next};
use crate::routes::respond::{SecondFactorBody, SecondStepBody, TokenBody};
use crate::routes::second_factor::Enrolment;

pub(crate) fn router() -> OpenApiRouter<Auth> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(second_factor))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct Credentials {
    /// The username, or the account's verified email address (README,
    /// "Email addresses"). Case-insensitive; surrounding spaces are ignored.
    #[schema(pattern = r"\S", examples("ann"))]
    username: String,
    #[schema(min_length = 1, examples("correct horse battery"))]
    password: String,
    /// Where the HTML form returns to; only same-origin paths are honoured.
    #[schema(examples("/app"))]
    next: Option<String>,
    /// "Keep me signed in" (default `true`). `false`: the refresh cookie is
    /// a session cookie, which the browser forgets when it closes, and the
    /// session ends after `SESSION_IDLE_TIMEOUT_NO_REMEMBER` unused.
    // Optional, not nullable: a form cannot send a null.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    remember: Option<bool>,
    /// `true` from the HTML form, beside its "Keep me signed in" box, so
    /// that the unticked box (which sends nothing) reads as `remember=false`.
    /// API clients leave it out.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    remember_offered: Option<bool>,
}

/// An optional boolean that, when present, is one: `null` is refused, as
/// the schema says (it is not nullable).
fn present<'de, D: serde::Deserializer<'de>>(value: D) -> Result<Option<bool>, D::Error> {
    bool::deserialize(value).map(Some)
}

impl Credentials {
    fn remember(&self) -> bool {
        self.remember.unwrap_or(self.remember_offered != Some(true))
    }
}

/// Signs in. API clients send JSON and get the access token; the HTML form
/// is redirected (`303`) to `/app` or its same-origin `next`, or shown again
/// with the error. Any refresh cookie sent along loses its session.
#[utoipa::path(
    post, path = "/login", tag = "session",
    request_body(content(
        (Credentials = "application/json"),
        (Credentials = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Signed in (JSON)", body = TokenBody,
            headers(("set-cookie" = String, description = "The refresh cookie, and the device cookie (two headers)"))),
        (status = 303, description = "Signed in (the HTML form)",
            headers(
                ("set-cookie" = String, description = "The refresh cookie, and the device cookie (two headers)"),
                ("location" = String, description = "`/app`, or the form's same-origin `next`"),
            )),
        (status = 400, description = "`invalid_request`: a missing or malformed field \
            (the HTML form: its page again, with the error)",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 401, description = "`invalid_credentials`, the same for an unknown user and a \
            wrong password (the HTML form: its page again, with the error); or, the password \
            right, `second_factor_required`, with the factors that may complete the login at \
            `POST /login/second-factor` and its `__Host-mfa` cookie (the HTML form: the page \
            asking for a code); or, the password right and the account's role requiring a second \
            factor it has not set up (`SECOND_FACTOR_REQUIRED_ROLES`), \
            `second_factor_enrollment_required`, with a new TOTP secret whose code \
            completes the login there and turns it on (the HTML form: the page showing its QR \
            code)",
            content((SecondFactorBody = "application/json"), (String = "text/html"))),
        (status = 403, description = "`forbidden_origin`: a cross-site form post", body = ErrorBody),
        BodyRefusals,
        (status = 429, description = "`too_many_attempts` for this account or address \
            (the HTML form: its page again, with the error)",
            content((ErrorBody = "application/json"), (String = "text/html")),
            headers(("retry-after" = String))),
        (status = 503, description = "`server_busy`: too many password checks in flight for \
            this address or account, or the hashing queue is full (the HTML form: its page \
            again, with the error)",
            content((ErrorBody = "application/json"), (String = "text/html")),
            headers(("retry-after" = String))),
    )
)]
async fn login(
    State(auth): State<Auth>,
    _: AllowedOrigin,
    client: ClientInfo,
    cookies: BrowserCookies,
    base: Base,
    body: JsonOrForm<Credentials>,
) -> Response {
    match body {
        JsonOrForm::Json(c) => auth
            .log_in(&c.username, &c.password, c.remember(), &cookies, &client)
            .await
            .into_response(),
        JsonOrForm::Form(c) => {
            let next = safe_next(&base, c.next.as_deref());
            match auth
                .log_in(&c.username, &c.password, c.remember(), &cookies, &client)
                .await
            {
                Ok(SignIn::Issued(issued)) => (issued.cookies, Redirect::to(&next)).into_response(),
                Ok(
                    SignIn::SecondFactorRequired(challenge) | SignIn::EnrollmentRequired(challenge),
                ) => {
                    let enrolment = challenge.enrolment.map(Enrolment::from);
                    (
                        challenge.cookies,
                        pages::second_factor_page(&base, &next, enrolment.as_ref(), None),
                    )
                        .into_response()
                }
                Err(e) => pages::login_failed(&auth, &base, &e, &next, &c.username, c.remember()),
            }
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct SecondFactor {
    /// A six-digit code from the authenticator app.
    #[schema(examples("123456"), max_length = 16)]
    code: Option<String>,
    /// One of the recovery codes, instead (each works once).
    #[schema(examples("abcde-fghij"), max_length = 32)]
    recovery_code: Option<String>,
    /// Where the HTML form returns to; only same-origin paths are honoured.
    next: Option<String>,
}

impl SecondFactor {
    /// The proof given: a code, or else a recovery code; `400` for neither.
    fn proof(&self) -> Result<SecondFactorProof<'_>, ApiError> {
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().filter(|v| !v.trim().is_empty())
        }
        match (given(&self.code), given(&self.recovery_code)) {
            (Some(code), _) => Ok(SecondFactorProof::Code(code)),
            (None, Some(code)) => Ok(SecondFactorProof::RecoveryCode(code)),
            (None, None) => Err(ApiError::InvalidRequest(
                "a code or a recovery code is required".to_owned(),
            )),
        }
    }
}

/// Completes a login waiting for its second factor (the `__Host-mfa`
/// cookie `POST /login` set): a code, or a recovery code. Answers as a
/// successful login does.
#[utoipa::path(
    post, path = "/login/second-factor", tag = "session", operation_id = "login_second_factor",
    request_body(content(
        (SecondFactor = "application/json"),
        (SecondFactor = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Signed in (JSON); the access token's `amr` is \
            `[\"pwd\", \"otp\"]`. With `recovery_codes` when this login set the factor up \
            (`second_factor_enrollment_required`): shown this once (the HTML form: a page \
            showing them, and the way on)",
            content((SecondStepBody = "application/json"), (String = "text/html")),
            headers(("set-cookie" = String, description = "The refresh cookie, the device cookie, \
                and the pending login's cookie cleared"))),
        (status = 303, description = "Signed in (the HTML form)",
            headers(
                ("set-cookie" = String, description = "The refresh and device cookies"),
                ("location" = String, description = "`/app`, or the form's same-origin `next`"),
            )),
        (status = 400, description = "`invalid_request`: neither a code nor a recovery code",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 401, description = "`invalid_code`: wrong, already used, or no login waiting \
            (none, expired after 300 s, or out of its five attempts: sign in again; the \
            `__Host-mfa` cookie is then cleared) (the HTML form: its page again, with the error)",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 403, description = "`forbidden_origin`: a cross-site request; or \
            `second_factor_locked`: 100 wrong codes in a row for the account, so codes are no \
            longer checked (a recovery code still is) (the HTML form: its page again, with the \
            error)",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        BodyRefusals,
        (status = 429, description = "`too_many_attempts`: too many codes for this account",
            content((ErrorBody = "application/json"), (String = "text/html")),
            headers(("retry-after" = String))),
    )
)]
async fn second_factor(
    State(auth): State<Auth>,
    _: AllowedOrigin,
    client: ClientInfo,
    cookies: BrowserCookies,
    base: Base,
    body: JsonOrForm<SecondFactor>,
) -> Response {
    match body {
        JsonOrForm::Json(f) => match f.proof() {
            Ok(proof) => auth
                .complete_login(&cookies, proof, &client)
                .await
                .into_response(),
            Err(e) => e.into_response(),
        },
        JsonOrForm::Form(f) => {
            let next = safe_next(&base, f.next.as_deref());
            let result = match f.proof() {
                Ok(proof) => auth.complete_login(&cookies, proof, &client).await,
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(done) if done.recovery_codes.is_empty() => {
                    (done.issued.cookies, Redirect::to(&next)).into_response()
                }
                Ok(done) => (
                    done.issued.cookies,
                    pages::recovery_codes_page(&base, &next, &done.recovery_codes),
                )
                    .into_response(),
                Err(refused) => {
                    // A login setting its factor up shows its QR code again.
                    let enrolment = match auth.pending_enrolment(&cookies).await {
                        Ok(enrolment) => enrolment.map(Enrolment::from),
                        Err(_) => None,
                    };
                    (
                        refused.cookies,
                        pages::second_factor_failed(
                            &base,
                            &next,
                            enrolment.as_ref(),
                            &refused.error,
                        ),
                    )
                        .into_response()
                }
            }
        }
    }
}
