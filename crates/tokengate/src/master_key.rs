//! The master key: secrets tokengate must use again later (room-app server secrets;
//! JWT signing keys to come) are sealed under it with AES-256-GCM, never stored in the
//! clear. It comes from `TOKENGATE_MASTER_KEY` (64 hex characters) or from
//! `DATA_DIR/master-key` (mode 0600, created on first start). Several nodes sharing
//! PostgreSQL must be given the same key through the environment.

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use rand::RngExt;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("the master key must be 64 hexadecimal characters (32 bytes)")]
    BadKey,
    #[error("master key file {0}: {1}")]
    File(String, std::io::Error),
    #[error("a sealed secret could not be opened (a different master key?)")]
    Open,
    #[error("master key file {0} is readable by group or others (mode {1:o}): run `chmod 600 {0}`")]
    TooOpen(String, u32),
}

pub struct MasterKey(LessSafeKey);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    pub fn from_hex(hex_key: &str) -> Result<MasterKey, MasterKeyError> {
        // Every copy of the key material is wiped when dropped (aws-lc keeps its own).
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_key.trim(), bytes.as_mut_slice()).map_err(|_| MasterKeyError::BadKey)?;
        let key = UnboundKey::new(&AES_256_GCM, bytes.as_slice()).map_err(|_| MasterKeyError::BadKey)?;
        Ok(MasterKey(LessSafeKey::new(key)))
    }

    /// The configured key, or the one in `dir/master-key`, created when missing.
    pub fn load(configured: Option<&str>, dir: &Path) -> Result<MasterKey, MasterKeyError> {
        if let Some(hex_key) = configured {
            return Self::from_hex(hex_key);
        }
        let path = dir.join("master-key");
        let err = |e| MasterKeyError::File(path.display().to_string(), e);
        match std::fs::read_to_string(&path).map(Zeroizing::new) {
            Ok(text) => {
                // Like ssh with a private key: a key others can read is not used.
                if let Some(mode) = crate::data_dir::group_or_other_bits(&path).map_err(err)? {
                    return Err(MasterKeyError::TooOpen(path.display().to_string(), mode));
                }
                Self::from_hex(&text)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                crate::data_dir::create_private_dir(dir).map_err(err)?;
                let bytes = Zeroizing::new(rand::rng().random::<[u8; 32]>());
                let hex_key = Zeroizing::new(hex::encode(bytes.as_slice()));
                let mut file =
                    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(err)?;
                file.write_all(hex_key.as_bytes()).map_err(err)?;
                file.sync_all().map_err(err)?;
                Self::from_hex(&hex_key)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// `nonce ‖ ciphertext ‖ tag`, bound to `context` (what the secret belongs to), so a
    /// sealed value copied to another row does not open there.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::rng().random();
        let mut sealed = plaintext.to_vec();
        // Sealing with a valid key and a fresh nonce cannot fail for inputs this small.
        let _ = self.0.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context), &mut sealed);
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// The plaintext, wiped from memory when dropped.
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Zeroizing<Vec<u8>>, MasterKeyError> {
        if sealed.len() < NONCE_LEN {
            return Err(MasterKeyError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| MasterKeyError::Open)?;
        let mut body = Zeroizing::new(body.to_vec());
        let plain = self
            .0
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(context), &mut body)
            .map_err(|_| MasterKeyError::Open)?;
        Ok(Zeroizing::new(plain.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_context_binding() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::load(None, dir.path()).unwrap();
        let again = MasterKey::load(None, dir.path()).unwrap();
        let sealed = key.seal(b"fa94dd0f974cf2e293728a526b028271", "room-app:a:1");
        assert!(!sealed.windows(8).any(|w| w == b"fa94dd0f"));
        assert_eq!(again.open(&sealed, "room-app:a:1").unwrap().as_slice(), b"fa94dd0f974cf2e293728a526b028271");
        assert!(key.open(&sealed, "room-app:a:2").is_err());
        let other = MasterKey::from_hex(&"11".repeat(32)).unwrap();
        assert!(other.open(&sealed, "room-app:a:1").is_err());
        assert!(MasterKey::from_hex("abc").is_err());
        use std::os::unix::fs::PermissionsExt;
        let file = dir.path().join("master-key");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let refused = MasterKey::load(None, dir.path()).unwrap_err().to_string();
        assert!(
            refused.contains("chmod 600") && refused.contains("master-key") && refused.contains("640"),
            "{refused}"
        );
    }
}
