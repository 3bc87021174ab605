//! API keys and personal access tokens: issue, list, rotate, revoke, verify, usage.

use secrecy::{ExposeSecret, SecretString};
use tokengate_core::rules::validate_scope;
use tokengate_core::token;
use tokengate_core::{AccountId, Denial, Digest, IpAllowlist, Timestamp, TokenId, TokenKind};

use super::accounts::not_found;
use super::authz::role_allows;
use super::security_token::MAX_GRACE_SECONDS;
use super::{Actor, ServiceError, ServiceResult, Services, valid_name};
use crate::store::{ApiToken, Change, InstanceStore, MemberStore, TokenFormat, TokenStore};
pub use tokengate_proto::tokens::{NewToken, Verification};

/// A rate-limit window: at most [`super::security_token::MAX_DURATION_SECONDS`].
const MAX_WINDOW_SECONDS: u32 = 3_153_600_000;
/// The longest an API key may live (100 years); personal tokens are capped per account.
const MAX_API_KEY_SECONDS: u64 = super::security_token::MAX_DURATION_SECONDS;
const _: () = assert!(MAX_WINDOW_SECONDS as u64 == super::security_token::MAX_DURATION_SECONDS);

fn duration_secs(value: Option<u64>, what: &str, max: u64) -> ServiceResult<Option<i64>> {
    match value {
        None => Ok(None),
        Some(v) if (1..=max).contains(&v) => Ok(i64::try_from(v).ok()),
        Some(_) => Err(ServiceError::Invalid(format!("{what} must be a whole number from 1 to {max}"))),
    }
}

impl Services {
    /// Issues a token; the returned secret is shown this once.
    pub async fn create_token(
        &self,
        actor: &Actor,
        account: AccountId,
        new: NewToken,
    ) -> ServiceResult<(ApiToken, SecretString)> {
        self.account(account).await?;
        let name = valid_name(&new.name, "name")?;
        if new.scopes.is_empty() || new.scopes.len() > 100 {
            return Err(ServiceError::Invalid("scopes must list 1 to 100 scopes".into()));
        }
        for scope in &new.scopes {
            validate_scope(scope).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        }
        let ip = IpAllowlist::parse(&new.ip_allowlist).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        if new.ip_allowlist.len() > 100 {
            return Err(ServiceError::Invalid("at most 100 CIDRs".into()));
        }
        if new.rate_limit.is_some_and(|rl| {
            !(1..=1_000_000).contains(&rl.limit) || !(1..=MAX_WINDOW_SECONDS).contains(&rl.window_seconds)
        }) {
            return Err(ServiceError::Invalid(format!(
                "rate_limit needs limit from 1 to 1000000 and window_seconds from 1 to {MAX_WINDOW_SECONDS}"
            )));
        }
        for instance in &new.instance_ids {
            let found = self.store.get_instance(*instance).await.map_err(|e| not_found(e, "instance"))?;
            if found.account_id != account {
                return Err(ServiceError::NotFound("instance"));
            }
        }
        let now = Timestamp::now();
        let (member_id, max) = match new.kind {
            TokenKind::ApiKey => {
                if new.member_id.is_some() {
                    return Err(ServiceError::Invalid("member_id is only for personal tokens".into()));
                }
                (None, MAX_API_KEY_SECONDS)
            }
            TokenKind::Personal => {
                let member_id =
                    new.member_id.ok_or_else(|| ServiceError::Invalid("a personal token needs member_id".into()))?;
                let member = self.store.get_member(member_id).await.map_err(|e| not_found(e, "member"))?;
                if member.account_id != account {
                    return Err(ServiceError::NotFound("member"));
                }
                if let Some(scope) = new.scopes.iter().find(|s| !role_allows(member.role, s)) {
                    return Err(ServiceError::Invalid(format!(
                        "scope {scope} exceeds what the member's role ({}) allows",
                        member.role.as_str()
                    )));
                }
                if new.expires_in_seconds.is_none() {
                    return Err(ServiceError::Invalid("a personal token needs expires_in_seconds".into()));
                }
                (Some(member_id), self.store.max_token_lifetime_seconds(account).await?)
            }
        };
        let expires_in = duration_secs(new.expires_in_seconds, "expires_in_seconds", max)?;
        let token = ApiToken {
            id: TokenId::new(),
            account_id: account,
            kind: new.kind,
            member_id,
            name,
            scopes: new.scopes,
            expires_at: expires_in.map(|s| now.plus_secs(s)),
            ip_allowlist: ip.to_strings(),
            rate_limit: new.rate_limit,
            instance_ids: new.instance_ids,
            created_at: now,
            revoked_at: None,
            last_used_at: None,
            format: TokenFormat::Tokengate,
            external_id: None,
            leaked_at: None,
        };
        let secret = token::generate(new.kind.prefix());
        let audit = actor.audit(Some(account), "token.created", token.id);
        let digest = Digest::of(secret.expose_secret().as_bytes());
        self.store
            .create_token(&token, digest, &audit, self.config.max_tokens_per_account)
            .await
            .map_err(|e| not_found(e, "member"))?;
        self.refresh(Change::Token(token.id)).await;
        Ok((token, secret))
    }

    pub async fn list_tokens(&self, account: AccountId) -> ServiceResult<Vec<ApiToken>> {
        self.account(account).await?;
        Ok(self.store.list_tokens(account).await?)
    }

    pub async fn token(&self, id: TokenId) -> ServiceResult<ApiToken> {
        self.store.get_token(id).await.map_err(|e| not_found(e, "token"))
    }

    /// A new token with the same settings; the old one keeps working for `grace_seconds`.
    pub async fn rotate_token(
        &self,
        actor: &Actor,
        id: TokenId,
        grace_seconds: u64,
    ) -> ServiceResult<(ApiToken, SecretString)> {
        if grace_seconds > MAX_GRACE_SECONDS {
            return Err(ServiceError::Invalid(format!("grace_seconds must be between 0 and {MAX_GRACE_SECONDS}")));
        }
        let old = self.token(id).await?;
        let now = Timestamp::now();
        // The store re-checks all of this in the statement that rotates (two concurrent
        // rotations: one wins); here only for a clear message.
        match old.revoked_at {
            Some(at) if at > now => return Err(ServiceError::Conflict("this token was already rotated".into())),
            Some(_) => return Err(ServiceError::Conflict("a revoked token cannot be rotated".into())),
            None => {}
        }
        if old.expires_at.is_some_and(|at| at <= now) {
            return Err(ServiceError::Conflict("an expired token cannot be rotated".into()));
        }
        // The new token lives as long as the old one was meant to, counted from now.
        let lifetime = old.expires_at.map(|e| e.as_millis().saturating_sub(old.created_at.as_millis()));
        let new = ApiToken {
            id: TokenId::new(),
            created_at: now,
            expires_at: lifetime.map(|ms| {
                Timestamp::from_millis(now.as_millis().saturating_add(ms).min(Timestamp::LATEST.as_millis()))
            }),
            revoked_at: None,
            last_used_at: None,
            format: TokenFormat::Tokengate,
            external_id: None,
            leaked_at: None,
            ..old.clone()
        };
        let secret = token::generate(new.kind.prefix());
        let until = now.plus_secs(i64::try_from(grace_seconds).unwrap_or(0));
        let audit = actor.audit(Some(old.account_id), "token.rotated", id);
        self.store
            .rotate_token(id, until, &new, Digest::of(secret.expose_secret().as_bytes()), &audit)
            .await
            .map_err(|e| not_found(e, "token"))?;
        self.refresh(Change::Token(id)).await;
        self.refresh(Change::Token(new.id)).await;
        Ok((new, secret))
    }

    /// Revokes at once, on this node now and on the others through change notices.
    pub async fn revoke_token(&self, actor: &Actor, id: TokenId) -> ServiceResult<()> {
        let token = self.token(id).await?;
        let audit = actor.audit(Some(token.account_id), "token.revoked", id);
        self.store.revoke_token(id, Timestamp::now(), &audit).await.map_err(|e| not_found(e, "token"))?;
        self.refresh(Change::Token(id)).await;
        Ok(())
    }

    /// `POST /v1/verify`, answered from memory. `only_account` restricts the answer to
    /// one account's tokens (an API key asking); others are reported `not_found`.
    pub fn verify_token(
        &self,
        presented: &str,
        required: &[String],
        client: Option<std::net::IpAddr>,
        only_account: Option<AccountId>,
    ) -> Verification {
        let now = Timestamp::now();
        let denied = |d: &Denial| Verification {
            valid: false,
            reason: Some(d.reason().into()),
            token_id: None,
            account_id: None,
            kind: None,
            scopes: None,
            expires_at: None,
        };
        match self.state.verify_token(
            presented.trim().as_bytes(),
            now,
            only_account,
            None,
            client.map(tokengate_core::ClientIp::Known),
            required,
        ) {
            Ok(live) => {
                let c = &live.credential;
                self.usage.touch(c.id, now);
                Verification {
                    valid: true,
                    reason: None,
                    token_id: Some(c.id),
                    account_id: Some(c.account_id),
                    kind: Some(c.kind),
                    scopes: Some(c.scopes.to_vec()),
                    expires_at: c.expires_at,
                }
            }
            Err((denial, _)) => denied(&denial),
        }
    }
}
