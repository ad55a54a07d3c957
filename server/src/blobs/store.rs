//! The blob-store seam: what the server asks of wherever blob bytes live, shaped so that
//! object storage fits as well as a directory.
//!
//! A blob is named by the SHA-256 of its bytes and, once committed, never changes. Bytes
//! arrive in two ways. A chunked upload is *staged* in order (each chunk at the offset where
//! the staged bytes end, so that a retried or reordered chunk is refused with the offset to
//! resume from) and then *committed*: the store hashes what it staged and makes it visible
//! under its name only if the hash matches, discarding it otherwise. Small blobs come whole,
//! several at once ([`BlobStore::put_many`]). A blob is visible only once committed: no
//! reader, [`BlobStore::stat`] or [`BlobStore::list`] ever sees staged bytes.
//!
//! The staging key is the blob's name: content addressing makes every upload of the same
//! bytes the same upload, so one name has at most one staging area. An object-storage
//! implementation keeps its own mapping from that name to a multipart upload and may hold
//! chunks back until it has a part of the size the service requires; callers never see
//! parts.
//!
//! Every method blocks: call them off the async runtime (`spawn_blocking`). What the server
//! records about blobs (the `blobs`, `blob_uploaders` and `record_blobs` tables) is kept by
//! [`super`], not by the store.

use std::io::Read;

use serde::{Deserialize, Serialize};
use suiji_mobile_core::sync::wire::WholeBlob;

use crate::error::{Error, Result};

/// How much of a blob the server holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadStatus {
    /// Bytes received so far (the whole size once complete).
    pub received: u64,
    /// Whether the blob is stored and verified.
    pub complete: bool,
}

/// A committed blob opened for reading: its size, known before the first byte, and its
/// bytes as a stream.
pub struct BlobReader {
    /// The blob's size in bytes.
    pub size: u64,
    reader: Box<dyn Read + Send>,
}

impl BlobReader {
    /// A reader over `size` bytes read from `reader`.
    pub fn new(size: u64, reader: Box<dyn Read + Send>) -> BlobReader {
        BlobReader { size, reader }
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reader.read(buf)
    }
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Fails unless `hash` is 64 lowercase hex digits.
pub fn check_hash(hash: &str) -> Result<()> {
    if hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(Error::invalid(
            "sha256",
            "a blob is named by 64 lowercase hex digits of its SHA-256",
        ))
    }
}

/// Whether `bytes` may be stored whole as blob `hash`: a well-formed name, at most `limit`
/// and `max_size`, and bytes that hash to the name.
pub(crate) fn check_whole(hash: &str, bytes: &[u8], limit: usize, max_size: u64) -> Result<()> {
    use sha2::{Digest, Sha256};
    check_hash(hash)?;
    if bytes.len() as u64 > max_size {
        return Err(Error::TooLarge {
            limit: max_size as usize,
        });
    }
    if bytes.len() > limit {
        return Err(Error::invalid(
            "bytes",
            format!(
                "a blob of {} bytes is over the batch limit of {limit}; upload it in chunks",
                bytes.len()
            ),
        ));
    }
    let actual = hex::encode(Sha256::digest(bytes));
    if actual != hash {
        return Err(Error::invalid(
            "sha256",
            format!("the bytes hash to {actual}, not to the blob's name; nothing was kept"),
        ));
    }
    Ok(())
}

/// Whether `chunk_len` bytes at `offset` of a blob of `total` bytes may be staged as blob
/// `hash` under `max_size`: a well-formed name, a total within the bound and a chunk that ends
/// within the total. Answers where the chunk ends. The offset itself is the store's to check,
/// against what it holds ([`resume_from`]).
pub(crate) fn check_chunk(
    hash: &str,
    offset: u64,
    total: u64,
    chunk_len: usize,
    max_size: u64,
) -> Result<u64> {
    check_hash(hash)?;
    if total > max_size {
        return Err(Error::TooLarge {
            limit: max_size as usize,
        });
    }
    let end = offset + chunk_len as u64;
    if end > total {
        return Err(Error::invalid(
            "total",
            format!("chunk ends at {end} past the total of {total}"),
        ));
    }
    Ok(end)
}

/// The refusal of a chunk that does not start where the `received` staged bytes end.
pub(crate) fn resume_from(received: u64) -> Error {
    Error::Conflict(format!(
        "the server has {received} bytes of this blob; continue from offset {received}"
    ))
}

/// The refusal of a commit with nothing staged.
pub(crate) fn nothing_staged() -> Error {
    Error::Conflict("nothing of this blob is staged; upload it from offset 0".into())
}

/// Where blob bytes live: content-addressed, staged and committed, read as streams. Every
/// method checks the name it is given ([`check_hash`]) and blocks.
pub trait BlobStore: Send + Sync {
    /// Largest blob accepted, in bytes.
    fn max_size(&self) -> u64;

    /// How much of blob `hash` is here: its size and `complete` once committed, otherwise
    /// how many bytes are staged (0 for an unknown blob).
    fn status(&self, hash: &str) -> Result<UploadStatus>;

    /// Stages `chunk` at `offset` of a blob of `total` bytes. Refused with
    /// [`Error::TooLarge`] over [`BlobStore::max_size`], [`Error::Invalid`] for a chunk that
    /// ends past `total`, and [`Error::Conflict`] (naming the offset to continue from) unless
    /// `offset` is where the staged bytes end. A blob already committed is answered complete
    /// and nothing is staged. Once `received` reaches `total`, [`BlobStore::commit`] it.
    fn stage(&self, hash: &str, offset: u64, total: u64, chunk: &[u8]) -> Result<UploadStatus>;

    /// Commits the bytes staged for `hash`: hashes them and, if they match the name, calls
    /// `before_placing` and then makes the blob visible. Bytes that do not match are
    /// discarded ([`Error::Invalid`] on `sha256`, nothing visible); an error from
    /// `before_placing` keeps the staged bytes, for the commit to be tried again. A blob
    /// already committed is answered complete without calling `before_placing`; nothing
    /// staged is an [`Error::Conflict`].
    fn commit(
        &self,
        hash: &str,
        before_placing: &mut dyn FnMut() -> Result<()>,
    ) -> Result<UploadStatus>;

    /// Stores several whole blobs (a batch upload), each checked against its name, against
    /// `limit` and [`BlobStore::max_size`], and answers each on its own. Idempotent; a
    /// refused blob leaves nothing behind. The outer error is a fault of the store; blobs
    /// already committed by then stay, whole and verified.
    fn put_many(&self, blobs: &[WholeBlob], limit: usize) -> Result<Vec<Result<UploadStatus>>>;

    /// Opens committed blob `hash` for reading; [`Error::NotFound`] if there is none.
    fn open(&self, hash: &str) -> Result<BlobReader>;

    /// Hashes committed blob `hash` again. One that no longer matches its name (damaged) is
    /// taken out of sight, so that its phones upload it again. The size of a sound one,
    /// `None` for a damaged or absent one.
    fn verify(&self, hash: &str) -> Result<Option<u64>>;

    /// The names of every committed blob, in no particular order.
    fn list(&self) -> Result<Vec<String>>;

    /// Deletes committed blob `hash` (a purge); whether it was there.
    fn remove(&self, hash: &str) -> Result<bool>;

    /// Removes what whole-blob writes cut short by a crash left behind and says how many it
    /// removed; staged chunked uploads stay, for their phones to resume. Only while nothing
    /// else writes: the server calls it at start.
    fn remove_abandoned_staging(&self) -> Result<usize>;

    /// The size of committed blob `hash`, `None` if there is none.
    fn stat(&self, hash: &str) -> Result<Option<u64>> {
        let status = self.status(hash)?;
        Ok(status.complete.then_some(status.received))
    }

    /// The bytes of committed blob `hash`; [`Error::NotFound`] if there is none.
    fn read(&self, hash: &str) -> Result<Vec<u8>> {
        let mut reader = self.open(hash)?;
        let mut bytes = Vec::with_capacity(usize::try_from(reader.size).unwrap_or(0));
        reader.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

/// The contract every [`BlobStore`] keeps, as one check to run against each implementation.
#[cfg(test)]
pub(crate) mod contract {
    use std::cell::Cell;

    use sha2::{Digest, Sha256};

    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn nothing() -> Result<()> {
        Ok(())
    }

    /// Checks `store`, which must be empty and accept blobs of at least 1024 bytes but not
    /// of `store.max_size() + 1`.
    pub(crate) fn check(store: &dyn BlobStore) {
        unknown_blobs_are_absent(store);
        chunks_are_staged_in_order_and_committed_once(store);
        bytes_that_do_not_match_are_discarded(store);
        a_failed_before_placing_keeps_the_staged_bytes(store);
        whole_blobs_are_stored_each_on_its_own(store);
        limits_and_names_are_refused(store);
        removed_blobs_are_gone(store);
        cleaning_up_keeps_staged_uploads(store);
        concurrent_commits_place_a_blob_once(store);
    }

    fn unknown_blobs_are_absent(store: &dyn BlobStore) {
        let h = sha(b"never uploaded");
        assert_eq!(
            store.status(&h).unwrap(),
            UploadStatus {
                received: 0,
                complete: false
            }
        );
        assert_eq!(store.stat(&h).unwrap(), None);
        assert!(matches!(store.open(&h), Err(Error::NotFound(_))));
        assert!(matches!(store.read(&h), Err(Error::NotFound(_))));
        assert_eq!(store.verify(&h).unwrap(), None);
        assert!(!store.list().unwrap().contains(&h));
    }

    fn chunks_are_staged_in_order_and_committed_once(store: &dyn BlobStore) {
        let bytes: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
        let h = sha(&bytes);
        assert_eq!(
            store.stage(&h, 0, 300, &bytes[..100]).unwrap(),
            UploadStatus {
                received: 100,
                complete: false
            }
        );
        // Out of order, repeated, or past the end: refused, naming where to resume.
        let err = store.stage(&h, 200, 300, &bytes[200..]).unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        assert!(err.to_string().contains("offset 100"), "{err}");
        let err = store.stage(&h, 0, 300, &bytes[..100]).unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err}");
        let err = store.stage(&h, 100, 150, &bytes[100..]).unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
        assert_eq!(store.status(&h).unwrap().received, 100);
        let staged = store.stage(&h, 100, 300, &bytes[100..]).unwrap();
        assert_eq!(
            staged,
            UploadStatus {
                received: 300,
                complete: false
            }
        );
        // Staged bytes are not a blob yet.
        assert_eq!(store.stat(&h).unwrap(), None);
        assert!(matches!(store.open(&h), Err(Error::NotFound(_))));
        assert!(!store.list().unwrap().contains(&h));

        let calls = Cell::new(0);
        let done = store
            .commit(&h, &mut || {
                calls.set(calls.get() + 1);
                Ok(())
            })
            .unwrap();
        assert_eq!(
            done,
            UploadStatus {
                received: 300,
                complete: true
            }
        );
        assert_eq!(
            calls.get(),
            1,
            "before_placing runs once, before the blob shows"
        );
        assert_eq!(store.stat(&h).unwrap(), Some(300));
        let reader = store.open(&h).unwrap();
        assert_eq!(reader.size, 300);
        assert_eq!(store.read(&h).unwrap(), bytes);
        assert_eq!(store.verify(&h).unwrap(), Some(300));
        assert!(store.list().unwrap().contains(&h));

        // Sending it again, or committing again, stores nothing twice.
        assert!(store.stage(&h, 0, 300, &bytes[..10]).unwrap().complete);
        let again = store
            .commit(&h, &mut || {
                calls.set(calls.get() + 1);
                Ok(())
            })
            .unwrap();
        assert!(again.complete);
        assert_eq!(calls.get(), 1, "a committed blob is not placed again");
        assert_eq!(store.read(&h).unwrap(), bytes);
        store.remove(&h).unwrap();
    }

    fn bytes_that_do_not_match_are_discarded(store: &dyn BlobStore) {
        let h = sha(b"the real photo");
        assert_eq!(store.stage(&h, 0, 6, b"forged").unwrap().received, 6);
        let placed = Cell::new(false);
        let err = store
            .commit(&h, &mut || {
                placed.set(true);
                Ok(())
            })
            .unwrap_err();
        assert!(
            matches!(err, Error::Invalid { ref field, .. } if field == "sha256"),
            "{err}"
        );
        assert!(!placed.get(), "nothing unverified is placed");
        assert_eq!(
            store.status(&h).unwrap(),
            UploadStatus {
                received: 0,
                complete: false
            },
            "the forged bytes are discarded"
        );
        assert_eq!(store.stat(&h).unwrap(), None);
        assert!(!store.list().unwrap().contains(&h));
        assert!(matches!(
            store.commit(&h, &mut nothing),
            Err(Error::Conflict(_))
        ));
    }

    fn a_failed_before_placing_keeps_the_staged_bytes(store: &dyn BlobStore) {
        let bytes = b"a photo whose uploader could not be recorded";
        let h = sha(bytes);
        let total = bytes.len() as u64;
        store.stage(&h, 0, total, bytes).unwrap();
        let err = store
            .commit(&h, &mut || Err(Error::Internal("database busy".into())))
            .unwrap_err();
        assert!(matches!(err, Error::Internal(_)), "{err}");
        assert_eq!(store.stat(&h).unwrap(), None);
        assert_eq!(store.status(&h).unwrap().received, total, "still staged");
        assert!(store.commit(&h, &mut nothing).unwrap().complete);
        assert_eq!(store.read(&h).unwrap(), bytes);
        store.remove(&h).unwrap();
    }

    fn whole_blobs_are_stored_each_on_its_own(store: &dyn BlobStore) {
        let good: Vec<WholeBlob> = [&b"photo one"[..], b"photo two", b"thumbnail"]
            .iter()
            .map(|b| WholeBlob {
                sha256: sha(b),
                bytes: b.to_vec(),
            })
            .collect();
        let forged = WholeBlob {
            sha256: sha(b"the real photo"),
            bytes: b"forged".to_vec(),
        };
        let over_limit = WholeBlob {
            sha256: sha(&[7u8; 100]),
            bytes: vec![7u8; 100],
        };
        let mut batch = good.clone();
        batch.push(forged.clone());
        batch.push(over_limit.clone());
        let outcomes = store.put_many(&batch, 64).unwrap();
        assert!(outcomes[..3].iter().all(|o| o.as_ref().unwrap().complete));
        assert!(matches!(outcomes[3], Err(Error::Invalid { .. })));
        assert!(matches!(outcomes[4], Err(Error::Invalid { .. })));
        // The same batch again (a retry) stores nothing twice.
        let again = store.put_many(&batch, 64).unwrap();
        assert!(again[..3].iter().all(|o| o.is_ok()));
        for blob in &good {
            assert_eq!(store.read(&blob.sha256).unwrap(), blob.bytes);
            assert_eq!(
                store.stat(&blob.sha256).unwrap(),
                Some(blob.bytes.len() as u64)
            );
        }
        assert_eq!(store.stat(&forged.sha256).unwrap(), None);
        assert_eq!(store.stat(&over_limit.sha256).unwrap(), None);
        let mut listed = store.list().unwrap();
        listed.sort();
        let mut expected: Vec<String> = good.iter().map(|b| b.sha256.clone()).collect();
        expected.sort();
        assert_eq!(listed, expected);
        for blob in &good {
            store.remove(&blob.sha256).unwrap();
        }
    }

    fn limits_and_names_are_refused(store: &dyn BlobStore) {
        let h = sha(b"x");
        let over = store.max_size() + 1;
        assert!(matches!(
            store.stage(&h, 0, over, b"x"),
            Err(Error::TooLarge { .. })
        ));
        for bad in ["../../etc/passwd".to_owned(), h.to_uppercase()] {
            assert!(store.stage(&bad, 0, 1, b"x").is_err());
            assert!(store.commit(&bad, &mut nothing).is_err());
            assert!(store.status(&bad).is_err());
            assert!(store.open(&bad).is_err());
            assert!(store.verify(&bad).is_err());
            assert!(store.remove(&bad).is_err());
        }
        assert_eq!(store.status(&h).unwrap().received, 0);
    }

    fn removed_blobs_are_gone(store: &dyn BlobStore) {
        let bytes = b"a photo of a purged task";
        let h = sha(bytes);
        store
            .put_many(
                &[WholeBlob {
                    sha256: h.clone(),
                    bytes: bytes.to_vec(),
                }],
                1024,
            )
            .unwrap();
        assert!(store.remove(&h).unwrap());
        assert_eq!(store.stat(&h).unwrap(), None);
        assert!(matches!(store.open(&h), Err(Error::NotFound(_))));
        assert!(!store.list().unwrap().contains(&h));
        assert!(!store.remove(&h).unwrap(), "removing twice is no error");
    }

    fn cleaning_up_keeps_staged_uploads(store: &dyn BlobStore) {
        let bytes = b"half of a photo, then the half that was cut off";
        let h = sha(bytes);
        store
            .stage(&h, 0, bytes.len() as u64, &bytes[..10])
            .unwrap();
        store.remove_abandoned_staging().unwrap();
        assert_eq!(store.status(&h).unwrap().received, 10, "left to resume");
        store
            .stage(&h, 10, bytes.len() as u64, &bytes[10..])
            .unwrap();
        assert!(store.commit(&h, &mut nothing).unwrap().complete);
        assert!(store.list().unwrap().contains(&h));
        store.remove(&h).unwrap();
    }

    fn concurrent_commits_place_a_blob_once(store: &dyn BlobStore) {
        let bytes = b"a photo two retries of one request commit at once";
        let h = sha(bytes);
        store.stage(&h, 0, bytes.len() as u64, bytes).unwrap();
        let placed = std::sync::atomic::AtomicUsize::new(0);
        let outcomes: Vec<Result<UploadStatus>> = std::thread::scope(|scope| {
            let commits: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        store.commit(&h, &mut || {
                            placed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            Ok(())
                        })
                    })
                })
                .collect();
            commits.into_iter().map(|c| c.join().unwrap()).collect()
        });
        assert!(outcomes.iter().all(|o| o.as_ref().unwrap().complete));
        assert_eq!(placed.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(store.read(&h).unwrap(), bytes);
        store.remove(&h).unwrap();
    }
}
