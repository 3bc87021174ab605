//! What the plain lane writes and reads on the wire: the upstream request head (the
//! same rewriting as [`super::super::proxy::upstream_request`], on raw header lines),
//! the upstream response head and its framing, the client's response head, refusals,
//! and a chunked body checked piece by piece as it is passed on.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use httparse::Header;

use super::super::Rejection;
use super::super::proxy::{self, Forwarded, is_framing_lookalike, is_hop_by_hop, is_spoofable};
use super::head::{ClientHead, decimal};
use crate::state::LiveInstance;

/// Header lines of an upstream response the lane reads at most.
pub const MAX_RESPONSE_HEADERS: usize = 100;
/// Bytes of trailer fields passed on at most after a chunked body.
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// A chunk-size line longer than this is refused.
const MAX_CHUNK_LINE: usize = 1024;

fn line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// The head sent upstream: origin-form target (base path, canonical tail, query),
/// `Host` of the upstream, end-to-end headers only, the client's copies of headers
/// tokengate owns dropped, `X-Forwarded-For`, `X-Forwarded-Proto`, `Via` and the
/// identity headers added; the `Authorization` the gateway checked is not passed on.
///
/// `peer` is `fwd.addr.peer` as text, formatted once per connection.
pub fn request_head(
    out: &mut Vec<u8>,
    head: &ClientHead<'_>,
    instance: &LiveInstance,
    fwd: &Forwarded<'_>,
    peer: &str,
) {
    let up = &instance.upstream;
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    let target = out.len();
    out.extend_from_slice(up.base_path.as_bytes());
    out.extend_from_slice(fwd.tail.as_str(head.path).as_bytes());
    if out.len() == target {
        out.push(b'/');
    }
    if let Some(q) = head.query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    line(out, "host", up.host_header.as_bytes());
    let trusted = fwd.addr.via_trusted_proxy;
    let mut proto_given = false;
    for h in head.headers {
        let name = h.name;
        let skip = is_hop_by_hop(name)
            || name.eq_ignore_ascii_case("host")
            || name.eq_ignore_ascii_case("x-forwarded-for")
            || is_spoofable(name, trusted)
            || (fwd.bearer.is_some() && name.eq_ignore_ascii_case("authorization"));
        if !skip {
            // A trusted proxy's X-Forwarded-Proto stands (it saw the client's scheme).
            proto_given |= name.eq_ignore_ascii_case("x-forwarded-proto");
            line(out, name, h.value);
        }
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if trusted {
        // From a trusted proxy: keep its chain (its lines joined) and add the proxy.
        let start = out.len();
        for (i, chain) in head.forwarded_for().flatten().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(chain.as_bytes());
        }
        if out.len() > start {
            out.extend_from_slice(b", ");
        }
    }
    debug_assert_eq!(peer, fwd.addr.peer.to_string());
    out.extend_from_slice(peer.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !proto_given {
        line(out, "x-forwarded-proto", b"http");
    }
    line(out, "via", fwd.via.as_bytes());
    proxy::each_identity_header(instance, fwd.bearer, |name, value| line(out, name.as_str(), value.as_bytes()));
    out.extend_from_slice(b"\r\n");
}

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a `HEAD` request, or a 204 or 304 answer.
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// An upstream response head, as the lane passes it on.
pub struct ResponseHead<'a> {
    pub code: u16,
    reason: &'a str,
    headers: &'a [Header<'a>],
    pub framing: Framing,
    /// The upstream connection can take another request after this response.
    pub reusable: bool,
}

/// An upstream response that cannot be passed on safely.
#[derive(Debug)]
pub struct BadResponse;

impl<'a> ResponseHead<'a> {
    /// A final response (informational ones are skipped before; a status below 200
    /// here is refused).
    pub fn read(res: &'a httparse::Response<'_, 'a>, request_was_head: bool) -> Result<ResponseHead<'a>, BadResponse> {
        let code = res.code.filter(|c| *c >= 200).ok_or(BadResponse)?;
        let headers: &'a [Header<'a>] = res.headers;
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut close = res.version != Some(1);
        for h in headers {
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = decimal(h.value.trim_ascii()).ok_or(BadResponse)?;
                if length.is_some_and(|m| m != n) {
                    return Err(BadResponse);
                }
                length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // Only plain chunked is carried; a body in another coding is not passed on.
                if chunked || !h.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    return Err(BadResponse);
                }
                chunked = true;
            } else if h.name.eq_ignore_ascii_case("connection") {
                close |= options(h.value).any(|o| o.eq_ignore_ascii_case(b"close"));
            }
        }
        let framing = if request_was_head || code == 204 || code == 304 {
            Framing::Empty
        } else if chunked {
            Framing::Chunked
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        let reusable = !close && framing != Framing::UntilClose;
        Ok(ResponseHead { code, reason: res.reason.unwrap_or(""), headers, framing, reusable })
    }

    /// The head the client gets: the status, end-to-end headers, the framing the lane
    /// uses, `Connection: close` when the client connection ends after it, a `Date`
    /// when the upstream sent none.
    pub fn write(&self, out: &mut Vec<u8>, close: bool) {
        status_line(out, self.code, self.reason);
        let listed = |name: &str| {
            self.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("connection"))
                .any(|h| options(h.value).any(|o| o.eq_ignore_ascii_case(name.as_bytes())))
        };
        let has_connection = self.headers.iter().any(|h| h.name.eq_ignore_ascii_case("connection"));
        let (mut dated, mut lengths) = (false, 0);
        for h in self.headers {
            let name = h.name;
            let length = name.eq_ignore_ascii_case("content-length");
            lengths += usize::from(length);
            // The length the lane frames by stays, whatever `Connection` names, once
            // (equal copies were accepted by `read`).
            let skip = is_hop_by_hop(name)
                || is_framing_lookalike(name)
                || (length && (self.framing == Framing::Chunked || lengths > 1))
                || (!length && has_connection && listed(name));
            if !skip {
                dated |= name.eq_ignore_ascii_case("date");
                line(out, name, h.value);
            }
        }
        if self.framing == Framing::Chunked {
            line(out, "transfer-encoding", b"chunked");
        }
        finish_head(out, close, dated);
    }
}

/// The options a `Connection` value lists.
fn options(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(<[u8]>::trim_ascii)
}

/// The status line: the upstream's reason phrase when it gave one (as hyper keeps
/// it), else the standard one.
fn status_line(out: &mut Vec<u8>, code: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    number(out, u64::from(code));
    out.push(b' ');
    let canonical = http::StatusCode::from_u16(code).ok().and_then(|s| s.canonical_reason());
    let reason = if reason.is_empty() { canonical.unwrap_or("") } else { reason };
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn finish_head(out: &mut Vec<u8>, close: bool, dated: bool) {
    if close {
        line(out, "connection", b"close");
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        http_date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The current time as an HTTP date, formatted once a second per worker thread.
fn http_date(out: &mut Vec<u8>) {
    thread_local!(static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) });
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    DATE.with_borrow_mut(|(at, text)| {
        if *at != second || text.is_empty() {
            *at = second;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(text.as_bytes());
    });
}

/// A refusal, whole: the same status, headers and body as [`Rejection::into_response`].
pub fn refusal(out: &mut Vec<u8>, rejection: &Rejection, close: bool) {
    let body = rejection.body();
    status_line(out, rejection.status().as_u16(), "");
    line(out, "content-type", b"application/json");
    if let Some((name, value)) = rejection.extra_header() {
        line(out, name.as_str(), value.as_bytes());
    }
    out.extend_from_slice(b"content-length: ");
    number(out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    finish_head(out, close, false);
    out.extend_from_slice(&body);
}

/// A chunked body read as it streams: [`Chunked::scan`] says how much of what has
/// arrived is whole chunk framing and data (passed on as it is), and when the last
/// chunk and the trailer section have gone by.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
    trailer_bytes: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// A chunked body that breaks the framing.
#[derive(Debug, PartialEq, Eq)]
pub struct BadChunk;

impl Chunked {
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// How many bytes at the start of `input` can be passed on.
    pub fn scan(&mut self, input: &[u8]) -> Result<usize, BadChunk> {
        let mut at = 0;
        loop {
            let rest = input.get(at..).unwrap_or_default();
            match self.state {
                ChunkState::Size => match chunk_size(rest)? {
                    Some((used, size)) => {
                        at += used;
                        self.state = if size == 0 { ChunkState::Trailers } else { ChunkState::Data(size) };
                    }
                    None => return Ok(at),
                },
                ChunkState::Data(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    at += take;
                    let left = left - take as u64;
                    self.state = if left == 0 { ChunkState::DataEnd } else { ChunkState::Data(left) };
                    if left > 0 {
                        return Ok(at);
                    }
                }
                ChunkState::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        at += 2;
                        self.state = ChunkState::Size;
                    }
                    [] | [b'\r'] => return Ok(at),
                    _ => return Err(BadChunk),
                },
                ChunkState::Trailers => {
                    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                        return if self.trailer_bytes + rest.len() > MAX_TRAILER_BYTES {
                            Err(BadChunk)
                        } else {
                            Ok(at)
                        };
                    };
                    let field = rest.get(..end).unwrap_or_default();
                    if end > 0 && !is_field_line(field) {
                        return Err(BadChunk);
                    }
                    at += end + 2;
                    self.trailer_bytes += end + 2;
                    if self.trailer_bytes > MAX_TRAILER_BYTES {
                        return Err(BadChunk);
                    }
                    if end == 0 {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(at),
            }
        }
    }
}

/// A chunk-size line (RFC 9112 §7.1): hex digits (at least one, at most 15), then
/// optionally whitespace and `;` extensions of visible bytes, then CRLF. Returns its
/// length and the size, `None` while it has not arrived whole. Stricter than
/// httparse's reader, which takes a line without digits as the last chunk and a bare
/// LF in an extension: the bytes are passed on as they are, so they must mean the
/// same to every reader after us.
fn chunk_size(rest: &[u8]) -> Result<Option<(usize, u64)>, BadChunk> {
    let Some(end) = rest.iter().position(|b| *b == b'\n') else {
        return if rest.len() > MAX_CHUNK_LINE { Err(BadChunk) } else { Ok(None) };
    };
    let line = rest.get(..end).and_then(|l| l.strip_suffix(b"\r")).ok_or(BadChunk)?;
    if line.len() > MAX_CHUNK_LINE {
        return Err(BadChunk);
    }
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let (hex, extension) = line.split_at(digits);
    if !(1..=15).contains(&digits) {
        return Err(BadChunk);
    }
    let extension = extension.trim_ascii_start();
    if !(extension.is_empty() || extension.starts_with(b";") && extension.iter().all(|b| is_field_byte(*b))) {
        return Err(BadChunk);
    }
    let size = std::str::from_utf8(hex).ok().and_then(|h| u64::from_str_radix(h, 16).ok()).ok_or(BadChunk)?;
    Ok(Some((end + 1, size)))
}

/// A byte of a field value: visible, space, tab, or obs-text.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// A trailer field line `name: value`: a token, a colon, value bytes.
fn is_field_line(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|b| *b == b':') else {
        return false;
    };
    let (name, value) = line.split_at(colon);
    !name.is_empty()
        && name.iter().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
        && value.iter().skip(1).all(|b| is_field_byte(*b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in pieces of `step` bytes; returns the bytes passed on.
    fn relay(body: &[u8], step: usize) -> Result<Vec<u8>, BadChunk> {
        let (mut chunked, mut pending, mut passed) = (Chunked::default(), Vec::new(), Vec::new());
        for piece in body.chunks(step) {
            pending.extend_from_slice(piece);
            let n = chunked.scan(&pending)?;
            passed.extend(pending.drain(..n));
            if chunked.is_done() {
                break;
            }
        }
        if chunked.is_done() { Ok(passed) } else { Err(BadChunk) }
    }

    #[test]
    fn chunked_bodies_pass_whole_in_any_pieces() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n \r\n0\r\nx-sum: 1\r\n\r\n";
        for step in 1..body.len() {
            assert_eq!(relay(body, step).unwrap(), body, "step {step}");
        }
        // What follows the body is not part of it.
        let mut more = body.to_vec();
        more.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let mut chunked = Chunked::default();
        assert_eq!(chunked.scan(&more), Ok(body.len()));
        assert!(chunked.is_done());
    }

    #[test]
    fn broken_framing_is_refused() {
        for bad in [
            &b"5\r\nhelloXX"[..],
            b"z\r\n",
            b"5\r\nhello\r\n0\r\nbad\nfield\r\n\r\n",
            b"ffffffffffffffffff\r\n",
            // No digits: httparse would read this as the last chunk.
            b"\r\n",
            b" \r\n",
            b";x\r\n",
            // A bare LF inside an extension, or as the line end.
            b"5;a\nX\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            // A trailer that is not a field.
            b"0\r\nno colon\r\n\r\n",
            b"0\r\n: empty name\r\n\r\n",
        ] {
            assert_eq!(relay(bad, 1), Err(BadChunk), "{}", String::from_utf8_lossy(bad));
        }
        let mut long_trailer = b"0\r\n".to_vec();
        long_trailer.extend(std::iter::repeat_n(b'a', MAX_TRAILER_BYTES + 10));
        assert_eq!(relay(&long_trailer, 100), Err(BadChunk));
    }

    fn response(raw: &[u8], head: bool) -> Result<(Framing, bool, String), BadResponse> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut res = httparse::Response::new(&mut headers);
        assert!(matches!(res.parse(raw), Ok(httparse::Status::Complete(_))));
        let head = ResponseHead::read(&res, head)?;
        let mut out = Vec::new();
        head.write(&mut out, false);
        Ok((head.framing, head.reusable, String::from_utf8(out).unwrap()))
    }

    #[test]
    fn response_framing_and_headers_passed_on() {
        let (framing, reusable, out) = response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nKeep-Alive: t=5\r\nX-End: 2\r\nDate: d\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!((framing, reusable), (Framing::Length(3), true));
        assert_eq!(out, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-End: 2\r\nDate: d\r\n\r\n");
        // The length framed by stays even when `Connection` names it; a custom reason
        // phrase passes.
        let (_, _, out) = response(
            b"HTTP/1.1 201 Made It\r\nConnection: content-length\r\nContent-Length: 3\r\nDate: d\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(out, "HTTP/1.1 201 Made It\r\nContent-Length: 3\r\nDate: d\r\n\r\n");
        // Equal lengths pass once; underscore spellings of framing and hop-by-hop
        // headers not at all (a proxy that reads `_` as `-` would frame by them).
        let (framing, _, out) = response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer_Encoding: chunked\r\ncontent-length: 3\r\nContent_Length: 9\r\nKeep_Alive: 1\r\nX_Own: 1\r\nDate: d\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(framing, Framing::Length(3));
        assert_eq!(out, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX_Own: 1\r\nDate: d\r\n\r\n");
        let (framing, _, out) =
            response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n", false).unwrap();
        assert_eq!(framing, Framing::Chunked);
        assert!(out.contains("transfer-encoding: chunked\r\n") && !out.contains("Content-Length"), "{out}");
        assert!(out.contains("date: "), "a Date is added: {out}");
        let (framing, reusable, _) = response(b"HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
        assert_eq!((framing, reusable), (Framing::UntilClose, false));
        assert_eq!(response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true).unwrap().0, Framing::Empty);
        assert_eq!(response(b"HTTP/1.1 304 Not Modified\r\n\r\n", false).unwrap().0, Framing::Empty);
        assert!(!response(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).unwrap().1);
        assert!(!response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n", false).unwrap().1);
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n",
        ] {
            assert!(response(bad, false).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    proptest::proptest! {
        #[test]
        fn scanning_never_panics_nor_overruns(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let mut chunked = Chunked::default();
            if let Ok(n) = chunked.scan(&bytes) {
                proptest::prop_assert!(n <= bytes.len());
            }
        }

        /// Any chunk sizes, cut anywhere: passed on whole, and nothing past its end.
        #[test]
        fn any_chunked_body_passes_whole(
            sizes in proptest::collection::vec(1usize..300, 0..6),
            step in 1usize..64,
        ) {
            let mut body = Vec::new();
            for (i, size) in sizes.iter().enumerate() {
                body.extend_from_slice(format!("{size:x}\r\n").as_bytes());
                body.extend(std::iter::repeat_n(b'a' + (i as u8), *size));
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n\r\n");
            proptest::prop_assert_eq!(relay(&body, step).unwrap(), body);
        }
    }
}
