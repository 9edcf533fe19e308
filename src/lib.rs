//! latchkey: a session backend for browsers. Short-lived JWT access tokens in
//! JSON, a rotating refresh token in an `HttpOnly` cookie, reuse detection.
//!
//! Embed it with [`build_app`] and [`serve`] (or [`serve_with_limits`]), or let
//! [`run`] do everything the `latchkey` binary does; `main.rs` only wires these up.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod dev_secrets;
pub mod error;
pub mod housekeeping;
pub mod random;
pub mod routes;
pub mod server;
pub mod state;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::Config;
pub use routes::build_app;
pub use server::ServeLimits;
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

/// Serves `app` on `listener` within the default connection limits
/// ([`ServeLimits::default`]) until `shutdown` resolves, then lets in-flight
/// requests finish. Client addresses reach handlers through `ConnectInfo`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_limits(listener, app, ServeLimits::default(), shutdown).await
}

/// As [`serve`], within `limits` (`ServeLimits::from_config` reads them from
/// the configuration). `REQUEST_TIMEOUT` is not among them: [`build_app`]'s
/// router enforces it, from its state's configuration.
pub async fn serve_with_limits(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, app, limits, shutdown).await
}

/// Runs latchkey as the binary does: serves `state` on `listener` within the
/// configured connection limits, with housekeeping in the background, until
/// `shutdown` resolves; then stops accepting, gives in-flight requests
/// `SHUTDOWN_TIMEOUT` to finish, stops housekeeping and closes the store.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let housekeeping = tokio::spawn(housekeeping::run(state.clone(), stopped.clone()));
    let audit_counts = tokio::spawn(audit::run_flusher(state.clone(), stopped.clone()));
    let signal = {
        let stop = stop.clone();
        async move {
            shutdown.await;
            let _ = stop.send(true);
        }
    };
    let drain = state.config.shutdown_timeout;
    let limits = ServeLimits::from_config(&state.config);
    let mut deadline = stopped;
    let result = tokio::select! {
        result = serve_with_limits(listener, build_app(state.clone()), limits, signal) => result,
        () = async move {
            let _ = deadline.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(drain).await;
        } => {
            tracing::warn!(timeout = ?drain, "shutdown timeout: requests still in flight were cut off");
            Ok(())
        }
    };
    let _ = stop.send(true);
    if let Err(e) = housekeeping.await {
        tracing::warn!(error = %e, "housekeeping task failed");
    }
    if let Err(e) = audit_counts.await {
        tracing::warn!(error = %e, "audit count task failed");
    }
    // Closing waits for connections to come back; one held by a request that
    // was cut off may not, so that wait is bounded too.
    let grace = drain.max(Duration::from_secs(1));
    if tokio::time::timeout(grace, state.store.close())
        .await
        .is_err()
    {
        tracing::warn!("the store did not close in time");
    }
    result
}
