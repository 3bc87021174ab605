//! Route rules of an instance (SPEC §6 step 3): `[{methods, path, scopes}]`, the first
//! rule whose methods and path glob match the request decides which scopes a bearer
//! token must hold; a request no rule matches is refused.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use wildmatch::WildMatch;

use crate::path::route_form;

/// One rule as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// HTTP methods, upper case; empty or `["*"]` means any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// A glob on the path after the instance token, starting with `/` (`*` any run of
    /// characters, `?` one character).
    pub path: String,
    /// Scopes the bearer token must hold (all of them).
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("rule path must start with '/' and be at most 512 characters")]
    BadPath,
    #[error("rule method {0:?} is not an HTTP method")]
    BadMethod(String),
    #[error("scope {0:?} is not valid (letters, digits, '_', '-', '.', ':', and an optional trailing '*')")]
    BadScope(String),
    #[error("at most 100 rules per instance")]
    TooMany,
}

/// Checks a scope's spelling: `messages:send`, `messages:*` or `*`.
pub fn validate_scope(scope: &str) -> Result<(), RuleError> {
    let body = scope.strip_suffix('*').unwrap_or(scope);
    let ok = scope.len() <= 128
        && !scope.is_empty()
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
        && (body.len() == scope.len() || body.is_empty() || body.ends_with(':'));
    if ok { Ok(()) } else { Err(RuleError::BadScope(scope.chars().take(64).collect())) }
}

/// Whether a set of granted scopes covers one required scope.
/// `*` grants everything; `messages:*` grants every `messages:` scope.
pub fn grants(granted: &[String], required: &str) -> bool {
    granted.iter().any(|g| {
        g == required
            || g == "*"
            || g.strip_suffix('*').is_some_and(|prefix| prefix.ends_with(':') && required.starts_with(prefix))
    })
}

/// The rules of an instance, validated and compiled for matching.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<(Rule, WildMatch)>,
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> Result<RuleSet, RuleError> {
        if rules.len() > 100 {
            return Err(RuleError::TooMany);
        }
        let mut compiled = Vec::with_capacity(rules.len());
        for mut rule in rules {
            if !rule.path.starts_with('/') || rule.path.len() > 512 {
                return Err(RuleError::BadPath);
            }
            for m in &mut rule.methods {
                let ok = m == "*" || (!m.is_empty() && m.len() <= 16 && m.bytes().all(|b| b.is_ascii_alphabetic()));
                if !ok {
                    return Err(RuleError::BadMethod(m.chars().take(32).collect()));
                }
                m.make_ascii_uppercase();
            }
            for s in &rule.scopes {
                validate_scope(s)?;
            }
            let glob = WildMatch::new(&rule.path);
            compiled.push((rule, glob));
        }
        Ok(RuleSet { rules: compiled })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|(r, _)| r)
    }

    /// The first rule matching `method` and `path`, if any.
    pub fn matching(&self, method: &str, path: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|(rule, glob)| {
                let method_ok =
                    rule.methods.is_empty() || rule.methods.iter().any(|m| m == "*" || m.eq_ignore_ascii_case(method));
                method_ok && glob.matches(path)
            })
            .map(|(rule, _)| rule)
    }

    /// The scopes a request needs, given its canonical tail (see [`crate::path`]).
    /// When the tail has a second spelling a lenient upstream would route the same way
    /// (`;` parameters, a trailing `/`), the rules each spelling matches all apply, so
    /// neither spelling reaches a route under weaker rules. `None` when no rule matches
    /// any spelling: the request is refused.
    pub fn required_scopes(&self, method: &str, canonical: &str) -> Option<Cow<'_, [String]>> {
        let exact = self.matching(method, canonical);
        let Some(other) = route_form(canonical) else {
            return exact.map(|r| Cow::Borrowed(r.scopes.as_slice()));
        };
        match (exact, self.matching(method, &other)) {
            (None, None) => None,
            (Some(r), None) | (None, Some(r)) => Some(Cow::Borrowed(r.scopes.as_slice())),
            (Some(a), Some(b)) if std::ptr::eq(a, b) => Some(Cow::Borrowed(a.scopes.as_slice())),
            (Some(a), Some(b)) => {
                let mut all = a.scopes.clone();
                all.extend(b.scopes.iter().filter(|s| !a.scopes.contains(s)).cloned());
                Some(Cow::Owned(all))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(methods: &[&str], path: &str, scopes: &[&str]) -> Rule {
        Rule {
            methods: methods.iter().map(|s| s.to_string()).collect(),
            path: path.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn first_match_wins_and_methods_filter() {
        let set =
            RuleSet::new(vec![rule(&["post"], "/send-*", &["messages:send"]), rule(&[], "/*", &["instance:read"])])
                .unwrap();
        assert_eq!(set.matching("POST", "/send-text").unwrap().scopes, ["messages:send"]);
        assert_eq!(set.matching("GET", "/send-text").unwrap().scopes, ["instance:read"]);
        assert_eq!(set.matching("GET", "/status").unwrap().scopes, ["instance:read"]);
        let only_send = RuleSet::new(vec![rule(&["POST"], "/send-*", &[])]).unwrap();
        assert!(only_send.matching("POST", "/status").is_none());
    }

    #[test]
    fn every_spelling_of_a_route_needs_its_rule() {
        let set =
            RuleSet::new(vec![rule(&["POST"], "/send-text", &["messages:send"]), rule(&[], "/*", &["instance:read"])])
                .unwrap();
        let need = |path: &str| set.required_scopes("POST", path).map(|s| s.into_owned());
        assert_eq!(need("/send-text"), Some(vec!["messages:send".to_string()]));
        assert_eq!(need("/status"), Some(vec!["instance:read".to_string()]));
        let both = Some(vec!["instance:read".to_string(), "messages:send".to_string()]);
        assert_eq!(need("/send-text;x=1"), both);
        assert_eq!(need("/send-text%3Bx"), both);
        assert_eq!(need("/send-text/"), both);
        let only = RuleSet::new(vec![rule(&[], "/items/", &["items:read"])]).unwrap();
        assert_eq!(only.required_scopes("GET", "/items/").map(|s| s.into_owned()), Some(vec!["items:read".into()]));
        assert_eq!(only.required_scopes("GET", "/other/"), None);
    }

    proptest::proptest! {
        /// A tail and its route form never need fewer scopes than either one alone.
        #[test]
        fn spellings_only_add_requirements(tail in "(/[a-z;=]{0,6}){1,4}/?") {
            let set = RuleSet::new(vec![
                rule(&[], "/a*", &["a:x"]),
                rule(&[], "/b/*", &["b:x"]),
                rule(&[], "/*", &["any:read"]),
            ]).unwrap();
            if let Some(need) = set.required_scopes("GET", &tail) {
                if let Some(r) = set.matching("GET", &tail) {
                    proptest::prop_assert!(r.scopes.iter().all(|s| need.contains(s)));
                }
                if let Some(form) = route_form(&tail) && let Some(r) = set.matching("GET", &form) {
                    proptest::prop_assert!(r.scopes.iter().all(|s| need.contains(s)));
                }
            } else {
                proptest::prop_assert!(set.matching("GET", &tail).is_none());
            }
        }
    }

    #[test]
    fn scope_wildcards() {
        let granted = vec!["messages:*".to_string(), "groups:read".to_string()];
        assert!(grants(&granted, "messages:send"));
        assert!(grants(&granted, "groups:read"));
        assert!(!grants(&granted, "groups:write"));
        assert!(!grants(&granted, "messagesX:send"));
        assert!(grants(&["*".to_string()], "anything:at-all"));
    }

    #[test]
    fn invalid_rules_are_refused() {
        assert_eq!(RuleSet::new(vec![rule(&[], "send", &[])]).err(), Some(RuleError::BadPath));
        assert!(RuleSet::new(vec![rule(&["GE T"], "/x", &[])]).is_err());
        assert!(RuleSet::new(vec![rule(&[], "/x", &["bad scope"])]).is_err());
        assert!(RuleSet::new(vec![rule(&[], "/x", &["a*b"])]).is_err());
        assert!(validate_scope("messages:*").is_ok());
        assert!(validate_scope("*").is_ok());
    }
}
