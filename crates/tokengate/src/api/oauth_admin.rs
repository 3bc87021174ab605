//! Admin routes for OAuth: clients, signing keys, trusted issuers (SSO).

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use secrecy::ExposeSecret;

use super::accounts::{Items, items};
use super::error::{ApiError, ApiResult};
use super::extract::{Admin, ApiJson, path_id};
use crate::oauth::keys::SigningAlg;
use crate::service::{NewOAuthClient, NewTrustedIssuer, RotateSigningKey, RotatedSigningKey, Services};
use crate::store::{OAuthClient, TrustedIssuer};
pub use tokengate_proto::oauth::CreatedOAuthClient;

#[utoipa::path(post, path = "/v1/accounts/{acc}/oauth-clients", tag = "oauth", params(("acc" = String, Path)),
    request_body = NewOAuthClient, responses((status = 201, body = CreatedOAuthClient), (status = 404), (status = 422)),
    security(("admin_token" = [])))]
pub async fn create_oauth_client(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(acc): Path<String>,
    ApiJson(body): ApiJson<NewOAuthClient>,
) -> ApiResult<(StatusCode, Json<CreatedOAuthClient>)> {
    let (client, secret) = s.create_oauth_client(&actor, path_id(&acc, "account")?, body).await?;
    let created = CreatedOAuthClient {
        client_id: client.client_id.to_string(),
        client_secret: secret.expose_secret().to_string(),
        name: client.name,
        scopes: client.scopes,
        account_id: client.account_id.to_string(),
        created_at: client.created_at,
    };
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/v1/accounts/{acc}/oauth-clients", tag = "oauth", params(("acc" = String, Path)),
    responses((status = 200, body = Items<OAuthClient>)), security(("admin_token" = [])))]
pub async fn list_oauth_clients(
    State(s): State<Services>,
    _: Admin,
    Path(acc): Path<String>,
) -> ApiResult<Json<Items<OAuthClient>>> {
    Ok(items(s.list_oauth_clients(path_id(&acc, "account")?).await?))
}

#[utoipa::path(delete, path = "/v1/accounts/{acc}/oauth-clients/{client_id}", tag = "oauth",
    params(("acc" = String, Path), ("client_id" = String, Path)), responses((status = 204), (status = 404)),
    security(("admin_token" = [])))]
pub async fn delete_oauth_client(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path((acc, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.delete_oauth_client(&actor, path_id(&acc, "account")?, path_id(&id, "oauth client")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/signing-keys/rotate", tag = "oauth", request_body = RotateSigningKey,
    responses((status = 200, body = RotatedSigningKey), (status = 422)), security(("admin_token" = [])))]
pub async fn rotate_signing_key(
    State(s): State<Services>,
    Admin(actor): Admin,
    ApiJson(body): ApiJson<RotateSigningKey>,
) -> ApiResult<Json<RotatedSigningKey>> {
    let alg = match body.alg.as_deref() {
        None => SigningAlg::default(),
        Some(name) => SigningAlg::parse(name)
            .ok_or_else(|| ApiError::Unprocessable("alg must be one of EdDSA, ES256, RS256".into()))?,
    };
    Ok(Json(s.rotate_signing_key(&actor, alg).await?))
}

#[utoipa::path(post, path = "/v1/accounts/{acc}/trusted-issuers", tag = "oauth", params(("acc" = String, Path)),
    request_body = NewTrustedIssuer, responses((status = 201, body = TrustedIssuer), (status = 404), (status = 409), (status = 422)),
    security(("admin_token" = [])))]
pub async fn create_trusted_issuer(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path(acc): Path<String>,
    ApiJson(body): ApiJson<NewTrustedIssuer>,
) -> ApiResult<(StatusCode, Json<TrustedIssuer>)> {
    Ok((StatusCode::CREATED, Json(s.create_trusted_issuer(&actor, path_id(&acc, "account")?, body).await?)))
}

#[utoipa::path(get, path = "/v1/accounts/{acc}/trusted-issuers", tag = "oauth", params(("acc" = String, Path)),
    responses((status = 200, body = Items<TrustedIssuer>)), security(("admin_token" = [])))]
pub async fn list_trusted_issuers(
    State(s): State<Services>,
    _: Admin,
    Path(acc): Path<String>,
) -> ApiResult<Json<Items<TrustedIssuer>>> {
    Ok(items(s.list_trusted_issuers(path_id(&acc, "account")?).await?))
}

#[utoipa::path(delete, path = "/v1/accounts/{acc}/trusted-issuers/{id}", tag = "oauth",
    params(("acc" = String, Path), ("id" = String, Path)), responses((status = 204), (status = 404)),
    security(("admin_token" = [])))]
pub async fn delete_trusted_issuer(
    State(s): State<Services>,
    Admin(actor): Admin,
    Path((acc, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.delete_trusted_issuer(&actor, path_id(&acc, "account")?, path_id(&id, "trusted issuer")?).await?;
    Ok(StatusCode::NO_CONTENT)
}
