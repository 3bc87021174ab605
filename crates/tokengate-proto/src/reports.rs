#[allow(unused_imports)]
use crate::model::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
#[allow(unused_imports)]
use tokengate_core::{
    AccountId, AuditId, ClientId, InstanceId, IssuerId, MemberId, Rule, Timestamp, TokenId, TokenKind,
};

#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    pub buckets: Vec<UsageBucket>,
}

/// "Is it safe to activate?": requests to the account's instances since the current
/// token was created (at most `window_seconds` back), by what they carried.
#[derive(Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    pub window_seconds: u64,
    pub with_valid_token: u64,
    pub missing: u64,
    pub invalid: u64,
    pub total: u64,
    /// True when requests were seen and every one carried the valid token.
    pub safe_to_activate: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageBucket {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub start: Timestamp,
    pub allowed: u64,
    pub rejected: u64,
    pub by_reason: BTreeMap<String, u64>,
}
