//! Webhooks (SPEC §15): `/v1/accounts/{acc}/webhooks`, `/v1/webhooks/{id}` and its
//! delivery log.

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use secrecy::ExposeSecret;

use super::accounts::{Items, items};
use super::error::ApiResult;
use super::extract::{Admin, ApiJson, path_id};
use crate::service::{NewWebhook, Services};
use crate::store::{Webhook, WebhookDelivery};
pub use tokengate_proto::webhooks::CreatedWebhook;

/// Webhook ids are UUIDs; anything else names nothing.
fn webhook_id(raw: &str) -> ApiResult<String> {
    path_id::<uuid::Uuid>(raw, "webhook").map(|u| u.to_string())
}

#[utoipa::path(post, path = "/v1/accounts/{acc}/webhooks", tag = "webhooks", params(("acc" = String, Path)),
    request_body = NewWebhook, responses((status = 201, body = CreatedWebhook), (status = 400), (status = 404),
        (status = 413), (status = 415), (status = 422)), security(("admin_token" = [])))]
pub async fn create_webhook(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(acc): Path<String>,
    ApiJson(body): ApiJson<NewWebhook>,
) -> ApiResult<(StatusCode, Json<CreatedWebhook>)> {
    let (webhook, secret) = s.create_webhook(&actor, path_id(&acc, "account")?, body).await?;
    Ok((StatusCode::CREATED, Json(CreatedWebhook { webhook, secret: secret.expose_secret().to_string() })))
}

#[utoipa::path(get, path = "/v1/accounts/{acc}/webhooks", tag = "webhooks", params(("acc" = String, Path)),
    responses((status = 200, body = Items<Webhook>), (status = 404)), security(("admin_token" = [])))]
pub async fn list_webhooks(
    State(s): State<Services>,
    _: Admin,
    Path(acc): Path<String>,
) -> ApiResult<Json<Items<Webhook>>> {
    Ok(items(s.list_webhooks(path_id(&acc, "account")?).await?))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = Webhook), (status = 404)), security(("admin_token" = [])))]
pub async fn get_webhook(State(s): State<Services>, _: Admin, Path(id): Path<String>) -> ApiResult<Json<Webhook>> {
    Ok(Json(s.webhook(&webhook_id(&id)?).await?))
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 204), (status = 404)), security(("admin_token" = [])))]
pub async fn delete_webhook(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.delete_webhook(&actor, &webhook_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = Items<WebhookDelivery>), (status = 404)), security(("admin_token" = [])))]
pub async fn deliveries(
    State(s): State<Services>,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<Items<WebhookDelivery>>> {
    Ok(items(s.webhook_deliveries(&webhook_id(&id)?).await?))
}
