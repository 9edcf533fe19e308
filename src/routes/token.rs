//! `POST /token`: rotate the refresh cookie and hand out a new access token.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::SET_COOKIE;
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;

use crate::auth::cookies::Presented;
use crate::auth::extract::ClientInfo;
use crate::auth::origin::AllowedOrigin;
use crate::auth::session::{self, Issued};
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/token", post(refresh))
}

/// The body of a successful login or refresh (RFC 6749 §5.1 names).
#[derive(Debug, Serialize)]
pub struct TokenBody {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

/// JSON with the access token, and the refresh token in its cookie.
pub(crate) fn issued_response(state: &AppState, issued: Issued) -> Response {
    let cookie = state
        .cookies
        .set(issued.refresh_token, issued.refresh_max_age);
    let body = TokenBody {
        access_token: issued.access_token,
        token_type: "Bearer",
        expires_in: state.keys.access_ttl(),
    };
    (
        AppendHeaders([(SET_COOKIE, cookie.to_string())]),
        Json(body),
    )
        .into_response()
}

/// An error that also tells the browser to forget the refresh cookie.
pub(crate) fn clearing(state: &AppState, error: ApiError) -> Response {
    let cookie = state.cookies.clear();
    (AppendHeaders([(SET_COOKIE, cookie.to_string())]), error).into_response()
}

async fn refresh(
    State(state): State<AppState>,
    _: AllowedOrigin,
    client: ClientInfo,
    headers: HeaderMap,
) -> Response {
    let token = match state.cookies.presented(&headers) {
        Presented::None => return ApiError::MissingRefreshToken.into_response(),
        Presented::Ambiguous => return clearing(&state, ApiError::InvalidRefreshToken),
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
