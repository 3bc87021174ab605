//! What a member of an account may do (SPEC §12), decided in one place for every
//! surface a member acts through (today the dashboard). Objects of another account are
//! answered as not found, never as forbidden, so ids of other accounts reveal nothing.
//!
//! | role      | security token, instances, members | tokens and OAuth clients | scopes it may grant |
//! |-----------|------------------------------------|--------------------------|---------------------|
//! | owner     | yes (only owners add or remove owners) | yes, anyone's        | any                 |
//! | admin     | yes                                | yes, anyone's            | any                 |
//! | developer | no                                 | API keys, OAuth clients, its own personal tokens | any but `*` and `account:`, `members:`, `security_token:`, `tokens:` ones |
//! | viewer    | no                                 | its own personal tokens  | only `…:read`       |

use tokengate_core::{AccountId, MemberId, TokenKind};

use crate::store::{ApiToken, Member, Role};

/// Scopes a role may put in a credential it creates. Account administration
/// (`account:`, `members:`, `security_token:`, `tokens:`) and `*` are for owners and
/// admins; viewers get read scopes only.
pub fn role_allows(role: Role, scope: &str) -> bool {
    const ADMIN_PREFIXES: [&str; 4] = ["account:", "members:", "security_token:", "tokens:"];
    match role {
        Role::Owner | Role::Admin => true,
        Role::Developer => scope != "*" && !ADMIN_PREFIXES.iter().any(|p| scope.starts_with(p)),
        Role::Viewer => scope.ends_with(":read"),
    }
}

/// A member acting in its own account.
#[derive(Debug, Clone, Copy)]
pub struct MemberCaller {
    pub member_id: MemberId,
    pub account_id: AccountId,
    pub role: Role,
}

/// Something a member asks to do.
#[derive(Debug)]
pub enum Action<'a> {
    /// Generate, activate, deactivate or rotate the Client-Token.
    ManageSecurityToken,
    /// Add an instance.
    ManageInstances,
    /// Add a member with this role.
    AddMember(Role),
    RemoveMember(&'a Member),
    /// Create an API key, personal token or OAuth client holding these scopes.
    CreateCredential {
        kind: Credential,
        scopes: &'a [String],
    },
    /// Rotate or revoke a token.
    ManageToken(&'a ApiToken),
    /// Delete an OAuth client of this account.
    ManageOAuthClient(AccountId),
    /// Add or delete a webhook of this account (it hears of every token event).
    ManageWebhooks(AccountId),
    /// Turn one's own two-factor login on or off.
    ManageOwnTwoFactor,
}

/// The kinds of credential a member can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    ApiKey,
    PersonalToken,
    OAuthClient,
}

impl From<TokenKind> for Credential {
    fn from(kind: TokenKind) -> Self {
        match kind {
            TokenKind::ApiKey => Credential::ApiKey,
            TokenKind::Personal => Credential::PersonalToken,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Above the member's role.
    #[error("your role does not allow this")]
    Forbidden,
    /// Of another account (answered as if it did not exist).
    #[error("not found")]
    NotFound,
    /// A scope the member's role cannot grant; nothing is created.
    #[error("the role {role} cannot grant the scope {scope}")]
    ScopeAboveRole { role: &'static str, scope: String },
}

impl MemberCaller {
    pub fn new(member: &Member) -> MemberCaller {
        MemberCaller { member_id: member.id, account_id: member.account_id, role: member.role }
    }

    fn is_manager(&self) -> bool {
        matches!(self.role, Role::Owner | Role::Admin)
    }

    pub fn may(&self, action: &Action<'_>) -> bool {
        self.authorize(action).is_ok()
    }

    pub fn authorize(&self, action: &Action<'_>) -> Result<(), Refusal> {
        let forbidden_unless = |ok: bool| if ok { Ok(()) } else { Err(Refusal::Forbidden) };
        match action {
            Action::ManageSecurityToken | Action::ManageInstances => forbidden_unless(self.is_manager()),
            Action::AddMember(role) => {
                forbidden_unless(self.is_manager() && (*role != Role::Owner || self.role == Role::Owner))
            }
            Action::RemoveMember(target) => {
                if target.account_id != self.account_id {
                    return Err(Refusal::NotFound);
                }
                forbidden_unless(self.is_manager() && (target.role != Role::Owner || self.role == Role::Owner))
            }
            Action::CreateCredential { kind, scopes } => {
                // A viewer may hold a personal token (read scopes only); credentials of
                // the account itself (API keys, OAuth clients) need a developer.
                forbidden_unless(self.role != Role::Viewer || *kind == Credential::PersonalToken)?;
                match scopes.iter().find(|s| !role_allows(self.role, s)) {
                    Some(scope) => Err(Refusal::ScopeAboveRole { role: self.role.as_str(), scope: scope.clone() }),
                    None => Ok(()),
                }
            }
            Action::ManageToken(token) => {
                if token.account_id != self.account_id {
                    return Err(Refusal::NotFound);
                }
                match token.kind {
                    // A personal token: its member, or an owner or admin.
                    TokenKind::Personal => {
                        forbidden_unless(self.is_manager() || token.member_id == Some(self.member_id))
                    }
                    TokenKind::ApiKey => forbidden_unless(self.role != Role::Viewer),
                }
            }
            Action::ManageOAuthClient(account) => {
                if *account != self.account_id {
                    return Err(Refusal::NotFound);
                }
                forbidden_unless(self.role != Role::Viewer)
            }
            Action::ManageWebhooks(account) => {
                if *account != self.account_id {
                    return Err(Refusal::NotFound);
                }
                forbidden_unless(self.is_manager())
            }
            Action::ManageOwnTwoFactor => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokengate_core::Timestamp;

    fn member(role: Role, account: AccountId) -> Member {
        Member {
            id: MemberId::new(),
            account_id: account,
            email: "m@example.com".into(),
            role,
            created_at: Timestamp::now(),
        }
    }

    #[test]
    fn roles_cap_the_scopes_of_every_credential() {
        assert!(role_allows(Role::Admin, "*"));
        assert!(role_allows(Role::Developer, "messages:*"));
        assert!(!role_allows(Role::Developer, "*"));
        assert!(!role_allows(Role::Developer, "members:write"));
        assert!(!role_allows(Role::Developer, "tokens:verify"));
        assert!(role_allows(Role::Viewer, "messages:read"));
        assert!(!role_allows(Role::Viewer, "messages:*"));
        let acc = AccountId::new();
        let dev = MemberCaller::new(&member(Role::Developer, acc));
        for kind in [Credential::ApiKey, Credential::PersonalToken, Credential::OAuthClient] {
            let star = ["*".to_string()];
            assert_eq!(
                dev.authorize(&Action::CreateCredential { kind, scopes: &star }),
                Err(Refusal::ScopeAboveRole { role: "developer", scope: "*".into() })
            );
            assert!(dev.may(&Action::CreateCredential { kind, scopes: &["messages:send".to_string()] }));
        }
        let viewer = MemberCaller::new(&member(Role::Viewer, acc));
        let read = ["messages:read".to_string()];
        let send = ["messages:send".to_string()];
        assert_eq!(
            viewer.authorize(&Action::CreateCredential { kind: Credential::ApiKey, scopes: &read }),
            Err(Refusal::Forbidden)
        );
        assert!(viewer.may(&Action::CreateCredential { kind: Credential::PersonalToken, scopes: &read }));
        assert_eq!(
            viewer.authorize(&Action::CreateCredential { kind: Credential::PersonalToken, scopes: &send }),
            Err(Refusal::ScopeAboveRole { role: "viewer", scope: "messages:send".into() })
        );
    }

    #[test]
    fn personal_tokens_are_managed_by_their_member_or_a_manager() {
        let acc = AccountId::new();
        let owner = member(Role::Owner, acc);
        let dev = member(Role::Developer, acc);
        let owners_token = crate::store::test_token(TokenKind::Personal, acc, Some(owner.id));
        let devs_token = crate::store::test_token(TokenKind::Personal, acc, Some(dev.id));
        let dev = MemberCaller::new(&dev);
        assert_eq!(dev.authorize(&Action::ManageToken(&owners_token)), Err(Refusal::Forbidden));
        assert!(dev.may(&Action::ManageToken(&devs_token)));
        assert!(MemberCaller::new(&member(Role::Admin, acc)).may(&Action::ManageToken(&owners_token)));
        let elsewhere = crate::store::test_token(TokenKind::ApiKey, AccountId::new(), None);
        assert_eq!(dev.authorize(&Action::ManageToken(&elsewhere)), Err(Refusal::NotFound));
    }

    #[test]
    fn only_owners_touch_owners() {
        let acc = AccountId::new();
        let admin = MemberCaller::new(&member(Role::Admin, acc));
        assert_eq!(admin.authorize(&Action::AddMember(Role::Owner)), Err(Refusal::Forbidden));
        assert!(admin.may(&Action::AddMember(Role::Developer)));
        let owner = member(Role::Owner, acc);
        assert_eq!(admin.authorize(&Action::RemoveMember(&owner)), Err(Refusal::Forbidden));
        assert!(MemberCaller::new(&owner).may(&Action::RemoveMember(&owner)));
        let other = member(Role::Viewer, AccountId::new());
        assert_eq!(admin.authorize(&Action::RemoveMember(&other)), Err(Refusal::NotFound));
        let dev = MemberCaller::new(&member(Role::Developer, acc));
        assert_eq!(dev.authorize(&Action::ManageSecurityToken), Err(Refusal::Forbidden));
        assert_eq!(dev.authorize(&Action::ManageInstances), Err(Refusal::Forbidden));
    }
}
