//! `GET /static/…`: the pages' stylesheet and scripts, compiled into the
//! binary so latchkey serves them wherever it runs from.

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::ApiError;
use crate::auth::Auth;
use crate::routes::error::ErrorBody;

const FILES: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../static/style.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../static/favicon.svg"),
    ),
    (
        "latchkey.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/latchkey.js"),
    ),
    (
        "link.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/link.js"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/app.js"),
    ),
];

pub(crate) fn router() -> OpenApiRouter<Auth> {
    OpenApiRouter::new().routes(routes!(asset))
}

/// The pages' stylesheet, icon and scripts, including the browser client
/// `latchkey.js` that SPA frontends can use.
#[utoipa::path(
    get, path = "/static/{file}", tag = "pages",
    params(("file" = String, Path, example = "latchkey.js",
        description = "`style.css`, `favicon.svg`, `latchkey.js`, `link.js` or `app.js`")),
    responses(
        (status = 200, description = "The file; cached for five minutes",
            content(
                (String = "text/css"),
                (String = "image/svg+xml"),
                (String = "text/javascript"),
            ),
            headers(("cache-control" = String, description = "`public, max-age=300`"))),
        (status = 404, description = "`not_found`: no such file", body = ErrorBody),
    )
)]
async fn asset(file: Result<Path<String>, PathRejection>) -> Response {
    let Ok(Path(file)) = file else {
        return ApiError::NotFound.into_response();
    };
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => (
            [
                (CONTENT_TYPE, *content_type),
                (CACHE_CONTROL, "public, max-age=300"),
            ],
            *body,
        )
            .into_response(),
        None => ApiError::NotFound.into_response(),
    }
}
