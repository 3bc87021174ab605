//! Verifying a presented JWT under RFC 8725: bounded size, a `kid` naming a key we hold,
//! exactly that key's algorithm (so never `none`, never HS with a public key), the
//! issuer exact, an audience required, `exp`/`nbf` with at most 60 s of leeway. Keys are
//! only ever ours or fetched from a configured JWKS: `jku`, `x5u`, `jwk` and `x5c`
//! headers are never read.

use std::collections::HashMap;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use serde::de::DeserializeOwned;

use super::keys::VerifyKey;

/// Larger presented tokens are refused before any parsing.
pub const MAX_JWT_BYTES: usize = 8 * 1024;
/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("not a well-formed JWT")]
    Malformed,
    #[error("signed by an unknown key")]
    UnknownKey,
    #[error("wrong algorithm for its key")]
    WrongAlgorithm,
    #[error("wrong token type")]
    WrongType,
    #[error("bad signature")]
    BadSignature,
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotYetValid,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("claims missing or invalid")]
    BadClaims,
}

/// What a token must carry to be accepted.
pub struct Expect<'a> {
    pub issuer: &'a str,
    /// `None`: any audience is accepted here and the caller checks it.
    pub audience: Option<&'a str>,
    /// Accepted `typ` header values (compared case-insensitively); `None`: not checked.
    pub typ: Option<&'a [&'a str]>,
}

/// Verifies `token` against `keys` and returns its claims and the `kid` of the key
/// that verified it.
pub fn verify<T: DeserializeOwned>(
    token: &[u8],
    keys: &HashMap<String, VerifyKey>,
    expect: &Expect<'_>,
) -> Result<(T, String), JwtError> {
    if token.len() > MAX_JWT_BYTES || token.iter().filter(|b| **b == b'.').count() != 2 {
        return Err(JwtError::Malformed);
    }
    let header = decode_header(token).map_err(|_| JwtError::Malformed)?;
    let key = header.kid.as_deref().and_then(|kid| keys.get(kid)).ok_or(JwtError::UnknownKey)?;
    if header.alg != key.alg {
        return Err(JwtError::WrongAlgorithm);
    }
    if let Some(accepted) = expect.typ {
        let typ = header.typ.as_deref().unwrap_or_default();
        if !accepted.iter().any(|t| t.eq_ignore_ascii_case(typ)) {
            return Err(JwtError::WrongType);
        }
    }
    let mut validation = Validation::new(key.alg);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_nbf = true;
    validation.set_issuer(&[expect.issuer]);
    let mut required = vec!["exp", "iss"];
    match expect.audience {
        Some(aud) => {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    let kid = key.kid.clone();
    decode::<T>(token, &key.key, &validation).map(|data| (data.claims, kid)).map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature => JwtError::BadSignature,
        ErrorKind::InvalidAlgorithm => JwtError::WrongAlgorithm,
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::InvalidIssuer => JwtError::WrongIssuer,
        ErrorKind::InvalidAudience => JwtError::WrongAudience,
        ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => JwtError::Malformed,
        _ => JwtError::BadClaims,
    })
}

/// The `iss` of a token, read without verification, only to choose whose keys verify
/// it; [`verify`] then requires that exact issuer.
pub fn peek_issuer(token: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: String,
    }
    if token.len() > MAX_JWT_BYTES {
        return None;
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<Iss>(token).ok().map(|c| c.iss)
}

/// The `aud` of a token, read without verification: only to answer another account's
/// expired token like an unknown one (never to accept anything).
pub fn peek_audience(token: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    #[derive(serde::Deserialize)]
    struct Claims {
        aud: Option<Aud>,
    }
    if token.len() > MAX_JWT_BYTES {
        return Vec::new();
    }
    match jsonwebtoken::dangerous::insecure_decode_claims::<Claims>(token).ok().and_then(|c| c.aud) {
        Some(Aud::One(a)) => vec![a],
        Some(Aud::Many(list)) => list,
        None => Vec::new(),
    }
}
