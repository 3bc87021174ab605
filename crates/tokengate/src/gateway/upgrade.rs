//! `Upgrade` (WebSocket and the like) through the gateway path (SPEC §14): once the
//! checks have passed and the upstream has answered `101`, both connections are handed
//! over by hyper and their bytes relayed both ways until either side closes or nothing
//! moves for the idle deadline.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderMap, Request, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Whether a request asks to switch protocols (HTTP/1.1 only: HTTP/2 has no `Upgrade`).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == http::Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_has(req.headers(), "upgrade")
}

/// Whether the `Connection` header lists `option`.
fn connection_has(headers: &HeaderMap, option: &str) -> bool {
    super::proxy::connection_options(headers).any(|o| o.eq_ignore_ascii_case(option))
}

/// Relays both connections once both upgrades complete; ends when either side closes,
/// or after `idle` without a byte either way. `conn` (the client connection's state) is
/// held until then: it keeps the connection's place under `max_connections`.
pub async fn relay(client: OnUpgrade, upstream: OnUpgrade, idle: Duration, conn: Arc<crate::limits::ConnState>) {
    let _conn = conn;
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let activity = Arc::new(Activity::new());
    let mut client = Watched { io: TokioIo::new(client), activity: Arc::clone(&activity) };
    let mut upstream = Watched { io: TokioIo::new(upstream), activity: Arc::clone(&activity) };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    loop {
        let deadline = tokio::time::Instant::now() + idle.saturating_sub(activity.since_last());
        tokio::select! {
            result = &mut copy => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "upgraded connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(deadline) => {
                if activity.since_last() >= idle {
                    tracing::debug!("upgraded connection idle; closing");
                    return;
                }
            }
        }
    }
}

/// When bytes last moved, in milliseconds since the relay started.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity { start: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn since_last(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// An upgraded connection that notes every byte read or written.
struct Watched<T> {
    io: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrades_are_http1_requests_with_both_headers() {
        let req = |version, connection: &str, upgrade: Option<&str>| {
            let mut b = Request::builder().version(version).header(header::CONNECTION, connection);
            if let Some(u) = upgrade {
                b = b.header(header::UPGRADE, u);
            }
            b.body(()).unwrap()
        };
        assert!(is_upgrade(&req(http::Version::HTTP_11, "keep-alive, Upgrade", Some("websocket"))));
        assert!(!is_upgrade(&req(http::Version::HTTP_11, "keep-alive", Some("websocket"))));
        assert!(!is_upgrade(&req(http::Version::HTTP_11, "upgrade", None)));
        assert!(!is_upgrade(&req(http::Version::HTTP_2, "upgrade", Some("websocket"))));
    }
}
