//! The client's request head as the plain lane reads it, and which requests it takes.

use tokengate_core::ViaMarker;

use super::super::{Head, PREFIX, bearer_of, split_at_byte};

/// Header lines the lane parses at most (a request with more goes to hyper, which
/// takes up to 200).
pub const MAX_HEADERS: usize = 64;

/// Where the head at the start of `buf` ends (after its empty line, `\r\n\r\n` or a
/// bare `\n\n` as httparse also reads), if it has arrived whole. Only then is it parsed.
/// The first `searched` bytes were looked at before (and held no end).
pub fn end_of_head(buf: &[u8], searched: usize) -> Option<usize> {
    let from = searched.saturating_sub(2);
    let tail = buf.get(from..).unwrap_or_default();
    memchr::memchr_iter(b'\n', tail).map(|i| i + from).find_map(|i| match (buf.get(i + 1), buf.get(i + 2)) {
        (Some(b'\n'), _) => Some(i + 2),
        (Some(b'\r'), Some(b'\n')) => Some(i + 3),
        _ => None,
    })
}

/// A gateway request the lane can carry: HTTP/1.1 to `/instances/…`, its body framed
/// by at most one `Content-Length` (no `Transfer-Encoding`), no `Upgrade`, no
/// `Expect`, a `Connection` header naming `keep-alive` or `close` only, one `Host` at
/// most, headers within `max_header_bytes`, no `Via` of this deployment, and a target
/// of plain bytes only (see [`plain_target`]).
pub struct ClientHead<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a [httparse::Header<'a>],
    pub content_length: u64,
    /// The client asked to close the connection after this exchange.
    pub close: bool,
    pub client_token: Option<&'a [u8]>,
    pub bearer: Option<&'a [u8]>,
}

impl<'a> ClientHead<'a> {
    /// The request, if the lane takes it (`None`: hyper does).
    pub fn read(
        req: &'a httparse::Request<'_, 'a>,
        max_header_bytes: usize,
        via: &ViaMarker,
    ) -> Option<ClientHead<'a>> {
        if req.version != Some(1) {
            return None;
        }
        // CONNECT turns a connection into a tunnel: hyper's to handle.
        let method = req.method.filter(|m| *m != "CONNECT")?;
        let target = req.path?;
        let (path, query) = match split_at_byte(target, b'?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        if !path.starts_with(PREFIX) || !plain_target(target) {
            return None;
        }
        let headers: &'a [httparse::Header<'a>] = req.headers;
        let mut head = ClientHead {
            method,
            path,
            query,
            headers,
            content_length: 0,
            close: false,
            client_token: None,
            bearer: None,
        };
        let (mut size, mut lengths, mut hosts, mut authorization) = (0usize, 0, 0, false);
        for h in headers {
            size += h.name.len() + h.value.len();
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                lengths += 1;
                head.content_length = decimal(h.value)?;
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                || name.eq_ignore_ascii_case("upgrade")
                || name.eq_ignore_ascii_case("expect")
            {
                return None;
            } else if name.eq_ignore_ascii_case("connection") {
                for option in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                    if option.eq_ignore_ascii_case(b"close") {
                        head.close = true;
                    } else if !(option.is_empty() || option.eq_ignore_ascii_case(b"keep-alive")) {
                        return None;
                    }
                }
            } else if name.eq_ignore_ascii_case("host") {
                hosts += 1;
            } else if name.eq_ignore_ascii_case("client-token") {
                head.client_token.get_or_insert(h.value);
            } else if name.eq_ignore_ascii_case("authorization") {
                // The first one counts, as with hyper's `HeaderMap::get`.
                if !authorization {
                    authorization = true;
                    head.bearer = bearer_of(h.value);
                }
            } else if name.eq_ignore_ascii_case("via") && via.seen_in(h.value) {
                return None;
            }
        }
        (lengths <= 1 && hosts <= 1 && size <= max_header_bytes).then_some(head)
    }

    /// What the checks read.
    pub fn checks(&self) -> Head<'a> {
        Head { method: self.method, path: self.path, client_token: self.client_token, bearer: self.bearer }
    }

    /// The `X-Forwarded-For` lines (`None`: not visible ASCII, as `HeaderValue::to_str`
    /// says on hyper's path).
    pub fn forwarded_for(&self) -> impl Iterator<Item = Option<&'a str>> + use<'a> {
        let headers = self.headers;
        headers.iter().filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for")).map(|h| {
            let visible = h.value.iter().all(|&b| b == b'\t' || (32..127).contains(&b));
            visible.then(|| std::str::from_utf8(h.value).ok()).flatten()
        })
    }

    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Whether a request target holds only bytes every URI parser reads the same way
/// (letters, digits and `-._~/%?&=+:@!$'()*,;`). Any other (`#`, which `http` takes
/// for a fragment and drops, brackets, quotes, non-ASCII) and hyper reads the request.
fn plain_target(target: &str) -> bool {
    target.bytes().all(|b| PLAIN_TARGET_BYTES.get(usize::from(b)).copied().unwrap_or(false))
}

/// The bytes besides letters and digits that a plain target may hold.
const PLAIN_PUNCTUATION: &[u8] = b"-._~/%?&=+:@!$'()*,;";

/// The bytes [`plain_target`] allows, by value: one load per byte of every target.
#[allow(clippy::indexing_slicing, reason = "indices below the lengths they index")]
static PLAIN_TARGET_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < PLAIN_PUNCTUATION.len() {
        table[PLAIN_PUNCTUATION[i] as usize] = true;
        i += 1;
    }
    table
};

/// A `Content-Length` value: digits only, no sign, no spaces, no list.
pub fn decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Path, length, close, Client-Token and bearer token of a request the lane takes.
    type Read = (String, u64, bool, Option<Vec<u8>>, Option<Vec<u8>>);

    fn read(raw: &str) -> Option<Read> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        assert!(matches!(req.parse(raw.as_bytes()), Ok(httparse::Status::Complete(_))), "{raw}");
        let via = ViaMarker::new("deployment");
        ClientHead::read(&req, 8192, &via).map(|h| {
            (
                h.path.to_owned(),
                h.content_length,
                h.close,
                h.client_token.map(<[u8]>::to_vec),
                h.bearer.map(<[u8]>::to_vec),
            )
        })
    }

    const BASE: &str = "POST /instances/i/token/t/send?x=1 HTTP/1.1\r\nHost: a\r\n";

    #[test]
    fn heads_end_at_their_empty_line() {
        assert_eq!(end_of_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody", 0), Some(27));
        assert_eq!(end_of_head(b"GET / HTTP/1.1\nHost: a\n\nbody", 0), Some(24));
        assert_eq!(end_of_head(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        assert_eq!(end_of_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0), None);
        assert_eq!(end_of_head(b"\n\n", 0), Some(2));
        // Resumed where the last search stopped, an end split across reads is found.
        let whole = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for cut in 0..whole.len() {
            assert_eq!(end_of_head(&whole[..cut], 0), None);
            assert_eq!(end_of_head(whole, cut), Some(whole.len()), "cut at {cut}");
        }
    }

    #[test]
    fn plain_requests_are_read() {
        let (path, len, close, ct, bearer) =
            read(&format!("{BASE}Content-Length: 5\r\nClient-Token: abc\r\nAuthorization: Bearer  tgk_1 \r\n\r\n"))
                .unwrap();
        assert_eq!((path.as_str(), len, close), ("/instances/i/token/t/send", 5, false));
        assert_eq!((ct.as_deref(), bearer.as_deref()), (Some(&b"abc"[..]), Some(&b"tgk_1"[..])));
        assert!(read(&format!("{BASE}Connection: keep-alive, close\r\n\r\n")).unwrap().2);
        // Another scheme is not a bearer token.
        assert_eq!(read(&format!("{BASE}Authorization: Basic eA==\r\n\r\n")).unwrap().4, None);
    }

    #[test]
    fn forwarded_for_lines_are_read_as_hyper_reads_them() {
        let raw = b"GET /instances/i/token/t HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\nx-forwarded-for: \xc3\xa9\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(raw).unwrap();
        let head = ClientHead::read(&req, 8192, &ViaMarker::new("d")).unwrap();
        assert_eq!(head.forwarded_for().collect::<Vec<_>>(), [Some("1.2.3.4"), None]);
    }

    #[test]
    fn everything_else_goes_to_hyper() {
        for extra in [
            "Transfer-Encoding: chunked\r\n",
            "Content-Length: 5\r\nContent-Length: 5\r\n",
            "Content-Length: +5\r\n",
            "Content-Length: 5, 5\r\n",
            "Content-Length: \r\n",
            "Content-Length: 99999999999999999999\r\n",
            "Upgrade: websocket\r\nConnection: upgrade\r\n",
            "Connection: x-secret\r\n",
            "Expect: 100-continue\r\n",
            "Host: b\r\n",
        ] {
            assert!(read(&format!("{BASE}{extra}\r\n")).is_none(), "{extra}");
        }
        let via = ViaMarker::new("deployment");
        assert!(read(&format!("{BASE}Via: 1.0 other, {}\r\n\r\n", via.entry())).is_none());
        assert!(read(&format!("{BASE}Via: 1.0 other\r\n\r\n")).is_some());
        assert!(read("GET /instances/i/token/t HTTP/1.0\r\n\r\n").is_none());
        assert!(read("CONNECT /instances/i/token/t HTTP/1.1\r\n\r\n").is_none());
        assert!(read("GET /v1/accounts HTTP/1.1\r\n\r\n").is_none());
        assert!(read("GET http://h/instances/i/token/t HTTP/1.1\r\n\r\n").is_none());
        // hyper's parser decides what to make of anything unusual.
        assert!(read("GET /instances/i/token/t/a#b HTTP/1.1\r\n\r\n").is_none());
        assert!(read("GET /instances/i/token/t/a{b} HTTP/1.1\r\n\r\n").is_none());
        assert!(plain_target("/instances/i/token/t/a%20b?q=1&r=~x") && !plain_target("/a#b") && !plain_target("/a{b}"));
        // The table says what the rule says, for every byte.
        for b in 0..=u8::MAX {
            let rule = b.is_ascii_alphanumeric() || PLAIN_PUNCTUATION.contains(&b);
            assert_eq!(PLAIN_TARGET_BYTES[usize::from(b)], rule, "byte {b}");
        }
        let big = format!("{BASE}X-Big: {}\r\n\r\n", "a".repeat(9000));
        assert!(read(&big).is_none());
    }
}
