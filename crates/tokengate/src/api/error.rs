//! The one place where errors become HTTP responses: `{"error": "..."}` with a status.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::service::{OAuthError, ServiceError};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("a valid admin token is required (Authorization: Bearer tga_…)")]
    Unauthorized,
    #[error("request body too large")]
    TooLarge,
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("too many requests, try again later")]
    RateLimited { retry_after_seconds: u64 },
    /// A request that must be signed was not, or not right.
    #[error("{0}")]
    BadSignature(&'static str),
}

impl ApiError {
    /// The machine-readable `code` some errors carry beside `error`.
    fn code(&self) -> Option<&'static str> {
        match self {
            ApiError::Service(ServiceError::QuotaExceeded(_)) => Some("quota_exceeded"),
            ApiError::Service(ServiceError::Store(StoreError::Backend(_))) => Some("store_unavailable"),
            _ => None,
        }
    }

    /// Status and public message. Store failures are not described to the client.
    fn parts(&self) -> (StatusCode, String) {
        match self {
            ApiError::Service(ServiceError::QuotaExceeded(m)) => (StatusCode::CONFLICT, m.clone()),
            ApiError::Service(ServiceError::NotFound(what)) => (StatusCode::NOT_FOUND, format!("{what} not found")),
            ApiError::Service(ServiceError::Invalid(m)) => (StatusCode::UNPROCESSABLE_ENTITY, m.clone()),
            ApiError::Service(ServiceError::Conflict(m)) => (StatusCode::CONFLICT, m.clone()),
            ApiError::Service(ServiceError::Store(StoreError::NotFound)) => (StatusCode::NOT_FOUND, "not found".into()),
            ApiError::Service(ServiceError::Store(StoreError::Conflict(m))) => (StatusCode::CONFLICT, (*m).into()),
            ApiError::Service(ServiceError::Store(StoreError::Backend(_))) => {
                (StatusCode::SERVICE_UNAVAILABLE, "store unavailable, try again".into())
            }
            ApiError::Service(ServiceError::Store(_)) => (StatusCode::INTERNAL_SERVER_ERROR, "internal error".into()),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            ApiError::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, m.clone()),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, format!("{what} not found")),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, self.to_string()),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, self.to_string()),
            ApiError::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, self.to_string()),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, self.to_string()),
            ApiError::BadSignature(m) => (StatusCode::UNAUTHORIZED, (*m).to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, "admin request failed");
        }
        let body = match self.code() {
            Some(code) => serde_json::json!({ "error": message, "code": code }),
            None => serde_json::json!({ "error": message }),
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::RateLimited { retry_after_seconds } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds.max(1)));
        }
        if status == StatusCode::UNAUTHORIZED && !matches!(self, ApiError::BadSignature(_)) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// OAuth endpoints answer in RFC 6749 §5.2's shape, `{"error": code,
/// "error_description": …}`, never cached; `invalid_client` is a 401 with a challenge.
impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let (status, code, description) = match &self {
            OAuthError::InvalidRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request", Some(m.clone())),
            OAuthError::InvalidClient => {
                (StatusCode::UNAUTHORIZED, "invalid_client", Some("client authentication failed".to_string()))
            }
            OAuthError::InvalidScope(m) => (StatusCode::BAD_REQUEST, "invalid_scope", Some(m.clone())),
            OAuthError::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                Some("only client_credentials is supported".to_string()),
            ),
            OAuthError::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None),
        };
        let mut body = serde_json::Map::new();
        body.insert("error".into(), code.into());
        if let Some(d) = description {
            body.insert("error_description".into(), d.into());
        }
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"tokengate\""));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_table() {
        let cases: Vec<(ApiError, u16)> = vec![
            (ServiceError::NotFound("account").into(), 404),
            (ServiceError::Invalid("x".into()).into(), 422),
            (ServiceError::Conflict("x".into()).into(), 409),
            (ServiceError::Store(StoreError::NotFound).into(), 404),
            (ServiceError::Store(StoreError::Backend(sqlx::Error::PoolTimedOut)).into(), 503),
            (ServiceError::Store(StoreError::Corrupt("x".into())).into(), 500),
            (ApiError::BadRequest("x".into()), 400),
            (ApiError::Unauthorized, 401),
            (ApiError::TooLarge, 413),
            (ApiError::UnsupportedMediaType, 415),
        ];
        for (error, status) in cases {
            let text = error.to_string();
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status, "{text}");
        }
    }

    #[tokio::test]
    async fn oauth_errors_follow_rfc_6749() {
        let cases = [
            (OAuthError::InvalidRequest("x".into()), 400, "invalid_request"),
            (OAuthError::InvalidClient, 401, "invalid_client"),
            (OAuthError::InvalidScope("x".into()), 400, "invalid_scope"),
            (OAuthError::UnsupportedGrantType, 400, "unsupported_grant_type"),
        ];
        for (error, status, code) in cases {
            let response = error.into_response();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
            assert_eq!(response.headers().contains_key(header::WWW_AUTHENTICATE), status == 401);
            let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"], code);
            assert!(body["error_description"].is_string());
        }
    }

    #[test]
    fn store_details_are_not_shown() {
        let (_, message) = ApiError::from(ServiceError::Store(StoreError::Corrupt("secret detail".into()))).parts();
        assert!(!message.contains("secret detail"));
    }
}
