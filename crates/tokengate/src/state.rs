//! The gateway's in-memory view of the store: instances with their token digests, and
//! per account the security token and IP allowlist. The hot path reads only this.
//!
//! It is refreshed entity by entity when a write commits (on the node that wrote it at
//! once, on other nodes through PostgreSQL change notices), and fully after start-up
//! and after the notice connection was lost, because notices sent meanwhile are gone.

use std::sync::Arc;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use http::uri::{Authority, Scheme};
use tokengate_core::{AccountId, Digest, InstanceId, IpAllowlist, RuleSet, SecurityTokenPolicy};

use crate::store::{
    AccountPolicyRecord, AdminTokenStore, Change, GatewayInstance, InstanceStore, SecurityTokenStore, SqlStore,
    StoreResult,
};

/// Where an instance forwards to, parsed once when the instance is loaded.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// The upstream URL's path without its trailing `/` (often empty).
    pub base_path: String,
}

#[derive(Debug, thiserror::Error)]
#[error("upstream_url must be an absolute http:// or https:// URL without query or fragment")]
pub struct BadUpstream;

impl Upstream {
    pub fn parse(url: &str) -> Result<Upstream, BadUpstream> {
        if url.len() > 2048 || url.contains(['?', '#']) {
            return Err(BadUpstream);
        }
        let uri: http::Uri = url.parse().map_err(|_| BadUpstream)?;
        let scheme = uri.scheme().filter(|s| **s == Scheme::HTTP || **s == Scheme::HTTPS).ok_or(BadUpstream)?.clone();
        let authority = uri.authority().ok_or(BadUpstream)?.clone();
        if authority.host().is_empty() || authority.as_str().contains('@') {
            return Err(BadUpstream);
        }
        Ok(Upstream { scheme, authority, base_path: uri.path().trim_end_matches('/').to_string() })
    }
}

/// One instance as the gateway enforces it.
#[derive(Debug)]
pub struct LiveInstance {
    pub id: InstanceId,
    pub account_id: AccountId,
    pub token_digest: Digest,
    pub upstream: Upstream,
    pub rules: RuleSet,
}

/// One account's gateway policy.
#[derive(Debug, Default)]
pub struct AccountPolicy {
    pub security_token: SecurityTokenPolicy,
    pub allowlist: IpAllowlist,
}

#[derive(Default)]
pub struct GatewayState {
    instances: DashMap<InstanceId, Arc<LiveInstance>>,
    accounts: DashMap<AccountId, Arc<AccountPolicy>>,
    admin_tokens: ArcSwap<Vec<(String, Digest)>>,
}

impl GatewayState {
    pub fn instance(&self, id: &InstanceId) -> Option<Arc<LiveInstance>> {
        self.instances.get(id).map(|e| Arc::clone(e.value()))
    }

    pub fn account(&self, id: &AccountId) -> Option<Arc<AccountPolicy>> {
        self.accounts.get(id).map(|e| Arc::clone(e.value()))
    }

    /// The id of the admin token whose digest this is, compared in constant time.
    pub fn admin_token_id(&self, digest: &Digest) -> Option<String> {
        let tokens = self.admin_tokens.load();
        let mut found = None;
        for (id, d) in tokens.iter() {
            if d.ct_eq(digest) {
                found = Some(id.clone());
            }
        }
        found
    }

    pub fn instance_count(&self) -> usize {
        self.instances.len()
    }

    /// Replaces everything with what the store holds now.
    pub async fn resync(&self, store: &SqlStore) -> StoreResult<()> {
        let policies = store.all_account_policies().await?;
        let instances = store.all_gateway_instances().await?;
        self.admin_tokens.store(Arc::new(store.admin_token_digests().await?));

        let accounts: Vec<AccountId> = policies.iter().map(|p| p.account_id).collect();
        for record in policies {
            self.put_account(record);
        }
        self.accounts.retain(|id, _| accounts.contains(id));
        let ids: std::collections::HashSet<InstanceId> = instances.iter().map(|i| i.instance.id).collect();
        for record in instances {
            self.put_instance(record);
        }
        self.instances.retain(|id, _| ids.contains(id));
        Ok(())
    }

    /// Reloads what one committed change touched.
    pub async fn apply(&self, store: &SqlStore, change: Change) -> StoreResult<()> {
        match change {
            Change::Account(id) => match store.account_policy(id).await? {
                Some(record) => self.put_account(record),
                None => {
                    self.accounts.remove(&id);
                }
            },
            Change::Instance(id) => match store.gateway_instance(id).await? {
                Some(record) => {
                    let account = record.instance.account_id;
                    if !self.accounts.contains_key(&account)
                        && let Some(policy) = store.account_policy(account).await?
                    {
                        self.put_account(policy);
                    }
                    self.put_instance(record);
                }
                None => {
                    self.instances.remove(&id);
                }
            },
            Change::AdminTokens => self.admin_tokens.store(Arc::new(store.admin_token_digests().await?)),
        }
        Ok(())
    }

    fn put_account(&self, record: AccountPolicyRecord) {
        let allowlist = IpAllowlist::parse(&record.ip_allowlist).unwrap_or_else(|e| {
            // Validated on the way in; a bad stored entry must fail closed, not open.
            tracing::error!(account = %record.account_id, error = %e, "stored IP allowlist is invalid; denying all");
            IpAllowlist::parse(&["255.255.255.255/32"]).unwrap_or_default()
        });
        let security_token = match record.security_token {
            None => SecurityTokenPolicy::None,
            Some(t) => SecurityTokenPolicy::Configured { active: t.active, current: t.digest, previous: t.previous },
        };
        self.accounts.insert(record.account_id, Arc::new(AccountPolicy { security_token, allowlist }));
    }

    fn put_instance(&self, record: GatewayInstance) {
        let GatewayInstance { instance, token_digest } = record;
        let upstream = Upstream::parse(&instance.upstream_url);
        let rules = RuleSet::new(instance.rules);
        match (upstream, rules) {
            (Ok(upstream), Ok(rules)) => {
                self.instances.insert(
                    instance.id,
                    Arc::new(LiveInstance {
                        id: instance.id,
                        account_id: instance.account_id,
                        token_digest,
                        upstream,
                        rules,
                    }),
                );
            }
            _ => {
                tracing::error!(instance = %instance.id, "stored instance is invalid; not serving it");
                self.instances.remove(&instance.id);
            }
        }
    }
}
