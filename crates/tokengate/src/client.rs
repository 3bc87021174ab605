//! A typed client of the admin API, used by the CLI and by the integration tests.

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{status}: {message}")]
    Api { status: u16, message: String },
    #[error("cannot reach the server: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("the server's answer is not JSON: {0}")]
    Decode(#[from] serde_json::Error),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub upstream_url: String,
    #[serde(default)]
    pub rules: Vec<serde_json::Value>,
    /// Only in the creation response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Readiness {
    pub window_seconds: u64,
    pub with_valid_token: u64,
    pub missing: u64,
    pub invalid: u64,
    pub total: u64,
    pub safe_to_activate: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecurityToken {
    pub status: String,
    /// Only when generated or rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub activated_at: Option<String>,
    #[serde(default)]
    pub previous_valid_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Readiness>,
}

/// An API key or personal token; `token` only in the creation and rotation answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: String,
    pub account_id: String,
    pub kind: String,
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub member_id: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
    #[serde(default)]
    pub rate_limit: Option<serde_json::Value>,
    #[serde(default)]
    pub instance_ids: Vec<String>,
    pub created_at: String,
    #[serde(default)]
    pub revoked_at: Option<String>,
    #[serde(default)]
    pub last_used_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The answer of `POST /v1/verify`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verification {
    pub valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Items<T> {
    items: Vec<T>,
}

pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: SecretString,
}

impl AdminClient {
    pub fn new(base_url: &str, admin_token: SecretString) -> Result<AdminClient, ClientError> {
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
        Ok(AdminClient { http, base: base_url.trim_end_matches('/').to_string(), token: admin_token })
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, ClientError> {
        Ok(self.call(method, path, body).await?.json().await?)
    }

    /// Sends a request; any non-2xx answer becomes [`ClientError::Api`] with its message.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(self.token.expose_secret());
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = req.send().await?;
        let status = response.status();
        if !status.is_success() {
            let message = response
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
            return Err(ClientError::Api { status: status.as_u16(), message });
        }
        Ok(response)
    }

    /// Any admin route: its JSON answer (`null` for an empty one, e.g. `204`).
    pub async fn call_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let response = self.call(method, path, body).await?;
        let text = response.text().await?;
        Ok(if text.trim().is_empty() { serde_json::Value::Null } else { serde_json::from_str(&text)? })
    }

    /// `POST /v1/accounts/{acc}/tokens/import` with NDJSON lines; the summary.
    pub async fn import_tokens(&self, account: &str, ndjson: String) -> Result<serde_json::Value, ClientError> {
        let response = self
            .http
            .post(format!("{}/v1/accounts/{account}/tokens/import", self.base))
            .bearer_auth(self.token.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .timeout(std::time::Duration::from_secs(600))
            .body(ndjson)
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            let message = body.get("error").and_then(|e| e.as_str()).unwrap_or("error").to_string();
            return Err(ClientError::Api { status: status.as_u16(), message });
        }
        Ok(body)
    }

    pub async fn create_account(&self, name: &str) -> Result<Account, ClientError> {
        self.send(reqwest::Method::POST, "/v1/accounts", Some(serde_json::json!({ "name": name }))).await
    }

    pub async fn list_accounts(&self) -> Result<Vec<Account>, ClientError> {
        Ok(self.send::<Items<Account>>(reqwest::Method::GET, "/v1/accounts", None).await?.items)
    }

    pub async fn create_instance(
        &self,
        account: &str,
        name: &str,
        upstream_url: &str,
    ) -> Result<Instance, ClientError> {
        let body = serde_json::json!({ "name": name, "upstream_url": upstream_url });
        self.send(reqwest::Method::POST, &format!("/v1/accounts/{account}/instances"), Some(body)).await
    }

    pub async fn list_instances(&self, account: &str) -> Result<Vec<Instance>, ClientError> {
        Ok(self
            .send::<Items<Instance>>(reqwest::Method::GET, &format!("/v1/accounts/{account}/instances"), None)
            .await?
            .items)
    }

    pub async fn generate_security_token(&self, account: &str) -> Result<SecurityToken, ClientError> {
        self.send(reqwest::Method::POST, &format!("/v1/accounts/{account}/security-token"), None).await
    }

    pub async fn security_token(&self, account: &str) -> Result<SecurityToken, ClientError> {
        self.send(reqwest::Method::GET, &format!("/v1/accounts/{account}/security-token"), None).await
    }

    pub async fn activate_security_token(&self, account: &str) -> Result<SecurityToken, ClientError> {
        self.send(reqwest::Method::POST, &format!("/v1/accounts/{account}/security-token/activate"), None).await
    }

    pub async fn deactivate_security_token(&self, account: &str) -> Result<SecurityToken, ClientError> {
        self.send(reqwest::Method::POST, &format!("/v1/accounts/{account}/security-token/deactivate"), None).await
    }

    pub async fn rotate_security_token(&self, account: &str, grace_seconds: u64) -> Result<SecurityToken, ClientError> {
        let body = serde_json::json!({ "grace_seconds": grace_seconds });
        self.send(reqwest::Method::POST, &format!("/v1/accounts/{account}/security-token/rotate"), Some(body)).await
    }

    /// `body` is the JSON of `POST /v1/accounts/{acc}/tokens`.
    pub async fn create_token(&self, account: &str, body: serde_json::Value) -> Result<ApiToken, ClientError> {
        self.send(reqwest::Method::POST, &format!("/v1/accounts/{account}/tokens"), Some(body)).await
    }

    pub async fn list_tokens(&self, account: &str) -> Result<Vec<ApiToken>, ClientError> {
        Ok(self
            .send::<Items<ApiToken>>(reqwest::Method::GET, &format!("/v1/accounts/{account}/tokens"), None)
            .await?
            .items)
    }

    pub async fn token(&self, id: &str) -> Result<ApiToken, ClientError> {
        self.send(reqwest::Method::GET, &format!("/v1/tokens/{id}"), None).await
    }

    pub async fn rotate_token(&self, id: &str, grace_seconds: u64) -> Result<ApiToken, ClientError> {
        let body = serde_json::json!({ "grace_seconds": grace_seconds });
        self.send(reqwest::Method::POST, &format!("/v1/tokens/{id}/rotate"), Some(body)).await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<(), ClientError> {
        self.call(reqwest::Method::DELETE, &format!("/v1/tokens/{id}"), None).await.map(drop)
    }

    pub async fn verify(&self, token: &str, required_scopes: &[String]) -> Result<Verification, ClientError> {
        let body = serde_json::json!({ "token": token, "required_scopes": required_scopes });
        self.send(reqwest::Method::POST, "/v1/verify", Some(body)).await
    }

    pub async fn create_room_app(
        &self,
        account: &str,
        app_id: u32,
        server_secret: &str,
    ) -> Result<serde_json::Value, ClientError> {
        let body = serde_json::json!({ "app_id": app_id, "server_secret": server_secret });
        self.send(reqwest::Method::POST, &format!("/v1/accounts/{account}/room-apps"), Some(body)).await
    }

    /// `body` is the JSON of `POST /v1/accounts/{acc}/room-apps/{app_id}/tokens`.
    pub async fn issue_room_token(
        &self,
        account: &str,
        app_id: u32,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.send(reqwest::Method::POST, &format!("/v1/accounts/{account}/room-apps/{app_id}/tokens"), Some(body)).await
    }

    pub async fn verify_room_token(&self, body: serde_json::Value) -> Result<serde_json::Value, ClientError> {
        self.send(reqwest::Method::POST, "/v1/room-tokens/verify", Some(body)).await
    }

    /// `body` is the JSON of `POST /v1/accounts/{acc}/oauth-clients`; the answer holds the
    /// secret, shown once.
    pub async fn create_oauth_client(
        &self,
        account: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.send(reqwest::Method::POST, &format!("/v1/accounts/{account}/oauth-clients"), Some(body)).await
    }

    pub async fn list_oauth_clients(&self, account: &str) -> Result<Vec<serde_json::Value>, ClientError> {
        let path = format!("/v1/accounts/{account}/oauth-clients");
        Ok(self.send::<Items<serde_json::Value>>(reqwest::Method::GET, &path, None).await?.items)
    }

    pub async fn delete_oauth_client(&self, account: &str, client_id: &str) -> Result<(), ClientError> {
        let path = format!("/v1/accounts/{account}/oauth-clients/{client_id}");
        self.call(reqwest::Method::DELETE, &path, None).await.map(drop)
    }

    pub async fn rotate_signing_key(&self, alg: Option<&str>) -> Result<serde_json::Value, ClientError> {
        let body = match alg {
            Some(alg) => serde_json::json!({ "alg": alg }),
            None => serde_json::json!({}),
        };
        self.send(reqwest::Method::POST, "/v1/signing-keys/rotate", Some(body)).await
    }

    /// `body` is the JSON of `POST /v1/accounts/{acc}/trusted-issuers`.
    pub async fn create_trusted_issuer(
        &self,
        account: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.send(reqwest::Method::POST, &format!("/v1/accounts/{account}/trusted-issuers"), Some(body)).await
    }

    pub async fn list_trusted_issuers(&self, account: &str) -> Result<Vec<serde_json::Value>, ClientError> {
        let path = format!("/v1/accounts/{account}/trusted-issuers");
        Ok(self.send::<Items<serde_json::Value>>(reqwest::Method::GET, &path, None).await?.items)
    }

    pub async fn delete_trusted_issuer(&self, account: &str, id: &str) -> Result<(), ClientError> {
        let path = format!("/v1/accounts/{account}/trusted-issuers/{id}");
        self.call(reqwest::Method::DELETE, &path, None).await.map(drop)
    }
}
