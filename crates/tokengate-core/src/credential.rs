//! API keys (`tgk_`) and personal access tokens (`tgp_`) as the gateway and the verify
//! API check them: the decision for one presented token, without IO. Rate limits are
//! stateful and live with the caller.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::rules::grants;
use crate::{AccountId, ClientIp, InstanceId, IpAllowlist, Prefix, Timestamp, TokenId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    ApiKey,
    Personal,
}

impl TokenKind {
    pub fn prefix(self) -> Prefix {
        match self {
            TokenKind::ApiKey => Prefix::ApiKey,
            TokenKind::Personal => Prefix::Personal,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::ApiKey => "api_key",
            TokenKind::Personal => "personal",
        }
    }

    pub fn parse(s: &str) -> Option<TokenKind> {
        [TokenKind::ApiKey, TokenKind::Personal].into_iter().find(|k| k.as_str() == s)
    }

    /// The kind a presented token claims by its prefix.
    pub fn of(token: &[u8]) -> Option<TokenKind> {
        match Prefix::of(token)? {
            Prefix::ApiKey => Some(TokenKind::ApiKey),
            Prefix::Personal => Some(TokenKind::Personal),
            _ => None,
        }
    }
}

/// Why a token was refused. The first six are the verify API's reasons (SPEC §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    Malformed,
    NotFound,
    Expired,
    Revoked,
    IpNotAllowed,
    /// The first required scope the token lacks.
    InsufficientScope(String),
    RateLimited {
        retry_after_seconds: u64,
    },
    /// Valid, but of another account or not for this instance: answered like an unknown
    /// token so that nothing is learnt about other accounts.
    NotForHere,
}

impl Denial {
    /// The reason as the verify API and the usage counts name it.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::Malformed => "malformed",
            Denial::NotFound | Denial::NotForHere => "not_found",
            Denial::Expired => "expired",
            Denial::Revoked => "revoked",
            Denial::IpNotAllowed => "ip_not_allowed",
            Denial::InsufficientScope(_) => "insufficient_scope",
            Denial::RateLimited { .. } => "rate_limited",
        }
    }
}

/// One live token, as held in memory.
#[derive(Debug, Clone)]
pub struct Credential {
    pub id: TokenId,
    pub account_id: AccountId,
    pub kind: TokenKind,
    /// Shared between tokens with the same scopes (a million tokens, a few scope sets).
    pub scopes: Arc<[String]>,
    pub expires_at: Option<Timestamp>,
    /// When it stops working (a revocation, or the end of a rotation's grace period).
    pub revoked_at: Option<Timestamp>,
    pub ip_allowlist: IpAllowlist,
    /// Empty: every instance of the account.
    pub instance_ids: Box<[InstanceId]>,
}

impl Credential {
    /// Everything but the rate limit, in the order the verify reasons are reported:
    /// account, revoked, expired, instance, address, scopes.
    pub fn check(
        &self,
        now: Timestamp,
        account: Option<AccountId>,
        instance: Option<InstanceId>,
        client: Option<ClientIp>,
        required: &[String],
    ) -> Result<(), Denial> {
        // Another account's token is answered as unknown, whatever its state: its
        // revocation or expiry is none of this caller's business (SPEC §12).
        if account.is_some_and(|a| a != self.account_id) {
            return Err(Denial::NotForHere);
        }
        if self.revoked_at.is_some_and(|at| at <= now) {
            return Err(Denial::Revoked);
        }
        if self.expires_at.is_some_and(|at| at <= now) {
            return Err(Denial::Expired);
        }
        if instance.is_some_and(|i| !self.instance_ids.is_empty() && !self.instance_ids.contains(&i)) {
            return Err(Denial::NotForHere);
        }
        if client.is_some_and(|c| !c.allowed_by(&self.ip_allowlist)) {
            return Err(Denial::IpNotAllowed);
        }
        match required.iter().find(|scope| !grants(&self.scopes, scope)) {
            Some(missing) => Err(Denial::InsufficientScope(missing.clone())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential() -> Credential {
        Credential {
            id: TokenId::new(),
            account_id: AccountId::new(),
            kind: TokenKind::ApiKey,
            scopes: vec!["messages:*".to_string(), "instance:read".to_string()].into(),
            expires_at: Some(Timestamp::from_millis(10_000)),
            revoked_at: None,
            ip_allowlist: IpAllowlist::parse(&["10.0.0.0/8", "::1/128"]).unwrap(),
            instance_ids: Box::new([]),
        }
    }

    #[test]
    fn every_reason() {
        let c = credential();
        let now = Timestamp::from_millis(5_000);
        let ip = ClientIp::Known("10.1.1.1".parse().unwrap());
        let need = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(c.check(now, Some(c.account_id), None, Some(ip), &need(&["messages:send"])), Ok(()));
        assert_eq!(
            c.check(now, None, None, Some(ip), &need(&["groups:write"])),
            Err(Denial::InsufficientScope("groups:write".into()))
        );
        assert_eq!(
            c.check(now, None, None, Some(ClientIp::Known("192.0.2.1".parse().unwrap())), &[]),
            Err(Denial::IpNotAllowed)
        );
        assert_eq!(c.check(now, None, None, Some(ClientIp::Known("::1".parse().unwrap())), &[]), Ok(()));
        assert_eq!(c.check(now, None, None, Some(ClientIp::Unknown), &[]), Err(Denial::IpNotAllowed));
        assert_eq!(c.check(Timestamp::from_millis(10_000), None, None, None, &[]), Err(Denial::Expired));
        assert_eq!(c.check(now, Some(AccountId::new()), None, None, &[]), Err(Denial::NotForHere));
        let mut limited = c.clone();
        let inst = InstanceId::new();
        limited.instance_ids = Box::new([inst]);
        assert_eq!(limited.check(now, None, Some(inst), None, &[]), Ok(()));
        assert_eq!(limited.check(now, None, Some(InstanceId::new()), None, &[]), Err(Denial::NotForHere));
        let mut revoked = c.clone();
        revoked.revoked_at = Some(Timestamp::from_millis(6_000));
        assert_eq!(revoked.check(now, None, None, None, &[]), Ok(()), "revocation in the future: grace period");
        assert_eq!(revoked.check(Timestamp::from_millis(6_000), None, None, None, &[]), Err(Denial::Revoked));
        let later = Timestamp::from_millis(20_000);
        assert_eq!(
            revoked.check(later, Some(AccountId::new()), None, None, &[]),
            Err(Denial::NotForHere),
            "another account's revoked and expired token is only unknown"
        );
    }
}
