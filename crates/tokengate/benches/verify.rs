//! Opaque token verification with one million live tokens loaded (SPEC §10: ≤ 300 ns):
//! prefix and checksum, digest, lookup by digest, revocation, expiry, account,
//! instance, address and scope checks.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use secrecy::ExposeSecret;
use tokengate::state::GatewayState;
use tokengate::store::ApiToken;
use tokengate_core::token;
use tokengate_core::{AccountId, Digest, Timestamp, TokenId, TokenKind};

const TOKENS: usize = 1_000_000;

fn api_token(account: AccountId, scopes: &[&str]) -> ApiToken {
    ApiToken {
        id: TokenId::new(),
        account_id: account,
        kind: TokenKind::ApiKey,
        member_id: None,
        name: "bench".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        expires_at: Some(Timestamp::now().plus_secs(86_400)),
        ip_allowlist: vec![],
        rate_limit: None,
        instance_ids: vec![],
        created_at: Timestamp::now(),
        revoked_at: None,
        last_used_at: None,
        format: tokengate::store::TokenFormat::Tokengate,
        external_id: None,
        leaked_at: None,
    }
}

fn verify(c: &mut Criterion) {
    let state = GatewayState::default();
    let account = AccountId::new();
    let mut probe = None;
    state.load_tokens((0..TOKENS).map(|i| {
        let secret = token::generate(TokenKind::ApiKey.prefix());
        let digest = Digest::of(secret.expose_secret().as_bytes());
        if i == TOKENS / 2 {
            probe = Some(secret);
        }
        (api_token(account, &["messages:send", "instance:read"]), digest)
    }));
    let probe = probe.map(|s| s.expose_secret().as_bytes().to_vec()).unwrap_or_default();
    assert_eq!(state.token_count(), TOKENS);
    let required = vec!["messages:send".to_string()];
    let ip: std::net::IpAddr = [127, 0, 0, 1].into();
    let now = Timestamp::now();
    c.bench_function("opaque_token_verify/1M_loaded", |b| {
        b.iter(|| {
            state
                .verify_token(
                    black_box(&probe),
                    now,
                    Some(account),
                    None,
                    Some(tokengate_core::ClientIp::Known(ip)),
                    &required,
                )
                .is_ok()
        })
    });
    let unknown = token::generate(TokenKind::ApiKey.prefix()).expose_secret().as_bytes().to_vec();
    c.bench_function("opaque_token_verify/unknown_1M_loaded", |b| {
        b.iter(|| {
            state
                .verify_token(
                    black_box(&unknown),
                    now,
                    Some(account),
                    None,
                    Some(tokengate_core::ClientIp::Known(ip)),
                    &required,
                )
                .is_err()
        })
    });
}

criterion_group!(benches, verify);
criterion_main!(benches);
