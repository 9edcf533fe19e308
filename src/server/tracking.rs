//! What each connection is doing and when it is due to be closed: one word
//! (`Tracker`) written by the connection's socket (`TrackedStream`), by each
//! request as it begins (`ConnectionService`) and by each answer as hyper is
//! done with it (`TrackedBody`), and read by its deadline (`Watchdog`) and
//! by the accept loop choosing a connection to shed.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tower::Service as _;

use crate::config::ServeLimits;

/// What one connection is doing, in one word that its task writes and the
/// accept loop reads: the phase in the low two bits, above them the
/// microsecond (since the server started) the phase began, or while busy the
/// number of requests in flight. Over HTTP/2 answers end on the tasks hyper
/// spawns for streams, so every change is one atomic update of the word.
pub(super) struct Tracker {
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
    pub(super) fn new(epoch: Instant) -> Self {
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
    pub(super) fn multiplexed(&self) {
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

    pub(super) fn busy_now(&self) -> bool {
        self.word.load(Ordering::Relaxed) & PHASE == BUSY
    }

    /// Since when (microseconds since the epoch) the connection has had no
    /// request in flight; `None` while it has one.
    pub(super) fn idle_since(&self) -> Option<u64> {
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
pub(super) struct Watchdog {
    tracker: Arc<Tracker>,
    limits: ServeLimits,
    timer: Pin<Box<Sleep>>,
    armed: Instant,
}

impl Watchdog {
    pub(super) fn new(tracker: Arc<Tracker>, limits: ServeLimits) -> Self {
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
pub(super) struct TrackedStream {
    pub(super) stream: TcpStream,
    pub(super) tracker: Arc<Tracker>,
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
pub(super) struct ConnectionService {
    pub(super) app: Router,
    pub(super) tracker: Arc<Tracker>,
    pub(super) remote: SocketAddr,
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
pub(super) struct InFlight(Arc<Tracker>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.answered();
    }
}

pin_project! {
    /// The router's answer, its body wrapped to report when it is done.
    pub(super) struct TrackedAnswer<F> {
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
pub(super) struct TrackedBody {
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
