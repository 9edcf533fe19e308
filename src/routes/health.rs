//! `GET /healthz`: up when the store answers.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::error::ErrorBody;
use crate::auth::{ApiError, Auth};

pub(crate) fn router() -> OpenApiRouter<Auth> {
    OpenApiRouter::new().routes(routes!(health))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    #[schema(pattern = "^ok$")]
    status: &'static str,
}

/// Up when the store answers.
#[utoipa::path(
    get, path = "/healthz", tag = "service",
    responses(
        (status = 200, description = "The store answers", body = Health),
        (status = 503, description = "`unavailable`: the store does not answer", body = ErrorBody),
    )
)]
async fn health(State(auth): State<Auth>) -> Result<Json<Health>, ApiError> {
    auth.ping().await?;
    Ok(Json(Health { status: "ok" }))
}
