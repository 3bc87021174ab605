//! The in-process checks of the gateway's hot path (SPEC §10): the Client-Token
//! decision (target ≤ 150 ns) and the instance-token check that precedes it.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use secrecy::ExposeSecret;
use tokengate_core::token::{self, Prefix};
use tokengate_core::{Digest, IpAllowlist, SecurityTokenPolicy, Timestamp};

fn checks(c: &mut Criterion) {
    let current = token::generate(Prefix::ClientToken);
    let previous = token::generate(Prefix::ClientToken);
    let now = Timestamp::now();
    let policy = SecurityTokenPolicy::Configured {
        active: true,
        current: Digest::of(current.expose_secret().as_bytes()),
        previous: Some((Digest::of(previous.expose_secret().as_bytes()), now.plus_secs(3600))),
    };
    let presented = current.expose_secret().as_bytes().to_vec();
    let mut wrong = presented.clone();
    if let Some(b) = wrong.get_mut(12) {
        *b ^= 1;
    }

    let mut group = c.benchmark_group("client_token");
    group.bench_function("valid", |b| b.iter(|| policy.check(black_box(Some(&presented)), now)));
    group.bench_function("missing", |b| b.iter(|| policy.check(black_box(None), now)));
    group.bench_function("checksum_broken", |b| b.iter(|| policy.check(black_box(Some(&wrong)), now)));
    group.finish();

    let instance = token::generate(Prefix::Instance);
    let stored = Digest::of(instance.expose_secret().as_bytes());
    let bytes = instance.expose_secret().as_bytes().to_vec();
    c.bench_function("instance_token/valid", |b| {
        b.iter(|| token::parse(black_box(&bytes), Prefix::Instance).is_ok_and(|d| d.ct_eq(&stored)))
    });
    c.bench_function("sha256/40_bytes", |b| b.iter(|| Digest::of(black_box(&bytes))));

    let allowlist = IpAllowlist::parse(&["203.0.113.0/24", "2001:db8::/32", "10.0.0.0/8"]).unwrap_or_default();
    let ip: std::net::IpAddr = [10, 1, 2, 3].into();
    c.bench_function("ip_allowlist/3_cidrs", |b| b.iter(|| allowlist.allows(black_box(ip))));
}

criterion_group!(benches, checks);
criterion_main!(benches);
