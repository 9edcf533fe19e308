//! `POST /logout`: end the cookie's session. Always succeeds.

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::ClientInfo;
use crate::auth::origin::AllowedOrigin;
use crate::auth::session;
use crate::error::ErrorBody;
use crate::routes::body::is_form;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(logout))
}

/// Ends the refresh cookie's session and clears the cookie; without a
/// cookie there is nothing to end, and it still succeeds.
#[utoipa::path(
    post, path = "/logout", tag = "session",
    security((), ("refresh_cookie" = [])),
    responses(
        (status = 204, description = "Signed out",
            headers(("set-cookie" = String, description = "The clearing cookie (`Max-Age=0`)"))),
        (status = 303, description = "Signed out (the HTML form, `Content-Type: \
            application/x-www-form-urlencoded`): on to the login page",
            headers(
                ("set-cookie" = String, description = "The clearing cookie (`Max-Age=0`)"),
                ("location" = String, description = "`/login`"),
            )),
        (status = 403, description = "`forbidden_origin`: a cross-site request", body = ErrorBody),
    )
)]
async fn logout(
    State(state): State<AppState>,
    _: AllowedOrigin,
    client: ClientInfo,
    headers: HeaderMap,
) -> Response {
    // Several cookies of the name (one planted beside the real one): each
    // genuine one ends its session, so the real one cannot survive a logout.
    for token in state.cookies.presented(&headers).all() {
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
