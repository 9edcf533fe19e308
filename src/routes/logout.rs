//! `POST /logout`: end the cookie's session. Always succeeds.

use axum::Router;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use axum::routing::post;

use crate::auth::cookies::Presented;
use crate::auth::extract::ClientInfo;
use crate::auth::origin::AllowedOrigin;
use crate::auth::session;
use crate::routes::body::is_form;
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/logout", post(logout))
}

async fn logout(
    State(state): State<AppState>,
    _: AllowedOrigin,
    client: ClientInfo,
    headers: HeaderMap,
) -> Response {
    if let Presented::One(token) = state.cookies.presented(&headers) {
        if let Err(e) = session::end(&state, &token, "logout", &client).await {
            return e.into_response();
        }
    }
    let clear = AppendHeaders([(SET_COOKIE, state.cookies.clear().to_string())]);
    if is_form(&headers) {
        (clear, Redirect::to("/login")).into_response()
    } else {
        (clear, StatusCode::NO_CONTENT).into_response()
    }
}
