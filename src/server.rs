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
//! its reads, its requests and its answers update (`Tracker`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, Id, JoinError, JoinSet};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::Service as _;

use crate::config::ServeLimits;
use crate::tls::Tls;

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

/// The open connections' tasks, and what the accept loop needs to pick one
/// to shed. Owned by the accept loop alone.
#[derive(Default)]
struct Connections {
    tasks: JoinSet<()>,
    open: HashMap<Id, Open>,
    accepted: u64,
}

struct Open {
    /// Order of acceptance: breaks ties between connections idle since the
    /// same microsecond.
    order: u64,
    tracker: Arc<Tracker>,
    task: AbortHandle,
}

/// What making room for a new connection took.
struct Room {
    made: bool,
    shed: u64,
}

impl Connections {
    fn spawn(&mut self, tracker: Arc<Tracker>, task: impl Future<Output = ()> + Send + 'static) {
        let task = self.tasks.spawn(task);
        self.accepted += 1;
        let open = Open {
            order: self.accepted,
            tracker,
            task,
        };
        self.open.insert(open.task.id(), open);
    }

    fn ended(&mut self, ended: Result<(Id, ()), JoinError>) {
        let id = match ended {
            Ok((id, ())) => id,
            Err(e) => {
                if e.is_panic() {
                    tracing::error!(error = %e, "a connection's task panicked");
                }
                e.id()
            }
        };
        self.open.remove(&id);
    }

    /// Sheds idle connections, oldest first, until one more fits under
    /// `max`; `made` is false when every open connection has a request in
    /// flight. A shed connection's socket is closed before this returns, so
    /// never more than `max` are open.
    async fn make_room(&mut self, max: usize) -> Room {
        while let Some(ended) = self.tasks.try_join_next_with_id() {
            self.ended(ended);
        }
        let mut shed = 0;
        while self.tasks.len() >= max {
            if !self.shed_oldest_idle().await {
                return Room { made: false, shed };
            }
            shed += 1;
        }
        Room { made: true, shed }
    }

    /// Closes the connection that has waited longest with no request in
    /// flight, and waits until a connection's task has ended (that one, or
    /// one that ended meanwhile); false if none is idle.
    async fn shed_oldest_idle(&mut self) -> bool {
        let oldest = self
            .open
            .iter()
            .filter_map(|(id, open)| Some((open.tracker.idle_since()?, open.order, *id)))
            .min();
        let Some((_, _, id)) = oldest else {
            return false;
        };
        if let Some(open) = self.open.remove(&id) {
            open.task.abort();
        }
        if let Some(ended) = self.tasks.join_next_with_id().await {
            self.ended(ended);
        }
        true
    }
}

/// Counts events and says when they are worth a log line: the first at
/// once, then at most one line every ten seconds with the counts since the
/// last, so that an attack cannot flood the logs.
#[derive(Default)]
struct Throttled {
    counts: (u64, u64),
    last: Option<Instant>,
}

impl Throttled {
    const EVERY: Duration = Duration::from_secs(10);

    fn count(&mut self, a: u64, b: u64) {
        self.counts.0 += a;
        self.counts.1 += b;
    }

    fn due(&mut self) -> Option<(u64, u64)> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + Self::EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.counts))
    }

    /// The counts not reported yet, if any.
    fn rest(&mut self) -> Option<(u64, u64)> {
        let counts = std::mem::take(&mut self.counts);
        (counts != (0, 0)).then_some(counts)
    }
}

/// What one connection is doing, in one word that its task writes and the
/// accept loop reads: the phase in the low two bits, above them the
/// microsecond (since the server started) the phase began, or while busy the
/// number of requests in flight. Over HTTP/2 answers end on the tasks hyper
/// spawns for streams, so every change is one atomic update of the word.
struct Tracker {
    word: AtomicU64,
    epoch: Instant,
    /// HTTP/2: bytes arriving on an idle connection begin no request head
    /// (they may be a ping or a window update), so they keep the idle
    /// deadline.
    multiplexed: AtomicBool,
}

/// Waiting for a complete request head, since the connection opened or
/// since the first byte after an idle spell.
const HEAD: u64 = 0;
/// Kept alive between requests: nothing in flight, nothing received.
const IDLE: u64 = 1;
/// Requests in flight: each from its complete head until its answer is
/// written (or dropped).
const BUSY: u64 = 2;
const PHASE: u64 = 0b11;
/// One request in flight, in a busy word.
const ONE: u64 = 1 << 2;

impl Tracker {
    fn new(epoch: Instant) -> Self {
        let tracker = Self {
            word: AtomicU64::new(0),
            epoch,
            multiplexed: AtomicBool::new(false),
        };
        tracker.word.store(tracker.now(HEAD), Ordering::Relaxed);
        tracker
    }

    /// The word for `phase` beginning now.
    fn now(&self, phase: u64) -> u64 {
        let micros = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX >> 2);
        (micros << 2) | phase
    }

    /// The connection speaks HTTP/2.
    fn multiplexed(&self) {
        self.multiplexed.store(true, Ordering::Relaxed);
    }

    /// A request head is complete (its time is of no use: a request in
    /// flight has no deadline here).
    fn request(&self) {
        let _ = self
            .word
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
                Some(if word & PHASE == BUSY {
                    word + ONE
                } else {
                    ONE | BUSY
                })
            });
    }

    /// An answer has been handed to the connection whole, or dropped.
    fn answered(&self) {
        let idle = self.now(IDLE);
        let _ = self
            .word
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
                Some(if word & PHASE == BUSY && word >> 2 > 1 {
                    word - ONE
                } else {
                    idle
                })
            });
    }

    /// Bytes arrived: after an idle spell, the next head has begun.
    fn received(&self) {
        let word = self.word.load(Ordering::Relaxed);
        if word & PHASE == IDLE && !self.multiplexed.load(Ordering::Relaxed) {
            // Lost only to a request or an answer, which set the phase anew.
            let _ = self.word.compare_exchange(
                word,
                self.now(HEAD),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn busy_now(&self) -> bool {
        self.word.load(Ordering::Relaxed) & PHASE == BUSY
    }

    /// Since when (microseconds since the epoch) the connection has had no
    /// request in flight; `None` while it has one.
    fn idle_since(&self) -> Option<u64> {
        let word = self.word.load(Ordering::Relaxed);
        (word & PHASE != BUSY).then_some(word >> 2)
    }

    /// When the connection is to be closed if nothing changes; `None` while a
    /// request is in flight (`REQUEST_TIMEOUT` bounds that).
    fn deadline(&self, limits: &ServeLimits) -> Option<Instant> {
        let word = self.word.load(Ordering::Relaxed);
        let limit = match word & PHASE {
            HEAD => limits.header_read_timeout,
            IDLE => limits.idle_timeout,
            _ => return None,
        };
        Some(self.epoch + Duration::from_micros(word >> 2) + limit)
    }
}

/// Resolves when the connection's deadline passes. Polled whenever the
/// connection's task wakes, it moves its timer earlier when the deadline
/// moved earlier (an idle connection began a head); a deadline that moved
/// later is found when the timer fires, so a busy keep-alive connection
/// resets no timer per request.
struct Watchdog {
    tracker: Arc<Tracker>,
    limits: ServeLimits,
    timer: Pin<Box<Sleep>>,
    armed: Instant,
}

impl Watchdog {
    fn new(tracker: Arc<Tracker>, limits: ServeLimits) -> Self {
        let armed = tracker
            .deadline(&limits)
            .unwrap_or_else(|| Instant::now() + limits.idle_timeout);
        Self {
            tracker,
            limits,
            timer: Box::pin(tokio::time::sleep_until(armed)),
            armed,
        }
    }

    fn arm(&mut self, at: Instant) {
        self.armed = at;
        self.timer.as_mut().reset(at);
    }
}

impl Future for Watchdog {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(due) = this.tracker.deadline(&this.limits)
            && due < this.armed
        {
            this.arm(due);
        }
        loop {
            ready!(this.timer.as_mut().poll(cx));
            // `armed` has passed.
            match this.tracker.deadline(&this.limits) {
                Some(due) if due <= this.armed => return Poll::Ready(()),
                Some(due) => this.arm(due),
                None => this.arm(Instant::now() + this.limits.idle_timeout),
            }
        }
    }
}

/// The socket, telling the tracker when bytes arrive.
struct TrackedStream {
    stream: TcpStream,
    tracker: Arc<Tracker>,
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.tracker.received();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The router as hyper calls it on one connection: marks the request in
/// flight, gives it the client's address, and tracks its answer.
struct ConnectionService {
    app: Router,
    tracker: Arc<Tracker>,
    remote: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = TrackedAnswer<<Router as tower::Service<Request<Incoming>>>::Future>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        self.tracker.request();
        let in_flight = InFlight(self.tracker.clone());
        request.extensions_mut().insert(ConnectInfo(self.remote));
        // A router is always ready (`poll_ready` is a no-op), as `axum::serve`
        // relies on too.
        TrackedAnswer {
            answer: self.app.clone().call(request),
            in_flight: Some(in_flight),
        }
    }
}

/// One request in flight on a connection, until this is dropped: with the
/// answer's body once hyper is done with it, or with the answer itself if it
/// never came (an HTTP/2 stream reset by the client drops it half-way).
struct InFlight(Arc<Tracker>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.answered();
    }
}

pin_project! {
    /// The router's answer, its body wrapped to report when it is done.
    struct TrackedAnswer<F> {
        #[pin]
        answer: F,
        in_flight: Option<InFlight>,
    }
}

impl<F> Future for TrackedAnswer<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.answer.poll(cx));
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(response.map(|body| TrackedBody {
            body,
            _in_flight: in_flight,
        })))
    }
}

/// An answer's body; when hyper drops it (written whole, or the connection
/// or stream gone), its request is no longer in flight.
struct TrackedBody {
    body: Body,
    _in_flight: Option<InFlight>,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// File descriptors kept for everything but client connections: the
/// listener, the store's files or sockets, the runtime, standard streams.
const RESERVED_DESCRIPTORS: u64 = 128;

/// Raises the soft limit on open files (towards the hard limit) so that
/// `max_connections` connections fit beside the descriptors latchkey needs
/// otherwise, and returns the number of connections that do fit: where the
/// hard limit is too low, fewer than asked, with a warning, so that the cap
/// and not the kernel's limit is what binds (a process out of descriptors
/// cannot accept the connection that would let it shed an idle one).
#[cfg(target_os = "linux")]
pub fn fit_open_file_limit(max_connections: usize) -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

    let wanted = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(RESERVED_DESCRIPTORS);
    let limit = getrlimit(Resource::Nofile);
    // `None` is unlimited.
    let mut soft = limit.current.unwrap_or(u64::MAX);
    if soft < wanted {
        let raised = limit.maximum.map_or(wanted, |hard| hard.min(wanted));
        if raised > soft {
            let new = Rlimit {
                current: Some(raised),
                maximum: limit.maximum,
            };
            match setrlimit(Resource::Nofile, new) {
                Ok(()) => soft = raised,
                Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
            }
        }
    }
    if soft >= wanted {
        return max_connections;
    }
    let fits = soft
        .saturating_sub(RESERVED_DESCRIPTORS)
        .max(soft / 2)
        .max(1);
    let fits = usize::try_from(fits).unwrap_or(max_connections);
    tracing::warn!(
        open_file_limit = soft,
        max_connections,
        "MAX_CONNECTIONS lowered to {fits}: the open-file limit leaves room for no more (raise \
         the hard limit: `LimitNOFILE=` for systemd, `ulimit -Hn`)"
    );
    fits
}

/// Elsewhere the limit is left as it is.
#[cfg(not(target_os = "linux"))]
pub fn fit_open_file_limit(max_connections: usize) -> usize {
    max_connections
}
