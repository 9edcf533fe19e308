//! The request a log line was written during: its method, path and id on
//! every line logged while latchkey handles it (README, "Logs"), at no cost
//! to a request that logs nothing.
//!
//! A `tracing` span would carry them as well, but the log formatter renders
//! a span's fields into a new string as the span is created, on every
//! request, and the span is entered and left on every poll: together the
//! largest cost of `GET /protected` beside the token check (README,
//! "Performance"). Here the request's method, path and id are kept as they
//! came (shared buffers: no copy) in a task-local value for as long as the
//! request is handled, and [`WithRequest`] renders them only into a line
//! that is written, where the span's fields used to be.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::http::{HeaderValue, Method, Request, Response, Uri};
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::request_id::{self, ProcessUnique, REQUEST_ID};

tokio::task_local! {
    static REQUEST: RequestInfo;
}

/// What a log line says of its request.
#[derive(Clone)]
pub(crate) struct RequestInfo {
    method: Method,
    /// The path is rendered, never the query: a query string is no place
    /// for secrets, but clients put them there anyway.
    uri: Uri,
    id: Option<HeaderValue>,
}

/// Gives each request its id (`request_id.rs`) and puts it in scope for its
/// log lines; on the way out, puts the id on the answer and, when
/// `latchkey::access` is on at debug, writes one access-log line (the
/// reverse proxy keeps the access log otherwise). One layer for all of it:
/// each layer is a future wrapped around the answer on every request.
#[derive(Clone)]
pub(crate) struct RequestScopeLayer {
    ids: ProcessUnique,
}

impl RequestScopeLayer {
    pub(crate) fn new() -> Self {
        Self {
            ids: ProcessUnique::new(),
        }
    }
}

impl<S> Layer<S> for RequestScopeLayer {
    type Service = RequestScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestScope {
            inner,
            ids: self.ids.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct RequestScope<S> {
    inner: S,
    ids: ProcessUnique,
}

impl<S, B, ResBody> Service<Request<B>> for RequestScope<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Scoped<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let id = request_id::settle(&mut request, &self.ids);
        let access = tracing::enabled!(target: ACCESS, Level::DEBUG).then(Instant::now);
        let info = RequestInfo {
            method: request.method().clone(),
            uri: request.uri().clone(),
            id: Some(id.clone()),
        };
        Scoped {
            answer: REQUEST.scope(info, self.inner.call(request)),
            id: Some(id),
            access,
        }
    }
}

/// The target of the access-log line, at debug.
const ACCESS: &str = "latchkey::access";

pin_project! {
    /// The answer, in the request's scope; its id put on it when ready.
    pub(crate) struct Scoped<F: Future> {
        #[pin]
        answer: TaskLocalFuture<RequestInfo, F>,
        id: Option<HeaderValue>,
        access: Option<Instant>,
    }
}

impl<F, ResBody, E> Future for Scoped<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut answer = ready!(this.answer.as_mut().poll(cx));
        if let Ok(response) = &mut answer {
            if let Some(id) = this.id.take() {
                response.headers_mut().entry(&REQUEST_ID).or_insert(id);
            }
            if let Some(started) = this.access.take() {
                let status = response.status().as_u16();
                let took = started.elapsed();
                let line = || {
                    tracing::debug!(target: ACCESS, status, latency_ms = took.as_secs_f64() * 1e3, "answered");
                };
                // In the request's scope, so that the line names its request.
                match this.answer.as_mut().take_value() {
                    Some(request) => REQUEST.sync_scope(request, line),
                    None => line(),
                }
            }
        }
        Poll::Ready(answer)
    }
}

/// How a log line is written, around `tracing-subscriber`'s own format.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LineFormat {
    /// Text: `request{method=… path=… request_id=…}: ` before the target,
    /// where a span's fields would be.
    Text,
    /// JSON: the request first in `spans`, as `{"name":"request",…}`.
    Json,
}

/// A log line's format, with the request it was written during, if any.
pub(crate) struct WithRequest<F> {
    pub(crate) inner: F,
    pub(crate) format: LineFormat,
}

impl<S, N, F> FormatEvent<S, N> for WithRequest<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Ok(request) = REQUEST.try_with(RequestInfo::clone) else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        let id = request
            .id
            .as_ref()
            .and_then(|id| id.to_str().ok())
            .unwrap_or("-");
        let path = request.uri.path();
        match self.format {
            LineFormat::Text => {
                let fields = format!(
                    "request{{method={} path={path} request_id={id}}}: ",
                    request.method
                );
                let target = format!("{}: ", event.metadata().target());
                match line.find(&target) {
                    Some(at) => {
                        writer.write_str(&line[..at])?;
                        writer.write_str(&fields)?;
                        writer.write_str(&line[at..])?;
                    }
                    None => {
                        writer.write_str(&fields)?;
                        writer.write_str(line)?;
                    }
                }
            }
            LineFormat::Json => {
                let span = serde_json::json!({
                    "name": "request",
                    "method": request.method.as_str(),
                    "path": path,
                    "request_id": id,
                })
                .to_string();
                // Spliced into the line as written, so that its keys keep
                // their order: the span list is the last array named
                // `spans` (values are strings, with their quotes escaped).
                const SPANS: &str = "\"spans\":[";
                match line.rfind(SPANS) {
                    Some(at) => {
                        let (head, tail) = line.split_at(at + SPANS.len());
                        writer.write_str(head)?;
                        writer.write_str(&span)?;
                        if !tail.starts_with(']') {
                            writer.write_char(',')?;
                        }
                        writer.write_str(tail)?;
                    }
                    None => match line.strip_suffix('}') {
                        Some(head) => {
                            writer.write_str(head)?;
                            write!(writer, ",\"spans\":[{span}]}}")?;
                        }
                        None => writer.write_str(line)?,
                    },
                }
            }
        }
        writer.write_char('\n')
    }
}
