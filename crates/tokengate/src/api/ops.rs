//! `/healthz`, `/readyz`, `/metrics`, `/openapi.json` (no authentication) and the
//! JSON answers for unknown routes.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use http::{StatusCode, header};

use crate::service::Services;

/// `openapi` is the document as served, serialized once.
pub fn router(openapi: bytes::Bytes) -> Router<Services> {
    Router::new()
        .route("/healthz", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(move || async move { ([(header::CONTENT_TYPE, "application/json")], openapi) }))
}

/// JSON strings may hold anything but NUL (`extract::ApiJson` refuses it, as PostgreSQL
/// would): every string schema says so, so that a client generated from the document,
/// or a fuzzer, knows. One without a pattern gets one; one with a pattern of its own
/// gets `not` a string holding NUL; fixed values need nothing.
pub fn no_nul_in_strings(schema: &mut serde_json::Value) {
    use serde_json::{Value, json};
    match schema {
        Value::Object(map) => {
            // Inside first: what is added below is not walked again.
            map.values_mut().for_each(no_nul_in_strings);
            let is_string = match map.get("type") {
                Some(Value::String(t)) => t == "string",
                Some(Value::Array(types)) => types.iter().any(|t| t == "string"),
                _ => false,
            };
            if is_string && !map.contains_key("enum") && !map.contains_key("const") {
                if map.contains_key("pattern") {
                    map.insert("not".into(), json!({ "type": "string", "pattern": "\\u0000" }));
                } else {
                    map.insert("pattern".into(), Value::String("^[^\\u0000]*$".into()));
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(no_nul_in_strings),
        _ => {}
    }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn every_string_schema_refuses_nul_once() {
        let mut doc = json!({"properties": {
            "name": {"type": "string", "maxLength": 200},
            "note": {"type": ["string", "null"]},
            "path": {"type": "string", "pattern": "^/"},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "count": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}}
        }});
        super::no_nul_in_strings(&mut doc);
        let p = &doc["properties"];
        assert_eq!(p["name"]["pattern"], "^[^\\u0000]*$");
        assert_eq!(p["note"]["pattern"], "^[^\\u0000]*$");
        assert_eq!(
            p["path"],
            json!({"type": "string", "pattern": "^/", "not": {"type": "string", "pattern": "\\u0000"}})
        );
        assert_eq!(p["kind"], json!({"type": "string", "enum": ["a", "b"]}));
        assert_eq!(p["count"], json!({"type": "integer"}));
        assert_eq!(p["tags"]["items"]["pattern"], "^[^\\u0000]*$");
    }
}
