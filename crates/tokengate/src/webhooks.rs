//! Webhook delivery (SPEC §15): a background task that takes due events from the
//! store's outbox, signs them per the Standard Webhooks specification and POSTs them
//! through the egress policy, retrying with the configured backoff. Each event is
//! claimed with a lease first, so that with several nodes on PostgreSQL one node
//! delivers it.

use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use tokio::sync::watch;

use crate::outbound::Outbound;
use crate::service::Services;
use crate::store::{DeliveryOutcome, DueEvent, WebhookStore};
use tokengate_core::Timestamp;

/// Deadline of one delivery.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(500);
const BATCH: u32 = 20;
/// How long a claimed event is left to this node before another may take it: longer
/// than a whole batch can take (its deliveries run one after another), so that no
/// other node claims an event of it while it is still being delivered.
const LEASE: Duration = Duration::from_secs(DELIVERY_TIMEOUT.as_secs() * BATCH as u64 + 60);
/// How much of a receiver's answer is read (and dropped).
const MAX_RESPONSE: usize = 64 * 1024;
/// `token.expiring` is raised this long before `expires_at`.
pub const EXPIRING_NOTICE_SECONDS: i64 = 7 * 24 * 3600;

/// The Standard Webhooks signature of a message: `v1,<base64 HMAC-SHA256>` over
/// `{id}.{timestamp}.{body}`, keyed with the base64 part of the `whsec_` secret.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
    let tag = hmac::sign(&key, format!("{id}.{timestamp}.{body}").as_bytes());
    Some(format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag.as_ref())))
}

pub async fn run(services: Services, mut stop: watch::Receiver<bool>) {
    let outbound = Outbound::new(std::sync::Arc::clone(&services.egress), DELIVERY_TIMEOUT);
    let mut last_expiring: Option<Instant> = None;
    let expiring_every = Duration::from_secs(services.config.webhook_expiring_check_seconds.max(1));
    loop {
        if last_expiring.is_none_or(|at| at.elapsed() >= expiring_every) {
            last_expiring = Some(Instant::now());
            let now = Timestamp::now();
            if let Err(e) = services.store.raise_expiring(now, now.plus_secs(EXPIRING_NOTICE_SECONDS)).await {
                tracing::warn!(error = %e, "raising token.expiring events failed");
            }
        }
        deliver_due(&services, &outbound).await;
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn deliver_due(services: &Services, outbound: &Outbound) {
    loop {
        let now = Timestamp::now();
        let lease = now.plus_secs(i64::try_from(LEASE.as_secs()).unwrap_or(60));
        let due = match services.store.claim_due(now, lease, BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "reading the webhook outbox failed");
                return;
            }
        };
        if due.is_empty() {
            return;
        }
        for event in due {
            let outcome = deliver(services, outbound, &event).await;
            if let Err(e) = services.store.record_delivery(&event, &outcome, Timestamp::now()).await {
                // The lease runs out and the event is tried again: at least once.
                tracing::warn!(error = %e, message = %event.message_id, "recording a webhook delivery failed");
            }
        }
    }
}

async fn deliver(services: &Services, outbound: &Outbound, event: &DueEvent) -> DeliveryOutcome {
    let started = Instant::now();
    let result = attempt(services, outbound, event).await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let retries = &services.config.webhook_retry_seconds;
    let retry_at = |attempts: u32| {
        retries
            .get(attempts as usize)
            .map(|secs| Timestamp::now().plus_secs(i64::try_from(*secs).unwrap_or(i64::MAX / 2000)))
    };
    match result {
        Ok(status) if (200..300).contains(&status) => {
            DeliveryOutcome { status: Some(status), error: None, duration_ms, retry_at: None, delivered: true }
        }
        Ok(status) => DeliveryOutcome {
            status: Some(status),
            error: Some(format!("the receiver answered {status}")),
            duration_ms,
            retry_at: retry_at(event.attempts),
            delivered: false,
        },
        Err(e) => DeliveryOutcome {
            status: None,
            error: Some(e),
            duration_ms,
            retry_at: retry_at(event.attempts),
            delivered: false,
        },
    }
}

async fn attempt(services: &Services, outbound: &Outbound, event: &DueEvent) -> Result<u16, String> {
    let secret = services
        .master_key
        .open(&event.sealed_secret, &crate::service::webhooks::secret_context(&event.webhook_id))
        .map_err(|_| "the webhook secret cannot be opened with this node's master key".to_string())?;
    let secret = std::str::from_utf8(&secret).map_err(|_| "the webhook secret is corrupt".to_string())?;
    let timestamp = Timestamp::now().as_millis() / 1000;
    let signature =
        sign(secret, &event.message_id, timestamp, &event.payload).ok_or("the webhook secret is corrupt")?;
    let mut headers = HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let value = |s: &str| HeaderValue::from_str(s).map_err(|_| "a header value is invalid".to_string());
    headers.insert("webhook-id", value(&event.message_id)?);
    headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
    headers.insert("webhook-signature", value(&signature)?);
    let fetched =
        outbound.send(Method::POST, &event.url, headers, Bytes::from(event.payload.clone()), MAX_RESPONSE).await?;
    Ok(fetched.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signatures_match_the_specification_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(sign(secret, id, 1614265330, body).unwrap(), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(sign("nope", id, 1, body).is_none());
    }
}
