//! Socket I/O of the plain lane.
//!
//! A read that returns fewer bytes than there was room for has emptied the socket, so
//! [`read_some`] marks it not readable: the next read waits for the reactor instead of
//! first making a system call that only says "nothing yet" (one per message, per side,
//! otherwise). tokio clears readiness only if no event arrived meanwhile, so no wake-up
//! is lost.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// How much a read asks for at least.
pub const READ_CHUNK: usize = 16 * 1024;

/// Reads what the socket has into `buf`; `0` at the end of the stream.
pub async fn read_some(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    loop {
        stream.readable().await?;
        let room = buf.capacity() - buf.len();
        let mut got = None;
        let tried = stream.try_io(Interest::READABLE, || {
            let n = stream.try_read_buf(buf)?;
            got = Some(n);
            // Emptied (and not at its end): say so, which clears the readiness.
            if n > 0 && n < room { Err(io::ErrorKind::WouldBlock.into()) } else { Ok(()) }
        });
        match (got, tried) {
            (Some(n), _) => return Ok(n),
            (None, Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            (None, Err(e)) => return Err(e),
            (None, Ok(())) => {}
        }
    }
}

/// Writes all of `bytes`.
pub async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether an idle upstream socket still looks open: nothing has happened on it since
/// it was parked (no system call), or a read finds nothing to read. A socket the peer
/// closed, or that has bytes nobody asked for, is not reused.
pub fn looks_open(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
    }
}

/// One timer per connection, for whatever it waits on (the next request, a head, a
/// body, the upstream). Moving the deadline later costs nothing: the timer fires at
/// the old one and is set again then. Only an earlier deadline re-arms it.
pub struct Deadline {
    sleep: Pin<Box<Sleep>>,
    at: Instant,
}

impl Deadline {
    pub fn new() -> Deadline {
        let far = Instant::now() + std::time::Duration::from_secs(86_400 * 365);
        Deadline { sleep: Box::pin(tokio::time::sleep_until(far)), at: far }
    }

    pub fn set(&mut self, at: Instant) {
        self.at = at;
        if self.sleep.deadline() > at {
            self.sleep.as_mut().reset(at);
        }
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    /// Resolves once the deadline last set has passed.
    pub async fn reached(&mut self) {
        loop {
            self.sleep.as_mut().await;
            if Instant::now() >= self.at {
                return;
            }
            self.sleep.as_mut().reset(self.at);
        }
    }
}

/// `start + wait`, or a year on when that does not fit (a setting of many years).
pub fn after(start: Instant, wait: std::time::Duration) -> Instant {
    start.checked_add(wait).unwrap_or_else(|| start + std::time::Duration::from_secs(86_400 * 365))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_of_any_length_does_not_overflow() {
        let now = Instant::now();
        assert!(after(now, std::time::Duration::MAX) > now);
        assert_eq!(after(now, std::time::Duration::from_secs(1)), now + std::time::Duration::from_secs(1));
    }
}
