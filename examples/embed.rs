//! latchkey inside an application of its own (README, "Embedding"): the app
//! keeps its own state and routes, mounts latchkey under `/auth`, and
//! protects one route with the access token alone, another with a live
//! session, and a third with a recent password (step-up).
//! `cargo run --example embed`, then open http://127.0.0.1:3000/auth/.

use axum::extract::{FromRef, State};
use axum::routing::get;
use axum::{Json, Router};
use latchkey::{Auth, Authenticated, Config, LiveSession, RecentAuthentication};
use serde_json::{Value, json};

/// The application's own state, with latchkey's service in it.
#[derive(Clone)]
pub struct AppState {
    pub auth: Auth,
    pub greeting: &'static str,
}

/// How latchkey's extractors find the service in this state.
impl FromRef<AppState> for Auth {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

/// The application: its routes, and latchkey's under `/auth`.
pub fn app(auth: Auth) -> Router {
    let state = AppState {
        auth: auth.clone(),
        greeting: "Hello",
    };
    Router::new()
        .route("/hello", get(hello))
        .route("/account", get(account))
        .route("/payout", axum::routing::post(payout))
        .with_state(state)
        .nest("/auth", latchkey::router(auth))
}

/// Any unexpired access token will do: no lookup.
async fn hello(State(state): State<AppState>, Authenticated(token): Authenticated) -> Json<Value> {
    Json(json!({ "message": format!("{}, {}!", state.greeting, token.username) }))
}

/// Sensitive: the token's session must still be live, so a logout or a
/// revocation takes effect at once, not when the token expires.
async fn account(LiveSession(token): LiveSession) -> Json<Value> {
    Json(json!({ "user": token.claims().username, "session": token.session().id }))
}

/// Sensitive enough to want the password entered in the last five minutes:
/// otherwise `401 insufficient_user_authentication` (RFC 9470), which the
/// client answers with `POST /auth/reauthenticate` before trying again.
async fn payout(
    LiveSession(_): LiveSession,
    RecentAuthentication(token): RecentAuthentication<300>,
) -> Json<Value> {
    Json(json!({ "paid_out_to": token.username }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?.with_development_secrets()?;
    let auth = Auth::open(config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    latchkey::serve(
        listener,
        app(auth),
        latchkey::ServeLimits::default(),
        None,
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )
    .await?;
    Ok(())
}
