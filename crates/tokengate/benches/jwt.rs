//! JWT access tokens (SPEC §10: EdDSA verification within 1.2× of the bare signature
//! verification of the same token), the gateway's cached path, and issuance rate.

use std::hint::black_box;
use std::sync::Arc;

use base64::Engine;
use criterion::{Criterion, criterion_group, criterion_main};
use tokengate::master_key::MasterKey;
use tokengate::oauth::OAuthState;
use tokengate::oauth::keys::{self, SigningAlg};
use tokengate::store::OAuthClient;
use tokengate_core::{AccountId, ClientId, Digest, Timestamp};

fn decode(part: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap_or_default()
}

fn jwt(c: &mut Criterion) {
    let master = Arc::new(MasterKey::from_hex(&"11".repeat(32)).unwrap_or_else(|_| unreachable!()));
    let now = Timestamp::now();
    let account = AccountId::new();
    let client = OAuthClient {
        client_id: ClientId::new(),
        account_id: account,
        name: "bench".into(),
        scopes: vec![],
        created_at: now,
        disabled_at: None,
    };
    let required = vec!["messages:send".to_string()];
    for alg in [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256] {
        let state = OAuthState::new(
            Arc::clone(&master),
            "https://gateway.example".into(),
            std::time::Duration::from_secs(30),
            Default::default(),
        );
        let record = keys::generate(alg, &master, now).unwrap_or_else(|_| unreachable!());
        state.set_keys(std::slice::from_ref(&record));
        state.set_clients(vec![(client.clone(), Digest::of(b"unused"))]);
        let scopes = vec!["messages:send".to_string(), "instance:read".to_string()];
        let (token, _) = state.issue(&client, &scopes, 900, now).unwrap_or_else(|_| unreachable!());
        let name = alg.as_str();

        c.bench_function(&format!("jwt/{name}/issue"), |b| {
            b.iter(|| state.issue(black_box(&client), &scopes, 900, now).is_ok())
        });
        c.bench_function(&format!("jwt/{name}/verify_access_token"), |b| {
            b.iter(|| state.verify_access_token(black_box(token.as_bytes()), now, Some(account)).is_ok())
        });
        c.bench_function(&format!("jwt/{name}/gateway_cached"), |b| {
            b.iter(|| state.verify_bearer_jwt(black_box(token.as_bytes()), now, account, &required).is_ok())
        });
        if alg == SigningAlg::EdDSA {
            // The bare signature check of the same token: Ed25519 over `header.payload`.
            let jwk: serde_json::Value = serde_json::from_str(&record.public_jwk).unwrap_or_default();
            let public = decode(jwk.get("x").and_then(|x| x.as_str()).unwrap_or_default());
            let (signing_input, signature) = token.rsplit_once('.').unwrap_or_default();
            let signature = decode(signature);
            let key = aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, public);
            assert!(key.verify(signing_input.as_bytes(), &signature).is_ok());
            c.bench_function("jwt/EdDSA/bare_signature_verify", |b| {
                b.iter(|| key.verify(black_box(signing_input.as_bytes()), black_box(&signature)).is_ok())
            });
        }
    }
}

criterion_group!(benches, jwt);
criterion_main!(benches);
