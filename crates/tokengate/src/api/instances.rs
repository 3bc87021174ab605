//! `/v1/accounts/{acc}/instances` and `/v1/instances/{id}`.

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use secrecy::ExposeSecret;
use tokengate_core::InstanceId;

use super::accounts::{Items, items};
use super::error::ApiResult;
use super::extract::{Admin, ApiJson, path_id};
use crate::service::{InstancePatch, NewInstance, Services};
use crate::store::Instance;
pub use tokengate_proto::instances::CreatedInstance;

#[utoipa::path(post, path = "/v1/accounts/{acc}/instances", tag = "instances", params(("acc" = String, Path)),
    request_body = NewInstance, responses((status = 201, body = CreatedInstance), (status = 422)),
    security(("admin_token" = [])))]
pub async fn create_instance(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(acc): Path<String>,
    ApiJson(body): ApiJson<NewInstance>,
) -> ApiResult<(StatusCode, Json<CreatedInstance>)> {
    let (instance, token) = s.create_instance(&actor, path_id(&acc, "account")?, body).await?;
    let token = token.expose_secret().to_string();
    Ok((StatusCode::CREATED, Json(CreatedInstance { instance, token })))
}

#[utoipa::path(get, path = "/v1/accounts/{acc}/instances", tag = "instances", params(("acc" = String, Path)),
    responses((status = 200, body = Items<Instance>)), security(("admin_token" = [])))]
pub async fn list_instances(
    State(s): State<Services>,
    _: Admin,
    Path(acc): Path<String>,
) -> ApiResult<Json<Items<Instance>>> {
    Ok(items(s.list_instances(path_id(&acc, "account")?).await?))
}

#[utoipa::path(get, path = "/v1/instances/{id}", tag = "instances", params(("id" = String, Path)),
    responses((status = 200, body = Instance), (status = 404)), security(("admin_token" = [])))]
pub async fn get_instance(State(s): State<Services>, _: Admin, Path(id): Path<String>) -> ApiResult<Json<Instance>> {
    Ok(Json(s.instance(path_id::<InstanceId>(&id, "instance")?).await?))
}

#[utoipa::path(patch, path = "/v1/instances/{id}", tag = "instances", params(("id" = String, Path)),
    request_body = InstancePatch, responses((status = 200, body = Instance), (status = 404), (status = 422)),
    security(("admin_token" = [])))]
pub async fn patch_instance(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<InstancePatch>,
) -> ApiResult<Json<Instance>> {
    Ok(Json(s.update_instance(&actor, path_id(&id, "instance")?, body).await?))
}

#[utoipa::path(delete, path = "/v1/instances/{id}", tag = "instances", params(("id" = String, Path)),
    responses((status = 204), (status = 404)), security(("admin_token" = [])))]
pub async fn delete_instance(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.delete_instance(&actor, path_id(&id, "instance")?).await?;
    Ok(StatusCode::NO_CONTENT)
}
