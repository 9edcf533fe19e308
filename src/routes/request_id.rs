//! Request ids: what a response, its log lines and its audit events share.
//!
//! A random prefix drawn once per process and a counter: unique across
//! instances and restarts, and free to make. (A UUID v4 per request costs a
//! `getrandom` system call each time, measurable on the `/protected` path.)
//! Ids are labels, not secrets: nothing trusts them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

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
}

impl MakeRequestId for ProcessUnique {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}
