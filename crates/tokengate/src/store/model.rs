//! Records as the store keeps them and the admin API shows them.

use serde::{Deserialize, Serialize};
use tokengate_core::{
    AccountId, AuditId, ClientId, Digest, InstanceId, IssuerId, MemberId, Rule, Timestamp, TokenId, TokenKind,
};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Account {
    #[schema(value_type = String)]
    pub id: AccountId,
    pub name: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Developer,
    Viewer,
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Member {
    #[schema(value_type = String)]
    pub id: MemberId,
    #[serde(skip)]
    pub account_id: AccountId,
    pub email: String,
    pub role: Role,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Instance {
    #[schema(value_type = String)]
    pub id: InstanceId,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub name: String,
    pub upstream_url: String,
    #[schema(value_type = Vec<Object>)]
    pub rules: Vec<Rule>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When a leak report named the instance token (it is not revoked: rotate it).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub leaked_at: Option<Timestamp>,
}

/// An instance as the gateway needs it: with the digest of its token.
#[derive(Debug, Clone)]
pub struct GatewayInstance {
    pub instance: Instance,
    pub token_digest: Digest,
}

#[derive(Debug, Clone)]
pub struct SecurityToken {
    pub active: bool,
    pub digest: Digest,
    pub created_at: Timestamp,
    pub activated_at: Option<Timestamp>,
    pub previous: Option<(Digest, Timestamp)>,
}

/// The per-account state the gateway enforces.
#[derive(Debug, Clone)]
pub struct AccountPolicyRecord {
    pub account_id: AccountId,
    pub ip_allowlist: Vec<String>,
    pub security_token: Option<SecurityToken>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    #[schema(value_type = String)]
    pub id: AuditId,
    #[serde(skip)]
    pub account_id: Option<AccountId>,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub ip: Option<String>,
    /// What else the entry keeps (a leak report's url and source).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageKind {
    /// Gateway outcomes: `allowed` and `rejected` with a reason.
    Allowed,
    Rejected,
    /// Client-Token readiness: `with_valid_token`, `missing`, `invalid`.
    Readiness,
}

impl UsageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageKind::Allowed => "allowed",
            UsageKind::Rejected => "rejected",
            UsageKind::Readiness => "readiness",
        }
    }

    pub fn parse(s: &str) -> Option<UsageKind> {
        [UsageKind::Allowed, UsageKind::Rejected, UsageKind::Readiness].into_iter().find(|k| k.as_str() == s)
    }
}

/// One counter bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub account_id: AccountId,
    /// Empty for counts not attributed to a token.
    pub token_id: String,
    pub bucket_start: Timestamp,
    pub kind: UsageKind,
    pub reason: std::borrow::Cow<'static, str>,
    pub count: i64,
}

/// A token's rate limit: `limit` requests per `window_seconds` (GCRA, bursts up to `limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub limit: u32,
    pub window_seconds: u32,
}

/// An API key or personal access token, without its secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    #[schema(value_type = String)]
    pub id: TokenId,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    #[schema(value_type = String)]
    pub kind: TokenKind,
    #[schema(value_type = Option<String>)]
    pub member_id: Option<MemberId>,
    pub name: String,
    pub scopes: Vec<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    pub ip_allowlist: Vec<String>,
    pub rate_limit: Option<RateLimit>,
    #[schema(value_type = Vec<String>)]
    pub instance_ids: Vec<InstanceId>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When it stopped (or, inside a rotation's grace period, will stop) working.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
    /// `tokengate` (issued here: prefix and checksum) or `imported` (its original text).
    pub format: TokenFormat,
    /// The key's id in the system it was imported from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// When a leak report named it (it was revoked then).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub leaked_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenFormat {
    Tokengate,
    Imported,
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

/// A room app (token04); its server secret is never shown again.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RoomApp {
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub app_id: u32,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// A JWT signing key as stored: the private half sealed under the master key.
#[derive(Debug, Clone)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub alg: String,
    pub private_sealed: Vec<u8>,
    /// The public JWK (JSON), as published.
    pub public_jwk: String,
    pub created_at: Timestamp,
    /// When a newer key took over signing.
    pub retired_at: Option<Timestamp>,
    /// After this the key is dropped from the JWKS: every token it signed has expired.
    pub publish_until: Option<Timestamp>,
}

/// An OAuth client (client-credentials grant), without its secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OAuthClient {
    #[schema(value_type = String)]
    pub client_id: ClientId,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub name: String,
    pub scopes: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Set when a leak report named its secret: it issues and verifies nothing since.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub disabled_at: Option<Timestamp>,
}

/// An identity provider whose JWTs an account accepts (SSO).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TrustedIssuer {
    #[schema(value_type = String)]
    pub id: IssuerId,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub issuer: String,
    pub jwks_uri: String,
    pub audience: String,
    pub scopes_claim: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// A revoked JWT access token: refused until it would have expired anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedJti {
    pub jti: String,
    pub account_id: AccountId,
    pub expires_at: Timestamp,
}

/// A dashboard session as stored (looked up by the digest of the cookie's value).
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub member: Member,
    pub csrf: String,
    pub mfa_pending: bool,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
}

/// What a login needs to know about a member.
#[derive(Debug, Clone)]
pub struct LoginRecord {
    pub member: Member,
    pub password_hash: String,
    /// The sealed TOTP secret, when two-factor login is on.
    pub totp_sealed: Option<Vec<u8>>,
    pub totp_last_step: i64,
}

/// An endpoint that hears of an account's token events (SPEC §15), without its secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Webhook {
    pub id: String,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub url: String,
    pub events: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// One attempt at delivering an event.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookDelivery {
    pub id: String,
    /// The event's id, as sent in `webhook-id` (the same on every retry).
    pub message_id: String,
    pub event_type: String,
    pub attempt: u32,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// The receiver's status, when it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// An event due for delivery, claimed by this node for a while (see
/// [`WebhookStore::claim_due`]).
#[derive(Debug, Clone)]
pub struct DueEvent {
    pub message_id: String,
    pub webhook_id: String,
    pub url: String,
    pub sealed_secret: Vec<u8>,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// How one delivery attempt ended.
#[derive(Debug, Clone)]
pub struct DeliveryOutcome {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
    /// When to try again; `None` when delivered or given up.
    pub retry_at: Option<Timestamp>,
    pub delivered: bool,
}

/// What a leak report found for one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakHit {
    /// `api_key`, `personal`, `imported`, `oauth_client`, `client_token`, `instance`, `admin`.
    pub kind: &'static str,
    pub target: String,
    pub account_id: Option<AccountId>,
    /// What changed in the gateway's state (a revocation, a disabled client).
    pub change: Option<super::Change>,
}

/// One imported key, checked and ready to insert.
#[derive(Debug, Clone)]
pub struct ImportedKey {
    pub token: ApiToken,
    pub digest: Digest,
    pub external_id: Option<String>,
}
