//! Idle upstream connections of one worker, by upstream: the most recently parked is
//! taken first, none is kept past the idle timeout, at most [`MAX_IDLE_PER_UPSTREAM`]
//! per upstream (the oldest go first). Shared by hyper's connections
//! ([`super::upstream`]) and the plain lane's sockets ([`super::lane`]).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many idle connections are kept per upstream.
pub const MAX_IDLE_PER_UPSTREAM: usize = 1024;
/// How often the whole set is swept for connections past their idle timeout.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

pub struct IdleSet<K, T> {
    inner: Mutex<Inner<K, T>>,
    idle_timeout: Duration,
}

struct Inner<K, T> {
    /// Keys are the upstreams of loaded instances (an admin's choice): a fast hasher.
    by_key: HashMap<K, VecDeque<(T, Instant)>, foldhash::fast::RandomState>,
    swept: Instant,
}

impl<K: Hash + Eq, T> IdleSet<K, T> {
    pub fn new(idle_timeout: Duration) -> IdleSet<K, T> {
        IdleSet { inner: Mutex::new(Inner { by_key: HashMap::default(), swept: Instant::now() }), idle_timeout }
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
            if since.elapsed() < self.idle_timeout && usable(&mut conn) {
                return Some(conn);
            }
        }
        None
    }

    /// Parks a connection that can take another request.
    pub fn put(&self, key: K, conn: T) {
        let now = Instant::now();
        let mut inner = self.lock();
        if now.duration_since(inner.swept) >= SWEEP_EVERY {
            inner.swept = now;
            let timeout = self.idle_timeout;
            inner.by_key.retain(|_, parked| {
                parked.retain(|(_, since)| now.duration_since(*since) < timeout);
                !parked.is_empty()
            });
        }
        let parked = inner.by_key.entry(key).or_default();
        if parked.len() >= MAX_IDLE_PER_UPSTREAM {
            parked.pop_front();
        }
        parked.push_back((conn, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_first_unusable_dropped_and_bounded() {
        let set = IdleSet::new(Duration::from_secs(60));
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
        let set = IdleSet::new(Duration::ZERO);
        set.put("a", 1);
        assert_eq!(set.take(&"a", |_| true), None);
    }
}
