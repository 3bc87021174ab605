//! The gateway: `ANY /instances/{id}/token/{instance_token}/{path…}` (SPEC §6).
//!
//! A request goes through named steps, top to bottom, each a small function with a
//! typed outcome ([`Gateway::handle`]); none of them touches the store:
//! `route` (instance and its token) → `admit_address` (the account's IP allowlist) →
//! `client_token` → `bearer` (route rules and the token they require) → `forward` (on
//! the worker's own upstream connections, see [`upstream`]) → `record` (usage and last
//! use, from the outcome; metrics from the [`Reason`] of a [`Rejection`]). Usage is
//! counted in memory (see [`crate::usage`]). Loops and header sizes are refused before,
//! for every route (see `server`).

mod decide;
mod idle;
pub mod lane;
mod proxy;
mod reject;
mod stats;
mod upgrade;
mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Request, Response};
use tokengate_core::token::{self, Prefix};
use tokengate_core::{
    ClientIp, ClientTokenCheck, Denial, InstanceId, IpAllowlist, Timestamp, TokenId, ViaMarker, canonical_tail,
};

pub use decide::is_decide_path;
pub use proxy::ErrorChain;
pub use reject::{Reason, Rejection, json_error};

use self::stats::GatewayMetrics;
use self::upstream::{PoolKey, UpstreamError, UpstreamPool};
use crate::egress::EgressPolicy;
use crate::limits::ClientBody;
use crate::oauth::VerifiedJwt;
use crate::state::{AccountPolicy, GatewayState, LiveInstance, LiveToken};
use crate::store::UsageKind;
use crate::usage::UsageRecorder;

/// The path prefix the gateway serves; everything else goes to the admin router.
pub const PREFIX: &str = "/instances/";

pub struct Gateway {
    pub state: Arc<GatewayState>,
    pub usage: Arc<UsageRecorder>,
    /// This worker's upstream connections (each worker has its own gateway).
    pool: UpstreamPool,
    /// The plain lane's upstream sockets (see [`lane`]).
    lane: lane::Upstreams,
    trusted_proxies: IpAllowlist,
    upstream_timeout: Duration,
    max_body_bytes: u64,
    via: ViaMarker,
    /// `Via`'s value as added to every forwarded request.
    via_header: HeaderValue,
    upgrade_idle: Duration,
    metrics: GatewayMetrics,
}

/// What the gateway is configured with.
#[derive(Clone)]
pub struct GatewaySettings {
    pub trusted_proxies: IpAllowlist,
    pub upstream_timeout: Duration,
    pub max_body_bytes: u64,
    /// The store's deployment id (see [`ViaMarker`]).
    pub deployment_id: String,
    pub egress: Arc<EgressPolicy>,
    /// How long an upgraded (WebSocket) connection may carry nothing before it is closed.
    pub upgrade_idle: Duration,
    /// TLS towards https upstreams (see [`crate::egress::upstream_tls`]), built once.
    pub upstream_tls: tokio_rustls::rustls::ClientConfig,
    /// Idle upstream connections one worker may keep (see [`idle::IdleBudget`]).
    pub max_idle_upstreams: usize,
}

/// Where the forwarded path's tail comes from: the request's own path from this
/// offset when it already is canonical (no copy), else the rewritten tail.
#[derive(Debug)]
pub enum Tail {
    Raw(usize),
    Canonical(String),
}

impl Tail {
    pub fn as_str<'a>(&'a self, path: &'a str) -> &'a str {
        match self {
            Tail::Raw(start) => path.get(*start..).unwrap_or(""),
            Tail::Canonical(tail) => tail,
        }
    }
}

/// Marks a request that arrived over TLS terminated by this server (a request
/// extension): it is forwarded with `X-Forwarded-Proto: https`.
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// A request that passed the checks: what is forwarded, and with which token.
pub struct Admitted {
    pub tail: Tail,
    pub bearer: Option<Bearer>,
}

/// The parts of a gateway path.
#[derive(Debug, PartialEq, Eq)]
pub struct GatewayPath<'a> {
    pub instance: &'a str,
    pub token: &'a str,
    /// The rest of the path, still percent-encoded, starting with `/` (or empty).
    pub tail: &'a str,
}

/// Splits `/instances/{id}/token/{token}{tail}`.
pub fn split_path(path: &str) -> Option<GatewayPath<'_>> {
    let rest = path.strip_prefix(PREFIX)?;
    let (instance, rest) = split_at_byte(rest, b'/')?;
    let rest = rest.strip_prefix("token/")?;
    let (token, tail) = match memchr::memchr(b'/', rest.as_bytes()) {
        Some(i) => rest.split_at_checked(i)?,
        None => (rest, ""),
    };
    Some(GatewayPath { instance, token, tail })
}

/// `text.split_once(byte)` for an ASCII byte, found with `memchr` (on every request:
/// `str`'s char search costs several times more on these short strings).
pub fn split_at_byte(text: &str, byte: u8) -> Option<(&str, &str)> {
    debug_assert!(byte.is_ascii());
    let i = memchr::memchr(byte, text.as_bytes())?;
    Some((text.get(..i)?, text.get(i + 1..)?))
}

/// The token of an `Authorization: Bearer …` header, if there is one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    bearer_of(headers.get(http::header::AUTHORIZATION)?.as_bytes())
}

/// The token of an `Authorization` value of the `Bearer` scheme.
pub fn bearer_of(authorization: &[u8]) -> Option<&[u8]> {
    credentials_of(authorization, "Bearer")
}

/// What follows `scheme` and a space in an `Authorization` value; the scheme's name is
/// matched case-insensitively (RFC 9110 §11.1).
pub fn credentials_of<'a>(authorization: &'a [u8], scheme: &str) -> Option<&'a [u8]> {
    let (name, rest) = authorization.split_at_checked(scheme.len())?;
    let rest = rest.strip_prefix(b" ")?;
    name.eq_ignore_ascii_case(scheme.as_bytes()).then(|| rest.trim_ascii())
}

/// What the checks read of a request: method, path and the two credentials. Built
/// from hyper's request ([`Head::of`]) or from the plain lane's parsed head.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    pub client_token: Option<&'a [u8]>,
    /// The token of `Authorization: Bearer …`.
    pub bearer: Option<&'a [u8]>,
}

impl<'a> Head<'a> {
    pub fn of<B>(req: &'a Request<B>) -> Head<'a> {
        Head {
            method: req.method().as_str(),
            path: req.uri().path(),
            client_token: req.headers().get(proxy::CLIENT_TOKEN).map(HeaderValue::as_bytes),
            bearer: bearer_token(req.headers()),
        }
    }
}

/// The bearer token a request was let through with.
pub enum Bearer {
    /// An API key or personal access token.
    Opaque(Arc<LiveToken>),
    /// An access token from `/oauth/token`, or a trusted issuer's JWT.
    Jwt(Arc<VerifiedJwt>),
}

impl Bearer {
    /// The token usage and `last_used_at` are recorded under (opaque tokens only).
    pub fn token_id(&self) -> Option<TokenId> {
        match self {
            Bearer::Opaque(t) => Some(t.credential.id),
            Bearer::Jwt(_) => None,
        }
    }
}

/// Who is calling, as far as IP checks are concerned.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr {
    /// The TCP peer.
    pub peer: IpAddr,
    /// The client: the peer, or from `X-Forwarded-For` when the peer is a trusted proxy
    /// (unknown when that header holds something that is not an address).
    pub client: ClientIp,
    /// Whether the peer is one of the trusted proxies (whose forwarding headers pass).
    pub via_trusted_proxy: bool,
}

/// The peer of a request to the admin API, `/oauth` or the dashboard, and its client
/// address resolved as for the gateway (through `trusted_proxies`): what login
/// throttles, audit entries and token allowlists use.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr {
    pub peer: SocketAddr,
    pub client: ClientIp,
}

impl PeerAddr {
    /// The resolved client address of a request, when known.
    pub fn ip_of(extensions: &http::Extensions) -> Option<IpAddr> {
        extensions.get::<PeerAddr>().and_then(|p| p.client.known())
    }
}

impl ClientAddr {
    /// Resolves the client address (SPEC §11): `X-Forwarded-For` is believed only from a
    /// trusted proxy, and then walked from the right past the trusted proxies.
    pub fn resolve(peer: SocketAddr, headers: &HeaderMap, trusted: &IpAllowlist) -> ClientAddr {
        ClientAddr::from_lines(peer, forwarded_for(headers), trusted)
    }

    /// [`ClientAddr::resolve`] from the `X-Forwarded-For` lines (`None`: not text).
    pub fn from_lines<'a>(
        peer: SocketAddr,
        lines: impl IntoIterator<Item = Option<&'a str>>,
        trusted: &IpAllowlist,
    ) -> ClientAddr {
        let peer = peer.ip().to_canonical();
        ClientAddr {
            peer,
            client: tokengate_core::forwarded::client_ip(peer, lines, trusted),
            via_trusted_proxy: !trusted.is_empty() && trusted.allows(peer),
        }
    }
}

/// What every step of one request knows about it.
pub struct RequestCtx {
    pub now: Timestamp,
    pub started: Instant,
    pub addr: ClientAddr,
}

impl RequestCtx {
    pub fn new(peer: SocketAddr, headers: &HeaderMap, trusted_proxies: &IpAllowlist) -> RequestCtx {
        RequestCtx::at(ClientAddr::resolve(peer, headers, trusted_proxies))
    }

    /// A request from `addr`, starting now.
    pub fn at(addr: ClientAddr) -> RequestCtx {
        RequestCtx { now: Timestamp::now(), started: Instant::now(), addr }
    }
}

/// The `X-Forwarded-For` lines of a request (`None`: not text).
fn forwarded_for(headers: &HeaderMap) -> impl Iterator<Item = Option<&str>> {
    headers.get_all(proxy::X_FORWARDED_FOR).iter().map(|v| v.to_str().ok())
}

/// A request whose instance is known (step `route`).
pub struct Routed {
    pub instance: Arc<LiveInstance>,
    policy: Arc<AccountPolicy>,
    /// Where the path's tail (what is forwarded) starts.
    tail_start: usize,
}

impl Gateway {
    pub fn new(state: Arc<GatewayState>, usage: Arc<UsageRecorder>, settings: GatewaySettings) -> Gateway {
        let via = ViaMarker::new(&settings.deployment_id);
        let via_header = HeaderValue::from_str(via.entry()).unwrap_or(HeaderValue::from_static("1.1 tokengate"));
        // The worker's two pools (plain lane, hyper) park from one budget.
        let idle = idle::IdleBudget::new(settings.max_idle_upstreams);
        Gateway {
            state,
            usage,
            lane: lane::Upstreams::new(Arc::clone(&settings.egress), Arc::clone(&idle)),
            pool: UpstreamPool::new(settings.egress, settings.upstream_tls, UPSTREAM_IDLE_TIMEOUT, idle),
            trusted_proxies: settings.trusted_proxies,
            upstream_timeout: settings.upstream_timeout,
            max_body_bytes: settings.max_body_bytes,
            via,
            via_header,
            upgrade_idle: settings.upgrade_idle,
            metrics: GatewayMetrics::new(),
        }
    }

    pub fn trusted_proxies(&self) -> &IpAllowlist {
        &self.trusted_proxies
    }

    /// Whether a request has been forwarded by this deployment already.
    pub fn is_loop(&self, headers: &HeaderMap) -> bool {
        headers.get_all(http::header::VIA).iter().any(|v| self.via.seen_in(v.as_bytes()))
    }

    /// Handles one gateway request end to end:
    /// `route → admit_address → client_token → bearer → forward → record`.
    pub async fn handle(&self, req: Request<ClientBody>, peer: SocketAddr) -> Response<Body> {
        let ctx = RequestCtx::new(peer, req.headers(), &self.trusted_proxies);
        let result = match self.route(req.uri().path()) {
            // No instance: nothing to count it under.
            Err(rejection) => Err(rejection),
            Ok(routed) => {
                let (result, bearer) = match self.check(&ctx, &routed, &Head::of(&req)) {
                    Ok(admitted) => {
                        let forwarded = self.forward(&ctx, &routed, req, &admitted).await;
                        (forwarded, admitted.bearer)
                    }
                    Err(rejection) => (Err(rejection), None),
                };
                self.record(&ctx, &routed.instance, result.as_ref().map(|_| ()), bearer.as_ref());
                result
            }
        };
        self.count(&ctx, result.as_ref().map(|_| ()));
        result.unwrap_or_else(Rejection::into_response)
    }

    /// The request's metrics, once it has ended (forwarded, or refused and why).
    fn count(&self, ctx: &RequestCtx, result: Result<(), &Rejection>) {
        self.metrics.record(result.map_err(Rejection::reason), ctx.started.elapsed());
    }

    /// Step `route`: the instance and its token. A malformed token is answered like a
    /// wrong one.
    fn route(&self, path: &str) -> Result<Routed, Rejection> {
        let parts = split_path(path).ok_or(Rejection::InstanceNotFound)?;
        let id: InstanceId = parts.instance.parse().map_err(|_| Rejection::InstanceNotFound)?;
        let instance = self.state.instance(&id).ok_or(Rejection::InstanceNotFound)?;
        let digest = token::parse(parts.token.as_bytes(), Prefix::Instance).map_err(|_| Rejection::InstanceNotFound)?;
        if !digest.ct_eq(&instance.token_digest) {
            return Err(Rejection::InstanceNotFound);
        }
        // An instance whose account policy is not loaded is not served (fail closed).
        let policy = self.state.account(&instance.account_id).ok_or(Rejection::InstanceNotFound)?;
        Ok(Routed { instance, policy, tail_start: path.len() - parts.tail.len() })
    }

    /// The checks on a routed request (proxied, or the original request of a
    /// `/decide`): the canonical tail, then `admit_address`, `client_token`, `bearer`.
    fn check(&self, ctx: &RequestCtx, routed: &Routed, head: &Head<'_>) -> Result<Admitted, Rejection> {
        let tail = canonical(head.path, routed.tail_start)?;
        self.admit_address(ctx, &routed.policy)?;
        self.client_token(ctx, routed, head.client_token)?;
        let bearer = self.bearer(ctx, routed, head, &tail)?;
        Ok(Admitted { tail, bearer })
    }

    /// Step `admit_address`: the account's IP allowlist.
    fn admit_address(&self, ctx: &RequestCtx, policy: &AccountPolicy) -> Result<(), Rejection> {
        if ctx.addr.client.allowed_by(&policy.allowlist) {
            Ok(())
        } else {
            Err(Rejection::IpNotAllowed(ctx.addr.client))
        }
    }

    /// Step `client_token`: the account's security token, counted for the readiness
    /// view whether or not it is enforced yet.
    fn client_token(&self, ctx: &RequestCtx, routed: &Routed, presented: Option<&[u8]>) -> Result<(), Rejection> {
        let policy = &routed.policy.security_token;
        let check = policy.check(presented, ctx.now);
        let readiness = match check {
            ClientTokenCheck::NotConfigured => return Ok(()),
            ClientTokenCheck::Valid => "with_valid_token",
            ClientTokenCheck::Missing => "missing",
            ClientTokenCheck::Invalid => "invalid",
        };
        self.usage.record(routed.instance.account_id, None, UsageKind::Readiness, readiness, ctx.now);
        match check {
            _ if !policy.is_active() => Ok(()),
            ClientTokenCheck::Missing => Err(Rejection::ClientTokenMissing),
            ClientTokenCheck::Invalid => Err(Rejection::ClientTokenInvalid),
            ClientTokenCheck::Valid | ClientTokenCheck::NotConfigured => Ok(()),
        }
    }

    /// Step `bearer`: the instance's route rules, and the bearer token the matching
    /// rule requires (an API key or personal token, or a JWT).
    fn bearer(
        &self,
        ctx: &RequestCtx,
        routed: &Routed,
        head: &Head<'_>,
        tail: &Tail,
    ) -> Result<Option<Bearer>, Rejection> {
        let instance = &routed.instance;
        if instance.rules.is_empty() {
            return Ok(None);
        }
        let tail = Some(tail.as_str(head.path)).filter(|t| !t.is_empty()).unwrap_or("/");
        let required = instance.rules.required_scopes(head.method, tail).ok_or(Rejection::NoMatchingRule)?;
        let presented = head.bearer.ok_or(Rejection::Bearer(Denial::NotFound, None))?;
        // A JWT, unless it is the text of an imported key (those may contain dots).
        let jwt_like = !presented.starts_with(b"tg") && presented.contains(&b'.');
        if jwt_like && !(self.state.may_be_imported(presented) && self.state.lookup_token(presented).is_some()) {
            return self
                .state
                .oauth
                .verify_bearer_jwt(presented, ctx.now, instance.account_id, &required)
                .map(|jwt| Some(Bearer::Jwt(jwt)))
                .map_err(|denial| Rejection::Bearer(denial, None));
        }
        let client = ctx.addr.client;
        let (account, instance_id) = (Some(instance.account_id), Some(instance.id));
        match self.state.verify_token(presented, ctx.now, account, instance_id, Some(client), &required) {
            Ok(token) => Ok(Some(Bearer::Opaque(token))),
            // A token allowlist and no known client address: "unknown not allowed".
            Err((Denial::IpNotAllowed, _)) if client == ClientIp::Unknown => {
                Err(Rejection::IpNotAllowed(ClientIp::Unknown))
            }
            Err((denial, id)) => Err(Rejection::Bearer(denial, id)),
        }
    }

    /// Step `forward`: the request goes upstream on one of this worker's connections;
    /// the response (or the upgraded connection) comes back streamed.
    async fn forward(
        &self,
        ctx: &RequestCtx,
        routed: &Routed,
        mut req: Request<ClientBody>,
        admitted: &Admitted,
    ) -> Result<Response<Body>, Rejection> {
        let instance = &routed.instance;
        let client_upgrade = upgrade::is_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
        // An upgraded connection keeps its place under max_connections while relayed.
        let conn = Arc::clone(req.body().conn());
        let forwarded = proxy::Forwarded {
            addr: &ctx.addr,
            tail: &admitted.tail,
            bearer: admitted.bearer.as_ref(),
            via: &self.via_header,
            upgrade: client_upgrade.is_some(),
        };
        let upstream_req = proxy::upstream_request(instance, req, &forwarded, self.max_body_bytes)?;
        let key = PoolKey {
            https: instance.upstream.scheme == http::uri::Scheme::HTTPS,
            authority: instance.upstream.authority.clone(),
        };
        let sending = self.pool.send(&key, upstream_req, client_upgrade.is_some());
        let mut response = match tokio::time::timeout(self.upstream_timeout, sending).await {
            Err(_) => return Err(Rejection::UpstreamTimeout),
            Ok(Err(e)) => return Err(upstream_failure(instance, &e)),
            Ok(Ok(response)) => response,
        };
        if let Some(client_upgrade) = client_upgrade
            && response.status() == http::StatusCode::SWITCHING_PROTOCOLS
        {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(upgrade::relay(client_upgrade, upstream_upgrade, self.upgrade_idle, conn));
        }
        Ok(proxy::downstream_response(response))
    }

    /// Step `record`, whatever happened: usage (allowed or rejected, and why) and the
    /// bearer token's last use. (Metrics are counted by the caller, for every request.)
    fn record(
        &self,
        ctx: &RequestCtx,
        instance: &LiveInstance,
        result: Result<(), &Rejection>,
        bearer: Option<&Bearer>,
    ) {
        let token_id = bearer.and_then(Bearer::token_id);
        let account = instance.account_id;
        match result {
            Ok(()) => self.usage.record(account, token_id, UsageKind::Allowed, "forwarded", ctx.now),
            Err(r) => {
                self.usage.record(account, token_id.or(r.token_id()), UsageKind::Rejected, r.reason().as_str(), ctx.now)
            }
        }
        if let Some(id) = token_id {
            self.usage.touch(id, ctx.now);
        }
    }
}

/// How long an upstream connection may sit idle in a worker's pool.
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why forwarding failed, as the client is answered: our own body limit or body
/// deadline, the egress policy, or the upstream (logged: it is the operator's to fix).
fn upstream_failure(instance: &LiveInstance, e: &UpstreamError) -> Rejection {
    if proxy::is_body_limit_error(e) {
        return Rejection::BodyTooLarge;
    }
    if crate::limits::is_body_timeout(e) {
        return Rejection::BodyTimeout;
    }
    if crate::egress::is_denied(e) {
        return Rejection::EgressDenied;
    }
    tracing::warn!(
        account = %instance.account_id,
        instance = %instance.id,
        error = %proxy::ErrorChain(e),
        "upstream request failed"
    );
    Rejection::UpstreamUnavailable
}

/// The canonical tail (SPEC §11) of a path whose tail starts at `tail_start`.
fn canonical(path: &str, tail_start: usize) -> Result<Tail, Rejection> {
    let raw = path.get(tail_start..).unwrap_or("");
    match canonical_tail(raw) {
        Ok(std::borrow::Cow::Borrowed(_)) => Ok(Tail::Raw(tail_start)),
        Ok(std::borrow::Cow::Owned(tail)) => Ok(Tail::Canonical(tail)),
        Err(e) => Err(Rejection::BadPath(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_schemes_are_matched_case_insensitively() {
        assert_eq!(bearer_of(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_of(b"bEARER  abc "), Some(&b"abc"[..]));
        for not in [&b"Bearerabc"[..], b"Bearer", b"Basic abc", b"Bear abc", b"", b"Bearer\tabc"] {
            assert_eq!(bearer_of(not), None, "{}", String::from_utf8_lossy(not));
        }
        assert_eq!(credentials_of(b"basic dXNlcjpwdw==", "Basic"), Some(&b"dXNlcjpwdw=="[..]));
    }

    #[test]
    fn gateway_paths_split() {
        let p = split_path("/instances/abc/token/tgi_x/send-text/x%20y").unwrap();
        assert_eq!(p, GatewayPath { instance: "abc", token: "tgi_x", tail: "/send-text/x%20y" });
        assert_eq!(split_path("/instances/abc/token/tgi_x").unwrap().tail, "");
        assert!(split_path("/instances/abc/tokens/tgi_x/a").is_none());
        assert!(split_path("/instances/abc").is_none());
        assert!(split_path("/v1/accounts").is_none());
        assert!(split_path("/instances/é/token/t/ü").is_some_and(|p| p.instance == "é" && p.tail == "/ü"));
        for (text, split) in
            [("a?b?c", Some(("a", "b?c"))), ("?", Some(("", ""))), ("é?ü", Some(("é", "ü"))), ("abc", None)]
        {
            assert_eq!(split_at_byte(text, b'?'), split, "{text}");
            assert_eq!(split_at_byte(text, b'?'), text.split_once('?'), "{text}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "198.51.100.7, 10.0.0.2".parse().unwrap());
        let peer: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let untrusted = ClientAddr::resolve(peer, &headers, &IpAllowlist::default());
        assert_eq!(untrusted.client, ClientIp::Known("10.0.0.1".parse().unwrap()));
        assert!(!untrusted.via_trusted_proxy);
        let trusted = IpAllowlist::parse(&["10.0.0.0/8"]).unwrap();
        let resolved = ClientAddr::resolve(peer, &headers, &trusted);
        assert_eq!(resolved.client, ClientIp::Known("198.51.100.7".parse().unwrap()));
        assert!(resolved.via_trusted_proxy);
        let from_outside = ClientAddr::resolve("203.0.113.1:1".parse().unwrap(), &headers, &trusted);
        assert_eq!(from_outside.client, ClientIp::Known("203.0.113.1".parse().unwrap()));
    }
}
