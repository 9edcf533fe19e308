//! `GET /.well-known/jwks.json` and `GET /.well-known/openid-configuration`:
//! what a service needs to verify access tokens without a secret (README,
//! "Verifying tokens in other services"). Public and cacheable for
//! `JWKS_MAX_AGE`, which is why they sit outside the `no-store` layer.

use axum::Json;
use axum::extract::State;
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::Base;
use super::origin::{addressed_host, own_scheme};
use crate::auth::{ApiError, Auth, PublicJwk};
use crate::config::AppEnv;
use crate::routes::error::ErrorBody;

pub(crate) const JWKS_PATH: &str = "/.well-known/jwks.json";

pub(crate) fn router() -> OpenApiRouter<Auth> {
    OpenApiRouter::new()
        .routes(routes!(jwks))
        .routes(routes!(openid_configuration))
}

/// A JSON Web Key Set (RFC 7517 §5).
#[derive(Serialize, ToSchema)]
pub(crate) struct Jwks {
    keys: Vec<PublicJwk>,
}

/// The OpenID Connect Discovery 1.0 §3 metadata that is true of latchkey:
/// who issues the tokens and where their keys are. latchkey is no OpenID
/// provider, so nothing else is claimed.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProviderMetadata {
    /// `iss` of every access token (`JWT_ISSUER`).
    issuer: String,
    /// The absolute URL of the key set.
    jwks_uri: String,
}

/// The public keys access tokens are signed with.
///
/// Every key a verifier may meet: the one signing, the next one (published
/// at least `JWKS_MAX_AGE` before it signs) and retired ones whose tokens
/// may not have expired. Empty with `HS256`, whose key is a secret. A
/// verifier refetches it when a token names a `kid` it does not know.
#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "tokens",
    responses(
        (status = 200, description = "The key set", body = Jwks,
            headers(("cache-control" = String,
                description = "`public, max-age=<JWKS_MAX_AGE>` (300 s unless configured)"))),
        (status = 503, description = "`unavailable`: the store does not answer and no key is known", body = ErrorBody),
    )
)]
async fn jwks(State(auth): State<Auth>) -> Result<Response, ApiError> {
    let keys = auth.jwks().await?;
    Ok(cacheable(&auth, Json(Jwks { keys })))
}

/// Where verifiers find the issuer's keys.
///
/// For resource-server libraries that discover the key set from the issuer.
/// `jwks_uri` is built from `PUBLIC_ORIGIN`, else from `JWT_ISSUER` when it
/// is a URL. Without either, production answers `404`: the request's `Host`
/// is the client's to write, so it never names the keys in a cacheable
/// answer; development builds it from `Host`, uncached.
#[utoipa::path(
    get, path = "/.well-known/openid-configuration", tag = "tokens",
    responses(
        (status = 200, description = "`issuer` and `jwks_uri`", body = ProviderMetadata,
            headers(("cache-control" = String,
                description = "`public, max-age=<JWKS_MAX_AGE>` (300 s unless configured); \
                    `no-store` when built from the request's `Host` (development only)"))),
        (status = 404, description = "`not_found`: production without PUBLIC_ORIGIN or a \
            URL JWT_ISSUER, so no trustworthy key set URL to name", body = ErrorBody),
    )
)]
async fn openid_configuration(
    State(auth): State<Auth>,
    base: Base,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let config = auth.config();
    let metadata = |origin: &str| {
        Json(ProviderMetadata {
            issuer: config.tokens.issuer.clone(),
            jwks_uri: format!("{origin}{}", base.to(JWKS_PATH)),
        })
    };
    let configured = config
        .origins
        .public_origin
        .clone()
        .or_else(|| origin_of_url(&config.tokens.issuer));
    if let Some(origin) = configured {
        return Ok(cacheable(&auth, metadata(&origin)));
    }
    if config.env == AppEnv::Production {
        return Err(ApiError::NotFound);
    }
    let host = addressed_host(&headers, &uri).unwrap_or("localhost");
    let scheme = own_scheme(config);
    let mut response = metadata(&format!("{scheme}://{host}")).into_response();
    // Another request's `Host` must never be served from a cache.
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The origin of an `http(s)://` URL (`https://example.com/auth` gives
/// `https://example.com`); `None` for anything else, such as the default
/// issuer `latchkey`.
fn origin_of_url(url: &str) -> Option<String> {
    let uri: Uri = url.parse().ok()?;
    let scheme = uri
        .scheme_str()
        .filter(|s| matches!(*s, "http" | "https"))?;
    let authority = uri.authority()?;
    // `Uri` takes userinfo (`user@host`), which no issuer should carry.
    if authority.as_str().contains('@') {
        return None;
    }
    Some(format!(
        "{scheme}://{}",
        authority.as_str().to_ascii_lowercase()
    ))
}

/// `body` with the cache lifetime verifiers are promised.
fn cacheable(auth: &Auth, body: impl IntoResponse) -> Response {
    let max_age = auth.config().tokens.jwks_max_age.as_secs();
    let mut response = body.into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        response.headers_mut().insert(CACHE_CONTROL, value);
    }
    response
}
