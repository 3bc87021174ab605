//! tokengate's domain layer: the formats of the secrets it issues, typed ids, scopes,
//! route rules, IP allowlists and the account security token's policy.
//!
//! Nothing here performs IO, so every rule of the product can be unit-tested in
//! isolation and the gateway's hot path can call it without ever awaiting.

pub mod allowlist;
pub mod credential;
pub mod forwarded;
pub mod ids;
pub mod path;
pub mod rules;
pub mod security_token;
pub mod timestamp;
pub mod token;

pub use allowlist::IpAllowlist;
pub use credential::{Credential, Denial, TokenKind};
pub use forwarded::{ClientIp, ViaMarker};
pub use ids::{AccountId, AuditId, ClientId, InstanceId, IssuerId, MemberId, TokenId};
pub use path::{PathError, canonical_tail};
pub use rules::{Rule, RuleSet};
pub use security_token::{ClientTokenCheck, SecurityTokenPolicy, SecurityTokenStatus};
pub use timestamp::Timestamp;
pub use token::{Digest, Prefix, TokenError};
