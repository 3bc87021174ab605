//! Properties of the edge's pure functions (SPEC §11), checked on generated inputs: the
//! path canonicalizer, the rule matcher, the token parser and the `X-Forwarded-For`
//! walk. `cargo fuzz` (see `fuzz/`) runs the same functions on arbitrary bytes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::IpAddr;

use proptest::prelude::*;
use tokengate_core::forwarded::{ClientIp, client_ip};
use tokengate_core::path::{canonical_tail, route_form};
use tokengate_core::token::{self, Prefix};
use tokengate_core::{IpAllowlist, Rule, RuleSet};

/// Pieces attackers and real clients put in paths.
const PIECES: &[&str] = &[
    "a",
    "send-text",
    "x=1",
    ".",
    "..",
    "/",
    "//",
    ";",
    ";p",
    "%2e",
    "%2E",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    "%25",
    "%252e",
    "%00",
    "%0a",
    "%3b",
    "%3B",
    "%41",
    "%73",
    "%7e",
    "%7E",
    "%c0%ae",
    "%C3%A9",
    "é",
    "%",
    "%z",
    "%20",
    "~",
    "-",
    "_",
    "%2a",
    "?",
];

fn tails() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(PIECES), 0..12).prop_map(|parts| format!("/{}", parts.concat()))
}

/// Percent-decodes every valid escape, as an upstream framework does.
fn decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && let (Some(h), Some(l)) = (s.get(i + 1).and_then(|&b| hex(b)), s.get(i + 2).and_then(|&b| hex(b)))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Decodes until nothing changes (some stacks decode twice).
fn decode_fully(s: &[u8]) -> Vec<u8> {
    let mut cur = s.to_vec();
    for _ in 0..4 {
        let next = decode(&cur);
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

/// The route a lenient upstream dispatches on: decode everything, `\` as `/`, cut `;`
/// parameters, drop empty segments, resolve dot segments.
fn upstream_route(tail: &str) -> Vec<Vec<u8>> {
    let decoded: Vec<u8> =
        decode_fully(tail.as_bytes()).into_iter().map(|b| if b == b'\\' { b'/' } else { b }).collect();
    let mut route: Vec<Vec<u8>> = Vec::new();
    for segment in decoded.split(|&b| b == b'/') {
        let name = segment.split(|&b| b == b';').next().unwrap_or_default();
        match name {
            b"" | b"." => {}
            b".." => {
                route.pop();
            }
            _ => route.push(name.to_vec()),
        }
    }
    route
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn canonicalizing_never_panics(raw in "\\PC{0,64}") {
        let _ = canonical_tail(&raw);
    }

    #[test]
    fn canonical_tails_are_fixed_points(raw in tails()) {
        if let Ok(c) = canonical_tail(&raw) {
            let again = canonical_tail(&c);
            prop_assert_eq!(again.as_deref(), Ok(c.as_ref()), "{}", raw);
        }
    }

    #[test]
    fn canonical_tails_have_no_dot_or_empty_segments(raw in tails()) {
        if let Ok(c) = canonical_tail(&raw) {
            let segments: Vec<&str> = c.strip_prefix('/').unwrap_or(&c).split('/').collect();
            for (i, s) in segments.iter().enumerate() {
                let name = s.split(';').next().unwrap_or_default();
                prop_assert!(name != "." && name != "..", "{raw} -> {c}");
                prop_assert!(!name.is_empty() || (i + 1 == segments.len() && s.is_empty()), "{raw} -> {c}");
            }
        }
    }

    /// What an upstream routes on, after decoding and normalising an accepted tail, is
    /// exactly the route form the rules were matched against, segment for segment.
    #[test]
    fn decoding_an_accepted_tail_never_changes_its_route(raw in tails()) {
        if let Ok(c) = canonical_tail(&raw) {
            let form = route_form(&c).unwrap_or_else(|| c.to_string());
            let ours: Vec<Vec<u8>> = form
                .strip_prefix('/')
                .unwrap_or(&form)
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| decode_fully(s.as_bytes()))
                .collect();
            prop_assert_eq!(upstream_route(&c), ours, "{} -> {}", raw, c);
        }
    }

    /// The matcher picks the first rule whose method and glob match.
    #[test]
    fn the_first_matching_rule_wins(path in "/[a-c/]{0,8}", method in "(GET|POST)") {
        let globs = ["/a*", "/b?", "/*c", "/a/b", "/*"];
        let rules: Vec<Rule> = globs
            .iter()
            .enumerate()
            .map(|(i, g)| Rule {
                methods: if i % 2 == 0 { vec![] } else { vec!["POST".into()] },
                path: g.to_string(),
                scopes: vec![format!("s{i}:x")],
            })
            .collect();
        let set = RuleSet::new(rules.clone()).unwrap();
        let expected = rules.iter().find(|r| {
            (r.methods.is_empty() || r.methods.contains(&method)) && glob(r.path.as_bytes(), path.as_bytes())
        });
        prop_assert_eq!(set.matching(&method, &path), expected);
    }

    #[test]
    fn tokens_parse_only_when_generated(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
        // Arbitrary bytes are refused (the odds of a valid CRC-32 by chance are negligible
        // next to the prefix check), and never panic.
        prop_assert!(token::parse(&bytes, Prefix::ApiKey).is_err() || bytes.starts_with(b"tgk_"));
    }

    /// The walk's answer is the peer, one of the entries, or unknown; and everything to
    /// the right of the chosen client is a trusted proxy.
    #[test]
    fn the_forwarded_for_walk(entries in proptest::collection::vec(
        prop_oneof![
            Just("10.0.0.2".to_string()), Just("10.9.9.9:80".to_string()), Just("198.51.100.7".to_string()),
            Just("203.0.113.9:4431".to_string()), Just("[2001:db8::1]:443".to_string()), Just("junk".to_string()),
            Just(String::new()),
        ], 0..6)) {
        let trusted = IpAllowlist::parse(&["10.0.0.0/8"]).unwrap();
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let line = entries.join(", ");
        let lines = if entries.is_empty() { vec![] } else { vec![Some(line.as_str())] };
        let got = client_ip(peer, lines, &trusted);
        let parsed: Vec<Option<IpAddr>> = entries.iter().map(|e| tokengate_core::forwarded::parse_hop(e)).collect();
        match got {
            ClientIp::Unknown => {
                let bad = parsed.iter().rposition(Option::is_none);
                prop_assert!(bad.is_some());
                let bad = bad.unwrap();
                prop_assert!(parsed[bad + 1..].iter().all(|p| p.is_some_and(|ip| trusted.allows(ip))));
            }
            ClientIp::Known(ip) if entries.is_empty() => prop_assert_eq!(ip, peer),
            ClientIp::Known(ip) if trusted.allows(ip) => {
                // Every entry is a trusted proxy: the leftmost is the best there is.
                prop_assert!(parsed.iter().all(|p| p.is_some_and(|ip| trusted.allows(ip))));
                prop_assert_eq!(parsed[0], Some(ip));
            }
            ClientIp::Known(ip) => {
                let at = parsed.iter().rposition(|p| *p == Some(ip));
                prop_assert!(at.is_some(), "{ip} is not an entry of {line}");
                let at = at.unwrap();
                prop_assert!(parsed[at + 1..].iter().all(|p| p.is_some_and(|ip| trusted.allows(ip))));
            }
        }
    }
}

/// A reference glob: `*` any run, `?` one byte.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}
