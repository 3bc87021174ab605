//! Room apps and room tokens (token04).

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;

use super::accounts::{Items, items};
use super::error::{ApiError, ApiResult};
use super::extract::{Admin, ApiJson, path_id};
use crate::service::{IssueRoomToken, IssuedRoomToken, NewRoomApp, RoomVerification, Services, VerifyRoomToken};
use crate::store::RoomApp;

fn app_id(raw: &str) -> ApiResult<u32> {
    raw.parse::<u32>().ok().filter(|id| *id != 0).ok_or(ApiError::NotFound("room app"))
}

#[utoipa::path(post, path = "/v1/accounts/{acc}/room-apps", tag = "room-tokens", params(("acc" = String, Path)),
    request_body = NewRoomApp, responses((status = 201, body = RoomApp), (status = 409), (status = 422)),
    security(("admin_token" = [])))]
pub async fn create_room_app(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(acc): Path<String>,
    ApiJson(body): ApiJson<NewRoomApp>,
) -> ApiResult<(StatusCode, Json<RoomApp>)> {
    Ok((StatusCode::CREATED, Json(s.create_room_app(&actor, path_id(&acc, "account")?, body).await?)))
}

#[utoipa::path(get, path = "/v1/accounts/{acc}/room-apps", tag = "room-tokens", params(("acc" = String, Path)),
    responses((status = 200, body = Items<RoomApp>)), security(("admin_token" = [])))]
pub async fn list_room_apps(
    State(s): State<Services>,
    _: Admin,
    Path(acc): Path<String>,
) -> ApiResult<Json<Items<RoomApp>>> {
    Ok(items(s.list_room_apps(path_id(&acc, "account")?).await?))
}

#[utoipa::path(delete, path = "/v1/accounts/{acc}/room-apps/{app_id}", tag = "room-tokens",
    params(("acc" = String, Path), ("app_id" = u32, Path)), responses((status = 204), (status = 404)),
    security(("admin_token" = [])))]
pub async fn delete_room_app(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path((acc, app)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.delete_room_app(&actor, path_id(&acc, "account")?, app_id(&app)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/accounts/{acc}/room-apps/{app_id}/tokens", tag = "room-tokens",
    params(("acc" = String, Path), ("app_id" = u32, Path)), request_body = IssueRoomToken,
    responses((status = 201, body = IssuedRoomToken), (status = 404), (status = 422)), security(("admin_token" = [])))]
pub async fn issue_room_token(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path((acc, app)): Path<(String, String)>,
    ApiJson(body): ApiJson<IssueRoomToken>,
) -> ApiResult<(StatusCode, Json<IssuedRoomToken>)> {
    let issued = s.issue_room_token(&actor, path_id(&acc, "account")?, app_id(&app)?, body).await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

#[utoipa::path(post, path = "/v1/room-tokens/verify", tag = "room-tokens", request_body = VerifyRoomToken,
    responses((status = 200, body = RoomVerification)), security(("admin_token" = [])))]
pub async fn verify_room_token(
    State(s): State<Services>,
    _: Admin,
    ApiJson(body): ApiJson<VerifyRoomToken>,
) -> ApiResult<Json<RoomVerification>> {
    Ok(Json(s.verify_room_token(body).await?))
}
