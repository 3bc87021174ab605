//! Usage and readiness counting, aggregated in memory and flushed in the background.
//!
//! The hot path only increments an atomic counter (inserting it the first time a key is
//! seen in a minute); a background task moves the counts into the store every second.
//! A failed flush puts the counts back, so a slow or unreachable store delays counts but
//! never loses them and never slows a request.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use tokengate_core::{AccountId, Timestamp, TokenId};

use crate::store::{SqlStore, StoreError, TokenStore, UsageKind, UsageRow, UsageStore};

/// Counters are kept per minute; coarser buckets are sums of these.
pub const BUCKET_MS: i64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    account: AccountId,
    /// `None` for the account's own totals.
    token: Option<TokenId>,
    bucket_start: i64,
    kind: UsageKind,
    reason: &'static str,
}

pub struct UsageRecorder {
    // Keys are ids the server made and fixed words: a fast hasher is safe here.
    counts: DashMap<Key, AtomicU64, foldhash::fast::RandomState>,
    /// Last use of each token since the last flush (write-behind `last_used_at`).
    last_used: DashMap<TokenId, Timestamp, foldhash::fast::RandomState>,
    /// Most pending rows (one per account or token, minute, outcome and reason) kept while
    /// the store does not take them; requests that would need another are dropped.
    max_rows: usize,
    /// Requests not counted because the buffer was full (also `tokengate_usage_dropped_total`).
    dropped: AtomicU64,
}

/// Pending rows kept by default: with the store away for 10 minutes, 50,000 distinct
/// (account or token, outcome, reason) a minute — whatever the request rate, since
/// requests only add to an existing row. About 100 bytes a row.
pub const DEFAULT_MAX_ROWS: usize = 500_000;

impl Default for UsageRecorder {
    fn default() -> Self {
        UsageRecorder::with_max_rows(DEFAULT_MAX_ROWS)
    }
}

impl UsageRecorder {
    pub fn with_max_rows(max_rows: usize) -> UsageRecorder {
        UsageRecorder {
            counts: DashMap::default(),
            last_used: DashMap::default(),
            max_rows,
            dropped: AtomicU64::new(0),
        }
    }

    /// Requests dropped from the counts so far (the buffer was full).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn drop_counts(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("tokengate_usage_dropped_total").increment(n);
    }

    /// Counts one request for the account and, when given, for the token as well.
    pub fn record(
        &self,
        account: AccountId,
        token: Option<TokenId>,
        kind: UsageKind,
        reason: &'static str,
        now: Timestamp,
    ) {
        let bucket_start = now.as_millis() - now.as_millis().rem_euclid(BUCKET_MS);
        self.bump(Key { account, token: None, bucket_start, kind, reason });
        if token.is_some() {
            self.bump(Key { account, token, bucket_start, kind, reason });
        }
    }

    fn bump(&self, key: Key) {
        if let Some(counter) = self.counts.get(&key) {
            counter.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // A new row only while there is room (the bound may be passed by the few
        // requests that race here; it is a memory cap, not an exact count).
        if self.counts.len() >= self.max_rows {
            self.drop_counts(1);
            return;
        }
        self.counts.entry(key).or_default().fetch_add(1, Ordering::Relaxed);
    }

    /// Notes that a token was used now.
    pub fn touch(&self, token: TokenId, now: Timestamp) {
        self.last_used.insert(token, now);
    }

    /// Takes every pending count out, leaving zeros behind for the current minute.
    pub fn drain(&self, now: Timestamp) -> Vec<UsageRow> {
        let mut rows = Vec::new();
        for entry in self.counts.iter() {
            let n = entry.value().swap(0, Ordering::Relaxed);
            if n > 0 {
                let k = entry.key();
                rows.push(UsageRow {
                    account_id: k.account,
                    token_id: k.token.map(|t| t.to_string()).unwrap_or_default(),
                    bucket_start: Timestamp::from_millis(k.bucket_start),
                    kind: k.kind,
                    reason: Cow::Borrowed(k.reason),
                    count: i64::try_from(n).unwrap_or(i64::MAX),
                });
            }
        }
        // Increments hold a shard's read lock, `retain` its write lock: nothing added
        // between the swap and here is dropped, because a non-zero counter is kept.
        let current = now.as_millis() - now.as_millis().rem_euclid(BUCKET_MS);
        self.counts.retain(|k, v| k.bucket_start >= current || v.load(Ordering::Relaxed) != 0);
        rows
    }

    /// Puts counts back after a failed flush.
    fn restore(&self, rows: Vec<UsageRow>) {
        for row in rows {
            let Cow::Borrowed(reason) = row.reason else { continue };
            let token = row.token_id.parse().ok();
            let key = Key {
                account: row.account_id,
                token,
                bucket_start: row.bucket_start.as_millis(),
                kind: row.kind,
                reason,
            };
            let count = u64::try_from(row.count).unwrap_or(0);
            match self.counts.get(&key) {
                Some(counter) => {
                    counter.fetch_add(count, Ordering::Relaxed);
                }
                None if self.counts.len() >= self.max_rows => self.drop_counts(count),
                None => {
                    self.counts.entry(key).or_default().fetch_add(count, Ordering::Relaxed);
                }
            }
        }
    }

    /// Writes pending counts and last-use times to the store.
    pub async fn flush(&self, store: &SqlStore) {
        let used: Vec<(TokenId, Timestamp)> = self.last_used.iter().map(|e| (*e.key(), *e.value())).collect();
        // Removed only if not used again meanwhile; a failed write puts the time back.
        for (id, at) in &used {
            self.last_used.remove_if(id, |_, v| v == at);
        }
        // A stalled store connection must not hold the counts forever: past the
        // deadline the write is abandoned (rolled back) and retried with the next flush.
        let deadline = Duration::from_secs(5);
        let touched = tokio::time::timeout(deadline, store.touch_tokens(&used)).await;
        if let Err(e) = touched.unwrap_or(Err(StoreError::Backend(sqlx::Error::PoolTimedOut))) {
            tracing::warn!(error = %e, "last-used flush failed; will retry");
            for (id, at) in used {
                self.last_used.entry(id).and_modify(|v| *v = (*v).max(at)).or_insert(at);
            }
        }
        let rows = self.drain(Timestamp::now());
        if !rows.is_empty() {
            let added = tokio::time::timeout(deadline, store.add_usage(&rows)).await;
            if let Err(e) = added.unwrap_or(Err(StoreError::Backend(sqlx::Error::PoolTimedOut))) {
                tracing::warn!(error = %e, rows = rows.len(), "usage flush failed; will retry");
                self.restore(rows);
            }
        }
        metrics::gauge!("tokengate_usage_buffered_rows").set(self.counts.len() as f64);
    }

    /// Flushes every `every` until `stop` fires, then once more.
    pub async fn run(&self, store: &SqlStore, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush(store).await,
                _ = stop.changed() => break,
            }
        }
        self.flush(store).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the store away, a full buffer drops new rows and counts exactly the
    /// requests it dropped; rows already there keep counting.
    #[test]
    fn a_full_buffer_counts_what_it_drops() {
        let rec = UsageRecorder::with_max_rows(2);
        let now = Timestamp::now();
        let (a, b) = (AccountId::new(), AccountId::new());
        let token = TokenId::new();
        rec.record(a, Some(token), UsageKind::Allowed, "forwarded", now); // two rows: full
        rec.record(a, Some(token), UsageKind::Allowed, "forwarded", now); // same rows
        rec.record(b, None, UsageKind::Rejected, "invalid_token", now); // dropped
        rec.record(a, None, UsageKind::Rejected, "invalid_token", now); // dropped
        assert_eq!(rec.dropped(), 2);
        let rows = rec.drain(now);
        assert_eq!(rows.iter().map(|r| r.count).sum::<i64>(), 4, "2 requests x (account + token)");
        // A failed flush puts the rows back; past the bound what cannot return is counted.
        let small = UsageRecorder::with_max_rows(1);
        small.restore(rows);
        assert_eq!(small.dropped(), 2, "the second row's two requests");
    }

    #[test]
    fn counts_aggregate_per_minute_and_drain_once() {
        let rec = UsageRecorder::default();
        let acc = AccountId::new();
        let t = Timestamp::from_millis(1_700_000_000_000);
        for _ in 0..3 {
            rec.record(acc, None, UsageKind::Allowed, "forwarded", t);
        }
        rec.record(acc, None, UsageKind::Rejected, "client_token_missing", t);
        rec.record(acc, None, UsageKind::Allowed, "forwarded", t.plus_secs(60));
        let mut rows = rec.drain(t.plus_secs(60));
        rows.sort_by_key(|r| (r.bucket_start, r.reason.to_string()));
        let summary: Vec<(i64, &str, i64)> =
            rows.iter().map(|r| (r.bucket_start.as_millis() - t.as_millis(), r.reason.as_ref(), r.count)).collect();
        assert_eq!(
            summary,
            vec![(-20_000, "client_token_missing", 1), (-20_000, "forwarded", 3), (40_000, "forwarded", 1)]
        );
        assert!(rec.drain(t.plus_secs(60)).is_empty());
        rec.restore(rows);
        assert_eq!(rec.drain(t.plus_secs(60)).iter().map(|r| r.count).sum::<i64>(), 5);
    }
}

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn token_requests_count_for_the_account_and_the_token() {
        let rec = UsageRecorder::default();
        let (acc, tok) = (AccountId::new(), TokenId::new());
        let t = Timestamp::from_millis(1_700_000_000_000);
        rec.record(acc, Some(tok), UsageKind::Allowed, "forwarded", t);
        rec.record(acc, None, UsageKind::Allowed, "forwarded", t);
        let rows = rec.drain(t);
        let total = |token: &str| rows.iter().filter(|r| r.token_id == token).map(|r| r.count).sum::<i64>();
        assert_eq!(total(""), 2);
        assert_eq!(total(&tok.to_string()), 1);
    }
}
