//! `GET /protected`, and the account of the access token's holder:
//! `GET /me`, `DELETE /me`. `/protected` is stateless (nothing but the token
//! is consulted); the account endpoints check that the token's session is
//! live (README, "How sessions work").

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AccessClaims, ApiError, Auth};
use crate::routes::error::ErrorBody;
use crate::routes::extract::{Authenticated, LiveSession};
use crate::routes::openapi::{BearerRefusals, LiveBearerRefusals};

pub(crate) fn router() -> OpenApiRouter<Auth> {
    OpenApiRouter::new()
        .routes(routes!(protected))
        .routes(routes!(me, delete_me))
}

/// The token's holder, from its claims.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// The user id, as a string (the token's `sub`).
    #[schema(examples("1"))]
    pub id: String,
    #[schema(examples("ann"))]
    pub username: String,
    #[schema(examples("user"))]
    pub role: String,
}

impl From<&AccessClaims> for UserView {
    fn from(claims: &AccessClaims) -> Self {
        Self {
            id: claims.sub.clone(),
            username: claims.username.clone(),
            role: claims.role.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProtectedBody {
    pub message: String,
    pub user: UserView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeBody {
    pub user: UserView,
    /// The session the access token belongs to.
    pub session_id: String,
    /// The account's email address, lower-cased, or `null` (README, "Email
    /// addresses").
    #[schema(examples("ann@example.com"))]
    pub email: Option<String>,
    /// Whether the address is verified: only then does it sign in in place
    /// of the username.
    pub email_verified: bool,
}

/// A greeting that needed a valid access token. Stateless: a token of a
/// session that ended a moment ago still passes until it expires.
#[utoipa::path(
    get, path = "/protected", tag = "account",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token is valid", body = ProtectedBody),
        BearerRefusals,
    )
)]
async fn protected(Authenticated(claims): Authenticated) -> Json<ProtectedBody> {
    let user = UserView::from(&claims);
    Json(ProtectedBody {
        message: format!(
            "Hello, {}! This answer needed a valid access token.",
            user.username
        ),
        user,
    })
}

/// Who the access token belongs to, and its session, which must be live.
#[utoipa::path(
    get, path = "/me", tag = "account",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token's holder", body = MeBody),
        LiveBearerRefusals,
    )
)]
async fn me(
    State(auth): State<Auth>,
    LiveSession(token): LiveSession,
) -> Result<Json<MeBody>, ApiError> {
    let account = auth.account(&token).await?;
    Ok(Json(MeBody {
        user: UserView::from(token.claims()),
        session_id: token.session().id.clone(),
        email: account.email,
        email_verified: account.email_verified,
    }))
}

/// Deletes the caller's account: the user, every session, and their
/// personal data in the audit trail (whose events stay, with the user id
/// alone). Needs a password checked within `REAUTH_MAX_AGE` seconds: the
/// token's `auth_time`, from its login or from `POST /reauthenticate`.
#[utoipa::path(
    delete, path = "/me", tag = "account",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted; the refresh and device cookies are cleared",
            headers(("set-cookie" = String,
                description = "The cookies that clear the refresh and the device cookie (two headers)"))),
        (status = 400, description = "`invalid_request`: more than one `Authorization` header",
            body = ErrorBody),
        (status = 401, description = "`unauthenticated` (no token), `invalid_token` (bad or \
            expired, or its session no longer live), or `insufficient_user_authentication`: the \
            password was last checked more than `REAUTH_MAX_AGE` seconds ago; the challenge \
            names that maximum age as max_age (RFC 9470 §3), and `POST /reauthenticate` \
            answers it",
            body = ErrorBody, headers(("www-authenticate" = String))),
    )
)]
async fn delete_me(
    State(auth): State<Auth>,
    LiveSession(token): LiveSession,
) -> Result<impl IntoResponse, ApiError> {
    let cookies = auth.delete_account(&token).await?;
    Ok((cookies, StatusCode::NO_CONTENT))
}
