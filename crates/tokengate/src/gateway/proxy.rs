//! Forwarding: builds the upstream request (streamed body, end-to-end headers only,
//! tokengate's own headers added) and turns the upstream response back around.

use axum::body::Body;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, Uri};
use http_body_util::Limited;

use super::upstream::UpstreamBody;
use super::{Bearer, ClientAddr, Rejection, Tail};
use crate::limits::ClientBody;
use crate::state::LiveInstance;

pub const CLIENT_TOKEN: HeaderName = HeaderName::from_static("client-token");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_TOKENGATE_ACCOUNT: HeaderName = HeaderName::from_static("x-tokengate-account");
pub const X_TOKENGATE_TOKEN_ID: HeaderName = HeaderName::from_static("x-tokengate-token-id");
pub const X_TOKENGATE_SCOPES: HeaderName = HeaderName::from_static("x-tokengate-scopes");
pub const X_TOKENGATE_SUBJECT: HeaderName = HeaderName::from_static("x-tokengate-subject");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded in either direction. (A
/// `static`: a `const` array would be built and dropped at every use.)
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Forwarding headers a client could use to lie about where it is: passed only from a
/// trusted proxy (SPEC §11).
const FROM_TRUSTED_PROXIES_ONLY: [&str; 5] =
    ["forwarded", "x-real-ip", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port"];

/// The request body as forwarded: streamed, and cut off past the configured limit.
pub type ProxyBody = Limited<ClientBody>;

/// The request's declared body length, if any.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The options the `Connection` header lists (header names, `close`, `upgrade`, …).
pub fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers.get_all(header::CONNECTION).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim)
}

/// Removes hop-by-hop headers, including those the `Connection` header names. Most
/// messages carry none: one pass over the names finds that without hashing any.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> =
        connection_options(headers).filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok()).collect();
    for name in HOP_BY_HOP.iter().chain(named.iter()) {
        headers.remove(name);
    }
}

/// Whether a header name (in any case) is one of the hop-by-hop headers.
pub fn is_hop_by_hop(name: &str) -> bool {
    // Called for every header line on the plain lane: the length rules out most names
    // before any comparison (the hop-by-hop names are 2, 7, 10, 16, 17, 18, 19 long).
    matches!(name.len(), 2 | 7 | 10 | 16..=19) && HOP_BY_HOP.iter().any(|h| h.as_str().eq_ignore_ascii_case(name))
}

/// A header name as a sloppy server would read it: `_` for `-`, any case (`wanted` is
/// lower case).
fn same_name(name: &str, wanted: &str) -> bool {
    name.len() == wanted.len()
        && name.bytes().zip(wanted.bytes()).all(|(a, b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
}

fn starts_like(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len()).is_some_and(|head| same_name(head, prefix))
}

/// `Transfer_Encoding`, `Content_Length`, `Keep_Alive`…: an underscore spelling of a
/// framing or hop-by-hop header. A server or proxy that reads `_` as `-` would frame
/// or route the message differently from us, so these are passed in neither direction.
pub fn is_framing_lookalike(name: &str) -> bool {
    name.contains('_') && reads_as_framing(name)
}

/// Whether a name, with `_` read as `-`, is `content-length` or a hop-by-hop header.
fn reads_as_framing(name: &str) -> bool {
    same_name(name, "content-length") || HOP_BY_HOP.iter().any(|h| same_name(name, h.as_str()))
}

/// Whether a client header must not reach the upstream: any spelling of a header
/// tokengate owns (`Client-Token`, `X-Tokengate-*`), any spelling of
/// `X-Forwarded-For` but the real one (which the gateway rewrites), underscore
/// spellings of the framing and hop-by-hop headers, and the other forwarding headers
/// unless they come from a trusted proxy (and then only spelled right).
pub fn is_spoofable(name: &str, from_trusted_proxy: bool) -> bool {
    if same_name(name, "client-token") || starts_like(name, "x-tokengate-") {
        return true;
    }
    let underscored = name.contains('_');
    if underscored && reads_as_framing(name) {
        return true;
    }
    if same_name(name, "x-forwarded-for") {
        return underscored;
    }
    FROM_TRUSTED_PROXIES_ONLY.iter().any(|h| same_name(name, h)) && (underscored || !from_trusted_proxy)
}

/// Drops the client's copies of the headers tokengate sets or owns.
fn drop_spoofable(headers: &mut HeaderMap, from_trusted_proxy: bool) {
    drop_where(headers, |name| is_spoofable(name, from_trusted_proxy));
}

/// Removes every header whose name `doomed` picks. Most messages have none: one pass
/// over the names finds that without allocating.
fn drop_where(headers: &mut HeaderMap, doomed: impl Fn(&str) -> bool) {
    if !headers.keys().any(|name| doomed(name.as_str())) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|name| doomed(name.as_str())).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// What the checks decided about a request, for building its upstream copy.
pub struct Forwarded<'a> {
    pub addr: &'a ClientAddr,
    /// The canonical tail (SPEC §11): what is appended to the upstream's base path.
    pub tail: &'a Tail,
    pub bearer: Option<&'a Bearer>,
    /// This deployment's `Via` entry.
    pub via: &'a HeaderValue,
    /// Whether the request asks for a protocol switch (see [`super::upgrade`]).
    pub upgrade: bool,
}

/// Builds the request sent upstream. The body limit is applied here, both ways: a
/// declared length past it is refused at once, a streamed body is cut off at it.
pub fn upstream_request(
    instance: &LiveInstance,
    req: Request<ClientBody>,
    forwarded: &Forwarded<'_>,
    max_body_bytes: u64,
) -> Result<Request<ProxyBody>, Rejection> {
    if declared_length(req.headers()).is_some_and(|n| n > max_body_bytes) {
        return Err(Rejection::BodyTooLarge);
    }
    let (mut parts, body) = req.into_parts();
    let tail = forwarded.tail.as_str(parts.uri.path());
    let up = &instance.upstream;
    let mut path_and_query = String::with_capacity(up.base_path.len() + tail.len() + 64);
    path_and_query.push_str(&up.base_path);
    path_and_query.push_str(tail);
    if path_and_query.is_empty() {
        path_and_query.push('/');
    }
    if let Some(q) = parts.uri.query() {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    // Origin-form, as HTTP/1.1 sends it to an origin server; the authority goes in Host.
    parts.uri = Uri::try_from(path_and_query).map_err(|_| Rejection::BadRequest("request path cannot be forwarded"))?;
    // HTTP/2 clients may speak to us; the upstream leg is HTTP/1.1.
    parts.version = http::Version::HTTP_11;

    let addr = forwarded.addr;
    let headers = &mut parts.headers;
    // An upgrade the checks let through is asked of the upstream as it was asked of us.
    let upgrade = if forwarded.upgrade { headers.get(header::UPGRADE).cloned() } else { None };
    strip_hop_by_hop(headers);
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    headers.insert(header::HOST, up.host_header.clone());
    drop_spoofable(headers, addr.via_trusted_proxy);
    let forwarded_for = if addr.via_trusted_proxy {
        // From a trusted proxy: keep its chain and add the proxy itself.
        let chain: Vec<&str> = headers.get_all(X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).collect();
        let mut value = chain.join(", ");
        if !value.is_empty() {
            value.push_str(", ");
        }
        value.push_str(&addr.peer.to_string());
        value
    } else {
        addr.peer.to_string()
    };
    headers.remove(X_FORWARDED_FOR);
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    // A trusted proxy's X-Forwarded-Proto stands (it saw the client's scheme).
    if !headers.contains_key(X_FORWARDED_PROTO) {
        let scheme = if parts.extensions.get::<super::OverTls>().is_some() { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    }
    headers.append(header::VIA, forwarded.via.clone());
    if forwarded.bearer.is_some() {
        // The Authorization the gateway checked is ours, not the upstream's.
        headers.remove(header::AUTHORIZATION);
    }
    identity_headers(headers, instance, forwarded.bearer);
    let limit = usize::try_from(max_body_bytes).unwrap_or(usize::MAX);
    Ok(Request::from_parts(parts, Limited::new(body, limit)))
}

/// The headers that tell the upstream who is calling: the account, and with a bearer
/// token its id, scopes and (for JWTs) subject. Also `/decide`'s answer.
pub fn identity_headers(headers: &mut HeaderMap, instance: &LiveInstance, bearer: Option<&Bearer>) {
    each_identity_header(instance, bearer, |name, value| {
        headers.insert(name, value.clone());
    });
}

/// The identity headers (see [`identity_headers`]) one by one.
pub fn each_identity_header(
    instance: &LiveInstance,
    bearer: Option<&Bearer>,
    mut header: impl FnMut(HeaderName, &HeaderValue),
) {
    if let Ok(v) = HeaderValue::from_str(&instance.account_id.to_string()) {
        header(X_TOKENGATE_ACCOUNT, &v);
    }
    match bearer {
        None => {}
        Some(Bearer::Opaque(token)) => {
            if let Ok(v) = HeaderValue::from_str(&token.credential.id.to_string()) {
                header(X_TOKENGATE_TOKEN_ID, &v);
            }
            header(X_TOKENGATE_SCOPES, &token.scopes_header);
        }
        Some(Bearer::Jwt(jwt)) => {
            if let Some(v) = &jwt.token_id_header {
                header(X_TOKENGATE_TOKEN_ID, v);
            }
            if let Some(v) = &jwt.subject_header {
                header(X_TOKENGATE_SUBJECT, v);
            }
            header(X_TOKENGATE_SCOPES, &jwt.scopes_header);
        }
    }
}

/// Turns the upstream response into ours: same status, end-to-end headers, streamed body.
pub fn downstream_response(response: Response<UpstreamBody>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    let switching = parts.status == http::StatusCode::SWITCHING_PROTOCOLS;
    let upgrade = if switching { parts.headers.get(header::UPGRADE).cloned() } else { None };
    strip_hop_by_hop(&mut parts.headers);
    drop_where(&mut parts.headers, is_framing_lookalike);
    if let Some(protocol) = upgrade {
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol);
    }
    Response::from_parts(parts, Body::new(body))
}

/// Whether a client error came from our body size limit rather than the upstream.
pub fn is_body_limit_error(e: &(dyn std::error::Error + 'static)) -> bool {
    crate::error_chain::caused_by::<http_body_util::LengthLimitError>(e)
}

/// Displays an error with its sources, for logs.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoofable_headers_in_every_spelling() {
        for name in ["client-token", "client_token", "x-tokengate-account", "x_tokengate_account", "x-tokengate_scopes"]
        {
            assert!(is_spoofable(name, true), "{name}");
        }
        assert!(is_spoofable("x_forwarded_for", true));
        assert!(!is_spoofable("x-forwarded-for", false), "rewritten, not dropped");
        for name in FROM_TRUSTED_PROXIES_ONLY {
            assert!(is_spoofable(name, false), "{name}");
            assert!(!is_spoofable(name, true), "{name} from a trusted proxy");
            if name.contains('-') {
                assert!(is_spoofable(&name.replace('-', "_"), true), "{name} with underscores");
            }
        }
        for name in ["authorization", "content-type", "x-tokengatex", "client-tokens", "forwarded-x"] {
            assert!(!is_spoofable(name, false), "{name}");
        }
        // Raw names (the plain lane's) in any case.
        for name in ["Client-Token", "CLIENT_TOKEN", "X-Tokengate-Account", "X-Real-IP"] {
            assert!(is_spoofable(name, false), "{name}");
        }
        assert!(is_spoofable("X_Forwarded_For", false));
        for framing in ["Transfer_Encoding", "content_length", "keep_alive", "Proxy_Authorization", "TE"] {
            assert_eq!(is_spoofable(framing, true), framing != "TE", "{framing}");
        }
        assert!(!is_spoofable("transfer-encoding", true), "the real one is hop-by-hop, handled apart");
        assert!(!is_spoofable("X-Forwarded-For", false));
        assert!(is_hop_by_hop("Transfer-Encoding") && is_hop_by_hop("keep-alive") && !is_hop_by_hop("content-length"));
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(&name.as_str().to_ascii_uppercase()), "{name}");
            assert!(!is_hop_by_hop(&format!("{name}s")) && !is_hop_by_hop(&name.as_str()[1..]), "{name}");
        }
    }
}
