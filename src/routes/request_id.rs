//! Request ids: what a response, its log lines and its audit events share.
//!
//! A client (or the reverse proxy) may send its own `x-request-id` to tie
//! latchkey's records to its own; it is kept only when it is short and made
//! of safe characters, since it goes verbatim into logs, audit rows and the
//! response. Anything else is replaced by an id of latchkey's own, before
//! anything reads it, so all three always agree.
//!
//! latchkey's ids are a random prefix drawn once per process and a counter:
//! unique across instances and restarts, and free to make. (A UUID v4 per
//! request costs a `getrandom` system call each time, measurable on the
//! `/protected` path.) Ids are labels, not secrets: nothing trusts them.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderName, HeaderValue, Request};

pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id accepted from a client: a UUID is 36 characters.
const MAX_CLIENT_ID: usize = 64;

/// Whether a client's id may stand: 1 to 64 of `A-Z a-z 0-9 . _ : -`. No
/// spaces, quotes, `=` or control characters, so it can neither split a log
/// line or a CLI column nor pose as another field.
fn acceptable(id: &HeaderValue) -> bool {
    let id = id.as_bytes();
    (1..=MAX_CLIENT_ID).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The request's id: the client's, when it sent exactly one and an
/// acceptable one; otherwise latchkey's own from `ids`, which replaces
/// whatever the client sent. Either way the request then carries it, for
/// the handlers and audit events to read. A request without the header pays
/// one lookup.
pub(crate) fn settle<B>(request: &mut Request<B>, ids: &ProcessUnique) -> HeaderValue {
    let headers = request.headers_mut();
    let theirs = {
        let mut sent = headers.get_all(&REQUEST_ID).iter();
        match (sent.next(), sent.next()) {
            (Some(id), None) if acceptable(id) => Some(id.clone()),
            _ => None,
        }
    };
    theirs.unwrap_or_else(|| {
        let id = ids.make();
        headers.insert(REQUEST_ID.clone(), id.clone());
        id
    })
}

#[derive(Clone)]
pub(crate) struct ProcessUnique {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl ProcessUnique {
    pub(crate) fn new() -> Self {
        Self {
            prefix: crate::random::token(9).into(),
            next: Arc::new(AtomicU64::new(1)),
        }
    }

    fn make(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Written once, into a buffer of its final size (`format!` grows
        // its own), which the header then keeps: no second copy.
        let mut id = String::with_capacity(self.prefix.len() + 1 + 20);
        let _ = write!(id, "{}-{n}", self.prefix);
        HeaderValue::from_maybe_shared(axum::body::Bytes::from(id))
            .unwrap_or_else(|_| HeaderValue::from_static("-"))
    }
}
