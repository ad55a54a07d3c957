//! Blob metadata: which blobs the server holds (`blobs`), who proved they hold
//! each by uploading it (`blob_uploaders`), and which records refer to which
//! blob, with the inspector whose phone sent the reference first and whether
//! the phones upload it (`record_blobs`). The bytes are the blob store's
//! (`crate::blobs::BlobStore`).

use crate::store::sql::{Conn, Tx, params};

use crate::error::Result;

/// Records that `user_id` proved it holds blob `hash` (it uploaded bytes that hash to it).
/// References to the blob indexed before the server recorded who wrote them are taken as the
/// uploader's when its inspector is, or was, in that record's group.
pub fn record_uploader(tx: &Tx<'_>, hash: &str, user_id: i64, at: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO blob_uploaders (sha256, user_id, uploaded_at) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
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

/// Writes the row of a blob whose bytes are in place, unless it has one; its first uploader
/// is named as the one who stored it.
pub fn insert(tx: &Tx<'_>, hash: &str, size: u64, at: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO blobs (sha256, size, uploaded_by, created_at)
         VALUES (?1, ?2, (SELECT user_id FROM blob_uploaders WHERE sha256 = ?1
                          ORDER BY uploaded_at, user_id LIMIT 1), ?3)
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![hash, size as i64, at])?;
    Ok(())
}

/// Whether blob `hash` has its row.
pub fn exists(conn: &Conn, hash: &str) -> Result<bool> {
    conn.prepare_cached("SELECT EXISTS(SELECT 1 FROM blobs WHERE sha256 = ?1)")?
        .query_row([hash], |r| r.get(0))
}

/// Every blob with a row.
pub fn all(conn: &Conn) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT sha256 FROM blobs")?;
    let hashes = stmt.query_map([], |r| r.get(0))?.collect::<Result<_>>()?;
    Ok(hashes)
}

/// Removes the rows of blobs whose bytes are gone.
pub fn forget(tx: &Tx<'_>, hashes: &[&String]) -> Result<()> {
    let mut delete = tx.prepare_cached("DELETE FROM blobs WHERE sha256 = ?1")?;
    for hash in hashes {
        delete.execute([hash])?;
    }
    Ok(())
}

/// Whether `user_id` uploaded blob `hash`.
pub fn uploaded_by(conn: &Conn, hash: &str, user_id: i64) -> Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS(SELECT 1 FROM blob_uploaders WHERE sha256 = ?1 AND user_id = ?2)",
    )?
    .query_row(params![hash, user_id], |r| r.get(0))
}

/// The records referring to blob `hash` by a reference an uploader of it wrote (the
/// inspector whose phone sent the reference first holds an account that uploaded it).
pub fn records_referring_by_uploader(conn: &Conn, hash: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT rb.record_id FROM record_blobs rb
         JOIN inspectors i ON i.id = rb.inspector_id
         JOIN blob_uploaders u ON u.sha256 = rb.sha256 AND u.user_id = i.user_id
         WHERE rb.sha256 = ?1",
    )?;
    let records = stmt
        .query_map([hash], |r| r.get(0))?
        .collect::<Result<_>>()?;
    Ok(records)
}

/// A record's reference to a blob, as its document lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The blob.
    pub sha256: String,
    /// Whether the phones upload it (an original kept on the phone, beside its upload
    /// copy, is not).
    pub expected: bool,
}

/// Indexes the blobs record `record_id` refers to, each with the inspector whose phone
/// sent the reference first (`writer`; never changed later). Whether the phones upload
/// it is kept up to date.
pub fn index_references(
    tx: &Tx<'_>,
    record_id: &str,
    references: impl IntoIterator<Item = Reference>,
    writer: i64,
) -> Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO record_blobs (record_id, sha256, inspector_id, expected) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (record_id, sha256) DO UPDATE SET expected = excluded.expected",
    )?;
    for r in references {
        insert.execute(params![record_id, r.sha256, writer, r.expected])?;
    }
    Ok(())
}

/// The records with a blob the phones upload and this server lacks.
pub fn records_missing_blobs(conn: &Conn) -> Result<Vec<String>> {
    let records = conn
        .prepare(
            "SELECT DISTINCT rb.record_id FROM record_blobs rb
             WHERE rb.expected = 1
               AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.sha256 = rb.sha256)",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_>>()?;
    Ok(records)
}

/// Marks blob `hash` of record `record_id` as one the phones keep rather than upload;
/// returns whether a reference changed.
pub fn mark_kept_on_phone(tx: &Tx<'_>, record_id: &str, hash: &str) -> Result<bool> {
    Ok(tx
        .prepare_cached(
            "UPDATE record_blobs SET expected = 0
             WHERE record_id = ?1 AND sha256 = ?2 AND expected = 1",
        )?
        .execute(params![record_id, hash])?
        > 0)
}

/// The blobs record `record_id` refers to that the phones upload and this server lacks.
pub fn missing_of_record(conn: &Conn, record_id: &str) -> Result<Vec<String>> {
    let mut missing = conn.prepare_cached(
        "SELECT rb.sha256 FROM record_blobs rb
         WHERE rb.record_id = ?1 AND rb.expected = 1
           AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.sha256 = rb.sha256)",
    )?;
    let hashes = missing
        .query_map([record_id], |r| r.get(0))?
        .collect::<Result<_>>()?;
    Ok(hashes)
}

/// Drops record `record_id`'s references (a purge); returns the blobs it referred to and
/// how many references went.
pub fn drop_references(tx: &Tx<'_>, record_id: &str) -> Result<(Vec<String>, usize)> {
    let hashes: Vec<String> = tx
        .prepare_cached("SELECT sha256 FROM record_blobs WHERE record_id = ?1")?
        .query_map([record_id], |r| r.get(0))?
        .collect::<Result<_>>()?;
    let dropped = tx
        .prepare_cached("DELETE FROM record_blobs WHERE record_id = ?1")?
        .execute([record_id])?;
    Ok((hashes, dropped))
}

/// Forgets blob `hash` (its row and uploaders) unless a record still refers to it; returns
/// whether it did, so that the caller removes its bytes.
pub fn forget_if_unreferenced(tx: &Tx<'_>, hash: &str) -> Result<bool> {
    let still: bool = tx
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM record_blobs WHERE sha256 = ?1)")?
        .query_row([hash], |r| r.get(0))?;
    if still {
        return Ok(false);
    }
    tx.prepare_cached("DELETE FROM blobs WHERE sha256 = ?1")?
        .execute([hash])?;
    tx.prepare_cached("DELETE FROM blob_uploaders WHERE sha256 = ?1")?
        .execute([hash])?;
    Ok(true)
}

/// How many bytes of blob `hash` are staged in `blob_staging` (0 for none).
pub fn staged_bytes(conn: &Conn, hash: &str) -> Result<u64> {
    let staged: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(length(bytes)), 0) FROM blob_staging WHERE sha256 = ?1",
        )?
        .query_row([hash], |r| r.get(0))?;
    Ok(staged as u64)
}

/// Stages `chunk` of blob `hash` at `offset` (where the staged bytes end: the caller checks
/// that, in the same transaction).
pub fn stage_chunk(
    tx: &Tx<'_>,
    hash: &str,
    offset: u64,
    total: u64,
    chunk: &[u8],
    at: &str,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO blob_staging (sha256, chunk_offset, bytes, total, staged_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![hash, offset as i64, chunk, total as i64, at])?;
    Ok(())
}

/// The offsets of the chunks staged for blob `hash`, in order.
pub fn staged_chunks(conn: &Conn, hash: &str) -> Result<Vec<u64>> {
    let offsets: Vec<i64> = conn
        .prepare_cached(
            "SELECT chunk_offset FROM blob_staging WHERE sha256 = ?1 ORDER BY chunk_offset",
        )?
        .query_map([hash], |r| r.get(0))?
        .collect::<Result<_>>()?;
    Ok(offsets.into_iter().map(|o| o as u64).collect())
}

/// The bytes of the chunk staged for blob `hash` at `offset`, if it is still there.
pub fn staged_chunk(conn: &Conn, hash: &str, offset: u64) -> Result<Option<Vec<u8>>> {
    let mut stmt = conn
        .prepare_cached("SELECT bytes FROM blob_staging WHERE sha256 = ?1 AND chunk_offset = ?2")?;
    let mut rows = stmt.query(params![hash, offset as i64])?;
    match rows.next()? {
        Some(row) => Ok(Some(row.get(0)?)),
        None => Ok(None),
    }
}

/// Deletes what is staged for blob `hash` (committed or discarded).
pub fn discard_staged(tx: &Tx<'_>, hash: &str) -> Result<()> {
    tx.prepare_cached("DELETE FROM blob_staging WHERE sha256 = ?1")?
        .execute([hash])?;
    Ok(())
}
