//! Deadlines and caps on client connections (SPEC §11), for every route the listener
//! serves — gateway, admin API, `/oauth`, dashboard:
//! - [`TimedBody`]: a request body that makes no progress for `body_read_timeout` is
//!   ended with [`BodyTimeout`]; the connection is then answered `408` (when no answer
//!   has started) and closed;
//! - [`ConnState`]: what a connection has in flight, so that one idle for
//!   `idle_timeout` is closed;
//! - [`raise_fd_limit`]: `max_connections` fitted under the file-descriptor limit.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A client's request body as every handler receives it.
pub type ClientBody = TimedBody<hyper::body::Incoming>;

/// A request body stalled for longer than `body_read_timeout_seconds`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request body timeout")]
pub struct BodyTimeout;

/// Whether an error, or one of its sources, is a [`BodyTimeout`].
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    crate::error_chain::caused_by::<BodyTimeout>(error)
}

/// One client connection's activity.
#[derive(Debug)]
pub struct ConnState {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Whether hyper has begun any request on the connection (one handed over by the
    /// plain lane comes with a whole head, which begins one at once).
    begun: AtomicBool,
    /// Milliseconds after `opened` when the last request finished.
    last_done_ms: AtomicU64,
    /// Set when one of its request bodies timed out: the connection is closed after
    /// the answer.
    body_timed_out: AtomicBool,
    /// The connection's place under `max_connections`, given back when the last holder
    /// of this state lets go: the connection, its requests, and the relay of an
    /// upgraded (WebSocket) connection, which outlives hyper's connection.
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Default for ConnState {
    fn default() -> Self {
        ConnState::new(None)
    }
}

impl ConnState {
    pub fn new(slot: Option<tokio::sync::OwnedSemaphorePermit>) -> ConnState {
        ConnState {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            begun: AtomicBool::new(false),
            last_done_ms: AtomicU64::new(0),
            body_timed_out: AtomicBool::new(false),
            _slot: slot,
        }
    }

    /// Marks a request in flight until the guard (kept by its response body) drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.begun.store(true, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Whether a whole request head has ever arrived on the connection.
    pub fn has_begun(&self) -> bool {
        self.begun.load(Ordering::Relaxed)
    }

    /// How long nothing has been in flight; `None` while something is.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let done = Duration::from_millis(self.last_done_ms.load(Ordering::Relaxed));
        Some(self.opened.elapsed().saturating_sub(done))
    }

    /// Counts now as the end of the last request (a connection handed to hyper after
    /// requests served elsewhere: its idle time starts now).
    pub fn touch(&self) {
        let now = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_done_ms.store(now, Ordering::Relaxed);
    }

    pub fn body_timed_out(&self) -> bool {
        self.body_timed_out.load(Ordering::Relaxed)
    }
}

/// A request in flight on a connection (see [`ConnState::begin`]).
#[derive(Debug)]
pub struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let state = &self.0;
        let now = u64::try_from(state.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        state.last_done_ms.store(now, Ordering::Relaxed);
        state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A request body with a progress deadline: each frame must arrive within
    /// `timeout` of the previous one (or of the first poll).
    pub struct TimedBody<B> {
        #[pin]
        inner: B,
        timeout: Duration,
        // Made on the first wait only: bodies that are already there never need one.
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        conn: Arc<ConnState>,
    }
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, timeout: Duration, conn: Arc<ConnState>) -> TimedBody<B> {
        TimedBody { inner, timeout, sleep: None, conn }
    }

    /// The connection this body arrives on.
    pub fn conn(&self) -> &Arc<ConnState> {
        &self.conn
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(sleep) = this.sleep.as_mut() {
                    sleep.as_mut().reset(tokio::time::Instant::now() + *this.timeout);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = *this.timeout;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if sleep.as_mut().poll(cx).is_ready() {
                    this.conn.body_timed_out.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight until it is sent
    /// (or dropped).
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        guard: Option<InFlight>,
    }
}

impl<B> TrackedBody<B> {
    pub fn new(inner: B, guard: InFlight) -> TrackedBody<B> {
        TrackedBody { inner, guard: Some(guard) }
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.guard.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// File descriptors kept for everything that is not a client connection (the store's
/// pool, listeners, log files, JWKS and webhook fetches).
const RESERVED_FDS: u64 = 512;

/// Raises the soft file-descriptor limit to the hard one and returns how many client
/// connections fit under it: each may hold an upstream connection too, and the workers
/// park at most as many idle upstream connections as there are client connections, so
/// `max_connections` is lowered (with a warning) when three descriptors per connection
/// and a reserve do not fit. Past that number new connections are closed at once, so
/// the process never runs out of descriptors.
pub fn fit_max_connections(wanted: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current.is_none_or(|soft| soft < hard)
    {
        limit.current = Some(hard);
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %e, "could not raise the file-descriptor limit");
        }
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let fits = usize::try_from(soft.saturating_sub(RESERVED_FDS) / 3).unwrap_or(usize::MAX).max(1);
    if wanted > fits {
        tracing::warn!(
            max_connections = wanted,
            fd_limit = soft,
            using = fits,
            "max_connections does not fit under the file-descriptor limit (raise it with ulimit -n or LimitNOFILE=); using less"
        );
        return fits;
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body fed by hand, one chunk at a time.
    struct Fed(tokio::sync::mpsc::Receiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_times_out_and_marks_its_connection() {
        let conn = Arc::new(ConnState::default());
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut timed = TimedBody::new(Fed(rx), Duration::from_secs(5), Arc::clone(&conn));
        // Chunks 3 s apart: each is within the deadline of the one before, and the
        // second arrives 6 s after the first poll, so the deadline must have moved.
        let sender = tokio::spawn(async move {
            for chunk in ["a", "b"] {
                tokio::time::sleep(Duration::from_secs(3)).await;
                tx.send(Bytes::from_static(chunk.as_bytes())).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(tx);
        });
        let started = tokio::time::Instant::now();
        assert_eq!(timed.frame().await.unwrap().unwrap().into_data().unwrap(), "a");
        assert_eq!(timed.frame().await.unwrap().unwrap().into_data().unwrap(), "b");
        assert!(!conn.body_timed_out());
        let err = timed.frame().await.unwrap().unwrap_err();
        assert!(is_body_timeout(err.as_ref()));
        assert!(conn.body_timed_out());
        // The paused test clock, not the wall clock: 6 s of chunks, then the 5 s deadline.
        assert_eq!(started.elapsed().as_secs(), 11, "ended 5 s after the last chunk, not at the sender's end");
        sender.abort();
    }

    #[test]
    fn requests_in_flight_are_not_idle() {
        let conn = Arc::new(ConnState::default());
        let guard = conn.begin();
        assert_eq!(conn.idle_for(), None);
        drop(guard);
        assert!(conn.idle_for().is_some());
    }
}
