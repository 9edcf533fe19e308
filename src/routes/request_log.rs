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
use std::task::{Context, Poll};

use axum::http::{HeaderValue, Method, Request, Uri};
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::request_id::REQUEST_ID;

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

/// Puts each request in scope for its log lines; inside the request id's
/// layers, so that the id is the one the response carries.
#[derive(Clone, Copy)]
pub(crate) struct RequestScopeLayer;

impl<S> Layer<S> for RequestScopeLayer {
    type Service = RequestScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestScope { inner }
    }
}

#[derive(Clone)]
pub(crate) struct RequestScope<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for RequestScope<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TaskLocalFuture<RequestInfo, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let info = RequestInfo {
            method: request.method().clone(),
            uri: request.uri().clone(),
            id: request.headers().get(&REQUEST_ID).cloned(),
        };
        REQUEST.scope(info, self.inner.call(request))
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
