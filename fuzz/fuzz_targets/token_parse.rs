//! Opaque token parsing (prefix, base62, CRC-32): never panics, and what parses under a
//! prefix has that prefix and the contract's length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokengate_core::token::{self, Prefix};
use tokengate_core::{ClientIp, IpAllowlist, TokenKind};

fuzz_target!(|data: &[u8]| {
    let _ = TokenKind::of(data);
    for prefix in [Prefix::Admin, Prefix::ClientToken, Prefix::Instance, Prefix::ApiKey, Prefix::Personal, Prefix::ClientSecret] {
        if token::parse(data, prefix).is_ok() {
            assert_eq!(data.len(), 40);
        }
    }
    // The X-Forwarded-For walk sees the same kind of bytes.
    if let Ok(text) = std::str::from_utf8(data) {
        let trusted = IpAllowlist::parse(&["10.0.0.0/8"]).unwrap_or_default();
        let client = tokengate_core::forwarded::client_ip("10.0.0.1".parse().unwrap(), [Some(text)], &trusted);
        if let ClientIp::Known(ip) = client {
            assert!(text.contains(&ip.to_string()) || ip.to_string() == "10.0.0.1" || text.contains(':'));
        }
    }
});
