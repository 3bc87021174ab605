//! JWT signing keys: generated with aws-lc-rs, each pinned to one algorithm, the private
//! half sealed under the master key, the public half published as a JWK whose `kid` is
//! its RFC 7638 thumbprint.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use zeroize::Zeroizing;

use crate::master_key::MasterKey;
use crate::store::SigningKeyRecord;
use tokengate_core::Timestamp;

/// The algorithms tokengate signs with (SPEC §2). EdDSA is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SigningAlg {
    #[default]
    EdDSA,
    ES256,
    RS256,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::EdDSA => "EdDSA",
            SigningAlg::ES256 => "ES256",
            SigningAlg::RS256 => "RS256",
        }
    }

    pub fn parse(s: &str) -> Option<SigningAlg> {
        [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256].into_iter().find(|a| a.as_str() == s)
    }

    pub fn algorithm(self) -> Algorithm {
        match self {
            SigningAlg::EdDSA => Algorithm::EdDSA,
            SigningAlg::ES256 => Algorithm::ES256,
            SigningAlg::RS256 => Algorithm::RS256,
        }
    }

    fn encoding_key(self, private_der: &[u8]) -> EncodingKey {
        match self {
            SigningAlg::EdDSA => EncodingKey::from_ed_der(private_der),
            SigningAlg::ES256 => EncodingKey::from_ec_der(private_der),
            SigningAlg::RS256 => EncodingKey::from_rsa_der(private_der),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed")]
    Generate,
    #[error("stored signing key {0} is unusable: {1}")]
    Stored(String, String),
}

/// A key that signs: the current one.
pub struct Signer {
    pub kid: String,
    pub alg: SigningAlg,
    key: EncodingKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl Signer {
    /// The private key, for signing JWTs with other headers (test IdPs and attack tokens).
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.key
    }

    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = jsonwebtoken::Header::new(self.alg.algorithm());
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
    }
}

/// A public key that verifies, pinned to exactly one algorithm.
#[derive(Clone)]
pub struct VerifyKey {
    pub kid: String,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// A fresh key pair, ready to be stored.
pub fn generate(alg: SigningAlg, master_key: &MasterKey, now: Timestamp) -> Result<SigningKeyRecord, KeyError> {
    let private_der = private_der(alg)?;
    let mut jwk =
        Jwk::from_encoding_key(&alg.encoding_key(&private_der), alg.algorithm()).map_err(|_| KeyError::Generate)?;
    let kid = jwk.thumbprint(ThumbprintHash::SHA256).map_err(|_| KeyError::Generate)?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    let public_jwk = serde_json::to_string(&jwk).map_err(|_| KeyError::Generate)?;
    Ok(SigningKeyRecord {
        private_sealed: master_key.seal(&private_der, &context(&kid)),
        kid,
        alg: alg.as_str().to_string(),
        public_jwk,
        created_at: now,
        retired_at: None,
        publish_until: None,
    })
}

fn context(kid: &str) -> String {
    format!("signing-key:{kid}")
}

/// The private key in the DER form jsonwebtoken reads: PKCS#8 v1 for Ed25519 and P-256,
/// PKCS#1 for RSA.
fn private_der(alg: SigningAlg) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let der = match alg {
        SigningAlg::EdDSA => {
            let pair = Ed25519KeyPair::generate().map_err(|_| KeyError::Generate)?;
            pair.to_pkcs8v1().map_err(|_| KeyError::Generate)?.as_ref().to_vec()
        }
        SigningAlg::ES256 => {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|_| KeyError::Generate)?;
            pair.to_pkcs8v1().map_err(|_| KeyError::Generate)?.as_ref().to_vec()
        }
        SigningAlg::RS256 => {
            let pair =
                aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
            let pkcs8 = pair.as_der().map_err(|_| KeyError::Generate)?;
            pkcs1_from_pkcs8(pkcs8.as_ref()).ok_or(KeyError::Generate)?.to_vec()
        }
    };
    Ok(Zeroizing::new(der))
}

/// Reads one DER element at the start of `input`: (tag, contents, rest).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        (len_bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)), rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

/// The RSAPrivateKey (PKCS#1) inside a PKCS#8 PrivateKeyInfo:
/// `SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey, … }`.
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Option<&[u8]> {
    let (0x30, info, _) = der_element(pkcs8)? else { return None };
    let (0x02, _version, rest) = der_element(info)? else { return None };
    let (0x30, _algorithm, rest) = der_element(rest)? else { return None };
    let (0x04, private_key, _) = der_element(rest)? else { return None };
    Some(private_key)
}

/// The public half of a stored key: what verifies its tokens, and its JWK. Needs no
/// master key, so every node verifies every key even if it could not sign with it.
pub fn public(record: &SigningKeyRecord) -> Result<(VerifyKey, Jwk), KeyError> {
    let bad = |why: &str| KeyError::Stored(record.kid.clone(), why.to_string());
    let alg = SigningAlg::parse(&record.alg).ok_or_else(|| bad("unknown algorithm"))?;
    let jwk: Jwk = serde_json::from_str(&record.public_jwk).map_err(|_| bad("public JWK"))?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| bad("public JWK"))?;
    Ok((VerifyKey { kid: record.kid.clone(), alg: alg.algorithm(), key }, jwk))
}

/// The private half of a stored key, opened with the master key.
pub fn signer(record: &SigningKeyRecord, master_key: &MasterKey) -> Result<Signer, KeyError> {
    let bad = |why: &str| KeyError::Stored(record.kid.clone(), why.to_string());
    let alg = SigningAlg::parse(&record.alg).ok_or_else(|| bad("unknown algorithm"))?;
    let private_der =
        master_key.open(&record.private_sealed, &context(&record.kid)).map_err(|e| bad(&e.to_string()))?;
    Ok(Signer { kid: record.kid.clone(), alg, key: alg.encoding_key(&private_der) })
}

/// Both halves of a stored key.
pub fn open(record: &SigningKeyRecord, master_key: &MasterKey) -> Result<(Signer, VerifyKey, Jwk), KeyError> {
    let (verify, jwk) = public(record)?;
    Ok((signer(record, master_key)?, verify, jwk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_signs_and_verifies_through_its_published_jwk() {
        let master = MasterKey::from_hex(&"42".repeat(32)).unwrap();
        for alg in [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256] {
            let record = generate(alg, &master, Timestamp::now()).unwrap();
            assert!(!record.public_jwk.contains("\"d\""), "{alg:?}: private part in the JWK");
            let (signer, verify, jwk) = open(&record, &master).unwrap();
            assert_eq!(jwk.common.key_id.as_deref(), Some(record.kid.as_str()));
            let token = signer.sign(&serde_json::json!({"exp": 4_000_000_000u64, "sub": "x"})).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(header.kid.as_deref(), Some(record.kid.as_str()));
            let mut validation = jsonwebtoken::Validation::new(verify.alg);
            validation.validate_aud = false;
            let data = jsonwebtoken::decode::<serde_json::Value>(&token, &verify.key, &validation).unwrap();
            assert_eq!(data.claims["sub"], "x");
            // Sealed: another master key cannot open it, and the key bound to its kid.
            let other = MasterKey::from_hex(&"43".repeat(32)).unwrap();
            assert!(open(&record, &other).is_err());
            let mut moved = record.clone();
            moved.kid = "another".into();
            assert!(open(&moved, &master).is_err());
        }
    }

    #[test]
    fn der_walker_refuses_truncated_input() {
        assert!(pkcs1_from_pkcs8(&[]).is_none());
        assert!(pkcs1_from_pkcs8(&[0x30, 0x82, 0xff]).is_none());
        assert!(pkcs1_from_pkcs8(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_none());
    }
}
