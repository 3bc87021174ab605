//! The admin operations: validation, secrets, store writes, and the refresh of the
//! gateway's in-memory state after each committed write. HTTP-free: the admin API and
//! tests call these, and [`crate::api::error`] maps [`ServiceError`] to responses.

mod accounts;
pub mod authz;
pub mod github;
pub mod imports;
mod instances;
pub mod leaks;
mod oauth;
mod reports;
mod rooms;
mod security_token;
mod tokens;
pub mod webhooks;

use std::sync::Arc;

pub use authz::role_allows;
pub use instances::{InstancePatch, NewInstance};
pub use oauth::{
    Introspection, NewOAuthClient, NewTrustedIssuer, OAuthError, ProtocolCaller, Revocation, RotateSigningKey,
    RotatedSigningKey, TokenResponse,
};
pub use reports::{Readiness, UsageBucket, UsageQuery};
pub use rooms::{IssueRoomToken, IssuedRoomToken, NewRoomApp, RoomVerification, VerifyRoomToken};
pub use security_token::SecurityTokenView;
pub use tokens::{NewToken, Verification};
pub use webhooks::NewWebhook;

use tokengate_core::{AccountId, AuditId, Timestamp};

use crate::config::Config;
use crate::state::GatewayState;
use crate::store::{AuditEntry, Change, SqlStore, StoreError};
use crate::usage::UsageRecorder;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// A quota of §12 (`409`, `code: "quota_exceeded"`).
    #[error("{0}")]
    QuotaExceeded(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ServiceError::Conflict(m.to_string()),
            StoreError::QuotaExceeded(what) => {
                ServiceError::QuotaExceeded(format!("this account has reached its quota of {what}"))
            }
            other => ServiceError::Store(other),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// Who performs an admin action, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub ip: Option<String>,
}

impl Actor {
    pub(crate) fn audit(&self, account: Option<AccountId>, action: &str, target: impl ToString) -> AuditEntry {
        AuditEntry {
            id: AuditId::new(),
            account_id: account,
            at: Timestamp::now(),
            actor: self.name.clone(),
            action: action.to_string(),
            target: target.to_string(),
            ip: self.ip.clone(),
            detail: None,
        }
    }
}

/// Everything the admin operations work on.
#[derive(Clone)]
pub struct Services {
    pub store: SqlStore,
    pub state: Arc<GatewayState>,
    pub usage: Arc<UsageRecorder>,
    pub config: Arc<Config>,
    pub master_key: Arc<crate::master_key::MasterKey>,
    /// Checked on the literal addresses of URLs tenants give (upstreams, JWKS).
    pub egress: Arc<crate::egress::EgressPolicy>,
    /// Leak reports per client address.
    pub leak_limiter: Arc<leaks::LeakLimiter>,
    /// GitHub's secret-scanning keys.
    pub github_keys: Arc<github::GithubKeys>,
}

impl Services {
    /// Refuses (422) a URL whose host is a literal address the egress policy denies.
    /// Host names are checked on every connection instead (see [`crate::egress`]).
    pub fn egress_allows_url(&self, url: &str, field: &str) -> ServiceResult<()> {
        let host = url.parse::<http::Uri>().ok().and_then(|u| u.host().map(str::to_string)).unwrap_or_default();
        self.egress.check_literal_host(&host).map_err(|_| {
            ServiceError::Invalid(format!("{field}: the address {host} is not allowed by the egress policy"))
        })
    }

    /// Brings this node's gateway state up to date after a committed write. Other nodes
    /// get the same change through the store's change notices.
    async fn refresh(&self, change: Change) {
        if let Err(e) = self.state.apply(&self.store, change).await {
            // The write is committed; the periodic resync will catch up.
            tracing::error!(error = %e, ?change, "refreshing gateway state failed");
        }
    }
}

/// A display name: trimmed, 1 to 200 characters, no control characters.
fn valid_name(name: &str, what: &str) -> ServiceResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(format!("{what} must be 1 to 200 characters without control characters")));
    }
    Ok(name.to_string())
}
