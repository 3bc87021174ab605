//! Records as the store keeps them. Those the admin API shows are the wire types of
//! `tokengate-proto`, re-exported here.

use tokengate_core::{AccountId, Digest, Timestamp};
pub use tokengate_proto::model::{
    Account, ApiToken, AuditEntry, Instance, Member, OAuthClient, RateLimit, Role, RoomApp, TokenFormat, TrustedIssuer,
    Webhook, WebhookDelivery,
};

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

/// The fields of an instance a patch changes (`None`: kept as stored).
#[derive(Debug, Clone, Default)]
pub struct InstanceChange {
    pub name: Option<String>,
    pub upstream_url: Option<String>,
    pub rules: Option<Vec<tokengate_core::rules::Rule>>,
}

/// What became of one key of an import batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    Inserted,
    /// A key with that digest exists already.
    Known,
    /// New, but the account had no room left under its quota of live tokens.
    OverQuota,
}

/// One imported key, checked and ready to insert.
#[derive(Debug, Clone)]
pub struct ImportedKey {
    pub token: ApiToken,
    pub digest: Digest,
    pub external_id: Option<String>,
}
