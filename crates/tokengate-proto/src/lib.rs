//! tokengate's wire types: the request and response bodies of the admin API,
//! `/v1/verify`, the room-token and OAuth endpoints, shared by the server (which derives
//! its OpenAPI document from them with the `openapi` feature) and by
//! `tokengate-client`, so that the two cannot drift apart.
//!
//! Modules follow the API's areas; [`model`] holds the records the API shows (accounts,
//! instances, tokens, members, audit entries, webhooks).

pub mod accounts;
#[cfg(feature = "openapi")]
pub mod docs;
pub mod errors;
pub mod imports;
pub mod instances;
pub mod leaks;
pub mod model;
pub mod oauth;
pub mod reports;
pub mod rooms;
pub mod secret;
pub mod security_token;
pub mod tokens;
pub mod webhooks;

pub use errors::ErrorBody;
pub use secret::Secret;
