//! `POST /login`: JSON for API clients, form-urlencoded for the HTML form.

use axum::Router;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
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
                Err(e) => {
                    let message = match &e {
                        ApiError::InvalidCredentials => "Wrong username or password.".to_owned(),
                        ApiError::InvalidRequest(_) => {
                            "Enter your username and password.".to_owned()
                        }
                        ApiError::TooManyAttempts { retry_after } => {
                            format!("Too many attempts. Try again in {retry_after} seconds.")
                        }
                        _ => "Signing in failed. Please try again.".to_owned(),
                    };
                    let status = if matches!(e, ApiError::InvalidCredentials) {
                        StatusCode::UNAUTHORIZED
                    } else {
                        e.status()
                    };
                    let mut page =
                        pages::login_page(&state, status, Some(&message), next, &c.username);
                    if let ApiError::TooManyAttempts { retry_after } = e {
                        page.headers_mut()
                            .insert(axum::http::header::RETRY_AFTER, retry_after.max(1).into());
                    }
                    page
                }
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
