//! How the core's answers become responses. The one place `Set-Cookie` is
//! written: every cookie latchkey sets or clears passes through
//! [`SetCookies`]'s `IntoResponseParts`.

use axum::Json;
use axum::http::HeaderValue;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Issued, Refused, SetCookies};

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

/// The error, with the clearing cookie when there is one.
impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.cookies, self.error).into_response()
    }
}
