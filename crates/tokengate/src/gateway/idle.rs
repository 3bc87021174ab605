//! Idle upstream connections of one worker, by upstream: the most recently parked is
//! taken first, none is kept past the idle timeout, at most [`MAX_IDLE_PER_UPSTREAM`]
//! per upstream (the oldest go first), and no more in all than the worker's
//! [`IdleBudget`] (its share of `max_connections`, so that parked sockets fit the
//! file-descriptor budget). Shared by hyper's connections ([`super::upstream`]) and the
//! plain lane's sockets ([`super::lane`]).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most this many idle connections are kept per upstream.
pub const MAX_IDLE_PER_UPSTREAM: usize = 1024;
/// How often the whole set is swept for connections past their idle timeout.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// How many idle upstream connections a worker may park, across its sets.
#[derive(Debug)]
pub struct IdleBudget {
    parked: AtomicUsize,
    max: usize,
}

impl IdleBudget {
    pub fn new(max: usize) -> Arc<IdleBudget> {
        Arc::new(IdleBudget { parked: AtomicUsize::new(0), max })
    }

    /// Takes a place, if one is free.
    fn take(&self) -> bool {
        self.parked.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < self.max).then_some(n + 1)).is_ok()
    }

    fn give_back(&self, n: usize) {
        self.parked.fetch_sub(n, Ordering::Relaxed);
    }

    #[cfg(test)]
    fn parked(&self) -> usize {
        self.parked.load(Ordering::Relaxed)
    }
}

pub struct IdleSet<K, T> {
    inner: Mutex<Inner<K, T>>,
    idle_timeout: Duration,
    budget: Arc<IdleBudget>,
}

struct Inner<K, T> {
    /// Keys are the upstreams of loaded instances (an admin's choice): a fast hasher.
    by_key: HashMap<K, VecDeque<(T, Instant)>, foldhash::fast::RandomState>,
    swept: Instant,
}

impl<K: Hash + Eq, T> IdleSet<K, T> {
    pub fn new(idle_timeout: Duration, budget: Arc<IdleBudget>) -> IdleSet<K, T> {
        IdleSet { inner: Mutex::new(Inner { by_key: HashMap::default(), swept: Instant::now() }), idle_timeout, budget }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, T>> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most recently parked connection to `key` that is within its idle timeout
    /// and `usable` (the others met on the way are dropped).
    pub fn take(&self, key: &K, mut usable: impl FnMut(&mut T) -> bool) -> Option<T> {
        let mut inner = self.lock();
        let parked = inner.by_key.get_mut(key)?;
        while let Some((mut conn, since)) = parked.pop_back() {
            self.budget.give_back(1);
            if since.elapsed() < self.idle_timeout && usable(&mut conn) {
                return Some(conn);
            }
        }
        None
    }

    /// Parks a connection that can take another request. With the worker's budget
    /// spent it takes the place of this upstream's oldest idle connection, or, when this
    /// upstream has none, is closed (dropped) instead of parked.
    pub fn put(&self, key: K, conn: T) {
        let now = Instant::now();
        let mut inner = self.lock();
        if now.duration_since(inner.swept) >= SWEEP_EVERY {
            inner.swept = now;
            let (timeout, mut gone) = (self.idle_timeout, 0);
            inner.by_key.retain(|_, parked| {
                let before = parked.len();
                parked.retain(|(_, since)| now.duration_since(*since) < timeout);
                gone += before - parked.len();
                !parked.is_empty()
            });
            self.budget.give_back(gone);
        }
        let parked = inner.by_key.entry(key).or_default();
        let replaces = parked.len() >= MAX_IDLE_PER_UPSTREAM || !self.budget.take();
        if replaces && parked.pop_front().is_none() {
            return;
        }
        parked.push_back((conn, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_unusable_dropped_and_bounded() {
        let set = IdleSet::new(Duration::from_secs(60), IdleBudget::new(usize::MAX));
        set.put("a", 1);
        set.put("a", 2);
        set.put("a", 3);
        assert_eq!(set.take(&"a", |_| true), Some(3));
        // 2 is unusable: dropped on the way to 1.
        assert_eq!(set.take(&"a", |c| *c != 2), Some(1));
        assert_eq!(set.take(&"a", |_| true), None);
        assert_eq!(set.take(&"b", |_| true), None);
        for n in 0..MAX_IDLE_PER_UPSTREAM + 5 {
            set.put("a", n);
        }
        let mut left = 0;
        while set.take(&"a", |_| true).is_some() {
            left += 1;
        }
        assert_eq!(left, MAX_IDLE_PER_UPSTREAM);
    }

    #[test]
    fn nothing_is_taken_past_the_idle_timeout() {
        let set = IdleSet::new(Duration::ZERO, IdleBudget::new(usize::MAX));
        set.put("a", 1);
        assert_eq!(set.take(&"a", |_| true), None);
    }

    /// The sets of a worker share one budget: past it a connection takes the place of
    /// its upstream's oldest idle one, or is not parked at all; taking one frees a place.
    #[test]
    fn the_worker_budget_bounds_every_set_together() {
        let budget = IdleBudget::new(3);
        let (lane, pool) = (
            IdleSet::new(Duration::from_secs(60), Arc::clone(&budget)),
            IdleSet::new(Duration::from_secs(60), Arc::clone(&budget)),
        );
        for n in 1..=4 {
            lane.put("a", n);
        }
        assert_eq!(budget.parked(), 3);
        pool.put("b", 10);
        assert_eq!(pool.take(&"b", |_| true), None, "parked past the budget");
        assert_eq!(lane.take(&"a", |_| true), Some(4));
        pool.put("b", 11);
        assert_eq!(budget.parked(), 3);
        assert_eq!(pool.take(&"b", |_| true), Some(11));
        assert_eq!(
            (lane.take(&"a", |_| true), lane.take(&"a", |_| true), lane.take(&"a", |_| true)),
            (Some(3), Some(2), None),
            "the oldest gave its place"
        );
        assert_eq!(budget.parked(), 0);
    }
}
