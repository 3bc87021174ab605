//! The OAuth 2.0 protocol endpoints (SPEC §8): `/oauth/token` (client credentials),
//! `/oauth/introspect` (RFC 7662), `/oauth/revoke` (RFC 7009), and the metadata and
//! keys under `/.well-known/`. Requests are form-encoded; answers are never cached,
//! except the public metadata and keys.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use tokengate_core::Timestamp;

use super::extract::admin_actor;
use crate::gateway::PeerAddr;
use crate::gateway::bearer_token;
use crate::service::{Introspection, OAuthError, ProtocolCaller, Revocation, Services, TokenResponse};
pub use tokengate_proto::oauth::{TokenParam, TokenRequest};

/// A form-encoded request body: each parameter at most once (RFC 6749 §3.2).
pub struct Form {
    params: HashMap<String, String>,
    headers: HeaderMap,
    extensions: http::Extensions,
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let extensions = req.extensions().clone();
        let form = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
            ct.split(';').next().is_some_and(|e| e.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
        });
        if !form {
            return Err(OAuthError::InvalidRequest("content type must be application/x-www-form-urlencoded".into()));
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|_| OAuthError::InvalidRequest("could not read the request body".into()))?;
        let mut params = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(&body) {
            if params.insert(name.to_string(), value.to_string()).is_some() {
                return Err(OAuthError::InvalidRequest(format!("parameter {name} is repeated")));
            }
        }
        Ok(Form { params, headers, extensions })
    }
}

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// `client_secret_basic` (RFC 6749 §2.3.1: both parts form-encoded, then base64) or
/// `client_secret_post`; using both at once is refused.
fn client_credentials(form: &Form) -> Result<Option<(String, String)>, OAuthError> {
    let basic = form
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| crate::gateway::credentials_of(v.as_bytes(), "Basic"))
        .map(|encoded| {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim_ascii())
                .map_err(|_| OAuthError::InvalidClient)?;
            let text = String::from_utf8(decoded).map_err(|_| OAuthError::InvalidClient)?;
            let (id, secret) = text.split_once(':').ok_or(OAuthError::InvalidClient)?;
            let unescape =
                |s: &str| url::form_urlencoded::parse(format!("v={s}").as_bytes()).next().map(|(_, v)| v.to_string());
            Ok::<_, OAuthError>((unescape(id).unwrap_or_default(), unescape(secret).unwrap_or_default()))
        })
        .transpose()?;
    let post = match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => Some((id.to_string(), secret.to_string())),
        (None, None) => None,
        _ if basic.is_some() => None,
        _ => return Err(OAuthError::InvalidClient),
    };
    match (basic, post) {
        (Some(_), Some(_)) => Err(OAuthError::InvalidRequest("use one client authentication method".into())),
        (basic, post) => Ok(basic.or(post)),
    }
}

/// The caller of introspection and revocation: an OAuth client or the admin token.
fn protocol_caller(s: &Services, form: &Form) -> Result<ProtocolCaller, OAuthError> {
    if bearer_token(&form.headers).is_some() {
        return admin_actor(&form.headers, &form.extensions, s)
            .map(ProtocolCaller::Admin)
            .ok_or(OAuthError::InvalidClient);
    }
    let (id, secret) = client_credentials(form)?.ok_or(OAuthError::InvalidClient)?;
    let client = s.state.oauth.authenticate_client(&id, secret.as_bytes()).ok_or(OAuthError::InvalidClient)?;
    let ip = PeerAddr::ip_of(&form.extensions).map(|ip| ip.to_string());
    Ok(ProtocolCaller::Client(client, ip))
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

#[utoipa::path(post, path = "/oauth/token", tag = "oauth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = TokenResponse), (status = 400, description = "invalid_request, invalid_scope, unsupported_grant_type"),
        (status = 401, description = "invalid_client")),
    security(("client_secret_basic" = [])))]
pub async fn token(State(s): State<Services>, form: Result<Form, OAuthError>) -> Result<Response, OAuthError> {
    let form = form?;
    // The client is authenticated first, so that nothing is told to an unknown caller.
    let (id, secret) = client_credentials(&form)?.ok_or(OAuthError::InvalidClient)?;
    let client = s.state.oauth.authenticate_client(&id, secret.as_bytes()).ok_or(OAuthError::InvalidClient)?;
    match form.get("grant_type") {
        None => return Err(OAuthError::InvalidRequest("grant_type is required".into())),
        Some("client_credentials") => {}
        Some(_) => return Err(OAuthError::UnsupportedGrantType),
    }
    let granted = s.grant_client_credentials(&client, form.params.get("scope").map(String::as_str))?;
    Ok(no_store(Json(granted).into_response()))
}

#[utoipa::path(post, path = "/oauth/introspect", tag = "oauth",
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = Introspection), (status = 401, description = "invalid_client")),
    security(("client_secret_basic" = []), ("admin_token" = [])))]
pub async fn introspect(State(s): State<Services>, form: Result<Form, OAuthError>) -> Result<Response, OAuthError> {
    let form = form?;
    let caller = protocol_caller(&s, &form)?;
    let token = form.get("token").ok_or_else(|| OAuthError::InvalidRequest("token is required".into()))?;
    Ok(no_store(Json(s.introspect(&caller, token)).into_response()))
}

#[utoipa::path(post, path = "/oauth/revoke", tag = "oauth",
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "revoked, or not a token of the caller's account"),
        (status = 400, description = "unsupported_token_type: a Client-Token, instance token or admin token"),
        (status = 401, description = "invalid_client")),
    security(("client_secret_basic" = []), ("admin_token" = [])))]
pub async fn revoke(State(s): State<Services>, form: Result<Form, OAuthError>) -> Result<Response, OAuthError> {
    let form = form?;
    let caller = protocol_caller(&s, &form)?;
    let token = form.get("token").ok_or_else(|| OAuthError::InvalidRequest("token is required".into()))?;
    match s.revoke(&caller, token).await {
        Ok(Revocation::Done) => Ok(no_store(StatusCode::OK.into_response())),
        Ok(Revocation::Unsupported) => {
            let body = Json(serde_json::json!({
                "error": "unsupported_token_type",
                "error_description": "this kind of secret is rotated or deleted through the admin API"
            }));
            Ok(no_store((StatusCode::BAD_REQUEST, body).into_response()))
        }
        Err(e) => {
            // RFC 7009 §2.2.1: the client may retry later.
            tracing::warn!(error = %e, "revocation failed");
            let body = Json(serde_json::json!({ "error": "temporarily_unavailable" }));
            Ok(no_store((StatusCode::SERVICE_UNAVAILABLE, body).into_response()))
        }
    }
}

fn cacheable(body: serde_json::Value) -> Response {
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(body)).into_response()
}

/// RFC 8414 authorization server metadata.
pub async fn metadata(State(s): State<Services>) -> Response {
    let issuer = s.state.oauth.issuer();
    cacheable(serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "bearer"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "bearer"],
    }))
}

/// RFC 7517: the public keys of every token that may still be alive.
pub async fn jwks(State(s): State<Services>) -> Response {
    let mut response = cacheable(s.state.oauth.jwks(Timestamp::now()));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json"));
    response
}
