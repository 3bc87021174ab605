//! `/v1/accounts/{acc}/security-token`: the account's Client-Token.

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use secrecy::ExposeSecret;
use tokengate_core::{AccountId, SecurityTokenStatus};

use super::error::ApiResult;
use super::extract::{Admin, ApiJson, path_id};
use crate::service::{SecurityTokenView, Services};
pub use tokengate_proto::security_token::{Activated, Deactivated, GeneratedToken, RotateBody, Rotated};

fn account(acc: &str) -> ApiResult<AccountId> {
    path_id(acc, "account")
}

#[utoipa::path(post, path = "/v1/accounts/{acc}/security-token", tag = "security-token", params(("acc" = String, Path)),
    responses((status = 201, body = GeneratedToken), (status = 409, description = "the current token is active")),
    security(("admin_token" = [])))]
pub async fn generate(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(acc): Path<String>,
) -> ApiResult<(StatusCode, Json<GeneratedToken>)> {
    let (token, created_at) = s.generate_security_token(&actor, account(&acc)?).await?;
    let body =
        GeneratedToken { token: token.expose_secret().to_string(), status: SecurityTokenStatus::Disabled, created_at };
    Ok((StatusCode::CREATED, Json(body)))
}

#[utoipa::path(get, path = "/v1/accounts/{acc}/security-token", tag = "security-token", params(("acc" = String, Path)),
    responses((status = 200, body = SecurityTokenView)), security(("admin_token" = [])))]
pub async fn status(
    State(s): State<Services>,
    _: Admin,
    Path(acc): Path<String>,
) -> ApiResult<Json<SecurityTokenView>> {
    Ok(Json(s.security_token(account(&acc)?).await?))
}

#[utoipa::path(post, path = "/v1/accounts/{acc}/security-token/activate", tag = "security-token", params(("acc" = String, Path)),
    responses((status = 200, body = Activated), (status = 404, description = "no security token")), security(("admin_token" = [])))]
pub async fn activate(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(acc): Path<String>,
) -> ApiResult<Json<Activated>> {
    let view = s.set_security_token_active(&actor, account(&acc)?, true).await?;
    Ok(Json(Activated { status: view.status, readiness: view.readiness }))
}

#[utoipa::path(post, path = "/v1/accounts/{acc}/security-token/deactivate", tag = "security-token", params(("acc" = String, Path)),
    responses((status = 200, body = Deactivated), (status = 404, description = "no security token")), security(("admin_token" = [])))]
pub async fn deactivate(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(acc): Path<String>,
) -> ApiResult<Json<Deactivated>> {
    let view = s.set_security_token_active(&actor, account(&acc)?, false).await?;
    Ok(Json(Deactivated { status: view.status }))
}

#[utoipa::path(post, path = "/v1/accounts/{acc}/security-token/rotate", tag = "security-token", params(("acc" = String, Path)),
    request_body = RotateBody, responses((status = 200, body = Rotated), (status = 404, description = "no security token"), (status = 422)),
    security(("admin_token" = [])))]
pub async fn rotate(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(acc): Path<String>,
    ApiJson(body): ApiJson<RotateBody>,
) -> ApiResult<Json<Rotated>> {
    let (token, view) = s.rotate_security_token(&actor, account(&acc)?, body.grace_seconds).await?;
    Ok(Json(Rotated {
        token: token.expose_secret().to_string(),
        status: view.status,
        previous_valid_until: view.previous_valid_until,
    }))
}

#[utoipa::path(delete, path = "/v1/accounts/{acc}/security-token", tag = "security-token", params(("acc" = String, Path)),
    responses((status = 204), (status = 404)), security(("admin_token" = [])))]
pub async fn delete(State(s): State<Services>, Admin(actor): Admin, Path(acc): Path<String>) -> ApiResult<StatusCode> {
    s.delete_security_token(&actor, account(&acc)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
