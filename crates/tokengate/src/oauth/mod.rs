//! OAuth 2.0 and JWTs: tokengate's own signing keys and access tokens (RFC 9068),
//! OAuth clients, revoked access tokens, and the JWTs of trusted identity providers.
//!
//! [`OAuthState`] is the in-memory side, read by the gateway without touching the store
//! and reloaded (each kind whole: they are small) when a change commits.

pub mod jwks;
pub mod jwt;
pub mod keys;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use http::HeaderValue;
use jsonwebtoken::jwk::Jwk;
use serde::{Deserialize, Serialize};
use tokengate_core::rules::grants;
use tokengate_core::token::{self, Prefix};
use tokengate_core::{AccountId, ClientId, Denial, Digest, Timestamp};

use crate::master_key::MasterKey;
use crate::store::{OAuthClient, OAuthStore, SqlStore, StoreResult};
use jwks::{IssuerKeys, JwksFetcher};
use jwt::{Expect, JwtError};
use keys::{Signer, VerifyKey};

/// `aud` of the access tokens issued for an account.
pub fn audience(account: AccountId) -> String {
    format!("urn:tokengate:account:{account}")
}

fn account_of_audience(aud: &str) -> Option<AccountId> {
    aud.strip_prefix("urn:tokengate:account:")?.parse().ok()
}

/// The claims of tokengate's access tokens (RFC 9068).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
}

/// The `typ` values an access token may carry (RFC 9068 §2.1).
const ACCESS_TOKEN_TYPES: &[&str] = &["at+jwt", "application/at+jwt"];

/// The keys that sign and verify access tokens.
#[derive(Default)]
pub struct KeyRing {
    pub signer: Option<Arc<Signer>>,
    /// Whether the store holds any signing key (even one this node cannot open).
    has_keys: bool,
    verify: HashMap<String, VerifyKey>,
    /// Public keys with the time they leave the JWKS (`None`: the signing key).
    published: Vec<(Jwk, Option<Timestamp>)>,
}

/// The loaded OAuth clients, by id and by their secret's digest (its first eight bytes:
/// introspection of a bare secret looks it up, then compares the whole digest).
#[derive(Default)]
struct Clients {
    by_id: HashMap<ClientId, Arc<LiveClient>>,
    by_secret: HashMap<u64, Vec<Arc<LiveClient>>>,
}

/// An OAuth client as the token endpoint and gateway check it.
pub struct LiveClient {
    pub client: OAuthClient,
    digest: Digest,
}

/// A JWT that verified (an access token from `/oauth/token`, or a token of one of the
/// account's trusted issuers): what the gateway and introspection need of it.
#[derive(Debug)]
pub struct VerifiedJwt {
    /// The key that verified it, and for a trusted issuer's token that issuer (as loaded
    /// then): a cached verification holds only while both are still current.
    pub kid: String,
    pub issuer: Option<Arc<IssuerKeys>>,
    pub account_id: AccountId,
    pub subject: String,
    pub jti: Option<String>,
    pub client_id: Option<ClientId>,
    pub scopes: Vec<String>,
    pub issued_at: Option<i64>,
    pub expires_at: i64,
    pub not_before: Option<i64>,
    /// `X-Tokengate-Scopes`, `X-Tokengate-Token-Id` (the `jti`) and `X-Tokengate-Subject`.
    pub scopes_header: HeaderValue,
    pub token_id_header: Option<HeaderValue>,
    pub subject_header: Option<HeaderValue>,
}

impl VerifiedJwt {
    /// The time-dependent checks, repeated on every use of a cached verification.
    fn still_valid(&self, now_secs: i64) -> Result<(), Denial> {
        let leeway = jwt::LEEWAY_SECONDS as i64;
        if self.expires_at < now_secs - leeway {
            return Err(Denial::Expired);
        }
        if self.not_before.is_some_and(|nbf| nbf > now_secs + leeway) {
            return Err(Denial::NotFound);
        }
        Ok(())
    }
}

/// Verified tokens, so that a token used again costs a hash lookup instead of a
/// signature check. Revocation, expiry, the client, scopes and that the verifying key is
/// still loaded are checked on every use.
const VERIFIED_CACHE_MAX: usize = 100_000;

pub struct OAuthState {
    issuer: String,
    master_key: Arc<MasterKey>,
    keyring: ArcSwap<KeyRing>,
    clients: ArcSwap<Clients>,
    /// Revoked access tokens' `jti` → `exp` (seconds).
    revoked: ArcSwap<HashMap<String, i64>>,
    issuers: ArcSwap<HashMap<AccountId, Vec<Arc<IssuerKeys>>>>,
    fetcher: Arc<JwksFetcher>,
    kid_refresh_interval: std::time::Duration,
    verified: DashMap<[u8; 32], Arc<VerifiedJwt>>,
}

impl Default for OAuthState {
    /// A state with a throwaway master key (benchmarks and tests of other parts).
    fn default() -> Self {
        use rand::RngExt;
        let key: [u8; 32] = rand::rng().random();
        let master_key = MasterKey::from_hex(&hex::encode(key)).unwrap_or_else(|_| unreachable!());
        OAuthState::new(Arc::new(master_key), "http://localhost".into(), jwks::KID_REFRESH_INTERVAL, Default::default())
    }
}

impl OAuthState {
    pub fn new(
        master_key: Arc<MasterKey>,
        issuer: String,
        kid_refresh_interval: std::time::Duration,
        egress: Arc<crate::egress::EgressPolicy>,
    ) -> OAuthState {
        OAuthState {
            issuer,
            master_key,
            keyring: ArcSwap::from_pointee(KeyRing::default()),
            clients: ArcSwap::from_pointee(Clients::default()),
            revoked: ArcSwap::from_pointee(HashMap::new()),
            issuers: ArcSwap::from_pointee(HashMap::new()),
            fetcher: Arc::new(JwksFetcher::new(egress)),
            kid_refresh_interval,
            verified: DashMap::new(),
        }
    }

    /// This server's issuer identifier (`iss` of its tokens, RFC 8414 `issuer`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn signer(&self) -> Option<Arc<Signer>> {
        self.keyring.load().signer.clone()
    }

    /// Whether the store holds any signing key at all.
    pub fn has_signing_keys(&self) -> bool {
        self.keyring.load().has_keys
    }

    /// The JWKS document: every key whose tokens may still be alive.
    pub fn jwks(&self, now: Timestamp) -> serde_json::Value {
        let ring = self.keyring.load();
        let keys: Vec<&Jwk> =
            ring.published.iter().filter(|(_, until)| until.is_none_or(|u| u > now)).map(|(jwk, _)| jwk).collect();
        serde_json::json!({ "keys": keys })
    }

    /// The client whose id and secret these are (secret compared by digest).
    pub fn authenticate_client(&self, client_id: &str, secret: &[u8]) -> Option<Arc<LiveClient>> {
        let digest = token::parse(secret, Prefix::ClientSecret).ok()?;
        let id: ClientId = client_id.parse().ok()?;
        let client = self.clients.load().by_id.get(&id).cloned()?;
        client.digest.ct_eq(&digest).then_some(client)
    }

    /// The client whose secret has this digest (introspection of a `tgs_` secret): found
    /// by hash lookup, compared in constant time.
    pub fn client_with_secret(&self, digest: &Digest) -> Option<Arc<LiveClient>> {
        let clients = self.clients.load();
        let mut found = None;
        for client in clients.by_secret.get(&digest.prefix()).into_iter().flatten() {
            if client.digest.ct_eq(digest) {
                found = Some(Arc::clone(client));
            }
        }
        found
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.load().contains_key(jti)
    }

    pub async fn reload_all(&self, store: &SqlStore) -> StoreResult<()> {
        self.reload_keys(store).await?;
        self.reload_clients(store).await?;
        self.reload_revoked(store).await?;
        self.reload_issuers(store).await
    }

    pub async fn reload_keys(&self, store: &SqlStore) -> StoreResult<()> {
        self.set_keys(&store.signing_keys(Timestamp::now()).await?);
        Ok(())
    }

    /// Replaces the key ring with these stored keys (oldest first).
    pub fn set_keys(&self, records: &[crate::store::SigningKeyRecord]) {
        let mut ring = KeyRing::default();
        for record in records {
            match keys::public(record) {
                Ok((verify, jwk)) => {
                    ring.published.push((jwk, record.publish_until));
                    ring.verify.insert(verify.kid.clone(), verify);
                }
                Err(e) => tracing::error!(error = %e, "signing key not loaded"),
            }
        }
        ring.has_keys = !records.is_empty();
        // The newest key that is not retired signs.
        if let Some(current) = records.iter().rev().find(|r| r.retired_at.is_none()) {
            match keys::signer(current, &self.master_key) {
                Ok(signer) => ring.signer = Some(Arc::new(signer)),
                Err(e) => tracing::error!(
                    error = %e,
                    "the current signing key cannot be opened (is this node's master key the others'?); \
                     this node cannot issue access tokens"
                ),
            }
        }
        self.keyring.store(Arc::new(ring));
    }

    pub async fn reload_clients(&self, store: &SqlStore) -> StoreResult<()> {
        self.set_clients(store.all_oauth_clients().await?);
        Ok(())
    }

    pub fn set_clients(&self, clients: Vec<(OAuthClient, Digest)>) {
        let mut set = Clients::default();
        for (client, digest) in clients {
            let live = Arc::new(LiveClient { client, digest });
            set.by_secret.entry(digest.prefix()).or_default().push(Arc::clone(&live));
            set.by_id.insert(live.client.client_id, live);
        }
        self.clients.store(Arc::new(set));
    }

    pub async fn reload_revoked(&self, store: &SqlStore) -> StoreResult<()> {
        let revoked = store
            .revoked_jtis(Timestamp::now())
            .await?
            .into_iter()
            .map(|r| (r.jti, r.expires_at.as_millis() / 1000))
            .collect();
        self.revoked.store(Arc::new(revoked));
        Ok(())
    }

    /// Reloads the trusted issuers, keeping the cached keys of those whose JWKS URI did
    /// not change and fetching the others' in the background.
    pub async fn reload_issuers(&self, store: &SqlStore) -> StoreResult<()> {
        let current = self.issuers.load_full();
        let mut by_account: HashMap<AccountId, Vec<Arc<IssuerKeys>>> = HashMap::new();
        for config in store.all_trusted_issuers().await? {
            let kept = current.get(&config.account_id).and_then(|list| {
                list.iter().find(|i| i.config.id == config.id && i.config.jwks_uri == config.jwks_uri).cloned()
            });
            let entry = match kept {
                Some(existing)
                    if existing.config.audience == config.audience
                        && existing.config.scopes_claim == config.scopes_claim =>
                {
                    existing
                }
                _ => {
                    let fresh = Arc::new(IssuerKeys::new(config.clone(), self.kid_refresh_interval));
                    self.spawn_refresh(&fresh);
                    fresh
                }
            };
            by_account.entry(config.account_id).or_default().push(entry);
        }
        self.issuers.store(Arc::new(by_account));
        Ok(())
    }

    fn spawn_refresh(&self, issuer: &Arc<IssuerKeys>) {
        let (issuer, fetcher) = (Arc::clone(issuer), Arc::clone(&self.fetcher));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { issuer.refresh(&fetcher).await });
        }
    }

    /// Refetches every trusted issuer's JWKS (the periodic refresh).
    pub async fn refresh_all_jwks(&self) {
        let issuers = self.issuers.load_full();
        for issuer in issuers.values().flatten() {
            issuer.refresh(&self.fetcher).await;
        }
    }

    /// Verifies one of this server's access tokens: signature, `typ`, `iss`, `aud`
    /// (this account's when given, else any account's), time, revocation and client.
    pub fn verify_access_token(
        &self,
        presented: &[u8],
        now: Timestamp,
        account: Option<AccountId>,
    ) -> Result<Arc<VerifiedJwt>, Denial> {
        let expected_aud = account.map(audience);
        let expect = Expect { issuer: &self.issuer, audience: expected_aud.as_deref(), typ: Some(ACCESS_TOKEN_TYPES) };
        let ring = self.keyring.load();
        let (claims, kid): (AccessClaims, String) = jwt::verify(presented, &ring.verify, &expect).map_err(|e| {
            // Expiry is checked before the audience: another account's expired token
            // must still read as unknown (SPEC §12).
            let d = denial(e);
            match &expected_aud {
                Some(aud) if d == Denial::Expired && !jwt::peek_audience(presented).contains(aud) => Denial::NotFound,
                _ => d,
            }
        })?;
        let account_id = account_of_audience(&claims.aud).ok_or(Denial::NotFound)?;
        let client_id = claims.client_id.parse().map_err(|_| Denial::NotFound)?;
        let scopes = claims.scope.split_ascii_whitespace().map(str::to_string).collect();
        let verified = VerifiedJwt {
            kid,
            issuer: None,
            account_id,
            scopes_header: HeaderValue::from_str(&claims.scope).map_err(|_| Denial::NotFound)?,
            token_id_header: HeaderValue::from_str(&claims.jti).ok(),
            subject_header: HeaderValue::from_str(&claims.sub).ok(),
            subject: claims.sub,
            jti: Some(claims.jti),
            client_id: Some(client_id),
            scopes,
            issued_at: Some(claims.iat),
            expires_at: claims.exp,
            not_before: None,
        };
        self.still_current(&verified, now)?;
        Ok(Arc::new(verified))
    }

    /// Whether the key (and, for an IdP token, the trusted issuer) that verified a cached
    /// token is still loaded: a rotated-out key, an issuer removed or reconfigured, or a
    /// key the IdP no longer publishes sends the token through full verification again.
    fn verified_by_current_key(&self, jwt: &VerifiedJwt) -> bool {
        match &jwt.issuer {
            None => self.keyring.load().verify.contains_key(&jwt.kid),
            Some(issuer) => {
                issuer.keys().contains_key(&jwt.kid)
                    && self
                        .issuers
                        .load()
                        .get(&jwt.account_id)
                        .is_some_and(|list| list.iter().any(|i| Arc::ptr_eq(i, issuer)))
            }
        }
    }

    /// Revocation and the client's existence: checked on every use.
    fn still_current(&self, jwt: &VerifiedJwt, now: Timestamp) -> Result<(), Denial> {
        jwt.still_valid(now.as_millis() / 1000)?;
        if jwt.jti.as_deref().is_some_and(|jti| self.is_revoked(jti)) {
            return Err(Denial::Revoked);
        }
        if let Some(client) = jwt.client_id
            && self.clients.load().by_id.get(&client).is_none_or(|c| c.client.account_id != jwt.account_id)
        {
            return Err(Denial::Revoked);
        }
        Ok(())
    }

    /// A JWT presented at the gateway for `account`: one of our access tokens or a token
    /// of one of the account's trusted issuers, then the rule's scopes.
    pub fn verify_bearer_jwt(
        &self,
        presented: &[u8],
        now: Timestamp,
        account: AccountId,
        required: &[String],
    ) -> Result<Arc<VerifiedJwt>, Denial> {
        if presented.len() > jwt::MAX_JWT_BYTES {
            return Err(Denial::Malformed);
        }
        let cache_key = Digest::of(presented).0;
        let verified = match self.verified.get(&cache_key).map(|e| Arc::clone(e.value())) {
            Some(hit) if hit.account_id == account && self.verified_by_current_key(&hit) => {
                self.still_current(&hit, now)?;
                hit
            }
            _ => {
                let verified = self.verify_uncached(presented, now, account)?;
                if self.verified.len() >= VERIFIED_CACHE_MAX {
                    self.verified.clear();
                }
                self.verified.insert(cache_key, Arc::clone(&verified));
                verified
            }
        };
        match required.iter().find(|scope| !grants(&verified.scopes, scope)) {
            Some(missing) => Err(Denial::InsufficientScope(missing.clone())),
            None => Ok(verified),
        }
    }

    fn verify_uncached(
        &self,
        presented: &[u8],
        now: Timestamp,
        account: AccountId,
    ) -> Result<Arc<VerifiedJwt>, Denial> {
        let iss = jwt::peek_issuer(presented).ok_or(Denial::Malformed)?;
        if iss == self.issuer {
            return self.verify_access_token(presented, now, Some(account));
        }
        let issuers = self.issuers.load();
        let issuer = issuers
            .get(&account)
            .and_then(|list| list.iter().find(|i| i.config.issuer == iss))
            .ok_or(Denial::NotFound)?;
        let expect = Expect { issuer: &issuer.config.issuer, audience: Some(&issuer.config.audience), typ: None };
        let (claims, kid): (serde_json::Map<String, serde_json::Value>, String) =
            jwt::verify(presented, &issuer.keys(), &expect).map_err(|e| {
                if e == JwtError::UnknownKey {
                    issuer.unknown_kid(&self.fetcher);
                }
                denial(e)
            })?;
        let scopes: Vec<String> = match claims.get(&issuer.config.scopes_claim) {
            Some(serde_json::Value::String(s)) => s.split_ascii_whitespace().map(str::to_string).collect(),
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(|v| v.as_str()).map(str::to_string).collect()
            }
            _ => Vec::new(),
        };
        let subject = claims.get("sub").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let jti = claims.get("jti").and_then(|v| v.as_str()).map(str::to_string);
        let verified = VerifiedJwt {
            kid,
            issuer: Some(Arc::clone(issuer)),
            account_id: account,
            scopes_header: HeaderValue::from_str(&scopes.join(" ")).map_err(|_| Denial::NotFound)?,
            token_id_header: jti.as_deref().and_then(|j| HeaderValue::from_str(j).ok()),
            subject_header: HeaderValue::from_str(&subject).ok(),
            subject,
            jti: None,
            client_id: None,
            scopes,
            issued_at: claims.get("iat").and_then(serde_json::Value::as_i64),
            expires_at: claims.get("exp").and_then(serde_json::Value::as_i64).ok_or(Denial::NotFound)?,
            not_before: claims.get("nbf").and_then(serde_json::Value::as_i64),
        };
        verified.still_valid(now.as_millis() / 1000)?;
        Ok(Arc::new(verified))
    }

    /// Issues an access token to `client` for `scopes` (already checked to be its own).
    pub fn issue(
        &self,
        client: &OAuthClient,
        scopes: &[String],
        lifetime_seconds: u64,
        now: Timestamp,
    ) -> Result<(String, AccessClaims), IssueError> {
        let signer = self.signer().ok_or(IssueError::NoSigningKey)?;
        let iat = now.as_millis() / 1000;
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: client.client_id.to_string(),
            aud: audience(client.account_id),
            exp: iat + i64::try_from(lifetime_seconds).unwrap_or(i64::MAX / 2),
            iat,
            jti: uuid::Uuid::now_v7().to_string(),
            client_id: client.client_id.to_string(),
            scope: scopes.join(" "),
        };
        let token = signer.sign(&claims).map_err(|_| IssueError::Signing)?;
        Ok((token, claims))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("no signing key is loaded")]
    NoSigningKey,
    #[error("signing failed")]
    Signing,
}

/// How a JWT failure is reported by the gateway (every one is a 401 there).
fn denial(e: JwtError) -> Denial {
    match e {
        JwtError::Malformed => Denial::Malformed,
        JwtError::Expired => Denial::Expired,
        _ => Denial::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> OAuthState {
        OAuthState::default()
    }

    #[test]
    fn retired_keys_leave_the_jwks_when_their_tokens_have_expired() {
        let state = state();
        let t0 = Timestamp::from_millis(1_700_000_000_000);
        let mut old = keys::generate(keys::SigningAlg::EdDSA, &state.master_key, t0).unwrap();
        let new = keys::generate(keys::SigningAlg::ES256, &state.master_key, t0.plus_secs(10)).unwrap();
        old.retired_at = Some(t0.plus_secs(10));
        old.publish_until = Some(t0.plus_secs(10 + 900 + 61));
        state.set_keys(&[old.clone(), new.clone()]);
        assert_eq!(state.signer().unwrap().kid, new.kid, "the newest unretired key signs");
        let kids = |at: Timestamp| -> Vec<String> {
            state.jwks(at)["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(kids(t0.plus_secs(900)), vec![old.kid.clone(), new.kid.clone()]);
        assert_eq!(kids(t0.plus_secs(10 + 900 + 61)), vec![new.kid.clone()]);
    }

    #[test]
    fn access_tokens_verify_only_for_their_account_and_while_not_revoked() {
        let state = state();
        let now = Timestamp::now();
        state.set_keys(&[keys::generate(keys::SigningAlg::EdDSA, &state.master_key, now).unwrap()]);
        let account = AccountId::new();
        let client = OAuthClient {
            client_id: ClientId::new(),
            account_id: account,
            name: "c".into(),
            scopes: vec![],
            created_at: now,
            disabled_at: None,
        };
        state.set_clients(vec![(client.clone(), Digest::of(b"x"))]);
        let (token, claims) = state.issue(&client, &["messages:send".to_string()], 900, now).unwrap();
        let required = ["messages:send".to_string()];
        assert!(state.verify_bearer_jwt(token.as_bytes(), now, account, &required).is_ok());
        // Served from the cache now: the same answers.
        assert!(state.verify_bearer_jwt(token.as_bytes(), now, account, &required).is_ok());
        assert!(state.verify_bearer_jwt(token.as_bytes(), now, AccountId::new(), &required).is_err());
        let more = ["groups:write".to_string()];
        assert_eq!(
            state.verify_bearer_jwt(token.as_bytes(), now, account, &more).unwrap_err(),
            Denial::InsufficientScope("groups:write".into())
        );
        let later = now.plus_secs(900 + 61);
        assert_eq!(state.verify_bearer_jwt(token.as_bytes(), later, account, &required).unwrap_err(), Denial::Expired);
        state.revoked.store(Arc::new(HashMap::from([(claims.jti.clone(), claims.exp)])));
        assert_eq!(state.verify_bearer_jwt(token.as_bytes(), now, account, &required).unwrap_err(), Denial::Revoked);
        state.revoked.store(Arc::new(HashMap::new()));
        state.set_clients(vec![]);
        assert_eq!(state.verify_bearer_jwt(token.as_bytes(), now, account, &required).unwrap_err(), Denial::Revoked);
        state.set_clients(vec![(client.clone(), Digest::of(b"x"))]);
        assert!(state.verify_bearer_jwt(token.as_bytes(), now, account, &required).is_ok());
        // Its key rotated out of the ring (not merely retired): the cached verification goes.
        state.set_keys(&[keys::generate(keys::SigningAlg::EdDSA, &state.master_key, now).unwrap()]);
        assert_eq!(state.verify_bearer_jwt(token.as_bytes(), now, account, &required).unwrap_err(), Denial::NotFound);
    }
}
