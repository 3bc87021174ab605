//! Housekeeping's prunes on both stores: a history longer than one batch is deleted
//! whole, a batch at a time, and what is within the retention stays.

use tokengate::store::{SqlStore, UsageKind, UsageRow, UsageStore, WebhookStore};
use tokengate_core::{AccountId, Timestamp};

use crate::helpers::{StoreKind, fresh_postgres_database};
use crate::on_both_stores;

on_both_stores!(a_long_history_is_pruned_in_batches);

async fn a_long_history_is_pruned_in_batches(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let store = match kind {
        StoreKind::Sqlite => SqlStore::open_sqlite(dir.path()).await.unwrap(),
        StoreKind::Postgres => SqlStore::open(&fresh_postgres_database().await).await.unwrap(),
    };
    // More than two batches of old minutes, and one minute past the cutoff.
    const OLD: i64 = 12_001;
    let cutoff = Timestamp::from_millis(OLD * 60_000);
    let account = AccountId::new();
    let row = |minute: i64| UsageRow {
        account_id: account,
        token_id: String::new(),
        bucket_start: Timestamp::from_millis(minute * 60_000),
        kind: UsageKind::Allowed,
        reason: "".into(),
        count: 1,
    };
    let rows: Vec<UsageRow> = (0..=OLD).map(row).collect();
    store.add_usage(&rows).await.unwrap();
    assert_eq!(store.prune_usage(cutoff).await.unwrap(), OLD as u64);
    assert_eq!(store.prune_usage(cutoff).await.unwrap(), 0);
    // The recent minute was kept.
    assert_eq!(store.prune_usage(Timestamp::from_millis(i64::MAX / 2)).await.unwrap(), 1);
    // The webhook prune's statements run on this backend too (nothing to delete).
    assert_eq!(store.prune_webhooks(cutoff).await.unwrap(), 0);
}
