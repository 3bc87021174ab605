//! `/v1/accounts/{acc}/usage` and `/v1/accounts/{acc}/audit`.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::accounts::{Items, items};
use super::error::{ApiError, ApiResult};
use super::extract::{Admin, path_id};
use crate::service::{Services, UsageQuery};
use crate::store::AuditEntry;
pub use tokengate_proto::reports::Usage;

fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> ApiResult<T> {
    q.map(|Query(q)| q).map_err(|e| ApiError::BadRequest(e.body_text()))
}

#[utoipa::path(get, path = "/v1/accounts/{acc}/usage", tag = "reports", params(("acc" = String, Path), UsageQuery),
    responses((status = 200, body = Usage)), security(("admin_token" = [])))]
pub async fn usage(
    State(s): State<Services>,
    _: Admin,
    Path(acc): Path<String>,
    q: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Usage>> {
    let q = query(q)?;
    Ok(Json(Usage { buckets: s.usage(path_id(&acc, "account")?, &q).await? }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Newest entries first; 1 to 1000, default 100.
    limit: Option<String>,
}

#[utoipa::path(get, path = "/v1/accounts/{acc}/audit", tag = "reports", params(("acc" = String, Path), AuditQuery),
    responses((status = 200, body = Items<AuditEntry>)), security(("admin_token" = [])))]
pub async fn audit(
    State(s): State<Services>,
    _: Admin,
    Path(acc): Path<String>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Items<AuditEntry>>> {
    let q = query(q)?;
    Ok(items(s.audit(path_id(&acc, "account")?, q.limit.as_deref()).await?))
}
