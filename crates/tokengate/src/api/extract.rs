//! Extractors that turn bad input into our error shape: JSON bodies, admin
//! authentication, and ids in paths.

use std::str::FromStr;

use axum::extract::{FromRequest, FromRequestParts, Request};
use bytes::Bytes;
use http::header;
use http::request::Parts;
use serde::de::DeserializeOwned;
use tokengate_core::token::{self, Prefix};

use super::error::ApiError;
use crate::gateway::PeerAddr;
use crate::gateway::bearer_token;
use crate::service::{Actor, Services};

/// A JSON body. Malformed JSON → 400, anything but an object (`[]`, `1`, `"x"`) or
/// wrong fields or types → 422, another content type → 415, too large → 413. An empty
/// body reads as `{}`. (serde would read `[]` as a struct whose fields all have
/// defaults: the object check comes first.)
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(header::CONTENT_TYPE).map(|v| v.as_bytes().to_ascii_lowercase());
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::BadRequest("could not read the request body".into())
            }
        })?;
        let body: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        if body != b"{}" {
            let json = content_type.as_deref().is_some_and(|ct| {
                let essence = ct.split(|&b| b == b';').next().unwrap_or_default();
                let essence = essence.trim_ascii();
                essence == b"application/json" || essence.ends_with(b"+json")
            });
            if !json {
                return Err(ApiError::UnsupportedMediaType);
            }
        }
        let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if first != Some(b'{') {
            return match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => Err(ApiError::Unprocessable("the request body must be a JSON object".into())),
                Err(e) => Err(ApiError::BadRequest(format!("malformed JSON: {e}"))),
            };
        }
        let mut value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
        if holds_nul(&value) {
            // No store keeps a NUL in text (PostgreSQL refuses it): refused here, for every
            // field of every endpoint, rather than failing in the store.
            return Err(ApiError::Unprocessable("strings must not contain NUL (\\u0000)".into()));
        }
        integral_floats_as_integers(&mut value);
        serde_json::from_value(value)
            .map(ApiJson)
            .map_err(|e| ApiError::Unprocessable(format!("invalid request body: {e}")))
    }
}

/// Whether any string of `value`, or any field name, holds a NUL.
fn holds_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => text.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(holds_nul),
        serde_json::Value::Object(fields) => fields.iter().any(|(name, v)| name.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// JSON has one number type: `5.0` is the integer 5 to JSON Schema (and to generated
/// clients), so it is read as one; `5.5` stays a float and is refused where a whole
/// number is expected.
fn integral_floats_as_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0) {
                // Within ±2^53 a float names exactly one integer.
                if f.abs() <= 9_007_199_254_740_992.0 {
                    #[allow(clippy::cast_possible_truncation)]
                    let i = f as i64;
                    *n = i.into();
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// The platform admin, authenticated by `Authorization: Bearer tga_…`.
pub struct Admin(pub Actor);

impl FromRequestParts<Services> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self, Self::Rejection> {
        admin_actor(&parts.headers, &parts.extensions, services).map(Admin).ok_or(ApiError::Unauthorized)
    }
}

/// The platform admin presenting `Authorization: Bearer tga_…`, as an audit actor.
pub fn admin_actor(headers: &http::HeaderMap, extensions: &http::Extensions, services: &Services) -> Option<Actor> {
    let digest = token::parse(bearer_token(headers)?, Prefix::Admin).ok()?;
    let id = services.state.admin_token_id(&digest)?;
    Some(Actor { name: format!("admin:{id}"), ip: PeerAddr::ip_of(extensions).map(|ip| ip.to_string()) })
}

/// Parses an id from a path; anything that is not one names nothing (404).
pub fn path_id<T: FromStr>(raw: &str, what: &'static str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound(what))
}

/// Who may call `POST /v1/verify`: the platform admin, or an API key holding
/// `tokens:verify`, which then sees only its own account's tokens.
pub enum Verifier {
    Admin,
    Account(tokengate_core::AccountId),
}

impl FromRequestParts<Services> for Verifier {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self, Self::Rejection> {
        let presented = bearer_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
        if let Ok(digest) = token::parse(presented, Prefix::Admin) {
            return services.state.admin_token_id(&digest).map(|_| Verifier::Admin).ok_or(ApiError::Unauthorized);
        }
        let ip = PeerAddr::ip_of(&parts.extensions);
        let required = ["tokens:verify".to_string()];
        match services.state.verify_token(
            presented,
            tokengate_core::Timestamp::now(),
            None,
            None,
            ip.map(tokengate_core::ClientIp::Known),
            &required,
        ) {
            Ok(live) if live.credential.kind == tokengate_core::TokenKind::ApiKey => {
                Ok(Verifier::Account(live.credential.account_id))
            }
            _ => Err(ApiError::Unauthorized),
        }
    }
}
