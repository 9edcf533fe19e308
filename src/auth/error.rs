//! API errors: each variant names an outcome, and this file alone decides its
//! status, JSON body and headers. Internal details are logged, never sent.

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::password_policy::Weakness;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    #[error("request headers are too large")]
    HeadersTooLarge,
    #[error("too many attempts; try again later")]
    TooManyAttempts { retry_after: i64 },
    #[error("no refresh token was sent")]
    MissingRefreshToken,
    #[error("the refresh token is invalid or expired")]
    InvalidRefreshToken,
    #[error("the refresh token was already used; the session has been revoked")]
    RefreshTokenReused,
    #[error("requests from this origin are not allowed")]
    ForbiddenOrigin,
    /// No access token was sent (RFC 6750 §3.1: no error code in the challenge).
    #[error("an access token is required")]
    Unauthenticated,
    #[error("the access token is invalid or expired")]
    InvalidToken,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("that username is taken")]
    UsernameTaken,
    /// A new password that breaks the rules of `auth/password_policy.rs`;
    /// the message says which.
    #[error("{0}")]
    WeakPassword(Weakness),
    #[error("registration is closed")]
    RegistrationClosed,
    #[error("the request body is too large")]
    PayloadTooLarge,
    #[error("expected a JSON or form-encoded body")]
    UnsupportedMediaType,
    /// The body, or the answer, took longer than `REQUEST_TIMEOUT`.
    #[error("the request took too long")]
    RequestTimeout,
    #[error("the store is unavailable")]
    Unavailable,
    /// Too much password checking in flight (README, "Limits under attack").
    #[error("the server is busy; try again shortly")]
    ServerBusy { retry_after: i64 },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The body of every API error (API.md: `{"error": "<code>", "message": "<human text>"}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code.
    #[schema(schema_with = error_code_schema)]
    pub error: &'static str,
    /// Words for people; may change.
    #[schema(examples("invalid username or password"))]
    pub message: String,
}

fn error_code_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .description(Some("A stable, machine-readable code."))
        .enum_values(Some(ApiError::CODES.iter().copied()))
        .build()
}

impl ApiError {
    /// Every value of [`ApiError::code`], for the OpenAPI description.
    pub const CODES: &[&str] = &[
        "invalid_request",
        "invalid_credentials",
        "wrong_current_password",
        "headers_too_large",
        "too_many_attempts",
        "missing_refresh_token",
        "invalid_refresh_token",
        "refresh_token_reused",
        "forbidden_origin",
        "unauthenticated",
        "invalid_token",
        "not_found",
        "method_not_allowed",
        "username_taken",
        "weak_password",
        "registration_closed",
        "payload_too_large",
        "unsupported_media_type",
        "request_timeout",
        "unavailable",
        "server_busy",
        "internal_error",
    ];

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::InvalidCredentials
            | Self::MissingRefreshToken
            | Self::InvalidRefreshToken
            | Self::RefreshTokenReused
            | Self::Unauthenticated
            | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::ForbiddenOrigin | Self::RegistrationClosed | Self::WrongCurrentPassword => {
                StatusCode::FORBIDDEN
            }
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UsernameTaken => StatusCode::CONFLICT,
            Self::WeakPassword(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable | Self::ServerBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidCredentials => "invalid_credentials",
            Self::WrongCurrentPassword => "wrong_current_password",
            Self::HeadersTooLarge => "headers_too_large",
            Self::TooManyAttempts { .. } => "too_many_attempts",
            Self::MissingRefreshToken => "missing_refresh_token",
            Self::InvalidRefreshToken => "invalid_refresh_token",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::ForbiddenOrigin => "forbidden_origin",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidToken => "invalid_token",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UsernameTaken => "username_taken",
            Self::WeakPassword(_) => "weak_password",
            Self::RegistrationClosed => "registration_closed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RequestTimeout => "request_timeout",
            Self::Unavailable => "unavailable",
            Self::ServerBusy { .. } => "server_busy",
            Self::Internal(_) => "internal_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(e) => tracing::error!(error = format!("{e:#}"), "internal error"),
            Self::Unavailable => tracing::warn!("store unavailable"),
            other => tracing::debug!(code = other.code(), "request refused"),
        }
        let body = Json(ErrorBody {
            error: self.code(),
            message: self.to_string(),
        });
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        match &self {
            Self::Unauthenticated => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="latchkey""#),
                );
            }
            Self::InvalidToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        r#"Bearer realm="latchkey", error="invalid_token", error_description="the access token is invalid or expired""#,
                    ),
                );
            }
            Self::TooManyAttempts { retry_after } | Self::ServerBusy { retry_after } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from((*retry_after).max(1)),
                );
            }
            // The rest of the body may still be on its way: the connection
            // cannot carry another request (RFC 9110 §15.5.9).
            Self::RequestTimeout => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UsernameTaken => Self::UsernameTaken,
            StoreError::Database(cause) => Self::Internal(cause.into()),
        }
    }
}

impl ApiError {
    /// A failed password hash or check: a full hashing queue is `503
    /// server_busy`, anything else is internal.
    pub fn from_hashing(e: anyhow::Error) -> Self {
        if e.is::<crate::auth::password::Busy>() {
            Self::ServerBusy { retry_after: 1 }
        } else {
            Self::Internal(e)
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
    use super::ApiError;
    use crate::auth::password_policy::Weakness;

    #[test]
    fn every_code_is_listed_for_the_openapi_description() {
        let all = [
            ApiError::InvalidRequest(String::new()),
            ApiError::InvalidCredentials,
            ApiError::WrongCurrentPassword,
            ApiError::HeadersTooLarge,
            ApiError::TooManyAttempts { retry_after: 1 },
            ApiError::MissingRefreshToken,
            ApiError::InvalidRefreshToken,
            ApiError::RefreshTokenReused,
            ApiError::ForbiddenOrigin,
            ApiError::Unauthenticated,
            ApiError::InvalidToken,
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
            ApiError::UsernameTaken,
            ApiError::WeakPassword(Weakness::TooShort),
            ApiError::RegistrationClosed,
            ApiError::PayloadTooLarge,
            ApiError::UnsupportedMediaType,
            ApiError::RequestTimeout,
            ApiError::Unavailable,
            ApiError::ServerBusy { retry_after: 1 },
            ApiError::Internal(anyhow::anyhow!("x")),
        ];
        let codes: Vec<&str> = all.iter().map(ApiError::code).collect();
        assert_eq!(codes, ApiError::CODES);
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
