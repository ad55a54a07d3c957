//! The content-addressed blob store: photos, thumbnails and upload copies,
//! named by the SHA-256 of their bytes. Uploads are chunked and resumable
//! (the client asks how much the server has and continues from there),
//! idempotent (a blob already stored is acknowledged, not written again) and
//! verified against their hash when complete (a mismatch discards the
//! partial data). Downloads are allowed to users who may read a record that
//! references the blob.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::auth::{AuthUser, Role};
use crate::db::now;
use crate::error::{Error, Result};
use crate::extract::{ApiPath, ApiQuery, body_bytes};
use suiji_mobile_core::sync::wire::{
    self, BATCH_BLOB_MAX, BATCH_BYTES_MAX, BLOB_BATCH_PATH, BlobBatch, BlobBatchResponse,
    BlobOutcome, CONTENT_TYPE, PROTOCOL_VERSION, Refusal, WholeBlob,
};

/// Largest chunk accepted in one request.
pub const CHUNK_LIMIT: usize = 4 * 1024 * 1024;
/// Largest body of a batch upload: the blobs plus room for their names and framing.
const BATCH_BODY_LIMIT: usize = BATCH_BYTES_MAX + 64 * 1024;
/// Default largest blob.
pub const DEFAULT_MAX_BLOB: u64 = 32 * 1024 * 1024;

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/blobs/{sha256}",
            get(download)
                .put(upload)
                .layer(DefaultBodyLimit::max(CHUNK_LIMIT)),
        )
        .route("/api/v1/blobs/{sha256}/status", get(status))
        .route(
            BLOB_BATCH_PATH,
            post(upload_batch).layer(DefaultBodyLimit::max(BATCH_BODY_LIMIT)),
        )
}

/// How much of a blob the server holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadStatus {
    /// Bytes received so far (the whole size once complete).
    pub received: u64,
    /// Whether the blob is stored and verified.
    pub complete: bool,
}

/// Blobs on disk under `<data>/blobs`: complete ones in a two-level fan-out,
/// partial chunked uploads in `tmp/`, whole blobs of a batch upload beside
/// their place under a dot-name until they are moved into it.
pub struct BlobStore {
    dir: PathBuf,
    max_size: u64,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
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

impl BlobStore {
    /// A store rooted at `dir`, refusing blobs over `max_size` bytes.
    pub fn open(dir: &Path, max_size: u64) -> Result<BlobStore> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        Ok(BlobStore {
            dir: dir.to_owned(),
            max_size,
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// Largest blob accepted.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Where a complete blob lives.
    pub fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(&hash[..2]).join(&hash[2..])
    }

    fn partial(&self, hash: &str) -> PathBuf {
        self.dir.join("tmp").join(format!("{hash}.part"))
    }

    fn lock(&self, hash: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(hash.to_owned()).or_default().clone()
    }

    /// How much of `hash` is here.
    pub fn status(&self, hash: &str) -> Result<UploadStatus> {
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

    /// Appends `chunk` at `offset` of a blob of `total` bytes. Completes and
    /// verifies the blob when the last byte arrives. Blocking: call off the
    /// async runtime.
    pub fn append(
        &self,
        hash: &str,
        offset: u64,
        total: u64,
        chunk: &[u8],
    ) -> Result<UploadStatus> {
        check_hash(hash)?;
        if total > self.max_size {
            return Err(Error::TooLarge {
                limit: self.max_size as usize,
            });
        }
        if offset + chunk.len() as u64 > total {
            return Err(Error::invalid(
                "total",
                format!(
                    "chunk ends at {} past the total of {total}",
                    offset + chunk.len() as u64
                ),
            ));
        }
        let lock = self.lock(hash);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.status(hash)?;
        if current.complete {
            return Ok(current);
        }
        if offset != current.received {
            return Err(Error::Conflict(format!(
                "the server has {} bytes of this blob; continue from offset {}",
                current.received, current.received
            )));
        }
        let partial = self.partial(hash);
        {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&partial)?;
            file.write_all(chunk)?;
            file.sync_data()?;
        }
        let received = current.received + chunk.len() as u64;
        if received < total {
            return Ok(UploadStatus {
                received,
                complete: false,
            });
        }
        let mut hasher = Sha256::new();
        let mut file = std::fs::File::open(&partial)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let actual = hex::encode(hasher.finalize());
        if actual != hash {
            std::fs::remove_file(&partial)?;
            return Err(Error::invalid(
                "sha256",
                format!(
                    "the bytes hash to {actual}, not to the blob's name; the upload was discarded"
                ),
            ));
        }
        let target = self.path(hash);
        std::fs::create_dir_all(target.parent().expect("fan-out directory"))?;
        std::fs::rename(&partial, &target)?;
        if let Ok(dir) = std::fs::File::open(target.parent().expect("fan-out directory")) {
            let _ = dir.sync_all();
        }
        Ok(UploadStatus {
            received,
            complete: true,
        })
    }

    /// Stores several whole blobs (a batch upload), each checked against its name and
    /// against `limit`, and answers each on its own. Each blob is written beside its place,
    /// made durable together by one flush of the file system, moved into place, and the moves
    /// made durable by a second flush: two flushes a batch instead of two a blob. Idempotent;
    /// a refused blob leaves nothing behind. The outer error is a fault of the server (disk);
    /// blobs already moved into place by then stay, whole and verified. Blocking: call off
    /// the async runtime.
    pub fn put_many(&self, blobs: &[WholeBlob], limit: usize) -> Result<Vec<Result<UploadStatus>>> {
        let mut outcomes = Vec::with_capacity(blobs.len());
        let mut staged = Vec::new();
        for blob in blobs {
            if let Err(refusal) = self.check_whole(&blob.sha256, &blob.bytes, limit) {
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

    /// Whether `bytes` may be stored whole as blob `hash`: a well-formed name, at most `limit`
    /// and the store's largest blob, and bytes that hash to the name.
    fn check_whole(&self, hash: &str, bytes: &[u8], limit: usize) -> Result<()> {
        check_hash(hash)?;
        if bytes.len() as u64 > self.max_size {
            return Err(Error::TooLarge {
                limit: self.max_size as usize,
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

    /// Removes what batches cut short by a crash left in the fan-out directories (the
    /// dot-named staging files, never taken for blobs) and says how many it removed. Only
    /// while no batch runs: the server calls it at start, holding the data directory.
    /// Partial chunked uploads in `tmp/` stay, for their phones to resume.
    pub fn remove_abandoned_staging(&self) -> Result<usize> {
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

    /// The bytes of a complete blob.
    pub fn read(&self, hash: &str) -> Result<Vec<u8>> {
        check_hash(hash)?;
        std::fs::read(self.path(hash)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(format!("blob {hash}")),
            _ => Error::Io(e),
        })
    }
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

/// Whether `user` may read some record that references blob `hash`, by the
/// rule of docs/draw.md ("Who sees a drawn list"): a blob is readable by whoever
/// may see the whole of a record referring to it. Unknown blobs and blobs of
/// records the caller may not see get the same answer.
pub fn may_read(conn: &Connection, user: &AuthUser, hash: &str) -> Result<bool> {
    let mut stmt = conn.prepare_cached("SELECT record_id FROM record_blobs WHERE sha256 = ?1")?;
    let records: Vec<String> = stmt
        .query_map([hash], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    for record in records {
        if crate::visibility::sight_of(conn, user, &record)? == crate::visibility::Sight::Full {
            return Ok(true);
        }
    }
    Ok(false)
}

/// [`may_read`] from a read snapshot, asked again on a freshly indexed
/// database when the answer is no: a submission synced a moment ago shows a
/// record to its supervisor only once the review index has caught up.
pub async fn may_read_now(db: &crate::db::Db, user: &AuthUser, hash: &str) -> Result<bool> {
    let (u, h) = (user.clone(), hash.to_owned());
    if db.read(move |c| may_read(c, &u, &h)).await? {
        return Ok(true);
    }
    let (u, h) = (user.clone(), hash.to_owned());
    db.write(move |tx| {
        crate::review::refresh_stale(tx)?;
        may_read(tx, &u, &h)
    })
    .await
}

/// The media type of a blob, sniffed from its first bytes (JPEG, PNG, WebP; otherwise
/// `application/octet-stream`).
pub fn content_type(bytes: &[u8]) -> &'static str {
    match bytes {
        [0xFF, 0xD8, 0xFF, ..] => "image/jpeg",
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => "image/webp",
        _ => "application/octet-stream",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadParams {
    offset: u64,
    total: u64,
}

async fn upload(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(hash): ApiPath<String>,
    ApiQuery(p): ApiQuery<UploadParams>,
    request: Request,
) -> Result<Response> {
    user.require(&[Role::Inspector, Role::Admin])?;
    check_hash(&hash)?;
    if p.total > state.blobs.max_size() {
        return Err(Error::TooLarge {
            limit: state.blobs.max_size() as usize,
        });
    }
    let chunk = body_bytes(request, &state, CHUNK_LIMIT).await?;
    let blobs = state.blobs.clone();
    let h = hash.clone();
    let result =
        tokio::task::spawn_blocking(move || blobs.append(&h, p.offset, p.total, &chunk)).await??;
    if result.complete {
        let uploader = user.user_id;
        let size = result.received as i64;
        state
            .db
            .write(move |tx| {
                tx.execute(
                    "INSERT OR IGNORE INTO blobs (sha256, size, uploaded_by, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![hash, size, uploader, now()],
                )?;
                Ok(())
            })
            .await?;
        return Ok((StatusCode::CREATED, Json(result)).into_response());
    }
    Ok(Json(result).into_response())
}

/// `POST /api/v1/blobs`: several small blobs uploaded whole (see [`BlobBatch`]). Each blob
/// is checked and stored on its own and answered in order; the blobs stored are registered in
/// one transaction.
async fn upload_batch(
    State(state): State<AppState>,
    user: AuthUser,
    request: Request,
) -> Result<Response> {
    user.require(&[Role::Inspector, Role::Admin])?;
    let body = body_bytes(request, &state, BATCH_BODY_LIMIT).await?;
    let batch: BlobBatch =
        wire::decode(&body).map_err(|e| Error::Malformed(format!("not a blob batch: {e}")))?;
    if batch.protocol != PROTOCOL_VERSION {
        return Err(Error::invalid(
            "protocol",
            format!(
                "this server speaks protocol {PROTOCOL_VERSION}, not {}",
                batch.protocol
            ),
        ));
    }
    let blobs = state.blobs.clone();
    let results = tokio::task::spawn_blocking(move || {
        let outcomes = blobs.put_many(&batch.blobs, BATCH_BLOB_MAX)?;
        Ok::<_, Error>(
            batch
                .blobs
                .into_iter()
                .zip(outcomes)
                .map(|(blob, outcome)| (blob.sha256, blob.bytes.len() as i64, outcome))
                .collect::<Vec<_>>(),
        )
    })
    .await??;
    let stored: Vec<(String, i64)> = results
        .iter()
        .filter(|(_, _, outcome)| outcome.is_ok())
        .map(|(hash, size, _)| (hash.clone(), *size))
        .collect();
    if !stored.is_empty() {
        let uploader = user.user_id;
        state
            .db
            .write(move |tx| {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO blobs (sha256, size, uploaded_by, created_at) VALUES (?1, ?2, ?3, ?4)",
                )?;
                let at = now();
                for (hash, size) in &stored {
                    insert.execute(params![hash, size, uploader, at])?;
                }
                Ok(())
            })
            .await?;
    }
    // A blob refused for what it is gets its own outcome; a server fault fails the request.
    let mut results = results;
    if let Some(at) = results
        .iter()
        .position(|(_, _, o)| o.as_ref().is_err_and(|e| e.status().is_server_error()))
    {
        let (_, _, fault) = results.swap_remove(at);
        return Err(fault.expect_err("found as an error"));
    }
    let response = BlobBatchResponse {
        protocol: PROTOCOL_VERSION,
        results: results
            .into_iter()
            .map(|(sha256, _, outcome)| BlobOutcome {
                sha256,
                stored: outcome.is_ok(),
                refused: outcome.err().map(|e| {
                    (
                        e.status().as_u16(),
                        Refusal {
                            code: e.code().to_owned(),
                            message: e.to_string(),
                            rule: None,
                            record_id: None,
                        },
                    )
                }),
            })
            .collect(),
    };
    Ok((
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        wire::encode(&response),
    )
        .into_response())
}

async fn status(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(hash): ApiPath<String>,
) -> Result<Json<UploadStatus>> {
    user.require(&[Role::Inspector, Role::Admin])?;
    let blobs = state.blobs.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || blobs.status(&hash)).await??,
    ))
}

async fn download(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(hash): ApiPath<String>,
) -> Result<Response> {
    check_hash(&hash)?;
    let allowed = may_read_now(&state.db, &user, &hash).await?;
    if !allowed {
        return Err(Error::Forbidden(
            "no record you may read refers to this blob".into(),
        ));
    }
    let blobs = state.blobs.clone();
    let bytes = tokio::task::spawn_blocking(move || blobs.read(&hash)).await??;
    Ok((
        [
            (header::CONTENT_TYPE, content_type(&bytes)),
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable",
            ),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn chunks_resume_and_complete_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 1024).unwrap();
        let bytes: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
        let h = sha(&bytes);
        assert_eq!(
            store.append(&h, 0, 300, &bytes[..100]).unwrap(),
            UploadStatus {
                received: 100,
                complete: false
            }
        );
        // A retried or out-of-order chunk is refused, naming where to resume.
        let err = store.append(&h, 200, 300, &bytes[200..]).unwrap_err();
        assert!(err.to_string().contains("offset 100"), "{err}");
        assert_eq!(store.status(&h).unwrap().received, 100);
        assert!(store.append(&h, 100, 300, &bytes[100..]).unwrap().complete);
        assert_eq!(store.read(&h).unwrap(), bytes);
        // Sending it again stores nothing twice.
        assert!(store.append(&h, 0, 300, &bytes[..10]).unwrap().complete);
        assert_eq!(store.read(&h).unwrap(), bytes);
    }

    #[test]
    fn bytes_that_do_not_match_their_hash_are_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 1024).unwrap();
        let h = sha(b"the real photo");
        let err = store.append(&h, 0, 5, b"forge").unwrap_err();
        assert!(matches!(err, Error::Invalid { ref field, .. } if field == "sha256"));
        assert_eq!(
            store.status(&h).unwrap(),
            UploadStatus {
                received: 0,
                complete: false
            }
        );
        assert!(matches!(store.read(&h), Err(Error::NotFound(_))));
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
    fn a_batch_stores_each_good_blob_once_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 1024).unwrap();
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
        let mut batch = good.clone();
        batch.push(forged);
        let outcomes = store.put_many(&batch, 1024).unwrap();
        assert!(outcomes[..3].iter().all(|o| o.as_ref().unwrap().complete));
        assert!(matches!(outcomes[3], Err(Error::Invalid { .. })));
        // The same batch again (a retry) stores nothing twice.
        let again = store.put_many(&batch, 1024).unwrap();
        assert!(again[..3].iter().all(|o| o.is_ok()));
        let mut expected: Vec<String> = good
            .iter()
            .map(|b| format!("{}/{}", &b.sha256[..2], &b.sha256[2..]))
            .collect();
        expected.sort();
        assert_eq!(
            files(dir.path()),
            expected,
            "the blobs in place, no staging file left"
        );
        for blob in &good {
            assert_eq!(store.read(&blob.sha256).unwrap(), blob.bytes);
        }
    }

    #[test]
    fn oversize_and_malformed_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 10).unwrap();
        let h = sha(b"x");
        assert!(matches!(
            store.append(&h, 0, 11, b"x"),
            Err(Error::TooLarge { .. })
        ));
        assert!(store.append("../../etc/passwd", 0, 1, b"x").is_err());
        assert!(store.append(&h.to_uppercase(), 0, 1, b"x").is_err());
    }
}
