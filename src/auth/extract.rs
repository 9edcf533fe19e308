//! Request extractors: the caller's access token, and who the client is.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{AUTHORIZATION, USER_AGENT};
use axum::http::request::Parts;
use std::net::SocketAddr;

use crate::auth::forwarded;
use crate::auth::tokens::AccessClaims;
use crate::error::ApiError;
use crate::state::AppState;

/// A verified access token from `Authorization: Bearer` (RFC 6750 §2.1; never
/// from a query string or cookie).
#[derive(Debug, Clone)]
pub struct Authenticated(pub AccessClaims);

impl Authenticated {
    pub fn user_id(&self) -> Result<i64, ApiError> {
        self.0.sub.parse().map_err(|_| ApiError::InvalidToken)
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all(AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(if parts.headers.contains_key(AUTHORIZATION) {
                ApiError::InvalidRequest("send one Authorization header".into())
            } else {
                ApiError::Unauthenticated
            });
        };
        let value = value.to_str().map_err(|_| ApiError::InvalidToken)?;
        let value = value.trim();
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::Unauthenticated);
        }
        let claims = state
            .keys
            .verify_access(token.trim(), state.clock.now())
            .map_err(|_| ApiError::InvalidToken)?;
        Ok(Self(claims))
    }
}

/// What the audit trail and the sessions list record about a client.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// Longest user agent kept; browsers send about 150 bytes.
const MAX_USER_AGENT: usize = 256;

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Through the extractor, so `MockConnectInfo` works for embedders' tests too.
        let ip = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
            .await
            .ok()
            .map(|ConnectInfo(peer)| {
                forwarded::client_ip(peer.ip(), &parts.headers, &state.config.trusted_proxies)
                    .to_string()
            });
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| truncate(ua, MAX_USER_AGENT));
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(|id| truncate(id, 64));
        Ok(Self {
            ip,
            user_agent,
            request_id,
        })
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
