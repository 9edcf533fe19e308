//! Serving: the connection-limited server around latchkey's router, and
//! everything the `latchkey` binary does beside it (housekeeping, audit
//! counts, TLS certificate reloads, graceful shutdown).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{self, Auth};
use crate::config::{self, Config, ServeLimits};
use crate::dev_secrets;
use crate::routes::router;
use crate::server;
use crate::tls::{self, Tls};

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

/// As [`serve`], within `limits`
/// ([`config.server.limits`](crate::config::ServerSettings::limits) holds the
/// configured ones). `REQUEST_TIMEOUT` is not among them: [`router`]
/// enforces it, from its service's configuration.
pub async fn serve_with_limits(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, app, limits, None, shutdown).await
}

/// As [`serve_with_limits`], over TLS with `tls`'s certificate: HTTP/2 or
/// HTTP/1.1 by ALPN, the handshake bounded by the header-read timeout
/// (README, "TLS"). A [`Tls::reload`] reaches the connections made after it.
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    tls: &Tls,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, app, limits, Some(tls), shutdown).await
}

/// Runs latchkey as the `latchkey` binary does: fits the open-file limit to
/// `MAX_CONNECTIONS`, loads the TLS certificate if one is configured, opens
/// the store, binds `BIND` and serves (as [`run_on`]) until `shutdown`
/// resolves.
pub async fn run(
    mut config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // First: a certificate that does not load stops the start before
    // anything else happens (its files are closed again once read).
    let tls = config.server.tls.as_ref().map(Tls::load).transpose()?;
    // Before anything holds files open: the connection cap, not the
    // kernel's limit on open files, must be what stops new connections.
    let limits = &mut config.server.limits;
    limits.max_connections = server::fit_open_file_limit(limits.max_connections);
    let listener = TcpListener::bind(config.server.bind).await?;
    let auth = Auth::open(config).await?;
    tracing::info!(
        address = %listener.local_addr()?,
        scheme = if tls.is_some() { "https" } else { "http" },
        "latchkey listening"
    );
    serve_auth(listener, auth, tls, shutdown).await?;
    tracing::info!("latchkey stopped");
    Ok(())
}

/// Serves `auth` on `listener` within the configured connection limits
/// (over TLS when `TLS_CERT_FILE` is set, the certificate reloaded on
/// `SIGHUP` and when its files change), with housekeeping and the audit
/// counts in the background, until `shutdown` resolves; then stops
/// accepting, gives in-flight requests `SHUTDOWN_TIMEOUT` to finish, stops
/// the background tasks and closes the store.
pub async fn run_on(
    listener: TcpListener,
    auth: Auth,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = match &auth.config().server.tls {
        Some(settings) => Some(Tls::load(settings).map_err(std::io::Error::other)?),
        None => None,
    };
    serve_auth(listener, auth, tls, shutdown).await
}

async fn serve_auth(
    listener: TcpListener,
    auth: Auth,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    warn_about(auth.config());
    // Aborted when serving ends (dropping a JoinHandle would not stop them).
    let reloads = tls
        .iter()
        .flat_map(|tls| {
            [
                tokio::spawn(tls.clone().reload_on_hangup()),
                tokio::spawn(tls.clone().watch(tls::WATCH_PERIOD)),
            ]
        })
        .collect::<Vec<_>>();
    let warm = auth.clone();
    tokio::spawn(async move { warm.warm_up().await });
    let (stop, stopped) = watch::channel(false);
    let housekeeping = tokio::spawn(auth::housekeeping::run(auth.clone(), stopped.clone()));
    let audit_counts = tokio::spawn(auth::audit::run_flusher(auth.clone(), stopped.clone()));
    let signal = {
        let stop = stop.clone();
        async move {
            shutdown.await;
            let _ = stop.send(true);
        }
    };
    let drain = auth.config().server.shutdown_timeout;
    let limits = auth.config().server.limits;
    let mut deadline = stopped;
    let serving = server::serve(listener, router(auth.clone()), limits, tls.as_ref(), signal);
    let result = tokio::select! {
        result = serving => result,
        () = async move {
            let _ = deadline.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(drain).await;
        } => {
            tracing::warn!(timeout = ?drain, "shutdown timeout: requests still in flight were cut off");
            Ok(())
        }
    };
    let _ = stop.send(true);
    for task in reloads {
        task.abort();
    }
    if let Err(e) = housekeeping.await {
        tracing::warn!(error = %e, "housekeeping task failed");
    }
    if let Err(e) = audit_counts.await {
        tracing::warn!(error = %e, "audit count task failed");
    }
    // Closing waits for connections to come back; one held by a request that
    // was cut off may not, so that wait is bounded too.
    let grace = drain.max(Duration::from_secs(1));
    if tokio::time::timeout(grace, auth.close()).await.is_err() {
        tracing::warn!("the store did not close in time");
    }
    result
}

/// Settings that work but that an operator should know about.
fn warn_about(config: &Config) {
    if config.tokens.generated_secrets {
        let file = dev_secrets::path_for(&config.database);
        tracing::warn!(
            file = %file.display(),
            "JWT_SECRET / JWT_REFRESH_SECRET are not set: using development secrets kept in this \
             file. Every instance must share the same secrets: set both before running several \
             instances or in production."
        );
    }
    if config.env == config::AppEnv::Development && !config.cookies.secure {
        tracing::warn!("COOKIE_SECURE=false: the refresh cookie is sent over plain HTTP");
    }
}
