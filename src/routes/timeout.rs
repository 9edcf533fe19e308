//! `REQUEST_TIMEOUT`: reading a request's body and answering it must finish
//! in time, or the answer is a `408` in the JSON error shape and the
//! connection closes (README, Security model). It wraps the routes, so the
//! extractors that read bodies run inside it.
//!
//! Most answers (`/protected`, a token check) are ready the first time they
//! are polled; only an answer that has to wait starts a timer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::http::Request;
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::{Layer, Service};

use crate::auth::ApiError;

#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestTimeoutLayer(pub(crate) Duration);

impl<S> Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTimeout {
            inner,
            limit: self.0,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RequestTimeout<S> {
    inner: S,
    limit: Duration,
}

impl<S, B> Service<Request<B>> for RequestTimeout<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = InTime<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        InTime {
            answer: self.inner.call(request),
            limit: self.limit,
            timer: None,
        }
    }
}

pin_project! {
    /// The answer, or a `408` once the limit has passed.
    pub(crate) struct InTime<F> {
        #[pin]
        answer: F,
        limit: Duration,
        // Boxed, and only once the answer has had to wait.
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<F> Future for InTime<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(answer) = this.answer.poll(cx) {
            return Poll::Ready(answer);
        }
        let limit = *this.limit;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Ok(ApiError::RequestTimeout.into_response()))
    }
}
