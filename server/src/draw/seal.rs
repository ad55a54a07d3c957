//! Sealing of open commitments' secrets: between the commitment and the draw
//! the database holds only the secret's SHA-256 and the secret sealed
//! (ChaCha20-Poly1305) with a key kept in a file beside the database, never
//! in it. So someone who reads the database (a backup, a replica, a
//! read-only SQL account) cannot compute an open commitment's outcome before
//! the ceremony. At the draw the secret is unsealed and revealed in the draw
//! record, as the commitment promised.
//!
//! The key file (`draw-seal.key`, 32 random bytes in hex) is created on first
//! start with mode 0600. Whoever holds both the database and the key file can
//! unseal; docs/draw.md says what that attacker can and cannot do.

use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::auth;
use crate::error::{Error, Result};

/// Name of the key file, in the data directory beside the database file.
pub const KEY_FILE: &str = "draw-seal.key";

/// Bytes of a nonce.
const NONCE_LEN: usize = 12;

/// The key that seals open commitments' secrets.
pub struct SealKey {
    cipher: ChaCha20Poly1305,
    id: String,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

/// Where the seal key of the database at `database` lives: beside it.
pub fn key_path(database: &Path) -> PathBuf {
    database.with_file_name(KEY_FILE)
}

impl SealKey {
    /// Reads the key file at `path`, creating it (mode 0600) with a fresh
    /// random key if there is none.
    pub fn open_or_create(path: &Path) -> Result<SealKey> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(e.into()),
        }
    }

    /// The key of the database at `database` ([`key_path`]), created if missing.
    pub fn for_database(database: &Path) -> Result<SealKey> {
        Self::open_or_create(&key_path(database))
    }

    fn create(path: &Path) -> Result<SealKey> {
        let key = auth::random_bytes::<32>()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                writeln!(file, "{}", hex::encode(key))?;
                file.sync_all()?;
                tracing::info!(path = %path.display(), "created the draw seal key");
                Ok(Self::from_bytes(key))
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::parse(path, &std::fs::read_to_string(path)?)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn parse(path: &Path, text: &str) -> Result<SealKey> {
        let bytes: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                Error::Internal(format!(
                    "{} does not hold a 32-byte key in hex",
                    path.display()
                ))
            })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"),
                    "the draw seal key is readable by others than its owner: chmod 600 it");
            }
        }
        Ok(Self::from_bytes(bytes))
    }

    fn from_bytes(bytes: [u8; 32]) -> SealKey {
        use sha2::Digest;
        let mut id = sha2::Sha256::new();
        id.update(b"suiji draw seal key id\n");
        id.update(bytes);
        SealKey {
            cipher: ChaCha20Poly1305::new(&Key::from(bytes)),
            id: hex::encode(id.finalize()),
        }
    }

    /// A name of the key that reveals nothing of it (a domain-separated SHA-256): servers
    /// sharing one PostgreSQL database record it there and check that they all hold the
    /// same key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `secret`, bound to `context` (the secret's published hash), as
    /// `hex(nonce || ciphertext)`.
    pub fn seal(&self, secret: &[u8; 32], context: &str) -> Result<String> {
        let nonce = auth::random_bytes::<NONCE_LEN>()?;
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: secret,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| Error::Internal("sealing a draw secret failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(hex::encode(out))
    }

    /// Opens what [`SealKey::seal`] sealed with the same `context`; `None` if
    /// this key did not seal it or it was altered.
    pub fn unseal(&self, sealed: &str, context: &str) -> Option<[u8; 32]> {
        let bytes = hex::decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        let plain = self
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .ok()?;
        plain.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let key = SealKey::open_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let secret = [9u8; 32];
        let sealed = key.seal(&secret, "ctx").unwrap();
        assert!(!sealed.contains(&hex::encode(secret)));
        assert_eq!(key.unseal(&sealed, "ctx"), Some(secret));
        assert_eq!(key.unseal(&sealed, "other"), None);
        let again = SealKey::open_or_create(&path).unwrap();
        assert_eq!(
            again.unseal(&sealed, "ctx"),
            Some(secret),
            "the key is kept"
        );
        let other = SealKey::open_or_create(&dir.path().join("other.key")).unwrap();
        assert_eq!(other.unseal(&sealed, "ctx"), None);
        let mut tampered = hex::decode(&sealed).unwrap();
        tampered[20] ^= 1;
        assert_eq!(key.unseal(&hex::encode(tampered), "ctx"), None);
    }
}
