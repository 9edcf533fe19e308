//! `POST /login`: JSON for API clients, form-urlencoded for the HTML form.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::SET_COOKIE;
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use axum::routing::post;
use serde::Deserialize;

use crate::auth::cookies::Presented;
use crate::auth::credentials;
use crate::auth::extract::ClientInfo;
use crate::auth::origin::AllowedOrigin;
use crate::auth::session::{self, Issued};
use crate::error::ApiError;
use crate::routes::body::JsonOrForm;
use crate::routes::pages::{self, safe_next};
use crate::routes::token::issued_response;
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/login", post(login))
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
    /// Where the HTML form returns to; only same-origin paths are honoured.
    next: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    _: AllowedOrigin,
    client: ClientInfo,
    headers: HeaderMap,
    body: JsonOrForm<Credentials>,
) -> Response {
    match body {
        JsonOrForm::Json(c) => match sign_in(&state, &c, &client, &headers).await {
            Ok(issued) => issued_response(&state, issued),
            Err(e) => e.into_response(),
        },
        JsonOrForm::Form(c) => {
            let next = safe_next(c.next.as_deref());
            match sign_in(&state, &c, &client, &headers).await {
                Ok(issued) => {
                    let cookie = state
                        .cookies
                        .set(issued.refresh_token, issued.refresh_max_age);
                    (
                        AppendHeaders([(SET_COOKIE, cookie.to_string())]),
                        Redirect::to(next),
                    )
                        .into_response()
                }
                Err(e) => pages::login_failed(&state, &e, next, &c.username),
            }
        }
    }
}

async fn sign_in(
    state: &AppState,
    c: &Credentials,
    client: &ClientInfo,
    headers: &HeaderMap,
) -> Result<Issued, ApiError> {
    if c.username.trim().is_empty() || c.password.is_empty() {
        return Err(ApiError::InvalidRequest(
            "username and password are required".into(),
        ));
    }
    let user = credentials::authenticate(state, &c.username, &c.password, client).await?;
    // The browser is about to swap cookies: end the session it is replacing.
    if let Presented::One(old) = state.cookies.presented(headers) {
        session::end(state, &old, "replaced_by_login", client).await?;
    }
    session::start(state, user, client).await
}
