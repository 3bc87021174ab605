#[allow(unused_imports)]
use crate::model::*;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
#[allow(unused_imports)]
use tokengate_core::{
    AccountId, AuditId, ClientId, InstanceId, IssuerId, MemberId, Rule, Timestamp, TokenId, TokenKind,
};

/// A new client with its secret, shown this once.
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedOAuthClient {
    pub client_id: String,
    pub client_secret: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub account_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: tokengate_core::Timestamp,
}

/// Form fields of `POST /oauth/token` (documentation only; parsed by [`Form`]).
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenRequest {
    /// `client_credentials`
    pub grant_type: String,
    /// Space-separated, a subset of the client's scopes.
    pub scope: Option<String>,
    /// With `client_secret_post`.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// Form fields of `POST /oauth/introspect` and `POST /oauth/revoke`.
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenParam {
    pub token: String,
    pub token_type_hint: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewOAuthClient {
    /// 1 to 200 characters, not only spaces, no control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
        )
    )]
    pub name: String,
    pub scopes: Vec<String>,
}

#[derive(Deserialize, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RotateSigningKey {
    /// `EdDSA` (default), `ES256` or `RS256`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = "^(EdDSA|ES256|RS256)$"))]
    pub alg: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RotatedSigningKey {
    pub kid: String,
    pub alg: Cow<'static, str>,
}

#[derive(Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTrustedIssuer {
    pub issuer: String,
    /// `https://…`, or `http://` on a loopback address.
    pub jwks_uri: String,
    pub audience: String,
    /// The claim holding scopes (a space-separated string or an array); default `scope`.
    #[serde(default)]
    pub scopes_claim: Option<String>,
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: Cow<'static, str>,
    pub expires_in: u64,
    pub scope: String,
}

/// An introspection answer (RFC 7662 §2.2). Inactive tokens say only `active: false`.
#[derive(Serialize, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<Cow<'static, str>>,
    /// tokengate's kind: `access_token`, `api_key` (imported keys too), `personal`, `client_token`,
    /// `instance`, `client_secret` or `admin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}
