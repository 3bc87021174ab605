//! `ANY /decide[/{path…}]`: the forward-auth decision endpoint (SPEC §13).
//!
//! A proxy that keeps routing itself (nginx `auth_request`, Caddy `forward_auth`,
//! Traefik `ForwardAuth`, Envoy `ext_authz`) asks whether a request may pass. The
//! original request runs through the same steps as a proxied one (route, canonical
//! path, address, Client-Token, rules and bearer, then usage), and nothing is forwarded.

use std::borrow::Cow;
use std::net::SocketAddr;

use axum::body::Body;
use http::header::HeaderName;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};

use super::{Admitted, Gateway, Head, Rejection, RequestCtx, json_error, proxy};

/// The path of the decision endpoint.
pub const PATH: &str = "/decide";

const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
/// With `?profile=nginx`: the status the gateway would have answered.
pub const X_TOKENGATE_STATUS: HeaderName = HeaderName::from_static("x-tokengate-status");

/// Whether a request path is the decision endpoint's.
pub fn is_decide_path(path: &str) -> bool {
    path.strip_prefix(PATH).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Why a decision request itself (not the request it describes) is refused.
#[derive(Debug)]
enum DecideError {
    NotTrusted,
    /// The forwarded method or URI cannot be read.
    BadOriginal(&'static str),
}

/// The request the proxy asks about: method and URI from the proxy's headers, in the
/// order of SPEC §13.
fn original_request<B>(req: &Request<B>) -> Result<(Method, Uri), DecideError> {
    let headers = req.headers();
    let text = |name: &HeaderName| headers.get(name).map(|v| readable(v.as_bytes()));
    let method_of = |value: Option<Cow<'_, str>>| -> Result<Method, DecideError> {
        match value {
            None => Ok(req.method().clone()),
            Some(m) => Method::from_bytes(m.trim().as_bytes()).map_err(|_| DecideError::BadOriginal("method")),
        }
    };
    let uri_of = |value: &str| -> Result<Uri, DecideError> {
        let uri: Uri = value.trim().parse().map_err(|_| DecideError::BadOriginal("URI"))?;
        // Only the path and query count: a proxy may send the absolute form.
        let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        path_and_query.parse().map_err(|_| DecideError::BadOriginal("URI"))
    };
    if let Some(uri) = text(&X_FORWARDED_URI) {
        return Ok((method_of(text(&X_FORWARDED_METHOD))?, uri_of(&uri)?));
    }
    if let Some(uri) = text(&X_ORIGINAL_URI) {
        return Ok((method_of(text(&X_ORIGINAL_METHOD))?, uri_of(&uri)?));
    }
    // Envoy's `path_prefix: /decide`: the original path follows ours.
    let own = req.uri();
    let path = own.path().get(PATH.len()..).filter(|p| !p.is_empty()).unwrap_or("/");
    let path_and_query = match own.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    Ok((req.method().clone(), uri_of(&path_and_query)?))
}

/// A header value as text. A proxy passes the original URI as the client sent it
/// (nginx's `$request_uri`), raw bytes past ASCII included: those, and controls, are
/// escaped as the gateway reads them (§11 then refuses an escaped control).
fn readable(value: &[u8]) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_graphic() || b == b' ' || b == b'\t';
    match std::str::from_utf8(value) {
        Ok(text) if text.bytes().all(plain) => Cow::Borrowed(text),
        _ => Cow::Owned(value.iter().fold(String::with_capacity(value.len() * 3), |mut text, &b| {
            if plain(b) {
                text.push(char::from(b));
            } else {
                text.push_str(&format!("%{b:02X}"));
            }
            text
        })),
    }
}

/// Whether the answer is for nginx, which turns every status but 2xx/401/403 into a 500.
fn nginx_profile(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| q.split('&').any(|pair| pair == "profile=nginx"))
}

impl Gateway {
    /// Answers one decision request.
    /// `refused` is the edge's own refusal of it (headers too large, a loop), answered
    /// in the proxy's profile once the proxy is known to be trusted.
    pub async fn decide<B>(
        &self,
        req: Request<B>,
        peer: SocketAddr,
        refused: Option<Response<Body>>,
    ) -> Response<Body> {
        let nginx = nginx_profile(req.uri());
        let ctx = RequestCtx::new(peer, req.headers(), self.trusted_proxies());
        if let Some(refused) = refused.filter(|_| ctx.addr.via_trusted_proxy) {
            return for_profile(refused, nginx);
        }
        let outcome = if ctx.addr.via_trusted_proxy {
            original_request(&req).map(|(method, uri)| {
                // The original request, as far as the checks go: its method and target,
                // and the headers the proxy passed on (Client-Token, Authorization, …).
                let (parts, _body) = req.into_parts();
                let mut original = Request::new(());
                *original.method_mut() = method;
                *original.uri_mut() = uri;
                *original.headers_mut() = parts.headers;
                self.decide_original(&original, &ctx)
            })
        } else {
            Err(DecideError::NotTrusted)
        };
        if let Ok(decided) = &outcome {
            self.count(&ctx, decided.as_ref().map(|_| ()));
        }
        match outcome {
            Ok(Ok(response)) => response,
            Ok(Err(rejection)) => for_profile(rejection.into_response(), nginx),
            Err(DecideError::NotTrusted) => json_error(StatusCode::FORBIDDEN, "not a trusted proxy"),
            Err(DecideError::BadOriginal(what)) => for_profile(
                json_error(StatusCode::BAD_REQUEST, &format!("the original request's {what} is invalid")),
                nginx,
            ),
        }
    }

    /// The steps of a proxied request but `forward`: `route`, the checks, `record`.
    fn decide_original(&self, original: &Request<()>, ctx: &RequestCtx) -> Result<Response<Body>, Rejection> {
        let routed = self.route(original.uri().path())?;
        let admitted = self.check(ctx, &routed, &Head::of(original));
        let bearer = admitted.as_ref().ok().and_then(|a| a.bearer.as_ref());
        self.record(ctx, &routed.instance, admitted.as_ref().map(|_| ()), bearer);
        let Admitted { bearer, .. } = admitted?;
        let mut response = Response::new(Body::empty());
        proxy::identity_headers(response.headers_mut(), &routed.instance, bearer.as_ref());
        response.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(response)
    }
}

/// The gateway's own answer; for nginx, statuses it would mangle are sent as `403`
/// with the real one in `X-Tokengate-Status`.
fn for_profile(mut response: Response<Body>, nginx: bool) -> Response<Body> {
    let status = response.status();
    if nginx && status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
        response.headers_mut().insert(X_TOKENGATE_STATUS, HeaderValue::from(status.as_u16()));
        *response.status_mut() = StatusCode::FORBIDDEN;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method("POST").uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn the_original_request_is_read_in_the_documented_order() {
        let traefik = request(
            "/decide",
            &[("x-forwarded-method", "PUT"), ("x-forwarded-uri", "/a?b=1"), ("x-original-uri", "/nginx")],
        );
        assert_eq!(original_request(&traefik).unwrap(), (Method::PUT, "/a?b=1".parse().unwrap()));
        let nginx = request("/decide?profile=nginx", &[("x-original-uri", "/n/x?q")]);
        assert_eq!(original_request(&nginx).unwrap(), (Method::POST, "/n/x?q".parse().unwrap()));
        let nginx_method = request("/decide", &[("x-original-method", "DELETE"), ("x-original-uri", "/n")]);
        assert_eq!(original_request(&nginx_method).unwrap().0, Method::DELETE);
        let envoy = request("/decide/instances/x/token/y/send?z=1", &[]);
        assert_eq!(original_request(&envoy).unwrap(), (Method::POST, "/instances/x/token/y/send?z=1".parse().unwrap()));
        assert_eq!(original_request(&request("/decide", &[])).unwrap().1, "/".parse::<Uri>().unwrap());
        let absolute = request("/decide", &[("x-forwarded-uri", "http://h.example/p?q")]);
        assert_eq!(original_request(&absolute).unwrap().1, "/p?q".parse::<Uri>().unwrap());
        assert!(original_request(&request("/decide", &[("x-forwarded-uri", "a b")])).is_err());
        assert!(
            original_request(&request("/decide", &[("x-forwarded-method", "A B"), ("x-forwarded-uri", "/")])).is_err()
        );
    }

    fn for_profile_of(rejection: Rejection, nginx: bool) -> Response<Body> {
        for_profile(rejection.into_response(), nginx)
    }

    #[test]
    fn raw_bytes_of_an_original_uri_are_escaped_as_the_gateway_reads_them() {
        assert_eq!(readable(b"/a/b?x=1"), "/a/b?x=1");
        assert!(matches!(readable(b"/a/b?x=1"), Cow::Borrowed(_)));
        assert_eq!(readable("/caf\u{e9}".as_bytes()), "/caf%C3%A9");
        assert_eq!(readable(b"/a\x00b\x7f\xff"), "/a%00b%7F%FF");
        let req = request("/decide", &[]);
        let mut req = req;
        req.headers_mut()
            .insert(X_ORIGINAL_URI, HeaderValue::from_bytes("/instances/i/token/t/caf\u{e9}".as_bytes()).unwrap());
        let (_, uri) = original_request(&req).map_err(|_| ()).unwrap();
        assert_eq!(uri.path(), "/instances/i/token/t/caf%C3%A9");
    }

    #[test]
    fn decide_paths() {
        assert!(is_decide_path("/decide"));
        assert!(is_decide_path("/decide/instances/x"));
        assert!(!is_decide_path("/decidex"));
        assert!(!is_decide_path("/v1/decide"));
    }

    #[test]
    fn the_nginx_profile_keeps_401_and_403_and_moves_the_rest_to_403() {
        let limited = for_profile_of(
            Rejection::Bearer(tokengate_core::Denial::RateLimited { retry_after_seconds: 7 }, None),
            true,
        );
        assert_eq!(limited.status(), StatusCode::FORBIDDEN);
        assert_eq!(limited.headers()[&X_TOKENGATE_STATUS], "429");
        assert_eq!(limited.headers()[http::header::RETRY_AFTER], "7");
        let missing = for_profile_of(Rejection::ClientTokenMissing, true);
        assert_eq!(missing.status(), StatusCode::FORBIDDEN);
        assert!(missing.headers().get(&X_TOKENGATE_STATUS).is_none());
        assert_eq!(for_profile_of(Rejection::InstanceNotFound, false).status(), StatusCode::NOT_FOUND);
        assert_eq!(for_profile_of(Rejection::InstanceNotFound, true).headers()[&X_TOKENGATE_STATUS], "404");
    }
}
