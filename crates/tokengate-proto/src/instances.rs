#[allow(unused_imports)]
use crate::model::*;
use serde::{Deserialize, Serialize};
#[allow(unused_imports)]
use tokengate_core::{
    AccountId, AuditId, ClientId, InstanceId, IssuerId, MemberId, Rule, Timestamp, TokenId, TokenKind,
};

/// A new instance, with its token: shown this once.
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedInstance {
    #[serde(flatten)]
    pub instance: Instance,
    pub token: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewInstance {
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
    /// `http://` or `https://`, with an optional base path.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[hH][tT][tT][pP][sS]?://[^/?#@ ]+"))]
    pub upstream_url: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::docs::RuleDoc>))]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InstancePatch {
    pub name: Option<String>,
    pub upstream_url: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<crate::docs::RuleDoc>>))]
    pub rules: Option<Vec<Rule>>,
}
