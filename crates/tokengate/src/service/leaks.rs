//! Leak reports (SPEC §15): a string someone found in public is checked offline
//! (prefix and checksum), looked up by digest, and acted on — API keys, personal and
//! imported tokens revoked, OAuth clients disabled, Client-Tokens, instance and admin
//! tokens marked — all audited as `token.leaked` by `leak-report`.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{Quota, RateLimiter};
use tokengate_core::token::{self, Prefix};
use tokengate_core::{AuditId, Digest, Timestamp};

use super::{ServiceError, ServiceResult, Services};
use crate::store::{AuditEntry, LeakStore};
pub use tokengate_proto::leaks::LeakReport;

/// Reports a client address may send a minute, both leak endpoints together.
pub const REPORTS_PER_MINUTE: u32 = 10;

/// Longest string of a report that is looked at (longer ones are no token of ours).
const MAX_STRING: usize = 1024;

/// Reports per client address (`REPORTS_PER_MINUTE`), in this node's memory.
pub struct LeakLimiter(
    RateLimiter<IpAddr, governor::state::keyed::HashMapStateStore<IpAddr>, governor::clock::QuantaClock>,
);

impl Default for LeakLimiter {
    fn default() -> Self {
        let per_minute = NonZeroU32::new(REPORTS_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        LeakLimiter(RateLimiter::hashmap(Quota::per_minute(per_minute)))
    }
}

impl LeakLimiter {
    /// `Err(seconds to wait)` past the limit.
    pub fn check(&self, client: IpAddr) -> Result<(), u64> {
        self.0.check_key(&client).map_err(|not_until| {
            let clock = governor::clock::QuantaClock::default();
            not_until.wait_time_from(governor::clock::Clock::now(&clock)).as_secs() + 1
        })
    }

    /// Forgets addresses whose budget is full again.
    pub fn prune(&self) {
        self.0.retain_recent();
    }
}

/// The digest a reported string would be stored under, if it can be a secret at all:
/// a tokengate token with a valid checksum, or something an import accepts.
fn candidate(presented: &str) -> Option<Digest> {
    let presented = presented.trim().as_bytes();
    if presented.len() > MAX_STRING {
        return None;
    }
    match Prefix::of(presented) {
        Some(prefix) => token::parse(presented, prefix).ok(),
        None if crate::state::importable(presented) => Some(Digest::of(presented)),
        None => None,
    }
}

impl Services {
    /// Acts on every string of a report; for each, whether it named a secret of ours
    /// (GitHub's `true_positive`). Failures are logged, never shown to the reporter.
    pub async fn act_on_leaks(
        &self,
        tokens: &[String],
        url: Option<&str>,
        source: Option<&str>,
        reporter: Option<IpAddr>,
    ) -> Vec<bool> {
        let mut found = Vec::with_capacity(tokens.len());
        for presented in tokens {
            let Some(digest) = candidate(presented) else {
                found.push(false);
                continue;
            };
            let audit = AuditEntry {
                id: AuditId::new(),
                account_id: None,
                at: Timestamp::now(),
                actor: "leak-report".into(),
                action: "token.leaked".into(),
                target: String::new(),
                ip: reporter.map(|ip| ip.to_string()),
                detail: Some(serde_json::json!({ "url": url, "source": source })),
            };
            match self.store.report_leak(digest, &audit).await {
                Ok(Some(hit)) => {
                    tracing::warn!(kind = hit.kind, target = %hit.target, "leak report named a live secret");
                    if let Some(change) = hit.change {
                        self.refresh(change).await;
                    }
                    found.push(true);
                }
                Ok(None) => found.push(false),
                Err(e) => {
                    tracing::error!(error = %e, "acting on a leak report failed");
                    found.push(false);
                }
            }
        }
        found
    }

    /// When a leak report named this secret.
    pub async fn leaked_at(&self, digest: Digest) -> Option<Timestamp> {
        self.store.leaked_at(digest).await.ok().flatten()
    }
}

/// The bounds of a leak report (1–100 strings, short url and source).
pub fn validate(report: &LeakReport) -> ServiceResult<()> {
    if report.tokens.is_empty() || report.tokens.len() > 100 {
        return Err(ServiceError::Invalid("tokens must list 1 to 100 strings".into()));
    }
    if report.url.as_ref().is_some_and(|u| u.len() > 2048) || report.source.as_ref().is_some_and(|s| s.len() > 200) {
        return Err(ServiceError::Invalid("url is at most 2048 characters and source at most 200".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn only_well_formed_strings_are_looked_up() {
        let key = token::generate(Prefix::ApiKey);
        let key = key.expose_secret();
        assert_eq!(candidate(key), Some(Digest::of(key.as_bytes())));
        assert_eq!(candidate(&format!("  {key}\n")), Some(Digest::of(key.as_bytes())));
        let mut broken = key.to_string();
        broken.pop();
        broken.push(if key.ends_with('0') { '1' } else { '0' });
        assert_eq!(candidate(&broken), None, "bad checksum");
        assert_eq!(candidate("short"), None);
        assert_eq!(candidate("kong-key-0123456789"), Some(Digest::of(b"kong-key-0123456789")));
        assert_eq!(candidate(&"x".repeat(2000)), None);
    }

    #[test]
    fn the_limiter_allows_ten_a_minute_per_address() {
        let limiter = LeakLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("203.0.113.1".parse().unwrap(), "203.0.113.2".parse().unwrap());
        for _ in 0..REPORTS_PER_MINUTE {
            assert!(limiter.check(a).is_ok());
        }
        assert!(limiter.check(a).unwrap_err() >= 1);
        assert!(limiter.check(b).is_ok());
    }
}
