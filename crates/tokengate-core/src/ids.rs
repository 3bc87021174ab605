//! Typed identifiers. Every id is a UUIDv7 (time-ordered, so lists sort by creation),
//! wrapped in a type per object so an instance id can never be passed where an account
//! id is expected. Parsing is strict: a path segment that is not a UUID names nothing.

use std::fmt;
use std::str::FromStr;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::try_parse(s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }
    };
}

id_type!(
    /// A tenant.
    AccountId
);
id_type!(
    /// A protected upstream of an account.
    InstanceId
);
id_type!(
    /// A person in an account.
    MemberId
);
id_type!(
    /// One audit log entry.
    AuditId
);
id_type!(
    /// An API key or personal access token (not the secret: its public handle).
    TokenId
);
id_type!(
    /// An OAuth client (its `client_id`; public, unlike its secret).
    ClientId
);
id_type!(
    /// A trusted identity provider of an account.
    IssuerId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = AccountId::new();
        assert_eq!(id.to_string().parse::<AccountId>().ok(), Some(id));
        assert!("not-an-id".parse::<AccountId>().is_err());
        assert!("".parse::<InstanceId>().is_err());
    }

    #[test]
    fn ids_are_time_ordered() {
        let a = InstanceId::new();
        let b = InstanceId::new();
        assert!(a < b);
    }
}
