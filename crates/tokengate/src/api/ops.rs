//! `/healthz`, `/readyz`, `/metrics`, `/openapi.json` (no authentication) and the
//! JSON answers for unknown routes.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use http::{StatusCode, header};

use crate::service::Services;

pub fn router(openapi: Arc<utoipa::openapi::OpenApi>) -> Router<Services> {
    Router::new()
        .route("/healthz", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(move || async move { Json(openapi.as_ref().clone()) }))
}

async fn readyz(State(s): State<Services>) -> impl IntoResponse {
    // A health check gets its answer within a second, whatever the store does.
    match tokio::time::timeout(std::time::Duration::from_secs(1), s.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, Json(serde_json::json!({ "status": "ready" }))),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": "store unavailable, try again", "code": "store_unavailable" })),
        ),
    }
}

async fn metrics() -> impl IntoResponse {
    let body = crate::telemetry::metrics_handle().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

pub async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": "no such route" })))
}

pub async fn method_not_allowed() -> impl IntoResponse {
    (StatusCode::METHOD_NOT_ALLOWED, Json(serde_json::json!({ "error": "method not allowed on this route" })))
}
