//! The HTTP side of the metrics (README, "Metrics"): the layer that counts
//! and times every answer of [`router`](super::router) by its route
//! template, and [`metrics_router`], the `GET /metrics` that
//! `METRICS_BIND` serves on a listener of its own, never on the public one.
//!
//! The layer wraps each route, where axum has already put the matched
//! route's template (`MatchedPath`) in the request; per request it costs two
//! clock reads, two reference counts and two lookups in the families.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, State};
use axum::http::{Request, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::auth::metrics::{CONTENT_TYPE, Route};
use crate::auth::{ApiError, Auth};

/// `GET /metrics`: every metric of `auth` in Prometheus' text format. Meant
/// for a listener of its own (`METRICS_BIND`): what it tells (routes, rates
/// of failed logins) is for the operator, not for every client.
pub fn metrics_router(auth: Auth) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .fallback(|| async { ApiError::NotFound })
        .with_state(auth)
}

async fn scrape(State(auth): State<Auth>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], auth.metrics_text())
}

/// Counts and times each answer (`latchkey_http_requests_total`,
/// `latchkey_http_request_duration_seconds`).
#[derive(Clone)]
pub(crate) struct HttpMetricsLayer(pub(crate) Auth);

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetrics {
            inner,
            auth: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct HttpMetrics<S> {
    inner: S,
    auth: Auth,
}

impl<S, B, ResBody> Service<Request<B>> for HttpMetrics<S>
where
    S: Service<Request<B>, Response = Response<ResBody>, Error = Infallible>,
{
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = Measured<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let route = Route::new(request.extensions().get::<MatchedPath>());
        Measured {
            answer: self.inner.call(request),
            measure: Some((self.auth.clone(), route, Instant::now())),
        }
    }
}

pin_project! {
    /// The answer, counted when it is ready. An answer never finished (the
    /// client went away first) is not counted.
    pub(crate) struct Measured<F> {
        #[pin]
        answer: F,
        measure: Option<(Auth, Route, Instant)>,
    }
}

impl<F, ResBody> Future for Measured<F>
where
    F: Future<Output = Result<Response<ResBody>, Infallible>>,
{
    type Output = Result<Response<ResBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answer = ready!(this.answer.poll(cx));
        if let (Ok(response), Some((auth, route, started))) = (&answer, this.measure.take()) {
            auth.metrics()
                .http_request(route, response.status().as_u16(), started.elapsed());
        }
        Poll::Ready(answer)
    }
}
