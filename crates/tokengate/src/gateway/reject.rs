//! Why the gateway refused a request, and how each refusal is answered.

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};
use tokengate_core::{ClientIp, Denial, PathError, TokenId};

/// A JSON error answer `{"error": message}` (for refusals that are not the gateway's
/// own [`Rejection`]s: header sizes, loops, `/decide`'s callers).
pub fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(serde_json::json!({ "error": message }).to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    InstanceNotFound,
    /// The tail is not canonical and cannot be made so without guessing (SPEC §11).
    BadPath(PathError),
    IpNotAllowed(ClientIp),
    ClientTokenMissing,
    ClientTokenInvalid,
    /// The instance has route rules and none matches the request.
    NoMatchingRule,
    /// The bearer token a matching rule requires is missing or refused.
    Bearer(Denial, Option<TokenId>),
    BodyTooLarge,
    /// The request body stalled (see [`crate::limits::TimedBody`]).
    BodyTimeout,
    BadRequest(&'static str),
    UpstreamUnavailable,
    /// Every address of the upstream is denied by the egress policy.
    EgressDenied,
    UpstreamTimeout,
}

impl Rejection {
    /// The token a refusal is attributed to in usage counts, when known.
    pub fn token_id(&self) -> Option<TokenId> {
        match self {
            Rejection::Bearer(_, id) => *id,
            _ => None,
        }
    }

    /// The reason recorded in usage counts.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::InstanceNotFound => "instance_not_found",
            Rejection::BadPath(_) => "bad_path",
            Rejection::IpNotAllowed(_) => "ip_not_allowed",
            Rejection::ClientTokenMissing => "client_token_missing",
            Rejection::ClientTokenInvalid => "client_token_invalid",
            Rejection::NoMatchingRule => "no_matching_rule",
            Rejection::Bearer(d, _) => match d {
                Denial::InsufficientScope(_) => "insufficient_scope",
                Denial::RateLimited { .. } => "rate_limited",
                Denial::IpNotAllowed => "token_ip_not_allowed",
                Denial::Expired => "token_expired",
                Denial::Revoked => "token_revoked",
                _ => "invalid_token",
            },
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::BodyTimeout => "body_timeout",
            Rejection::BadRequest(_) => "bad_request",
            Rejection::UpstreamUnavailable => "upstream_unavailable",
            Rejection::EgressDenied => "upstream_address_not_allowed",
            Rejection::UpstreamTimeout => "upstream_timeout",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::InstanceNotFound => StatusCode::NOT_FOUND,
            Rejection::BadPath(_) => StatusCode::BAD_REQUEST,
            Rejection::IpNotAllowed(_) | Rejection::ClientTokenMissing | Rejection::ClientTokenInvalid => {
                StatusCode::FORBIDDEN
            }
            Rejection::NoMatchingRule => StatusCode::FORBIDDEN,
            Rejection::Bearer(d, _) => match d {
                Denial::InsufficientScope(_) | Denial::IpNotAllowed => StatusCode::FORBIDDEN,
                Denial::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            },
            Rejection::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Rejection::BadRequest(_) => StatusCode::BAD_REQUEST,
            Rejection::UpstreamUnavailable | Rejection::EgressDenied => StatusCode::BAD_GATEWAY,
            Rejection::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn message(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Rejection::InstanceNotFound => "instance not found".into(),
            Rejection::BadPath(e) => e.to_string().into(),
            Rejection::IpNotAllowed(ip) => format!("{ip} not allowed").into(),
            Rejection::ClientTokenMissing => "null not allowed".into(),
            Rejection::ClientTokenInvalid => "Client-Token not allowed".into(),
            Rejection::NoMatchingRule => "no rule of this instance allows this request".into(),
            Rejection::Bearer(d, _) => match d {
                Denial::InsufficientScope(scope) => format!("insufficient scope: {scope} required").into(),
                Denial::RateLimited { .. } => "rate limit exceeded".into(),
                Denial::IpNotAllowed => "token not allowed from this address".into(),
                Denial::Expired => "token expired".into(),
                Denial::Revoked => "token revoked".into(),
                _ => "a valid bearer token is required".into(),
            },
            Rejection::BodyTooLarge => "request body too large".into(),
            Rejection::BodyTimeout => "request body timeout".into(),
            Rejection::BadRequest(m) => (*m).into(),
            Rejection::UpstreamUnavailable => "upstream unavailable".into(),
            Rejection::EgressDenied => "upstream address not allowed".into(),
            Rejection::UpstreamTimeout => "upstream timeout".into(),
        }
    }

    /// The answers that never vary, as static bytes: the hot rejections cost no
    /// serialization and no allocation for their body.
    fn static_body(&self) -> Option<&'static str> {
        Some(match self {
            Rejection::InstanceNotFound => r#"{"error":"instance not found"}"#,
            Rejection::ClientTokenMissing => r#"{"error":"null not allowed"}"#,
            Rejection::ClientTokenInvalid => r#"{"error":"Client-Token not allowed"}"#,
            Rejection::NoMatchingRule => r#"{"error":"no rule of this instance allows this request"}"#,
            Rejection::Bearer(Denial::RateLimited { .. }, _) => r#"{"error":"rate limit exceeded"}"#,
            Rejection::Bearer(Denial::IpNotAllowed, _) => r#"{"error":"token not allowed from this address"}"#,
            Rejection::Bearer(Denial::Expired, _) => r#"{"error":"token expired"}"#,
            Rejection::Bearer(Denial::Revoked, _) => r#"{"error":"token revoked"}"#,
            Rejection::Bearer(Denial::InsufficientScope(_), _) => return None,
            Rejection::Bearer(_, _) => r#"{"error":"a valid bearer token is required"}"#,
            Rejection::UpstreamUnavailable => r#"{"error":"upstream unavailable"}"#,
            Rejection::UpstreamTimeout => r#"{"error":"upstream timeout"}"#,
            _ => return None,
        })
    }

    pub fn into_response(self) -> Response<Body> {
        let body = match self.static_body() {
            Some(text) => Body::from(bytes::Bytes::from_static(text.as_bytes())),
            None => Body::from(serde_json::json!({ "error": self.message() }).to_string()),
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Rejection::Bearer(denial, _) = &self {
            let challenge = match denial {
                Denial::InsufficientScope(scope) => {
                    HeaderValue::from_str(&format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"")).ok()
                }
                Denial::RateLimited { retry_after_seconds } => {
                    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds.max(&1).to_owned()));
                    None
                }
                Denial::IpNotAllowed => None,
                _ => Some(HeaderValue::from_static("Bearer error=\"invalid_token\"")),
            };
            if let Some(challenge) = challenge {
                headers.insert(header::WWW_AUTHENTICATE, challenge);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_statuses_and_bodies() {
        let cases = [
            (Rejection::InstanceNotFound, 404, r#"{"error":"instance not found"}"#),
            (Rejection::ClientTokenMissing, 403, r#"{"error":"null not allowed"}"#),
            (Rejection::ClientTokenInvalid, 403, r#"{"error":"Client-Token not allowed"}"#),
            (
                Rejection::IpNotAllowed(ClientIp::Known("203.0.113.5".parse().unwrap())),
                403,
                r#"{"error":"203.0.113.5 not allowed"}"#,
            ),
            (Rejection::IpNotAllowed(ClientIp::Unknown), 403, r#"{"error":"unknown not allowed"}"#),
            (Rejection::EgressDenied, 502, r#"{"error":"upstream address not allowed"}"#),
            (Rejection::BodyTimeout, 408, r#"{"error":"request body timeout"}"#),
            (
                Rejection::BadPath(PathError::DotSegment),
                400,
                r#"{"error":"request path contains a '.' or '..' segment"}"#,
            ),
            (Rejection::UpstreamUnavailable, 502, r#"{"error":"upstream unavailable"}"#),
            (Rejection::UpstreamTimeout, 504, r#"{"error":"upstream timeout"}"#),
        ];
        for (rejection, status, body) in cases {
            assert_eq!(rejection.status().as_u16(), status);
            assert_eq!(serde_json::json!({ "error": rejection.message() }).to_string(), body);
        }
    }

    /// The pre-built bodies say exactly what the serialized message says.
    #[test]
    fn static_bodies_match_their_messages() {
        let all = [
            Rejection::InstanceNotFound,
            Rejection::ClientTokenMissing,
            Rejection::ClientTokenInvalid,
            Rejection::NoMatchingRule,
            Rejection::Bearer(Denial::RateLimited { retry_after_seconds: 3 }, None),
            Rejection::Bearer(Denial::IpNotAllowed, None),
            Rejection::Bearer(Denial::Expired, None),
            Rejection::Bearer(Denial::Revoked, None),
            Rejection::Bearer(Denial::NotFound, None),
            Rejection::Bearer(Denial::Malformed, None),
            Rejection::Bearer(Denial::NotForHere, None),
            Rejection::UpstreamUnavailable,
            Rejection::UpstreamTimeout,
        ];
        for r in all {
            let expected = serde_json::json!({ "error": r.message() }).to_string();
            assert_eq!(r.static_body(), Some(expected.as_str()), "{r:?}");
        }
    }
}
