//! Persistence. One trait per capability of the store; [`SqlStore`] implements them on
//! embedded SQLite (the default) and on PostgreSQL (several gateway nodes, one store).
//!
//! Every mutation that the admin API reports writes its audit entry in the same
//! transaction, so an acknowledged change and its audit record are durable together.
//! On PostgreSQL the same transaction publishes a change notice (see [`Change`]) that
//! the other nodes use to refresh their in-memory gateway state.

// The traits are implemented and called on concrete types inside this crate, where the
// futures' `Send` is known; no `dyn` use needs the desugared form.
#![allow(async_fn_in_trait)]

mod model;
mod sql;

pub use model::*;
pub use sql::{Backend, CHANGE_CHANNEL, GrantRow, NodeSeen, SqlStore, WEBHOOK_EVENTS};

use tokengate_core::{AccountId, ClientId, Digest, InstanceId, IssuerId, MemberId, Timestamp, TokenId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(&'static str),
    /// Creating one more would pass the account's quota of these.
    #[error("quota of {0} per account reached")]
    QuotaExceeded(&'static str),
    #[error("store unavailable: {0}")]
    Backend(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What a committed write changed, as far as the gateway's in-memory state cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// An account's security token or IP allowlist.
    Account(AccountId),
    Instance(InstanceId),
    Token(TokenId),
    /// An import batch: an account's tokens with ids from `first` to `last`.
    TokenBatch {
        account: AccountId,
        first: TokenId,
        last: TokenId,
    },
    AdminTokens,
    /// JWT signing keys (a rotation).
    SigningKeys,
    OAuthClients,
    RevokedJtis,
    TrustedIssuers,
}

impl Change {
    pub fn encode(&self) -> String {
        match self {
            Change::Account(id) => format!("account:{id}"),
            Change::Instance(id) => format!("instance:{id}"),
            Change::Token(id) => format!("token:{id}"),
            Change::TokenBatch { account, first, last } => format!("tokens:{account}:{first}:{last}"),
            Change::AdminTokens => "admin".to_string(),
            Change::SigningKeys => "signing_keys".to_string(),
            Change::OAuthClients => "oauth_clients".to_string(),
            Change::RevokedJtis => "revoked_jtis".to_string(),
            Change::TrustedIssuers => "trusted_issuers".to_string(),
        }
    }

    /// The notice's payload: the change and the writer's clock just before it
    /// committed (`token:<id>@<unix ms>`), for the notice-lag metric.
    pub fn encode_stamped(&self, at: Timestamp) -> String {
        format!("{}@{}", self.encode(), at.as_millis())
    }

    /// Reads [`Change::encode_stamped`] (or an unstamped payload).
    pub fn decode_stamped(s: &str) -> Option<(Change, Option<i64>)> {
        match s.rsplit_once('@') {
            Some((change, ms)) => Some((Change::decode(change)?, ms.parse().ok())),
            None => Some((Change::decode(s)?, None)),
        }
    }

    pub fn decode(s: &str) -> Option<Change> {
        match s.split_once(':') {
            Some(("account", id)) => id.parse().ok().map(Change::Account),
            Some(("instance", id)) => id.parse().ok().map(Change::Instance),
            Some(("token", id)) => id.parse().ok().map(Change::Token),
            Some(("tokens", rest)) => {
                let mut parts = rest.splitn(3, ':');
                let (account, first, last) = (parts.next()?, parts.next()?, parts.next()?);
                Some(Change::TokenBatch {
                    account: account.parse().ok()?,
                    first: first.parse().ok()?,
                    last: last.parse().ok()?,
                })
            }
            _ => match s {
                "admin" => Some(Change::AdminTokens),
                "signing_keys" => Some(Change::SigningKeys),
                "oauth_clients" => Some(Change::OAuthClients),
                "revoked_jtis" => Some(Change::RevokedJtis),
                "trusted_issuers" => Some(Change::TrustedIssuers),
                _ => None,
            },
        }
    }
}

pub trait AdminTokenStore {
    /// Creates the first admin token; `Conflict` when the store already has one.
    async fn create_first_admin_token(&self, id: &str, digest: Digest) -> StoreResult<()>;
    async fn admin_token_digests(&self) -> StoreResult<Vec<(String, Digest)>>;
}

pub trait AccountStore {
    async fn create_account(&self, account: &Account, audit: &AuditEntry) -> StoreResult<()>;
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    async fn get_account(&self, id: AccountId) -> StoreResult<Account>;
    async fn set_ip_allowlist(&self, id: AccountId, cidrs: &[String], audit: &AuditEntry) -> StoreResult<()>;
}

pub trait MemberStore {
    async fn create_member(&self, member: &Member, password_hash: &str, audit: &AuditEntry) -> StoreResult<()>;
    async fn list_members(&self, account: AccountId) -> StoreResult<Vec<Member>>;
    /// Removes the member and revokes its personal tokens (returned) in one transaction.
    async fn delete_member(
        &self,
        id: MemberId,
        now: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<(Member, Vec<TokenId>)>;
    async fn get_member(&self, id: MemberId) -> StoreResult<Member>;
}

pub trait InstanceStore {
    /// Refused with [`StoreError::QuotaExceeded`] when the account has `max` already.
    async fn create_instance(
        &self,
        instance: &Instance,
        token: Digest,
        audit: &AuditEntry,
        max: u64,
    ) -> StoreResult<()>;
    async fn list_instances(&self, account: AccountId) -> StoreResult<Vec<Instance>>;
    async fn get_instance(&self, id: InstanceId) -> StoreResult<Instance>;
    /// Writes only the fields `change` gives, in one statement, so that concurrent
    /// patches of different fields all hold.
    async fn update_instance(&self, id: InstanceId, change: &InstanceChange, audit: &AuditEntry) -> StoreResult<()>;
    async fn delete_instance(&self, id: InstanceId, audit: &AuditEntry) -> StoreResult<()>;
    /// The instance with its token digest, as the gateway needs it.
    async fn gateway_instance(&self, id: InstanceId) -> StoreResult<Option<GatewayInstance>>;
    async fn all_gateway_instances(&self) -> StoreResult<Vec<GatewayInstance>>;
}

pub trait SecurityTokenStore {
    async fn security_token(&self, account: AccountId) -> StoreResult<Option<SecurityToken>>;
    /// Stores a new disabled token; `Conflict` when the current one is active.
    async fn generate_security_token(
        &self,
        account: AccountId,
        digest: Digest,
        now: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<()>;
    async fn set_security_token_active(
        &self,
        account: AccountId,
        active: bool,
        now: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<SecurityToken>;
    async fn rotate_security_token(
        &self,
        account: AccountId,
        digest: Digest,
        now: Timestamp,
        previous_valid_until: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<SecurityToken>;
    async fn delete_security_token(&self, account: AccountId, audit: &AuditEntry) -> StoreResult<()>;
    /// Security token and IP allowlist of every account, for a full resync.
    async fn all_account_policies(&self) -> StoreResult<Vec<AccountPolicyRecord>>;
    async fn account_policy(&self, account: AccountId) -> StoreResult<Option<AccountPolicyRecord>>;
}

pub trait TokenStore {
    /// Refused with [`StoreError::QuotaExceeded`] when the account has `max_live` live
    /// tokens already.
    async fn create_token(
        &self,
        token: &ApiToken,
        digest: Digest,
        audit: &AuditEntry,
        max_live: u64,
    ) -> StoreResult<()>;
    async fn list_tokens(&self, account: AccountId) -> StoreResult<Vec<ApiToken>>;
    async fn get_token(&self, id: TokenId) -> StoreResult<ApiToken>;
    /// Stores `new` and schedules the end of `old` at `old_until`, in one transaction;
    /// `Conflict` when `old` already stopped working.
    async fn rotate_token(
        &self,
        old: TokenId,
        old_until: Timestamp,
        new: &ApiToken,
        digest: Digest,
        audit: &AuditEntry,
    ) -> StoreResult<()>;
    /// Ends the token at `at` unless it already ended earlier.
    async fn revoke_token(&self, id: TokenId, at: Timestamp, audit: &AuditEntry) -> StoreResult<()>;
    /// The token with its digest, as the gateway needs it.
    async fn live_token(&self, id: TokenId) -> StoreResult<Option<(ApiToken, Digest)>>;
    /// Calls `f` with every token that had not stopped working by `since`, streaming
    /// rather than loading them all at once.
    async fn for_each_live_token(
        &self,
        since: Timestamp,
        f: &mut (dyn FnMut(ApiToken, Digest) + Send),
    ) -> StoreResult<()>;
    /// Moves `last_used_at` forward (never back).
    async fn touch_tokens(&self, used: &[(TokenId, Timestamp)]) -> StoreResult<()>;
    async fn max_token_lifetime_seconds(&self, account: AccountId) -> StoreResult<u64>;
}

pub trait RoomAppStore {
    /// `Conflict` when the account already has this `app_id`.
    async fn create_room_app(&self, app: &RoomApp, sealed_secret: &[u8], audit: &AuditEntry) -> StoreResult<()>;
    async fn list_room_apps(&self, account: AccountId) -> StoreResult<Vec<RoomApp>>;
    /// The sealed secret of one app of one account.
    async fn room_app_secret(&self, account: AccountId, app_id: u32) -> StoreResult<Vec<u8>>;
    /// Every account's app with this id, with its sealed secret.
    async fn room_apps_by_id(&self, app_id: u32) -> StoreResult<Vec<(AccountId, Vec<u8>)>>;
    async fn delete_room_app(&self, account: AccountId, app_id: u32, audit: &AuditEntry) -> StoreResult<()>;
    async fn max_room_token_ttl_seconds(&self, account: AccountId) -> StoreResult<u64>;
    /// Only the audit entry: issuing a room token changes nothing else.
    async fn record_audit(&self, audit: &AuditEntry) -> StoreResult<()>;
}

/// OAuth 2.0: signing keys, clients, revoked access tokens, trusted issuers. Each kind
/// is small and reloaded whole by the gateway when it changes.
pub trait OAuthStore {
    /// Keys still published at `now` (signing or still verifying).
    async fn signing_keys(&self, now: Timestamp) -> StoreResult<Vec<SigningKeyRecord>>;
    /// Stores `key` as the signing key; the keys it replaces stop signing now and stay
    /// published until `retired_publish_until`.
    async fn add_signing_key(
        &self,
        key: &SigningKeyRecord,
        retired_publish_until: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<()>;
    /// Refused with [`StoreError::QuotaExceeded`] when the account has `max` already.
    async fn create_oauth_client(
        &self,
        client: &OAuthClient,
        digest: Digest,
        audit: &AuditEntry,
        max: u64,
    ) -> StoreResult<()>;
    async fn list_oauth_clients(&self, account: AccountId) -> StoreResult<Vec<OAuthClient>>;
    async fn all_oauth_clients(&self) -> StoreResult<Vec<(OAuthClient, Digest)>>;
    /// Deletes the client of this account; `NotFound` otherwise.
    async fn delete_oauth_client(&self, account: AccountId, id: ClientId, audit: &AuditEntry) -> StoreResult<()>;
    /// Marks a client disabled (it issues and verifies nothing since, as after a leak);
    /// `NotFound` when the account has no such client still enabled.
    async fn disable_oauth_client(
        &self,
        account: AccountId,
        id: ClientId,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> StoreResult<()>;
    /// Records a revoked access token (idempotent), dropping entries long expired.
    async fn revoke_jti(&self, revoked: &RevokedJti, now: Timestamp, audit: &AuditEntry) -> StoreResult<()>;
    /// Revoked access tokens that have not expired by `now`.
    async fn revoked_jtis(&self, now: Timestamp) -> StoreResult<Vec<RevokedJti>>;
    /// `Conflict` when the account already trusts this issuer.
    async fn create_trusted_issuer(&self, issuer: &TrustedIssuer, audit: &AuditEntry) -> StoreResult<()>;
    async fn list_trusted_issuers(&self, account: AccountId) -> StoreResult<Vec<TrustedIssuer>>;
    async fn all_trusted_issuers(&self) -> StoreResult<Vec<TrustedIssuer>>;
    async fn delete_trusted_issuer(&self, account: AccountId, id: IssuerId, audit: &AuditEntry) -> StoreResult<()>;
}

/// Dashboard logins and sessions.
pub trait SessionStore {
    async fn login_record(&self, email: &str) -> StoreResult<Option<LoginRecord>>;
    async fn create_session(
        &self,
        digest: Digest,
        member: MemberId,
        csrf: &str,
        mfa_pending: bool,
        now: Timestamp,
    ) -> StoreResult<()>;
    async fn session(&self, digest: Digest) -> StoreResult<Option<SessionRecord>>;
    async fn touch_session(&self, digest: Digest, now: Timestamp) -> StoreResult<()>;
    /// Ends the two-factor step: records the accepted TOTP step, which must be newer
    /// than the last one (`Conflict` otherwise: a replayed code).
    async fn complete_mfa(&self, digest: Digest, member: MemberId, step: i64) -> StoreResult<()>;
    async fn delete_session(&self, digest: Digest) -> StoreResult<()>;
    /// Turns two-factor login on (`Some`) or off, ending the member's other sessions.
    async fn set_totp(
        &self,
        member: MemberId,
        sealed: Option<&[u8]>,
        keep_session: Digest,
        audit: &AuditEntry,
    ) -> StoreResult<()>;
    /// Counts a one-time code against a pending login before it is checked (so that
    /// concurrent guesses cannot outrun the limit); returns how many it has had, or
    /// `u32::MAX` when the login is no longer pending.
    async fn mfa_attempt(&self, digest: Digest) -> StoreResult<u32>;
    /// Deletes sessions idle since `idle_before` or created before `created_before`, and
    /// pending logins created before `pending_before`. Returns how many.
    async fn prune_sessions(
        &self,
        idle_before: Timestamp,
        created_before: Timestamp,
        pending_before: Timestamp,
    ) -> StoreResult<u64>;
}

/// Login throttles shared by every node of the store: failures per key, and a lock
/// that starts once a key has had its free failures and doubles with each one after.
pub trait ThrottleStore {
    /// Whether any of `keys` is locked at `now`.
    async fn throttle_locked(&self, keys: &[&str], now: Timestamp) -> StoreResult<bool>;
    /// Counts a failure; past `free` failures in a row, the key is locked for one
    /// minute, doubling with each further failure (up to 64 minutes).
    async fn throttle_failed(&self, key: &str, free: u32, now: Timestamp) -> StoreResult<()>;
    /// Counts an attempt as a failure *before* it is checked, unless the key is locked
    /// (`None`: the attempt is not to be checked); a success then resets the key. Many
    /// concurrent attempts cannot outrun the lock: each is counted, in one statement,
    /// before any is answered.
    async fn throttle_attempt(&self, key: &str, free: u32, now: Timestamp) -> StoreResult<Option<u32>>;
    /// Forgets a key's failures (a success).
    async fn throttle_reset(&self, key: &str) -> StoreResult<()>;
    /// Forgets keys neither locked nor touched since `before`.
    async fn prune_throttles(&self, before: Timestamp) -> StoreResult<u64>;
}

pub trait AuditStore {
    async fn audit_entries(&self, account: AccountId, limit: u32) -> StoreResult<Vec<AuditEntry>>;
}

pub trait UsageStore {
    /// Adds counts to their buckets (an upsert that sums), in one transaction.
    async fn add_usage(&self, rows: &[UsageRow]) -> StoreResult<()>;
    /// Counts of one account (and one token, when given) of one kind since `since`.
    async fn usage(
        &self,
        account: AccountId,
        token: Option<&str>,
        kind: UsageKind,
        since: Timestamp,
    ) -> StoreResult<Vec<UsageRow>>;
    /// Deletes buckets that started before `before` (retention). Returns how many.
    async fn prune_usage(&self, before: Timestamp) -> StoreResult<u64>;
}

/// Leak reports (SPEC §15): what a reported secret is, and acting on it.
pub trait LeakStore {
    /// Finds the secret with this digest, wherever it is kept, and in one transaction
    /// revokes it (API keys, personal and imported tokens), disables it (an OAuth
    /// client) or only marks it (Client-Tokens, instance and admin tokens), recording
    /// the leak and its audit entry. `None` when no secret has this digest.
    async fn report_leak(&self, digest: Digest, audit: &AuditEntry) -> StoreResult<Option<LeakHit>>;
    /// When a secret with this digest was reported leaked.
    async fn leaked_at(&self, digest: Digest) -> StoreResult<Option<Timestamp>>;
}

/// Imported keys (SPEC §15).
pub trait ImportStore {
    /// Inserts a batch in one transaction, in order, while the account's quota of live
    /// tokens has room (a line past it never stops those before it); returns what
    /// became of each key, and the account's live tokens after it. `live_before` is that count as
    /// a previous batch of the same import left it (counted here, exactly, when `None`:
    /// counting a million rows per batch would make an import quadratic). Writes one
    /// audit entry for the batch and one change notice.
    async fn import_tokens(
        &self,
        account: AccountId,
        keys: &[ImportedKey],
        audit: &AuditEntry,
        max_live: u64,
        live_before: Option<u64>,
    ) -> StoreResult<(Vec<ImportOutcome>, u64)>;
    /// The live tokens of an account with ids from `first` to `last` (an import batch).
    async fn live_tokens_between(
        &self,
        account: AccountId,
        first: TokenId,
        last: TokenId,
    ) -> StoreResult<Vec<(ApiToken, Digest)>>;
}

/// Webhooks and their durable outbox (SPEC §15).
pub trait WebhookStore {
    async fn create_webhook(&self, webhook: &Webhook, sealed_secret: &[u8], audit: &AuditEntry) -> StoreResult<()>;
    async fn list_webhooks(&self, account: AccountId) -> StoreResult<Vec<Webhook>>;
    async fn get_webhook(&self, id: &str) -> StoreResult<Webhook>;
    async fn delete_webhook(&self, id: &str, audit: &AuditEntry) -> StoreResult<()>;
    /// Events due now, at most `limit`, each claimed until `lease_until` so that no
    /// other node delivers it meanwhile (`FOR UPDATE SKIP LOCKED` on PostgreSQL).
    async fn claim_due(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> StoreResult<Vec<DueEvent>>;
    async fn record_delivery(&self, event: &DueEvent, outcome: &DeliveryOutcome, at: Timestamp) -> StoreResult<()>;
    async fn deliveries(&self, webhook: &str, limit: u32) -> StoreResult<Vec<WebhookDelivery>>;
    /// Raises `token.expiring` once for each live token expiring before `horizon`.
    async fn raise_expiring(&self, now: Timestamp, horizon: Timestamp) -> StoreResult<u64>;
    /// Deletes delivery attempts made before `before`, and events delivered or given up
    /// before it (retention); events still to deliver are kept. Returns how many rows.
    async fn prune_webhooks(&self, before: Timestamp) -> StoreResult<u64>;
}

/// A live API token for unit tests: `messages:send`, no expiry, no limits.
#[cfg(test)]
pub(crate) fn test_token(
    kind: tokengate_core::TokenKind,
    account: AccountId,
    owner: Option<tokengate_core::MemberId>,
) -> ApiToken {
    ApiToken {
        id: tokengate_core::TokenId::new(),
        account_id: account,
        kind,
        member_id: owner,
        name: "t".into(),
        scopes: vec!["messages:send".into()],
        expires_at: None,
        ip_allowlist: vec![],
        rate_limit: None,
        instance_ids: vec![],
        created_at: tokengate_core::Timestamp::now(),
        revoked_at: None,
        last_used_at: None,
        format: TokenFormat::Tokengate,
        external_id: None,
        leaked_at: None,
    }
}
