#[allow(unused_imports)]
use crate::model::*;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
#[allow(unused_imports)]
use tokengate_core::{
    AccountId, AuditId, ClientId, InstanceId, IssuerId, MemberId, Rule, Timestamp, TokenId, TokenKind,
};

#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeakReceived {
    /// How many strings the report held: the same answer whatever they were.
    pub received: usize,
}

/// A report from anyone (`POST /v1/leaks`).
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LeakReport {
    /// 1 to 100 strings that may be tokens.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 100))]
    pub tokens: Vec<String>,
    /// Where they were found.
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub url: Option<String>,
    /// Who found them, or how.
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub source: Option<String>,
}

/// One reported match, as GitHub sends it.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GithubMatch {
    pub token: String,
    #[serde(rename = "type", default)]
    pub token_type: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
}

/// Our answer for one match.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GithubLabel {
    pub token_raw: String,
    pub token_type: String,
    /// `true_positive` when the string is a secret tokengate issued or imported.
    pub label: Cow<'static, str>,
}
