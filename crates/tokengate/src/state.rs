//! The gateway's in-memory view of the store: instances with their token digests, and
//! per account the security token and IP allowlist. The hot path reads only this.
//!
//! It is refreshed entity by entity when a write commits (on the node that wrote it at
//! once, on other nodes through PostgreSQL change notices), and fully after start-up
//! and after the notice connection was lost, because notices sent meanwhile are gone.

use std::collections::HashMap;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::HeaderValue;
use http::uri::{Authority, Scheme};
use tokengate_core::token;
use tokengate_core::{
    AccountId, Credential, Denial, Digest, InstanceId, IpAllowlist, RuleSet, SecurityTokenPolicy, Timestamp, TokenId,
    TokenKind,
};

use crate::ratelimit::ClusterLimits;
use crate::store::{
    AccountPolicyRecord, AdminTokenStore, ApiToken, Change, GatewayInstance, ImportStore, InstanceStore, RateLimit,
    SecurityTokenStore, SqlStore, StoreResult, TokenStore,
};

/// Where an instance forwards to, parsed once when the instance is loaded.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// The upstream URL's path without its trailing `/` (often empty).
    pub base_path: String,
    /// `Host` of every forwarded request: the upstream's authority.
    pub host_header: HeaderValue,
}

#[derive(Debug, thiserror::Error)]
#[error("upstream_url must be an absolute http:// or https:// URL without query or fragment")]
pub struct BadUpstream;

impl Upstream {
    pub fn parse(url: &str) -> Result<Upstream, BadUpstream> {
        if url.len() > 2048 || url.contains(['?', '#']) {
            return Err(BadUpstream);
        }
        let uri: http::Uri = url.parse().map_err(|_| BadUpstream)?;
        let scheme = uri.scheme().filter(|s| **s == Scheme::HTTP || **s == Scheme::HTTPS).ok_or(BadUpstream)?.clone();
        let authority = uri.authority().ok_or(BadUpstream)?.clone();
        if authority.host().is_empty() || authority.as_str().contains('@') {
            return Err(BadUpstream);
        }
        let host_header = HeaderValue::from_str(authority.as_str()).map_err(|_| BadUpstream)?;
        Ok(Upstream { scheme, authority, base_path: uri.path().trim_end_matches('/').to_string(), host_header })
    }
}

/// One instance as the gateway enforces it.
#[derive(Debug)]
pub struct LiveInstance {
    /// When it was read from the store (see [`GatewayState::resync`]).
    stamp: u64,
    pub id: InstanceId,
    pub account_id: AccountId,
    pub token_digest: Digest,
    pub upstream: Upstream,
    pub rules: RuleSet,
}

/// One account's gateway policy.
#[derive(Debug, Default)]
pub struct AccountPolicy {
    /// When it was read from the store (see [`GatewayState::resync`]).
    stamp: u64,
    pub security_token: SecurityTokenPolicy,
    pub allowlist: IpAllowlist,
}

/// The shape of a key an import accepts: 8 to 512 visible ASCII characters.
pub fn importable(key: &[u8]) -> bool {
    (8..=512).contains(&key.len()) && key.iter().all(|b| b.is_ascii_graphic())
}

/// How long a revoked or expired token is still recognised (and refused with its reason).
pub const TOMBSTONE_SECONDS: i64 = 7 * 24 * 3600;

/// An API key or personal token as the gateway checks it.
pub struct LiveToken {
    /// The full digest; the map is keyed by its first eight bytes.
    digest: Digest,
    pub credential: Credential,
    /// `X-Tokengate-Scopes`, built once per distinct scope list.
    pub scopes_header: Arc<HeaderValue>,
    rate: Option<Arc<(RateLimit, DefaultDirectRateLimiter)>>,
    /// When it was read from the store (see [`GatewayState::resync`]).
    stamp: u64,
    /// An imported key (SPEC §15): found by the digest of its original text.
    imported: bool,
}

/// Hashes a digest prefix by using it as is: SHA-256 output is already uniform, and
/// nobody can choose the digests of the tokens they present.
#[derive(Default)]
pub struct PrefixHasher(u64);

impl std::hash::Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

fn key(digest: &Digest) -> u64 {
    digest.prefix()
}

/// Scope lists and their header values, shared between tokens during a load.
type ScopeSets = HashMap<Vec<String>, (Arc<[String]>, Arc<HeaderValue>)>;

impl std::fmt::Debug for LiveToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveToken").field("id", &self.credential.id).finish_non_exhaustive()
    }
}

impl LiveToken {
    /// Takes one request from the token's rate limit: the deployment's when nodes share
    /// PostgreSQL ([`ClusterLimits`]), else this node's GCRA limiter.
    fn take(&self, cluster: Option<&ClusterLimits>, now: Timestamp) -> Result<(), Denial> {
        let Some(rate) = &self.rate else { return Ok(()) };
        if let Some(cluster) = cluster {
            return cluster
                .take(self.credential.id, rate.0, now)
                .map_err(|retry_after_seconds| Denial::RateLimited { retry_after_seconds });
        }
        rate.1.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Denial::RateLimited { retry_after_seconds: wait.as_secs() + u64::from(wait.subsec_nanos() > 0) }
        })
    }
}

fn limiter(rate: RateLimit) -> Option<Arc<(RateLimit, DefaultDirectRateLimiter)>> {
    let burst = NonZeroU32::new(rate.limit)?;
    let period = Duration::from_secs(u64::from(rate.window_seconds)).checked_div(rate.limit)?;
    let quota = Quota::with_period(period.max(Duration::from_nanos(1)))?.allow_burst(burst);
    Some(Arc::new((rate, RateLimiter::direct(quota))))
}

/// What holds a secret other than an API key (see `GatewayState::holders`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    Instance(InstanceId),
    Account(AccountId),
}

/// What a refresh may remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Removed {
    Instance(InstanceId),
    Account(AccountId),
    Token(u64),
}

/// Something loaded from the store, stamped with when it was read.
trait Stamped {
    fn stamp(&self) -> u64;
}

macro_rules! stamped {
    ($($t:ty),*) => {$(impl Stamped for $t { fn stamp(&self) -> u64 { self.stamp } })*};
}
stamped!(LiveInstance, AccountPolicy, LiveToken);

/// Puts `value` unless what the map holds was read later, or a later refresh removed it.
fn put_newer<K, V, S>(map: &DashMap<K, Arc<V>, S>, removed: &DashMap<Removed, u64>, key: K, tag: Removed, value: V)
where
    K: Eq + std::hash::Hash,
    V: Stamped,
    S: std::hash::BuildHasher + Clone,
{
    let stamp = value.stamp();
    match map.entry(key) {
        dashmap::Entry::Occupied(mut held) => {
            if held.get().stamp() <= stamp {
                held.insert(Arc::new(value));
            }
        }
        dashmap::Entry::Vacant(slot) => {
            if removed.get(&tag).is_none_or(|at| *at <= stamp) {
                slot.insert(Arc::new(value));
            }
        }
    }
}

/// Removes what the map holds unless it was read later than `stamp`; remembers the
/// removal so that an older read does not bring it back.
fn remove_older<K, V, S>(
    map: &DashMap<K, Arc<V>, S>,
    removed: &DashMap<Removed, u64>,
    key: &K,
    tag: Removed,
    stamp: u64,
) where
    K: Eq + std::hash::Hash,
    V: Stamped,
    S: std::hash::BuildHasher + Clone,
{
    map.remove_if(key, |_, held| held.stamp() <= stamp);
    let mut at = removed.entry(tag).or_insert(stamp);
    *at = (*at).max(stamp);
}

#[derive(Default)]
pub struct GatewayState {
    /// Looked up twice per gateway request: foldhash (seeded per process) rather than
    /// SipHash. Only ids the server made are inserted; what a client names is only
    /// looked up, so no client can crowd a bucket.
    instances: DashMap<InstanceId, Arc<LiveInstance>, foldhash::fast::RandomState>,
    accounts: DashMap<AccountId, Arc<AccountPolicy>, foldhash::fast::RandomState>,
    /// Keyed by the first eight bytes of the secret's digest: a presented token is found
    /// by hash lookup, then its full digest compared in constant time. (Two live tokens
    /// sharing 64 bits of SHA-256 — odds of 1 in 10^7 at a million tokens — would shadow
    /// each other; the full 32-byte key would cost ~50 MB more at that size.)
    tokens: DashMap<u64, Arc<LiveToken>, std::hash::BuildHasherDefault<PrefixHasher>>,
    /// Who holds an instance token or a `Client-Token`, by the first eight bytes of its
    /// digest: hints for introspection, each checked against the instance or account it
    /// names (full digest, constant time). A hint outlives a rotation or a removal until
    /// the next resync prunes it; checking it against what is held makes that harmless.
    holders: DashMap<u64, Vec<Holder>, std::hash::BuildHasherDefault<PrefixHasher>>,
    admin_tokens: ArcSwap<Vec<(String, Digest)>>,
    /// The read clock: every refresh takes the next stamp before it reads the store,
    /// and an object read under an older stamp never replaces one read under a newer
    /// stamp (see [`GatewayState::resync`]).
    clock: AtomicU64,
    /// Objects a refresh removed, with its stamp: a resync that read them before the
    /// removal does not bring them back. Pruned by every resync.
    removed: DashMap<Removed, u64>,
    /// Full resyncs run one at a time (nothing else waits for them).
    resyncing: tokio::sync::Mutex<()>,
    /// Whether any imported key was ever loaded: until then a string without a
    /// tokengate prefix costs no digest.
    has_imported: std::sync::atomic::AtomicBool,
    /// Signing keys, OAuth clients, revoked access tokens and trusted issuers.
    pub oauth: crate::oauth::OAuthState,
    /// Set on PostgreSQL: rate limits counted across the nodes.
    cluster: std::sync::OnceLock<Arc<ClusterLimits>>,
}

impl GatewayState {
    pub fn new(oauth: crate::oauth::OAuthState) -> GatewayState {
        GatewayState { oauth, ..GatewayState::default() }
    }

    /// Counts rate limits across the nodes from now on (set once, at start-up).
    pub fn count_limits_across(&self, cluster: Arc<ClusterLimits>) {
        let _ = self.cluster.set(cluster);
    }

    pub fn instance(&self, id: &InstanceId) -> Option<Arc<LiveInstance>> {
        self.instances.get(id).map(|e| Arc::clone(e.value()))
    }

    pub fn account(&self, id: &AccountId) -> Option<Arc<AccountPolicy>> {
        self.accounts.get(id).map(|e| Arc::clone(e.value()))
    }

    /// The id of the admin token whose digest this is, compared in constant time.
    pub fn admin_token_id(&self, digest: &Digest) -> Option<String> {
        let tokens = self.admin_tokens.load();
        let mut found = None;
        for (id, d) in tokens.iter() {
            if d.ct_eq(digest) {
                found = Some(id.clone());
            }
        }
        found
    }

    /// The instance whose token has this digest (introspection of a `tgi_` token; the
    /// gateway finds instances by id): found by hash lookup, compared in constant time.
    pub fn instance_with_token(&self, digest: &Digest) -> Option<Arc<LiveInstance>> {
        let mut found = None;
        for holder in self.holders_of(digest) {
            let Holder::Instance(id) = holder else { continue };
            if let Some(instance) = self.instance(&id).filter(|i| i.token_digest.ct_eq(digest)) {
                found = Some(instance);
            }
        }
        found
    }

    /// The account whose `Client-Token` this is, current or within its grace period, and
    /// when that grace ends (introspection of a `tgc_` token): found by hash lookup,
    /// compared in constant time.
    pub fn client_token_owner(&self, digest: &Digest, now: Timestamp) -> Option<(AccountId, Option<Timestamp>)> {
        let mut found = None;
        for holder in self.holders_of(digest) {
            let Holder::Account(id) = holder else { continue };
            let Some(policy) = self.account(&id) else { continue };
            let SecurityTokenPolicy::Configured { current, previous, .. } = &policy.security_token else { continue };
            let in_grace = previous.as_ref().filter(|(p, until)| p.ct_eq(digest) & (now < *until));
            if current.ct_eq(digest) {
                found = Some((id, None));
            } else if let Some((_, until)) = in_grace {
                found = Some((id, Some(*until)));
            }
        }
        found
    }

    /// The hints for a digest (copied: no map guard is held while they are checked).
    fn holders_of(&self, digest: &Digest) -> Vec<Holder> {
        self.holders.get(&key(digest)).map(|e| e.value().clone()).unwrap_or_default()
    }

    /// Notes that `holder` holds the secret with this digest.
    fn hint(&self, digest: &Digest, holder: Holder) {
        let mut held = self.holders.entry(key(digest)).or_default();
        if !held.contains(&holder) {
            held.push(holder);
        }
    }

    /// Whether a hint still names what its holder holds.
    fn still_holds(&self, slot: u64, holder: Holder) -> bool {
        match holder {
            Holder::Instance(id) => self.instance(&id).is_some_and(|i| key(&i.token_digest) == slot),
            Holder::Account(id) => self.account(&id).is_some_and(|a| match &a.security_token {
                SecurityTokenPolicy::Configured { current, previous, .. } => {
                    key(current) == slot || previous.as_ref().is_some_and(|(p, _)| key(p) == slot)
                }
                SecurityTokenPolicy::None => false,
            }),
        }
    }

    pub fn instance_count(&self) -> usize {
        self.instances.len()
    }

    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Checks a presented API key or personal token: format and checksum, lookup by
    /// digest, revocation, expiry, account and instance, client address, scopes, and
    /// finally the rate limit (only a request that would pass spends from it).
    pub fn verify_token(
        &self,
        presented: &[u8],
        now: Timestamp,
        account: Option<AccountId>,
        instance: Option<InstanceId>,
        client: Option<tokengate_core::ClientIp>,
        required: &[String],
    ) -> Result<Arc<LiveToken>, (Denial, Option<TokenId>)> {
        let live = self.find_token(presented).map_err(|denial| (denial, None))?;
        match live
            .credential
            .check(now, account, instance, client, required)
            .and_then(|()| live.take(self.cluster.get().map(Arc::as_ref), now))
        {
            Ok(()) => Ok(live),
            // Another account's token is not counted against it here.
            Err(Denial::NotForHere) => Err((Denial::NotForHere, None)),
            Err(denial) => Err((denial, Some(live.credential.id))),
        }
    }

    /// The API key or personal token whose secret this is, whatever its state (no rate
    /// limit spent): for introspection and revocation.
    pub fn lookup_token(&self, presented: &[u8]) -> Option<Arc<LiveToken>> {
        self.find_token(presented).ok()
    }

    /// Format and checksum, then lookup by digest (full digest compared in constant time).
    /// A string without any tokengate prefix is looked up as an imported key, by the
    /// SHA-256 of its text (SPEC §15), and only ever matches an imported key.
    fn find_token(&self, presented: &[u8]) -> Result<Arc<LiveToken>, Denial> {
        let (digest, imported) = match TokenKind::of(presented) {
            Some(kind) => (token::parse(presented, kind.prefix()).map_err(|_| Denial::Malformed)?, false),
            None if self.may_be_imported(presented) => (Digest::of(presented), true),
            None => return Err(Denial::Malformed),
        };
        self.tokens
            .get(&key(&digest))
            .map(|e| Arc::clone(e.value()))
            .filter(|live| live.imported == imported && live.digest.ct_eq(&digest))
            .ok_or(Denial::NotFound)
    }

    /// Whether a presented string could be an imported key: no tokengate prefix, the
    /// shape imports accept, and imported keys exist at all.
    pub fn may_be_imported(&self, presented: &[u8]) -> bool {
        self.has_imported.load(std::sync::atomic::Ordering::Relaxed)
            && token::Prefix::of(presented).is_none()
            && importable(presented)
    }

    /// The stamp of a read about to start: later than every stamp taken before.
    fn next_stamp(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Replaces everything with what the store holds now, without stopping anything
    /// else: the gateway keeps serving from the maps, and changes keep being applied
    /// while a resync streams a million tokens.
    ///
    /// Every refresh takes a stamp before it reads, and what it puts carries that
    /// stamp; an object read under an older stamp never replaces one read under a
    /// newer stamp, nor brings back one a newer refresh removed. So a change applied
    /// while a resync runs (a revocation, say) is never undone by the resync's older
    /// copy. When the pass is over, what it did not see and no newer refresh put is
    /// gone from the store, and is dropped.
    pub async fn resync(&self, store: &SqlStore) -> StoreResult<()> {
        let _one_at_a_time = self.resyncing.lock().await;
        let stamp = self.next_stamp();
        let policies = store.all_account_policies().await?;
        let instances = store.all_gateway_instances().await?;
        self.admin_tokens.store(Arc::new(store.admin_token_digests().await?));
        for record in policies {
            self.put_account(record, stamp);
        }
        for record in instances {
            self.put_instance(record, stamp);
        }
        // Tokens stream in (a million rows are never held at once).
        let mut scope_sets = ScopeSets::new();
        store
            .for_each_live_token(Timestamp::now().plus_secs(-TOMBSTONE_SECONDS), &mut |token, digest| {
                self.put_token(token, digest, stamp, &mut scope_sets);
            })
            .await?;
        self.tokens.retain(|_, t| t.stamp >= stamp);
        self.accounts.retain(|_, a| a.stamp >= stamp);
        self.instances.retain(|_, i| i.stamp >= stamp);
        // Hints left by rotations and removals since the last pass.
        self.holders.retain(|slot, held| {
            held.retain(|h| self.still_holds(*slot, *h));
            !held.is_empty()
        });
        // Removals older than this pass can no longer be undone by any read.
        self.removed.retain(|_, at| *at > stamp);
        self.oauth.reload_all(store).await
    }

    /// Reloads what one committed change touched.
    pub async fn apply(&self, store: &SqlStore, change: Change) -> StoreResult<()> {
        let stamp = self.next_stamp();
        match change {
            Change::Account(id) => match store.account_policy(id).await? {
                Some(record) => self.put_account(record, stamp),
                None => remove_older(&self.accounts, &self.removed, &id, Removed::Account(id), stamp),
            },
            Change::Instance(id) => match store.gateway_instance(id).await? {
                Some(record) => {
                    let account = record.instance.account_id;
                    if !self.accounts.contains_key(&account)
                        && let Some(policy) = store.account_policy(account).await?
                    {
                        self.put_account(policy, stamp);
                    }
                    self.put_instance(record, stamp);
                }
                None => remove_older(&self.instances, &self.removed, &id, Removed::Instance(id), stamp),
            },
            Change::Token(id) => {
                if let Some((token, digest)) = store.live_token(id).await? {
                    self.put_token(token, digest, stamp, &mut ScopeSets::new());
                }
            }
            Change::TokenBatch { account, first, last } => {
                let mut scope_sets = ScopeSets::new();
                for (token, digest) in store.live_tokens_between(account, first, last).await? {
                    self.put_token(token, digest, stamp, &mut scope_sets);
                }
            }
            Change::AdminTokens => self.admin_tokens.store(Arc::new(store.admin_token_digests().await?)),
            Change::SigningKeys => self.oauth.reload_keys(store).await?,
            Change::OAuthClients => self.oauth.reload_clients(store).await?,
            Change::RevokedJtis => self.oauth.reload_revoked(store).await?,
            Change::TrustedIssuers => self.oauth.reload_issuers(store).await?,
        }
        Ok(())
    }

    fn put_account(&self, record: AccountPolicyRecord, stamp: u64) {
        let allowlist = IpAllowlist::parse(&record.ip_allowlist).unwrap_or_else(|e| {
            // Validated on the way in; a bad stored entry must fail closed, not open.
            tracing::error!(account = %record.account_id, error = %e, "stored IP allowlist is invalid; denying all");
            IpAllowlist::parse(&["255.255.255.255/32"]).unwrap_or_default()
        });
        let security_token = match record.security_token {
            None => SecurityTokenPolicy::None,
            Some(t) => SecurityTokenPolicy::Configured { active: t.active, current: t.digest, previous: t.previous },
        };
        let id = record.account_id;
        if let SecurityTokenPolicy::Configured { current, previous, .. } = &security_token {
            self.hint(current, Holder::Account(id));
            if let Some((digest, _)) = previous {
                self.hint(digest, Holder::Account(id));
            }
        }
        let policy = AccountPolicy { stamp, security_token, allowlist };
        put_newer(&self.accounts, &self.removed, id, Removed::Account(id), policy);
    }

    /// Adds or replaces many tokens, sharing identical scope lists between them: also
    /// what this node has just committed (an import batch), without reading it back;
    /// the other nodes load it through the change notice.
    pub fn load_tokens(&self, tokens: impl IntoIterator<Item = (ApiToken, Digest)>) {
        let stamp = self.next_stamp();
        let mut scope_sets = ScopeSets::new();
        for (token, digest) in tokens {
            self.put_token(token, digest, stamp, &mut scope_sets);
        }
    }

    /// Adds or replaces a token. `scope_sets` shares identical scope lists between tokens
    /// during a bulk load. Revoked and expired tokens stay for [`TOMBSTONE_SECONDS`], so
    /// that the verify API can tell `revoked` and `expired` from `not_found`.
    fn put_token(&self, token: ApiToken, digest: Digest, stamp: u64, scope_sets: &mut ScopeSets) {
        let horizon = Timestamp::now().plus_secs(-TOMBSTONE_SECONDS);
        let slot = key(&digest);
        if token.revoked_at.is_some_and(|at| at <= horizon) || token.expires_at.is_some_and(|at| at <= horizon) {
            remove_older(&self.tokens, &self.removed, &slot, Removed::Token(slot), stamp);
            return;
        }
        let Ok(ip_allowlist) = IpAllowlist::parse(&token.ip_allowlist) else {
            tracing::error!(token = %token.id, "stored token allowlist is invalid; not accepting the token");
            remove_older(&self.tokens, &self.removed, &slot, Removed::Token(slot), stamp);
            return;
        };
        let (scopes, scopes_header) = match scope_sets.get(&token.scopes) {
            Some((scopes, header)) => (Arc::clone(scopes), Arc::clone(header)),
            None => {
                let scopes: Arc<[String]> = token.scopes.clone().into();
                let header = HeaderValue::from_str(&token.scopes.join(" ")).unwrap_or(HeaderValue::from_static(""));
                let header = Arc::new(header);
                scope_sets.insert(token.scopes, (Arc::clone(&scopes), Arc::clone(&header)));
                (scopes, header)
            }
        };
        // A reload keeps the limiter's state unless the limit itself changed.
        let previous = self.tokens.get(&key(&digest)).and_then(|e| e.value().rate.clone());
        let rate = token.rate_limit.and_then(|rl| match previous {
            Some(kept) if kept.0 == rl => Some(kept),
            _ => limiter(rl),
        });
        let credential = Credential {
            id: token.id,
            account_id: token.account_id,
            kind: token.kind,
            scopes,
            expires_at: token.expires_at,
            revoked_at: token.revoked_at,
            ip_allowlist,
            instance_ids: token.instance_ids.into_boxed_slice(),
        };
        let imported = token.format == crate::store::TokenFormat::Imported;
        if imported {
            self.has_imported.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let live = LiveToken { digest, credential, scopes_header, rate, stamp, imported };
        put_newer(&self.tokens, &self.removed, slot, Removed::Token(slot), live);
    }

    fn put_instance(&self, record: GatewayInstance, stamp: u64) {
        let GatewayInstance { instance, token_digest } = record;
        let upstream = Upstream::parse(&instance.upstream_url);
        let rules = RuleSet::new(instance.rules);
        match (upstream, rules) {
            (Ok(upstream), Ok(rules)) => {
                let id = instance.id;
                self.hint(&token_digest, Holder::Instance(id));
                let live = LiveInstance { stamp, id, account_id: instance.account_id, token_digest, upstream, rules };
                put_newer(&self.instances, &self.removed, id, Removed::Instance(id), live);
            }
            _ => {
                tracing::error!(instance = %instance.id, "stored instance is invalid; not serving it");
                let id = instance.id;
                remove_older(&self.instances, &self.removed, &id, Removed::Instance(id), stamp);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;
    use tokengate_core::{AuditId, TokenKind};

    use super::*;
    use crate::store::{Account, AccountStore, AuditEntry};

    fn api_token(account: AccountId) -> ApiToken {
        crate::store::test_token(TokenKind::ApiKey, account, None)
    }

    fn secret() -> (Vec<u8>, Digest) {
        let secret = token::generate(TokenKind::ApiKey.prefix());
        let bytes = secret.expose_secret().as_bytes().to_vec();
        let digest = Digest::of(&bytes);
        (bytes, digest)
    }

    /// What a refresh read later wins over what an earlier one read, whichever lands
    /// first: a resync's older copy neither un-revokes a token nor brings back a
    /// removed instance, and its sweep keeps what newer refreshes put.
    #[test]
    fn an_older_read_never_replaces_a_newer_one() {
        let state = GatewayState::default();
        let account = AccountId::new();
        let (presented, digest) = secret();
        let token = api_token(account);
        let resync = state.next_stamp();
        let apply = state.next_stamp();
        let revoked = ApiToken { revoked_at: Some(Timestamp::now()), ..token.clone() };
        state.put_token(revoked, digest, apply, &mut ScopeSets::new());
        state.put_token(token.clone(), digest, resync, &mut ScopeSets::new());
        let held = state.lookup_token(&presented).unwrap();
        assert!(held.credential.revoked_at.is_some(), "the resync's older copy undid a revocation");

        let id = InstanceId::new();
        let slot = Removed::Instance(id);
        remove_older(&state.instances, &state.removed, &id, slot, apply);
        let upstream = Upstream::parse("http://127.0.0.1:9").unwrap();
        let stale = LiveInstance {
            stamp: resync,
            id,
            account_id: account,
            token_digest: digest,
            upstream,
            rules: RuleSet::new(vec![]).unwrap(),
        };
        put_newer(&state.instances, &state.removed, id, slot, stale);
        assert!(state.instance(&id).is_none(), "the resync brought back a removed instance");

        // A token created while the resync ran (stamped after it) survives its sweep.
        let (fresh, fresh_digest) = secret();
        state.put_token(api_token(account), fresh_digest, state.next_stamp(), &mut ScopeSets::new());
        state.tokens.retain(|_, t| t.stamp >= resync);
        assert!(state.lookup_token(&fresh).is_some());
    }

    /// Instance tokens and Client-Tokens are found by their digest, not by a scan: after
    /// a rotation the old secret is nobody's (the grace period aside), a removed
    /// instance's token is nobody's, and a resync prunes the hints they left.
    #[tokio::test]
    async fn secrets_are_found_by_digest_through_rotations_and_removals() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open_sqlite(dir.path()).await.unwrap();
        let state = GatewayState::default();
        let (account, id) = (AccountId::new(), InstanceId::new());
        let [first, second, third] = [secret().1, secret().1, secret().1];
        let instance = |digest: Digest| GatewayInstance {
            instance: crate::store::Instance {
                id,
                account_id: account,
                name: "i".into(),
                upstream_url: "http://127.0.0.1:9".into(),
                rules: vec![],
                created_at: Timestamp::now(),
                leaked_at: None,
            },
            token_digest: digest,
        };
        state.put_instance(instance(first), state.next_stamp());
        assert_eq!(state.instance_with_token(&first).map(|i| i.id), Some(id));
        state.put_instance(instance(second), state.next_stamp());
        assert!(state.instance_with_token(&first).is_none(), "a rotated instance token still introspects");
        assert!(state.instance_with_token(&second).is_some());

        let now = Timestamp::now();
        let policy = |current: Digest, previous: Option<(Digest, Timestamp)>| AccountPolicyRecord {
            account_id: account,
            ip_allowlist: vec![],
            security_token: Some(crate::store::SecurityToken {
                active: true,
                digest: current,
                created_at: now,
                activated_at: Some(now),
                previous,
            }),
        };
        state.put_account(policy(first, None), state.next_stamp());
        assert_eq!(state.client_token_owner(&first, now), Some((account, None)));
        let until = now.plus_secs(60);
        state.put_account(policy(third, Some((first, until))), state.next_stamp());
        assert_eq!(state.client_token_owner(&first, now), Some((account, Some(until))), "the grace period");
        assert_eq!(state.client_token_owner(&first, until), None, "past the grace period");
        assert_eq!(state.client_token_owner(&third, now), Some((account, None)));
        assert_eq!(state.client_token_owner(&second, now), None, "an instance token is not a Client-Token");

        remove_older(&state.instances, &state.removed, &id, Removed::Instance(id), state.next_stamp());
        assert!(state.instance_with_token(&second).is_none(), "a removed instance's token still introspects");
        // The resync finds nothing in the store: every hint goes with what it named.
        assert!(state.holders.len() >= 3);
        state.resync(&store).await.unwrap();
        assert_eq!(state.holders.len(), 0);
        assert_eq!(state.client_token_owner(&third, now), None);
    }

    /// With many tokens streaming in a resync, a revocation committed meanwhile is
    /// enforced before the resync ends (nothing waits for it), and still is after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revocation_is_enforced_while_a_resync_runs() {
        const TOKENS: usize = 60_000;
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open_sqlite(dir.path()).await.unwrap();
        let audit = |action: &str, target: String| AuditEntry {
            id: AuditId::new(),
            account_id: None,
            at: Timestamp::now(),
            actor: "test".into(),
            action: action.into(),
            target,
            ip: None,
            detail: None,
        };
        let account = Account { id: AccountId::new(), name: "many".into(), created_at: Timestamp::now() };
        store.create_account(&account, &audit("account.created", account.id.to_string())).await.unwrap();
        let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(store.url()).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        let mut victim = None;
        for i in 0..TOKENS {
            let (presented, digest) = secret();
            let id = TokenId::new();
            sqlx::query(
                "INSERT INTO api_tokens (id, account_id, kind, name, digest, scopes, created_at) \
                 VALUES ($1, $2, 'api_key', 't', $3, '[\"messages:send\"]', $4)",
            )
            .bind(id.to_string())
            .bind(account.id.to_string())
            .bind(digest.0.to_vec())
            .bind(Timestamp::now().as_millis())
            .execute(&mut *tx)
            .await
            .unwrap();
            // The last ids are streamed last: the resync reaches this one late.
            if i == TOKENS - 1 {
                victim = Some((presented, id));
            }
        }
        tx.commit().await.unwrap();
        pool.close().await;
        let (presented, id) = victim.unwrap();

        let state = Arc::new(GatewayState::default());
        state.resync(&store).await.unwrap();
        assert_eq!(state.token_count(), TOKENS);
        let running = {
            let (state, store) = (Arc::clone(&state), store.clone());
            tokio::spawn(async move { state.resync(&store).await })
        };
        // Let the resync get going: it holds its lock and streams pages.
        while state.resyncing.try_lock().is_ok() && !running.is_finished() {
            tokio::task::yield_now().await;
        }
        store.revoke_token(id, Timestamp::now(), &audit("token.revoked", id.to_string())).await.unwrap();
        state.apply(&store, Change::Token(id)).await.unwrap();
        let enforced_during = !running.is_finished();
        assert!(state.lookup_token(&presented).unwrap().credential.revoked_at.is_some());
        tokio::time::timeout(Duration::from_secs(120), running).await.unwrap().unwrap().unwrap();
        assert!(enforced_during, "the revocation waited for the resync");
        assert!(state.lookup_token(&presented).unwrap().credential.revoked_at.is_some(), "the resync undid it");
        assert_eq!(state.token_count(), TOKENS);
    }
}
