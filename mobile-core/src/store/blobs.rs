//! The content-addressed blob directory: `blobs/<first two hex digits>/<sha256>`.

use crate::error::{Error, Result};
use crate::ids::BlobHash;
use rusqlite::{Transaction, params};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a blob is to the photo it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobRole {
    /// The original bytes (the evidence).
    Original,
    /// A small JPEG for list screens.
    Thumbnail,
    /// A downscaled JPEG for upload.
    Upload,
}

impl BlobRole {
    pub(super) fn code(self) -> &'static str {
        match self {
            BlobRole::Original => "original",
            BlobRole::Thumbnail => "thumbnail",
            BlobRole::Upload => "upload",
        }
    }
}

pub(super) struct BlobDir {
    root: PathBuf,
}

impl BlobDir {
    pub(super) fn open(root: PathBuf) -> Result<BlobDir> {
        std::fs::create_dir_all(&root)?;
        Ok(BlobDir { root })
    }

    pub(super) fn path(&self, hash: &BlobHash) -> PathBuf {
        self.root.join(&hash.as_str()[..2]).join(hash.as_str())
    }

    /// Writes a blob if it is not there yet: to a temporary file, flushed to disk, then
    /// renamed into place, so a crash never leaves a partial blob under its hash.
    pub(super) fn put(&self, hash: &BlobHash, bytes: &[u8]) -> Result<()> {
        debug_assert_eq!(&BlobHash::of(bytes), hash);
        let path = self.path(hash);
        if path.exists() {
            return Ok(());
        }
        let dir = path.parent().expect("blob paths have a parent");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{}.tmp-{}", hash, std::process::id()));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &path)?;
        sync_dir(dir);
        Ok(())
    }

    /// Deletes blob files, best effort: the rows are already gone, and a file left behind by
    /// a failure here is only unreachable bytes.
    pub(super) fn remove_files(&self, hashes: &[BlobHash]) {
        for hash in hashes {
            let _ = std::fs::remove_file(self.path(hash));
        }
    }

    /// Reads a blob and checks it still matches its hash.
    pub(super) fn get(&self, hash: &BlobHash) -> Result<Vec<u8>> {
        let bytes = match std::fs::read(self.path(hash)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(format!("blob {hash}")));
            }
            Err(e) => return Err(e.into()),
        };
        if &BlobHash::of(&bytes) != hash {
            return Err(Error::Malformed(format!(
                "blob {hash} does not match its hash"
            )));
        }
        Ok(bytes)
    }
}

/// Best effort: make the rename durable too. Not all platforms can open directories.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Records a blob in the `blobs` table (idempotent).
pub(super) fn record_blob(
    tx: &Transaction<'_>,
    hash: &BlobHash,
    size: u64,
    mime: &str,
    role: BlobRole,
) -> Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO blobs (sha256, size, mime, role, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            hash.as_str(),
            size as i64,
            mime,
            role.code(),
            chrono::Utc::now().to_rfc3339()
        ],
    )?;
    Ok(())
}
