//! The server's drain signal as client connections read it: whether the drain has
//! started is one atomic load, and a connection waits on it without a lock per wait.
//!
//! A `watch` receiver costs a lock and a cooperative-budget check each time its
//! `changed()` future is polled, which a connection does at every wake-up (the lane's
//! at least once per request). [`Drained`] takes the lock only to register its task's
//! waker (once per connection, or again if the waker changes) and to leave.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::watch;

#[derive(Default)]
pub struct Drain {
    started: AtomicBool,
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    next: u64,
    wakers: HashMap<u64, Waker>,
}

impl Drain {
    /// A signal that starts when `drain` turns true (or its sender is gone).
    pub fn following(mut drain: watch::Receiver<bool>) -> Arc<Drain> {
        let signal = Arc::new(Drain::default());
        let set = Arc::clone(&signal);
        tokio::spawn(async move {
            while !*drain.borrow_and_update() {
                if drain.changed().await.is_err() {
                    break;
                }
            }
            set.start();
        });
        signal
    }

    /// Starts the drain: every waiting [`Drained`] is woken.
    fn start(&self) {
        // Set before the lock is taken: a waiter that registers after this sees it.
        self.started.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut self.waiting.lock().unwrap_or_else(PoisonError::into_inner).wakers);
        wakers.into_values().for_each(Waker::wake);
    }

    pub fn started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Resolves once the drain has started.
    pub fn wait(self: &Arc<Self>) -> Drained {
        Drained { drain: Arc::clone(self), registered: None }
    }
}

/// See [`Drain::wait`].
pub struct Drained {
    drain: Arc<Drain>,
    /// Where this waiter's waker is registered, and that waker (to tell whether a poll
    /// brings another).
    registered: Option<(u64, Waker)>,
}

impl Future for Drained {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.drain.started() {
            return Poll::Ready(());
        }
        if self.registered.as_ref().is_some_and(|(_, w)| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let this = &mut *self;
        let mut waiting = this.drain.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked again under the lock: `start` may have taken the wakers meanwhile.
        if this.drain.started() {
            return Poll::Ready(());
        }
        let key = this.registered.as_ref().map_or_else(
            || {
                waiting.next += 1;
                waiting.next
            },
            |(key, _)| *key,
        );
        waiting.wakers.insert(key, cx.waker().clone());
        this.registered = Some((key, cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        if let Some((key, _)) = &self.registered {
            self.drain.waiting.lock().unwrap_or_else(PoisonError::into_inner).wakers.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_once_it_starts_and_leave_when_dropped() {
        let (tx, rx) = watch::channel(false);
        let drain = Drain::following(rx);
        let mut first = Box::pin(drain.wait());
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(first.as_mut().poll(&mut cx).is_pending());
        // Polled again with the same waker: still one registration.
        assert!(first.as_mut().poll(&mut cx).is_pending());
        assert_eq!(drain.waiting.lock().unwrap().wakers.len(), 1);
        {
            let mut gone = Box::pin(drain.wait());
            assert!(gone.as_mut().poll(&mut cx).is_pending());
            assert_eq!(drain.waiting.lock().unwrap().wakers.len(), 2);
        }
        assert_eq!(drain.waiting.lock().unwrap().wakers.len(), 1, "a dropped waiter leaves");
        assert!(!drain.started());
        let woken = tokio::spawn({
            let drain = Arc::clone(&drain);
            async move { drain.wait().await }
        });
        tokio::task::yield_now().await;
        tx.send(true).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), woken).await.expect("woken").unwrap();
        assert!(drain.started());
        assert!(first.as_mut().poll(&mut cx).is_ready());
        // A waiter that comes after the start resolves at once.
        tokio::time::timeout(std::time::Duration::from_secs(10), drain.wait()).await.expect("at once");
    }
}
