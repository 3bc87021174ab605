//! A secret in a request body (a password, a room app's server secret): read by the
//! server into a [`SecretString`] that is never printed, written by clients as the
//! plain string the API expects.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone)]
pub struct Secret(pub SecretString);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(SecretString::from(s.into()))
    }
}

impl std::ops::Deref for Secret {
    type Target = SecretString;

    fn deref(&self) -> &SecretString {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose_secret())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        Ok(Secret(SecretString::from(String::deserialize(d)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_sent_as_is_and_never_debug_printed() {
        let s: Secret = serde_json::from_str("\"hunter2\"").unwrap_or_else(|_| Secret::new(""));
        assert_eq!(serde_json::to_string(&s).unwrap_or_default(), "\"hunter2\"");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
