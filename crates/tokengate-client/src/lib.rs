//! A typed async client for tokengate's admin API and `/v1/verify`, built on the
//! server's own wire types ([`tokengate_proto`]): what this client sends and reads is
//! what the server declares, by construction.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tokengate_client::ClientError> {
//! use tokengate_client::{AdminClient, proto};
//! let client = AdminClient::new("http://127.0.0.1:8080", "tga_…".to_string().into())?;
//! let account = client.create_account(&proto::accounts::CreateAccount { name: "Acme".into() }).await?;
//! let verdict = client.verify("tgk_…", &["messages:send".to_string()]).await?;
//! # let _ = (account, verdict); Ok(()) }
//! ```

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use reqwest::Method;
pub use tokengate_proto as proto;
use tokengate_proto::accounts::{CreateAccount, Items};
use tokengate_proto::instances::{CreatedInstance, InstancePatch, NewInstance};
use tokengate_proto::model::{Account, ApiToken, Instance, OAuthClient, RoomApp, TrustedIssuer};
use tokengate_proto::oauth::{
    CreatedOAuthClient, NewOAuthClient, NewTrustedIssuer, RotateSigningKey, RotatedSigningKey,
};
use tokengate_proto::rooms::{IssueRoomToken, IssuedRoomToken, NewRoomApp, RoomVerification, VerifyRoomToken};
use tokengate_proto::security_token::{Activated, Deactivated, GeneratedToken, RotateBody, Rotated, SecurityTokenView};
use tokengate_proto::tokens::{IssuedToken, NewToken, RotateToken, Verification, VerifyRequest};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status; `message` is its `error` field.
    #[error("{status}: {message}")]
    Api { status: u16, message: String, code: Option<String> },
    #[error("cannot reach the server: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("the server's answer is not what was expected: {0}")]
    Decode(#[from] serde_json::Error),
}

pub type ClientResult<T> = Result<T, ClientError>;

/// A client authenticated with an admin token (or, for `/v1/verify`, an API key
/// holding `tokens:verify`).
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: SecretString,
}

impl AdminClient {
    pub fn new(base_url: &str, admin_token: SecretString) -> ClientResult<AdminClient> {
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
        Ok(Self::with_http(http, base_url, admin_token))
    }

    /// On an HTTP client of the caller's (its connection pool, proxy and TLS settings).
    pub fn with_http(http: reqwest::Client, base_url: &str, admin_token: SecretString) -> AdminClient {
        AdminClient { http, base: base_url.trim_end_matches('/').to_string(), token: admin_token }
    }

    /// Sends `body` (if any) as JSON; any non-2xx answer becomes [`ClientError::Api`].
    async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> ClientResult<reqwest::Response> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(self.token.expose_secret());
        if let Some(body) = body {
            req = req.json(body);
        }
        check(req.send().await?).await
    }

    async fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> ClientResult<T> {
        let text = self.call(method, path, body).await?.text().await?;
        Ok(serde_json::from_str(&text)?)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> ClientResult<T> {
        self.send::<(), T>(Method::GET, path, None).await
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(&self, path: &str, body: &B) -> ClientResult<T> {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> ClientResult<()> {
        self.call::<()>(Method::DELETE, path, None).await.map(drop)
    }

    async fn list<T: DeserializeOwned>(&self, path: &str) -> ClientResult<Vec<T>> {
        Ok(self.get::<Items<T>>(path).await?.items)
    }

    /// Any admin route, for what has no typed method: its JSON answer (`null` for an
    /// empty one, e.g. `204`).
    pub async fn call_json(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> ClientResult<serde_json::Value> {
        let text = self.call(method, path, body).await?.text().await?;
        Ok(if text.trim().is_empty() { serde_json::Value::Null } else { serde_json::from_str(&text)? })
    }

    /// `POST /v1/accounts/{acc}/tokens/import` with NDJSON lines; the summary.
    pub async fn import_tokens(
        &self,
        account: &str,
        ndjson: String,
    ) -> ClientResult<tokengate_proto::imports::ImportSummary> {
        let response = self
            .http
            .post(format!("{}/v1/accounts/{account}/tokens/import", self.base))
            .bearer_auth(self.token.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .timeout(std::time::Duration::from_secs(600))
            .body(ndjson)
            .send()
            .await?;
        Ok(serde_json::from_str(&check(response).await?.text().await?)?)
    }

    pub async fn create_account(&self, body: &CreateAccount) -> ClientResult<Account> {
        self.post("/v1/accounts", body).await
    }

    pub async fn list_accounts(&self) -> ClientResult<Vec<Account>> {
        self.list("/v1/accounts").await
    }

    pub async fn account(&self, id: &str) -> ClientResult<Account> {
        self.get(&format!("/v1/accounts/{id}")).await
    }

    pub async fn create_instance(&self, account: &str, body: &NewInstance) -> ClientResult<CreatedInstance> {
        self.post(&format!("/v1/accounts/{account}/instances"), body).await
    }

    pub async fn list_instances(&self, account: &str) -> ClientResult<Vec<Instance>> {
        self.list(&format!("/v1/accounts/{account}/instances")).await
    }

    pub async fn instance(&self, id: &str) -> ClientResult<Instance> {
        self.get(&format!("/v1/instances/{id}")).await
    }

    pub async fn update_instance(&self, id: &str, patch: &InstancePatch) -> ClientResult<Instance> {
        self.send(Method::PATCH, &format!("/v1/instances/{id}"), Some(patch)).await
    }

    pub async fn delete_instance(&self, id: &str) -> ClientResult<()> {
        self.delete(&format!("/v1/instances/{id}")).await
    }

    pub async fn generate_security_token(&self, account: &str) -> ClientResult<GeneratedToken> {
        self.send::<(), _>(Method::POST, &format!("/v1/accounts/{account}/security-token"), None).await
    }

    pub async fn security_token(&self, account: &str) -> ClientResult<SecurityTokenView> {
        self.get(&format!("/v1/accounts/{account}/security-token")).await
    }

    pub async fn activate_security_token(&self, account: &str) -> ClientResult<Activated> {
        self.send::<(), _>(Method::POST, &format!("/v1/accounts/{account}/security-token/activate"), None).await
    }

    pub async fn deactivate_security_token(&self, account: &str) -> ClientResult<Deactivated> {
        self.send::<(), _>(Method::POST, &format!("/v1/accounts/{account}/security-token/deactivate"), None).await
    }

    pub async fn rotate_security_token(&self, account: &str, grace_seconds: u64) -> ClientResult<Rotated> {
        let body = RotateBody { grace_seconds };
        self.post(&format!("/v1/accounts/{account}/security-token/rotate"), &body).await
    }

    pub async fn delete_security_token(&self, account: &str) -> ClientResult<()> {
        self.delete(&format!("/v1/accounts/{account}/security-token")).await
    }

    pub async fn create_token(&self, account: &str, body: &NewToken) -> ClientResult<IssuedToken> {
        self.post(&format!("/v1/accounts/{account}/tokens"), body).await
    }

    pub async fn list_tokens(&self, account: &str) -> ClientResult<Vec<ApiToken>> {
        self.list(&format!("/v1/accounts/{account}/tokens")).await
    }

    pub async fn token(&self, id: &str) -> ClientResult<ApiToken> {
        self.get(&format!("/v1/tokens/{id}")).await
    }

    pub async fn rotate_token(&self, id: &str, grace_seconds: u64) -> ClientResult<IssuedToken> {
        self.post(&format!("/v1/tokens/{id}/rotate"), &RotateToken { grace_seconds }).await
    }

    pub async fn revoke_token(&self, id: &str) -> ClientResult<()> {
        self.delete(&format!("/v1/tokens/{id}")).await
    }

    /// `POST /v1/verify`: whether `token` is valid and holds `required_scopes`.
    pub async fn verify(&self, token: &str, required_scopes: &[String]) -> ClientResult<Verification> {
        let body = VerifyRequest { token: token.to_string(), required_scopes: required_scopes.to_vec(), ip: None };
        self.post("/v1/verify", &body).await
    }

    pub async fn create_room_app(&self, account: &str, body: &NewRoomApp) -> ClientResult<RoomApp> {
        self.post(&format!("/v1/accounts/{account}/room-apps"), body).await
    }

    pub async fn issue_room_token(
        &self,
        account: &str,
        app_id: u32,
        body: &IssueRoomToken,
    ) -> ClientResult<IssuedRoomToken> {
        self.post(&format!("/v1/accounts/{account}/room-apps/{app_id}/tokens"), body).await
    }

    pub async fn verify_room_token(&self, body: &VerifyRoomToken) -> ClientResult<RoomVerification> {
        self.post("/v1/room-tokens/verify", body).await
    }

    /// The answer holds the client secret, shown once.
    pub async fn create_oauth_client(&self, account: &str, body: &NewOAuthClient) -> ClientResult<CreatedOAuthClient> {
        self.post(&format!("/v1/accounts/{account}/oauth-clients"), body).await
    }

    pub async fn list_oauth_clients(&self, account: &str) -> ClientResult<Vec<OAuthClient>> {
        self.list(&format!("/v1/accounts/{account}/oauth-clients")).await
    }

    pub async fn delete_oauth_client(&self, account: &str, client_id: &str) -> ClientResult<()> {
        self.delete(&format!("/v1/accounts/{account}/oauth-clients/{client_id}")).await
    }

    pub async fn rotate_signing_key(&self, alg: Option<&str>) -> ClientResult<RotatedSigningKey> {
        self.post("/v1/signing-keys/rotate", &RotateSigningKey { alg: alg.map(str::to_string) }).await
    }

    pub async fn create_trusted_issuer(&self, account: &str, body: &NewTrustedIssuer) -> ClientResult<TrustedIssuer> {
        self.post(&format!("/v1/accounts/{account}/trusted-issuers"), body).await
    }

    pub async fn list_trusted_issuers(&self, account: &str) -> ClientResult<Vec<TrustedIssuer>> {
        self.list(&format!("/v1/accounts/{account}/trusted-issuers")).await
    }

    pub async fn delete_trusted_issuer(&self, account: &str, id: &str) -> ClientResult<()> {
        self.delete(&format!("/v1/accounts/{account}/trusted-issuers/{id}")).await
    }
}

/// A non-2xx answer as [`ClientError::Api`], with the server's `error` and `code`.
async fn check(response: reqwest::Response) -> ClientResult<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body: Option<tokengate_proto::ErrorBody> = response.json().await.ok();
    let (message, code) = match body {
        Some(b) => (b.error, b.code),
        None => (status.canonical_reason().unwrap_or("error").to_string(), None),
    };
    Err(ClientError::Api { status: status.as_u16(), message, code })
}
