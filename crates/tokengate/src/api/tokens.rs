//! API keys and personal access tokens: `/v1/accounts/{acc}/tokens`, `/v1/tokens/{id}`,
//! and `POST /v1/verify`.

use axum::Json;
use axum::extract::{Path, Query, State};
use http::StatusCode;
use secrecy::ExposeSecret;
use tokengate_core::TokenId;

use super::accounts::{Items, items};
use super::error::{ApiError, ApiResult};
use super::extract::{Admin, ApiJson, Verifier, path_id};
use super::reports::Usage;
use crate::service::imports::{ImportSummary, Importer};
use crate::service::{NewToken, Services, UsageQuery, Verification};
use crate::store::ApiToken;
pub use tokengate_proto::tokens::{IssuedToken, RotateToken, VerifyRequest};

#[utoipa::path(post, path = "/v1/accounts/{acc}/tokens", tag = "tokens", params(("acc" = String, Path)),
    request_body = NewToken, responses((status = 201, body = IssuedToken), (status = 422)), security(("admin_token" = [])))]
pub async fn create_token(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(acc): Path<String>,
    ApiJson(body): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<IssuedToken>)> {
    let (token, secret) = s.create_token(&actor, path_id(&acc, "account")?, body).await?;
    Ok((StatusCode::CREATED, Json(IssuedToken { token, secret: secret.expose_secret().to_string() })))
}

#[utoipa::path(get, path = "/v1/accounts/{acc}/tokens", tag = "tokens", params(("acc" = String, Path)),
    responses((status = 200, body = Items<ApiToken>)), security(("admin_token" = [])))]
pub async fn list_tokens(
    State(s): State<Services>,
    _: Admin,
    Path(acc): Path<String>,
) -> ApiResult<Json<Items<ApiToken>>> {
    Ok(items(s.list_tokens(path_id(&acc, "account")?).await?))
}

#[utoipa::path(get, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 200, body = ApiToken), (status = 404)), security(("admin_token" = [])))]
pub async fn get_token(State(s): State<Services>, _: Admin, Path(id): Path<String>) -> ApiResult<Json<ApiToken>> {
    Ok(Json(s.token(path_id::<TokenId>(&id, "token")?).await?))
}

#[utoipa::path(post, path = "/v1/tokens/{id}/rotate", tag = "tokens", params(("id" = String, Path)),
    request_body = RotateToken, responses((status = 200, body = IssuedToken), (status = 404), (status = 409)),
    security(("admin_token" = [])))]
pub async fn rotate_token(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RotateToken>,
) -> ApiResult<Json<IssuedToken>> {
    let (token, secret) = s.rotate_token(&actor, path_id(&id, "token")?, body.grace_seconds).await?;
    Ok(Json(IssuedToken { token, secret: secret.expose_secret().to_string() }))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 204), (status = 404)), security(("admin_token" = [])))]
pub async fn revoke_token(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.revoke_token(&actor, path_id(&id, "token")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/tokens/{id}/usage", tag = "tokens", params(("id" = String, Path), UsageQuery),
    responses((status = 200, body = Usage)), security(("admin_token" = [])))]
pub async fn token_usage(
    State(s): State<Services>,
    _: Admin,
    Path(id): Path<String>,
    q: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Usage>> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    Ok(Json(Usage { buckets: s.token_usage(path_id(&id, "token")?, &q).await? }))
}

#[utoipa::path(post, path = "/v1/verify", tag = "tokens", request_body = VerifyRequest,
    responses((status = 200, body = Verification), (status = 401)), security(("admin_token" = [])))]
pub async fn verify(
    State(s): State<Services>,
    caller: Verifier,
    extensions: http::Extensions,
    ApiJson(body): ApiJson<VerifyRequest>,
) -> ApiResult<Json<Verification>> {
    let only = match caller {
        Verifier::Admin => None,
        Verifier::Account(acc) => Some(acc),
    };
    // The token's IP allowlist is checked against `ip` when the caller names the address
    // it was presented from, else against the caller's own (resolved through
    // `trusted_proxies`, as at the gateway).
    let ip = body.ip.or_else(|| crate::gateway::PeerAddr::ip_of(&extensions));
    Ok(Json(s.verify_token(&body.token, &body.required_scopes, ip, only)))
}

#[utoipa::path(post, path = "/v1/accounts/{acc}/tokens/import", tag = "tokens", params(("acc" = String, Path)),
    request_body(content = String, content_type = "application/x-ndjson",
        description = "one JSON object a line: {name, key | sha256, scopes?, expires_at?, external_id?}"),
    responses((status = 200, body = ImportSummary), (status = 404), (status = 415)), security(("admin_token" = [])))]
pub async fn import_tokens(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(acc): Path<String>,
    req: axum::extract::Request,
) -> ApiResult<Json<ImportSummary>> {
    use futures_util::StreamExt;
    let account = path_id(&acc, "account")?;
    let ndjson = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        essence == "application/x-ndjson" || essence == "application/jsonl"
    });
    if !ndjson {
        return Err(ApiError::UnsupportedMediaType);
    }
    let mut importer = Importer::start(&s, &actor, account).await?;
    let mut body = req.into_body().into_data_stream();
    // Lines are taken as they arrive; a line never waits for the whole body.
    while let Some(chunk) = body.next().await {
        let bytes = chunk.map_err(|_| ApiError::BadRequest("could not read the request body".into()))?;
        importer.feed(&bytes).await?;
    }
    Ok(Json(importer.end().await?))
}
