//! The OpenAPI description, served at `GET /openapi.json`.
//!
//! Operations come from the `#[utoipa::path]` annotation beside each handler,
//! collected by utoipa-axum's `OpenApiRouter` as each area registers its
//! handlers with `routes!`: a documented path is a routed path. This file adds
//! the document root (info, tags, security schemes, shared refusals) and what
//! the layers of `build_app` add to every response.
//!
//! Convention: a response header named in an annotation is sent on every
//! response of that status; one sent only sometimes is described in words.

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

use crate::auth::Auth;
use crate::auth::error::ErrorBody;

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
    #[response(
        status = 401,
        headers(("www-authenticate" = String, description = "The RFC 6750 challenge"))
    )]
    Unauthorized(ErrorBody),
}

/// How endpoints that read a body refuse an unreadable one.
#[derive(IntoResponses)]
#[allow(dead_code)] // described, never built: the extractors return `ApiError`
pub(crate) enum BodyRefusals {
    /// `payload_too_large`: the body is over 4 KiB.
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
    /// `unsupported_media_type`: neither JSON nor (where accepted) form-encoded.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
}

pub(crate) fn router() -> OpenApiRouter<Auth> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// The root every area's router merges into.
pub(crate) fn root() -> OpenApiRouter<Auth> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
}

/// The description as served: built once by `build_app`.
#[derive(Clone)]
pub(crate) struct Served(Bytes);

/// This description (OpenAPI 3.1).
#[utoipa::path(
    get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "This document", body = Object))
)]
async fn openapi_json(Extension(Served(document)): Extension<Served>) -> Response {
    ([(CONTENT_TYPE, "application/json")], document).into_response()
}

/// Completes the collected description: security schemes (the cookie under
/// its configured name), what `build_app`'s layers add, and header schemas.
/// `cached` lists the paths outside the `no-store` layer (the static assets).
pub(crate) fn serve(mut document: Document, cookie_name: &str, cached: &[String]) -> Served {
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
    complete(&mut value, cached);
    Served(Bytes::from(value.to_string()))
}

fn complete(document: &mut Value, cached: &[String]) {
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
                header_schemas(response);
            }
            // `limits::header_limits` runs before routing.
            responses.insert(
                "431".into(),
                json!({
                    "description": "`headers_too_large`: a header over 16 KiB, or over 64 KiB in all",
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } },
                }),
            );
            // `timeout::RequestTimeoutLayer` wraps every route.
            responses.insert(
                "408".into(),
                json!({
                    "description": "`request_timeout`: reading the body and answering took longer than `REQUEST_TIMEOUT`; the connection closes",
                    "headers": { "connection": constant("close", "The connection closes after this answer") },
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } },
                }),
            );
        }
    }
}

/// The headers `build_app`'s layers put on every response they wrap.
fn layer_headers(response: &mut Value, no_store: bool) {
    let html = response.pointer("/content/text~1html").is_some();
    if !no_store && !html {
        return;
    }
    let Some(headers) = headers_of(response) else {
        return;
    };
    if no_store {
        headers.insert(
            "cache-control".into(),
            constant("no-store", "Tokens and personal data are never cached"),
        );
        headers.insert("pragma".into(), constant("no-cache", "For HTTP/1.0 caches"));
    }
    if html {
        headers.insert(
            "content-security-policy".into(),
            required(
                json!({ "type": "string", "pattern": "default-src 'self'" }),
                "No inline script, no framing",
            ),
        );
        headers.insert("x-frame-options".into(), constant("DENY", "No framing"));
        headers.insert(
            "x-content-type-options".into(),
            constant("nosniff", "No sniffing"),
        );
        headers.insert(
            "referrer-policy".into(),
            constant(
                "same-origin",
                "Keeps same-origin `Origin` headers meaningful",
            ),
        );
    }
}

/// Schemas for the headers the annotations name, and `required`: utoipa's
/// header tuples take a type and a description only.
fn header_schemas(response: &mut Value) {
    let Some(headers) = response.get_mut("headers").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, header) in headers.iter_mut() {
        let schema = match name.as_str() {
            "set-cookie" => json!({ "type": "string", "pattern": "^(__Host-)?refresh_token=" }),
            "www-authenticate" => {
                json!({ "type": "string", "pattern": "^Bearer realm=\"latchkey\"" })
            }
            "retry-after" => json!({ "type": "integer", "minimum": 1 }),
            "location" => json!({ "type": "string", "pattern": "^/" }),
            _ => continue,
        };
        header["schema"] = schema;
    }
    for header in headers.values_mut() {
        header["required"] = Value::Bool(true);
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
    required(json!({ "type": "string", "const": value }), description)
}

fn required(schema: Value, description: &str) -> Value {
    json!({ "description": description, "required": true, "schema": schema })
}
