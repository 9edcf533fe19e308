//! `POST /logout`: end the cookie's session. Always succeeds.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Auth, BrowserCookies, ClientInfo};
use crate::routes::body::is_form;
use crate::routes::error::ErrorBody;
use crate::routes::extract::Base;
use crate::routes::origin::AllowedOrigin;

pub(crate) fn router() -> OpenApiRouter<Auth> {
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
    State(auth): State<Auth>,
    _: AllowedOrigin,
    client: ClientInfo,
    cookies: BrowserCookies,
    base: Base,
    headers: HeaderMap,
) -> Response {
    let clear = match auth.log_out(&cookies, &client).await {
        Ok(clear) => clear,
        Err(e) => return e.into_response(),
    };
    if is_form(&headers) {
        (clear, Redirect::to(&base.to("/login"))).into_response()
    } else {
        (clear, StatusCode::NO_CONTENT).into_response()
    }
}
