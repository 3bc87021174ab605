//! Cluster-wide rate limits in SQL (PostgreSQL): node heartbeats and per-node grants.
//!
//! A reconciliation is one transaction under one advisory lock, so the nodes take
//! their grants one after another, each seeing every grant committed before it: the
//! grants of a window can then never add up to more than its limit.

use sqlx::Row;

use super::SqlStore;
use crate::store::{StoreError, StoreResult};

/// The advisory lock every node's reconciliation takes (an arbitrary constant).
const RECONCILE_LOCK: i64 = 0x746f_6b65_6e67_6174;

/// Rows written per statement (eight parameters each).
const ROWS_PER_STATEMENT: usize = 500;

/// A node as the last heartbeats show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSeen {
    pub node_id: String,
    /// Milliseconds since its last heartbeat, on the store's clock.
    pub age_ms: i64,
}

/// One node's grant of one token's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub token_id: String,
    pub rate_limit: i64,
    pub window_seconds: i64,
    pub window_start: i64,
    pub node_id: String,
    pub granted: i64,
    pub used: i64,
    pub demand: i64,
}

impl SqlStore {
    /// Records this node's heartbeat, reads every node and every grant of a window not
    /// yet over at `now_secs`, and writes the grants `decide` returns for this node —
    /// all while holding the reconciliation lock. `decide` runs inside the transaction.
    /// `false` when another node held the lock: nothing was read or written.
    pub async fn reconcile_rate_grants(
        &self,
        node_id: &str,
        now_secs: i64,
        decide: impl FnOnce(&[NodeSeen], &[GrantRow]) -> Vec<GrantRow>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        // Grants and heartbeats are soft state, rewritten every turn: their commits need
        // not wait for the WAL to reach the disk (ten a second per node would otherwise
        // queue behind every other write's fsync). A slow turn is ended by the server
        // (a clean error) rather than by dropping the connection mid-query.
        sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *tx).await?;
        sqlx::query("SET LOCAL statement_timeout = 500").execute(&mut *tx).await?;
        // Another node's turn in progress: this one is skipped, not waited for.
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(RECONCILE_LOCK).fetch_one(&mut *tx).await?;
        if !locked {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO cluster_nodes (node_id, seen_at) \
             VALUES ($1, (extract(epoch from clock_timestamp()) * 1000)::bigint) \
             ON CONFLICT (node_id) DO UPDATE SET seen_at = excluded.seen_at",
        )
        .bind(node_id)
        .execute(&mut *tx)
        .await?;
        let nodes = sqlx::query(
            "SELECT node_id, (extract(epoch from clock_timestamp()) * 1000)::bigint - seen_at AS age_ms \
             FROM cluster_nodes WHERE seen_at > (extract(epoch from clock_timestamp()) * 1000)::bigint - 60000 \
             ORDER BY node_id",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok(NodeSeen { node_id: r.try_get("node_id")?, age_ms: r.try_get("age_ms")? }))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let rows = sqlx::query(
            "SELECT token_id, rate_limit, window_seconds, window_start, node_id, granted, used, demand \
             FROM rate_grants WHERE window_start + window_seconds > $1",
        )
        .bind(now_secs)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(grant_row)
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let mine = decide(&nodes, &rows);
        for chunk in mine.chunks(ROWS_PER_STATEMENT) {
            write_grants(&mut tx, chunk).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// A node leaving: its heartbeat goes (the others stop reserving shares for it)
    /// and each of its grants shrinks to what it used.
    pub async fn leave_cluster(&self, node_id: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(RECONCILE_LOCK).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM cluster_nodes WHERE node_id = $1").bind(node_id).execute(&mut *tx).await?;
        sqlx::query("UPDATE rate_grants SET granted = used WHERE node_id = $1").bind(node_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets windows over for a minute and nodes silent for an hour.
    pub async fn prune_rate_grants(&self, now_secs: i64) -> StoreResult<()> {
        sqlx::query("DELETE FROM rate_grants WHERE window_start + window_seconds < $1")
            .bind(now_secs - 60)
            .execute(&self.write)
            .await?;
        sqlx::query("DELETE FROM cluster_nodes WHERE seen_at < $1")
            .bind((now_secs - 3600).saturating_mul(1000))
            .execute(&self.write)
            .await?;
        Ok(())
    }
}

fn grant_row(r: &sqlx::any::AnyRow) -> Result<GrantRow, sqlx::Error> {
    Ok(GrantRow {
        token_id: r.try_get("token_id")?,
        rate_limit: r.try_get("rate_limit")?,
        window_seconds: r.try_get("window_seconds")?,
        window_start: r.try_get("window_start")?,
        node_id: r.try_get("node_id")?,
        granted: r.try_get("granted")?,
        used: r.try_get("used")?,
        demand: r.try_get("demand")?,
    })
}

async fn write_grants(tx: &mut super::Tx, rows: &[GrantRow]) -> StoreResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = String::from(
        "INSERT INTO rate_grants (token_id, rate_limit, window_seconds, window_start, node_id, granted, used, demand) VALUES ",
    );
    let tuples: Vec<String> = (0..rows.len())
        .map(|i| format!("({})", (1..=8).map(|k| format!("${}", i * 8 + k)).collect::<Vec<_>>().join(",")))
        .collect();
    sql.push_str(&tuples.join(","));
    sql.push_str(
        " ON CONFLICT (token_id, rate_limit, window_seconds, window_start, node_id) DO UPDATE \
         SET granted = excluded.granted, used = excluded.used, demand = excluded.demand",
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in rows {
        query = query
            .bind(row.token_id.clone())
            .bind(row.rate_limit)
            .bind(row.window_seconds)
            .bind(row.window_start)
            .bind(row.node_id.clone())
            .bind(row.granted)
            .bind(row.used)
            .bind(row.demand);
    }
    query.execute(&mut **tx).await.map_err(StoreError::from)?;
    Ok(())
}
