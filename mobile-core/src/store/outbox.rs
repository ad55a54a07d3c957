//! The outbox: a durable queue of what the sync layer still has to send.

use crate::error::{Error, Result};
use crate::ids::{BlobHash, RecordId};
use rusqlite::{Connection, params};

/// What is queued.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OutboxItem {
    /// A record document with local changes the server may not have.
    Record(RecordId),
    /// A blob (photo thumbnail, upload copy or original) to upload.
    Blob(BlobHash),
}

/// One queued entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Row id.
    pub id: i64,
    /// What to send.
    pub item: OutboxItem,
    /// Bumped each time the same record is queued again; acknowledging an older generation
    /// leaves the entry queued.
    pub generation: i64,
    /// When first queued (RFC 3339).
    pub queued_at: String,
}

/// Queues an item, or bumps its generation if already queued.
pub(super) fn enqueue(conn: &Connection, item: OutboxItem) -> Result<()> {
    let (kind, key) = match &item {
        OutboxItem::Record(id) => ("record", id.as_str().to_owned()),
        OutboxItem::Blob(hash) => ("blob", hash.as_str().to_owned()),
    };
    conn.execute(
        "INSERT INTO outbox (kind, key, generation, queued_at) VALUES (?1, ?2, 1, ?3)
         ON CONFLICT (kind, key) DO UPDATE SET generation = generation + 1",
        params![kind, key, chrono::Utc::now().to_rfc3339()],
    )?;
    Ok(())
}

/// Queues a blob unless it is queued already (its generation then stays as it is, so an
/// upload under way still clears it). Says whether it queued it.
pub(super) fn enqueue_if_absent(conn: &Connection, hash: &BlobHash) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "INSERT INTO outbox (kind, key, generation, queued_at) VALUES ('blob', ?1, 1, ?2)
             ON CONFLICT (kind, key) DO NOTHING",
        )?
        .execute(params![hash.as_str(), chrono::Utc::now().to_rfc3339()])?;
    Ok(n == 1)
}

/// Everything queued, oldest first.
pub(super) fn list(conn: &Connection) -> Result<Vec<OutboxEntry>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, kind, key, generation, queued_at FROM outbox ORDER BY id")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, kind, key, generation, queued_at) = row?;
        let item = match kind.as_str() {
            "record" => OutboxItem::Record(RecordId(key)),
            "blob" => OutboxItem::Blob(
                BlobHash::parse(&key)
                    .ok_or_else(|| Error::Malformed(format!("bad blob hash {key:?}")))?,
            ),
            other => return Err(Error::Malformed(format!("unknown outbox kind {other:?}"))),
        };
        out.push(OutboxEntry {
            id,
            item,
            generation,
            queued_at,
        });
    }
    Ok(out)
}

/// Removes an entry if it has not been re-queued since it was read.
pub(super) fn ack(conn: &Connection, entry: &OutboxEntry) -> Result<bool> {
    let n = conn
        .prepare_cached("DELETE FROM outbox WHERE id = ?1 AND generation = ?2")?
        .execute(params![entry.id, entry.generation])?;
    Ok(n == 1)
}
