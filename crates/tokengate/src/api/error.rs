//! The one place where errors become HTTP responses: `{"error": "..."}` with a status.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::service::ServiceError;
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
}

impl ApiError {
    /// Status and public message. Store failures are not described to the client.
    fn parts(&self) -> (StatusCode, String) {
        match self {
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
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, "admin request failed");
        }
        let mut response = (status, Json(serde_json::json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

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

    #[test]
    fn store_details_are_not_shown() {
        let (_, message) = ApiError::from(ServiceError::Store(StoreError::Corrupt("secret detail".into()))).parts();
        assert!(!message.contains("secret detail"));
    }
}
