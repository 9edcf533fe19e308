//! `POST /register`: open sign-up, when `REGISTRATION_OPEN` allows it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::audit::{self, Event};
use crate::auth::credentials;
use crate::auth::extract::ClientInfo;
use crate::auth::origin::AllowedOrigin;
use crate::auth::throttle;
use crate::error::ApiError;
use crate::routes::body::JsonOrForm;
use crate::routes::pages;
use crate::state::AppState;
use crate::store::User;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/register", post(register))
}

#[derive(Deserialize)]
struct NewAccount {
    username: String,
    password: String,
}

async fn register(
    State(state): State<AppState>,
    _: AllowedOrigin,
    client: ClientInfo,
    body: JsonOrForm<NewAccount>,
) -> Response {
    match body {
        JsonOrForm::Json(a) => match create(&state, &a, &client).await {
            Ok(user) => (
                StatusCode::CREATED,
                Json(json!({ "id": user.id.to_string(), "username": user.username })),
            )
                .into_response(),
            Err(e) => e.into_response(),
        },
        JsonOrForm::Form(a) => match create(&state, &a, &client).await {
            Ok(_) => Redirect::to("/login?registered=1").into_response(),
            Err(e) => pages::register_failed(&state, &e, &a.username),
        },
    }
}

async fn create(state: &AppState, a: &NewAccount, client: &ClientInfo) -> Result<User, ApiError> {
    if !state.config.registration_open {
        return Err(ApiError::RegistrationClosed);
    }
    let counters = throttle::registration_counters(&state.config.throttle, client.ip.as_deref());
    if let Err(e) = throttle::check(state, &counters).await {
        audit::record(state, Event::new("registration_throttled", client)).await;
        return Err(e);
    }
    throttle::record_failure(state, &counters).await?;
    let now = state.clock.now();
    let user = credentials::create_account(
        state.store.as_ref(),
        &state.hasher,
        &a.username,
        &a.password,
        "user",
        now,
    )
    .await?;
    audit::record(
        state,
        Event::new("user_registered", client).user(user.id, &user.username),
    )
    .await;
    Ok(user)
}
