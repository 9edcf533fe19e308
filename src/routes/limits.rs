//! Limits on request headers: a `431` in the JSON error shape before any
//! handler parses them. (Bodies are limited per route by `DefaultBodyLimit`.)

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::ApiError;

/// Longest single header value: far above any real cookie or token.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header bytes in one request.
pub const MAX_HEADERS_BYTES: usize = 64 * 1024;

pub async fn header_limits(request: Request, next: Next) -> Response {
    let mut total = 0;
    for (name, value) in request.headers() {
        let size = name.as_str().len() + value.len();
        total += size;
        if size > MAX_HEADER_BYTES || total > MAX_HEADERS_BYTES {
            return ApiError::HeadersTooLarge.into_response();
        }
    }
    next.run(request).await
}
