//! `/v1/accounts`, members and the account IP allowlist.

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use tokengate_core::{AccountId, MemberId};

use super::error::ApiResult;
use super::extract::{Admin, ApiJson, path_id};
use crate::service::Services;
use crate::store::{Account, Member};
pub use tokengate_proto::accounts::{CreateAccount, CreateMember, IpAllowlistBody, Items};

pub fn items<T>(items: Vec<T>) -> Json<Items<T>> {
    Json(Items { items })
}

#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = CreateAccount,
    responses((status = 201, body = Account), (status = 422, description = "invalid name")), security(("admin_token" = [])))]
pub async fn create_account(
    State(s): State<Services>,
    Admin(actor): Admin,
    ApiJson(body): ApiJson<CreateAccount>,
) -> ApiResult<(StatusCode, Json<Account>)> {
    Ok((StatusCode::CREATED, Json(s.create_account(&actor, &body.name).await?)))
}

#[utoipa::path(get, path = "/v1/accounts", tag = "accounts",
    responses((status = 200, body = Items<Account>)), security(("admin_token" = [])))]
pub async fn list_accounts(State(s): State<Services>, _: Admin) -> ApiResult<Json<Items<Account>>> {
    Ok(items(s.list_accounts().await?))
}

#[utoipa::path(get, path = "/v1/accounts/{acc}", tag = "accounts", params(("acc" = String, Path)),
    responses((status = 200, body = Account), (status = 404)), security(("admin_token" = [])))]
pub async fn get_account(State(s): State<Services>, _: Admin, Path(acc): Path<String>) -> ApiResult<Json<Account>> {
    Ok(Json(s.account(path_id(&acc, "account")?).await?))
}

#[utoipa::path(post, path = "/v1/accounts/{acc}/members", tag = "members", params(("acc" = String, Path)),
    request_body = CreateMember, responses((status = 201, body = Member), (status = 409, description = "email taken")),
    security(("admin_token" = [])))]
pub async fn create_member(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(acc): Path<String>,
    ApiJson(body): ApiJson<CreateMember>,
) -> ApiResult<(StatusCode, Json<Member>)> {
    let acc: AccountId = path_id(&acc, "account")?;
    let member = s.create_member(&actor, acc, &body.email, body.password.0, body.role).await?;
    Ok((StatusCode::CREATED, Json(member)))
}

#[utoipa::path(get, path = "/v1/accounts/{acc}/members", tag = "members", params(("acc" = String, Path)),
    responses((status = 200, body = Items<Member>)), security(("admin_token" = [])))]
pub async fn list_members(
    State(s): State<Services>,
    _: Admin,
    Path(acc): Path<String>,
) -> ApiResult<Json<Items<Member>>> {
    Ok(items(s.list_members(path_id(&acc, "account")?).await?))
}

#[utoipa::path(delete, path = "/v1/members/{id}", tag = "members", params(("id" = String, Path)),
    responses((status = 204), (status = 404)), security(("admin_token" = [])))]
pub async fn delete_member(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: MemberId = path_id(&id, "member")?;
    s.delete_member(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/v1/accounts/{acc}/ip-allowlist", tag = "accounts", params(("acc" = String, Path)),
    request_body = IpAllowlistBody, responses((status = 200, body = IpAllowlistBody), (status = 422)),
    security(("admin_token" = [])))]
pub async fn put_ip_allowlist(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(acc): Path<String>,
    ApiJson(body): ApiJson<IpAllowlistBody>,
) -> ApiResult<Json<IpAllowlistBody>> {
    let cidrs = s.set_ip_allowlist(&actor, path_id(&acc, "account")?, &body.cidrs).await?;
    Ok(Json(IpAllowlistBody { cidrs }))
}
