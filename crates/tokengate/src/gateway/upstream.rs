//! Upstream connections, owned by the gateway: one pool of HTTP/1.1 keep-alive
//! connections per worker, built on hyper's low-level `client::conn::http1`.
//!
//! A connection is driven by whoever uses it, in the request's own task: while its
//! response head is awaited by [`UpstreamPool::send`], then by polling the response
//! body ([`UpstreamBody`]), which gives the connection back to the pool once the body
//! has ended and the connection is ready for the next request. No task is spawned per
//! connection and no request is handed between tasks (hyper-util's pooled client hands
//! every request to the connection's task and every response back).
//!
//! An idle connection is not polled; it is checked when taken out of the pool (a
//! connection the upstream closed meanwhile reads as finished and is dropped), and it
//! is dropped after `idle_timeout`. A request refused by a reused connection before
//! any of it was written is sent again on another one. Upgrades (`101`) get a
//! connection of their own, driven by a task until the relay takes its socket.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response, Uri};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::ServiceExt;

use super::idle::{IdleBudget, IdleSet};
use super::proxy::ProxyBody;
use crate::egress::{EgressConnector, EgressPolicy};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Io = MaybeHttpsStream<TokioIo<TcpStream>>;
/// Boxed: a connection's state is large, and it moves from the pool to the exchange to
/// the response body and back with every request.
type Conn = Box<http1::Connection<Io, ProxyBody>>;
type Sender = http1::SendRequest<ProxyBody>;
type TrySend = hyper::client::conn::TrySendError<Request<ProxyBody>>;

/// Which connections may serve a request: same scheme, same host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub https: bool,
    pub authority: Authority,
}

/// Why an upstream request failed; its sources say more (egress refusal, the body
/// limit, a stalled client body).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to the upstream")]
    Connect(#[source] BoxError),
    #[error("upstream request")]
    Http(#[source] hyper::Error),
    /// On the plain lane's sockets.
    #[error("upstream exchange")]
    Io(#[source] std::io::Error),
}

/// One worker's upstream connections.
pub struct UpstreamPool {
    connector: HttpsConnector<EgressConnector>,
    shared: Arc<Shared>,
}

/// The idle connections: a sender and its connection.
type Shared = IdleSet<PoolKey, (Sender, Conn)>;

impl UpstreamPool {
    pub fn new(
        egress: Arc<EgressPolicy>,
        tls: tokio_rustls::rustls::ClientConfig,
        idle_timeout: Duration,
        budget: Arc<IdleBudget>,
    ) -> UpstreamPool {
        UpstreamPool {
            connector: crate::egress::https_connector_with(egress, None, tls),
            shared: Arc::new(IdleSet::new(idle_timeout, budget)),
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) and returns the response head; the
    /// connection keeps being driven by the returned body.
    pub async fn send(
        &self,
        key: &PoolKey,
        mut req: Request<ProxyBody>,
        upgrade: bool,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        if upgrade {
            return Box::pin(self.send_upgrade(key, req)).await;
        }
        loop {
            let (reused, (sender, conn)) = match checkout(&self.shared, key) {
                Some(pair) => (true, pair),
                // Boxed: the connect future is large, and most requests never run it.
                None => (false, Box::pin(self.connect(key)).await?),
            };
            match exchange(sender, conn, req).await {
                Ok((response, lease)) => {
                    let lease = lease.map(|(sender, conn)| Lease {
                        sender,
                        conn,
                        key: key.clone(),
                        pool: Arc::clone(&self.shared),
                    });
                    return Ok(response.map(|body| UpstreamBody { body, lease }));
                }
                // A reused connection that turned out closed before anything was
                // written: the request is intact and goes out on another connection.
                Err(mut e) if reused && e.message().is_some() => match e.take_message() {
                    Some(back) => req = back,
                    None => return Err(UpstreamError::Http(e.into_error())),
                },
                Err(e) => return Err(UpstreamError::Http(e.into_error())),
            }
        }
    }

    /// An upgrade gets a fresh connection driven by a task of its own: hyper hands its
    /// socket over once the upstream has answered `101`.
    async fn send_upgrade(
        &self,
        key: &PoolKey,
        req: Request<ProxyBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let (mut sender, conn) = self.connect(key).await?;
        tokio::spawn(async move {
            if let Err(e) = (*conn).with_upgrades().await {
                tracing::debug!(error = %e, "upstream upgrade connection ended with an error");
            }
        });
        let response = sender.send_request(req).await.map_err(UpstreamError::Http)?;
        Ok(response.map(|body| UpstreamBody { body, lease: None }))
    }

    async fn connect(&self, key: &PoolKey) -> Result<(Sender, Conn), UpstreamError> {
        let uri = Uri::builder()
            .scheme(if key.https { "https" } else { "http" })
            .authority(key.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| UpstreamError::Connect(Box::new(e)))?;
        let io = self.connector.clone().oneshot(uri).await.map_err(UpstreamError::Connect)?;
        metrics::counter!("tokengate_upstream_connections_opened_total").increment(1);
        let (sender, conn) = http1::Builder::new().handshake(io).await.map_err(UpstreamError::Http)?;
        Ok((sender, Box::new(conn)))
    }
}

/// Sends one request on a connection, driving the connection until the response head
/// has arrived. The connection comes back with the response unless it has finished.
async fn exchange(
    mut sender: Sender,
    mut conn: Conn,
    req: Request<ProxyBody>,
) -> Result<(Response<Incoming>, Option<(Sender, Conn)>), TrySend> {
    let mut sent = std::pin::pin!(sender.try_send_request(req));
    let mut finished = false;
    let response = poll_fn(|cx| {
        if let Poll::Ready(r) = sent.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if !finished && Pin::new(&mut conn).poll(cx).is_ready() {
            finished = true;
        }
        sent.as_mut().poll(cx)
    })
    .await?;
    Ok((response, (!finished).then_some((sender, conn))))
}

/// The most recently parked connection to `key` that is still open and ready.
fn checkout(pool: &Shared, key: &PoolKey) -> Option<(Sender, Conn)> {
    pool.take(key, |(sender, conn)| still_open(sender, conn))
}

/// Parks a connection whose exchange has ended, when it can take another request.
fn park(pool: &Shared, key: PoolKey, mut sender: Sender, mut conn: Conn) {
    if still_open(&mut sender, &mut conn) {
        pool.put(key, (sender, conn));
    }
}

/// Polls a connection once without waiting: it is open and ready for a request unless
/// it has finished (the upstream closed it, or sent something unasked) or is still
/// busy with the previous exchange.
fn still_open(sender: &mut Sender, conn: &mut Conn) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(conn).poll(&mut cx).is_pending() && sender.is_ready()
}

/// A connection lent to one exchange, given back when its response body has ended.
struct Lease {
    sender: Sender,
    conn: Conn,
    key: PoolKey,
    pool: Arc<Shared>,
}

/// An upstream response body; polling it also drives the upstream connection.
pub struct UpstreamBody {
    body: Incoming,
    lease: Option<Lease>,
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        // The body waits for the connection: let it read (and finish writing the
        // request body, when the upstream answered early).
        if let Some(lease) = &mut this.lease
            && Pin::new(&mut lease.conn).poll(cx).is_ready()
        {
            this.lease = None;
        }
        Pin::new(&mut this.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Only a connection whose response was read to the end can serve another
        // request; any other is closed by dropping it.
        if let Some(lease) = self.lease.take()
            && self.body.is_end_stream()
        {
            park(&lease.pool, lease.key, lease.sender, lease.conn);
        }
    }
}
