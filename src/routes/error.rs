//! How a refusal is answered over HTTP: its status, its JSON body
//! (`{"error": "<code>", "message": "<human text>"}`) and the header some
//! carry. The refusals themselves, their codes and words, are the core's
//! (`auth/error.rs`). Internal details are logged, never sent.

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection};
use axum::http::header::{self, HeaderName};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::ApiError;

/// The challenge of every Bearer refusal (RFC 6750 §3): the realm alone when
/// no token was sent; `invalid_token` adds its code and message to it.
pub(crate) const BEARER_CHALLENGE: &str = r#"Bearer realm="latchkey""#;

/// The authentication context class (RFC 9470 §3's `acr_values`) of an
/// authentication that used a second factor (README, "Second factor").
const MFA_ACR: &str = "mfa";

/// The least `Retry-After` sent: `0` would invite the retry at once.
pub(crate) const MIN_RETRY_AFTER: i64 = 1;

/// `Retry-After` while the database does not answer: long enough that
/// clients do not pile onto a database on its way back, short enough that a
/// brief outage costs them little.
const UNAVAILABLE_RETRY_AFTER: i64 = 5;

/// The status each refusal is answered with. The match names every variant,
/// so a refusal added to `auth/error.rs` does not compile until it has one.
pub(crate) fn status(error: &ApiError) -> StatusCode {
    match error {
        ApiError::InvalidRequest(_) | ApiError::InvalidLink => StatusCode::BAD_REQUEST,
        ApiError::InvalidCredentials
        | ApiError::SecondFactorRequired
        | ApiError::SecondFactorEnrollmentRequired
        | ApiError::InvalidCode
        | ApiError::MissingRefreshToken
        | ApiError::InvalidRefreshToken
        | ApiError::RefreshTokenReused
        | ApiError::Unauthenticated
        | ApiError::InvalidToken
        | ApiError::InsufficientUserAuthentication { .. } => StatusCode::UNAUTHORIZED,
        ApiError::WrongCurrentPassword
        | ApiError::SecondFactorLocked
        | ApiError::ForbiddenOrigin
        | ApiError::RegistrationClosed => StatusCode::FORBIDDEN,
        ApiError::NotFound => StatusCode::NOT_FOUND,
        ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ApiError::UsernameTaken => StatusCode::CONFLICT,
        ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ApiError::WeakPassword(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ApiError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
        ApiError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        ApiError::Unavailable | ApiError::ShuttingDown | ApiError::ServerBusy { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// The header a refusal carries beside its status and body, however it is
/// answered: in JSON here, or as its form page again (`routes/pages.rs`).
pub(crate) fn header(error: &ApiError) -> Option<(HeaderName, HeaderValue)> {
    match error {
        ApiError::Unauthenticated => Some((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(BEARER_CHALLENGE),
        )),
        // The code and message hold no quote or backslash, as RFC 6750 §3
        // requires of these attributes (the tests below check the result),
        // so the conversion cannot fail.
        ApiError::InvalidToken => {
            let challenge = format!(
                r#"{BEARER_CHALLENGE}, error="{}", error_description="{error}""#,
                error.code()
            );
            let value = HeaderValue::try_from(challenge).ok()?;
            Some((header::WWW_AUTHENTICATE, value))
        }
        // RFC 9470 §3: `max_age` tells the client how recent the next
        // password check must be, and `acr_values` that it must use a
        // second factor too.
        ApiError::InsufficientUserAuthentication {
            max_age,
            second_factor,
        } => {
            let acr = if *second_factor {
                format!(r#", acr_values="{MFA_ACR}""#)
            } else {
                String::new()
            };
            let challenge = format!(
                r#"{BEARER_CHALLENGE}, error="{}", error_description="{error}"{acr}, max_age={max_age}"#,
                error.code()
            );
            let value = HeaderValue::try_from(challenge).ok()?;
            Some((header::WWW_AUTHENTICATE, value))
        }
        ApiError::TooManyAttempts { retry_after } | ApiError::ServerBusy { retry_after } => Some((
            header::RETRY_AFTER,
            HeaderValue::from((*retry_after).max(MIN_RETRY_AFTER)),
        )),
        ApiError::Unavailable => Some((
            header::RETRY_AFTER,
            HeaderValue::from(UNAVAILABLE_RETRY_AFTER),
        )),
        // The rest of the body may still be on its way: the connection
        // cannot carry another request (RFC 9110 §15.5.9).
        ApiError::RequestTimeout => Some((header::CONNECTION, HeaderValue::from_static("close"))),
        _ => None,
    }
}

/// The body of every API error: `{"error": "<code>", "message": "<human text>"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code.
    #[schema(schema_with = error_code_schema)]
    pub error: &'static str,
    /// Words for people; may change.
    #[schema(examples(example_message))]
    pub message: String,
}

fn example_message() -> String {
    ApiError::InvalidCredentials.to_string()
}

fn error_code_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .description(Some("A stable, machine-readable code."))
        .enum_values(Some(
            ApiError::CODES
                .iter()
                .enumerate()
                .filter(|(i, code)| !ApiError::CODES[..*i].contains(code))
                .map(|(_, code)| *code),
        ))
        .build()
}

/// The status, the JSON body and the header, so an application's own
/// handlers can answer `Result<_, ApiError>` as latchkey's do.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(e) => tracing::error!(error = format!("{e:#}"), "internal error"),
            // The store logs an outage once, when it begins.
            Self::Unavailable => tracing::debug!("store unavailable"),
            other => tracing::debug!(code = other.code(), "request refused"),
        }
        let body = Json(ErrorBody {
            error: self.code(),
            message: self.to_string(),
        });
        let mut response = (status(&self), body).into_response();
        if let Some((name, value)) = header(&self) {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// Body rejections keep their status class; their text names the field at
/// fault, never server internals, so it is safe to pass on.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        from_status(rejection.status(), rejection.body_text())
    }
}

/// A path segment that does not decode (`/sessions/%FF`) names nothing here.
impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        Self::NotFound
    }
}

impl From<FormRejection> for ApiError {
    fn from(rejection: FormRejection) -> Self {
        from_status(rejection.status(), rejection.body_text())
    }
}

fn from_status(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        _ => ApiError::InvalidRequest(text),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};

    use super::{header, status};
    use crate::auth::ApiError;
    use crate::auth::password::policy::Weakness;

    #[test]
    fn the_bearer_challenges_name_the_realm_and_the_invalid_token() {
        let challenge = |value| Some((WWW_AUTHENTICATE, HeaderValue::from_static(value)));
        assert_eq!(
            header(&ApiError::Unauthenticated),
            challenge(r#"Bearer realm="latchkey""#)
        );
        assert_eq!(
            header(&ApiError::InvalidToken),
            challenge(
                r#"Bearer realm="latchkey", error="invalid_token", error_description="the access token is invalid or expired""#
            )
        );
        assert_eq!(
            header(&ApiError::InsufficientUserAuthentication {
                max_age: 600,
                second_factor: false
            }),
            challenge(
                r#"Bearer realm="latchkey", error="insufficient_user_authentication", error_description="this action needs your password again: reauthenticate and retry", max_age=600"#
            )
        );
    }

    #[test]
    fn retry_after_is_never_below_a_second() {
        for (error, seconds) in [
            (ApiError::TooManyAttempts { retry_after: 0 }, 1),
            (ApiError::TooManyAttempts { retry_after: 42 }, 42),
            (ApiError::ServerBusy { retry_after: -3 }, 1),
        ] {
            assert_eq!(
                header(&error),
                Some((RETRY_AFTER, HeaderValue::from(seconds)))
            );
        }
    }

    #[test]
    fn a_weak_password_is_unprocessable_whatever_the_reason() {
        for reason in [Weakness::TooShort, Weakness::TooLong, Weakness::TooCommon] {
            assert_eq!(status(&ApiError::WeakPassword(reason)).as_u16(), 422);
        }
    }
}
