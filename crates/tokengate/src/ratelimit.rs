//! Rate limits that hold across the nodes sharing one PostgreSQL store.
//!
//! Windows are fixed and aligned (`[k·w, (k+1)·w)` in Unix seconds). Each node admits
//! from a **grant** of its own, in memory, without waiting on anything; about every
//! 100 ms it *reconciles*: one transaction under one advisory lock, so nodes take turns,
//! in which it publishes what it used and takes its next grant out of what the other
//! nodes' grants leave of the limit. The grants of a window therefore never add up to
//! more than the limit, and the split follows demand: a node's target is a share of
//! what is left weighted by the requests it saw since its previous turn (plus one, so
//! an idle node keeps a cushion while much is left; it rounds down, the busy ones up,
//! so the last few go to where the requests are).
//!
//! Before a node has taken a turn for a window it holds an implicit grant — its share
//! of the limit among the live nodes (`limit / nodes`, the remainder going to the first
//! ones by id) — and every other node reserves that share for it. A node whose store is
//! gone falls back to that same share for every window; the others, seeing its
//! heartbeat go stale, reserve it too. On SQLite (one node) none of this runs: the
//! token's own GCRA limiter in [`crate::state`] applies.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use tokengate_core::{Timestamp, TokenId};
use tokio::sync::watch;

use crate::store::{GrantRow, NodeSeen, RateLimit, SqlStore, StoreResult};

/// A node whose last heartbeat is older than this is treated as cut off from the store.
const FRESH_MS: i64 = 1_000;
/// Nodes seen within this are counted as alive.
const ALIVE_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct WindowKey {
    token: TokenId,
    limit: u32,
    window_seconds: u32,
    start: i64,
}

/// One window at this node: its allowance (the grant in force) and what it used, in
/// one atomic word (`allowance << 32 | used`, both at most the limit, a `u32`), so that
/// admitting and lowering the allowance can never cross each other.
#[derive(Debug, Default)]
struct Budget {
    word: AtomicU64,
    /// Requests seen since the last reconciliation (admitted or not).
    attempts: AtomicU64,
}

const LOW: u64 = 0xffff_ffff;

impl Budget {
    fn with_allowance(allowance: u64) -> Budget {
        Budget { word: AtomicU64::new(allowance.min(LOW) << 32), ..Budget::default() }
    }

    fn used(&self) -> u64 {
        self.word.load(Ordering::Acquire) & LOW
    }

    fn take(&self) -> bool {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        self.word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| ((w & LOW) < (w >> 32)).then_some(w + 1))
            .is_ok()
    }

    /// Lowers the allowance to `to`, never below what is used; returns the allowance
    /// now in force.
    fn lower_to(&self, to: u64) -> u64 {
        let lowered = self.word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
            let (allowance, used) = (w >> 32, w & LOW);
            (to < allowance).then(|| (to.max(used) << 32) | used)
        });
        match lowered {
            Ok(w) => to.max(w & LOW),
            Err(w) => w >> 32,
        }
    }

    /// Raises the allowance to at least `to`.
    fn raise_to(&self, to: u64) {
        let to = to.min(LOW);
        let _ = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| (to > w >> 32).then_some((to << 32) | (w & LOW)));
    }
}

/// The live nodes as this node last saw them: how many, and its own place among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct View {
    nodes: u64,
    rank: u64,
}

/// `limit / nodes`, the remainder spread over the first `limit % nodes` ranks.
fn share(limit: u64, nodes: u64, rank: u64) -> u64 {
    let nodes = nodes.max(1);
    limit / nodes + u64::from(rank < limit % nodes)
}

pub struct ClusterLimits {
    node_id: String,
    /// `nodes << 32 | rank`.
    view: AtomicU64,
    windows: DashMap<WindowKey, Arc<Budget>>,
    /// When the last reconciliation committed (milliseconds, this node's clock).
    last_ok_ms: AtomicI64,
}

impl ClusterLimits {
    pub fn new() -> ClusterLimits {
        ClusterLimits {
            node_id: uuid::Uuid::new_v4().simple().to_string(),
            view: AtomicU64::new(pack(View { nodes: 1, rank: 0 })),
            windows: DashMap::new(),
            last_ok_ms: AtomicI64::new(0),
        }
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    fn view(&self) -> View {
        let v = self.view.load(Ordering::Relaxed);
        View { nodes: v >> 32, rank: v & 0xffff_ffff }
    }

    /// Takes one request from the token's window; `Err` carries the seconds until the
    /// window ends. Never waits: the grant is in memory.
    pub fn take(&self, token: TokenId, rate: RateLimit, now: Timestamp) -> Result<(), u64> {
        if rate.limit == 0 || rate.window_seconds == 0 {
            return Err(1);
        }
        let now_secs = now.as_secs();
        let window = i64::from(rate.window_seconds);
        let start = now_secs - now_secs.rem_euclid(window);
        let key = WindowKey { token, limit: rate.limit, window_seconds: rate.window_seconds, start };
        let budget = match self.windows.get(&key) {
            Some(b) => Arc::clone(b.value()),
            None => {
                let view = self.view();
                let implicit = share(u64::from(rate.limit), view.nodes, view.rank);
                Arc::clone(
                    self.windows.entry(key).or_insert_with(|| Arc::new(Budget::with_allowance(implicit))).value(),
                )
            }
        };
        if budget.take() { Ok(()) } else { Err(u64::try_from(start + window - now_secs).unwrap_or(1).max(1)) }
    }

    /// One turn: publish, take the next grants, drop windows that are over. When another
    /// node is taking its turn, this one is skipped (grants unchanged; next tick):
    /// `Ok(false)`.
    pub async fn reconcile(&self, store: &SqlStore) -> StoreResult<bool> {
        let now_secs = Timestamp::now().as_secs();
        self.windows.retain(|k, _| k.start + i64::from(k.window_seconds) > now_secs);
        let mut raises = Vec::new();
        let took_turn = store
            .reconcile_rate_grants(&self.node_id, now_secs, |nodes, rows| {
                let (view, grants) = self.plan(nodes, rows, now_secs);
                self.view.store(pack(view), Ordering::Relaxed);
                let mut out = Vec::with_capacity(grants.len());
                for (key, target) in grants {
                    let budget = Arc::clone(self.windows.entry(key).or_default().value());
                    let in_force = budget.lower_to(target);
                    let granted = if target < in_force { in_force } else { target };
                    if granted > in_force {
                        raises.push((Arc::clone(&budget), granted));
                    }
                    out.push(GrantRow {
                        token_id: key.token.to_string(),
                        rate_limit: i64::from(key.limit),
                        window_seconds: i64::from(key.window_seconds),
                        window_start: key.start,
                        node_id: self.node_id.clone(),
                        granted: i64::try_from(granted).unwrap_or(i64::MAX),
                        used: i64::try_from(budget.used()).unwrap_or(i64::MAX),
                        demand: i64::try_from(budget.attempts.swap(0, Ordering::AcqRel)).unwrap_or(i64::MAX),
                    });
                }
                out
            })
            .await?;
        if !took_turn {
            return Ok(false);
        }
        // Raised only once the grants are committed: the others now count them.
        for (budget, granted) in raises {
            budget.raise_to(granted);
        }
        self.last_ok_ms.store(Timestamp::now().as_millis(), Ordering::Relaxed);
        Ok(true)
    }

    /// The store is unreachable: every window falls back to this node's share of the
    /// limit among the nodes last seen alive.
    fn fall_back(&self) {
        let view = self.view();
        for entry in &self.windows {
            let fallback = share(u64::from(entry.key().limit), view.nodes, view.rank);
            entry.value().raise_to(fallback);
        }
    }

    /// Seconds since the last reconciliation committed (0 before the first).
    pub fn reconcile_age_seconds(&self) -> f64 {
        let last = self.last_ok_ms.load(Ordering::Relaxed);
        if last == 0 { 0.0 } else { (Timestamp::now().as_millis() - last).max(0) as f64 / 1000.0 }
    }

    /// This node's next grant for every window it or another node is using.
    fn plan(&self, nodes: &[NodeSeen], rows: &[GrantRow], now_secs: i64) -> (View, Vec<(WindowKey, u64)>) {
        let mut live: Vec<NodeSeen> = nodes.iter().filter(|n| n.age_ms < ALIVE_MS).cloned().collect();
        // Its own heartbeat is written in the same transaction; never count itself out.
        if !live.iter().any(|n| n.node_id == self.node_id) {
            live.push(NodeSeen { node_id: self.node_id.clone(), age_ms: 0 });
        }
        live.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        let count = live.len() as u64;
        let rank_of = |id: &str| live.iter().position(|n| n.node_id == id).map(|p| p as u64);
        let my_rank = rank_of(&self.node_id).unwrap_or(0);
        let view = View { nodes: count, rank: my_rank };

        let mut others: HashMap<WindowKey, Vec<&GrantRow>> = HashMap::new();
        for row in rows.iter().filter(|r| r.node_id != self.node_id) {
            if let Some(key) = row_key(row) {
                others.entry(key).or_default().push(row);
            }
        }
        let mut keys: Vec<WindowKey> = self.windows.iter().map(|e| *e.key()).collect();
        keys.extend(others.keys().copied().filter(|k| !self.windows.contains_key(k)));
        keys.retain(|k| k.start + i64::from(k.window_seconds) > now_secs);

        let grants = keys
            .into_iter()
            .map(|key| {
                let limit = u64::from(key.limit);
                let (used_me, demand_me) =
                    self.windows.get(&key).map(|b| (b.used(), b.attempts.load(Ordering::Acquire))).unwrap_or((0, 0));
                let theirs = others.get(&key).map(Vec::as_slice).unwrap_or(&[]);
                let mut reserved = 0u64;
                let mut used_all = used_me;
                let mut weights = demand_me + 1;
                for row in theirs {
                    let (granted, used) = (to_u64(row.granted), to_u64(row.used));
                    used_all += used;
                    match live.iter().find(|n| n.node_id == row.node_id) {
                        Some(node) if node.age_ms < FRESH_MS => {
                            reserved += granted.max(used);
                            weights += to_u64(row.demand) + 1;
                        }
                        // Cut off from the store: it may be admitting up to its share.
                        Some(_) => {
                            let fallback = share(limit, count, rank_of(&row.node_id).unwrap_or(0));
                            reserved += granted.max(used).max(fallback);
                        }
                        None => reserved += used,
                    }
                }
                // Live nodes that have not taken a turn for this window hold their share.
                for node in live.iter().filter(|n| n.node_id != self.node_id) {
                    if !theirs.iter().any(|r| r.node_id == node.node_id) {
                        reserved += share(limit, count, rank_of(&node.node_id).unwrap_or(0));
                        weights += 1;
                    }
                }
                let left = limit.saturating_sub(used_all);
                // A node with requests rounds up, an idle one down: an idle node keeps
                // a cushion while much is left and gives the last few to the busy ones.
                let weighted = left * (demand_me + 1);
                let target = if demand_me > 0 { weighted.div_ceil(weights.max(1)) } else { weighted / weights.max(1) };
                let free = limit.saturating_sub(reserved).saturating_sub(used_me);
                (key, used_me + target.min(free))
            })
            .collect();
        (view, grants)
    }

    /// Reconciles every `every` until `stop`; falls back to local shares while the
    /// store is unreachable. On stop, hands this node's unused grants back.
    pub async fn run(self: Arc<Self>, store: SqlStore, every: Duration, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pruned_at = 0i64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            match tokio::time::timeout(Duration::from_secs(2), self.reconcile(&store)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "rate-limit reconciliation failed; local shares apply");
                    self.fall_back();
                }
                Err(_) => {
                    tracing::debug!("rate-limit reconciliation timed out; local shares apply");
                    self.fall_back();
                }
            }
            metrics::gauge!("tokengate_rate_limit_reconcile_age_seconds").set(self.reconcile_age_seconds());
            let now = Timestamp::now().as_secs();
            if now - pruned_at >= 60 {
                pruned_at = now;
                if let Err(e) = store.prune_rate_grants(now).await {
                    tracing::debug!(error = %e, "pruning rate-limit grants failed");
                }
            }
        }
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(1), store.leave_cluster(&self.node_id)).await {
            tracing::debug!(error = %e, "leaving the rate-limit cluster failed");
        }
    }
}

impl Default for ClusterLimits {
    fn default() -> Self {
        Self::new()
    }
}

fn pack(view: View) -> u64 {
    (view.nodes << 32) | (view.rank & 0xffff_ffff)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn row_key(row: &GrantRow) -> Option<WindowKey> {
    Some(WindowKey {
        token: row.token_id.parse().ok()?,
        limit: u32::try_from(row.rate_limit).ok()?,
        window_seconds: u32::try_from(row.window_seconds).ok()?,
        start: row.window_start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, age_ms: i64) -> NodeSeen {
        NodeSeen { node_id: id.into(), age_ms }
    }

    fn limits(id: &str) -> ClusterLimits {
        ClusterLimits { node_id: id.into(), ..ClusterLimits::new() }
    }

    fn row(token: TokenId, node: &str, granted: i64, used: i64, demand: i64) -> GrantRow {
        GrantRow {
            token_id: token.to_string(),
            rate_limit: 10,
            window_seconds: 3600,
            window_start: 0,
            node_id: node.into(),
            granted,
            used,
            demand,
        }
    }

    #[test]
    fn shares_add_up_to_the_limit() {
        for limit in 0..50 {
            for nodes in 1..6 {
                let total: u64 = (0..nodes).map(|rank| share(limit, nodes, rank)).sum();
                assert_eq!(total, limit, "limit {limit}, {nodes} nodes");
            }
        }
    }

    #[test]
    fn a_budget_admits_exactly_its_allowance() {
        let budget = Budget::with_allowance(3);
        assert_eq!((0..10).filter(|_| budget.take()).count(), 3);
        assert_eq!(budget.attempts.load(Ordering::Relaxed), 10);
        assert_eq!(budget.lower_to(1), 3, "never below what is used");
    }

    /// Admitting and lowering race on two threads: what was admitted never passes the
    /// allowance that lowering says is in force.
    #[test]
    fn lowering_never_falls_behind_admissions() {
        for _ in 0..200 {
            let budget = Arc::new(Budget::with_allowance(1_000));
            let taker = {
                let budget = Arc::clone(&budget);
                std::thread::spawn(move || (0..2_000).filter(|_| budget.take()).count() as u64)
            };
            let in_force = budget.lower_to(10);
            let admitted = taker.join().unwrap();
            assert!(admitted <= in_force.max(10), "{admitted} admitted, {in_force} in force");
            assert_eq!(admitted, budget.used());
        }
    }

    /// Two nodes taking turns never grant more than the limit together, whatever the
    /// demand, and an idle node leaves the rest to a busy one.
    #[test]
    fn grants_never_exceed_the_limit_and_follow_demand() {
        let token = TokenId::new();
        let key = WindowKey { token, limit: 10, window_seconds: 3600, start: 0 };
        let (a, b) = (limits("a"), limits("b"));
        let nodes = [node("a", 0), node("b", 0)];
        // A saw 30 requests and used its implicit 5; B has taken no turn yet.
        a.windows.insert(key, Arc::new(Budget { word: ((5 << 32) | 5).into(), attempts: 30.into() }));
        let (view, grants) = a.plan(&nodes, &[], 1);
        assert_eq!(view, View { nodes: 2, rank: 0 });
        assert_eq!(grants, vec![(key, 5)], "B's implicit share is reserved");
        // B takes its turn idle: it keeps a little of what is left and reserves nothing more.
        let (_, grants) = b.plan(&nodes, &[row(token, "a", 5, 5, 30)], 1);
        let b_grant = grants[0].1;
        assert!(b_grant <= 5, "{b_grant}");
        // A's next turn gets what B does not hold.
        let (_, grants) = a.plan(&nodes, &[row(token, "b", i64::try_from(b_grant).unwrap(), 0, 0)], 1);
        assert_eq!(grants[0].1 + b_grant, 10);
        assert!(grants[0].1 > 5, "the busy node got more: {}", grants[0].1);
    }

    #[test]
    fn a_node_cut_off_from_the_store_keeps_its_share_reserved() {
        let token = TokenId::new();
        let key = WindowKey { token, limit: 10, window_seconds: 3600, start: 0 };
        let a = limits("a");
        a.windows.insert(key, Arc::new(Budget { word: (5u64 << 32).into(), attempts: 50.into() }));
        // B granted itself 1 but its heartbeat is stale: it may admit up to 5.
        let (_, grants) = a.plan(&[node("a", 0), node("b", 5_000)], &[row(token, "b", 1, 0, 0)], 1);
        assert_eq!(grants, vec![(key, 5)]);
        // A node gone for a minute only counts what it used.
        let (view, grants) = a.plan(&[node("a", 0), node("b", 90_000)], &[row(token, "b", 5, 2, 0)], 1);
        assert_eq!(view.nodes, 1);
        assert_eq!(grants, vec![(key, 8)]);
    }

    #[test]
    fn the_fallback_is_the_share_among_the_nodes_last_seen() {
        let a = limits("a");
        a.view.store(pack(View { nodes: 3, rank: 2 }), Ordering::Relaxed);
        let token = TokenId::new();
        let rate = RateLimit { limit: 10, window_seconds: 3600 };
        let now = Timestamp::from_millis(1_000);
        let admitted = (0..20).filter(|_| a.take(token, rate, now).is_ok()).count();
        assert_eq!(admitted, 3, "10 / 3 nodes, rank 2 gets no remainder");
        let refused = a.take(token, rate, now).unwrap_err();
        assert_eq!(refused, 3599, "seconds until the window ends");
    }
}
