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

/// Why a request was refused, as usage counts and the
/// `tokengate_gateway_requests_total{reason}` metric name it: one word per way a
/// [`Rejection`] can end a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    InstanceNotFound,
    BadPath,
    IpNotAllowed,
    ClientTokenMissing,
    ClientTokenInvalid,
    NoMatchingRule,
    InvalidToken,
    InsufficientScope,
    RateLimited,
    TokenIpNotAllowed,
    TokenExpired,
    TokenRevoked,
    BodyTooLarge,
    BodyTimeout,
    BadRequest,
    UpstreamUnavailable,
    UpstreamTimeout,
    UpstreamAddressNotAllowed,
}

impl Reason {
    /// Every reason, in declaration order (`ALL[r as usize] == r`, checked by a test).
    pub const ALL: [Reason; 18] = [
        Reason::InstanceNotFound,
        Reason::BadPath,
        Reason::IpNotAllowed,
        Reason::ClientTokenMissing,
        Reason::ClientTokenInvalid,
        Reason::NoMatchingRule,
        Reason::InvalidToken,
        Reason::InsufficientScope,
        Reason::RateLimited,
        Reason::TokenIpNotAllowed,
        Reason::TokenExpired,
        Reason::TokenRevoked,
        Reason::BodyTooLarge,
        Reason::BodyTimeout,
        Reason::BadRequest,
        Reason::UpstreamUnavailable,
        Reason::UpstreamTimeout,
        Reason::UpstreamAddressNotAllowed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InstanceNotFound => "instance_not_found",
            Reason::BadPath => "bad_path",
            Reason::IpNotAllowed => "ip_not_allowed",
            Reason::ClientTokenMissing => "client_token_missing",
            Reason::ClientTokenInvalid => "client_token_invalid",
            Reason::NoMatchingRule => "no_matching_rule",
            Reason::InvalidToken => "invalid_token",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::RateLimited => "rate_limited",
            Reason::TokenIpNotAllowed => "token_ip_not_allowed",
            Reason::TokenExpired => "token_expired",
            Reason::TokenRevoked => "token_revoked",
            Reason::BodyTooLarge => "body_too_large",
            Reason::BodyTimeout => "body_timeout",
            Reason::BadRequest => "bad_request",
            Reason::UpstreamUnavailable => "upstream_unavailable",
            Reason::UpstreamTimeout => "upstream_timeout",
            Reason::UpstreamAddressNotAllowed => "upstream_address_not_allowed",
        }
    }

    /// The `kind` of `tokengate_upstream_errors_total` a reason counts as, if any.
    pub fn upstream_error(self) -> Option<&'static str> {
        match self {
            Reason::UpstreamUnavailable => Some("unavailable"),
            Reason::UpstreamTimeout => Some("timeout"),
            Reason::UpstreamAddressNotAllowed => Some("egress_denied"),
            _ => None,
        }
    }
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

    /// The reason recorded in usage counts and metrics.
    pub fn reason(&self) -> Reason {
        match self {
            Rejection::InstanceNotFound => Reason::InstanceNotFound,
            Rejection::BadPath(_) => Reason::BadPath,
            Rejection::IpNotAllowed(_) => Reason::IpNotAllowed,
            Rejection::ClientTokenMissing => Reason::ClientTokenMissing,
            Rejection::ClientTokenInvalid => Reason::ClientTokenInvalid,
            Rejection::NoMatchingRule => Reason::NoMatchingRule,
            Rejection::Bearer(d, _) => match d {
                Denial::InsufficientScope(_) => Reason::InsufficientScope,
                Denial::RateLimited { .. } => Reason::RateLimited,
                Denial::IpNotAllowed => Reason::TokenIpNotAllowed,
                Denial::Expired => Reason::TokenExpired,
                Denial::Revoked => Reason::TokenRevoked,
                Denial::Malformed | Denial::NotFound | Denial::NotForHere => Reason::InvalidToken,
            },
            Rejection::BodyTooLarge => Reason::BodyTooLarge,
            Rejection::BodyTimeout => Reason::BodyTimeout,
            Rejection::BadRequest(_) => Reason::BadRequest,
            Rejection::UpstreamUnavailable => Reason::UpstreamUnavailable,
            Rejection::EgressDenied => Reason::UpstreamAddressNotAllowed,
            Rejection::UpstreamTimeout => Reason::UpstreamTimeout,
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

    /// The body of the answer.
    pub fn body(&self) -> bytes::Bytes {
        match self.static_body() {
            Some(text) => bytes::Bytes::from_static(text.as_bytes()),
            None => serde_json::json!({ "error": self.message() }).to_string().into(),
        }
    }

    /// The header a refusal carries besides `Content-Type`: the bearer challenge, or
    /// `Retry-After` for a rate limit.
    pub fn extra_header(&self) -> Option<(header::HeaderName, HeaderValue)> {
        let Rejection::Bearer(denial, _) = self else {
            return None;
        };
        match denial {
            Denial::InsufficientScope(scope) => {
                let challenge = format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"");
                HeaderValue::from_str(&challenge).ok().map(|v| (header::WWW_AUTHENTICATE, v))
            }
            Denial::RateLimited { retry_after_seconds } => {
                Some((header::RETRY_AFTER, HeaderValue::from((*retry_after_seconds).max(1))))
            }
            Denial::IpNotAllowed => None,
            _ => Some((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""))),
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let mut response = Response::new(Body::from(self.body()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some((name, value)) = self.extra_header() {
            headers.insert(name, value);
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

    /// `Reason::ALL` holds every reason once, at its own index, under distinct names.
    #[test]
    fn every_reason_once_in_order() {
        let mut names = std::collections::HashSet::new();
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "{reason:?}");
            assert!(names.insert(reason.as_str()), "{reason:?}");
        }
        // The last variant closes the list: a reason added after it would not fit.
        assert_eq!(Reason::UpstreamAddressNotAllowed as usize, Reason::ALL.len() - 1);
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
