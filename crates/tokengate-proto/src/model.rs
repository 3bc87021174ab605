use serde::{Deserialize, Serialize};
#[allow(unused_imports)]
use tokengate_core::{
    AccountId, AuditId, ClientId, InstanceId, IssuerId, MemberId, Rule, Timestamp, TokenId, TokenKind,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Account {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: AccountId,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Developer,
    Viewer,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: MemberId,
    #[serde(skip)]
    pub account_id: AccountId,
    pub email: String,
    pub role: Role,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Instance {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: InstanceId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub account_id: AccountId,
    pub name: String,
    pub upstream_url: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub rules: Vec<Rule>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// When a leak report named the instance token (it is not revoked: rotate it).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub leaked_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: AuditId,
    #[serde(skip)]
    pub account_id: Option<AccountId>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub ip: Option<String>,
    /// What else the entry keeps (a leak report's url and source).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub detail: Option<serde_json::Value>,
}

/// A token's rate limit: `limit` requests per `window_seconds` (GCRA, bursts up to `limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub limit: u32,
    pub window_seconds: u32,
}

/// An API key or personal access token, without its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: TokenId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub account_id: AccountId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: TokenKind,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub member_id: Option<MemberId>,
    pub name: String,
    pub scopes: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
    pub ip_allowlist: Vec<String>,
    pub rate_limit: Option<RateLimit>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub instance_ids: Vec<InstanceId>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// When it stopped (or, inside a rotation's grace period, will stop) working.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub revoked_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_used_at: Option<Timestamp>,
    /// `tokengate` (issued here: prefix and checksum) or `imported` (its original text).
    pub format: TokenFormat,
    /// The key's id in the system it was imported from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// When a leak report named it (it was revoked then).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub leaked_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TokenFormat {
    Tokengate,
    Imported,
}

/// A room app (token04); its server secret is never shown again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomApp {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub account_id: AccountId,
    pub app_id: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// An OAuth client (client-credentials grant), without its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OAuthClient {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub client_id: ClientId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub account_id: AccountId,
    pub name: String,
    pub scopes: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// Set when a leak report named its secret: it issues and verifies nothing since.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub disabled_at: Option<Timestamp>,
}

/// An identity provider whose JWTs an account accepts (SSO).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrustedIssuer {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: IssuerId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub account_id: AccountId,
    pub issuer: String,
    pub jwks_uri: String,
    pub audience: String,
    pub scopes_claim: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// An endpoint that hears of an account's token events (SPEC §15), without its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Webhook {
    pub id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub account_id: AccountId,
    pub url: String,
    pub events: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// One attempt at delivering an event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookDelivery {
    pub id: String,
    /// The event's id, as sent in `webhook-id` (the same on every retry).
    pub message_id: String,
    pub event_type: String,
    pub attempt: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    /// The receiver's status, when it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Owner, Role::Admin, Role::Developer, Role::Viewer].into_iter().find(|r| r.as_str() == s)
    }
}

impl TokenFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenFormat::Tokengate => "tokengate",
            TokenFormat::Imported => "imported",
        }
    }

    pub fn parse(s: &str) -> Option<TokenFormat> {
        match s {
            "tokengate" => Some(TokenFormat::Tokengate),
            "imported" => Some(TokenFormat::Imported),
            _ => None,
        }
    }
}
