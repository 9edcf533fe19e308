//! Serving connections within bounds (README, Security model): how long a
//! request head may take to arrive, how long a keep-alive connection may sit
//! idle, and how many connections may be open at once, shedding the oldest
//! idle ones to make room. (How long a body and its answer may take is
//! `REQUEST_TIMEOUT`, a layer of the router: `routes/timeout.rs`.)
//!
//! Plain connections speak HTTP/1.1. With TLS (README, "TLS"), the
//! handshake counts against the header-read deadline like the bytes of a
//! head, so a client that never finishes it is closed as a slowloris is;
//! after it, the connection speaks HTTP/2 or HTTP/1.1 as ALPN settled. The
//! same limits hold for both: an HTTP/2 connection is busy while any of its
//! streams is, idle when none is.
//!
//! hyper's own `header_read_timeout` starts whenever it begins waiting for a
//! head, which on a keep-alive connection is as soon as the previous answer
//! is written: it cannot tell an idle connection from one dribbling a head,
//! so it would cut every idle connection at the header timeout. It is off
//! here; each connection's task keeps both deadlines itself, from one word
//! its reads, its requests and its answers update (`Tracker`).//!
//! `connections.rs` keeps the open connections and picks one to shed;
//! `tracking.rs` keeps each connection's phase and deadlines;
//! `file_limit.rs` fits `MAX_CONNECTIONS` under the open-file limit.

mod connections;
mod file_limit;
mod tracking;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::config::ServeLimits;
use crate::tls::Tls;
use connections::{Connections, Throttled};
pub use file_limit::fit_open_file_limit;
use tracking::{ConnectionService, TrackedStream, Tracker, Watchdog};

/// Serves `app` on `listener` within `limits` until `shutdown` resolves;
/// then stops accepting, closes the connections with no request in flight,
/// and waits for the answers in flight. With `tls`, each connection begins
/// with a TLS handshake. Handlers see the client's address as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    tls: Option<&Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = tls.map(|tls| TlsAcceptor::from(tls.server_config()));
    let epoch = Instant::now();
    let max = limits.max_connections.max(1);
    let mut open = Connections::default();
    let (stop, stopping) = watch::channel(false);
    let mut crowding = Throttled::default();
    let mut accept_failures = Throttled::default();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(ended) = open.tasks.join_next_with_id() => {
                open.ended(ended);
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e, &mut open, &mut accept_failures).await;
                    continue;
                }
            },
        };
        let room = open.make_room(max).await;
        if room.shed > 0 || !room.made {
            crowding.count(room.shed, u64::from(!room.made));
            if let Some(counts) = crowding.due() {
                crowded(max, counts);
            }
        }
        if !room.made {
            drop(stream);
            continue;
        }
        let tracker = Arc::new(Tracker::new(epoch));
        let task = connection(
            stream,
            remote,
            app.clone(),
            tracker.clone(),
            limits,
            acceptor.clone(),
            stopping.clone(),
        );
        open.spawn(tracker, task);
    }
    drop(listener);
    if let Some(counts) = crowding.rest() {
        crowded(max, counts);
    }
    let _ = stop.send(true);
    while open.tasks.join_next().await.is_some() {}
    Ok(())
}

fn crowded(max: usize, (shed, refused): (u64, u64)) {
    tracing::warn!(
        max_connections = max,
        shed,
        refused,
        "connection limit reached: idle connections shed (oldest first), new ones closed when \
         none was idle"
    );
}

/// A failed accept. Errors of one connection (reset before it was accepted)
/// are that client's business. Out of file descriptors, the connection idle
/// the longest goes to free one; other errors get a pause, so that a
/// persistent one does not spin the loop.
async fn accept_failed(error: io::Error, open: &mut Connections, log: &mut Throttled) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        tracing::debug!(error = %error, "a connection failed before it was accepted");
        return;
    }
    // EMFILE and ENFILE (the same numbers on Linux, macOS and the BSDs).
    let out_of_files = matches!(error.raw_os_error(), Some(23 | 24));
    let freed = out_of_files && open.shed_oldest_idle().await;
    log.count(1, 0);
    if let Some((failures, _)) = log.due() {
        tracing::warn!(
            error = %error,
            failures,
            shed_to_free_a_descriptor = freed,
            "cannot accept connections"
        );
    }
    if !freed {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One connection, until it ends, misses a deadline, or shutdown finds it
/// with no request in flight.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    app: Router,
    tracker: Arc<Tracker>,
    limits: ServeLimits,
    tls: Option<TlsAcceptor>,
    mut stopping: watch::Receiver<bool>,
) {
    let stream = TrackedStream {
        stream,
        tracker: tracker.clone(),
    };
    let service = ConnectionService {
        app,
        tracker: tracker.clone(),
        remote,
    };
    // Armed from the connection's opening: the handshake, then the first
    // request head, must arrive within the header-read timeout.
    let mut watchdog = Watchdog::new(tracker.clone(), limits);
    let Some(tls) = tls else {
        let conn = Served::H1 {
            conn: http1_builder().serve_connection(TokioIo::new(stream), service),
        };
        return drive(conn, &tracker, watchdog, stopping, remote).await;
    };
    let handshake = tokio::select! {
        biased;
        done = tls.accept(stream) => done,
        () = &mut watchdog => {
            tracing::debug!(%remote, "connection closed: no TLS handshake in time");
            return;
        }
        // No request can be in flight yet.
        _ = stopping.wait_for(|stop| *stop) => return,
    };
    let stream = match handshake {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!(error = %e, %remote, "TLS handshake failed");
            return;
        }
    };
    let conn = if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        tracker.multiplexed();
        Served::H2 {
            conn: http2_builder().serve_connection(TokioIo::new(stream), service),
        }
    } else {
        Served::H1 {
            conn: http1_builder().serve_connection(TokioIo::new(stream), service),
        }
    };
    drive(conn, &tracker, watchdog, stopping, remote).await;
}

fn http1_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    // Off: the watchdog keeps that deadline (see the top of this file).
    builder.header_read_timeout(None);
    builder
}

/// The HTTP/2 settings (RFC 9113 §6.5.2) that keep one connection's share
/// of the server near an HTTP/1.1 connection's.
fn http2_builder() -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        // RFC 9113 §6.5.2 asks for no fewer than 100; each stream is a
        // request in flight, bounded by `REQUEST_TIMEOUT`.
        .max_concurrent_streams(100)
        // Request bodies are at most 4 KiB (`BODY_LIMIT`): hyper's 1 MiB
        // windows would let each connection park a MiB of unread data.
        .initial_stream_window_size(64 * 1024)
        .initial_connection_window_size(256 * 1024)
        // Above the 64 KiB `routes::limits` allows (plus HPACK's 32 bytes a
        // field), so that a request over it gets that layer's JSON `431`, as
        // over HTTP/1.1, rather than a stream reset.
        .max_header_list_size(128 * 1024);
    builder
}

/// Serves one connection's requests until it ends, its deadline passes, or
/// shutdown finds it with nothing in flight (then it finishes what it has
/// in flight, and closes).
async fn drive<T>(
    conn: Served<T>,
    tracker: &Tracker,
    mut watchdog: Watchdog,
    mut stopping: watch::Receiver<bool>,
    remote: SocketAddr,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut conn = pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            biased;
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, %remote, "connection ended with an error");
                }
                return;
            }
            () = &mut watchdog => {
                tracing::debug!(%remote, "connection closed: no complete request head in time, or idle too long");
                return;
            }
            _ = stopping.wait_for(|stop| *stop), if !draining => {
                if !tracker.busy_now() {
                    return;
                }
                // Answers what is in flight, then closes (over HTTP/2, after
                // a GOAWAY that tells the client to open no more streams).
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

pin_project! {
    /// A connection served as HTTP/1.1 or as HTTP/2.
    #[project = ServedProjection]
    enum Served<T> {
        H1 { #[pin] conn: http1::Connection<TokioIo<T>, ConnectionService> },
        H2 { #[pin] conn: http2::Connection<TokioIo<T>, ConnectionService, TokioExecutor> },
    }
}

impl<T> Served<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        match self.project() {
            ServedProjection::H1 { conn } => conn.graceful_shutdown(),
            ServedProjection::H2 { conn } => conn.graceful_shutdown(),
        }
    }
}

impl<T> Future for Served<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Output = hyper::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ServedProjection::H1 { conn } => conn.poll(cx),
            ServedProjection::H2 { conn } => conn.poll(cx),
        }
    }
}
