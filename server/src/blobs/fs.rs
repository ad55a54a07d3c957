//! The default blob store: a directory beside the database.
//!
//! Committed blobs live in a two-level fan-out (`ab/cdef…`), staged chunked uploads in
//! `tmp/{hash}.part`, whole blobs of a batch beside their place under a dot-name until they
//! are moved into it, and blobs found damaged in `damaged/`. The layout is what data
//! directories already hold; changing it would need a migration of theirs.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use suiji_mobile_core::sync::wire::WholeBlob;

use super::store::{
    BlobReader, BlobStore, UploadStatus, check_chunk, check_hash, check_whole, nothing_staged,
    resume_from,
};
use crate::error::{Error, Result};

/// Blobs on disk under `<data>/blobs` (see the module documentation for the layout).
pub struct FsBlobStore {
    dir: PathBuf,
    max_size: u64,
    /// One lock per blob being written, so that staging, committing, verifying and removing
    /// one blob never interleave; entries nobody holds are dropped as new ones are taken.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl FsBlobStore {
    /// A store rooted at `dir`, refusing blobs over `max_size` bytes.
    pub fn open(dir: &Path, max_size: u64) -> Result<FsBlobStore> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        Ok(FsBlobStore {
            dir: dir.to_owned(),
            max_size,
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// Where a committed blob lives.
    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(&hash[..2]).join(&hash[2..])
    }

    fn partial(&self, hash: &str) -> PathBuf {
        self.dir.join("tmp").join(format!("{hash}.part"))
    }

    fn lock(&self, hash: &str) -> Arc<Mutex<()>> {
        // A poisoned map is still a map of locks; a panic elsewhere leaves it usable.
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(hash.to_owned()).or_default().clone()
    }
}

impl BlobStore for FsBlobStore {
    fn max_size(&self) -> u64 {
        self.max_size
    }

    fn status(&self, hash: &str) -> Result<UploadStatus> {
        check_hash(hash)?;
        if let Ok(meta) = std::fs::metadata(self.path(hash)) {
            return Ok(UploadStatus {
                received: meta.len(),
                complete: true,
            });
        }
        let received = std::fs::metadata(self.partial(hash)).map_or(0, |m| m.len());
        Ok(UploadStatus {
            received,
            complete: false,
        })
    }

    fn stage(&self, hash: &str, offset: u64, total: u64, chunk: &[u8]) -> Result<UploadStatus> {
        check_chunk(hash, offset, total, chunk.len(), self.max_size)?;
        let lock = self.lock(hash);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.status(hash)?;
        if current.complete {
            return Ok(current);
        }
        if offset != current.received {
            return Err(resume_from(current.received));
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.partial(hash))?;
        file.write_all(chunk)?;
        file.sync_data()?;
        Ok(UploadStatus {
            received: current.received + chunk.len() as u64,
            complete: false,
        })
    }

    fn commit(
        &self,
        hash: &str,
        before_placing: &mut dyn FnMut() -> Result<()>,
    ) -> Result<UploadStatus> {
        check_hash(hash)?;
        let lock = self.lock(hash);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.status(hash)?;
        if current.complete {
            return Ok(current);
        }
        let partial = self.partial(hash);
        let actual = match hash_file(&partial) {
            Ok(actual) => actual,
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(nothing_staged());
            }
            Err(e) => return Err(e),
        };
        if actual != hash {
            std::fs::remove_file(&partial)?;
            return Err(Error::invalid(
                "sha256",
                format!(
                    "the bytes hash to {actual}, not to the blob's name; the upload was discarded"
                ),
            ));
        }
        before_placing()?;
        let target = self.path(hash);
        let parent = target.parent().expect("fan-out directory");
        std::fs::create_dir_all(parent)?;
        std::fs::rename(&partial, &target)?;
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
        Ok(UploadStatus {
            received: current.received,
            complete: true,
        })
    }

    /// Each blob is written beside its place, made durable together by one flush of the file
    /// system, moved into place, and the moves made durable by a second flush: two flushes a
    /// batch instead of two a blob.
    fn put_many(&self, blobs: &[WholeBlob], limit: usize) -> Result<Vec<Result<UploadStatus>>> {
        let mut outcomes = Vec::with_capacity(blobs.len());
        let mut staged = Vec::new();
        for blob in blobs {
            if let Err(refusal) = check_whole(&blob.sha256, &blob.bytes, limit, self.max_size) {
                outcomes.push(Err(refusal));
                continue;
            }
            let done = UploadStatus {
                received: blob.bytes.len() as u64,
                complete: true,
            };
            let target = self.path(&blob.sha256);
            if !target.exists() {
                // Written beside its final place, so the move is within one directory and
                // writers spread over the fan-out directories instead of all taking the lock
                // of one. A name of its own (never 62 hex digits), so two batches carrying one
                // blob do not collide and nothing half-written is ever taken for a blob.
                let parent = target.parent().expect("fan-out directory");
                std::fs::create_dir_all(parent)?;
                let mut file = tempfile::Builder::new()
                    .prefix(".")
                    .suffix(".whole")
                    .tempfile_in(parent)?;
                file.write_all(&blob.bytes)?;
                #[cfg(not(target_os = "linux"))]
                file.as_file().sync_data()?;
                staged.push((blob.sha256.as_str(), target, file));
            }
            outcomes.push(Ok(done));
        }
        if staged.is_empty() {
            return Ok(outcomes);
        }
        flush_file_system(&self.dir)?;
        for (hash, target, file) in staged {
            file.persist(&target).map_err(|e| Error::Io(e.error))?;
            #[cfg(not(target_os = "linux"))]
            if let Ok(dir) = std::fs::File::open(target.parent().expect("fan-out directory")) {
                let _ = dir.sync_all();
            }
            // A chunked upload of the same blob that was cut off is no longer needed.
            let _ = std::fs::remove_file(self.partial(hash));
        }
        flush_file_system(&self.dir)?;
        Ok(outcomes)
    }

    fn open(&self, hash: &str) -> Result<BlobReader> {
        check_hash(hash)?;
        let file = std::fs::File::open(self.path(hash)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(format!("blob {hash}")),
            _ => Error::Io(e),
        })?;
        let size = file.metadata()?.len();
        Ok(BlobReader::new(size, Box::new(file)))
    }

    /// A damaged file is moved aside to `damaged/`, kept for a look.
    fn verify(&self, hash: &str) -> Result<Option<u64>> {
        check_hash(hash)?;
        let path = self.path(hash);
        let lock = self.lock(hash);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let size = match std::fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if hash_file(&path)? == hash {
            return Ok(Some(size));
        }
        tracing::warn!(
            sha256 = hash,
            "a stored blob no longer matches its name; moved to damaged/"
        );
        let aside = self.dir.join("damaged");
        std::fs::create_dir_all(&aside)?;
        std::fs::rename(&path, aside.join(hash))?;
        Ok(None)
    }

    fn list(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for fan_out in std::fs::read_dir(&self.dir)? {
            let fan_out = fan_out?;
            let prefix = fan_out.file_name().to_string_lossy().into_owned();
            if prefix.len() != 2 || !fan_out.file_type()?.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(fan_out.path())? {
                let name = format!("{prefix}{}", entry?.file_name().to_string_lossy());
                if check_hash(&name).is_ok() {
                    found.push(name);
                }
            }
        }
        Ok(found)
    }

    fn remove(&self, hash: &str) -> Result<bool> {
        check_hash(hash)?;
        let lock = self.lock(hash);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        match std::fs::remove_file(self.path(hash)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The dot-named staging files of batches in the fan-out directories (never taken for
    /// blobs); partial chunked uploads in `tmp/` stay.
    fn remove_abandoned_staging(&self) -> Result<usize> {
        let mut removed = 0;
        for fan_out in std::fs::read_dir(&self.dir)? {
            let fan_out = fan_out?;
            let name = fan_out.file_name();
            let is_fan_out = name.len() == 2
                && name
                    .to_str()
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_hexdigit()));
            if !is_fan_out || !fan_out.file_type()?.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(fan_out.path())? {
                let entry = entry?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') && name.ends_with(".whole") {
                    std::fs::remove_file(entry.path())?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// The SHA-256 of a file's bytes, as hex.
fn hash_file(path: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Makes everything written to the file system holding `dir` durable. On Linux one
/// `syncfs`; elsewhere the callers sync each file and directory themselves.
fn flush_file_system(dir: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    rustix::fs::syncfs(std::fs::File::open(dir)?).map_err(std::io::Error::from)?;
    #[cfg(not(target_os = "linux"))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::store::contract;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn the_file_system_store_keeps_the_blob_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path(), 1024).unwrap();
        contract::check(&store);
    }

    /// Every file under the store, relative to it.
    fn files(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut pending = vec![dir.to_owned()];
        while let Some(at) = pending.pop() {
            for entry in std::fs::read_dir(&at).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    let relative = path.strip_prefix(dir).unwrap();
                    found.push(relative.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn blobs_keep_the_layout_of_existing_data_directories() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path(), 1024).unwrap();
        let chunked = b"a photo uploaded in chunks";
        let h = sha(chunked);
        store
            .stage(&h, 0, chunked.len() as u64, &chunked[..5])
            .unwrap();
        assert_eq!(files(dir.path()), vec![format!("tmp/{h}.part")]);
        store
            .stage(&h, 5, chunked.len() as u64, &chunked[5..])
            .unwrap();
        store.commit(&h, &mut || Ok(())).unwrap();
        let whole = b"a thumbnail uploaded whole";
        let w = sha(whole);
        store
            .put_many(
                &[WholeBlob {
                    sha256: w.clone(),
                    bytes: whole.to_vec(),
                }],
                1024,
            )
            .unwrap();
        let mut expected = vec![
            format!("{}/{}", &h[..2], &h[2..]),
            format!("{}/{}", &w[..2], &w[2..]),
        ];
        expected.sort();
        assert_eq!(
            files(dir.path()),
            expected,
            "the blobs in place, no staging file left"
        );
        // A blob a data directory already held is found where it always was.
        let old = b"a photo from before the trait";
        let o = sha(old);
        std::fs::create_dir_all(dir.path().join(&o[..2])).unwrap();
        std::fs::write(dir.path().join(&o[..2]).join(&o[2..]), old).unwrap();
        assert_eq!(store.read(&o).unwrap(), old);
    }

    #[test]
    fn a_damaged_blob_is_moved_aside_so_that_it_can_be_uploaded_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path(), 1024).unwrap();
        let sound = b"a sound photo";
        store.stage(&sha(sound), 0, 13, sound).unwrap();
        assert!(store.commit(&sha(sound), &mut || Ok(())).unwrap().complete);
        assert_eq!(store.verify(&sha(sound)).unwrap(), Some(13));
        let h = sha(b"the real photo");
        std::fs::create_dir_all(store.path(&h).parent().unwrap()).unwrap();
        std::fs::write(store.path(&h), b"bit rot").unwrap();
        assert_eq!(store.verify(&h).unwrap(), None);
        assert!(
            !store.status(&h).unwrap().complete,
            "no longer taken for the blob"
        );
        assert_eq!(
            std::fs::read(dir.path().join("damaged").join(&h)).unwrap(),
            b"bit rot"
        );
        assert_eq!(store.list().unwrap(), vec![sha(sound)]);
    }

    #[test]
    fn staging_files_a_crash_left_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path(), 1024).unwrap();
        std::fs::create_dir_all(dir.path().join("ab")).unwrap();
        std::fs::write(dir.path().join("ab").join(".x1y2.whole"), b"half").unwrap();
        assert_eq!(store.remove_abandoned_staging().unwrap(), 1);
        assert!(files(dir.path()).is_empty());
    }
}
