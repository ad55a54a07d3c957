//! Blobs over HTTP: photos, thumbnails and upload copies, named by the SHA-256 of their
//! bytes, and what the server records about them. Where the bytes live is a [`BlobStore`]
//! ([`store`]; [`FsBlobStore`] by default); this module holds the routes, who may read a
//! blob, and the `blobs` and `blob_uploaders` rows. Uploads are chunked and resumable
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

pub mod fs;
pub mod s3;
pub mod store;

use crate::store::sql::Conn;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::AppState;
use crate::actor::Actor;
use crate::auth::{AuthUser, Role};
use crate::db::{Db, now};
use crate::error::{Error, Result};
use crate::extract::{ApiPath, ApiQuery, body_bytes};
use suiji_mobile_core::sync::wire::{
    self, BATCH_BLOB_MAX, BATCH_BYTES_MAX, BLOB_BATCH_PATH, BlobBatch, BlobBatchResponse,
    BlobOutcome, CONTENT_TYPE, PROTOCOL_VERSION, Refusal,
};

pub use fs::FsBlobStore;
pub use s3::S3BlobStore;
pub use store::{BlobReader, BlobStore, UploadStatus, check_hash};

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

use crate::store::blobs as meta;

/// Gives a blob whose file is in place its row if a crash between the two left it without:
/// the file is hashed again first (unless `verified` says this request just did), and a file
/// that no longer matches is moved aside instead. Answers what the store then holds. Blocking.
fn settle(db: &Db, store: &dyn BlobStore, hash: &str, verified: bool) -> Result<UploadStatus> {
    let status = store.status(hash)?;
    if !status.complete {
        return Ok(status);
    }
    let owned = hash.to_owned();
    if db.read_blocking(move |c| meta::exists(c, &owned))? {
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
    db.write_blocking(|tx| meta::insert(tx, hash, size, &now()))?;
    if !verified {
        tracing::info!(sha256 = hash, "a stored blob without its row got it back");
    }
    Ok(status)
}

/// Brings blob files and rows into agreement at start: a complete file without its row (a
/// crash between the two) gets it, after its bytes are hashed again; a row whose file is gone
/// is removed, so that `missing_blobs` names the blob to the phones that hold it. Says how many
/// it repaired. Blocking; the server calls it from [`crate::open`].
pub fn reconcile(db: &Db, store: &dyn BlobStore) -> Result<usize> {
    let rows: std::collections::HashSet<String> =
        db.read_blocking(|c| Ok(meta::all(c)?.into_iter().collect()))?;
    let files: std::collections::HashSet<String> = store.list()?.into_iter().collect();
    let mut repaired = 0;
    for hash in files.difference(&rows) {
        settle(db, store, hash, false)?;
        repaired += 1;
    }
    let gone: Vec<&String> = rows.difference(&files).collect();
    if !gone.is_empty() {
        db.write_blocking(|tx| crate::store::blobs::forget(tx, &gone))?;
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

/// Whether `user` may read blob `hash`: they uploaded it, or they may see the whole of a
/// record (by the rule of docs/draw.md, "Who sees a drawn list") whose reference to it was
/// sent by an inspector whose account uploaded it. A reference nobody who holds the bytes
/// wrote (a hash copied into another record) grants nothing. Unknown blobs and blobs of
/// records the caller may not see get the same answer.
pub fn may_read(conn: &Conn, user: &Actor, hash: &str) -> Result<bool> {
    if meta::uploaded_by(conn, hash, user.user_id)? {
        return Ok(true);
    }
    for record in meta::records_referring_by_uploader(conn, hash)? {
        if crate::visibility::sight_of(conn, user, &record)? == crate::visibility::Sight::Full {
            return Ok(true);
        }
    }
    Ok(false)
}

/// [`may_read`] from a read snapshot, asked again on a freshly indexed
/// database when the answer is no: a submission synced a moment ago shows a
/// record to its supervisor only once the review index has caught up.
pub async fn may_read_now(db: &Db, user: &Actor, hash: &str) -> Result<bool> {
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
        let staged = blobs.stage(&hash, p.offset, p.total, &chunk)?;
        if !staged.complete && staged.received < p.total {
            return Ok(staged);
        }
        let mut verified = false;
        if !staged.complete {
            blobs.commit(&hash, &mut || {
                verified = true;
                db.write_blocking(|tx| meta::record_uploader(tx, &hash, uploader, &now()))
            })?;
        }
        settle(&db, &*blobs, &hash, verified)
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
                    meta::record_uploader(tx, hash, uploader, &at)?;
                    meta::insert(tx, hash, *size as u64, &at)?;
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
        tokio::task::spawn_blocking(move || settle(&db, &*blobs, &hash, false)).await??,
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
