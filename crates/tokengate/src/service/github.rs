//! GitHub's secret-scanning partner program (SPEC §15): reports signed with ECDSA
//! P-256 / SHA-256 over the raw body, by keys GitHub publishes at
//! `leak_github_keys_url` (`{"public_keys": [{"key_identifier", "key", "is_current"}]}`,
//! each key a PEM `PUBLIC KEY`). The keys are cached and fetched again, at most every
//! few seconds, when a report names one not seen yet.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use base64::Engine;
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::outbound::Outbound;
pub use tokengate_proto::leaks::{GithubLabel, GithubMatch};

/// Least time between two fetches caused by unknown key ids.
const REFETCH_AFTER: Duration = Duration::from_secs(10);
const MAX_KEYS_BYTES: usize = 256 * 1024;

#[derive(Deserialize)]
struct PublishedKeys {
    public_keys: Vec<PublishedKey>,
}

#[derive(Deserialize)]
struct PublishedKey {
    key_identifier: String,
    key: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("unknown public key identifier")]
    UnknownKey,
    #[error("invalid signature")]
    Invalid,
}

/// GitHub's public keys, by identifier (SPKI DER).
pub struct GithubKeys {
    url: String,
    outbound: Outbound,
    cache: Mutex<KeyCache>,
}

/// The keys by identifier, and when they were last fetched.
type KeyCache = (HashMap<String, Vec<u8>>, Option<Instant>);

impl GithubKeys {
    pub fn new(url: String, outbound: Outbound) -> GithubKeys {
        GithubKeys { url, outbound, cache: Mutex::new((HashMap::new(), None)) }
    }

    /// Checks `signature` (base64 DER) over `body` with the key `key_id`.
    pub async fn verify(&self, body: &[u8], key_id: &str, signature: &str) -> Result<(), SignatureError> {
        let signature =
            base64::engine::general_purpose::STANDARD.decode(signature.trim()).map_err(|_| SignatureError::Invalid)?;
        let key = self.key(key_id).await.ok_or(SignatureError::UnknownKey)?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.as_slice())
            .verify(body, &signature)
            .map_err(|_| SignatureError::Invalid)
    }

    async fn key(&self, key_id: &str) -> Option<Vec<u8>> {
        let mut cache = self.cache.lock().await;
        if let Some(key) = cache.0.get(key_id) {
            return Some(key.clone());
        }
        if cache.1.is_some_and(|at| at.elapsed() < REFETCH_AFTER) {
            return None;
        }
        cache.1 = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => cache.0 = keys,
            Err(e) => tracing::warn!(error = %e, url = %self.url, "fetching GitHub's secret-scanning keys failed"),
        }
        cache.0.get(key_id).cloned()
    }

    async fn fetch(&self) -> Result<HashMap<String, Vec<u8>>, String> {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::ACCEPT, http::HeaderValue::from_static("application/json"));
        let fetched =
            self.outbound.send(http::Method::GET, &self.url, headers, bytes::Bytes::new(), MAX_KEYS_BYTES).await?;
        if fetched.status != 200 {
            return Err(format!("status {}", fetched.status));
        }
        let published: PublishedKeys = serde_json::from_slice(&fetched.body).map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        for key in published.public_keys {
            match SubjectPublicKeyInfoDer::from_pem_slice(key.key.as_bytes()) {
                Ok(der) => {
                    keys.insert(key.key_identifier, der.as_ref().to_vec());
                }
                Err(_) => tracing::warn!(key = %key.key_identifier, "a published key is not a PEM public key"),
            }
        }
        Ok(keys)
    }
}
