#[allow(unused_imports)]
use crate::model::*;
use serde::{Deserialize, Serialize};
#[allow(unused_imports)]
use tokengate_core::{
    AccountId, AuditId, ClientId, InstanceId, IssuerId, MemberId, Rule, Timestamp, TokenId, TokenKind,
};

/// A line that was not imported, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LineError {
    pub line: u64,
    pub error: String,
}

/// The answer of an import.
#[derive(Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportSummary {
    pub imported: u64,
    /// Lines whose key exists already (imported before, or twice in this file).
    pub skipped: u64,
    /// Lines refused, all of them: `errors` names the first 1000.
    #[serde(default)]
    pub failed: u64,
    pub errors: Vec<LineError>,
}
