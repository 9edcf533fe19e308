//! `POST /token`: rotate the refresh cookie and hand out a new access token.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Auth, BrowserCookies, ClientInfo};
use crate::routes::error::ErrorBody;
use crate::routes::origin::AllowedOrigin;
use crate::routes::respond::TokenBody;

pub(crate) fn router() -> OpenApiRouter<Auth> {
    OpenApiRouter::new().routes(routes!(refresh))
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
        (status = 429, description = "`too_many_attempts`: more than `MAX_REFRESHES_PER_MINUTE` \
            refreshes of this session; the cookie is kept, try again after `Retry-After`",
            body = ErrorBody, headers(("retry-after" = String))),
    )
)]
async fn refresh(
    State(auth): State<Auth>,
    _: AllowedOrigin,
    client: ClientInfo,
    cookies: BrowserCookies,
) -> Response {
    auth.refresh(&cookies, &client).await.into_response()
}
