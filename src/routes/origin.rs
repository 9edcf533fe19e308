//! Cross-site request protection for the cookie endpoints (`/token`,
//! `/logout`, the login form): the refresh cookie must only be usable from
//! this service's own origin or an explicitly allowed one (OWASP CSRF cheat
//! sheet: verifying origin with standard headers, plus Fetch Metadata).

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{HOST, ORIGIN};
use axum::http::request::Parts;

use crate::auth::{ApiError, Auth, ClientInfo};
use crate::config::Config;

/// Present in a handler's arguments: the request came from an allowed origin.
#[derive(Debug, Clone, Copy)]
pub struct AllowedOrigin;

impl<S> FromRequestParts<S> for AllowedOrigin
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let auth = Auth::from_ref(state);
        if is_allowed(auth.config(), parts) {
            return Ok(Self);
        }
        let client = ClientInfo::from_request_parts(parts, state)
            .await
            .unwrap_or_default();
        let origin = parts
            .headers
            .get(ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(|o| o.chars().take(200).collect::<String>());
        let detail = format!(
            "{} {} origin={}",
            parts.method,
            parts.uri.path(),
            origin.as_deref().unwrap_or("-")
        );
        Err(auth.origin_rejected(&client, detail).await)
    }
}

pub fn is_allowed(config: &Config, parts: &Parts) -> bool {
    let headers = &parts.headers;
    let Some(origin) = headers.get(ORIGIN) else {
        // No Origin: a non-browser client, or an old browser on a same-origin
        // GET-like navigation. Fetch Metadata still betrays a cross-site request.
        return headers
            .get("sec-fetch-site")
            .is_none_or(|v| v.as_bytes() != b"cross-site");
    };
    let Some(origin) = origin.to_str().ok().map(str::to_ascii_lowercase) else {
        return false;
    };
    if config.origins.cors_allowed.contains(&origin) {
        return true;
    }
    if let Some(own) = &config.origins.public_origin {
        return *own == origin;
    }
    // Without a configured public origin, our own origin is whatever host the
    // browser addressed us by; the scheme may differ behind a TLS proxy.
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    // HTTP/1.1 names the host in `Host`; HTTP/2 in the `:authority` of the URI.
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    match (authority, host) {
        (Some(a), Some(h)) => {
            same_authority(a, &h.to_ascii_lowercase(), origin.starts_with("https://"))
        }
        _ => false,
    }
}

/// `example.com` and `example.com:443` are the same authority over https.
fn same_authority(origin: &str, host: &str, https: bool) -> bool {
    let default_port = if https { ":443" } else { ":80" };
    let strip = |s: &str| {
        s.strip_suffix(default_port)
            .map(str::to_owned)
            .unwrap_or_else(|| s.to_owned())
    };
    strip(origin) == strip(host)
}
