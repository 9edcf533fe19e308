//! The HTTP surface: one file per area, assembled here with the layers every
//! response passes through. Each area documents its handlers for the OpenAPI
//! description as it routes them (`openapi.rs`).

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::response::Response;
use tower::ServiceBuilder;
use tower::util::MapResponseLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::{ApiError, Auth};
use crate::config::Config;

mod assets;
pub(crate) mod body;
pub(crate) mod email;
pub(crate) mod error;
pub(crate) mod extract;
mod forwarded;
mod health;
mod limits;
mod login;
mod logout;
mod me;
pub(crate) mod metrics;
pub(crate) mod openapi;
pub(crate) mod origin;
mod outbox;
pub(crate) mod pages;
mod password;
mod reauthenticate;
pub(crate) mod recovery;
mod register;
pub(crate) mod request_id;
pub(crate) mod request_log;
mod respond;
mod second_factor;
mod sessions;
mod timeout;
mod token;
mod well_known;

/// Largest request body accepted: credentials are a few hundred bytes.
pub const BODY_LIMIT: usize = 4 * 1024;

/// Pages may load only their own scripts and styles (no inline script), may
/// not be framed, and post forms only to this origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    object-src 'none'; base-uri 'none'";

/// How long a browser may keep a CORS preflight's answer.
const CORS_MAX_AGE: Duration = Duration::from_secs(600);

/// A header a layer of `router` puts on each response that lacks it, and
/// why (the OpenAPI description repeats the reason beside it).
pub(crate) struct LayerHeader {
    pub name: HeaderName,
    pub value: HeaderValue,
    pub why: &'static str,
}

/// On every response but the static assets: tokens and personal data.
pub(crate) static NO_STORE: [LayerHeader; 2] = [
    LayerHeader {
        name: header::CACHE_CONTROL,
        value: HeaderValue::from_static("no-store"),
        why: "Tokens and personal data are never cached",
    },
    LayerHeader {
        name: header::PRAGMA,
        value: HeaderValue::from_static("no-cache"),
        why: "For HTTP/1.0 caches",
    },
];

/// On every response but a JSON answer's, which gets the first alone (see
/// [`security_headers`]); what they guard is the pages.
pub(crate) static SECURITY_HEADERS: [LayerHeader; 4] = [
    LayerHeader {
        name: header::X_CONTENT_TYPE_OPTIONS,
        value: HeaderValue::from_static("nosniff"),
        why: "No sniffing",
    },
    LayerHeader {
        name: header::CONTENT_SECURITY_POLICY,
        value: HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        why: "Only the page's own scripts and styles (no inline script), no framing, \
            forms posted only to this origin",
    },
    LayerHeader {
        name: header::X_FRAME_OPTIONS,
        value: HeaderValue::from_static("DENY"),
        why: "No framing",
    },
    LayerHeader {
        name: header::REFERRER_POLICY,
        value: HeaderValue::from_static("same-origin"),
        why: "Keeps `Origin` meaningful on same-origin form posts",
    },
];

/// With TLS on (README, "TLS"), on every response: a browser that has seen
/// it reaches this host and its subdomains over HTTPS only, for `max-age`
/// seconds, and will not let its user click through a certificate warning
/// (RFC 6797). Over plain HTTP browsers ignore it (RFC 6797 §8.1), so it is
/// not sent there.
pub(crate) fn strict_transport_security(config: &Config) -> Option<LayerHeader> {
    let tls = config.server.tls.as_ref()?;
    let value = format!("max-age={}; includeSubDomains", tls.hsts_max_age.as_secs());
    Some(LayerHeader {
        name: header::STRICT_TRANSPORT_SECURITY,
        value: HeaderValue::from_str(&value).ok()?,
        why: "HTTPS only, for this host and its subdomains (`HSTS_MAX_AGE`)",
    })
}

/// latchkey's routes over `auth`, with the layers every response passes
/// through. It can be nested under any prefix (`Router::nest("/auth", …)`):
/// links and redirects follow the prefix; the cookies keep `Path=/`, as
/// `__Host-` requires. Every answer is counted in the HTTP metrics, which
/// [`Auth::metrics_text`] reports.
pub fn router(auth: Auth) -> Router {
    router_counting(auth, true)
}

/// As [`router`], with the HTTP metrics' layer only when `count_requests`:
/// the binary leaves it out when it serves no metrics (`METRICS_BIND`
/// unset), since nothing could read them.
pub(crate) fn router_counting(auth: Auth, count_requests: bool) -> Router {
    // Set below, once the description is complete.
    let described = Arc::new(std::sync::OnceLock::new());
    // Everything but what `assets` holds below: tokens and personal data, never cached.
    let (dynamic, mut api) = openapi::root()
        .merge(pages::router())
        .merge(login::router())
        .merge(token::router())
        .merge(logout::router())
        .merge(password::router())
        .merge(reauthenticate::router())
        .merge(register::router())
        .merge(me::router())
        .merge(second_factor::router())
        .merge(sessions::router())
        .merge(health::router())
        .merge(openapi::router(described.clone()))
        // Only while latchkey sends mail: without it there is no way to
        // recover an account, and no path pretends there is (README,
        // "Account recovery").
        .merge(mail_routes(auth.config()))
        .split_for_parts();
    // The static assets and the published keys: public, and cached.
    let (assets, assets_api) = assets::router()
        .merge(well_known::router())
        .split_for_parts();
    let cached: Vec<String> = assets_api.paths.paths.keys().cloned().collect();
    api.merge(assets_api);
    // On every response when TLS is on; empty otherwise.
    let everywhere: Option<Arc<[LayerHeader]>> =
        strict_transport_security(auth.config()).map(|hsts| Arc::from([hsts]));
    let _ = described.set(openapi::serve(
        api,
        auth.refresh_cookie_name(),
        auth.config().server.request_timeout,
        &cached,
        everywhere.as_deref().unwrap_or_default(),
    ));

    // Each `Router::layer` call wraps every route in one more boxed service,
    // cloned and boxed again on every request, so the layers go in as one
    // `ServiceBuilder` stack per router (outermost first), which is boxed once.
    let dynamic = dynamic
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(
            ServiceBuilder::new()
                .map_response(set_headers(&NO_STORE[..]))
                .layer(DefaultBodyLimit::max(BODY_LIMIT)),
        );

    let cors = cors(auth.config());
    dynamic
        .merge(assets.method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed }))
        .fallback(|| async { ApiError::NotFound })
        .layer(
            ServiceBuilder::new()
                // Outermost, so that the time counted covers every layer below
                // and the status counted is the one the client gets.
                .option_layer(count_requests.then(|| metrics::HttpMetricsLayer(auth.clone())))
                // The request's id (a client's stands only if it is safe to
                // log) on the request, its log lines and its answer.
                .layer(request_log::RequestScopeLayer::new())
                // Outside every layer that answers by itself, so that no
                // answer goes without it: not a `431`, a CORS preflight, a
                // `408` or a `404`.
                .option_layer(everywhere.map(|headers| MapResponseLayer::new(set_headers(headers))))
                .layer(limits::HeaderLimitsLayer)
                .option_layer(cors)
                .map_response(security_headers)
                // Innermost, so that its `408` passes every layer above (the
                // request id, CORS, the security headers) like any answer.
                .layer(timeout::RequestTimeoutLayer(
                    auth.config().server.request_timeout,
                )),
        )
        .with_state(auth)
}

/// The endpoints and pages that send mail, when latchkey does; the
/// development outbox, when that is where mail goes.
fn mail_routes(config: &Config) -> utoipa_axum::router::OpenApiRouter<Auth> {
    let routes = utoipa_axum::router::OpenApiRouter::new();
    if !config.mail.sends() {
        return routes;
    }
    let routes = routes.merge(recovery::router()).merge(email::router());
    match config.mail.transport {
        crate::config::MailTransport::Outbox(_) => routes.merge(outbox::router()),
        _ => routes,
    }
}

/// Puts each of `headers` on a response that lacks it (a handler's own
/// value stands).
fn set_headers<H>(headers: H) -> impl Fn(Response) -> Response + Clone + Send + Sync + 'static
where
    H: Deref<Target = [LayerHeader]> + Clone + Send + Sync + 'static,
{
    move |mut response| {
        let present = response.headers_mut();
        for header in headers.iter() {
            if !present.contains_key(&header.name) {
                present.insert(header.name.clone(), header.value.clone());
            }
        }
        response
    }
}

/// The security headers: all of them on what a browser may render (pages,
/// scripts, styles, images), `nosniff` alone on a JSON answer. A browser
/// never renders JSON (`nosniff` holds it to its type), so a policy for
/// documents, framing and referrers says nothing there, and leaving those
/// three off is most of the bytes of the commonest answers (README,
/// "Errors and headers").
fn security_headers(mut response: Response) -> Response {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    let wanted = if json { 1 } else { SECURITY_HEADERS.len() };
    let present = response.headers_mut();
    for header in &SECURITY_HEADERS[..wanted] {
        if !present.contains_key(&header.name) {
            present.insert(header.name.clone(), header.value.clone());
        }
    }
    response
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
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            // Beyond the CORS-safelisted ones, what `latchkey.js` reads: the
            // step-up challenge and how long to wait before trying again.
            .expose_headers([header::WWW_AUTHENTICATE, header::RETRY_AFTER])
            .max_age(CORS_MAX_AGE),
    )
}
