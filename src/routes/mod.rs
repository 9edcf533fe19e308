//! The HTTP surface: one file per area, assembled here with the layers every
//! response passes through. Each area documents its handlers for the OpenAPI
//! description as it routes them (`openapi.rs`).

use axum::extract::DefaultBodyLimit;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{Method, Request};
use axum::{Extension, Router};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::error::ApiError;
use crate::state::AppState;

mod assets;
pub(crate) mod body;
mod health;
mod limits;
mod login;
mod logout;
mod me;
pub(crate) mod openapi;
pub(crate) mod pages;
mod password;
mod register;
mod sessions;
mod token;

/// Largest request body accepted: credentials are a few hundred bytes.
pub const BODY_LIMIT: usize = 4 * 1024;

/// Pages may load only their own scripts and styles (no inline script), may
/// not be framed, and post forms only to this origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    object-src 'none'; base-uri 'none'";

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn build_app(state: AppState) -> Router {
    // Everything but the static assets: tokens and personal data, never cached.
    let (dynamic, mut api) = openapi::root()
        .merge(pages::router())
        .merge(login::router())
        .merge(token::router())
        .merge(logout::router())
        .merge(password::router())
        .merge(register::router())
        .merge(me::router())
        .merge(sessions::router())
        .merge(health::router())
        .merge(openapi::router())
        .split_for_parts();
    let (assets, assets_api) = assets::router().split_for_parts();
    let cached: Vec<String> = assets_api.paths.paths.keys().cloned().collect();
    api.merge(assets_api);
    let document = openapi::serve(api, state.cookies.name(), &cached);

    let dynamic = dynamic
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(Extension(document))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(header_layer(header::CACHE_CONTROL, "no-store"))
        .layer(header_layer(header::PRAGMA, "no-cache"));

    let mut app = dynamic
        .merge(assets.method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed }))
        .fallback(|| async { ApiError::NotFound })
        .layer(header_layer(
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY,
        ))
        .layer(header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header_layer(header::X_FRAME_OPTIONS, "DENY"))
        // Keeps `Origin` meaningful on same-origin form posts (see API.md).
        .layer(header_layer(header::REFERRER_POLICY, "same-origin"));

    if let Some(cors) = cors(&state) {
        app = app.layer(cors);
    }
    app = app.layer(axum::middleware::from_fn(limits::header_limits));

    app.layer(
        TraceLayer::new_for_http()
            .make_span_with(|req: &Request<_>| {
                let request_id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                // The path only: a query string is no place for secrets, but
                // clients put them there anyway.
                tracing::info_span!("request", method = %req.method(), path = req.uri().path(), request_id)
            })
            .on_response(DefaultOnResponse::new().level(Level::INFO)),
    )
    .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
    .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
    .with_state(state)
}

fn header_layer(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

/// Credentialed CORS for the configured origins only: each allowed origin is
/// echoed exactly (never `*`), with `Vary: Origin`.
fn cors(state: &AppState) -> Option<CorsLayer> {
    let origins = &state.config.cors_allowed_origins;
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(std::time::Duration::from_secs(600)),
    )
}
