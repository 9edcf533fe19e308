//! API errors: each variant names an outcome, and this file alone decides its
//! status, JSON body and headers. Internal details are logged, never sent.

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection};
use axum::http::header::{self, HeaderName};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::password::HashError;
use crate::auth::password::policy::Weakness;
use crate::store::StoreError;

/// Declares every refusal in one place: its variant (with its fields), its
/// status, its stable code and its message (a `thiserror` format string over
/// the fields). The enum, `Display`, [`ApiError::status`], [`ApiError::code`]
/// and [`ApiError::CODES`] (the OpenAPI enum of codes) all come from here, so
/// a new refusal is one more line below and cannot be half-declared. Each
/// variant's rustdoc is its doc comment, if any, then its message, code and
/// status; fields take doc comments as struct fields do.
macro_rules! api_errors {
    ($(
        $(#[$meta:meta])*
        $variant:ident
            $(( $($(#[$field_meta:meta])* $field:ty),+ ))?
            $({ $($(#[$named_meta:meta])* $name:ident: $named:ty),+ })?
        => $status:ident, $code:literal, $message:literal;
    )+) => {
        /// Every refusal the API answers with: a status ([`ApiError::status`]),
        /// a JSON body of its code ([`ApiError::code`]) and message (its
        /// `Display`), and for some a header ([`ApiError::header`]).
        #[derive(Debug, thiserror::Error)]
        #[non_exhaustive]
        pub enum ApiError {
            $(
                $(#[$meta])*
                #[doc = ""]
                #[doc = concat!(
                    "\"", $message, "\" (code `", $code, "`, status `", stringify!($status), "`)."
                )]
                #[error($message)]
                $variant
                    $(( $($(#[$field_meta])* $field),+ ))?
                    $({ $($(#[$named_meta])* $name: $named),+ })?,
            )+
        }

        impl ApiError {
            /// Every value of [`ApiError::code`], in declaration order, for
            /// the OpenAPI description.
            pub const CODES: &[&str] = &[$($code),+];

            /// The HTTP status this refusal is answered with.
            pub fn status(&self) -> StatusCode {
                match self {
                    $(Self::$variant { .. } => StatusCode::$status,)+
                }
            }

            /// The stable, machine-readable code: the JSON body's `error`.
            pub fn code(&self) -> &'static str {
                match self {
                    $(Self::$variant { .. } => $code,)+
                }
            }
        }
    };
}

api_errors! {
    /// A malformed request, or a field that breaks its rules.
    InvalidRequest(
        /// What is wrong with it: the message.
        String
    ) => BAD_REQUEST, "invalid_request", "{0}";
    InvalidCredentials => UNAUTHORIZED, "invalid_credentials", "invalid username or password";
    WrongCurrentPassword => FORBIDDEN, "wrong_current_password", "the current password is wrong";
    HeadersTooLarge => REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large",
        "request headers are too large";
    TooManyAttempts {
        /// Seconds until the next attempt may go ahead (`Retry-After`).
        retry_after: i64
    } => TOO_MANY_REQUESTS, "too_many_attempts", "too many attempts; try again later";
    MissingRefreshToken => UNAUTHORIZED, "missing_refresh_token", "no refresh token was sent";
    InvalidRefreshToken => UNAUTHORIZED, "invalid_refresh_token",
        "the refresh token is invalid or expired";
    RefreshTokenReused => UNAUTHORIZED, "refresh_token_reused",
        "the refresh token was already used; the session has been revoked";
    ForbiddenOrigin => FORBIDDEN, "forbidden_origin", "requests from this origin are not allowed";
    /// No access token was sent (RFC 6750 §3.1: no error code in the challenge).
    Unauthenticated => UNAUTHORIZED, "unauthenticated", "an access token is required";
    /// Its code and message are also the challenge's `error` and
    /// `error_description` (RFC 6750 §3).
    InvalidToken => UNAUTHORIZED, "invalid_token", "the access token is invalid or expired";
    /// The action needs a password checked more recently than the token's
    /// `auth_time` (RFC 9470 §3): `POST /reauthenticate`, then try again.
    /// Its code and message are also the challenge's `error` and
    /// `error_description`.
    InsufficientUserAuthentication {
        /// The most seconds since the password check that the action accepts
        /// (the challenge's `max_age`).
        max_age: i64
    } => UNAUTHORIZED, "insufficient_user_authentication",
        "this action needs your password again: reauthenticate and retry";
    NotFound => NOT_FOUND, "not_found", "not found";
    MethodNotAllowed => METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed";
    UsernameTaken => CONFLICT, "username_taken", "that username is taken";
    /// A new password that breaks the rules of `auth/password/policy.rs`;
    /// the message says which.
    WeakPassword(
        /// The rule broken: the message.
        Weakness
    ) => UNPROCESSABLE_ENTITY, "weak_password", "{0}";
    RegistrationClosed => FORBIDDEN, "registration_closed", "registration is closed";
    PayloadTooLarge => PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large";
    UnsupportedMediaType => UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
        "expected a JSON or form-encoded body";
    /// The body, or the answer, took longer than `REQUEST_TIMEOUT`.
    RequestTimeout => REQUEST_TIMEOUT, "request_timeout", "the request took too long";
    /// The database does not answer (README, "When the database goes
    /// away"): try again after `Retry-After`.
    Unavailable => SERVICE_UNAVAILABLE, "unavailable", "the store is unavailable";
    /// A shutdown has begun: `/readyz` asks load balancers to stop sending.
    ShuttingDown => SERVICE_UNAVAILABLE, "shutting_down", "the service is shutting down";
    /// Too much password checking in flight (README, "Limits under attack").
    ServerBusy {
        /// Seconds to wait before trying again (`Retry-After`).
        retry_after: i64
    } => SERVICE_UNAVAILABLE, "server_busy", "the server is busy; try again shortly";
    Internal(
        /// The cause, logged and never sent.
        #[source] anyhow::Error
    ) => INTERNAL_SERVER_ERROR, "internal_error", "internal error";
}

/// The challenge of every Bearer refusal (RFC 6750 §3): the realm alone when
/// no token was sent; `invalid_token` adds its code and message to it.
pub const BEARER_CHALLENGE: &str = r#"Bearer realm="latchkey""#;

/// The least `Retry-After` sent: `0` would invite the retry at once.
pub const MIN_RETRY_AFTER: i64 = 1;

/// `Retry-After` while the database does not answer: long enough that
/// clients do not pile onto a database on its way back, short enough that a
/// brief outage costs them little.
pub const UNAVAILABLE_RETRY_AFTER: i64 = 5;

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
        .enum_values(Some(ApiError::CODES.iter().copied()))
        .build()
}

impl ApiError {
    /// The header this refusal carries beside its status and body, however
    /// it is answered: in JSON here, or as its form page again
    /// (`routes/pages.rs`).
    pub fn header(&self) -> Option<(HeaderName, HeaderValue)> {
        match self {
            Self::Unauthenticated => Some((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(BEARER_CHALLENGE),
            )),
            // The code and message hold no quote or backslash, as RFC 6750
            // §3 requires of these attributes (the tests below check the
            // result), so the conversion cannot fail.
            Self::InvalidToken => {
                let challenge = format!(
                    r#"{BEARER_CHALLENGE}, error="{}", error_description="{self}""#,
                    self.code()
                );
                let value = HeaderValue::try_from(challenge).ok()?;
                Some((header::WWW_AUTHENTICATE, value))
            }
            // RFC 9470 §3: `max_age` tells the client how recent the next
            // password check must be.
            Self::InsufficientUserAuthentication { max_age } => {
                let challenge = format!(
                    r#"{BEARER_CHALLENGE}, error="{}", error_description="{self}", max_age={max_age}"#,
                    self.code()
                );
                let value = HeaderValue::try_from(challenge).ok()?;
                Some((header::WWW_AUTHENTICATE, value))
            }
            Self::TooManyAttempts { retry_after } | Self::ServerBusy { retry_after } => Some((
                header::RETRY_AFTER,
                HeaderValue::from((*retry_after).max(MIN_RETRY_AFTER)),
            )),
            Self::Unavailable => Some((
                header::RETRY_AFTER,
                HeaderValue::from(UNAVAILABLE_RETRY_AFTER),
            )),
            // The rest of the body may still be on its way: the connection
            // cannot carry another request (RFC 9110 §15.5.9).
            Self::RequestTimeout => Some((header::CONNECTION, HeaderValue::from_static("close"))),
            _ => None,
        }
    }
}

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
        let mut response = (self.status(), body).into_response();
        if let Some((name, value)) = self.header() {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UsernameTaken => Self::UsernameTaken,
            StoreError::Unavailable(_) => Self::Unavailable,
            StoreError::Database(cause) => Self::Internal(cause.into()),
            // A kind of failure this version does not know: not the client's.
            #[allow(unreachable_patterns)]
            _ => Self::Internal(anyhow::anyhow!("{e}")),
        }
    }
}

/// A failed password hash or check: a full hashing queue is `503
/// server_busy`, anything else is internal.
impl From<HashError> for ApiError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Self::ServerBusy { retry_after: 1 },
            HashError::Failed(cause) => Self::Internal(cause),
        }
    }
}

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

/// Body rejections keep their status class; their text names the field at
/// fault, never server internals, so it is safe to pass on.
fn from_status(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        _ => ApiError::InvalidRequest(text),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use axum::http::{HeaderValue, header};

    use super::ApiError;
    use crate::auth::password::policy::Weakness;

    /// `api_errors!` gives every variant a code; what it cannot stop is two
    /// variants sharing one, or a code clients could not match on plainly.
    #[test]
    fn codes_are_unique_and_snake_case() {
        let mut seen = HashSet::new();
        for code in ApiError::CODES {
            assert!(seen.insert(code), "{code} is declared twice");
            let snake = code
                .split('_')
                .all(|word| !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase()));
            assert!(snake, "{code} is not snake_case");
        }
    }

    #[test]
    fn the_bearer_challenges_name_the_realm_and_the_invalid_token() {
        let challenge = |value| Some((header::WWW_AUTHENTICATE, HeaderValue::from_static(value)));
        assert_eq!(
            ApiError::Unauthenticated.header(),
            challenge(r#"Bearer realm="latchkey""#)
        );
        assert_eq!(
            ApiError::InvalidToken.header(),
            challenge(
                r#"Bearer realm="latchkey", error="invalid_token", error_description="the access token is invalid or expired""#
            )
        );
        assert_eq!(
            ApiError::InsufficientUserAuthentication { max_age: 600 }.header(),
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
                error.header(),
                Some((header::RETRY_AFTER, HeaderValue::from(seconds)))
            );
        }
    }

    #[test]
    fn a_weak_password_says_why_under_one_code() {
        for reason in [Weakness::TooShort, Weakness::TooLong, Weakness::TooCommon] {
            let error = ApiError::WeakPassword(reason);
            assert_eq!(error.code(), "weak_password");
            assert_eq!(error.status().as_u16(), 422);
            assert_eq!(error.to_string(), reason.message());
        }
    }
}
