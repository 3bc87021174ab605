//! The account security token (the `Client-Token` header, SPEC §5 and §6 step 2):
//! its states and the gateway's decision for one request.

use serde::{Deserialize, Serialize};

use crate::{Digest, Prefix, Timestamp, token};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityTokenStatus {
    None,
    Disabled,
    Active,
}

impl SecurityTokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityTokenStatus::None => "none",
            SecurityTokenStatus::Disabled => "disabled",
            SecurityTokenStatus::Active => "active",
        }
    }
}

/// What the gateway needs to know about an account's security token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SecurityTokenPolicy {
    /// No token: nothing to check, nothing to count for readiness.
    #[default]
    None,
    /// A token exists; when `active` it is enforced, otherwise requests are only counted.
    Configured {
        active: bool,
        current: Digest,
        /// The token replaced at the last rotation and the end of its grace period.
        previous: Option<(Digest, Timestamp)>,
    },
}

/// The verdict on one request's `Client-Token` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTokenCheck {
    /// The account has no security token.
    NotConfigured,
    Valid,
    Missing,
    Invalid,
}

impl SecurityTokenPolicy {
    pub fn is_active(&self) -> bool {
        matches!(self, SecurityTokenPolicy::Configured { active: true, .. })
    }

    /// Checks the presented header value (`None` when the header is absent).
    /// A malformed value is treated exactly like a wrong one, without any digest work.
    pub fn check(&self, presented: Option<&[u8]>, now: Timestamp) -> ClientTokenCheck {
        let SecurityTokenPolicy::Configured { current, previous, .. } = self else {
            return ClientTokenCheck::NotConfigured;
        };
        let Some(presented) = presented else {
            return ClientTokenCheck::Missing;
        };
        let Ok(digest) = token::parse(presented, Prefix::ClientToken) else {
            return ClientTokenCheck::Invalid;
        };
        // Both comparisons always run, so timing does not tell which token matched.
        let matches_current = digest.ct_eq(current);
        let matches_previous = previous.as_ref().is_some_and(|(prev, until)| digest.ct_eq(prev) & (now < *until));
        if matches_current | matches_previous { ClientTokenCheck::Valid } else { ClientTokenCheck::Invalid }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn current_previous_grace_and_missing() {
        let old = token::generate(Prefix::ClientToken);
        let new = token::generate(Prefix::ClientToken);
        let d = |s: &secrecy::SecretString| Digest::of(s.expose_secret().as_bytes());
        let now = Timestamp::from_millis(1_000_000);
        let policy = SecurityTokenPolicy::Configured {
            active: true,
            current: d(&new),
            previous: Some((d(&old), now.plus_secs(60))),
        };
        let b = |s: &secrecy::SecretString| s.expose_secret().as_bytes().to_vec();
        assert_eq!(policy.check(Some(&b(&new)), now), ClientTokenCheck::Valid);
        assert_eq!(policy.check(Some(&b(&old)), now), ClientTokenCheck::Valid);
        assert_eq!(policy.check(Some(&b(&old)), now.plus_secs(60)), ClientTokenCheck::Invalid);
        assert_eq!(policy.check(None, now), ClientTokenCheck::Missing);
        assert_eq!(policy.check(Some(b"tgc_nonsense"), now), ClientTokenCheck::Invalid);
        let other = token::generate(Prefix::ClientToken);
        assert_eq!(policy.check(Some(&b(&other)), now), ClientTokenCheck::Invalid);
        assert_eq!(SecurityTokenPolicy::None.check(None, now), ClientTokenCheck::NotConfigured);
    }
}
