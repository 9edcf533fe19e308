//! Serving: the connection-limited server around latchkey's router, and
//! everything the `latchkey` binary does beside it (housekeeping, audit
//! counts, the mail worker, the metrics listener, TLS certificate reloads, graceful shutdown).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{self, Auth};
use crate::config::{self, Config, ServeLimits};
use crate::dev_secrets;
use crate::routes::metrics::metrics_router;
use crate::routes::router_counting;
use crate::server;
use crate::tls::{self, Tls};

/// The metrics listener's connections: a scraper or two keep one each, so a
/// few are plenty, and nobody who reaches the port can hold many files.
const METRICS_LIMITS: ServeLimits = ServeLimits {
    max_connections: 16,
    ..ServeLimits::DEFAULT
};

/// Serves `app` on `listener` within `limits` until `shutdown` resolves,
/// then lets in-flight requests finish: the one server under latchkey, for
/// any `Router` (an application nesting [`router`](crate::router)). Over TLS
/// with `tls`'s certificate when given: HTTP/2 or HTTP/1.1 by ALPN, the
/// handshake bounded by the header-read timeout (README, "TLS"); a
/// [`Tls::reload`] reaches the connections made after it. Client addresses
/// reach handlers through `ConnectInfo`. `REQUEST_TIMEOUT` is not among the
/// limits: `router` enforces it, from its service's configuration;
/// [`config.server.limits`](crate::config::ServerSettings::limits) holds the
/// configured limits, [`ServeLimits::default`] the defaults.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    tls: Option<&Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, app, limits, tls, shutdown).await
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
    // So is a mail transport that cannot be built (`SMTP_CA_FILE`); and the
    // operator learns where mail goes.
    let mailer = crate::mail::Mailer::new(&config.mail)?;
    tracing::info!(transport = mailer.describe(), "mail");
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
/// `SIGHUP` and when its files change), with housekeeping, the audit
/// counts and the mail worker in the background, and its metrics on `METRICS_BIND` when set,
/// until `shutdown` resolves; then stops accepting, gives in-flight requests
/// `SHUTDOWN_TIMEOUT` to finish, stops the background tasks and the metrics
/// listener (last, so that the drain can be watched) and closes the store.
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
    let (metrics_stop, metrics_stopped) = watch::channel(false);
    let metrics = match auth.config().server.metrics_bind {
        Some(address) => {
            let listener = TcpListener::bind(address).await?;
            tracing::info!(address = %listener.local_addr()?, "metrics listening");
            let mut stopped = metrics_stopped;
            Some(tokio::spawn(server::serve(
                listener,
                metrics_router(auth.clone()),
                METRICS_LIMITS,
                None,
                async move {
                    let _ = stopped.wait_for(|stopped| *stopped).await;
                },
            )))
        }
        None => None,
    };
    // Aborted when serving ends (dropping a JoinHandle would not stop them).
    let reloads = tls
        .iter()
        .flat_map(|tls| {
            [
                tokio::spawn(tls.clone().reload_on_hangup()),
                tokio::spawn(tls.clone().watch(tls::WATCH_PERIOD)),
            ]
        })
        .chain([tokio::spawn(reload_keys_on_hangup(auth.clone()))])
        .collect::<Vec<_>>();
    let warm = auth.clone();
    tokio::spawn(async move { warm.warm_up().await });
    let (stop, stopped) = watch::channel(false);
    let housekeeping = tokio::spawn(auth::housekeeping::run(auth.clone(), stopped.clone()));
    let audit_counts = tokio::spawn(auth::audit::run_flusher(auth.clone(), stopped.clone()));
    let mail = tokio::spawn(auth::outbox::run(auth.clone(), stopped.clone()));
    let signal = {
        let stop = stop.clone();
        let auth = auth.clone();
        async move {
            shutdown.await;
            // Load balancers see `/readyz` fail, and stop sending, while
            // the listener is still open (README, "Health checks").
            auth.begin_draining();
            let delay = auth.config().server.shutdown_delay;
            if !delay.is_zero() {
                tracing::info!(
                    ?delay,
                    "draining: /readyz answers 503 until the listener closes"
                );
                tokio::time::sleep(delay).await;
            }
            let _ = stop.send(true);
        }
    };
    let app = router_counting(auth.clone(), metrics.is_some());
    let drain = auth.config().server.shutdown_timeout;
    let limits = auth.config().server.limits;
    let mut deadline = stopped;
    let serving = server::serve(listener, app, limits, tls.as_ref(), signal);
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
    let _ = metrics_stop.send(true);
    if let Some(metrics) = metrics {
        match metrics.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "metrics listener failed"),
            Err(e) => tracing::warn!(error = %e, "metrics listener task failed"),
        }
    }
    for task in reloads {
        task.abort();
    }
    if let Err(e) = housekeeping.await {
        tracing::warn!(error = %e, "housekeeping task failed");
    }
    if let Err(e) = audit_counts.await {
        tracing::warn!(error = %e, "audit count task failed");
    }
    // Reset links asked for just before the end are queued, not lost; the
    // worker of the next start (or another instance) sends them.
    if tokio::time::timeout(drain, auth.settled()).await.is_err() {
        tracing::warn!("work left by requests did not finish in time");
    }
    // The worker stops between mails; one in the relay's hands gets its
    // time-out, not forever.
    match tokio::time::timeout(drain.max(Duration::from_secs(31)), mail).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "mail worker failed"),
        Err(_) => {
            tracing::warn!("the mail worker did not stop in time; its mail is sent again later")
        }
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

/// Reloads the signing keys on every `SIGHUP`, so that a key revoked by
/// `latchkey keys revoke` stops verifying here at once (README, "After a
/// leak") rather than at the next due reload.
async fn reload_keys_on_hangup(auth: Auth) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: signing keys reload on their own period only");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            match auth.reload_keys().await {
                Ok(()) => tracing::info!("signing keys reloaded on SIGHUP"),
                Err(e) => tracing::warn!(error = %e, "could not reload the signing keys"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = auth;
}
