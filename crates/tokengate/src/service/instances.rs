//! Instances: the protected upstreams of an account, each with its own `tgi_` token.

use secrecy::{ExposeSecret, SecretString};
use tokengate_core::token::{self, Prefix};
use tokengate_core::{AccountId, Digest, InstanceId, Rule, RuleSet, Timestamp};

use super::accounts::not_found;
use super::{Actor, ServiceError, ServiceResult, Services, valid_name};
use crate::state::Upstream;
use crate::store::{Change, Instance, InstanceChange, InstanceStore};
pub use tokengate_proto::instances::{InstancePatch, NewInstance};

impl Services {
    fn valid_upstream(&self, url: &str) -> ServiceResult<String> {
        let url = url.trim();
        Upstream::parse(url).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        self.egress_allows_url(url, "upstream_url")?;
        Ok(url.to_string())
    }
}

fn valid_rules(rules: Vec<Rule>) -> ServiceResult<Vec<Rule>> {
    let set = RuleSet::new(rules).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    Ok(set.rules().cloned().collect())
}

impl Services {
    /// Creates an instance; the returned secret is its token, shown this once.
    pub async fn create_instance(
        &self,
        actor: &Actor,
        account: AccountId,
        new: NewInstance,
    ) -> ServiceResult<(Instance, SecretString)> {
        self.account(account).await?;
        let instance = Instance {
            id: InstanceId::new(),
            account_id: account,
            name: valid_name(&new.name, "name")?,
            upstream_url: self.valid_upstream(&new.upstream_url)?,
            rules: valid_rules(new.rules)?,
            created_at: Timestamp::now(),
            leaked_at: None,
        };
        let secret = token::generate(Prefix::Instance);
        let digest = Digest::of(secret.expose_secret().as_bytes());
        let audit = actor.audit(Some(account), "instance.created", instance.id);
        self.store.create_instance(&instance, digest, &audit, self.config.max_instances_per_account).await?;
        self.refresh(Change::Instance(instance.id)).await;
        Ok((instance, secret))
    }

    pub async fn list_instances(&self, account: AccountId) -> ServiceResult<Vec<Instance>> {
        self.account(account).await?;
        Ok(self.store.list_instances(account).await?)
    }

    pub async fn instance(&self, id: InstanceId) -> ServiceResult<Instance> {
        self.store.get_instance(id).await.map_err(|e| not_found(e, "instance"))
    }

    pub async fn update_instance(
        &self,
        actor: &Actor,
        id: InstanceId,
        patch: InstancePatch,
    ) -> ServiceResult<Instance> {
        let account = self.instance(id).await?.account_id;
        // Only the fields given are written: a concurrent patch of others is kept.
        let change = InstanceChange {
            name: patch.name.map(|name| valid_name(&name, "name")).transpose()?,
            upstream_url: patch.upstream_url.map(|url| self.valid_upstream(&url)).transpose()?,
            rules: patch.rules.map(valid_rules).transpose()?,
        };
        let audit = actor.audit(Some(account), "instance.updated", id);
        self.store.update_instance(id, &change, &audit).await.map_err(|e| not_found(e, "instance"))?;
        self.refresh(Change::Instance(id)).await;
        self.instance(id).await
    }

    pub async fn delete_instance(&self, actor: &Actor, id: InstanceId) -> ServiceResult<()> {
        let instance = self.instance(id).await?;
        let audit = actor.audit(Some(instance.account_id), "instance.deleted", id);
        self.store.delete_instance(id, &audit).await.map_err(|e| not_found(e, "instance"))?;
        self.refresh(Change::Instance(id)).await;
        Ok(())
    }
}
