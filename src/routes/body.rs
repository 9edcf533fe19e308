//! Request bodies for endpoints that serve both API clients (JSON) and the
//! HTML forms (form-urlencoded). Any other content type is a `415`.

use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::{Form, Json};
use serde::de::DeserializeOwned;

use crate::auth::ApiError;

pub enum JsonOrForm<T> {
    Json(T),
    Form(T),
}

/// True when the request is an HTML form submission.
pub fn is_form(headers: &axum::http::HeaderMap) -> bool {
    media_type(headers).as_deref() == Some("application/x-www-form-urlencoded")
}

fn media_type(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

impl<S, T> FromRequest<S> for JsonOrForm<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match media_type(req.headers()).as_deref() {
            Some("application/json") => {
                let Json(value) = Json::<T>::from_request(req, state).await?;
                Ok(Self::Json(value))
            }
            Some("application/x-www-form-urlencoded") => {
                let Form(value) = Form::<T>::from_request(req, state).await?;
                Ok(Self::Form(value))
            }
            _ => Err(ApiError::UnsupportedMediaType),
        }
    }
}
