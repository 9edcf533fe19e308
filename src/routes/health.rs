//! Health checks (README, "Health checks"): `GET /healthz` (the store
//! answers), `GET /livez` (the process serves) and `GET /readyz` (ready for
//! traffic: the store answers and no shutdown has begun).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{ApiError, Auth};
use crate::routes::error::ErrorBody;

pub(crate) fn router() -> OpenApiRouter<Auth> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(live))
        .routes(routes!(ready))
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

/// Up while the process serves requests; asks nothing of the store.
#[utoipa::path(
    get, path = "/livez", tag = "service",
    responses(
        (status = 200, description = "The process serves", body = Health),
    )
)]
async fn live() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Ready for traffic: the store answers and no shutdown has begun.
///
/// `503` from the moment a shutdown begins (SIGTERM, ctrl-c), while the
/// listener stays open for `SHUTDOWN_DELAY` and requests in flight finish,
/// so a load balancer stops sending before connections close.
#[utoipa::path(
    get, path = "/readyz", tag = "service",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "`shutting_down`: a shutdown has begun; `unavailable`: the store does not answer", body = ErrorBody),
    )
)]
async fn ready(State(auth): State<Auth>) -> Result<Json<Health>, ApiError> {
    auth.ready().await?;
    Ok(Json(Health { status: "ok" }))
}
