//! The JWKS of trusted identity providers: fetched with a bounded size and time, cached
//! per issuer, refreshed periodically and when a token names an unknown `kid` (at most
//! once per [`KID_REFRESH_INTERVAL`], in the background: the request that saw the
//! unknown `kid` is refused, not held). When the IdP is down the cached keys stay.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::keys::VerifyKey;
use crate::egress::{EgressConnector, EgressPolicy};
use crate::store::TrustedIssuer;

/// Largest JWKS document read.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys kept from one JWKS.
pub const MAX_KEYS: usize = 64;
/// A JWKS fetch (connect, headers and body) must finish within this.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Unknown-`kid` refreshes of one issuer are at least this far apart, by default.
pub const KID_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("JWKS request failed: {0}")]
    Http(String),
    #[error("JWKS answered status {0}")]
    Status(u16),
    #[error("JWKS larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("JWKS is not a JSON key set")]
    Invalid,
}

/// Fetches JWKS documents through the egress policy: no redirects, bounded time and size.
#[derive(Clone)]
pub struct JwksFetcher {
    client: Client<HttpsConnector<EgressConnector>, Empty<Bytes>>,
}

impl JwksFetcher {
    pub fn new(egress: Arc<EgressPolicy>) -> JwksFetcher {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(crate::egress::https_connector(egress, Some(FETCH_TIMEOUT)));
        JwksFetcher { client }
    }

    pub async fn fetch(&self, uri: &str) -> Result<HashMap<String, VerifyKey>, FetchError> {
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch_now(uri)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Http("timed out".into())),
        }
    }

    async fn fetch_now(&self, uri: &str) -> Result<HashMap<String, VerifyKey>, FetchError> {
        let uri: http::Uri = uri.parse().map_err(|_| FetchError::Http("not a URL".into()))?;
        let request = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/jwk-set+json, application/json")
            .header(http::header::USER_AGENT, concat!("tokengate/", env!("CARGO_PKG_VERSION")))
            .body(Empty::new())
            .map_err(|_| FetchError::Http("not a URL".into()))?;
        let response = self.client.request(request).await.map_err(|e| {
            if crate::egress::is_denied(&e) {
                FetchError::Http(crate::egress::EgressDenied.to_string())
            } else {
                FetchError::Http(e.to_string())
            }
        })?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES).collect().await.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                FetchError::TooLarge
            } else {
                FetchError::Http(e.to_string())
            }
        })?;
        parse_key_set(&body.to_bytes())
    }
}

/// The usable signature keys of a JWKS document. Keys without `kid`, for encryption, of
/// a symmetric type, or that do not parse are skipped; each key is pinned to its `alg`
/// (or, when absent, the one algorithm its type and curve imply).
pub fn parse_key_set(body: &[u8]) -> Result<HashMap<String, VerifyKey>, FetchError> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|_| FetchError::Invalid)?;
    let mut keys = HashMap::new();
    for value in set.keys {
        if keys.len() >= MAX_KEYS {
            break;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else { continue };
        if let Some(key) = verify_key(&jwk) {
            keys.insert(key.kid.clone(), key);
        }
    }
    Ok(keys)
}

fn verify_key(jwk: &Jwk) -> Option<VerifyKey> {
    let kid = jwk.common.key_id.clone()?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))) {
        return None;
    }
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        // Symmetric keys are never trusted from a JWKS; other curves are not supported.
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        Some(declared) => declared_algorithm(declared)?,
        None => implied,
    };
    // The declared algorithm must fit the key: same family, and for curves the one
    // algorithm the curve implies.
    if alg.family() == AlgorithmFamily::Hmac || alg.family() != implied.family() {
        return None;
    }
    if alg.family() != AlgorithmFamily::Rsa && alg != implied {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyKey { kid, alg, key })
}

/// A JWK's `alg` as a signature algorithm; encryption algorithms are not.
fn declared_algorithm(declared: KeyAlgorithm) -> Option<Algorithm> {
    Some(match declared {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// One trusted issuer of one account, with its cached keys.
pub struct IssuerKeys {
    pub config: TrustedIssuer,
    keys: ArcSwap<HashMap<String, VerifyKey>>,
    fetching: AtomicBool,
    last_kid_refresh: std::sync::Mutex<Option<Instant>>,
    kid_refresh_interval: Duration,
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeys").field("issuer", &self.config.issuer).finish_non_exhaustive()
    }
}

impl IssuerKeys {
    pub fn new(config: TrustedIssuer, kid_refresh_interval: Duration) -> IssuerKeys {
        IssuerKeys {
            config,
            keys: ArcSwap::from_pointee(HashMap::new()),
            fetching: AtomicBool::new(false),
            last_kid_refresh: std::sync::Mutex::new(None),
            kid_refresh_interval,
        }
    }

    pub fn keys(&self) -> Arc<HashMap<String, VerifyKey>> {
        self.keys.load_full()
    }

    /// Fetches the JWKS now and replaces the cached keys; on failure they are kept.
    pub async fn refresh(&self, fetcher: &JwksFetcher) {
        if self.fetching.swap(true, Ordering::AcqRel) {
            return;
        }
        match fetcher.fetch(&self.config.jwks_uri).await {
            Ok(keys) => {
                tracing::debug!(issuer = %self.config.issuer, keys = keys.len(), "JWKS refreshed");
                self.keys.store(Arc::new(keys));
            }
            Err(e) => {
                tracing::warn!(issuer = %self.config.issuer, error = %e, "JWKS refresh failed; keeping the cached keys");
            }
        }
        self.fetching.store(false, Ordering::Release);
    }

    /// A token named a `kid` we do not hold: refresh in the background unless a fetch
    /// is already running (it may bring the key) or one was started for this reason
    /// less than the refresh interval ago.
    pub fn unknown_kid(self: &Arc<Self>, fetcher: &Arc<JwksFetcher>) {
        if self.fetching.load(Ordering::Acquire) || !self.take_kid_refresh(Instant::now()) {
            return;
        }
        let (this, fetcher) = (Arc::clone(self), Arc::clone(fetcher));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { this.refresh(&fetcher).await });
        }
    }

    fn take_kid_refresh(&self, now: Instant) -> bool {
        let Ok(mut last) = self.last_kid_refresh.lock() else { return false };
        if last.is_some_and(|at| now.duration_since(at) < self.kid_refresh_interval) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> IssuerKeys {
        IssuerKeys::new(
            TrustedIssuer {
                id: tokengate_core::IssuerId::new(),
                account_id: tokengate_core::AccountId::new(),
                issuer: "https://idp.example".into(),
                jwks_uri: "https://idp.example/jwks".into(),
                audience: "api".into(),
                scopes_claim: "scope".into(),
                created_at: tokengate_core::Timestamp::now(),
            },
            KID_REFRESH_INTERVAL,
        )
    }

    #[test]
    fn unknown_kid_refreshes_are_rate_limited() {
        let keys = issuer();
        let t0 = Instant::now();
        assert!(keys.take_kid_refresh(t0));
        assert!(!keys.take_kid_refresh(t0 + Duration::from_secs(5)));
        assert!(!keys.take_kid_refresh(t0 + KID_REFRESH_INTERVAL - Duration::from_millis(1)));
        assert!(keys.take_kid_refresh(t0 + KID_REFRESH_INTERVAL));
    }

    #[test]
    fn key_sets_keep_only_pinned_signature_keys() {
        let ed = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed"}"#;
        let ed_declared_rs = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"bad","alg":"RS256"}"#;
        let oct = r#"{"kty":"oct","k":"c2VjcmV0","kid":"hmac","alg":"HS256"}"#;
        let no_kid = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        let enc = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"enc","use":"enc"}"#;
        let junk = r#"{"kty":"weird","kid":"junk"}"#;
        let body = format!(r#"{{"keys":[{ed},{ed_declared_rs},{oct},{no_kid},{enc},{junk}]}}"#);
        let keys = parse_key_set(body.as_bytes()).unwrap();
        assert_eq!(keys.len(), 1, "{:?}", keys.keys().collect::<Vec<_>>());
        assert_eq!(keys["ed"].alg, Algorithm::EdDSA);
        assert!(parse_key_set(b"not json").is_err());
        assert!(parse_key_set(b"{\"keys\": 3}").is_err());
    }
}
