//! Webhook endpoints (SPEC §15): `whsec_` secrets sealed with the master key, URLs
//! under the egress policy, and the delivery log.

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use tokengate_core::{AccountId, Timestamp};

use super::accounts::not_found;
use super::{Actor, ServiceError, ServiceResult, Services};
use crate::store::{Webhook, WebhookDelivery, WebhookStore};
pub use tokengate_proto::webhooks::NewWebhook;

pub use crate::store::WEBHOOK_EVENTS;

/// The sealing context of a webhook's secret.
pub fn secret_context(id: &str) -> String {
    format!("webhook-secret:{id}")
}

impl Services {
    pub async fn create_webhook(
        &self,
        actor: &Actor,
        account: AccountId,
        new: NewWebhook,
    ) -> ServiceResult<(Webhook, SecretString)> {
        self.account(account).await?;
        let url = new.url.trim();
        let parsed = url::Url::parse(url).map_err(|_| ServiceError::Invalid("url must be an absolute URL".into()))?;
        let controls = url.chars().any(char::is_control);
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() || url.len() > 2048 || controls {
            return Err(ServiceError::Invalid(
                "url must be an http:// or https:// URL of at most 2048 characters".into(),
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(ServiceError::Invalid("url must not carry credentials".into()));
        }
        self.egress_allows_url(url, "url")?;
        let mut events = new.events;
        // The events as asked for, each once.
        let mut seen = std::collections::HashSet::new();
        events.retain(|e| seen.insert(e.clone()));
        if events.is_empty() {
            return Err(ServiceError::Invalid("events must list at least one event".into()));
        }
        if let Some(unknown) = events.iter().find(|e| !WEBHOOK_EVENTS.contains(&e.as_str())) {
            return Err(ServiceError::Invalid(format!(
                "unknown event {unknown:?}; events are {}",
                WEBHOOK_EVENTS.join(", ")
            )));
        }
        let webhook = Webhook {
            id: uuid::Uuid::now_v7().to_string(),
            account_id: account,
            url: url.to_string(),
            events,
            created_at: Timestamp::now(),
        };
        let mut raw = [0u8; 32];
        rand::fill(&mut raw);
        let secret = SecretString::from(format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(raw)));
        let sealed = self.master_key.seal(secret.expose_secret().as_bytes(), &secret_context(&webhook.id));
        let audit = actor.audit(Some(account), "webhook.created", &webhook.id);
        self.store.create_webhook(&webhook, &sealed, &audit).await.map_err(|e| not_found(e, "account"))?;
        Ok((webhook, secret))
    }

    pub async fn list_webhooks(&self, account: AccountId) -> ServiceResult<Vec<Webhook>> {
        self.account(account).await?;
        Ok(self.store.list_webhooks(account).await?)
    }

    pub async fn webhook(&self, id: &str) -> ServiceResult<Webhook> {
        self.store.get_webhook(id).await.map_err(|e| not_found(e, "webhook"))
    }

    pub async fn delete_webhook(&self, actor: &Actor, id: &str) -> ServiceResult<()> {
        let webhook = self.webhook(id).await?;
        let audit = actor.audit(Some(webhook.account_id), "webhook.deleted", id);
        self.store.delete_webhook(id, &audit).await.map_err(|e| not_found(e, "webhook"))
    }

    pub async fn webhook_deliveries(&self, id: &str) -> ServiceResult<Vec<WebhookDelivery>> {
        self.webhook(id).await?;
        Ok(self.store.deliveries(id, 100).await?)
    }
}
