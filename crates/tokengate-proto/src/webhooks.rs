#[allow(unused_imports)]
use crate::model::*;
use serde::{Deserialize, Serialize};
#[allow(unused_imports)]
use tokengate_core::{
    AccountId, AuditId, ClientId, InstanceId, IssuerId, MemberId, Rule, Timestamp, TokenId, TokenKind,
};

/// A new webhook, with its signing secret: shown this once.
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_…`: verifies `webhook-signature` (Standard Webhooks).
    pub secret: String,
}

/// `POST /v1/accounts/{acc}/webhooks`.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `http://` or `https://`, at most 2048 characters.
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub url: String,
    /// One or more of `token.created`, `token.revoked`, `token.leaked`, `token.expiring`,
    /// `security_token.activated`, `security_token.rotated`.
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub events: Vec<String>,
}
