//! Who the client is behind proxies, and whether a request has been through us already
//! (SPEC §11): the `X-Forwarded-For` walk and the `Via` loop marker.

use std::net::{IpAddr, SocketAddr};

use crate::IpAllowlist;

/// The client's address as far as IP checks go. `Unknown` when a trusted proxy's
/// `X-Forwarded-For` held something that is not an address: every IP allowlist then
/// refuses the request rather than guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIp {
    Known(IpAddr),
    Unknown,
}

impl ClientIp {
    pub fn known(self) -> Option<IpAddr> {
        match self {
            ClientIp::Known(ip) => Some(ip),
            ClientIp::Unknown => None,
        }
    }

    /// Whether an allowlist lets this client through (an empty list lets anyone).
    pub fn allowed_by(self, list: &IpAllowlist) -> bool {
        match self {
            ClientIp::Known(ip) => list.allows(ip),
            ClientIp::Unknown => list.is_empty(),
        }
    }
}

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientIp::Known(ip) => ip.fmt(f),
            ClientIp::Unknown => f.write_str("unknown"),
        }
    }
}

/// One `X-Forwarded-For` entry as an address: `ip`, `ip:port`, `[v6]` or `[v6]:port`.
pub fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sock) = entry.parse::<SocketAddr>() {
        return Some(sock.ip().to_canonical());
    }
    let inner = entry.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<std::net::Ipv6Addr>().ok().map(|ip| IpAddr::V6(ip).to_canonical())
}

/// Resolves the client address. `X-Forwarded-For` (all its lines, in order) is read only
/// when the peer is a trusted proxy, right to left: trusted proxies are skipped, the
/// first other entry is the client, and an entry that is no address ends the walk with
/// the client unknown. When every entry is a trusted proxy, the leftmost one is taken.
/// A `None` line is a header value that is not text.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = Option<&'a str>>,
    trusted: &IpAllowlist,
) -> ClientIp {
    let peer = peer.to_canonical();
    if trusted.is_empty() || !trusted.allows(peer) {
        return ClientIp::Known(peer);
    }
    let lines: Vec<Option<&str>> = forwarded_for.into_iter().collect();
    let mut client = ClientIp::Known(peer);
    for line in lines.iter().rev() {
        let Some(line) = line else { return ClientIp::Unknown };
        for entry in line.rsplit(',') {
            let Some(hop) = parse_hop(entry) else { return ClientIp::Unknown };
            client = ClientIp::Known(hop);
            if !trusted.allows(hop) {
                return client;
            }
        }
    }
    client
}

/// The `Via` entry a deployment adds (`1.1 tokengate-<id>`) and looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaMarker {
    received_by: String,
    entry: String,
}

impl ViaMarker {
    pub fn new(deployment_id: &str) -> ViaMarker {
        let received_by = format!("tokengate-{deployment_id}");
        ViaMarker { entry: format!("1.1 {received_by}"), received_by }
    }

    /// The value appended to `Via` on every forwarded request.
    pub fn entry(&self) -> &str {
        &self.entry
    }

    /// Whether a `Via` header line names this deployment as a hop already (any
    /// protocol version, any comment after it).
    pub fn seen_in(&self, via: &[u8]) -> bool {
        via.split(|&b| b == b',').any(|hop| {
            let mut words = hop.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty());
            words.next().is_some()
                && words.next().is_some_and(|by| by.eq_ignore_ascii_case(self.received_by.as_bytes()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn walk(peer: &str, lines: &[&str], trusted: &[&str]) -> ClientIp {
        let trusted = IpAllowlist::parse(trusted).unwrap_or_default();
        client_ip(ip(peer), lines.iter().map(|l| Some(*l)), &trusted)
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies() {
        assert_eq!(walk("10.0.0.1", &["198.51.100.7"], &[]), ClientIp::Known(ip("10.0.0.1")));
        assert_eq!(walk("203.0.113.1", &["198.51.100.7"], &["10.0.0.0/8"]), ClientIp::Known(ip("203.0.113.1")));
        assert_eq!(walk("10.0.0.1", &[], &["10.0.0.0/8"]), ClientIp::Known(ip("10.0.0.1")));
    }

    #[test]
    fn the_walk_goes_right_to_left_past_trusted_hops() {
        let t = ["10.0.0.0/8"];
        assert_eq!(walk("10.0.0.1", &["198.51.100.7, 10.0.0.2"], &t), ClientIp::Known(ip("198.51.100.7")));
        assert_eq!(walk("10.0.0.1", &["203.0.113.9, 198.51.100.7"], &t), ClientIp::Known(ip("198.51.100.7")));
        assert_eq!(walk("10.0.0.1", &["203.0.113.9", "198.51.100.7"], &t), ClientIp::Known(ip("198.51.100.7")));
        assert_eq!(walk("10.0.0.1", &["10.0.0.3, 10.0.0.2"], &t), ClientIp::Known(ip("10.0.0.3")));
    }

    #[test]
    fn ports_are_stripped_and_garbage_makes_the_client_unknown() {
        let t = ["10.0.0.0/8"];
        assert_eq!(walk("10.0.0.1", &["203.0.113.9, 198.51.100.7:51234"], &t), ClientIp::Known(ip("198.51.100.7")));
        assert_eq!(walk("10.0.0.1", &["[2001:db8::1]:443"], &t), ClientIp::Known(ip("2001:db8::1")));
        assert_eq!(walk("10.0.0.1", &["[2001:db8::1]"], &t), ClientIp::Known(ip("2001:db8::1")));
        assert_eq!(walk("10.0.0.1", &["::ffff:203.0.113.9"], &t), ClientIp::Known(ip("203.0.113.9")));
        assert_eq!(walk("10.0.0.1", &["203.0.113.9, garbage"], &t), ClientIp::Unknown);
        assert_eq!(walk("10.0.0.1", &["203.0.113.9, "], &t), ClientIp::Unknown);
        assert_eq!(walk("10.0.0.1", &["unknown"], &t), ClientIp::Unknown);
        // Garbage left of the client is never reached.
        assert_eq!(walk("10.0.0.1", &["garbage, 198.51.100.7"], &t), ClientIp::Known(ip("198.51.100.7")));
        let trusted = IpAllowlist::parse(&t).unwrap_or_default();
        assert_eq!(client_ip(ip("10.0.0.1"), [None], &trusted), ClientIp::Unknown);
    }

    #[test]
    fn unknown_clients_pass_only_empty_allowlists() {
        let list = IpAllowlist::parse(&["203.0.113.0/24"]).unwrap_or_default();
        assert!(!ClientIp::Unknown.allowed_by(&list));
        assert!(ClientIp::Unknown.allowed_by(&IpAllowlist::default()));
        assert_eq!(ClientIp::Unknown.to_string(), "unknown");
    }

    #[test]
    fn via_marker() {
        let m = ViaMarker::new("abc");
        assert_eq!(m.entry(), "1.1 tokengate-abc");
        assert!(m.seen_in(b"1.1 tokengate-abc"));
        assert!(m.seen_in(b"1.0 fred, 1.1 TOKENGATE-abc (tokengate)"));
        assert!(m.seen_in(b"HTTP/2 proxy,1.1   tokengate-abc"));
        assert!(!m.seen_in(b"1.1 tokengate-abcd"));
        assert!(!m.seen_in(b"1.1 tokengate-other"));
        assert!(!m.seen_in(b"tokengate-abc"));
    }
}
