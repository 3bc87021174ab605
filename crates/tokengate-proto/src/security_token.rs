#[allow(unused_imports)]
use crate::model::*;
use crate::reports::Readiness;
use serde::{Deserialize, Serialize};
use tokengate_core::SecurityTokenStatus;
#[allow(unused_imports)]
use tokengate_core::{
    AccountId, AuditId, ClientId, InstanceId, IssuerId, MemberId, Rule, Timestamp, TokenId, TokenKind,
};

/// A new token: shown this once.
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GeneratedToken {
    pub token: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: SecurityTokenStatus,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Activated {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: SecurityTokenStatus,
    pub readiness: Readiness,
}

#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deactivated {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: SecurityTokenStatus,
}

#[derive(Deserialize, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// Seconds the replaced token keeps working (0 to 3153600000, 100 years; default 0).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 3153600000_u64))]
    pub grace_seconds: u64,
}

#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rotated {
    pub token: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: SecurityTokenStatus,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub previous_valid_until: Option<Timestamp>,
}

/// The security token as the API shows it (never the secret).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecurityTokenView {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: SecurityTokenStatus,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub created_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub activated_at: Option<Timestamp>,
    /// When the token replaced at the last rotation stops working (null when none is valid).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub previous_valid_until: Option<Timestamp>,
    /// When a leak report named the current token (it keeps working: rotate it).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub leaked_at: Option<Timestamp>,
    pub readiness: Readiness,
}
