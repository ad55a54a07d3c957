//! The content-addressed blob store: photos, thumbnails and upload copies,
//! named by the SHA-256 of their bytes. Uploads are chunked and resumable
//! (the client asks how much the server has and continues from there),
//! idempotent (a blob already stored is acknowledged, not written again) and
//! verified against their hash when complete (a mismatch discards the
//! partial data).
//!
//! Who may download a blob follows what the server itself recorded, never what a phone wrote
//! alone: the accounts that proved they hold the bytes (`blob_uploaders`: they uploaded bytes
//! that hash to the name), and the records whose reference to the blob was sent by one of
//! those accounts' inspectors (`record_blobs.inspector_id`). Whoever may see the whole of such
//! a record may download the blob; a hash copied into some other record grants nothing. An
//! upload of a blob the server already holds whole proves nothing (nothing is read), so it is
//! not recorded as an upload: a re-installed phone of the same inspector is the same account
//! and needs no proof; a second inspector holding identical bytes who finds them already here
//! binds them to no record of theirs (docs/api.md, "Blobs and imports under load").
//!
//! A blob's file and its `blobs` row never disagree for long: the uploader is recorded before
//! the file is moved into place and the row written after, so a crash in between leaves a
//! verified file without its row, which the next status query or upload of that blob repairs
//! (after hashing the file again), as does [`reconcile`] when the server starts.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rusqlite::{Connection, Transaction, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::auth::{AuthUser, Role};
use crate::db::{Db, now};
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
    /// verifies the blob when the last byte arrives, calling `before_placing` once the bytes
    /// are verified and before the file is moved into place (an error there keeps the
    /// verified partial file, for the upload to be completed again). Blocking: call off the
    /// async runtime.
    pub fn append(
        &self,
        hash: &str,
        offset: u64,
        total: u64,
        chunk: &[u8],
        before_placing: impl FnOnce() -> Result<()>,
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
        let actual = hash_file(&partial)?;
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

    /// Hashes the file of a complete blob again. A file that no longer matches its name
    /// (damaged on disk) is moved aside to `damaged/`, kept for a look but no longer taken
    /// for the blob, so that its phones upload it again. The size of a sound one, `None` for
    /// a damaged or absent one. Blocking.
    pub fn verify(&self, hash: &str) -> Result<Option<u64>> {
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

    /// The names of every complete blob on disk. Blocking.
    pub fn list(&self) -> Result<Vec<String>> {
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

    /// The bytes of a complete blob.
    pub fn read(&self, hash: &str) -> Result<Vec<u8>> {
        check_hash(hash)?;
        std::fs::read(self.path(hash)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(format!("blob {hash}")),
            _ => Error::Io(e),
        })
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

/// Records that `user_id` proved it holds blob `hash` (it uploaded bytes that hash to it).
/// References to the blob indexed before the server recorded who wrote them are taken as the
/// uploader's when its inspector is, or was, in that record's group.
fn record_uploader(tx: &Transaction<'_>, hash: &str, user_id: i64, at: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO blob_uploaders (sha256, user_id, uploaded_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![hash, user_id, at])?;
    tx.prepare_cached(
        "UPDATE record_blobs SET inspector_id = i.id
         FROM inspectors i
         WHERE i.user_id = ?2 AND record_blobs.sha256 = ?1 AND record_blobs.inspector_id IS NULL
           AND EXISTS (SELECT 1 FROM record_assignment_history h
                       WHERE h.record_id = record_blobs.record_id AND h.inspector_id = i.id)",
    )?
    .execute(params![hash, user_id])?;
    Ok(())
}

/// Writes the row of a blob whose file is in place, unless it has one.
fn insert_row(tx: &Transaction<'_>, hash: &str, size: u64, at: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO blobs (sha256, size, uploaded_by, created_at)
         VALUES (?1, ?2, (SELECT user_id FROM blob_uploaders WHERE sha256 = ?1
                          ORDER BY uploaded_at, user_id LIMIT 1), ?3)",
    )?
    .execute(params![hash, size as i64, at])?;
    Ok(())
}

/// Whether blob `hash` has its row.
fn has_row(conn: &Connection, hash: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM blobs WHERE sha256 = ?1)")?
        .query_row([hash], |r| r.get(0))?)
}

/// Gives a blob whose file is in place its row if a crash between the two left it without:
/// the file is hashed again first (unless `verified` says this request just did), and a file
/// that no longer matches is moved aside instead. Answers what the store then holds. Blocking.
fn settle(db: &Db, store: &BlobStore, hash: &str, verified: bool) -> Result<UploadStatus> {
    let status = store.status(hash)?;
    if !status.complete {
        return Ok(status);
    }
    let owned = hash.to_owned();
    if db.read_blocking(move |c| has_row(c, &owned))? {
        return Ok(status);
    }
    let size = if verified {
        Some(status.received)
    } else {
        store.verify(hash)?
    };
    let Some(size) = size else {
        return store.status(hash);
    };
    db.write_blocking(|tx| insert_row(tx, hash, size, &now()))?;
    if !verified {
        tracing::info!(sha256 = hash, "a stored blob without its row got it back");
    }
    Ok(status)
}

/// Brings blob files and rows into agreement at start: a complete file without its row (a
/// crash between the two) gets it, after its bytes are hashed again; a row whose file is gone
/// is removed, so that `missing_blobs` names the blob to the phones that hold it. Says how many
/// it repaired. Blocking; the server calls it from [`crate::open`].
pub fn reconcile(db: &Db, store: &BlobStore) -> Result<usize> {
    let rows: std::collections::HashSet<String> = db.read_blocking(|c| {
        let mut stmt = c.prepare("SELECT sha256 FROM blobs")?;
        let hashes = stmt
            .query_map([], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        Ok(hashes)
    })?;
    let files: std::collections::HashSet<String> = store.list()?.into_iter().collect();
    let mut repaired = 0;
    for hash in files.difference(&rows) {
        settle(db, store, hash, false)?;
        repaired += 1;
    }
    let gone: Vec<&String> = rows.difference(&files).collect();
    if !gone.is_empty() {
        db.write_blocking(|tx| {
            let mut delete = tx.prepare_cached("DELETE FROM blobs WHERE sha256 = ?1")?;
            for hash in &gone {
                delete.execute([hash])?;
            }
            Ok(())
        })?;
        repaired += gone.len();
    }
    if repaired > 0 {
        tracing::info!(
            blobs = repaired,
            "blob files and rows brought into agreement"
        );
    }
    Ok(repaired)
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

/// Whether `user` may read blob `hash`: they uploaded it, or they may see the whole of a
/// record (by the rule of docs/draw.md, "Who sees a drawn list") whose reference to it was
/// sent by an inspector whose account uploaded it. A reference nobody who holds the bytes
/// wrote (a hash copied into another record) grants nothing. Unknown blobs and blobs of
/// records the caller may not see get the same answer.
pub fn may_read(conn: &Connection, user: &AuthUser, hash: &str) -> Result<bool> {
    let uploaded: bool = conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM blob_uploaders WHERE sha256 = ?1 AND user_id = ?2)",
        )?
        .query_row(params![hash, user.user_id], |r| r.get(0))?;
    if uploaded {
        return Ok(true);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT rb.record_id FROM record_blobs rb
         JOIN inspectors i ON i.id = rb.inspector_id
         JOIN blob_uploaders u ON u.sha256 = rb.sha256 AND u.user_id = i.user_id
         WHERE rb.sha256 = ?1",
    )?;
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
pub async fn may_read_now(db: &Db, user: &AuthUser, hash: &str) -> Result<bool> {
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
    let (blobs, db) = (state.blobs.clone(), state.db.clone());
    let uploader = user.user_id;
    let result = tokio::task::spawn_blocking(move || {
        let mut verified = false;
        let status = blobs.append(&hash, p.offset, p.total, &chunk, || {
            verified = true;
            db.write_blocking(|tx| record_uploader(tx, &hash, uploader, &now()))
        })?;
        if !status.complete {
            return Ok(status);
        }
        settle(&db, &blobs, &hash, verified)
    })
    .await??;
    if result.complete {
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
                let at = now();
                for (hash, size) in &stored {
                    record_uploader(tx, hash, uploader, &at)?;
                    insert_row(tx, hash, *size as u64, &at)?;
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
    let (blobs, db) = (state.blobs.clone(), state.db.clone());
    Ok(Json(
        tokio::task::spawn_blocking(move || settle(&db, &blobs, &hash, false)).await??,
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
    let h = hash.clone();
    let bytes = tokio::task::spawn_blocking(move || blobs.read(&h)).await??;
    Ok(served(&hash, bytes))
}

/// A blob's bytes as every download answers them, from the API and the console alike: typed by
/// their first bytes, held to that type (`nosniff`), offered by [`content_disposition`], and
/// cached for good by the one who may read it (a hash names the same bytes forever).
pub fn served(hash: &str, bytes: Vec<u8>) -> Response {
    let kind = content_type(&bytes);
    (
        [
            (header::CONTENT_TYPE, kind.to_owned()),
            (header::CONTENT_DISPOSITION, content_disposition(hash, kind)),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable".to_owned(),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// How a downloaded blob is offered: an image the server recognised (and names by its type,
/// which `nosniff` holds the browser to) may be shown inline; anything else is only saved.
/// Either way named by its hash.
pub fn content_disposition(hash: &str, content_type: &str) -> String {
    match content_type {
        "image/jpeg" => format!("inline; filename=\"{hash}.jpg\""),
        "image/png" => format!("inline; filename=\"{hash}.png\""),
        "image/webp" => format!("inline; filename=\"{hash}.webp\""),
        _ => format!("attachment; filename=\"{hash}.bin\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// A `before_placing` that has nothing to record.
    fn ok() -> Result<()> {
        Ok(())
    }

    #[test]
    fn chunks_resume_and_complete_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 1024).unwrap();
        let bytes: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
        let h = sha(&bytes);
        assert_eq!(
            store.append(&h, 0, 300, &bytes[..100], ok).unwrap(),
            UploadStatus {
                received: 100,
                complete: false
            }
        );
        // A retried or out-of-order chunk is refused, naming where to resume.
        let err = store.append(&h, 200, 300, &bytes[200..], ok).unwrap_err();
        assert!(err.to_string().contains("offset 100"), "{err}");
        assert_eq!(store.status(&h).unwrap().received, 100);
        assert!(
            store
                .append(&h, 100, 300, &bytes[100..], ok)
                .unwrap()
                .complete
        );
        assert_eq!(store.read(&h).unwrap(), bytes);
        // Sending it again stores nothing twice.
        assert!(store.append(&h, 0, 300, &bytes[..10], ok).unwrap().complete);
        assert_eq!(store.read(&h).unwrap(), bytes);
    }

    #[test]
    fn bytes_that_do_not_match_their_hash_are_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 1024).unwrap();
        let h = sha(b"the real photo");
        let err = store.append(&h, 0, 5, b"forge", ok).unwrap_err();
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
    fn a_damaged_blob_is_moved_aside_so_that_it_can_be_uploaded_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 1024).unwrap();
        let sound = b"a sound photo";
        assert!(
            store
                .append(&sha(sound), 0, 13, sound, ok)
                .unwrap()
                .complete
        );
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
    fn oversize_and_malformed_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path(), 10).unwrap();
        let h = sha(b"x");
        assert!(matches!(
            store.append(&h, 0, 11, b"x", ok),
            Err(Error::TooLarge { .. })
        ));
        assert!(store.append("../../etc/passwd", 0, 1, b"x", ok).is_err());
        assert!(store.append(&h.to_uppercase(), 0, 1, b"x", ok).is_err());
    }
}
