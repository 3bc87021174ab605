//! Closing a client connection without losing its last answer.
//!
//! A socket closed with bytes it never read is reset by the kernel (RFC 1122
//! §4.2.2.13), and a client still sending a body then loses the answer already sent
//! to it — a `413` most often, or any refusal of a request whose body was not read.
//! Most HTTP clients write the whole body before they read. So a connection that ends
//! with its client still sending *lingers*: the server's side is shut down (the client
//! reads the answer, then the end of the stream) and what the client still sends is
//! read and dropped until it stops, for [`LINGER_GAP`] without a byte or
//! [`LINGER_MAX`] in all, whichever comes first.
//!
//! The lane lingers in its connection's task. hyper's connections get [`ClientIo`],
//! which lingers from its `Drop` in a task of its own, holding the connection's place
//! under `max_connections` (`hold`) until it is done.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A lingering connection closes once the client has sent nothing for this long.
pub const LINGER_GAP: Duration = Duration::from_secs(2);
/// A lingering connection closes after this long whatever the client does.
pub const LINGER_MAX: Duration = Duration::from_secs(10);

/// Whether the client has sent bytes nobody read. A real system call (`MSG_PEEK`),
/// not tokio's idea of readiness, which may not have seen them yet.
pub fn has_unread(stream: &TcpStream) -> bool {
    let mut probe = [MaybeUninit::<u8>::uninit(); 1];
    matches!(SockRef::from(stream).peek(&mut probe), Ok(n) if n > 0)
}

/// Shuts the server's side down and reads what the client still sends, dropping it,
/// until the client stops or ends the stream (see the module's text). The caller
/// closes the socket afterwards.
pub async fn linger(stream: &TcpStream) {
    if SockRef::from(stream).shutdown(std::net::Shutdown::Write).is_err() {
        return;
    }
    let until = Instant::now() + LINGER_MAX;
    let mut scratch = vec![0u8; 16 * 1024];
    loop {
        let gap = (Instant::now() + LINGER_GAP).min(until);
        match tokio::time::timeout_at(gap, read_into(stream, &mut scratch)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
}

async fn read_into(stream: &TcpStream, scratch: &mut [u8]) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read(scratch) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            read => return read,
        }
    }
}

/// A client connection as hyper reads it: the bytes the lane read already come first
/// (`prefix`, empty when the lane saw nothing), and the connection lingers when it is
/// dropped with its client still sending.
pub struct ClientIo<H: Send + Unpin + 'static> {
    prefix: Bytes,
    /// `None` only once dropped.
    stream: Option<TcpStream>,
    /// Kept until the lingering ends: the connection's place under `max_connections`.
    hold: Option<H>,
}

impl<H: Send + Unpin + 'static> ClientIo<H> {
    pub fn new(prefix: Bytes, stream: TcpStream, hold: H) -> ClientIo<H> {
        ClientIo { prefix, stream: Some(stream), hold: Some(hold) }
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.stream.as_mut().ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
}

impl<H: Send + Unpin + 'static> Drop for ClientIo<H> {
    fn drop(&mut self) {
        let (Some(stream), hold) = (self.stream.take(), self.hold.take()) else { return };
        if !has_unread(&stream) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                linger(&stream).await;
                drop(hold);
            });
        }
    }
}

impl<H: Send + Unpin + 'static> AsyncRead for ClientIo<H> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(out.remaining());
            out.put_slice(self.prefix.get(..n).unwrap_or_default());
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(self.stream()?).poll_read(cx, out)
    }
}

impl<H: Send + Unpin + 'static> AsyncWrite for ClientIo<H> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()?).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(TcpStream::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_shutdown(cx)
    }
}
