#[allow(unused_imports)]
use crate::model::*;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
#[allow(unused_imports)]
use tokengate_core::{
    AccountId, AuditId, ClientId, InstanceId, IssuerId, MemberId, Rule, Timestamp, TokenId, TokenKind,
};

#[derive(Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewRoomApp {
    #[cfg_attr(feature = "openapi", schema(format = Int64, minimum = 1, maximum = 4294967295.0))]
    pub app_id: u64,
    /// Exactly 32 characters; never shown again.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Password))]
    pub server_secret: crate::Secret,
}

#[derive(Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IssueRoomToken {
    pub user_id: String,
    #[serde(default)]
    pub room_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::docs::PrivilegesDoc))]
    pub privileges: Privileges,
    pub ttl_seconds: u64,
    #[serde(default)]
    /// `gcm` (default) or `cbc`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, pattern = "^(gcm|cbc)$"))]
    pub mode: Option<Mode>,
}

#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssuedRoomToken {
    pub token: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
}

#[derive(Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VerifyRoomToken {
    #[cfg_attr(feature = "openapi", schema(format = Int64, minimum = 0, maximum = 4294967295.0))]
    pub app_id: u32,
    pub token: String,
    #[serde(default)]
    pub room_id: Option<String>,
    #[serde(default)]
    /// `login_room` or `publish_stream`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, pattern = "^(login_room|publish_stream)$"))]
    pub privilege: Option<Privilege>,
}

#[derive(Serialize, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoomVerification {
    pub valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub privileges: Option<Privileges>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// AES-256-GCM ("mode 1"), the default.
    Gcm,
    /// AES-256-CBC with PKCS#7 padding, the legacy layout.
    Cbc,
}

/// The privileges a token grants: key `1` logs into the room, key `2` publishes a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Privileges {
    pub login_room: bool,
    pub publish_stream: bool,
}

/// Which privilege a verification asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Privilege {
    LoginRoom,
    PublishStream,
}
