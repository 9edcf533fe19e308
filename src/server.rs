//! Serving HTTP/1.1 connections within bounds (README, Security model): how
//! long a request head may take to arrive, how long a keep-alive connection
//! may sit idle, and how many connections may be open at once, shedding the
//! oldest idle ones to make room. (How long a body and its answer may take is
//! `REQUEST_TIMEOUT`, a layer of the router: `routes/timeout.rs`.)
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, Id, JoinError, JoinSet};
use tokio::time::{Instant, Sleep};
use tower::Service as _;

use crate::config::ServeLimits;

/// Serves `app` on `listener` within `limits` until `shutdown` resolves;
/// then stops accepting, closes the connections with no request in flight,
/// and waits for the answers in flight. Handlers see the client's address as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
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
    mut stopping: watch::Receiver<bool>,
) {
    let io = TokioIo::new(TrackedStream {
        stream,
        tracker: tracker.clone(),
    });
    let service = ConnectionService {
        app,
        tracker: tracker.clone(),
        remote,
    };
    let mut builder = http1::Builder::new();
    // Off: the watchdog keeps that deadline (see the top of this file).
    builder.header_read_timeout(None);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut watchdog = Watchdog::new(tracker.clone(), limits);
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
                // Answers the request in flight, then closes.
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
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
/// microsecond (since the server started) the phase began.
struct Tracker {
    word: AtomicU64,
    epoch: Instant,
}

/// Waiting for a complete request head, since the connection opened or
/// since the first byte after an idle spell.
const HEAD: u64 = 0;
/// Kept alive between requests: nothing in flight, nothing received.
const IDLE: u64 = 1;
/// A request in flight: from its complete head until its answer is written.
const BUSY: u64 = 2;
const PHASE: u64 = 0b11;

impl Tracker {
    fn new(epoch: Instant) -> Self {
        let tracker = Self {
            word: AtomicU64::new(0),
            epoch,
        };
        tracker.enter(HEAD);
        tracker
    }

    fn enter(&self, phase: u64) {
        let micros = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX >> 2);
        self.word.store((micros << 2) | phase, Ordering::Relaxed);
    }

    /// A request head is complete (its time is of no use: a request in
    /// flight has no deadline here).
    fn request(&self) {
        self.word.store(BUSY, Ordering::Relaxed);
    }

    /// The answer has been handed to the connection whole.
    fn answered(&self) {
        self.enter(IDLE);
    }

    /// Bytes arrived: after an idle spell, the next head has begun.
    fn received(&self) {
        if self.word.load(Ordering::Relaxed) & PHASE == IDLE {
            self.enter(HEAD);
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
        request.extensions_mut().insert(ConnectInfo(self.remote));
        // A router is always ready (`poll_ready` is a no-op), as `axum::serve`
        // relies on too.
        TrackedAnswer {
            answer: self.app.clone().call(request),
            tracker: Some(self.tracker.clone()),
        }
    }
}

pin_project! {
    /// The router's answer, its body wrapped to report when it is done.
    struct TrackedAnswer<F> {
        #[pin]
        answer: F,
        tracker: Option<Arc<Tracker>>,
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
        let tracker = this.tracker.take();
        Poll::Ready(Ok(response.map(|body| TrackedBody { body, tracker })))
    }
}

/// An answer's body; when hyper drops it (written whole, or the connection
/// gone), the connection has no request in flight any more.
struct TrackedBody {
    body: Body,
    tracker: Option<Arc<Tracker>>,
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

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if let Some(tracker) = self.tracker.take() {
            tracker.answered();
        }
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
