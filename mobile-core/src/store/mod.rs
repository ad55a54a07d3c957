//! The phone's local store: one SQLite file plus a content-addressed blob directory, the one
//! entry point for everything a phone keeps.
//!
//! - Record documents are kept as automerge chunks (`record_chunks`): the snapshot the server
//!   handed over, then one incremental chunk per saved edit; after `compact_after_chunks`
//!   chunks they are replaced by one snapshot. Each edit's chunk, the task-list index row and
//!   the outbox entry are written in one SQLite transaction, so a crash leaves either the whole
//!   edit or none of it.
//! - The `records` table indexes what a task list shows, so listing never loads a document.
//! - WAL mode with `synchronous = FULL`: a committed edit survives even a power cut.
//! - One writer connection (behind a mutex, with the documents it has loaded) and one reader
//!   connection beside it for list screens.

mod blobs;
mod keys;
mod outbox;
mod session;
mod sync;

pub use blobs::BlobRole;
pub use keys::{MAX_SIGNATURE_IMAGE, MAX_SIGNATURE_PIXELS, Signer};
pub use outbox::{OutboxEntry, OutboxItem};
pub use session::Session;
pub use sync::{AppliedRound, PreparedRound, SyncRefusal, SyncSession};

use crate::error::{Error, Result};
use crate::ids::{BlobHash, InspectorId, ItemCode, RecordId};
use crate::photo::{PhotoLimits, process_photo};
use crate::record::{PhotoMeta, RecordDoc, SubmitOutcome, inspector_actor};
use crate::vocab::ReviewState;
use automerge::{ActorId, ChangeHash};
use blobs::BlobDir;
use chrono::{NaiveDate, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Schema migrations, applied in order; `PRAGMA user_version` holds how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/001_init.sql"),
    include_str!("../../migrations/002_sync.sql"),
    include_str!("../../migrations/003_signing_keys.sql"),
    include_str!("../../migrations/004_deadline_provisional.sql"),
];

/// Name of the database file inside the store directory.
pub const DB_FILE: &str = "suiji.db";
/// Name of the blob directory inside the store directory.
pub const BLOB_DIR: &str = "blobs";

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The inspector using this phone. A store belongs to one inspector.
    pub inspector_id: InspectorId,
    /// Photo import limits.
    pub photos: PhotoLimits,
    /// Incremental chunks a record may accumulate before it is compacted to one snapshot.
    pub compact_after_chunks: usize,
}

impl StoreOptions {
    /// Defaults for an inspector.
    pub fn new(inspector_id: InspectorId) -> Self {
        StoreOptions {
            inspector_id,
            photos: PhotoLimits::default(),
            compact_after_chunks: 64,
        }
    }
}

/// One row of the task list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSummary {
    /// The record.
    pub record_id: RecordId,
    /// Task name.
    pub task_name: String,
    /// Target's name.
    pub target_name: String,
    /// Target's address.
    pub target_address: String,
    /// Last day of the inspection window.
    pub window_end: NaiveDate,
    /// Publication deadline.
    pub publication_deadline: NaiveDate,
    /// Whether the deadline is provisional (its year's holiday schedule was not loaded on the
    /// server yet): show it as such; it may move.
    pub publication_deadline_provisional: bool,
    /// Where the record stands.
    pub status: ReviewState,
    /// Assigned items.
    pub items_total: u32,
    /// Items with a checked/not-checked answer.
    pub items_answered: u32,
    /// Photos attached.
    pub photo_count: u32,
    /// Fields with unresolved conflicting values.
    pub conflict_count: u32,
    /// Why the server refused this record's changes at the last sync, until a later sync of
    /// it goes through.
    pub refusal: Option<SyncRefusal>,
}

/// A photo as the store lists it (from the index, without loading the document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhotoEntry {
    /// Content hash of the original.
    pub sha256: BlobHash,
    /// Item it belongs to.
    pub item: ItemCode,
    /// Caption.
    pub caption: String,
    /// Thumbnail blob.
    pub thumbnail_sha256: BlobHash,
    /// Upload copy blob, if any.
    pub upload_sha256: Option<BlobHash>,
}

/// What waits to go to the server, as a background scheduler asks before it wakes a sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    /// Records with local changes the server may not have. A record the server refused
    /// stays counted (its changes are kept) until a sync of it goes through.
    pub records: u32,
    /// Blobs (photos, thumbnails, upload copies, signature images) queued for upload.
    pub blobs: u32,
    /// Their bytes.
    pub blob_bytes: u64,
}

impl Pending {
    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.records == 0 && self.blobs == 0
    }
}

/// A loaded document and the heads already persisted.
struct Loaded {
    doc: RecordDoc,
    saved_heads: Vec<ChangeHash>,
    chunks: usize,
}

struct Writer {
    conn: Connection,
    docs: HashMap<RecordId, Loaded>,
}

/// The phone's store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Store {
    dir: PathBuf,
    options: StoreOptions,
    actor: ActorId,
    device: String,
    blobs: BlobDir,
    writer: Mutex<Writer>,
    reader: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("inspector_id", &self.options.inspector_id)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, migrating its database.
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let blobs = BlobDir::open(dir.join(BLOB_DIR))?;
        let path = dir.join(DB_FILE);
        let mut conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;

        let device = identify(&mut conn, &options.inspector_id)?;
        let actor = inspector_actor(&options.inspector_id, &device);

        let reader = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Store {
            dir,
            options,
            actor,
            device: hex::encode(&device),
            blobs,
            writer: Mutex::new(Writer {
                conn,
                docs: HashMap::new(),
            }),
            reader: Mutex::new(reader),
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The inspector this store belongs to.
    pub fn inspector_id(&self) -> &InspectorId {
        &self.options.inspector_id
    }

    /// This device's automerge actor id (encodes the inspector, see `record::inspector_actor`).
    pub fn actor(&self) -> &ActorId {
        &self.actor
    }

    /// This device's id (hex), the part of the actor id after the inspector's.
    pub fn device_id(&self) -> &str {
        &self.device
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    // ----- records -------------------------------------------------------------------------

    /// Takes in a record document as the server hands it over (saved bytes). A record already
    /// held is merged with it instead, keeping local edits. Returns the record's id.
    pub fn put_assigned_record(&self, bytes: &[u8]) -> Result<RecordId> {
        let mut incoming = RecordDoc::load(bytes)?;
        let id = incoming.record_id()?;
        let problems = incoming.check_shape();
        if !problems.is_empty() {
            return Err(Error::Malformed(problems.join("; ")));
        }
        let mut w = self.lock_writer();
        let exists: bool = w.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM records WHERE record_id = ?1)",
            [id.as_str()],
            |r| r.get(0),
        )?;
        if exists {
            let mut loaded = w.take(&id, &self.actor)?;
            loaded.doc.merge(&mut incoming)?;
            w.persist(
                &id,
                loaded,
                false,
                self.options.compact_after_chunks,
                |_| Ok(()),
            )?;
        } else {
            incoming.set_actor(self.actor.clone());
            let tx = w.conn.transaction()?;
            let loaded = insert_record(&tx, &id, incoming)?;
            tx.commit()?;
            w.docs.insert(id.clone(), loaded);
        }
        Ok(id)
    }

    /// Takes in a record document the server built in-process (tests, demos).
    pub fn put_assigned_doc(&self, doc: &mut RecordDoc) -> Result<RecordId> {
        self.put_assigned_record(&doc.save())
    }

    /// The record as saved bytes (a compact snapshot), e.g. to hand to another replica.
    pub fn export_record(&self, id: &RecordId) -> Result<Vec<u8>> {
        let mut w = self.lock_writer();
        let loaded = w.get(id, &self.actor)?;
        Ok(loaded.doc.save())
    }

    /// Removes a record and everything of it (its assignment was withdrawn): document, index
    /// rows, outbox entries, sync state, refusal, and the blobs of its photos that no other
    /// record refers to (rows and files).
    pub fn remove_record(&self, id: &RecordId) -> Result<()> {
        let mut w = self.lock_writer();
        w.docs.remove(id);
        let tx = w.conn.transaction()?;
        let Some(orphans) = delete_record(&tx, id)? else {
            return Err(Error::NotFound(format!("record {id}")));
        };
        tx.commit()?;
        self.blobs.remove_files(&orphans);
        Ok(())
    }

    /// The task list, from the index alone, ordered by window end.
    pub fn list_tasks(&self) -> Result<Vec<TaskSummary>> {
        let conn = self.lock_reader();
        let mut stmt = conn.prepare_cached(
            "SELECT r.record_id, r.task_name, r.target_name, r.target_address, r.window_end,
                    r.publication_deadline, r.status, r.items_total, r.items_answered,
                    r.photo_count, r.conflict_count, f.rule, f.message, r.deadline_provisional
             FROM records r LEFT JOIN sync_refusals f USING (record_id)
             ORDER BY r.window_end, r.record_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, u32>(7)?,
                r.get::<_, u32>(8)?,
                r.get::<_, u32>(9)?,
                r.get::<_, u32>(10)?,
                r.get::<_, Option<String>>(11)?,
                r.get::<_, Option<String>>(12)?,
                r.get::<_, bool>(13)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                id,
                task,
                name,
                address,
                end,
                deadline,
                status,
                total,
                answered,
                photos,
                conflicts,
                rule,
                message,
                provisional,
            ) = row?;
            let date = |s: &str| crate::record::parse_date(s).map_err(Error::Malformed);
            out.push(TaskSummary {
                record_id: RecordId(id),
                task_name: task,
                target_name: name,
                target_address: address,
                window_end: date(&end)?,
                publication_deadline: date(&deadline)?,
                publication_deadline_provisional: provisional,
                status: ReviewState::from_code(&status)
                    .ok_or_else(|| Error::Malformed(format!("unknown status {status:?}")))?,
                items_total: total,
                items_answered: answered,
                photo_count: photos,
                conflict_count: conflicts,
                refusal: rule
                    .zip(message)
                    .map(|(rule, message)| SyncRefusal { rule, message }),
            });
        }
        Ok(out)
    }

    /// Reads a record: `f` gets the loaded document.
    pub fn read<T>(&self, id: &RecordId, f: impl FnOnce(&RecordDoc) -> Result<T>) -> Result<T> {
        let mut w = self.lock_writer();
        let loaded = w.get(id, &self.actor)?;
        f(&loaded.doc)
    }

    /// A copy of a record document.
    pub fn record(&self, id: &RecordId) -> Result<RecordDoc> {
        self.read(id, |doc| Ok(doc.clone()))
    }

    /// Edits a record: `f` changes the document through its typed methods; on `Ok` the new
    /// changes, the task-list row and the outbox entry are saved in one transaction. On any
    /// error nothing is saved and the document is reloaded from disk next time.
    pub fn edit<T>(&self, id: &RecordId, f: impl FnOnce(&mut RecordDoc) -> Result<T>) -> Result<T> {
        self.edit_with(id, f, |_, _| Ok(()))
    }

    /// Like [`Store::edit`], with `after` running inside the same SQL transaction.
    fn edit_with<T>(
        &self,
        id: &RecordId,
        f: impl FnOnce(&mut RecordDoc) -> Result<T>,
        after: impl FnOnce(&Transaction<'_>, &T) -> Result<()>,
    ) -> Result<T> {
        let mut w = self.lock_writer();
        let mut loaded = w.take(id, &self.actor)?;
        let value = f(&mut loaded.doc)?;
        w.persist(id, loaded, true, self.options.compact_after_chunks, |tx| {
            after(tx, &value)
        })?;
        Ok(value)
    }

    /// Submits a record if complete; otherwise nothing changes and the missing parts are
    /// returned.
    pub fn submit(&self, id: &RecordId) -> Result<SubmitOutcome> {
        let me = self.options.inspector_id.clone();
        self.edit(id, |doc| doc.submit(&me))
    }

    /// Rewrites a record's chunks as one snapshot.
    pub fn compact(&self, id: &RecordId) -> Result<()> {
        let mut w = self.lock_writer();
        let loaded = w.take(id, &self.actor)?;
        w.persist(id, loaded, false, 0, |_| Ok(()))
    }

    /// Number of stored chunks of a record (snapshot plus incremental saves).
    pub fn chunk_count(&self, id: &RecordId) -> Result<usize> {
        let conn = self.lock_reader();
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM record_chunks WHERE record_id = ?1",
            [id.as_str()],
            |r| r.get(0),
        )?;
        Ok(n as usize)
    }

    // ----- photos --------------------------------------------------------------------------

    /// Imports a photo for an item of a record: checks and decodes the bytes, stores the
    /// original, its thumbnail and (over the pixel budget) a downscaled upload copy as blobs,
    /// attaches the metadata to the record and queues the upload. Bad bytes or a record that
    /// cannot be edited change nothing.
    pub fn import_photo(
        &self,
        id: &RecordId,
        item: &ItemCode,
        bytes: &[u8],
        caption: &str,
    ) -> Result<PhotoMeta> {
        let processed = process_photo(bytes, &self.options.photos)?;
        let thumbnail_sha256 = BlobHash::of(&processed.thumbnail);
        let upload_sha256 = processed.upload.as_deref().map(BlobHash::of);
        let meta = PhotoMeta {
            sha256: processed.sha256.clone(),
            size: processed.size,
            mime: processed.mime.to_owned(),
            width: processed.width,
            height: processed.height,
            captured_at: processed.captured_at.clone(),
            gps: processed.gps,
            item: item.clone(),
            caption: caption.to_owned(),
            taken_by: self.options.inspector_id.clone(),
            imported_at: Utc::now(),
            thumbnail_sha256: thumbnail_sha256.clone(),
            upload_sha256: upload_sha256.clone(),
        };
        let blobs = &self.blobs;
        self.edit_with(
            id,
            |doc| {
                doc.ensure_editable()?;
                if doc.assignment()?.item(item).is_none() {
                    return Err(Error::NotFound(format!("item {item} is not assigned")));
                }
                blobs.put(&processed.sha256, bytes)?;
                blobs.put(&thumbnail_sha256, &processed.thumbnail)?;
                if let (Some(hash), Some(upload)) = (&upload_sha256, &processed.upload) {
                    blobs.put(hash, upload)?;
                }
                doc.attach_photo(&meta)?;
                Ok(meta.clone())
            },
            |tx, _| {
                blobs::record_blob(tx, &meta.sha256, meta.size, &meta.mime, BlobRole::Original)?;
                blobs::record_blob(
                    tx,
                    &thumbnail_sha256,
                    processed.thumbnail.len() as u64,
                    "image/jpeg",
                    BlobRole::Thumbnail,
                )?;
                outbox::enqueue(tx, OutboxItem::Blob(thumbnail_sha256.clone()))?;
                match (&upload_sha256, &processed.upload) {
                    (Some(hash), Some(upload)) => {
                        blobs::record_blob(
                            tx,
                            hash,
                            upload.len() as u64,
                            "image/jpeg",
                            BlobRole::Upload,
                        )?;
                        outbox::enqueue(tx, OutboxItem::Blob(hash.clone()))?;
                    }
                    _ => outbox::enqueue(tx, OutboxItem::Blob(meta.sha256.clone()))?,
                }
                Ok(())
            },
        )
    }

    /// [`Store::import_photo`] from a file (the camera's or the gallery's copy), read here so
    /// that an app hands over a path, not the bytes. A file over the size limit is refused
    /// before it is read; a missing file is [`Error::NotFound`].
    pub fn import_photo_file(
        &self,
        id: &RecordId,
        item: &ItemCode,
        path: impl AsRef<Path>,
        caption: &str,
    ) -> Result<PhotoMeta> {
        let path = path.as_ref();
        let open = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::NotFound(format!("photo file {}", path.display()))
            }
            _ => Error::Io(e),
        };
        let file = std::fs::File::open(path).map_err(open)?;
        let size = file.metadata()?.len();
        let limit = self.options.photos.max_bytes;
        if size > limit as u64 {
            return Err(Error::PhotoTooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        // Read one byte past the limit so a file that grew since its size was read is caught.
        std::io::Read::read_to_end(&mut std::io::Read::take(file, limit as u64 + 1), &mut bytes)?;
        self.import_photo(id, item, &bytes, caption)
    }

    /// Removes a photo from a record: it leaves the document, and its original, thumbnail and
    /// upload copy leave the outbox and the blob directory unless another record's photo uses
    /// them. The server's copy of the record loses it at the next sync.
    pub fn remove_photo(&self, id: &RecordId, sha256: &BlobHash) -> Result<()> {
        let mut orphans = Vec::new();
        self.edit_with(
            id,
            |doc| {
                let photo = doc
                    .photo(sha256)?
                    .ok_or_else(|| Error::NotFound(format!("photo {sha256}")))?;
                doc.remove_photo(sha256)?;
                Ok(photo)
            },
            |tx, photo| {
                // The index rows of the record's photos were rewritten before this runs.
                let hashes = [Some(&photo.sha256), Some(&photo.thumbnail_sha256)]
                    .into_iter()
                    .chain([photo.upload_sha256.as_ref()])
                    .flatten()
                    .map(|h| h.as_str().to_owned())
                    .collect();
                orphans = drop_unused_blobs(tx, hashes)?;
                Ok(())
            },
        )?;
        self.blobs.remove_files(&orphans);
        Ok(())
    }

    /// Photos of a record, from the index.
    pub fn list_photos(&self, id: &RecordId) -> Result<Vec<PhotoEntry>> {
        let conn = self.lock_reader();
        let mut stmt = conn.prepare_cached(
            "SELECT sha256, item_code, caption, thumbnail_sha256, upload_sha256
             FROM photos WHERE record_id = ?1 ORDER BY imported_at, sha256",
        )?;
        let rows = stmt.query_map([id.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        let hash = |s: String| {
            BlobHash::parse(&s).ok_or_else(|| Error::Malformed(format!("bad hash {s:?}")))
        };
        let mut out = Vec::new();
        for row in rows {
            let (sha, item, caption, thumb, upload) = row?;
            out.push(PhotoEntry {
                sha256: hash(sha)?,
                item: ItemCode(item),
                caption,
                thumbnail_sha256: hash(thumb)?,
                upload_sha256: upload.map(hash).transpose()?,
            });
        }
        Ok(out)
    }

    /// A blob's bytes, verified against its hash.
    pub fn blob(&self, hash: &BlobHash) -> Result<Vec<u8>> {
        self.blobs.get(hash)
    }

    /// Where a blob's file is (for apps that show images from a path).
    pub fn blob_path(&self, hash: &BlobHash) -> Result<PathBuf> {
        let path = self.blobs.path(hash);
        if path.exists() {
            Ok(path)
        } else {
            Err(Error::NotFound(format!("blob {hash}")))
        }
    }

    // ----- outbox --------------------------------------------------------------------------

    /// What still needs uploading, oldest first.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>> {
        outbox::list(&self.lock_reader())
    }

    /// What waits to go to the server, in one query of the outbox (no document is read).
    pub fn pending(&self) -> Result<Pending> {
        let conn = self.lock_reader();
        let (records, blobs, blob_bytes): (i64, i64, i64) = conn
            .prepare_cached(
                "SELECT COALESCE(SUM(o.kind = 'record'), 0), COALESCE(SUM(o.kind = 'blob'), 0),
                        COALESCE(SUM(CASE WHEN o.kind = 'blob' THEN b.size END), 0)
                 FROM outbox o LEFT JOIN blobs b ON o.kind = 'blob' AND b.sha256 = o.key",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(Pending {
            records: records as u32,
            blobs: blobs as u32,
            blob_bytes: blob_bytes as u64,
        })
    }

    /// Marks an entry as uploaded. Returns false (and keeps it queued) if the record changed
    /// again since the entry was read, so the newer state still goes out. Only the sync client
    /// calls this, once the server holds the entry's upload: nothing else may drop one.
    pub(crate) fn ack_outbox(&self, entry: &OutboxEntry) -> Result<bool> {
        let w = self.lock_writer();
        outbox::ack(&w.conn, entry)
    }

    /// [`Store::ack_outbox`] for many entries, in one transaction. Returns how many were
    /// removed.
    pub(crate) fn ack_outbox_all<'a>(
        &self,
        entries: impl IntoIterator<Item = &'a OutboxEntry>,
    ) -> Result<usize> {
        let mut w = self.lock_writer();
        let tx = w.conn.transaction()?;
        let mut removed = 0;
        for entry in entries {
            removed += usize::from(outbox::ack(&tx, entry)?);
        }
        tx.commit()?;
        Ok(removed)
    }

    // ----- internals -----------------------------------------------------------------------

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while holding the lock leaves at worst a stale document cache; SQLite's own
        // transactions keep the file consistent, so carry on with the data.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Writer {
    /// The loaded document, loading it if needed.
    fn get(&mut self, id: &RecordId, actor: &ActorId) -> Result<&mut Loaded> {
        if !self.docs.contains_key(id) {
            let loaded = load(&self.conn, id, actor)?;
            self.docs.insert(id.clone(), loaded);
        }
        Ok(self.docs.get_mut(id).expect("just inserted"))
    }

    /// Removes the document from the cache for editing; `persist` puts it back on success.
    fn take(&mut self, id: &RecordId, actor: &ActorId) -> Result<Loaded> {
        take_doc(&self.conn, &mut self.docs, id, actor)
    }

    /// Saves what changed since the last save, updates the index and (for local edits) the
    /// outbox, all in one transaction, then caches the document again. `compact_after` of 0
    /// forces a snapshot.
    fn persist(
        &mut self,
        id: &RecordId,
        mut loaded: Loaded,
        local: bool,
        compact_after: usize,
        after: impl FnOnce(&Transaction<'_>) -> Result<()>,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        save_changes(&tx, id, &mut loaded, local, compact_after)?;
        after(&tx)?;
        tx.commit()?;
        self.docs.insert(id.clone(), loaded);
        Ok(())
    }
}

/// Removes a document from a writer's cache for changing, loading it if needed. The caller
/// puts it back once its changes are committed, or drops it (so it is reloaded from disk).
fn take_doc(
    conn: &Connection,
    docs: &mut HashMap<RecordId, Loaded>,
    id: &RecordId,
    actor: &ActorId,
) -> Result<Loaded> {
    match docs.remove(id) {
        Some(loaded) => Ok(loaded),
        None => load(conn, id, actor),
    }
}

/// Writes what changed in `loaded` since its last save into `tx`: a chunk (or a snapshot when
/// compacting; `compact_after` of 0 forces one), the index rows and, for local edits, the
/// outbox entry. Updates `loaded`'s bookkeeping as if committed, so a caller whose
/// transaction does not commit must drop `loaded`. Returns whether the document changed.
fn save_changes(
    tx: &Transaction<'_>,
    id: &RecordId,
    loaded: &mut Loaded,
    local: bool,
    compact_after: usize,
) -> Result<bool> {
    let heads = loaded.doc.heads();
    let changed = heads != loaded.saved_heads;
    let compact = compact_after == 0 || (changed && loaded.chunks >= compact_after);
    let mut chunks = loaded.chunks;
    if compact {
        let snapshot = loaded.doc.save();
        tx.prepare_cached("DELETE FROM record_chunks WHERE record_id = ?1")?
            .execute([id.as_str()])?;
        tx.prepare_cached("INSERT INTO record_chunks (record_id, seq, bytes) VALUES (?1, 0, ?2)")?
            .execute(params![id.as_str(), snapshot])?;
        chunks = 1;
    } else if changed {
        let bytes = loaded.doc.save_after(&loaded.saved_heads);
        tx.prepare_cached(
            "INSERT INTO record_chunks (record_id, seq, bytes)
                 VALUES (?1, (SELECT COALESCE(MAX(seq), -1) + 1 FROM record_chunks
                              WHERE record_id = ?1), ?2)",
        )?
        .execute(params![id.as_str(), bytes])?;
        chunks += 1;
    }
    if changed {
        write_index(tx, id, &mut loaded.doc)?;
        if local {
            outbox::enqueue(tx, OutboxItem::Record(id.clone()))?;
        }
    }
    loaded.saved_heads = heads;
    loaded.chunks = chunks;
    Ok(changed)
}

/// Stores a record the phone does not hold yet: one snapshot and its index rows.
fn insert_record(tx: &Transaction<'_>, id: &RecordId, mut doc: RecordDoc) -> Result<Loaded> {
    let snapshot = doc.save();
    let saved_heads = doc.heads();
    write_index(tx, id, &mut doc)?;
    tx.prepare_cached("INSERT INTO record_chunks (record_id, seq, bytes) VALUES (?1, 0, ?2)")?
        .execute(params![id.as_str(), snapshot])?;
    Ok(Loaded {
        doc,
        saved_heads,
        chunks: 1,
    })
}

/// Deletes a record and everything of it inside `tx`: its rows (chunks, index, photos, sync
/// state and refusal by cascade), its outbox entry, and the rows and outbox entries of the
/// blobs of its photos that no other record refers to. Returns those blobs, whose files the
/// caller removes once `tx` has committed, or `None` if the record is not held.
fn delete_record(tx: &Transaction<'_>, id: &RecordId) -> Result<Option<Vec<BlobHash>>> {
    let mut referenced: Vec<String> = {
        let mut stmt = tx.prepare_cached(
            "SELECT sha256 FROM photos WHERE record_id = ?1
             UNION SELECT thumbnail_sha256 FROM photos WHERE record_id = ?1
             UNION SELECT upload_sha256 FROM photos
                   WHERE record_id = ?1 AND upload_sha256 IS NOT NULL",
        )?;
        stmt.query_map([id.as_str()], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    referenced.sort();
    if tx
        .prepare_cached("DELETE FROM records WHERE record_id = ?1")?
        .execute([id.as_str()])?
        == 0
    {
        return Ok(None);
    }
    tx.prepare_cached("DELETE FROM outbox WHERE kind = 'record' AND key = ?1")?
        .execute([id.as_str()])?;
    Ok(Some(drop_unused_blobs(tx, referenced)?))
}

/// Deletes the rows and outbox entries of those of `hashes` that no photo in the index refers
/// to any more. Returns them, for the caller to remove their files once `tx` has committed.
fn drop_unused_blobs(tx: &Transaction<'_>, hashes: Vec<String>) -> Result<Vec<BlobHash>> {
    let mut orphans = Vec::new();
    for hash in hashes {
        let still_used: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM photos
                            WHERE sha256 = ?1 OR thumbnail_sha256 = ?1 OR upload_sha256 = ?1)",
            [&hash],
            |r| r.get(0),
        )?;
        if still_used {
            continue;
        }
        tx.prepare_cached("DELETE FROM blobs WHERE sha256 = ?1")?
            .execute([&hash])?;
        tx.prepare_cached("DELETE FROM outbox WHERE kind = 'blob' AND key = ?1")?
            .execute([&hash])?;
        if let Some(hash) = BlobHash::parse(&hash) {
            orphans.push(hash);
        }
    }
    Ok(orphans)
}

/// Loads a record from its chunks.
fn load(conn: &Connection, id: &RecordId, actor: &ActorId) -> Result<Loaded> {
    let mut stmt =
        conn.prepare_cached("SELECT bytes FROM record_chunks WHERE record_id = ?1 ORDER BY seq")?;
    let mut bytes = Vec::new();
    let mut chunks = 0;
    let mut rows = stmt.query([id.as_str()])?;
    while let Some(row) = rows.next()? {
        let chunk: Vec<u8> = row.get(0)?;
        bytes.extend_from_slice(&chunk);
        chunks += 1;
    }
    if chunks == 0 {
        return Err(Error::NotFound(format!("record {id}")));
    }
    let mut doc = RecordDoc::load(&bytes)?;
    doc.set_actor(actor.clone());
    let saved_heads = doc.heads();
    Ok(Loaded {
        doc,
        saved_heads,
        chunks,
    })
}

/// Heads as the `records.heads` column keeps them: sorted hex, comma-separated.
fn heads_text(heads: &[ChangeHash]) -> String {
    let mut hex: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
    hex.sort();
    hex.join(",")
}

/// Writes the task-list row and photo index of a record from its document.
fn write_index(tx: &Transaction<'_>, id: &RecordId, doc: &mut RecordDoc) -> Result<()> {
    let heads = heads_text(&doc.heads());
    let assignment = doc.assignment()?;
    let items = doc.items()?;
    let answered = items.iter().filter(|(_, a)| a.checked.is_some()).count();
    let photos = doc.photos()?;
    let conflicts = doc.conflicts()?.len();
    tx.prepare_cached(
        "INSERT INTO records (record_id, task_name, target_name, target_address, window_end,
                              publication_deadline, status, items_total, items_answered,
                              photo_count, conflict_count, updated_at, heads,
                              deadline_provisional)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (record_id) DO UPDATE SET
             task_name = excluded.task_name, target_name = excluded.target_name,
             target_address = excluded.target_address, window_end = excluded.window_end,
             publication_deadline = excluded.publication_deadline, status = excluded.status,
             items_total = excluded.items_total, items_answered = excluded.items_answered,
             photo_count = excluded.photo_count, conflict_count = excluded.conflict_count,
             updated_at = excluded.updated_at, heads = excluded.heads,
             deadline_provisional = excluded.deadline_provisional",
    )?
    .execute(params![
        id.as_str(),
        assignment.task.name,
        assignment.target.name,
        assignment.target.address,
        assignment.window_end.to_string(),
        assignment.publication_deadline.to_string(),
        doc.status()?.code(),
        items.len() as i64,
        answered as i64,
        photos.len() as i64,
        conflicts as i64,
        Utc::now().to_rfc3339(),
        heads,
        assignment.publication_deadline_provisional,
    ])?;
    tx.prepare_cached("DELETE FROM photos WHERE record_id = ?1")?
        .execute([id.as_str()])?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO photos (record_id, sha256, item_code, caption, thumbnail_sha256,
                             upload_sha256, imported_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for p in photos {
        insert.execute(params![
            id.as_str(),
            p.sha256.as_str(),
            p.item.as_str(),
            p.caption,
            p.thumbnail_sha256.as_str(),
            p.upload_sha256.as_ref().map(|h| h.as_str().to_owned()),
            p.imported_at.to_rfc3339(),
        ])?;
    }
    Ok(())
}

/// Applies the migrations not yet applied, each in its own transaction.
fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// Checks the store belongs to `inspector` (claiming it if new) and returns the device id.
fn identify(conn: &mut Connection, inspector: &InspectorId) -> Result<Vec<u8>> {
    let tx = conn.transaction()?;
    let get = |key: &str| -> Result<Option<String>> {
        Ok(tx
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    };
    let stored = get("inspector_id")?;
    let device = get("device_id")?;
    let device = match (stored, device) {
        (Some(stored), Some(device)) => {
            if stored != inspector.as_str() {
                return Err(Error::WrongInspector {
                    stored,
                    given: inspector.0.clone(),
                });
            }
            hex::decode(&device).map_err(|_| Error::Malformed("bad device id".into()))?
        }
        _ => {
            let mut device = vec![0u8; 8];
            getrandom::fill(&mut device).map_err(|e| Error::Random(e.to_string()))?;
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('inspector_id', ?1), ('device_id', ?2)",
                params![inspector.as_str(), hex::encode(&device)],
            )?;
            device
        }
    };
    tx.commit()?;
    Ok(device)
}

#[cfg(test)]
mod tests;
