//! A task's dossier (归档): one ZIP of everything the server holds about a task, which
//! `GET /api/v1/tasks/{id}/dossier.zip` streams and `suiji-server dossier export` writes, and
//! which `suiji-server dossier verify` checks offline ([`verify`]).
//!
//! The layout (docs/api.md, "Task dossier"): `task.json`, `draws/{id}.json` (byte for byte
//! as `GET /api/v1/public/draws/{id}` serves them), `records/{record_id}/document.automerge`
//! and `record.json` (plus [`extra_record_files`]), `photos/{sha256}.{ext}`,
//! `signing-keys.json`, `audit.json`, `results.json`, and last `manifest.json`, which lists
//! every other file with its SHA-256 and size.
//!
//! Large tasks stream: [`write`] writes the ZIP to any [`std::io::Write`] as it goes (the
//! route hands it a writer that sends chunks over a bounded channel to the response body),
//! one record document at a time, photos copied from their blob files; nothing but the
//! manifest's list of names and hashes grows with the task. It reads under one read
//! transaction, so every file is of one consistent snapshot of the database, and never takes
//! the write lock; the snapshot keeps the WAL from being checkpointed past it while it lasts.
//! Blobs are content-addressed files beside the database, outside the snapshot: a photo whose
//! file is gone or damaged is listed in the manifest's `missing_blobs` instead.
//!
//! The manifest's `digest` (the SHA-256 of the manifest written with an empty `digest`)
//! catches a manifest changed by accident or by hand without it; it authenticates nothing, as
//! anyone can compute it again. What cannot be forged offline are the draw records (their
//! seeds recompute from the published commitment) and the inspectors' signatures (Ed25519
//! over the document's content), which [`verify`] checks too.

pub mod routes;
pub mod verify;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};

use crate::store::sql::Conn;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use suiji_mobile_core::record::PartySignature;
use suiji_mobile_core::{InspectorId, RecordDoc};
use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{CompressionMethod, ZipWriter};

use crate::actor::Actor;
use crate::auth::Role;
use crate::blobs::BlobStore;
use crate::calendar::Calendar;
use crate::documents::{self, Kind};
use crate::error::{Error, Result};
use crate::visibility::{self, Sight, Viewer};
use crate::{audit, draw, plans, review, signing};

/// The `format` of a dossier's manifest.
pub const FORMAT: &str = "suiji-dossier/1";
/// The manifest's name in the ZIP.
pub const MANIFEST: &str = "manifest.json";
/// The task's file.
pub const TASK_FILE: &str = "task.json";
/// The signing keys' file.
pub const KEYS_FILE: &str = "signing-keys.json";
/// The audit entries' file.
pub const AUDIT_FILE: &str = "audit.json";
/// The published results' file.
pub const RESULTS_FILE: &str = "results.json";
/// A record's automerge document, under `records/{record_id}/`.
pub const DOCUMENT_FILE: &str = "document.automerge";
/// A record's JSON view, under `records/{record_id}/`.
pub const VIEW_FILE: &str = "record.json";

/// `manifest.json`: what the dossier is and every other file in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The task's id.
    pub task_id: i64,
    /// The task's number (抽查任务编号).
    pub task_number: String,
    /// When the dossier was built (RFC 3339 UTC).
    pub exported_at: String,
    /// The version of the server that built it.
    pub server_version: String,
    /// Every file of the ZIP but the manifest, in ZIP order.
    pub files: Vec<ManifestEntry>,
    /// Blobs that records reference and the server does not hold (or holds damaged).
    pub missing_blobs: Vec<MissingBlob>,
    /// Records whose documents were purged after their retention period: their lines,
    /// results, draws and audit entries are here, their documents and photos are not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purged_records: Vec<PurgedRecord>,
    /// SHA-256 (hex) of this manifest as written with `digest` empty (see the module doc).
    pub digest: String,
}

/// A record purged after its retention period (`POST /api/v1/tasks/{id}/purge`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgedRecord {
    /// The record id.
    pub record_id: String,
    /// When its document was purged.
    pub purged_at: String,
}

/// One file of the dossier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// Its path in the ZIP.
    pub name: String,
    /// SHA-256 of its bytes (hex).
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A blob a record references that the dossier could not include.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissingBlob {
    /// The blob the record names.
    pub sha256: String,
    /// The record naming it.
    pub record_id: String,
    /// `photo` or `signature_image`.
    pub kind: String,
}

impl Manifest {
    /// The manifest's bytes as written into the ZIP: pretty JSON, one way only, so that
    /// [`verify`] can ask for exactly these bytes back.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec_pretty(self)?)
    }

    /// The digest this manifest should carry.
    pub fn compute_digest(&self) -> Result<String> {
        let unsealed = Manifest {
            digest: String::new(),
            ..self.clone()
        };
        Ok(hex::encode(Sha256::digest(unsealed.to_bytes()?)))
    }
}

/// A file the lead's documents add to a record's directory.
pub struct ExtraFile {
    /// Its name inside `records/{record_id}/` (`notice.pdf`).
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Whether to deflate it (not for what is compressed already: PDFs with compressed
    /// streams, images).
    pub deflate: bool,
}

/// The extra files of record `record_id` (whose document is `doc`) in a dossier: its
/// printable documents, `notice.pdf` and `record.pdf`, and `rectification.pdf` when the
/// inspectors ordered a correction, as `GET /api/v1/records/{id}/….pdf` renders them, their
/// QR codes pointing at `check_base`.
pub fn extra_record_files(
    conn: &Conn,
    blobs: &dyn BlobStore,
    record_id: &str,
    doc: &mut RecordDoc,
    check_base: &str,
) -> Result<Vec<ExtraFile>> {
    let papers = documents::papers_of_document(conn, blobs, record_id, doc)?;
    Kind::ALL
        .into_iter()
        .filter(|kind| *kind != Kind::Rectification || papers.orders_rectification())
        .map(|kind| {
            Ok(ExtraFile {
                name: format!("{}.pdf", kind.stem()),
                bytes: documents::render(&papers, kind, check_base)?,
                deflate: false,
            })
        })
        .collect()
}

/// Refused unless `user` may export the dossier of `task_id`; not found for an unknown task.
///
/// The dossier holds every record of the task whole, so it goes to those who see them all
/// (`visibility::sight`): admins and planners at any time; a supervisor once the task's drawn
/// list is published and every record of it is one they see whole (submitted); nobody else.
/// Roles are checked before the task is looked up, so an inspector learns nothing of ids.
pub fn ensure_may_export(conn: &Conn, user: &Actor, task_id: i64) -> Result<plans::Task> {
    user.require(&[Role::Admin, Role::Planner, Role::Supervisor])?;
    let task = plans::get_task_by_id(conn, task_id)?;
    if user.roles.contains(&Role::Admin) || user.roles.contains(&Role::Planner) {
        return Ok(task);
    }
    // Whether the task's list is public is the visibility rule's
    // (`visibility::LIST_PUBLISHED_SQL`, which a 复查 meets from the start); a
    // task with no records has no public list.
    let facts = visibility::record_facts(conn, Some(task_id), None)?;
    if !facts.values().any(|f| f.list_published) {
        return Err(Error::Forbidden(
            "a supervisor gets a task's dossier once its drawn list is published".into(),
        ));
    }
    let viewer = Viewer::of(conn, user)?;
    let unseen = facts
        .values()
        .filter(|facts| visibility::sight(&viewer, facts) != Sight::Full)
        .count();
    if unseen > 0 {
        return Err(Error::Forbidden(format!(
            "the dossier holds every record whole, and {unseen} of this task's records are not submitted yet"
        )));
    }
    Ok(task)
}

/// How a file is stored in the ZIP.
#[derive(Clone, Copy)]
enum Packing {
    Deflate,
    Store,
}

/// The ZIP being written, and the manifest entries of what is in it so far.
struct Archive<W: Write> {
    zip: ZipWriter<StreamWriter<W>>,
    files: Vec<ManifestEntry>,
    /// Every file's time in the ZIP: when the build began, China time (ZIP times have no
    /// zone).
    time: zip::DateTime,
}

/// Counts and hashes what passes through to the ZIP.
struct Hashing<'a, W: Write> {
    inner: &'a mut W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn zip_error(e: zip::result::ZipError) -> Error {
    match e {
        zip::result::ZipError::Io(e) => Error::Io(e),
        other => Error::Internal(format!("writing the dossier: {other}")),
    }
}

impl<W: Write> Archive<W> {
    fn new(out: W) -> Self {
        use chrono::{Datelike, Timelike};
        let now = chrono::Utc::now()
            .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8 is valid"));
        let time = zip::DateTime::from_date_and_time(
            now.year() as u16,
            now.month() as u8,
            now.day() as u8,
            now.hour() as u8,
            now.minute() as u8,
            now.second() as u8,
        )
        .unwrap_or_default();
        Archive {
            zip: ZipWriter::new_stream(out),
            files: Vec::new(),
            time,
        }
    }

    fn options(&self, packing: Packing) -> SimpleFileOptions {
        SimpleFileOptions::default()
            .compression_method(match packing {
                Packing::Deflate => CompressionMethod::Deflated,
                Packing::Store => CompressionMethod::Stored,
            })
            .last_modified_time(self.time)
            .unix_permissions(0o644)
    }

    /// Adds `name` with the bytes `content` reads, and returns their SHA-256.
    fn add(&mut self, name: &str, packing: Packing, mut content: impl Read) -> Result<String> {
        let options = self.options(packing);
        self.zip.start_file(name, options).map_err(zip_error)?;
        let mut hashing = Hashing {
            inner: &mut self.zip,
            hasher: Sha256::new(),
            size: 0,
        };
        std::io::copy(&mut content, &mut hashing)?;
        let (sha256, size) = (hex::encode(hashing.hasher.finalize()), hashing.size);
        self.files.push(ManifestEntry {
            name: name.to_owned(),
            sha256: sha256.clone(),
            size,
        });
        Ok(sha256)
    }

    fn add_json(&mut self, name: &str, value: &impl Serialize) -> Result<()> {
        self.add(
            name,
            Packing::Deflate,
            &serde_json::to_vec_pretty(value)?[..],
        )
        .map(drop)
    }

    /// Writes the manifest last and ends the ZIP, handing back the writer.
    fn finish(mut self, mut manifest: Manifest) -> Result<W> {
        manifest.files = std::mem::take(&mut self.files);
        manifest.digest = manifest.compute_digest()?;
        let options = self.options(Packing::Deflate);
        self.zip.start_file(MANIFEST, options).map_err(zip_error)?;
        self.zip.write_all(&manifest.to_bytes()?)?;
        Ok(self.zip.finish().map_err(zip_error)?.into_inner())
    }
}

/// The file extension of a blob, from its first bytes.
fn extension(first: &[u8]) -> &'static str {
    match crate::blobs::content_type(first) {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        _ => "bin",
    }
}

/// Writes the dossier of `task_id` to `out` as a ZIP and hands `out` back. Reads `conn` under
/// one read transaction and photos from `blobs`; `calendar` and `today` count the deadlines of
/// the record views; the printable documents' QR codes point at `check_base`. Callers check
/// who may have it ([`ensure_may_export`]). A write to `out` that fails (a client gone) stops
/// the build at once with that error.
pub fn write<W: Write>(
    conn: &Conn,
    blobs: &dyn BlobStore,
    calendar: &Calendar,
    today: NaiveDate,
    task_id: i64,
    check_base: &str,
    out: W,
) -> Result<W> {
    // One snapshot for every file: a deferred transaction's first read fixes it.
    let snapshot = conn.snapshot()?;
    let conn: &Conn = &snapshot;
    let task = plans::get_task_by_id(conn, task_id)?;
    let mut archive = Archive::new(out);
    archive.add_json(TASK_FILE, &task)?;
    for summary in draw::draws_of_task(conn, task_id)? {
        let text = draw::routes::stored_record(conn, summary.id, false)?;
        archive.add(
            &format!("draws/{}.json", summary.id),
            Packing::Deflate,
            text.as_bytes(),
        )?;
    }

    // Blobs by hash, each with the first record naming it and what it is.
    let mut wanted: BTreeMap<String, (String, &'static str)> = BTreeMap::new();
    let mut fallbacks: BTreeMap<String, String> = BTreeMap::new();
    let mut signers: BTreeSet<InspectorId> = BTreeSet::new();
    let mut purged_records = Vec::new();
    for summary in draw::records::list(conn, Some(task_id), None)? {
        let id = summary.id.as_str();
        if let Some(purged_at) = &summary.purged_at {
            purged_records.push(PurgedRecord {
                record_id: summary.id.clone(),
                purged_at: purged_at.clone(),
            });
            continue;
        }
        let mut doc = draw::records::load_document(conn, id)?;
        let err = |e: suiji_mobile_core::Error| Error::Internal(format!("record {id}: {e}"));
        archive.add(
            &format!("records/{id}/{DOCUMENT_FILE}"),
            Packing::Deflate,
            &doc.save()[..],
        )?;
        let view = review::records::document_view(conn, id, &mut doc, calendar, today)?;
        archive.add_json(&format!("records/{id}/{VIEW_FILE}"), &view)?;
        for extra in extra_record_files(conn, blobs, id, &mut doc, check_base)? {
            let packing = if extra.deflate {
                Packing::Deflate
            } else {
                Packing::Store
            };
            archive.add(
                &format!("records/{id}/{}", extra.name),
                packing,
                &extra.bytes[..],
            )?;
        }
        signers.extend(
            doc.assignment()
                .map_err(err)?
                .inspectors
                .into_iter()
                .map(|i| i.inspector_id),
        );
        for signature in doc.signatures().map_err(err)? {
            if let Some(image) = &signature.image_sha256 {
                wanted
                    .entry(image.to_string())
                    .or_insert((id.to_owned(), "signature_image"));
            }
            signers.insert(signature.inspector_id);
        }
        if let Some(PartySignature::Signed {
            image_sha256: Some(image),
            ..
        }) = doc.party_signature().map_err(err)?
        {
            wanted
                .entry(image.to_string())
                .or_insert((id.to_owned(), "signature_image"));
        }
        for photo in doc.photos().map_err(err)? {
            let original = photo.sha256.to_string();
            if let Some(copy) = &photo.upload_sha256 {
                fallbacks.insert(original.clone(), copy.to_string());
            }
            wanted.entry(original).or_insert((id.to_owned(), "photo"));
        }
    }

    // The original where the server holds it, otherwise the upload copy.
    let mut missing_blobs = Vec::new();
    let mut written: BTreeSet<String> = BTreeSet::new();
    for (hash, (record_id, kind)) in &wanted {
        let candidates = std::iter::once(hash).chain(fallbacks.get(hash));
        let mut found = false;
        for candidate in candidates {
            if written.contains(candidate) {
                found = true;
                break;
            }
            if add_blob(&mut archive, blobs, candidate)? {
                written.insert(candidate.clone());
                found = true;
                break;
            }
        }
        if !found {
            missing_blobs.push(MissingBlob {
                sha256: hash.clone(),
                record_id: record_id.clone(),
                kind: (*kind).to_owned(),
            });
        }
    }

    let signers: Vec<InspectorId> = signers.into_iter().collect();
    archive.add_json(KEYS_FILE, &signing::keys_of(conn, &signers)?)?;
    archive.add_json(AUDIT_FILE, &audit::entries_of_task(conn, task_id)?)?;
    archive.add_json(
        RESULTS_FILE,
        &review::publication::task_results(conn, task_id)?,
    )?;
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        task_id,
        task_number: task.number.clone(),
        exported_at: crate::db::now(),
        server_version: env!("CARGO_PKG_VERSION").to_owned(),
        files: Vec::new(),
        missing_blobs,
        purged_records,
        digest: String::new(),
    };
    let out = archive.finish(manifest)?;
    drop(snapshot);
    Ok(out)
}

/// Adds blob `hash` as `photos/{hash}.{ext}` if the store holds it sound; false if it does not
/// (absent, or damaged and moved aside by the check).
fn add_blob<W: Write>(archive: &mut Archive<W>, blobs: &dyn BlobStore, hash: &str) -> Result<bool> {
    // Checked before it is written: a file that no longer matches its name is not evidence.
    if blobs.verify(hash)?.is_none() {
        return Ok(false);
    }
    let file = match blobs.open(hash) {
        Ok(file) => file,
        Err(Error::NotFound(_)) => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let ext = extension(reader.fill_buf()?);
    let sha256 = archive.add(&format!("photos/{hash}.{ext}"), Packing::Store, reader)?;
    if sha256 != hash {
        return Err(Error::Internal(format!(
            "blob {hash} changed while the dossier was written"
        )));
    }
    Ok(true)
}
