//! `POST /token`: rotate the refresh cookie and hand out a new access token.

use axum::Json;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderName};
use axum::response::{AppendHeaders, IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::cookies::Presented;
use crate::auth::extract::ClientInfo;
use crate::auth::origin::AllowedOrigin;
use crate::auth::session::{self, Issued};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(refresh))
}

/// The body of a successful login or refresh (RFC 6749 §5.1 names).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenBody {
    /// A JWT (`typ: at+jwt`, HS256) for `Authorization: Bearer`.
    pub access_token: String,
    #[schema(value_type = String, pattern = "^Bearer$")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(minimum = 1)]
    pub expires_in: i64,
}

/// JSON with the access token, and the refresh token in its cookie.
pub(crate) fn issued_response(state: &AppState, issued: Issued) -> Response {
    let cookies = issued_cookies(state, &issued);
    let body = TokenBody {
        access_token: issued.access_token,
        token_type: "Bearer",
        expires_in: state.keys.access_ttl(),
    };
    (AppendHeaders(cookies), Json(body)).into_response()
}

/// The `Set-Cookie` headers of a login or refresh: the refresh cookie, and
/// after a login the device cookie.
pub(crate) fn issued_cookies(state: &AppState, issued: &Issued) -> Vec<(HeaderName, String)> {
    let refresh = state
        .cookies
        .set(issued.refresh_token.clone(), issued.refresh_max_age);
    let device = issued
        .device_token
        .as_ref()
        .map(|token| state.cookies.device(token.clone()));
    std::iter::once(refresh)
        .chain(device)
        .map(|cookie| (SET_COOKIE, cookie.to_string()))
        .collect()
}

/// An error that also tells the browser to forget the refresh cookie.
pub(crate) fn clearing(state: &AppState, error: ApiError) -> Response {
    let cookie = state.cookies.clear();
    (AppendHeaders([(SET_COOKIE, cookie.to_string())]), error).into_response()
}

/// Trades the refresh cookie for a new access token and rotates the cookie.
/// The token rotated away less than `REFRESH_REUSE_GRACE` seconds ago is
/// honoured once more without advancing the chain; any older one revokes
/// the whole session.
#[utoipa::path(
    post, path = "/token", tag = "session",
    security(("refresh_cookie" = [])),
    responses(
        (status = 200, description = "A new access token; the rotated refresh cookie", body = TokenBody,
            headers(("set-cookie" = String, description = "The rotated refresh cookie"))),
        (status = 401, description = "`missing_refresh_token`; `invalid_refresh_token` or \
            `refresh_token_reused` (the whole session is revoked), both with a clearing `Set-Cookie`",
            body = ErrorBody),
        (status = 403, description = "`forbidden_origin`: a cross-site request", body = ErrorBody),
    )
)]
async fn refresh(
    State(state): State<AppState>,
    _: AllowedOrigin,
    client: ClientInfo,
    headers: HeaderMap,
) -> Response {
    let token = match state.cookies.presented(&headers) {
        Presented::None => return ApiError::MissingRefreshToken.into_response(),
        Presented::Ambiguous(_) => return clearing(&state, ApiError::InvalidRefreshToken),
        Presented::One(token) => token,
    };
    match session::refresh(&state, &token, &client).await {
        Ok(issued) => issued_response(&state, issued),
        Err(e @ (ApiError::InvalidRefreshToken | ApiError::RefreshTokenReused)) => {
            clearing(&state, e)
        }
        Err(e) => e.into_response(),
    }
}
