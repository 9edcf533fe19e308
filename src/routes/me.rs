//! `GET /protected` and `GET /me`: what the access token says about its holder.
//! Stateless: nothing but the token is consulted.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::routes::extract::Authenticated;
use crate::routes::openapi::BearerRefusals;

pub(crate) fn router() -> OpenApiRouter<Auth> {
    OpenApiRouter::new()
        .routes(routes!(protected))
        .routes(routes!(me))
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

impl From<&Authenticated> for UserView {
    fn from(Authenticated(claims): &Authenticated) -> Self {
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
}

/// A greeting that needed a valid access token.
#[utoipa::path(
    get, path = "/protected", tag = "account",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token is valid", body = ProtectedBody),
        BearerRefusals,
    )
)]
async fn protected(auth: Authenticated) -> Json<ProtectedBody> {
    let user = UserView::from(&auth);
    Json(ProtectedBody {
        message: format!(
            "Hello, {}! This answer needed a valid access token.",
            user.username
        ),
        user,
    })
}

/// Who the access token belongs to, and its session.
#[utoipa::path(
    get, path = "/me", tag = "account",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token's holder", body = MeBody),
        BearerRefusals,
    )
)]
async fn me(auth: Authenticated) -> Json<MeBody> {
    Json(MeBody {
        user: UserView::from(&auth),
        session_id: auth.0.sid.clone(),
    })
}
