//! Instances: the protected upstreams of an account, each with its own `tgi_` token.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokengate_core::token::{self, Prefix};
use tokengate_core::{AccountId, Digest, InstanceId, Rule, RuleSet, Timestamp};

use super::accounts::not_found;
use super::{Actor, ServiceError, ServiceResult, Services, valid_name};
use crate::state::Upstream;
use crate::store::{Change, Instance, InstanceStore};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInstance {
    /// 1 to 200 characters, not only spaces, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// `http://` or `https://`, with an optional base path.
    #[schema(pattern = "^[hH][tT][tT][pP][sS]?://[^/?#@ ]+")]
    pub upstream_url: String,
    #[serde(default)]
    #[schema(value_type = Vec<crate::api::RuleDoc>)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstancePatch {
    pub name: Option<String>,
    pub upstream_url: Option<String>,
    #[schema(value_type = Option<Vec<crate::api::RuleDoc>>)]
    pub rules: Option<Vec<Rule>>,
}

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
        let mut instance = self.instance(id).await?;
        if let Some(name) = patch.name {
            instance.name = valid_name(&name, "name")?;
        }
        if let Some(url) = patch.upstream_url {
            instance.upstream_url = self.valid_upstream(&url)?;
        }
        if let Some(rules) = patch.rules {
            instance.rules = valid_rules(rules)?;
        }
        let audit = actor.audit(Some(instance.account_id), "instance.updated", id);
        self.store.update_instance(&instance, &audit).await.map_err(|e| not_found(e, "instance"))?;
        self.refresh(Change::Instance(id)).await;
        Ok(instance)
    }

    pub async fn delete_instance(&self, actor: &Actor, id: InstanceId) -> ServiceResult<()> {
        let instance = self.instance(id).await?;
        let audit = actor.audit(Some(instance.account_id), "instance.deleted", id);
        self.store.delete_instance(id, &audit).await.map_err(|e| not_found(e, "instance"))?;
        self.refresh(Change::Instance(id)).await;
        Ok(())
    }
}
