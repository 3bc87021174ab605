//! Read models over the usage counters: readiness of the security token, usage buckets,
//! and the audit log.

use std::collections::BTreeMap;

use tokengate_core::{AccountId, Timestamp};

use super::{ServiceError, ServiceResult, Services};
use crate::store::{AuditEntry, AuditStore, UsageKind, UsageStore};
use crate::usage::BUCKET_MS;
pub use tokengate_proto::reports::{Readiness, UsageBucket};

/// `?since=&bucket_seconds=` of the usage endpoints.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
pub struct UsageQuery {
    /// RFC 3339 time or Unix seconds; default 24 hours ago.
    pub since: Option<String>,
    /// Bucket width, a multiple of 60 up to 86400; default 3600.
    pub bucket_seconds: Option<String>,
}

impl Services {
    pub(super) async fn readiness(
        &self,
        account: AccountId,
        token_created: Option<Timestamp>,
    ) -> ServiceResult<Readiness> {
        let window = self.config.readiness_window_seconds;
        let mut readiness = Readiness { window_seconds: window, ..Readiness::default() };
        let Some(created) = token_created else { return Ok(readiness) };
        let window_start = Timestamp::now().plus_secs(-i64::try_from(window).unwrap_or(i64::MAX));
        // Counters are per minute: start at the minute the token was created in.
        let since = created.max(window_start);
        let since = Timestamp::from_millis(since.as_millis() - since.as_millis().rem_euclid(BUCKET_MS));
        for row in self.store.usage(account, None, UsageKind::Readiness, since).await? {
            let n = u64::try_from(row.count).unwrap_or(0);
            match row.reason.as_ref() {
                "with_valid_token" => readiness.with_valid_token += n,
                "missing" => readiness.missing += n,
                "invalid" => readiness.invalid += n,
                _ => {}
            }
        }
        readiness.total = readiness.with_valid_token + readiness.missing + readiness.invalid;
        readiness.safe_to_activate = readiness.total > 0 && readiness.total == readiness.with_valid_token;
        Ok(readiness)
    }

    pub async fn usage(&self, account: AccountId, query: &UsageQuery) -> ServiceResult<Vec<UsageBucket>> {
        self.account(account).await?;
        self.buckets(account, None, query).await
    }

    /// The same buckets, counting only one token's requests.
    pub async fn token_usage(
        &self,
        id: tokengate_core::TokenId,
        query: &UsageQuery,
    ) -> ServiceResult<Vec<UsageBucket>> {
        let token = self.token(id).await?;
        self.buckets(token.account_id, Some(&id.to_string()), query).await
    }

    async fn buckets(
        &self,
        account: AccountId,
        token: Option<&str>,
        query: &UsageQuery,
    ) -> ServiceResult<Vec<UsageBucket>> {
        let now = Timestamp::now();
        // An empty value (`?since=&bucket_seconds=`) is the default, as if absent.
        let since = match query.since.as_deref().filter(|s| !s.is_empty()) {
            None => now.plus_secs(-86_400),
            Some(s) => Timestamp::parse(s)
                .ok_or_else(|| ServiceError::Invalid("since must be an RFC 3339 time or Unix seconds".into()))?,
        };
        let width: i64 = match query.bucket_seconds.as_deref().filter(|s| !s.is_empty()) {
            None => 3600,
            Some(s) => s.parse().ok().filter(|w: &i64| *w >= 60 && *w <= 86_400 && w % 60 == 0).ok_or_else(|| {
                ServiceError::Invalid("bucket_seconds must be a multiple of 60 from 60 to 86400".into())
            })?,
        };
        let width_ms = width * 1000;
        let since = Timestamp::from_millis(since.as_millis() - since.as_millis().rem_euclid(width_ms));
        let mut buckets: BTreeMap<i64, UsageBucket> = BTreeMap::new();
        for kind in [UsageKind::Allowed, UsageKind::Rejected] {
            for row in self.store.usage(account, token, kind, since).await? {
                let start = row.bucket_start.as_millis() - row.bucket_start.as_millis().rem_euclid(width_ms);
                let bucket = buckets.entry(start).or_insert_with(|| UsageBucket {
                    start: Timestamp::from_millis(start),
                    allowed: 0,
                    rejected: 0,
                    by_reason: BTreeMap::new(),
                });
                let n = u64::try_from(row.count).unwrap_or(0);
                match kind {
                    UsageKind::Allowed => bucket.allowed += n,
                    _ => bucket.rejected += n,
                }
                *bucket.by_reason.entry(row.reason.into_owned()).or_default() += n;
            }
        }
        Ok(buckets.into_values().collect())
    }

    pub async fn audit(&self, account: AccountId, limit: Option<&str>) -> ServiceResult<Vec<AuditEntry>> {
        self.account(account).await?;
        let limit = match limit.filter(|s| !s.is_empty()) {
            None => 100,
            Some(s) => s
                .parse()
                .ok()
                .filter(|n: &u32| (1..=1000).contains(n))
                .ok_or_else(|| ServiceError::Invalid("limit must be a whole number from 1 to 1000".into()))?,
        };
        Ok(self.store.audit_entries(account, limit).await?)
    }
}
