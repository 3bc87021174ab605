//! The account security token's lifecycle: generate (disabled), activate, deactivate,
//! rotate with a grace period, delete.

use secrecy::{ExposeSecret, SecretString};
use tokengate_core::token::{self, Prefix};
use tokengate_core::{AccountId, Digest, SecurityTokenStatus, Timestamp};

use super::accounts::not_found;
use super::{Actor, ServiceError, ServiceResult, Services};
use crate::store::{Change, SecurityToken, SecurityTokenStore};
pub use tokengate_proto::security_token::SecurityTokenView;

/// Longest grace period a rotation may keep the previous token for (30 days).
/// The longest grace period, rate-limit window or API-key lifetime taken: 100 years
/// (the spec names no cap for these; past it a duration says nothing more, and every
/// instant it leads to stays one RFC 3339 can write).
pub const MAX_DURATION_SECONDS: u64 = 100 * 365 * 24 * 3600;
pub const MAX_GRACE_SECONDS: u64 = MAX_DURATION_SECONDS;

fn status_of(token: Option<&SecurityToken>) -> SecurityTokenStatus {
    match token {
        None => SecurityTokenStatus::None,
        Some(t) if t.active => SecurityTokenStatus::Active,
        Some(_) => SecurityTokenStatus::Disabled,
    }
}

fn previous_valid_until(token: &SecurityToken, now: Timestamp) -> Option<Timestamp> {
    token.previous.map(|(_, until)| until).filter(|until| *until > now)
}

impl Services {
    pub async fn security_token(&self, account: AccountId) -> ServiceResult<SecurityTokenView> {
        let token = self.store.security_token(account).await.map_err(|e| not_found(e, "account"))?;
        let now = Timestamp::now();
        let readiness = self.readiness(account, token.as_ref().map(|t| t.created_at)).await?;
        Ok(SecurityTokenView {
            status: status_of(token.as_ref()),
            created_at: token.as_ref().map(|t| t.created_at),
            activated_at: token.as_ref().and_then(|t| t.activated_at),
            previous_valid_until: token.as_ref().and_then(|t| previous_valid_until(t, now)),
            // The current token's leak, else that of the one it replaced while it still
            // works (its grace period): either lets a reporter in.
            leaked_at: match &token {
                Some(t) => match self.leaked_at(t.digest).await {
                    Some(at) => Some(at),
                    None => match t.previous.filter(|(_, until)| *until > now) {
                        Some((previous, _)) => self.leaked_at(previous).await,
                        None => None,
                    },
                },
                None => None,
            },
            readiness,
        })
    }

    /// "Configure now": a new token, disabled. Refused while the current one is active.
    pub async fn generate_security_token(
        &self,
        actor: &Actor,
        account: AccountId,
    ) -> ServiceResult<(SecretString, Timestamp)> {
        self.account(account).await?;
        let secret = token::generate(Prefix::ClientToken);
        let now = Timestamp::now();
        let audit = actor.audit(Some(account), "security_token.generated", account);
        self.store.generate_security_token(account, Digest::of(secret.expose_secret().as_bytes()), now, &audit).await?;
        self.refresh(Change::Account(account)).await;
        Ok((secret, now))
    }

    pub async fn set_security_token_active(
        &self,
        actor: &Actor,
        account: AccountId,
        active: bool,
    ) -> ServiceResult<SecurityTokenView> {
        self.account(account).await?;
        let action = if active { "security_token.activated" } else { "security_token.deactivated" };
        let audit = actor.audit(Some(account), action, account);
        self.store
            .set_security_token_active(account, active, Timestamp::now(), &audit)
            .await
            .map_err(|e| not_found(e, "security token"))?;
        self.refresh(Change::Account(account)).await;
        self.security_token(account).await
    }

    /// A new token; the current one keeps working for `grace_seconds`.
    pub async fn rotate_security_token(
        &self,
        actor: &Actor,
        account: AccountId,
        grace_seconds: u64,
    ) -> ServiceResult<(SecretString, SecurityTokenView)> {
        if grace_seconds > MAX_GRACE_SECONDS {
            return Err(ServiceError::Invalid(format!("grace_seconds must be between 0 and {MAX_GRACE_SECONDS}")));
        }
        self.account(account).await?;
        let secret = token::generate(Prefix::ClientToken);
        let now = Timestamp::now();
        let until = now.plus_secs(i64::try_from(grace_seconds).unwrap_or(0));
        let audit = actor.audit(Some(account), "security_token.rotated", account);
        self.store
            .rotate_security_token(account, Digest::of(secret.expose_secret().as_bytes()), now, until, &audit)
            .await
            .map_err(|e| not_found(e, "security token"))?;
        self.refresh(Change::Account(account)).await;
        Ok((secret, self.security_token(account).await?))
    }

    pub async fn delete_security_token(&self, actor: &Actor, account: AccountId) -> ServiceResult<()> {
        self.account(account).await?;
        let audit = actor.audit(Some(account), "security_token.deleted", account);
        self.store.delete_security_token(account, &audit).await.map_err(|e| not_found(e, "security token"))?;
        self.refresh(Change::Account(account)).await;
        Ok(())
    }
}
