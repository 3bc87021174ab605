//! Forwarding: builds the upstream request (streamed body, end-to-end headers only,
//! tokengate's own headers added) and turns the upstream response back around.

use std::error::Error as _;

use axum::body::Body;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, Uri};
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::Bearer;
use super::{ClientAddr, Rejection};
use crate::state::LiveInstance;

pub const CLIENT_TOKEN: HeaderName = HeaderName::from_static("client-token");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_TOKENGATE_ACCOUNT: HeaderName = HeaderName::from_static("x-tokengate-account");
pub const X_TOKENGATE_TOKEN_ID: HeaderName = HeaderName::from_static("x-tokengate-token-id");
pub const X_TOKENGATE_SCOPES: HeaderName = HeaderName::from_static("x-tokengate-scopes");
pub const X_TOKENGATE_SUBJECT: HeaderName = HeaderName::from_static("x-tokengate-subject");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded in either direction.
const HOP_BY_HOP: [HeaderName; 9] = [
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

/// The request body as forwarded: streamed, and cut off past the configured limit.
pub type ProxyBody = Limited<Incoming>;

pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, ProxyBody>;

/// A pooled keep-alive client for HTTP and HTTPS upstreams.
pub fn client() -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build(https)
}

/// The request's declared body length, if any.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(named.iter()) {
        headers.remove(name);
    }
}

/// Builds the request sent upstream.
pub fn upstream_request(
    instance: &LiveInstance,
    req: Request<Incoming>,
    addr: &ClientAddr,
    tail_start: usize,
    token: Option<&Bearer>,
    max_body_bytes: u64,
) -> Result<Request<ProxyBody>, Rejection> {
    let (mut parts, body) = req.into_parts();
    let tail = parts.uri.path().get(tail_start..).unwrap_or("");
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
    parts.uri = Uri::builder()
        .scheme(up.scheme.clone())
        .authority(up.authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| Rejection::BadRequest("request path cannot be forwarded"))?;
    // HTTP/2 clients may speak to us; the upstream leg is HTTP/1.1.
    parts.version = http::Version::HTTP_11;

    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    headers.remove(header::HOST);
    headers.remove(CLIENT_TOKEN);
    headers.remove(X_TOKENGATE_ACCOUNT);
    headers.remove(X_TOKENGATE_TOKEN_ID);
    headers.remove(X_TOKENGATE_SCOPES);
    headers.remove(X_TOKENGATE_SUBJECT);
    let client_ip = addr.client.to_string();
    let forwarded_for = if addr.client != addr.peer {
        // From a trusted proxy: keep its chain and add the proxy itself.
        let chain: Vec<&str> = headers.get_all(X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).collect();
        let mut value = chain.join(", ");
        if !value.is_empty() {
            value.push_str(", ");
        }
        value.push_str(&addr.peer.to_string());
        value
    } else {
        client_ip
    };
    headers.remove(X_FORWARDED_FOR);
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if let Ok(v) = HeaderValue::from_str(&instance.account_id.to_string()) {
        headers.insert(X_TOKENGATE_ACCOUNT, v);
    }
    if let Some(token) = token {
        // The Authorization the gateway checked is ours, not the upstream's.
        headers.remove(header::AUTHORIZATION);
        match token {
            Bearer::Opaque(token) => {
                if let Ok(v) = HeaderValue::from_str(&token.credential.id.to_string()) {
                    headers.insert(X_TOKENGATE_TOKEN_ID, v);
                }
                headers.insert(X_TOKENGATE_SCOPES, HeaderValue::clone(&token.scopes_header));
            }
            Bearer::Jwt(jwt) => {
                if let Some(v) = &jwt.token_id_header {
                    headers.insert(X_TOKENGATE_TOKEN_ID, v.clone());
                }
                if let Some(v) = &jwt.subject_header {
                    headers.insert(X_TOKENGATE_SUBJECT, v.clone());
                }
                headers.insert(X_TOKENGATE_SCOPES, jwt.scopes_header.clone());
            }
        }
    }
    let limit = usize::try_from(max_body_bytes).unwrap_or(usize::MAX);
    Ok(Request::from_parts(parts, Limited::new(body, limit)))
}

/// Turns the upstream response into ours: same status, end-to-end headers, streamed body.
pub fn downstream_response(response: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, Body::new(body))
}

/// Whether a client error came from our body size limit rather than the upstream.
pub fn is_body_limit_error(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source = e.source();
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
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
