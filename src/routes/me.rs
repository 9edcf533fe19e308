//! `GET /protected` and `GET /me`: what the access token says about its holder.
//! Stateless: nothing but the token is consulted.

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};

use crate::auth::extract::Authenticated;
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/protected", get(protected))
        .route("/me", get(me))
}

#[derive(Debug, Serialize)]
pub struct UserView {
    pub id: String,
    pub username: String,
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

async fn protected(auth: Authenticated) -> Json<Value> {
    let user = UserView::from(&auth);
    Json(json!({
        "message": format!("Hello, {}! This answer needed a valid access token.", user.username),
        "user": user,
    }))
}

async fn me(auth: Authenticated) -> Json<Value> {
    Json(json!({ "user": UserView::from(&auth), "session_id": auth.0.sid }))
}
