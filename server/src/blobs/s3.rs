//! Blobs in S3-compatible object storage (`serve --blobs s3://bucket/prefix`), for several
//! servers behind one address (docs/deploy.md).
//!
//! Committed blobs are objects named like the file-system store's files,
//! `{prefix}/ab/cdef…`, so a bucket and a data directory hold the same layout; blobs found
//! damaged move to `{prefix}/damaged/{hash}`. An object is written once its bytes are known
//! to hash to its name and never changes, so a reader never sees a partial blob and two
//! servers writing the same blob write the same object.
//!
//! Object storage cannot append, and a phone's next chunk may reach another server, so a
//! chunked upload is staged in the database every server shares (`blob_staging`, one row per
//! chunk, appended under the write lock so the offset check holds across servers). The commit
//! reads the chunks back in order, hashing them, and sends them as one object: a single
//! `PUT` below [`PART_SIZE`], otherwise a multipart upload whose parts are gathered to
//! [`PART_SIZE`] whatever the phones' chunk size (S3 refuses parts under 5 MiB but the last).
//! The upload is completed, and so made visible, only after the hash matched and the caller's
//! `before_placing` succeeded; otherwise it is aborted. The staged rows are deleted once the
//! object is in place.
//!
//! Endpoint, region and credentials come from the usual `AWS_*` variables
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_ALLOW_HTTP` for a plain-HTTP endpoint on a private network), so a self-hosted store
//! works as well as a cloud's. Requests are signed with SigV4 (ring), over rustls.

use std::collections::HashMap;
use std::future::Future;
use std::io::Read;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use suiji_mobile_core::sync::wire::WholeBlob;

use super::store::{
    BlobReader, BlobStore, UploadStatus, check_chunk, check_hash, check_whole, nothing_staged,
    resume_from,
};
use crate::db::{Db, now};
use crate::error::{Error, Result};
use crate::store::blobs as staging;

/// Size of the parts a large blob is sent in (S3's minimum is 5 MiB), and the size from
/// which a commit uses a multipart upload instead of one `PUT`.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Whole blobs of one batch sent to the bucket at once.
pub const CONCURRENT_PUTS: usize = 16;

/// Blobs under a prefix of an S3-compatible bucket (see the module documentation).
pub struct S3BlobStore {
    store: Arc<AmazonS3>,
    prefix: Path,
    url: String,
    db: Db,
    max_size: u64,
    /// Drives the HTTP client; dropped in the background so the store may be dropped
    /// anywhere, even on a thread of another runtime.
    runtime: Option<tokio::runtime::Runtime>,
    /// One lock per blob being committed or checked in this process, so that concurrent
    /// commits of one upload place it once; entries nobody holds are dropped as new ones
    /// are taken.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Makes ring the process's TLS crypto provider unless one is installed already. reqwest is
/// built with rustls but without a provider of its own (so that no aws-lc build comes in), and
/// every reqwest client built in the process needs one: the S3 store calls this, and so must
/// any other code (tests, tools) that builds a reqwest client in a process with this crate.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether `blobs` names object storage (`s3://…`) rather than a directory.
pub fn is_s3_url(blobs: &str) -> bool {
    blobs.starts_with("s3://")
}

impl S3BlobStore {
    /// The store at `url` (`s3://bucket` or `s3://bucket/prefix`), staging chunked uploads
    /// in `db` and refusing blobs over `max_size` bytes. Fails unless the bucket answers.
    pub fn open(url: &str, db: Db, max_size: u64) -> Result<S3BlobStore> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            Error::Internal(format!("a blob store URL is s3://bucket/prefix, not {url}"))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Internal(format!("no bucket in {url}")));
        }
        install_tls_provider();
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| Error::Internal(format!("blob store {url}: {e}")))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("suiji-s3")
            .enable_all()
            .build()?;
        let store = S3BlobStore {
            store: Arc::new(store),
            prefix: Path::from(prefix.trim_matches('/')),
            url: url.to_owned(),
            db,
            max_size,
            runtime: Some(runtime),
            locks: Mutex::new(HashMap::new()),
        };
        // One request now, so that a wrong endpoint, bucket or key stops the server at start
        // rather than failing the first phone's upload.
        let probe = store.prefix.clone();
        match store.block(store.store.list_with_delimiter(Some(&probe))) {
            Ok(_) => Ok(store),
            Err(e) => Err(Error::Internal(format!(
                "blob store {url} does not answer: {e}"
            ))),
        }
    }

    /// Runs `work` to its end on the store's runtime, from whatever thread calls.
    fn block<F: Future>(&self, work: F) -> F::Output {
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the store");
        let _entered = runtime.enter();
        futures_executor::block_on(work)
    }

    /// The object of committed blob `hash`.
    fn path(&self, hash: &str) -> Path {
        self.prefix.clone().join(&hash[..2]).join(&hash[2..])
    }

    fn damaged_path(&self, hash: &str) -> Path {
        self.prefix.clone().join("damaged").join(hash)
    }

    fn lock(&self, hash: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(hash.to_owned()).or_default().clone()
    }

    /// The size of committed blob `hash`, if it is in the bucket.
    fn size_of(&self, hash: &str) -> Result<Option<u64>> {
        self.block(head(&self.store, self.path(hash)))
    }

    /// Sends the chunks staged for `hash` as one object, hashing them on the way; completes
    /// it (calling `before_placing` first) only if they hash to the name.
    fn send_staged(
        &self,
        hash: &str,
        before_placing: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Sent> {
        let owned = hash.to_owned();
        let offsets = self
            .db
            .read_blocking(move |c| staging::staged_chunks(c, &owned))?;
        if offsets.is_empty() {
            return Ok(Sent::Gone);
        }
        let mut hasher = Sha256::new();
        let mut part: Vec<u8> = Vec::new();
        let mut upload: Option<Box<dyn object_store::MultipartUpload>> = None;
        let mut sent = 0u64;
        let outcome = (|| -> Result<Sent> {
            for offset in offsets {
                if offset != sent {
                    return Ok(Sent::Gone);
                }
                let owned = hash.to_owned();
                let Some(chunk) = self
                    .db
                    .read_blocking(move |c| staging::staged_chunk(c, &owned, offset))?
                else {
                    return Ok(Sent::Gone);
                };
                hasher.update(&chunk);
                sent += chunk.len() as u64;
                part.extend_from_slice(&chunk);
                if part.len() >= PART_SIZE {
                    let multipart = match &mut upload {
                        Some(upload) => upload,
                        None => upload.insert(
                            self.block(self.store.put_multipart(&self.path(hash)))
                                .map_err(store_error)?,
                        ),
                    };
                    let full = std::mem::take(&mut part);
                    self.block(multipart.put_part(PutPayload::from(full)))
                        .map_err(store_error)?;
                }
            }
            let actual = hex::encode(hasher.finalize_reset());
            if actual != hash {
                return Ok(Sent::Mismatch(actual));
            }
            before_placing()?;
            match &mut upload {
                Some(multipart) => {
                    if !part.is_empty() {
                        let last = std::mem::take(&mut part);
                        self.block(multipart.put_part(PutPayload::from(last)))
                            .map_err(store_error)?;
                    }
                    self.block(multipart.complete()).map_err(store_error)?;
                }
                None => {
                    let whole = std::mem::take(&mut part);
                    self.block(self.store.put(&self.path(hash), PutPayload::from(whole)))
                        .map_err(store_error)?;
                }
            }
            upload = None;
            Ok(Sent::Placed(sent))
        })();
        if let Some(mut unfinished) = upload
            && let Err(e) = self.block(unfinished.abort())
        {
            // The bucket's lifecycle rule for incomplete uploads removes it (docs/deploy.md).
            tracing::warn!(sha256 = hash, error = %e, "an unfinished multipart upload stays");
        }
        outcome
    }
}

/// What became of a commit's staged chunks.
enum Sent {
    /// They hashed to the name and are the object now, of this many bytes.
    Placed(u64),
    /// They hash to this instead; nothing was placed.
    Mismatch(String),
    /// They went away or stopped joining up while being read: another server committed or
    /// discarded them meanwhile (or nothing was staged).
    Gone,
}

impl Drop for S3BlobStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The size of the object at `path`, `None` if there is none.
async fn head(store: &AmazonS3, path: Path) -> Result<Option<u64>> {
    match store.head(&path).await {
        Ok(meta) => Ok(Some(meta.size)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store_error(e)),
    }
}

/// An error of the object store, as the server's.
fn store_error(e: object_store::Error) -> Error {
    Error::Io(std::io::Error::other(format!("blob store: {e}")))
}

/// The name of the blob stored at `location` under `prefix`, if it is one (`ab/cdef…`).
fn blob_name(prefix: &Path, location: &Path) -> Option<String> {
    let mut parts = location.prefix_match(prefix)?;
    let fan_out = parts.next()?;
    let rest = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let name = format!("{}{}", fan_out.as_ref(), rest.as_ref());
    (fan_out.as_ref().len() == 2 && check_hash(&name).is_ok()).then_some(name)
}

impl BlobStore for S3BlobStore {
    fn max_size(&self) -> u64 {
        self.max_size
    }

    fn status(&self, hash: &str) -> Result<UploadStatus> {
        check_hash(hash)?;
        if let Some(size) = self.size_of(hash)? {
            return Ok(UploadStatus {
                received: size,
                complete: true,
            });
        }
        let owned = hash.to_owned();
        let received = self
            .db
            .read_blocking(move |c| staging::staged_bytes(c, &owned))?;
        Ok(UploadStatus {
            received,
            complete: false,
        })
    }

    fn stage(&self, hash: &str, offset: u64, total: u64, chunk: &[u8]) -> Result<UploadStatus> {
        let end = check_chunk(hash, offset, total, chunk.len(), self.max_size)?;
        if let Some(size) = self.size_of(hash)? {
            return Ok(UploadStatus {
                received: size,
                complete: true,
            });
        }
        self.db.write_blocking(|tx| {
            let received = staging::staged_bytes(tx, hash)?;
            if offset != received {
                return Err(resume_from(received));
            }
            staging::stage_chunk(tx, hash, offset, total, chunk, &now())?;
            Ok(UploadStatus {
                received: end,
                complete: false,
            })
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
        if let Some(size) = self.size_of(hash)? {
            return Ok(UploadStatus {
                received: size,
                complete: true,
            });
        }
        match self.send_staged(hash, before_placing)? {
            Sent::Placed(size) => {
                self.db
                    .write_blocking(|tx| staging::discard_staged(tx, hash))?;
                Ok(UploadStatus {
                    received: size,
                    complete: true,
                })
            }
            // Another server committed this upload while it was read here.
            Sent::Gone | Sent::Mismatch(_) if self.size_of(hash)?.is_some() => self.status(hash),
            Sent::Gone => Err(nothing_staged()),
            Sent::Mismatch(actual) => {
                self.db
                    .write_blocking(|tx| staging::discard_staged(tx, hash))?;
                Err(Error::invalid(
                    "sha256",
                    format!(
                        "the bytes hash to {actual}, not to the blob's name; the upload was discarded"
                    ),
                ))
            }
        }
    }

    /// Each blob is one `PUT`, which the bucket makes visible whole or not at all; up to
    /// [`CONCURRENT_PUTS`] of a batch are in flight at once, since each is a round trip.
    fn put_many(&self, blobs: &[WholeBlob], limit: usize) -> Result<Vec<Result<UploadStatus>>> {
        let outcomes: Vec<Result<UploadStatus>> = blobs
            .iter()
            .map(|blob| {
                check_whole(&blob.sha256, &blob.bytes, limit, self.max_size).map(|()| {
                    UploadStatus {
                        received: blob.bytes.len() as u64,
                        complete: true,
                    }
                })
            })
            .collect();
        let writes = blobs
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| outcome.is_ok())
            .map(|(blob, _)| async move {
                let path = self.path(&blob.sha256);
                let absent = head(&self.store, path.clone()).await?.is_none();
                if absent {
                    let payload = PutPayload::from(Bytes::from(blob.bytes.clone()));
                    self.store.put(&path, payload).await.map_err(store_error)?;
                }
                Ok::<_, Error>(absent.then_some(blob.sha256.as_str()))
            });
        let written: Vec<Result<Option<&str>>> = self.block(
            futures_util::stream::iter(writes)
                .buffer_unordered(CONCURRENT_PUTS)
                .collect(),
        );
        for hash in written {
            let Some(hash) = hash? else {
                continue;
            };
            // A chunked upload of the same blob that was cut off is no longer needed; the
            // check is a read, so that batches do not queue for the write lock.
            let owned = hash.to_owned();
            if self
                .db
                .read_blocking(move |c| staging::staged_bytes(c, &owned))?
                > 0
            {
                self.db
                    .write_blocking(|tx| staging::discard_staged(tx, hash))?;
            }
        }
        Ok(outcomes)
    }

    fn open(&self, hash: &str) -> Result<BlobReader> {
        check_hash(hash)?;
        let got = match self.block(self.store.get(&self.path(hash))) {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::NotFound(format!("blob {hash}")));
            }
            Err(e) => return Err(store_error(e)),
        };
        let size = got.meta.size;
        let reader = ObjectReader {
            stream: got.into_stream(),
            current: Bytes::new(),
            runtime: self
                .runtime
                .as_ref()
                .expect("the runtime lives as long as the store")
                .handle()
                .clone(),
        };
        Ok(BlobReader::new(size, Box::new(reader)))
    }

    /// A damaged object is copied to `damaged/`, kept for a look, and deleted.
    fn verify(&self, hash: &str) -> Result<Option<u64>> {
        check_hash(hash)?;
        let lock = self.lock(hash);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = match self.read(hash) {
            Ok(bytes) => bytes,
            Err(Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if hex::encode(Sha256::digest(&bytes)) == hash {
            return Ok(Some(bytes.len() as u64));
        }
        tracing::warn!(
            sha256 = hash,
            "a stored blob no longer matches its name; moved to damaged/"
        );
        self.block(
            self.store
                .put(&self.damaged_path(hash), PutPayload::from(bytes)),
        )
        .map_err(store_error)?;
        self.block(self.store.delete(&self.path(hash)))
            .map_err(store_error)?;
        Ok(None)
    }

    fn list(&self) -> Result<Vec<String>> {
        let prefix = self.prefix.clone();
        let listed: Vec<_> = self.block(self.store.list(Some(&prefix)).collect());
        let mut found = Vec::new();
        for meta in listed {
            let meta = meta.map_err(store_error)?;
            if let Some(name) = blob_name(&prefix, &meta.location) {
                found.push(name);
            }
        }
        Ok(found)
    }

    fn remove(&self, hash: &str) -> Result<bool> {
        check_hash(hash)?;
        let lock = self.lock(hash);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.size_of(hash)?.is_none() {
            return Ok(false);
        }
        self.block(self.store.delete(&self.path(hash)))
            .map_err(store_error)?;
        Ok(true)
    }

    /// Nothing: whole blobs are single `PUT`s, which leave nothing behind when cut short, and
    /// staged chunks stay for their phones to resume.
    fn remove_abandoned_staging(&self) -> Result<usize> {
        Ok(0)
    }
}

/// An object's bytes as a blocking reader, pulled from its stream on the store's runtime.
struct ObjectReader {
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    current: Bytes,
    runtime: tokio::runtime::Handle,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            let _entered = self.runtime.enter();
            match futures_executor::block_on(self.stream.next()) {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(std::io::Error::other(format!("blob store: {e}"))),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Run against a real S3-protocol server when `SUIJI_TEST_BLOBS` names a bucket (the suite's
/// second pass, scripts/with-s3, starts one); without it there is no bucket to test.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::store::contract;

    /// A store under a prefix of its own in the test bucket, staging in a fresh SQLite
    /// database, and the directory holding that database.
    fn test_store(max_size: u64) -> Option<(S3BlobStore, tempfile::TempDir)> {
        let bucket = std::env::var("SUIJI_TEST_BLOBS").ok()?;
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("suiji.db")).unwrap();
        let url = format!(
            "{}/unit_{}_{}",
            bucket.trim_end_matches('/'),
            std::process::id(),
            hex::encode(crate::auth::random_bytes::<4>().unwrap())
        );
        Some((S3BlobStore::open(&url, db, max_size).unwrap(), dir))
    }

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn the_s3_store_keeps_the_blob_store_contract() {
        let Some((store, _dir)) = test_store(1024) else {
            return;
        };
        contract::check(&store);
    }

    #[test]
    fn a_blob_sent_in_chunks_smaller_than_a_part_is_gathered_into_parts_s3_accepts() {
        let Some((store, _dir)) = test_store(32 * 1024 * 1024) else {
            return;
        };
        // 2.5 parts' worth in 1 MiB chunks (S3 refuses parts under 5 MiB but the last),
        // bytes that differ from part to part so a part sent twice or out of order shows.
        let total = PART_SIZE * 5 / 2;
        let bytes: Vec<u8> = (0..total).map(|i| (i / 4093 % 251) as u8).collect();
        let h = sha(&bytes);
        for (n, chunk) in bytes.chunks(1024 * 1024).enumerate() {
            let status = store
                .stage(&h, (n * 1024 * 1024) as u64, total as u64, chunk)
                .unwrap();
            assert!(!status.complete);
        }
        assert_eq!(store.status(&h).unwrap().received, total as u64);
        assert!(store.commit(&h, &mut || Ok(())).unwrap().complete);
        assert_eq!(store.stat(&h).unwrap(), Some(total as u64));
        let mut read = Vec::new();
        store.open(&h).unwrap().read_to_end(&mut read).unwrap();
        assert!(read == bytes, "the object is the staged bytes, in order");
        let owned = h.clone();
        let staged = store
            .db
            .read_blocking(move |c| staging::staged_chunks(c, &owned))
            .unwrap();
        assert!(staged.is_empty(), "nothing stays staged once committed");
        assert_eq!(store.verify(&h).unwrap(), Some(total as u64));
        assert!(store.remove(&h).unwrap());
    }

    #[test]
    fn a_large_forged_upload_is_aborted_and_nothing_becomes_visible() {
        let Some((store, _dir)) = test_store(32 * 1024 * 1024) else {
            return;
        };
        let total = PART_SIZE + 1024;
        let h = sha(b"the photo the phone claims to send");
        let forged = vec![7u8; total];
        for (n, chunk) in forged.chunks(4 * 1024 * 1024).enumerate() {
            store
                .stage(&h, (n * 4 * 1024 * 1024) as u64, total as u64, chunk)
                .unwrap();
        }
        let err = store.commit(&h, &mut || Ok(())).unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
        assert_eq!(store.stat(&h).unwrap(), None);
        assert_eq!(store.status(&h).unwrap().received, 0, "discarded");
        assert!(!store.list().unwrap().contains(&h));
    }

    #[test]
    fn a_blob_that_arrives_whole_ends_its_cut_off_chunked_upload() {
        let Some((store, _dir)) = test_store(1024) else {
            return;
        };
        let bytes = b"a thumbnail first sent in chunks, then whole in a batch";
        let h = sha(bytes);
        store.stage(&h, 0, bytes.len() as u64, &bytes[..9]).unwrap();
        let whole = WholeBlob {
            sha256: h.clone(),
            bytes: bytes.to_vec(),
        };
        let outcomes = store.put_many(&[whole], 1024).unwrap();
        assert!(outcomes[0].as_ref().unwrap().complete);
        let owned = h.clone();
        let staged = store
            .db
            .read_blocking(move |c| staging::staged_bytes(c, &owned))
            .unwrap();
        assert_eq!(staged, 0, "the staged chunk is gone");
        assert_eq!(store.read(&h).unwrap(), bytes);
    }

    #[test]
    fn a_bucket_that_does_not_answer_stops_the_server_at_start() {
        let Some((store, dir)) = test_store(1024) else {
            return;
        };
        drop(store);
        let db = Db::open(&dir.path().join("suiji.db")).unwrap();
        let err = S3BlobStore::open("s3://no-such-bucket-here/x", db, 1024).unwrap_err();
        assert!(err.to_string().contains("does not answer"), "{err}");
    }
}
