//! The gateway: `ANY /instances/{id}/token/{instance_token}/{path…}` (SPEC §6).
//!
//! A request goes through named steps, top to bottom, each a small function with a
//! typed outcome; none of them touches the store:
//! route (instance, canonical tail) → client address and IP allowlist → Client-Token →
//! route rules → forward → record. Usage is counted in memory (see [`crate::usage`]).
//! Loops and header sizes are refused before, for every route (see `server`).

mod decide;
mod proxy;
mod reject;
mod upgrade;

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
pub use proxy::{ErrorChain, UpstreamClient};
pub use reject::{Rejection, json_error};

use crate::egress::EgressPolicy;
use crate::limits::ClientBody;
use crate::oauth::VerifiedJwt;
use crate::state::{AccountPolicy, GatewayState, LiveInstance, LiveToken};
use crate::store::UsageKind;
use crate::telemetry::GatewayMetrics;
use crate::usage::UsageRecorder;

/// The path prefix the gateway serves; everything else goes to the admin router.
pub const PREFIX: &str = "/instances/";

pub struct Gateway {
    pub state: Arc<GatewayState>,
    pub usage: Arc<UsageRecorder>,
    client: UpstreamClient,
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
    let (instance, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("token/")?;
    let (token, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    Some(GatewayPath { instance, token, tail })
}

/// The token of an `Authorization: Bearer …` header, if there is one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    headers.get(http::header::AUTHORIZATION)?.as_bytes().strip_prefix(b"Bearer ").map(<[u8]>::trim_ascii)
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
        let peer = peer.ip().to_canonical();
        let lines = headers.get_all(proxy::X_FORWARDED_FOR).iter().map(|v| v.to_str().ok());
        ClientAddr {
            peer,
            client: tokengate_core::forwarded::client_ip(peer, lines, trusted),
            via_trusted_proxy: !trusted.is_empty() && trusted.allows(peer),
        }
    }
}

impl Gateway {
    pub fn new(state: Arc<GatewayState>, usage: Arc<UsageRecorder>, settings: GatewaySettings) -> Gateway {
        let via = ViaMarker::new(&settings.deployment_id);
        let via_header = HeaderValue::from_str(via.entry()).unwrap_or(HeaderValue::from_static("1.1 tokengate"));
        Gateway {
            state,
            usage,
            client: proxy::client(settings.egress),
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

    /// Handles one gateway request end to end.
    pub async fn handle(&self, req: Request<ClientBody>, peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let outcome = self.check_and_forward(req, peer).await;
        let response = match outcome {
            Ok(response) => {
                self.metrics.forwarded.increment(1);
                response
            }
            Err(rejection) => {
                self.metrics.rejected(&rejection);
                rejection.into_response()
            }
        };
        self.metrics.latency.record(started.elapsed().as_secs_f64());
        response
    }

    async fn check_and_forward(&self, req: Request<ClientBody>, peer: SocketAddr) -> Result<Response<Body>, Rejection> {
        let now = Timestamp::now();
        let addr = ClientAddr::resolve(peer, req.headers(), &self.trusted_proxies);
        let (instance, admitted) = self.admit(&req, &addr, now)?;
        let (result, bearer) = match admitted {
            Ok(Admitted { tail, bearer }) => {
                (self.forward(&instance, req, &addr, &tail, bearer.as_ref()).await, bearer)
            }
            Err(r) => (Err(r), None),
        };
        self.finish(&instance, &result, bearer.as_ref(), now);
        result
    }

    /// Steps 1–3 on a request (proxied, or the original request of a `/decide`): the
    /// instance (refused before anything is counted when there is none), then the
    /// canonical tail and the checks.
    fn admit<B>(
        &self,
        req: &Request<B>,
        addr: &ClientAddr,
        now: Timestamp,
    ) -> Result<(Arc<LiveInstance>, Result<Admitted, Rejection>), Rejection> {
        let (instance, policy, tail_start) = self.route(req.uri().path())?;
        let admitted = canonical(req.uri().path(), tail_start).and_then(|tail| {
            self.authorize(&instance, &policy, addr, req, &tail, now).map(|bearer| Admitted { tail, bearer })
        });
        Ok((instance, admitted))
    }

    /// The last step, whatever happened: usage (allowed or rejected, and why) and the
    /// bearer token's last use.
    fn finish<T>(
        &self,
        instance: &LiveInstance,
        result: &Result<T, Rejection>,
        bearer: Option<&Bearer>,
        now: Timestamp,
    ) {
        let token_id = bearer.and_then(Bearer::token_id);
        match result {
            Ok(_) => self.usage.record(instance.account_id, token_id, UsageKind::Allowed, "forwarded", now),
            Err(r) => {
                self.usage.record(instance.account_id, token_id.or(r.token_id()), UsageKind::Rejected, r.reason(), now)
            }
        }
        if let Some(id) = token_id {
            self.usage.touch(id, now);
        }
    }

    /// Step 1: the instance and its token. A malformed token is answered like a wrong one.
    /// Also returns where the path's tail (what is forwarded) starts, so that later steps
    /// do not split the path again.
    fn route(&self, path: &str) -> Result<(Arc<LiveInstance>, Arc<AccountPolicy>, usize), Rejection> {
        let parts = split_path(path).ok_or(Rejection::InstanceNotFound)?;
        let id: InstanceId = parts.instance.parse().map_err(|_| Rejection::InstanceNotFound)?;
        let instance = self.state.instance(&id).ok_or(Rejection::InstanceNotFound)?;
        let digest = token::parse(parts.token.as_bytes(), Prefix::Instance).map_err(|_| Rejection::InstanceNotFound)?;
        if !digest.ct_eq(&instance.token_digest) {
            return Err(Rejection::InstanceNotFound);
        }
        // An instance whose account policy is not loaded is not served (fail closed).
        let policy = self.state.account(&instance.account_id).ok_or(Rejection::InstanceNotFound)?;
        Ok((instance, policy, path.len() - parts.tail.len()))
    }

    /// Steps 1 (IP allowlist), 2 (Client-Token) and 3 (route rules and bearer token).
    fn authorize<B>(
        &self,
        instance: &LiveInstance,
        policy: &AccountPolicy,
        addr: &ClientAddr,
        req: &Request<B>,
        tail: &Tail,
        now: Timestamp,
    ) -> Result<Option<Bearer>, Rejection> {
        let headers = req.headers();
        if !addr.client.allowed_by(&policy.allowlist) {
            return Err(Rejection::IpNotAllowed(addr.client));
        }
        let presented = headers.get(proxy::CLIENT_TOKEN).map(|v| v.as_bytes());
        let check = policy.security_token.check(presented, now);
        let readiness = match check {
            ClientTokenCheck::NotConfigured => None,
            ClientTokenCheck::Valid => Some("with_valid_token"),
            ClientTokenCheck::Missing => Some("missing"),
            ClientTokenCheck::Invalid => Some("invalid"),
        };
        if let Some(reason) = readiness {
            self.usage.record(instance.account_id, None, UsageKind::Readiness, reason, now);
        }
        if policy.security_token.is_active() {
            match check {
                ClientTokenCheck::Missing => return Err(Rejection::ClientTokenMissing),
                ClientTokenCheck::Invalid => return Err(Rejection::ClientTokenInvalid),
                ClientTokenCheck::Valid | ClientTokenCheck::NotConfigured => {}
            }
        }
        if instance.rules.is_empty() {
            return Ok(None);
        }
        let tail = Some(tail.as_str(req.uri().path())).filter(|t| !t.is_empty()).unwrap_or("/");
        let required = instance.rules.required_scopes(req.method().as_str(), tail).ok_or(Rejection::NoMatchingRule)?;
        let presented = bearer_token(headers).ok_or(Rejection::Bearer(Denial::NotFound, None))?;
        // A JWT, unless it is the text of an imported key (those may contain dots).
        let jwt_like = !presented.starts_with(b"tg") && presented.contains(&b'.');
        if jwt_like && !(self.state.may_be_imported(presented) && self.state.lookup_token(presented).is_some()) {
            return self
                .state
                .oauth
                .verify_bearer_jwt(presented, now, instance.account_id, &required)
                .map(|jwt| Some(Bearer::Jwt(jwt)))
                .map_err(|denial| Rejection::Bearer(denial, None));
        }
        let (account, instance_id) = (Some(instance.account_id), Some(instance.id));
        match self.state.verify_token(presented, now, account, instance_id, Some(addr.client), &required) {
            Ok(token) => Ok(Some(Bearer::Opaque(token))),
            // A token allowlist and no known client address: "unknown not allowed".
            Err((Denial::IpNotAllowed, _)) if addr.client == ClientIp::Unknown => {
                Err(Rejection::IpNotAllowed(ClientIp::Unknown))
            }
            Err((denial, id)) => Err(Rejection::Bearer(denial, id)),
        }
    }

    /// Step 4.
    async fn forward(
        &self,
        instance: &LiveInstance,
        mut req: Request<ClientBody>,
        addr: &ClientAddr,
        tail: &Tail,
        bearer: Option<&Bearer>,
    ) -> Result<Response<Body>, Rejection> {
        if proxy::declared_length(req.headers()).is_some_and(|n| n > self.max_body_bytes) {
            return Err(Rejection::BodyTooLarge);
        }
        let client_upgrade = upgrade::is_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
        // An upgraded connection keeps its place under max_connections while relayed.
        let conn = Arc::clone(req.body().conn());
        let forwarded =
            proxy::Forwarded { addr, tail, bearer, via: &self.via_header, upgrade: client_upgrade.is_some() };
        let upstream_req = proxy::upstream_request(instance, req, &forwarded, self.max_body_bytes)?;
        let sent = tokio::time::timeout(self.upstream_timeout, self.client.request(upstream_req)).await;
        match sent {
            Err(_) => {
                self.metrics.upstream_errors_timeout.increment(1);
                Err(Rejection::UpstreamTimeout)
            }
            Ok(Err(e)) => {
                if proxy::is_body_limit_error(&e) {
                    return Err(Rejection::BodyTooLarge);
                }
                if crate::limits::is_body_timeout(&e) {
                    return Err(Rejection::BodyTimeout);
                }
                if crate::egress::is_denied(&e) {
                    self.metrics.upstream_errors_denied.increment(1);
                    return Err(Rejection::EgressDenied);
                }
                self.metrics.upstream_errors_unavailable.increment(1);
                tracing::warn!(
                    account = %instance.account_id,
                    instance = %instance.id,
                    error = %proxy::ErrorChain(&e),
                    "upstream request failed"
                );
                Err(Rejection::UpstreamUnavailable)
            }
            Ok(Ok(mut response)) => {
                if let Some(client_upgrade) = client_upgrade
                    && response.status() == http::StatusCode::SWITCHING_PROTOCOLS
                {
                    let upstream_upgrade = hyper::upgrade::on(&mut response);
                    let relay = upgrade::relay(client_upgrade, upstream_upgrade, self.upgrade_idle, conn);
                    tokio::spawn(relay);
                }
                Ok(proxy::downstream_response(response))
            }
        }
    }
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
    fn gateway_paths_split() {
        let p = split_path("/instances/abc/token/tgi_x/send-text/x%20y").unwrap();
        assert_eq!(p, GatewayPath { instance: "abc", token: "tgi_x", tail: "/send-text/x%20y" });
        assert_eq!(split_path("/instances/abc/token/tgi_x").unwrap().tail, "");
        assert!(split_path("/instances/abc/tokens/tgi_x/a").is_none());
        assert!(split_path("/instances/abc").is_none());
        assert!(split_path("/v1/accounts").is_none());
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
