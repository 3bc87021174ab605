//! The opaque secrets tokengate issues (SPEC §2):
//! `PREFIX` `_` 30 base62 characters from a CSPRNG, then the base62 CRC-32 of everything
//! before it, six characters, most significant digit first. 40 characters in all.
//!
//! A token is checked for shape and checksum before anything looks it up, so a typo or a
//! random string costs a CRC and never a map or store access. At rest and in memory only
//! the SHA-256 digest is kept: with ~178 bits of entropy a fast digest is enough (a slow
//! password hash would only slow the hot path down).

use rand::RngExt;
use rand::distr::Alphanumeric;
use secrecy::SecretString;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// Length of the random part.
pub const RANDOM_LEN: usize = 30;
/// Length of the checksum part.
pub const CHECKSUM_LEN: usize = 6;
/// Total length of every opaque token.
pub const TOKEN_LEN: usize = 4 + RANDOM_LEN + CHECKSUM_LEN;

/// What a token is for; the first four characters of every token say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefix {
    /// `tga_`: platform admin token.
    Admin,
    /// `tgc_`: an account's security token (the `Client-Token` header).
    ClientToken,
    /// `tgi_`: an instance token (in the gateway path).
    Instance,
    /// `tgk_`: API key.
    ApiKey,
    /// `tgp_`: personal access token.
    Personal,
    /// `tgs_`: OAuth client secret.
    ClientSecret,
}

impl Prefix {
    pub const ALL: [Prefix; 6] =
        [Prefix::Admin, Prefix::ClientToken, Prefix::Instance, Prefix::ApiKey, Prefix::Personal, Prefix::ClientSecret];

    /// The prefix including its underscore, e.g. `tgk_`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Prefix::Admin => "tga_",
            Prefix::ClientToken => "tgc_",
            Prefix::Instance => "tgi_",
            Prefix::ApiKey => "tgk_",
            Prefix::Personal => "tgp_",
            Prefix::ClientSecret => "tgs_",
        }
    }

    /// The prefix a presented token claims, if it is one of ours.
    pub fn of(token: &[u8]) -> Option<Prefix> {
        let head = token.get(..4)?;
        Prefix::ALL.into_iter().find(|p| p.as_str().as_bytes() == head)
    }
}

/// Why a presented token was refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token has a different prefix")]
    WrongPrefix,
    #[error("token checksum does not match")]
    BadChecksum,
}

/// SHA-256 digest of a token: what the store and the in-memory indexes hold.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Digest of an arbitrary secret string.
    pub fn of(secret: &[u8]) -> Digest {
        Digest(Sha256::digest(secret).into())
    }

    /// Constant-time equality, for the places that compare rather than look up.
    ///
    /// The differences of all four 64-bit words are folded without branching and only
    /// the folded word goes through `subtle` (byte-wise `subtle` costs ~40 ns a call).
    pub fn ct_eq(&self, other: &Digest) -> bool {
        let word = |d: &[u8; 32], i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(d.get(i * 8..i * 8 + 8).unwrap_or(&[0; 8]));
            u64::from_ne_bytes(w)
        };
        let diff = (0..4).fold(0u64, |acc, i| acc | (word(&self.0, i) ^ word(&other.0, i)));
        diff.ct_eq(&0).into()
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Digest> {
        bytes.try_into().ok().map(Digest)
    }

    /// The first eight bytes, as the in-memory indexes key a digest (SHA-256 output is
    /// uniform already); a match is then compared in full with [`Digest::ct_eq`].
    pub fn prefix(&self) -> u64 {
        let [a, b, c, d, e, f, g, h, ..] = self.0;
        u64::from_le_bytes([a, b, c, d, e, f, g, h])
    }
}

impl std::fmt::Debug for Digest {
    // A digest is not a secret, but there is no reason to print all of it either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, ..] = self.0;
        write!(f, "Digest({a:02x}{b:02x}{c:02x}{d:02x}…)")
    }
}

/// Base62 CRC-32 of `body`, left-padded with `0` to six characters.
fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let crc = crc32fast::hash(body);
    let mut out = [b'0'; CHECKSUM_LEN];
    let encoded = base62::encode(crc);
    // u32::MAX is "4gfFC3" in base62: never more than six digits.
    let start = CHECKSUM_LEN.saturating_sub(encoded.len());
    for (slot, digit) in out.iter_mut().skip(start).zip(encoded.bytes()) {
        *slot = digit;
    }
    out
}

/// Issues a new token of the given kind from the operating system's CSPRNG.
pub fn generate(prefix: Prefix) -> SecretString {
    let mut token = String::with_capacity(TOKEN_LEN);
    token.push_str(prefix.as_str());
    token.extend(rand::rng().sample_iter(Alphanumeric).take(RANDOM_LEN).map(char::from));
    let sum = checksum(token.as_bytes());
    token.extend(sum.iter().map(|&b| char::from(b)));
    SecretString::from(token)
}

/// Checks a presented token's shape, prefix and checksum, and returns its digest.
///
/// This is the only way from presented bytes to a [`Digest`] that is looked up, so a
/// token that fails here never reaches a map or the store.
pub fn parse(presented: &[u8], expected: Prefix) -> Result<Digest, TokenError> {
    if presented.len() != TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let (body, sum) = presented.split_at(TOKEN_LEN - CHECKSUM_LEN);
    if Prefix::of(body) != Some(expected) {
        return Err(TokenError::WrongPrefix);
    }
    let random = body.get(4..).ok_or(TokenError::Malformed)?;
    if !random.iter().chain(sum).all(u8::is_ascii_alphanumeric) {
        return Err(TokenError::Malformed);
    }
    // Decoding the presented six digits (fixed width, so the representation is unique)
    // and comparing numbers avoids encoding, and allocating, on every request.
    let presented_sum = base62::decode(sum).map_err(|_| TokenError::Malformed)?;
    if presented_sum != u128::from(crc32fast::hash(body)) {
        return Err(TokenError::BadChecksum);
    }
    Ok(Digest::of(presented))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn generated_tokens_have_the_contract_shape() {
        for prefix in Prefix::ALL {
            let token = generate(prefix);
            let t = token.expose_secret();
            assert_eq!(t.len(), 40);
            assert!(t.starts_with(prefix.as_str()));
            assert!(t[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
            assert_eq!(parse(t.as_bytes(), prefix), Ok(Digest::of(t.as_bytes())));
        }
    }

    #[test]
    fn checksum_is_base62_crc32_of_prefix_and_random() {
        // Computed independently with Python's zlib.crc32: CRC-32/IEEE("tgk_" + 30 x 'a')
        // = 0xa2794ba9 = 2725858217, which is "2yTQF7" in base62 with the 0-9A-Za-z alphabet.
        let body = format!("tgk_{}", "a".repeat(30));
        assert_eq!(crc32fast::hash(body.as_bytes()), 0xa279_4ba9);
        assert_eq!(&checksum(body.as_bytes()), b"2yTQF7");
    }

    #[test]
    fn short_checksums_are_left_padded_with_zero() {
        // Search a body whose CRC is small enough to need padding.
        let found =
            (0u32..2_000_000).map(|i| format!("tgk_{i:0>30}")).find(|b| crc32fast::hash(b.as_bytes()) < 62u32.pow(5));
        let body = found.unwrap_or_default();
        assert!(!body.is_empty(), "no short checksum found in the search range");
        assert_eq!(checksum(body.as_bytes())[0], b'0');
    }

    #[test]
    fn bad_checksum_wrong_prefix_and_shape_are_rejected() {
        let token = generate(Prefix::ApiKey);
        let t = token.expose_secret().as_bytes().to_vec();
        let mut flipped = t.clone();
        flipped[10] = if flipped[10] == b'a' { b'b' } else { b'a' };
        assert_eq!(parse(&flipped, Prefix::ApiKey), Err(TokenError::BadChecksum));
        assert_eq!(parse(&t, Prefix::Personal), Err(TokenError::WrongPrefix));
        assert_eq!(parse(&t[..39], Prefix::ApiKey), Err(TokenError::Malformed));
        let mut bad_char = t.clone();
        bad_char[20] = b'-';
        assert_eq!(parse(&bad_char, Prefix::ApiKey), Err(TokenError::Malformed));
        assert_eq!(parse(b"", Prefix::ApiKey), Err(TokenError::Malformed));
    }

    #[test]
    fn digest_equality_sees_every_word() {
        let a = Digest::of(b"a");
        assert!(a.ct_eq(&a));
        for i in 0..32 {
            let mut b = a;
            b.0[i] ^= 0x80;
            assert!(!a.ct_eq(&b), "byte {i}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = parse(&bytes, Prefix::ClientToken);
        }

        #[test]
        fn any_single_character_change_is_detected(pos in 4usize..40, c in "[0-9A-Za-z]") {
            let token = generate(Prefix::ClientToken);
            let mut t = token.expose_secret().as_bytes().to_vec();
            let new = c.as_bytes()[0];
            proptest::prop_assume!(t[pos] != new);
            t[pos] = new;
            proptest::prop_assert!(parse(&t, Prefix::ClientToken).is_err());
        }
    }
}
