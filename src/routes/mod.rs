//! The HTTP surface: one file per area, assembled here with the layers every
//! response passes through. Each area documents its handlers for the OpenAPI
//! description as it routes them (`openapi.rs`).

use axum::extract::DefaultBodyLimit;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{Method, Request};
use axum::{Extension, Router};
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::auth::{ApiError, Auth};
use crate::config::Config;
use request_id::REQUEST_ID;

mod assets;
pub(crate) mod body;
pub(crate) mod extract;
mod forwarded;
mod health;
mod limits;
mod login;
mod logout;
mod me;
pub(crate) mod openapi;
pub(crate) mod origin;
pub(crate) mod pages;
mod password;
mod register;
pub(crate) mod request_id;
mod respond;
mod sessions;
mod timeout;
mod token;

/// Largest request body accepted: credentials are a few hundred bytes.
pub const BODY_LIMIT: usize = 4 * 1024;

/// Pages may load only their own scripts and styles (no inline script), may
/// not be framed, and post forms only to this origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    object-src 'none'; base-uri 'none'";

/// latchkey's routes over `auth`, with the layers every response passes
/// through. It can be nested under any prefix (`Router::nest("/auth", …)`):
/// links and redirects follow the prefix; the cookies keep `Path=/`, as
/// `__Host-` requires.
pub fn router(auth: Auth) -> Router {
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
    let document = openapi::serve(api, auth.refresh_cookie_name(), &cached);

    // Each `Router::layer` call wraps every route in one more boxed service,
    // cloned and boxed again on every request, so the layers go in as one
    // `ServiceBuilder` stack per router (outermost first), which is boxed once.
    let dynamic = dynamic
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(
            ServiceBuilder::new()
                .layer(header_layer(header::PRAGMA, "no-cache"))
                .layer(header_layer(header::CACHE_CONTROL, "no-store"))
                .layer(DefaultBodyLimit::max(BODY_LIMIT))
                .layer(Extension(document)),
        );

    let cors = cors(auth.config());
    dynamic
        .merge(assets.method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed }))
        .fallback(|| async { ApiError::NotFound })
        .layer(
            ServiceBuilder::new()
                // A client's id stands only if it is safe to log; otherwise it
                // goes here, and the next layer makes one.
                .map_request(request_id::drop_unacceptable)
                .layer(SetRequestIdLayer::new(
                    REQUEST_ID.clone(),
                    request_id::ProcessUnique::new(),
                ))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request<_>| {
                            let request_id = req
                                .headers()
                                .get(&REQUEST_ID)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-");
                            // The path only: a query string is no place for
                            // secrets, but clients put them there anyway.
                            tracing::info_span!("request", method = %req.method(), path = req.uri().path(), request_id)
                        })
                        // One line per request is an access log, which the
                        // reverse proxy keeps already; here it would cost a
                        // third of `/protected`'s throughput (README,
                        // Performance). `RUST_LOG=tower_http=debug` brings it back.
                        .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
                )
                .layer(axum::middleware::from_fn(limits::header_limits))
                .option_layer(cors)
                // Keeps `Origin` meaningful on same-origin form posts (see API.md).
                .layer(header_layer(header::REFERRER_POLICY, "same-origin"))
                .layer(header_layer(header::X_FRAME_OPTIONS, "DENY"))
                .layer(header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .layer(header_layer(
                    header::CONTENT_SECURITY_POLICY,
                    CONTENT_SECURITY_POLICY,
                ))
                // Innermost, so that its `408` passes every layer above (the
                // request id, CORS, the security headers) like any answer.
                .layer(timeout::RequestTimeoutLayer(auth.config().server.request_timeout)),
        )
    .with_state(auth)
}

fn header_layer(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

/// Credentialed CORS for the configured origins only: each allowed origin is
/// echoed exactly (never `*`), with `Vary: Origin`.
fn cors(config: &Config) -> Option<CorsLayer> {
    let origins = &config.origins.cors_allowed;
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
