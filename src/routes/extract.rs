//! Request extractors. Each works with any application state that can hand
//! out an [`Auth`] through `FromRef` (latchkey's own router uses `Auth`
//! itself), so an application that embeds latchkey protects its own routes
//! with them (README, "Embedding").

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::header::{AUTHORIZATION, USER_AGENT};
use axum::http::request::Parts;

use crate::auth::{AccessClaims, ApiError, Auth, BrowserCookies, ClientInfo, LiveToken};
use crate::routes::forwarded;
use crate::routes::request_id::REQUEST_ID;

/// A verified access token from `Authorization: Bearer` (RFC 6750 §2.1;
/// never from a query string or cookie). Stateless: the token of a session
/// that was revoked a moment ago passes until it expires, at most
/// `JWT_EXPIRATION` later. As `Option<Authenticated>`, a request without an
/// `Authorization` header gives `None`, and a bad token is still refused.
#[derive(Debug, Clone)]
pub struct Authenticated(pub AccessClaims);

/// As [`Authenticated`], and the token's session is still live: not logged
/// out, revoked, evicted or expired. Revocation takes effect at once, at the
/// cost of one primary-key lookup per request: for account actions and
/// other sensitive routes. Its [`LiveToken`] is what [`Auth`]'s account
/// actions take.
#[derive(Debug, Clone)]
pub struct LiveSession(pub LiveToken);

/// As [`Authenticated`], and the password was checked for the token's
/// session at most `MAX_AGE` seconds ago (its `auth_time`, RFC 9068): for
/// actions that want the person at the keyboard, not only a valid token.
/// Otherwise `401 insufficient_user_authentication` with RFC 9470's
/// challenge naming `max_age`; the client calls `POST /reauthenticate` and
/// retries. With `SECOND_FACTOR` true, that authentication must have used a
/// second factor as well (`RecentAuthentication<300, true>`; the challenge
/// then names `acr_values="mfa"`; README, "Second factor"). Stateless like
/// [`Authenticated`]: with [`LiveSession`] as well, the session must also
/// still be live.
#[derive(Debug, Clone)]
pub struct RecentAuthentication<const MAX_AGE: u64, const SECOND_FACTOR: bool = false>(
    pub AccessClaims,
);

impl<S> FromRequestParts<S> for Authenticated
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer_token(parts)?.ok_or(ApiError::Unauthenticated)?;
        Ok(Self(Auth::from_ref(state).verify_access(token).await?))
    }
}

impl<S> OptionalFromRequestParts<S> for Authenticated
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, ApiError> {
        match bearer_token(parts)? {
            None => Ok(None),
            Some(token) => Ok(Some(Self(
                Auth::from_ref(state).verify_access(token).await?,
            ))),
        }
    }
}

impl<S> FromRequestParts<S> for LiveSession
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Authenticated(claims) =
            <Authenticated as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        Ok(Self(Auth::from_ref(state).live_session(claims).await?))
    }
}

impl<S, const MAX_AGE: u64, const SECOND_FACTOR: bool> FromRequestParts<S>
    for RecentAuthentication<MAX_AGE, SECOND_FACTOR>
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Authenticated(claims) =
            <Authenticated as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        let auth = Auth::from_ref(state);
        let max_age = std::time::Duration::from_secs(MAX_AGE);
        if SECOND_FACTOR {
            auth.require_recent_second_factor(&claims, max_age)?;
        } else {
            auth.require_recent_authentication(&claims, max_age)?;
        }
        Ok(Self(claims))
    }
}

/// The token of the one `Authorization: Bearer` header; `None` without a
/// Bearer token (no header, or another scheme).
fn bearer_token(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let mut values = parts.headers.get_all(AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Ok(None),
        (Some(value), None) => value,
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidRequest(
                "send one Authorization header".into(),
            ));
        }
    };
    let value = value.to_str().map_err(|_| ApiError::InvalidToken)?.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    Ok(Some(token.trim()))
}

/// Longest user agent kept; browsers send about 150 bytes.
const MAX_USER_AGENT: usize = 256;

impl<S> FromRequestParts<S> for ClientInfo
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        // Through the extractor, so `MockConnectInfo` works for embedders' tests too.
        let peer = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
            .await
            .ok();
        let ip = peer.map(|ConnectInfo(peer)| {
            let auth = Auth::from_ref(state);
            let origins = &auth.config().origins;
            forwarded::client_ip(
                peer.ip(),
                &parts.headers,
                &origins.trusted_proxies,
                origins.proxy_header,
            )
            .to_string()
        });
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| truncate(ua, MAX_USER_AGENT));
        let request_id = parts
            .headers
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(|id| truncate(id, 64));
        Ok(Self {
            ip,
            user_agent,
            request_id,
        })
    }
}

impl<S> FromRequestParts<S> for BrowserCookies
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        Ok(Auth::from_ref(state).cookies_of(&parts.headers))
    }
}

/// Where latchkey's router is mounted (`/auth` when nested under it; empty
/// at the root), for the links and redirects it writes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Base(pub String);

impl Base {
    /// `path` (from latchkey's root, starting with `/`) as the browser must ask for it.
    pub(crate) fn to(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        // `Router::nest` strips its prefix from the URI a handler sees and
        // keeps the whole one as `OriginalUri`: the difference is the prefix.
        let Some(original) = parts.extensions.get::<axum::extract::OriginalUri>() else {
            return Ok(Self::default());
        };
        let full = original.path();
        let inner = parts.uri.path();
        let prefix = full
            .strip_suffix(inner)
            .or_else(|| (inner == "/").then_some(full))
            .unwrap_or_default();
        Ok(Self(prefix.trim_end_matches('/').to_owned()))
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
