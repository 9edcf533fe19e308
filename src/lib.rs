//! latchkey: a session backend for browsers. Short-lived JWT access tokens in
//! JSON, a rotating refresh token in an `HttpOnly` cookie, reuse detection.
//!
//! Embed it with [`build_app`] and [`serve`]; `main.rs` only wires these up.

pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod dev_secrets;
pub mod error;
pub mod random;
pub mod routes;
pub mod state;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

pub use config::Config;
pub use routes::build_app;
pub use state::AppState;

use config::Database;
use store::{PostgresStore, SqliteStore, Store};

/// Opens the configured store, applying migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match &config.database {
        Database::SqliteFile(path) => Ok(Arc::new(SqliteStore::open(path).await?)),
        Database::SqliteMemory => Ok(Arc::new(SqliteStore::in_memory().await?)),
        Database::Postgres(url) => Ok(Arc::new(PostgresStore::connect(url).await?)),
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish. Client addresses reach handlers through `ConnectInfo`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
