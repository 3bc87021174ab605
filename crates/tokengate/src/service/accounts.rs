//! Accounts, members and the account IP allowlist.

use argon2::password_hash::PasswordHasher;
use tokengate_core::{AccountId, IpAllowlist, MemberId, Timestamp};

use super::{Actor, ServiceError, ServiceResult, Services, valid_name};
use crate::store::{Account, AccountStore, Change, Member, MemberStore, Role};

impl Services {
    pub async fn create_account(&self, actor: &Actor, name: &str) -> ServiceResult<Account> {
        let account = Account { id: AccountId::new(), name: valid_name(name, "name")?, created_at: Timestamp::now() };
        let audit = actor.audit(Some(account.id), "account.created", account.id);
        self.store.create_account(&account, &audit).await?;
        self.refresh(Change::Account(account.id)).await;
        Ok(account)
    }

    pub async fn list_accounts(&self) -> ServiceResult<Vec<Account>> {
        Ok(self.store.list_accounts().await?)
    }

    pub async fn account(&self, id: AccountId) -> ServiceResult<Account> {
        self.store.get_account(id).await.map_err(|e| not_found(e, "account"))
    }

    pub async fn set_ip_allowlist(
        &self,
        actor: &Actor,
        account: AccountId,
        cidrs: &[String],
    ) -> ServiceResult<Vec<String>> {
        if cidrs.len() > 1000 {
            return Err(ServiceError::Invalid("at most 1000 CIDRs".into()));
        }
        let list = IpAllowlist::parse(cidrs).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let normalized = list.to_strings();
        let audit = actor.audit(Some(account), "ip_allowlist.updated", account);
        self.store.set_ip_allowlist(account, &normalized, &audit).await.map_err(|e| not_found(e, "account"))?;
        self.refresh(Change::Account(account)).await;
        Ok(normalized)
    }

    pub async fn create_member(
        &self,
        actor: &Actor,
        account: AccountId,
        email: &str,
        password: secrecy::SecretString,
        role: Role,
    ) -> ServiceResult<Member> {
        use secrecy::ExposeSecret;
        self.account(account).await?;
        let email = email.trim().to_lowercase();
        let at = email.find('@').unwrap_or(0);
        if email.len() > 254
            || at == 0
            || at + 1 >= email.len()
            || email.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ServiceError::Invalid("email must be an address such as ana@example.com".into()));
        }
        let len = password.expose_secret().chars().count();
        if !(8..=1024).contains(&len) {
            return Err(ServiceError::Invalid("password must be 8 to 1024 characters".into()));
        }
        // argon2id is deliberately slow: keep it off the async worker threads.
        let hash = tokio::task::spawn_blocking(move || {
            argon2::Argon2::default().hash_password(password.expose_secret().as_bytes()).map(|h| h.to_string())
        })
        .await
        .map_err(|_| ServiceError::Invalid("password could not be hashed".into()))?
        .map_err(|_| ServiceError::Invalid("password could not be hashed".into()))?;
        let member = Member { id: MemberId::new(), account_id: account, email, role, created_at: Timestamp::now() };
        let audit = actor.audit(Some(account), "member.created", member.id);
        self.store.create_member(&member, &hash, &audit).await?;
        Ok(member)
    }

    pub async fn list_members(&self, account: AccountId) -> ServiceResult<Vec<Member>> {
        self.account(account).await?;
        Ok(self.store.list_members(account).await?)
    }

    /// Removes a member and revokes its personal tokens.
    pub async fn delete_member(&self, actor: &Actor, id: MemberId) -> ServiceResult<()> {
        let audit = actor.audit(None, "member.removed", id);
        let (_, revoked) =
            self.store.delete_member(id, Timestamp::now(), &audit).await.map_err(|e| not_found(e, "member"))?;
        for token in revoked {
            self.refresh(Change::Token(token)).await;
        }
        Ok(())
    }
}

/// Names the missing object in a store `NotFound`.
pub(super) fn not_found(e: crate::store::StoreError, what: &'static str) -> ServiceError {
    match e {
        crate::store::StoreError::NotFound => ServiceError::NotFound(what),
        other => other.into(),
    }
}
