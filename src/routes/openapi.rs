//! The OpenAPI description, served at `GET /openapi.json`.
//!
//! Operations come from the `#[utoipa::path]` annotation beside each handler,
//! collected by utoipa-axum's `OpenApiRouter` as each area registers its
//! handlers with `routes!`: a documented path is a routed path. This file adds
//! the document root (info, tags, security schemes, shared refusals) and what
//! the layers of `router` add to every response.
//!
//! Convention: a response header named in an annotation is sent on every
//! response of that status; one sent only sometimes is described in words.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::limits::{MAX_HEADER_BYTES, MAX_HEADERS_BYTES};
use super::{BODY_LIMIT, LayerHeader, NO_STORE, SECURITY_HEADERS};
use crate::auth::ApiError;
use crate::auth::Auth;
use crate::routes::error::{BEARER_CHALLENGE, ErrorBody, MIN_RETRY_AFTER};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "latchkey",
        description = "A session backend for browsers: short-lived JWT access tokens in JSON, \
            a rotating refresh token in an HttpOnly cookie, reuse detection. \
            Errors from API endpoints are JSON `{\"error\", \"message\"}`."
    ),
    tags(
        (name = "session", description = "Signing in, refreshing the access token, signing out"),
        (name = "account", description = "The access token's holder and their password"),
        (name = "sessions", description = "The caller's sessions, and revoking them"),
        (name = "pages", description = "Server-rendered pages and their assets"),
        (name = "service", description = "Health and this description"),
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// How every Bearer endpoint refuses a request.
#[derive(IntoResponses)]
#[allow(dead_code)] // described, never built: the extractor returns `ApiError`
pub(crate) enum BearerRefusals {
    /// `invalid_request`: more than one `Authorization` header.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// `unauthenticated` (no token) or `invalid_token` (bad or expired).
    #[response(status = 401, headers(("www-authenticate" = String)))]
    Unauthorized(ErrorBody),
}

/// How account actions refuse a token: as [`BearerRefusals`], and also a
/// token whose session is no longer live (README, "How sessions work").
#[derive(IntoResponses)]
#[allow(dead_code)] // described, never built: the extractors return `ApiError`
pub(crate) enum LiveBearerRefusals {
    /// `invalid_request`: more than one `Authorization` header.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// `unauthenticated` (no token) or `invalid_token` (bad or expired, or
    /// its session was logged out, revoked, evicted or has expired).
    #[response(status = 401, headers(("www-authenticate" = String)))]
    Unauthorized(ErrorBody),
}

/// How endpoints that read a body refuse an unreadable one.
#[derive(IntoResponses)]
#[allow(dead_code)] // described, never built: the extractors return `ApiError`
pub(crate) enum BodyRefusals {
    #[response(
        status = 413,
        description = format!("`payload_too_large`: the body is over {BODY_LIMIT} bytes")
    )]
    PayloadTooLarge(ErrorBody),
    /// `unsupported_media_type`: neither JSON nor (where accepted) form-encoded.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
}

/// `GET /openapi.json`, answering what is put in `document` once the whole
/// router, and so the description, is built. Only this route carries it:
/// an extension on every request would be an allocation on every request.
pub(crate) fn router(document: Arc<OnceLock<Served>>) -> OpenApiRouter<Auth> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .layer(Extension(document))
}

/// The root every area's router merges into.
pub(crate) fn root() -> OpenApiRouter<Auth> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
}

/// The description as served: built once by `router`.
#[derive(Clone)]
pub(crate) struct Served(Bytes);

/// This description (OpenAPI 3.1).
#[utoipa::path(
    get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "This document", body = Object))
)]
async fn openapi_json(Extension(document): Extension<Arc<OnceLock<Served>>>) -> Response {
    match document.get() {
        Some(Served(document)) => {
            ([(CONTENT_TYPE, "application/json")], document.clone()).into_response()
        }
        None => ApiError::Unavailable.into_response(),
    }
}

/// Completes the collected description: security schemes (the cookie under
/// its configured name), what `router`'s layers add, and header schemas.
/// `cached` lists the paths outside the `no-store` layer (the static assets and the published keys);
/// `on_every_response` the headers of the outermost layer (`Strict-Transport-Security`, with TLS).
pub(crate) fn serve(
    mut document: Document,
    cookie_name: &str,
    request_timeout: Duration,
    cached: &[String],
    on_every_response: &[LayerHeader],
) -> Served {
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some("The access token from `POST /login` or `POST /token`"))
                .build(),
        ),
    );
    components.add_security_scheme(
        "refresh_cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            cookie_name,
            "The refresh token, set by `POST /login` and rotated by `POST /token`",
        ))),
    );
    let mut value = match serde_json::to_value(&document) {
        Ok(value) => value,
        // Plain data with string keys: serializing it cannot fail.
        Err(e) => json!({ "error": e.to_string() }),
    };
    let everywhere = [
        // `limits::header_limits` runs before routing.
        refusal(
            ApiError::HeadersTooLarge,
            &format!(
                "a header over {MAX_HEADER_BYTES} bytes, or over {MAX_HEADERS_BYTES} bytes in all"
            ),
        ),
        // `timeout::RequestTimeoutLayer` wraps every route.
        refusal(
            ApiError::RequestTimeout,
            &format!(
                "reading the body and answering took longer than `REQUEST_TIMEOUT` \
                 ({} s here); the connection closes",
                request_timeout.as_secs_f64()
            ),
        ),
    ];
    // Before `complete`, so that the layers' headers go on these too.
    describe_outages(&mut value);
    complete(
        &mut value,
        cookie_name,
        &everywhere,
        cached,
        on_every_response,
    );
    Served(Bytes::from(value.to_string()))
}

/// The operations that answer without the database: the pages, the static
/// files and the documents built from configuration alone. Every other one
/// answers `503 unavailable` while the database does not answer (README,
/// "When the database goes away"); even `GET /protected`, whose EdDSA and
/// ES256 keys come from the store until they are first loaded.
const WITHOUT_STORE: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/login"),
    ("get", "/register"),
    ("get", "/app"),
    ("get", "/livez"),
    ("get", "/openapi.json"),
    ("get", "/static/{file}"),
    ("get", "/.well-known/openid-configuration"),
    ("get", "/password/forgot"),
    ("get", "/password/reset"),
    ("get", "/email/verify"),
    ("get", "/dev/outbox"),
    // Answered before any lookup: the work comes after (README, "Account recovery").
    ("post", "/password/forgot"),
];

/// Adds `503 unavailable`, with its `Retry-After`, to every operation that
/// needs the database, beside any `503` it already describes.
fn describe_outages(document: &mut Value) {
    let (_, outage) = refusal(
        ApiError::Unavailable,
        "the database does not answer; try again after `Retry-After`",
    );
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            if WITHOUT_STORE.contains(&(method.as_str(), path.as_str())) {
                continue;
            }
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            let Some(existing) = responses.get_mut("503") else {
                responses.insert("503".into(), outage.clone());
                continue;
            };
            let described = existing["description"].as_str().unwrap_or_default();
            if !described.contains("`unavailable`") {
                existing["description"] = Value::String(format!(
                    "{described}; {}",
                    outage["description"].as_str().unwrap_or_default()
                ));
            }
            // `Retry-After` is on every 503: `server_busy` and `unavailable` alike.
            let headers = existing
                .as_object_mut()
                .map(|response| response.entry("headers").or_insert_with(|| json!({})));
            if let Some(Value::Object(headers)) = headers {
                headers
                    .entry("retry-after")
                    .or_insert_with(|| json!({ "schema": { "type": "string" } }));
            }
        }
    }
}

/// A refusal of a layer that wraps every route, described from the error
/// itself: its status, its code, and the header it carries.
fn refusal(error: ApiError, why: &str) -> (String, Value) {
    let mut response = json!({
        "description": format!("`{}`: {why}", error.code()),
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } },
    });
    if let Some((name, value)) = super::error::header(&error)
        && let Ok(value) = value.to_str()
    {
        response["headers"] =
            json!({ name.as_str(): { "schema": { "type": "string", "const": value } } });
    }
    (super::error::status(&error).as_str().to_owned(), response)
}

fn complete(
    document: &mut Value,
    cookie_name: &str,
    everywhere: &[(String, Value)],
    cached: &[String],
    on_every_response: &[LayerHeader],
) {
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let no_store = !cached.contains(path);
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut() {
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            for response in responses.values_mut() {
                layer_headers(response, no_store);
            }
            // Outside the `no-store` layer: none of its headers.
            for (status, response) in everywhere {
                responses.insert(status.clone(), response.clone());
            }
            for response in responses.values_mut() {
                if !on_every_response.is_empty()
                    && let Some(headers) = headers_of(response)
                {
                    for layer in on_every_response {
                        insert_constant(headers, layer);
                    }
                }
                header_schemas(response, cookie_name);
            }
        }
    }
}

/// The headers `router`'s layers put on the responses they wrap. The
/// security headers are described where they matter: on the pages. Where
/// the answer may be a page or JSON, those a JSON answer goes without
/// (`security_headers` in `mod.rs`) are described as the page's only.
fn layer_headers(response: &mut Value, no_store: bool) {
    let html = response.pointer("/content/text~1html").is_some();
    let json = response.pointer("/content/application~1json").is_some();
    let mut layers = Vec::new();
    if no_store {
        layers.extend(&NO_STORE);
    }
    if html {
        layers.extend(&SECURITY_HEADERS[..1]);
    }
    if layers.is_empty() {
        return;
    }
    let Some(headers) = headers_of(response) else {
        return;
    };
    for layer in layers {
        insert_constant(headers, layer);
    }
    if html {
        for layer in &SECURITY_HEADERS[1..] {
            if let Ok(value) = layer.value.to_str() {
                let mut header = constant(value, layer.why);
                if json {
                    header["required"] = Value::Bool(false);
                    header["description"] =
                        Value::String(format!("On the HTML page only: {}", layer.why));
                }
                headers.insert(layer.name.as_str().into(), header);
            }
        }
    }
}

fn insert_constant(headers: &mut Map<String, Value>, layer: &LayerHeader) {
    if let Ok(value) = layer.value.to_str() {
        headers.insert(layer.name.as_str().into(), constant(value, layer.why));
    }
}

/// Schemas, descriptions where none is given, and `required` for the headers
/// the annotations name: utoipa's header tuples take a type and a literal
/// description only, and the facts below have their homes elsewhere.
fn header_schemas(response: &mut Value, cookie_name: &str) {
    let Some(headers) = response.get_mut("headers").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, header) in headers.iter_mut() {
        let (schema, description) = match name.as_str() {
            "set-cookie" => (Some(pattern(&format!("^{}=", literal(cookie_name)))), None),
            "www-authenticate" => (
                Some(pattern(&format!("^{}", literal(BEARER_CHALLENGE)))),
                Some(
                    "The RFC 6750 challenge; with `error=\"invalid_token\"` and a description \
                     when the token is bad or expired, or (RFC 9470) with \
                     `error=\"insufficient_user_authentication\"`, a description and \
                     `max_age` when the action needs a more recent password",
                ),
            ),
            "retry-after" => (
                Some(json!({ "type": "integer", "minimum": MIN_RETRY_AFTER })),
                Some("Seconds to wait before trying again"),
            ),
            "location" => (Some(pattern("^/")), None),
            "connection" => (None, Some("The connection closes after this answer")),
            _ => (None, None),
        };
        if let Some(schema) = schema {
            header["schema"] = schema;
        }
        if let Some(description) = description
            && header.get("description").is_none()
        {
            header["description"] = description.into();
        }
        // Required unless described as the HTML page's only (`layer_headers`).
        if header.get("required").is_none() {
            header["required"] = Value::Bool(true);
        }
    }
}

fn headers_of(response: &mut Value) -> Option<&mut Map<String, Value>> {
    response
        .as_object_mut()?
        .entry("headers")
        .or_insert_with(|| json!({}))
        .as_object_mut()
}

fn constant(value: &str, description: &str) -> Value {
    json!({
        "description": description,
        "required": true,
        "schema": { "type": "string", "const": value },
    })
}

fn pattern(regex: &str) -> Value {
    json!({ "type": "string", "pattern": regex })
}

/// `text` as a regular expression that matches it literally.
fn literal(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
