//! Webhooks, their durable outbox and delivery log in SQL (SPEC §15).
//!
//! An event is an audited action (`token.created`, …): [`SqlStore::enqueue_webhook_event`]
//! runs inside the transaction that writes the audit entry, so an event exists exactly
//! when its change was committed. Delivery claims due rows with a lease (and, on
//! PostgreSQL, `FOR UPDATE SKIP LOCKED`), so each event is sent by one node at a time.

use sqlx::Row;
use sqlx::any::AnyRow;
use tokengate_core::{AccountId, Timestamp};

use super::{SqlStore, Tx, parse_id};
use crate::store::{
    AuditEntry, DeliveryOutcome, DueEvent, StoreError, StoreResult, Webhook, WebhookDelivery, WebhookStore,
};

/// The events a webhook may subscribe to (SPEC §15), each an audited action.
pub const EVENTS: [&str; 6] = [
    "token.created",
    "token.revoked",
    "token.leaked",
    "token.expiring",
    "security_token.activated",
    "security_token.rotated",
];

fn webhook_row(row: &AnyRow) -> StoreResult<Webhook> {
    let events: String = row.try_get("events")?;
    Ok(Webhook {
        id: row.try_get("id")?,
        account_id: parse_id(&row.try_get::<String, _>("account_id")?)?,
        url: row.try_get("url")?,
        events: serde_json::from_str(&events).map_err(|e| StoreError::Corrupt(format!("events: {e}")))?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
    })
}

impl SqlStore {
    /// Queues the event an audited action raises for every webhook of its account that
    /// subscribed to it. Each row's id (`<audit id>:<webhook id>`) is the `webhook-id`
    /// the receiver sees on every attempt.
    pub(super) async fn enqueue_webhook_event(&self, tx: &mut Tx, audit: &AuditEntry) -> StoreResult<()> {
        let (Some(account), true) = (audit.account_id, EVENTS.contains(&audit.action.as_str())) else {
            return Ok(());
        };
        let timestamp = audit.at.to_rfc3339();
        let mut data = serde_json::json!({ "id": audit.target, "account_id": account.to_string() });
        if let (Some(extra), Some(map)) = (audit.detail.as_ref().and_then(|d| d.as_object()), data.as_object_mut()) {
            for (k, v) in extra {
                map.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let payload = serde_json::json!({ "type": audit.action, "timestamp": timestamp, "data": data }).to_string();
        sqlx::query(
            "INSERT INTO webhook_outbox (id, webhook_id, payload, attempts, next_attempt_at, created_at) \
             SELECT CAST($1 AS TEXT) || ':' || id, id, $2, 0, $3, $3 FROM webhooks WHERE account_id = $4 AND events LIKE $5",
        )
        .bind(format!("msg_{}", audit.id))
        .bind(payload)
        .bind(audit.at.as_millis())
        .bind(account.to_string())
        .bind(format!("%\"{}\"%", audit.action))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

impl WebhookStore for SqlStore {
    async fn create_webhook(&self, webhook: &Webhook, sealed_secret: &[u8], audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let events = serde_json::to_string(&webhook.events).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let done = sqlx::query(
            "INSERT INTO webhooks (id, account_id, url, events, secret_sealed, created_at) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $2)",
        )
        .bind(&webhook.id)
        .bind(webhook.account_id.to_string())
        .bind(&webhook.url)
        .bind(events)
        .bind(sealed_secret.to_vec())
        .bind(webhook.created_at.as_millis())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.finish(tx, audit, None).await
    }

    async fn list_webhooks(&self, account: AccountId) -> StoreResult<Vec<Webhook>> {
        let rows = sqlx::query(
            "SELECT id, account_id, url, events, created_at FROM webhooks WHERE account_id = $1 ORDER BY id",
        )
        .bind(account.to_string())
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(webhook_row).collect()
    }

    async fn get_webhook(&self, id: &str) -> StoreResult<Webhook> {
        let row = sqlx::query("SELECT id, account_id, url, events, created_at FROM webhooks WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .ok_or(StoreError::NotFound)?;
        webhook_row(&row)
    }

    async fn delete_webhook(&self, id: &str, audit: &AuditEntry) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // Deliveries and queued events go with it (no cascade is assumed of SQLite).
        sqlx::query("DELETE FROM webhook_outbox WHERE webhook_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1").bind(id).execute(&mut *tx).await?;
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(id).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.finish(tx, audit, None).await
    }

    async fn claim_due(&self, now: Timestamp, lease_until: Timestamp, limit: u32) -> StoreResult<Vec<DueEvent>> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT o.id, o.webhook_id, o.payload, o.attempts, w.url, w.secret_sealed FROM webhook_outbox o \
             JOIN webhooks w ON w.id = o.webhook_id \
             WHERE o.delivered_at IS NULL AND o.given_up_at IS NULL AND o.next_attempt_at <= $1 \
             ORDER BY o.next_attempt_at LIMIT $2{}",
            super::leaks::skip_locked(self.backend())
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now.as_millis())
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in &rows {
            let event = DueEvent {
                message_id: row.try_get("id")?,
                webhook_id: row.try_get("webhook_id")?,
                url: row.try_get("url")?,
                sealed_secret: row.try_get("secret_sealed")?,
                payload: row.try_get("payload")?,
                attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
            };
            sqlx::query("UPDATE webhook_outbox SET next_attempt_at = $1 WHERE id = $2")
                .bind(lease_until.as_millis())
                .bind(&event.message_id)
                .execute(&mut *tx)
                .await?;
            due.push(event);
        }
        tx.commit().await?;
        Ok(due)
    }

    async fn record_delivery(&self, event: &DueEvent, outcome: &DeliveryOutcome, at: Timestamp) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let attempt = i64::from(event.attempts) + 1;
        let (delivered, given_up) = match (outcome.delivered, outcome.retry_at) {
            (true, _) => (Some(at.as_millis()), None),
            (false, Some(_)) => (None, None),
            (false, None) => (None, Some(at.as_millis())),
        };
        sqlx::query(
            "UPDATE webhook_outbox SET attempts = $1, delivered_at = $2, given_up_at = $3, \
             next_attempt_at = $4 WHERE id = $5",
        )
        .bind(attempt)
        .bind(delivered)
        .bind(given_up)
        .bind(outcome.retry_at.unwrap_or(at).as_millis())
        .bind(&event.message_id)
        .execute(&mut *tx)
        .await?;
        let event_type = serde_json::from_str::<serde_json::Value>(&event.payload)
            .ok()
            .and_then(|p| p.get("type").and_then(|t| t.as_str()).map(str::to_string))
            .unwrap_or_default();
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, webhook_id, outbox_id, event_type, attempt, at, status, error, duration_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&event.webhook_id)
        .bind(&event.message_id)
        .bind(event_type)
        .bind(attempt)
        .bind(at.as_millis())
        .bind(outcome.status.map(i64::from))
        .bind(outcome.error.clone())
        .bind(i64::try_from(outcome.duration_ms).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn deliveries(&self, webhook: &str, limit: u32) -> StoreResult<Vec<WebhookDelivery>> {
        let rows = sqlx::query(
            "SELECT id, outbox_id, event_type, attempt, at, status, error, duration_ms FROM webhook_deliveries \
             WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(webhook)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WebhookDelivery {
                    id: r.try_get("id")?,
                    message_id: r.try_get("outbox_id")?,
                    event_type: r.try_get("event_type")?,
                    attempt: u32::try_from(r.try_get::<i64, _>("attempt")?).unwrap_or(u32::MAX),
                    at: Timestamp::from_millis(r.try_get("at")?),
                    status: r.try_get::<Option<i64>, _>("status")?.and_then(|s| u16::try_from(s).ok()),
                    error: r.try_get("error")?,
                    duration_ms: u64::try_from(r.try_get::<i64, _>("duration_ms")?).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn prune_webhooks(&self, before: Timestamp) -> StoreResult<u64> {
        // Attempts first: an event goes only after its attempts (all older than its end).
        let attempts = self.delete_in_batches("webhook_deliveries", "at < $1", before).await?;
        let events =
            self.delete_in_batches("webhook_outbox", "(delivered_at < $1 OR given_up_at < $1)", before).await?;
        Ok(attempts + events)
    }

    async fn raise_expiring(&self, now: Timestamp, horizon: Timestamp) -> StoreResult<u64> {
        let rows = sqlx::query(
            "SELECT t.id, t.account_id FROM api_tokens t WHERE t.expiring_notified_at IS NULL \
             AND t.expires_at IS NOT NULL AND t.expires_at > $1 AND t.expires_at <= $2 \
             AND (t.revoked_at IS NULL OR t.revoked_at > $1) \
             AND EXISTS (SELECT 1 FROM webhooks w WHERE w.account_id = t.account_id \
                         AND w.events LIKE '%\"token.expiring\"%') LIMIT 1000",
        )
        .bind(now.as_millis())
        .bind(horizon.as_millis())
        .fetch_all(&self.read)
        .await?;
        let mut raised = 0;
        for row in &rows {
            let id: String = row.try_get("id")?;
            let account: AccountId = parse_id(&row.try_get::<String, _>("account_id")?)?;
            let mut tx = self.begin().await?;
            let claimed = sqlx::query(
                "UPDATE api_tokens SET expiring_notified_at = $1 WHERE id = $2 AND expiring_notified_at IS NULL",
            )
            .bind(now.as_millis())
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() == 0 {
                continue; // another node raised it
            }
            let audit = AuditEntry {
                id: tokengate_core::AuditId::new(),
                account_id: Some(account),
                at: now,
                actor: "system".into(),
                action: "token.expiring".into(),
                target: id,
                ip: None,
                detail: None,
            };
            self.finish(tx, &audit, None).await?;
            raised += 1;
        }
        Ok(raised)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokengate_core::AuditId;

    use crate::store::{Account, AccountStore};

    #[tokio::test]
    async fn retention_keeps_recent_attempts_and_pending_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open_sqlite(dir.path()).await.unwrap();
        let audit = |action: &str| AuditEntry {
            id: AuditId::new(),
            account_id: None,
            at: Timestamp::now(),
            actor: "test".into(),
            action: action.into(),
            target: String::new(),
            ip: None,
            detail: None,
        };
        let account = Account { id: AccountId::new(), name: "hooks".into(), created_at: Timestamp::now() };
        store.create_account(&account, &audit("account.created")).await.unwrap();
        let webhook = Webhook {
            id: "wh_1".into(),
            account_id: account.id,
            url: "https://example.com/hook".into(),
            events: vec!["token.created".into()],
            created_at: Timestamp::now(),
        };
        store.create_webhook(&webhook, b"sealed", &audit("webhook.created")).await.unwrap();
        let cutoff = Timestamp::from_millis(1_000_000);
        let (old, new) = (cutoff.as_millis() - 1, cutoff.as_millis() + 1);
        // (id, delivered_at, given_up_at): two old finished events, a recent one, a pending old one.
        let events = [
            ("old-ok", Some(old), None),
            ("old-gone", None, Some(old)),
            ("new-ok", Some(new), None),
            ("due", None, None),
        ];
        for (id, delivered, given_up) in events {
            sqlx::query(
                "INSERT INTO webhook_outbox (id, webhook_id, payload, next_attempt_at, created_at, delivered_at, given_up_at) \
                 VALUES ($1, 'wh_1', '{}', 0, 0, $2, $3)",
            )
            .bind(id)
            .bind(delivered)
            .bind(given_up)
            .execute(&store.write)
            .await
            .unwrap();
        }
        for (id, at) in [("a1", old), ("a2", new)] {
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, webhook_id, outbox_id, event_type, attempt, at, duration_ms) \
                 VALUES ($1, 'wh_1', 'x', 'token.created', 1, $2, 1)",
            )
            .bind(id)
            .bind(at)
            .execute(&store.write)
            .await
            .unwrap();
        }
        assert_eq!(store.prune_webhooks(cutoff).await.unwrap(), 3);
        let left: Vec<String> =
            sqlx::query_scalar("SELECT id FROM webhook_outbox ORDER BY id").fetch_all(&store.write).await.unwrap();
        assert_eq!(left, ["due", "new-ok"]);
        let attempts = store.deliveries("wh_1", 10).await.unwrap();
        assert_eq!(attempts.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["a2"]);
        assert_eq!(store.prune_webhooks(cutoff).await.unwrap(), 0);
    }
}
