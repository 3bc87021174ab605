//! The plain lane: gateway requests on cleartext HTTP/1.1 connections, read with
//! httparse and forwarded on the worker's own raw keep-alive sockets — no `Request`,
//! no `HeaderMap`, no hyper connection state per request, one timer per connection,
//! and the upstream head written from the client's header lines.
//!
//! It carries only requests whose framing leaves nothing to interpret (see
//! [`head::ClientHead`]) to an `http://` upstream. Everything else — the admin API,
//! the dashboard, `/oauth`, `/decide`, chunked or `100-continue` bodies, upgrades,
//! HTTP/1.0, h2c, anything malformed, https upstreams — goes to hyper with the bytes
//! already read, and the connection stays with hyper from then on. The checks are the
//! gateway's own steps (`route`, `check`, `record`); only the framing is the lane's.
//!
//! Semantics kept from the hyper path: the same rewritten upstream head, the same
//! refusals (status, headers, body), `413` for a declared length past the limit, `408`
//! and close for a stalled body, `502`/`504`, the idle and header timeouts, graceful
//! drain (`Connection: close` on the last answer). Differences, chosen: a response in a
//! transfer coding other than plain `chunked` is answered `502`; a response without a
//! length ends the client connection with it (hyper re-chunks it); a request that
//! found a reused upstream connection closed before any answer is sent again once on a
//! new one when its method is idempotent and all of it is still at hand; a client that
//! takes nothing of an answer for `idle_timeout` loses its connection; an upstream that
//! stops taking a body and has answered already (a `413`, a `401`) has that answer
//! passed on, and the client connection closes after it.

mod head;
mod io;
mod wire;

use std::future::Future;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::uri::{Authority, Uri};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::ServiceExt;

use self::head::{ClientHead, MAX_HEADERS};
use self::io::{Deadline, READ_CHUNK, read_some, write_all};
use self::wire::{Chunked, Framing, MAX_RESPONSE_HEADERS, ResponseHead};
use super::Rejection;
use super::idle::{IdleBudget, IdleSet};
use super::upstream::UpstreamError;
use super::{Admitted, ClientAddr, Gateway, RequestCtx, Routed, UPSTREAM_IDLE_TIMEOUT, proxy, upstream_failure};
use crate::drain::Drain;
use crate::egress::{EgressConnector, EgressPolicy};
use crate::linger;

/// A response head larger than this is refused (`502`): hyper's own limit.
const MAX_RESPONSE_HEAD: usize = 8192 + 4096 * 100;
/// Informational (1xx) answers skipped before a final one at most.
const MAX_INFORMATIONAL: usize = 16;

/// What the lane needs to know about the listener.
pub struct Lane {
    pub gateway: Arc<Gateway>,
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
}

/// How a connection left the lane.
pub enum Exit {
    Closed,
    /// hyper goes on with it, starting with these bytes.
    Handoff(Bytes),
}

/// The worker's raw upstream sockets (http:// upstreams only), by authority.
pub struct Upstreams {
    connector: EgressConnector,
    idle: IdleSet<Authority, UpConn>,
}

struct UpConn {
    stream: TcpStream,
    /// What has been read and not yet passed on.
    buf: BytesMut,
}

impl Upstreams {
    pub fn new(egress: Arc<EgressPolicy>, budget: Arc<IdleBudget>) -> Upstreams {
        Upstreams { connector: EgressConnector::new(egress, None), idle: IdleSet::new(UPSTREAM_IDLE_TIMEOUT, budget) }
    }

    fn take(&self, key: &Authority) -> Option<UpConn> {
        self.idle.take(key, |c| io::looks_open(&c.stream))
    }

    async fn connect(&self, key: &Authority) -> Result<UpConn, UpstreamError> {
        let uri = Uri::builder()
            .scheme("http")
            .authority(key.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| UpstreamError::Connect(Box::new(e)))?;
        let io = self.connector.clone().oneshot(uri).await.map_err(UpstreamError::Connect)?;
        metrics::counter!("tokengate_upstream_connections_opened_total").increment(1);
        Ok(UpConn { stream: io.into_inner(), buf: BytesMut::with_capacity(READ_CHUNK) })
    }
}

/// One client connection, as the lane holds it.
struct Client<'s> {
    stream: &'s TcpStream,
    /// Read and not yet used: the next head, body bytes, pipelined requests.
    buf: BytesMut,
    deadline: Deadline,
    /// When the last exchange ended (or the connection opened).
    last_done: Instant,
    served: bool,
    /// Bytes of the current request's body not yet taken from `buf` or the socket.
    body_left: u64,
    /// The client asked to close: this exchange is the connection's last.
    closing: bool,
    drain: &'s Arc<Drain>,
    /// How long a write to the client may make no progress.
    send_timeout: Duration,
    /// The peer's address as `X-Forwarded-For` names it, formatted once.
    peer: String,
    /// A write to the client made no progress for `send_timeout`: it is not reading.
    stalled: bool,
}

impl Client<'_> {
    /// Whether the answer being written is the connection's last (the client asked, or
    /// the server has started draining since).
    fn last(&self) -> bool {
        self.closing || self.drain.started()
    }

    /// Writes to the client; a client that takes nothing for `send_timeout` (it stopped
    /// reading) loses its connection.
    async fn send(&mut self, bytes: &[u8]) -> Result<(), ()> {
        self.deadline.set(io::after(Instant::now(), self.send_timeout));
        tokio::select! {
            biased;
            sent = write_all(self.stream, bytes) => sent.map_err(drop),
            () = self.deadline.reached() => {
                self.stalled = true;
                Err(())
            }
        }
    }

    /// Ends the connection after its last answer. A client still sending (the body of
    /// a refused request, pipelined requests) is let finish first, so that it reads
    /// the answer instead of a reset (see [`crate::linger`]); one that stopped reading
    /// is not waited for.
    async fn close(&self) {
        if !self.stalled && (self.body_left > 0 || linger::has_unread(self.stream)) {
            linger::linger(self.stream).await;
        }
    }
}

enum Next {
    Head(usize),
    Closed,
    Handoff,
}

/// How an exchange leaves the connection.
enum Step {
    KeepAlive,
    Close,
    Handoff,
}

/// Why an exchange did not end with a whole response.
enum Failure {
    /// Nothing was answered yet: the refusal is.
    Refused(Rejection),
    /// The client went away before its request was whole.
    ClientGone,
    /// The response broke off after its head was sent.
    Broken,
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Failure {
        Failure::Refused(r)
    }
}

/// How a request body's upload ended.
#[derive(PartialEq, Eq)]
enum Upload {
    Whole,
    /// The upstream stopped taking it (it may have answered already).
    Stopped,
}

/// Why no response head came.
enum HeadError {
    /// The connection ended (or was reset) before the first byte of an answer.
    ClosedEarly,
    Timeout,
    Bad(std::io::Error),
}

impl Lane {
    /// Serves a connection until it closes or needs hyper. An idle connection closes
    /// as soon as `drain` says the server is stopping; a busy one after its answer.
    pub async fn serve(&self, stream: &TcpStream, peer: SocketAddr, drain: &Arc<Drain>) -> Exit {
        // Waited on whenever the connection is idle: one registration per connection.
        let mut drained = std::pin::pin!(drain.wait());
        let mut client = Client {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            deadline: Deadline::new(),
            last_done: Instant::now(),
            served: false,
            body_left: 0,
            closing: false,
            drain,
            send_timeout: self.idle_timeout,
            peer: peer.ip().to_canonical().to_string(),
            stalled: false,
        };
        loop {
            let n = match self.next_head(&mut client, drained.as_mut()).await {
                Next::Head(n) => n,
                Next::Closed => return Exit::Closed,
                Next::Handoff => return Exit::Handoff(client.buf.freeze()),
            };
            let head_bytes = client.buf.split_to(n);
            let step = {
                // Uninitialized: httparse writes the lines it fills in (no 64-line memset).
                let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut []);
                // httparse must see the same head (else hyper reads it).
                let parsed = matches!(
                    req.parse_with_uninit_headers(&head_bytes, &mut headers),
                    Ok(httparse::Status::Complete(m)) if m == n
                );
                match parsed.then(|| ClientHead::read(&req, self.max_header_bytes, &self.gateway.via)).flatten() {
                    None => Step::Handoff,
                    Some(head) => {
                        client.body_left = head.content_length;
                        client.closing = head.close;
                        self.exchange(&mut client, &head, peer).await
                    }
                }
            };
            match step {
                Step::KeepAlive => {
                    client.last_done = Instant::now();
                    client.served = true;
                }
                Step::Close => {
                    client.close().await;
                    return Exit::Closed;
                }
                Step::Handoff => {
                    let mut all = head_bytes;
                    all.unsplit(client.buf);
                    return Exit::Handoff(all.freeze());
                }
            }
        }
    }

    /// Waits for a whole request head: within the idle timeout while nothing has come
    /// (the header timeout too, before the first request), within the header timeout
    /// once part of it has.
    async fn next_head(&self, client: &mut Client<'_>, mut drained: Pin<&mut impl Future<Output = ()>>) -> Next {
        let (mut timed, mut searched) = (false, 0);
        loop {
            // A head arriving a byte at a time is searched once, not once per byte.
            if let Some(n) = head::end_of_head(&client.buf, searched) {
                return Next::Head(n);
            }
            searched = client.buf.len();
            // hyper answers heads past the limit.
            if client.buf.len() > self.max_header_bytes.max(8 * 1024).saturating_mul(2) {
                return Next::Handoff;
            }
            let idle = client.buf.is_empty();
            if idle {
                let wait = if client.served { self.idle_timeout } else { self.idle_timeout.min(self.header_timeout) };
                client.deadline.set(io::after(client.last_done, wait));
            } else if !timed {
                timed = true;
                client.deadline.set(io::after(Instant::now(), self.header_timeout));
            }
            tokio::select! {
                biased;
                read = read_some(client.stream, &mut client.buf) => match read {
                    Ok(0) | Err(_) => return Next::Closed,
                    Ok(_) => {}
                },
                () = client.deadline.reached() => return Next::Closed,
                () = drained.as_mut(), if idle => return Next::Closed,
            }
        }
    }

    /// One request: the gateway's steps, then forwarded or refused.
    async fn exchange(&self, client: &mut Client<'_>, head: &ClientHead<'_>, peer: SocketAddr) -> Step {
        let gw = &*self.gateway;
        let ctx = RequestCtx::at(ClientAddr::from_lines(peer, head.forwarded_for(), &gw.trusted_proxies));
        let routed = match gw.route(head.path) {
            Ok(routed) => routed,
            Err(rejection) => {
                gw.count(&ctx, Err(&rejection));
                return self.refuse(client, &rejection).await;
            }
        };
        if routed.instance.upstream.scheme != http::uri::Scheme::HTTP {
            // Nothing has been recorded or read past the head: hyper takes it whole.
            return Step::Handoff;
        }
        let (outcome, bearer) = match gw.check(&ctx, &routed, &head.checks()) {
            Ok(admitted) => (self.forward(client, head, &ctx, &routed, &admitted).await, admitted.bearer),
            Err(rejection) => (Err(Failure::Refused(rejection)), None),
        };
        // A client gone mid-request is counted as the hyper path counts it.
        let gone = Rejection::UpstreamUnavailable;
        let result = match &outcome {
            Ok(_) | Err(Failure::Broken) => Ok(()),
            Err(Failure::Refused(r)) => Err(r),
            Err(Failure::ClientGone) => Err(&gone),
        };
        gw.record(&ctx, &routed.instance, result, bearer.as_ref());
        gw.count(&ctx, result);
        match outcome {
            Ok(step) => step,
            Err(Failure::Refused(r)) => self.refuse(client, &r).await,
            Err(Failure::ClientGone | Failure::Broken) => Step::Close,
        }
    }

    /// Answers a refusal. The refused request's body is skipped when all of it is
    /// here; otherwise the connection closes after the answer.
    async fn refuse(&self, client: &mut Client<'_>, rejection: &Rejection) -> Step {
        let whole = usize::try_from(client.body_left).is_ok_and(|n| n <= client.buf.len());
        let close = client.last() || !whole || matches!(rejection, Rejection::BodyTimeout);
        let mut out = Vec::with_capacity(256);
        wire::refusal(&mut out, rejection, close);
        let written = client.send(&out).await.is_ok();
        if close || !written {
            return Step::Close;
        }
        client.buf.advance(usize::try_from(client.body_left).unwrap_or_default());
        client.body_left = 0;
        Step::KeepAlive
    }

    /// Step `forward` on the lane: the upstream head and body out, the response back.
    async fn forward(
        &self,
        client: &mut Client<'_>,
        head: &ClientHead<'_>,
        ctx: &RequestCtx,
        routed: &Routed,
        admitted: &Admitted,
    ) -> Result<Step, Failure> {
        let gw = &*self.gateway;
        let instance = &routed.instance;
        if head.content_length > gw.max_body_bytes {
            return Err(Rejection::BodyTooLarge.into());
        }
        let fwd = proxy::Forwarded {
            addr: &ctx.addr,
            tail: &admitted.tail,
            bearer: admitted.bearer.as_ref(),
            via: &gw.via_header,
            upgrade: false,
        };
        let mut out = Vec::with_capacity(1024);
        wire::request_head(&mut out, head, instance, &fwd, &client.peer);
        // The body bytes already here go out with the head.
        let here = usize::try_from(client.body_left).unwrap_or(usize::MAX).min(client.buf.len());
        out.extend_from_slice(client.buf.get(..here).unwrap_or_default());
        client.buf.advance(here);
        client.body_left -= here as u64;
        let at_hand = client.body_left == 0;
        let deadline = io::after(Instant::from_std(ctx.started), gw.upstream_timeout);
        let key = &instance.upstream.authority;
        let mut retried = false;
        let (mut up, head_len, cut_short) = loop {
            // A request sent again goes out on a new connection.
            let pooled = if retried { None } else { gw.lane.take(key) };
            let (mut up, reused) = match pooled {
                Some(up) => (up, true),
                None => match tokio::time::timeout_at(deadline, Box::pin(gw.lane.connect(key))).await {
                    Err(_) => return Err(Rejection::UpstreamTimeout.into()),
                    Ok(Err(e)) => return Err(upstream_failure(instance, &e).into()),
                    Ok(Ok(up)) => (up, false),
                },
            };
            // Only an idempotent request, all of it still at hand, is sent twice.
            let may_retry = reused && !retried && at_hand && is_idempotent(head.method);
            client.deadline.set(deadline);
            let sent = tokio::select! {
                biased;
                sent = write_all(&up.stream, &out) => sent,
                () = client.deadline.reached() => return Err(Rejection::UpstreamTimeout.into()),
            };
            if let Err(e) = sent {
                if may_retry {
                    retried = true;
                    continue;
                }
                return Err(upstream_failure(instance, &UpstreamError::Io(e)).into());
            }
            // An upstream that stopped taking the body may have answered already (a
            // 413, a 401): that answer is passed on, else it is a 502.
            let cut_short = client.body_left > 0 && self.stream_body(client, &up, deadline).await? == Upload::Stopped;
            match read_response_head(&mut up, &mut client.deadline).await {
                Ok(n) => break (up, n, cut_short),
                Err(_) if cut_short => return Err(Rejection::UpstreamUnavailable.into()),
                Err(HeadError::ClosedEarly) if may_retry => retried = true,
                Err(HeadError::Timeout) => return Err(Rejection::UpstreamTimeout.into()),
                Err(HeadError::ClosedEarly) => {
                    let e = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before answering");
                    return Err(upstream_failure(instance, &UpstreamError::Io(e)).into());
                }
                Err(HeadError::Bad(e)) => return Err(upstream_failure(instance, &UpstreamError::Io(e)).into()),
            }
        };
        let response_head = up.buf.split_to(head_len);
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut res,
            &response_head,
            &mut headers,
        );
        let read = match parsed {
            Ok(httparse::Status::Complete(m)) if m == head_len => ResponseHead::read(&res, head.is_head()).ok(),
            _ => None,
        };
        let Some(response) = read else {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed response head");
            return Err(upstream_failure(instance, &UpstreamError::Io(e)).into());
        };
        // After an early answer the rest of the client's body is still unread.
        let close = client.last() || response.framing == Framing::UntilClose || cut_short;
        out.clear();
        response.write(&mut out, close);
        let reusable = response.reusable && !cut_short;
        let framing = response.framing;
        relay_body(client, &mut up, framing, out).await.map_err(|()| Failure::Broken)?;
        if reusable && up.buf.is_empty() {
            gw.lane.idle.put(key.clone(), up);
        }
        Ok(if close { Step::Close } else { Step::KeepAlive })
    }

    /// The rest of a request body, from the client socket to the upstream: each read
    /// within the body timeout, each write within the upstream deadline.
    async fn stream_body(&self, client: &mut Client<'_>, up: &UpConn, deadline: Instant) -> Result<Upload, Failure> {
        while client.body_left > 0 {
            if client.buf.is_empty() {
                client.deadline.set(io::after(Instant::now(), self.body_timeout));
                tokio::select! {
                    biased;
                    read = read_some(client.stream, &mut client.buf) => match read {
                        Ok(0) | Err(_) => return Err(Failure::ClientGone),
                        Ok(_) => {}
                    },
                    () = client.deadline.reached() => return Err(Rejection::BodyTimeout.into()),
                }
            }
            let take = usize::try_from(client.body_left).unwrap_or(usize::MAX).min(client.buf.len());
            client.deadline.set(deadline.max(io::after(Instant::now(), self.body_timeout)));
            tokio::select! {
                biased;
                sent = write_all(&up.stream, client.buf.get(..take).unwrap_or_default()) => {
                    if sent.is_err() {
                        return Ok(Upload::Stopped);
                    }
                }
                () = client.deadline.reached() => return Err(Rejection::UpstreamTimeout.into()),
            }
            client.buf.advance(take);
            client.body_left -= take as u64;
        }
        client.deadline.set(deadline);
        Ok(Upload::Whole)
    }
}

/// Methods a request may be sent twice with (RFC 9110 §9.2.2).
fn is_idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE")
}

/// Reads until a whole final response head is buffered; returns its length. It is
/// parsed once, by the caller. Informational `1xx` answers are skipped unparsed (their
/// status line is enough; nothing of them is passed on); `101` was never asked for.
async fn read_response_head(up: &mut UpConn, deadline: &mut Deadline) -> Result<usize, HeadError> {
    let (mut informational, mut searched) = (0, 0);
    loop {
        // Checked here too: an upstream that never stops sending keeps the read ready.
        if deadline.passed() {
            return Err(HeadError::Timeout);
        }
        if let Some(n) = head::end_of_head(&up.buf, searched) {
            match status_of(&up.buf) {
                Some(101) => return Err(bad("unasked protocol switch")),
                Some(100..=199) if informational < MAX_INFORMATIONAL => {
                    up.buf.advance(n);
                    (informational, searched) = (informational + 1, 0);
                    continue;
                }
                Some(100..=199) => return Err(bad("too many informational answers")),
                _ => return Ok(n),
            }
        }
        searched = up.buf.len();
        if up.buf.len() > MAX_RESPONSE_HEAD {
            return Err(bad("response head too large"));
        }
        let nothing_yet = up.buf.is_empty() && informational == 0;
        tokio::select! {
            biased;
            read = read_some(&up.stream, &mut up.buf) => match read {
                Ok(0) if nothing_yet => return Err(HeadError::ClosedEarly),
                Err(e) if nothing_yet && e.kind() == std::io::ErrorKind::ConnectionReset => return Err(HeadError::ClosedEarly),
                Ok(0) => return Err(bad("closed in the response head")),
                Err(e) => return Err(HeadError::Bad(e)),
                Ok(_) => {}
            },
            () = deadline.reached() => return Err(HeadError::Timeout),
        }
    }
}

/// The status code of a response's status line (`HTTP/1.x NNN …`), if it reads as one.
fn status_of(head: &[u8]) -> Option<u16> {
    let rest = head.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5).filter(|_| rest.get(1) == Some(&b' '))?;
    std::str::from_utf8(code).ok()?.parse().ok().filter(|_| code.iter().all(u8::is_ascii_digit))
}

fn bad(what: &str) -> HeadError {
    HeadError::Bad(std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned()))
}

/// Sends the response head (in `out`) and its body to the client, as the body's
/// framing says; the body bytes already read go out with the head.
async fn relay_body(client: &mut Client<'_>, up: &mut UpConn, framing: Framing, mut out: Vec<u8>) -> Result<(), ()> {
    match framing {
        Framing::Empty => client.send(&out).await,
        Framing::Length(mut left) => {
            let here = usize::try_from(left).unwrap_or(usize::MAX).min(up.buf.len());
            out.extend_from_slice(up.buf.get(..here).unwrap_or_default());
            up.buf.advance(here);
            left -= here as u64;
            client.send(&out).await?;
            while left > 0 {
                if read_some(&up.stream, &mut up.buf).await.map_err(drop)? == 0 {
                    return Err(());
                }
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(up.buf.len());
                client.send(up.buf.get(..take).unwrap_or_default()).await?;
                up.buf.advance(take);
                left -= take as u64;
            }
            Ok(())
        }
        Framing::Chunked => {
            let mut chunked = Chunked::default();
            let here = chunked.scan(&up.buf).map_err(drop)?;
            out.extend_from_slice(up.buf.get(..here).unwrap_or_default());
            up.buf.advance(here);
            client.send(&out).await?;
            while !chunked.is_done() {
                if read_some(&up.stream, &mut up.buf).await.map_err(drop)? == 0 {
                    return Err(());
                }
                let n = chunked.scan(&up.buf).map_err(drop)?;
                client.send(up.buf.get(..n).unwrap_or_default()).await?;
                up.buf.advance(n);
            }
            Ok(())
        }
        Framing::UntilClose => {
            out.extend_from_slice(&up.buf);
            up.buf.clear();
            client.send(&out).await?;
            while read_some(&up.stream, &mut up.buf).await.map_err(drop)? > 0 {
                client.send(&up.buf).await?;
                up.buf.clear();
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_without_a_parse() {
        assert_eq!(status_of(b"HTTP/1.1 103 Early Hints\r\n\r\n"), Some(103));
        assert_eq!(status_of(b"HTTP/1.0 200 OK\r\n"), Some(200));
        for not in [&b"HTTP/1.1 2x0 OK"[..], b"HTTP/1.1  200", b"HTTP/2 200", b"HTTP/1.1 20", b"HTTP/1.1 +20 OK"] {
            assert_eq!(status_of(not), None, "{}", String::from_utf8_lossy(not));
        }
    }
}
