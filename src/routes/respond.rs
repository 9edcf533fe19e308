//! How the core's answers become responses. The one place `Set-Cookie` is
//! written: every cookie latchkey sets or clears passes through
//! [`SetCookies`]'s `IntoResponseParts`.

use axum::Json;
use axum::http::HeaderValue;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{ApiError, Issued, LoginCompleted, Refused, SetCookies, SignIn};
use crate::routes::second_factor::Enrolment;

impl IntoResponseParts for SetCookies {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        for cookie in self.0 {
            // A cookie's name and value are latchkey's own base64url
            // tokens, so the header is always valid.
            if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
                res.headers_mut().append(SET_COOKIE, value);
            }
        }
        Ok(res)
    }
}

/// The body of a successful login or refresh (RFC 6749 §5.1 names).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenBody {
    /// A JWT (`typ: at+jwt`, signed as `ACCESS_TOKEN_ALGORITHM` says) for
    /// `Authorization: Bearer`.
    pub access_token: String,
    #[schema(value_type = String, pattern = "^Bearer$")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(minimum = 1)]
    pub expires_in: i64,
}

/// JSON with the access token, and the cookies in `Set-Cookie`.
impl IntoResponse for Issued {
    fn into_response(self) -> Response {
        let body = TokenBody {
            access_token: self.access_token,
            token_type: "Bearer",
            expires_in: self.expires_in,
        };
        (self.cookies, Json(body)).into_response()
    }
}

/// A `401` of `POST /login`: an error body, and with
/// `second_factor_required` what may complete the login (README, "Second
/// factor").
#[derive(Debug, Serialize, ToSchema)]
pub struct SecondFactorBody {
    /// A stable, machine-readable code: `invalid_credentials`,
    /// `second_factor_required`, or `second_factor_enrollment_required`.
    #[schema(examples("second_factor_required"))]
    pub error: &'static str,
    /// Words for people; may change.
    pub message: String,
    /// With `second_factor_required`: what may complete the login at
    /// `POST /login/second-factor` (`totp`, `recovery_code`).
    #[schema(examples(json!(["totp", "recovery_code"])))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factors: Option<&'static [&'static str]>,
    /// With `second_factor_enrollment_required`: the TOTP secret to set up
    /// in an authenticator app; a code of it at `POST /login/second-factor`
    /// turns it on and completes the login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totp: Option<Enrolment>,
}

/// The body of a login completed by its second factor: the tokens, and the
/// recovery codes when it turned the factor on.
#[derive(Serialize, ToSchema)]
pub struct SecondStepBody {
    #[serde(flatten)]
    pub tokens: TokenBody,
    /// Only when this login set the second factor up (the account's role
    /// requires one): its ten recovery codes, shown this once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recovery_codes: Vec<String>,
}

/// Signed in, or `401 second_factor_required` (or
/// `second_factor_enrollment_required`) with the pending login's cookie.
impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        let (error, challenge) = match self {
            SignIn::Issued(issued) => return issued.into_response(),
            SignIn::SecondFactorRequired(challenge) => (ApiError::SecondFactorRequired, challenge),
            SignIn::EnrollmentRequired(challenge) => {
                (ApiError::SecondFactorEnrollmentRequired, challenge)
            }
        };
        let body = SecondFactorBody {
            error: error.code(),
            message: error.to_string(),
            factors: Some(challenge.factors),
            totp: challenge.enrolment.map(Enrolment::from),
        };
        (
            axum::http::StatusCode::UNAUTHORIZED,
            challenge.cookies,
            Json(body),
        )
            .into_response()
    }
}

/// The tokens and cookies, and the recovery codes of a factor just set up.
impl IntoResponse for LoginCompleted {
    fn into_response(self) -> Response {
        let body = SecondStepBody {
            tokens: TokenBody {
                access_token: self.issued.access_token,
                token_type: "Bearer",
                expires_in: self.issued.expires_in,
            },
            recovery_codes: self.recovery_codes,
        };
        (self.issued.cookies, Json(body)).into_response()
    }
}

/// The error, with the clearing cookie when there is one.
impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.cookies, self.error).into_response()
    }
}
