//! Limits on request headers: a `431` in the JSON error shape before any
//! handler parses them. (Bodies are limited per route by `DefaultBodyLimit`.)
//!
//! A plain `tower` layer rather than `axum::middleware::from_fn`, which
//! clones the whole stack below it and boxes its future on every request
//! (README, "Performance").

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::auth::ApiError;

/// Longest single header value: far above any real cookie or token.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header bytes in one request.
pub const MAX_HEADERS_BYTES: usize = 64 * 1024;

/// Whether the request's headers are within the limits.
fn within_limits(request: &Request) -> bool {
    let mut total = 0;
    for (name, value) in request.headers() {
        let size = name.as_str().len() + value.len();
        total += size;
        if size > MAX_HEADER_BYTES || total > MAX_HEADERS_BYTES {
            return false;
        }
    }
    true
}

/// Answers `431 headers_too_large` to a request over the limits.
#[derive(Clone, Copy)]
pub(crate) struct HeaderLimitsLayer;

impl<S> Layer<S> for HeaderLimitsLayer {
    type Service = HeaderLimits<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HeaderLimits { inner }
    }
}

#[derive(Clone)]
pub(crate) struct HeaderLimits<S> {
    inner: S,
}

impl<S> Service<Request> for HeaderLimits<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Limited<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if within_limits(&request) {
            Limited::Passed {
                inner: self.inner.call(request),
            }
        } else {
            Limited::Refused {
                response: Some(ApiError::HeadersTooLarge.into_response()),
            }
        }
    }
}

pin_project! {
    /// The answer below, or the `431`.
    #[project = LimitedProjection]
    pub(crate) enum Limited<F> {
        Passed { #[pin] inner: F },
        Refused { response: Option<Response> },
    }
}

impl<F, E> Future for Limited<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            LimitedProjection::Passed { inner } => inner.poll(cx),
            LimitedProjection::Refused { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_default()))
            }
        }
    }
}
