//! `suiji-server dossier verify`: checks a task's dossier offline, needing nothing but the
//! ZIP, and names the first file that fails.
//!
//! In order: the manifest (it parses, is written the one way the server writes it, and its
//! digest holds); the ZIP holds exactly the files the manifest lists; each file's size and
//! SHA-256, and each photo's bytes against the hash it is named by; each draw record as `draw
//! verify` checks it (a redraw also against the task's initial draw); each record document
//! loads as the record its directory names, and every inspector signature in it verifies
//! against the dossier's signing keys over the document as it is (as `record verify` checks a
//! signed copy); each audit entry hashes to its own hash. A record nobody has signed yet
//! passes, and is counted.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek};
use std::path::Path;

use sha2::{Digest, Sha256};
use suiji_mobile_core::RecordDoc;
use suiji_mobile_core::record::SignatureStatus;
use zip::ZipArchive;

use super::{AUDIT_FILE, DOCUMENT_FILE, FORMAT, KEYS_FILE, MANIFEST, Manifest};
use crate::audit::Entry;
use crate::draw::DrawRecord;
use crate::signing::{SigningKeyEntry, registry_of};

/// Largest file of a dossier that is read whole to be parsed (the manifest, a draw record, a
/// record document, the keys, the audit entries); a larger one fails rather than filling
/// memory.
pub const PARSE_LIMIT: u64 = 256 * 1024 * 1024;

/// What failed: the file, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct Failure {
    /// The file in the ZIP at fault (or the ZIP itself).
    pub file: String,
    /// Why.
    pub reason: String,
}

fn fail(file: &str, reason: impl Into<String>) -> Failure {
    Failure {
        file: file.to_owned(),
        reason: reason.into(),
    }
}

/// What a dossier that verifies holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The manifest.
    pub manifest: Manifest,
    /// Draw records checked.
    pub draws: usize,
    /// Record documents checked.
    pub records: usize,
    /// Inspector signatures that verified.
    pub signatures: usize,
    /// Records without any inspector signature.
    pub unsigned_records: usize,
    /// Photos (and signature images) whose bytes match their names.
    pub photos: usize,
}

/// Checks the dossier at `path`.
pub fn verify_file(path: &Path) -> Result<Verified, Failure> {
    let file = std::fs::File::open(path)
        .map_err(|e| fail(&path.display().to_string(), format!("cannot open: {e}")))?;
    verify(std::io::BufReader::new(file))
}

/// Reads a whole file of the ZIP, at most [`PARSE_LIMIT`] bytes.
fn read_whole<R: Read + Seek>(zip: &mut ZipArchive<R>, name: &str) -> Result<Vec<u8>, Failure> {
    let entry = zip
        .by_name(name)
        .map_err(|e| fail(name, format!("cannot read: {e}")))?;
    let mut bytes = Vec::new();
    entry
        .take(PARSE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(name, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > PARSE_LIMIT {
        return Err(fail(name, format!("over {PARSE_LIMIT} bytes")));
    }
    Ok(bytes)
}

/// The SHA-256 (hex) and size of a file of the ZIP, read as a stream, reading at most one
/// byte more than `expected` (a file inflating past its listed size is not read to its end).
fn digest_of<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    name: &str,
    expected: u64,
) -> Result<(String, u64), Failure> {
    let mut entry = zip
        .by_name(name)
        .map_err(|e| fail(name, format!("cannot read: {e}")))?
        .take(expected.saturating_add(1));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| fail(name, format!("cannot read: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Checks the dossier `reader` holds (see the module doc); the first failure, naming its file.
pub fn verify<R: Read + Seek>(reader: R) -> Result<Verified, Failure> {
    let mut zip =
        ZipArchive::new(reader).map_err(|e| fail("the ZIP", format!("not a ZIP: {e}")))?;

    let bytes = read_whole(&mut zip, MANIFEST)?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| fail(MANIFEST, format!("not a dossier manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(fail(MANIFEST, format!("format {:?}", manifest.format)));
    }
    let canonical = manifest
        .to_bytes()
        .map_err(|e| fail(MANIFEST, e.to_string()))?;
    if canonical != bytes {
        return Err(fail(
            MANIFEST,
            "not written as the server writes it (changed by hand?)",
        ));
    }
    let digest = manifest
        .compute_digest()
        .map_err(|e| fail(MANIFEST, e.to_string()))?;
    if digest != manifest.digest {
        return Err(fail(MANIFEST, "its digest does not match its content"));
    }

    // Exactly the listed files, each once.
    let mut listed: BTreeMap<&str, &super::ManifestEntry> = BTreeMap::new();
    for entry in &manifest.files {
        if entry.name == MANIFEST || listed.insert(&entry.name, entry).is_some() {
            return Err(fail(MANIFEST, format!("lists {} twice", entry.name)));
        }
    }
    let mut in_zip: BTreeSet<String> = BTreeSet::new();
    for i in 0..zip.len() {
        let name = zip
            .name_for_index(i)
            .ok_or_else(|| fail("the ZIP", format!("entry {i} has no name")))?
            .map_err(|e| fail("the ZIP", format!("entry {i}: {e}")))?
            .into_owned();
        if name != MANIFEST && !listed.contains_key(name.as_str()) {
            return Err(fail(&name, "in the ZIP but not in the manifest"));
        }
        if !in_zip.insert(name.clone()) {
            return Err(fail(&name, "in the ZIP twice"));
        }
    }
    for entry in &manifest.files {
        if !in_zip.contains(&entry.name) {
            return Err(fail(&entry.name, "in the manifest but not in the ZIP"));
        }
    }

    // Every file's bytes.
    let mut photos = 0;
    for entry in &manifest.files {
        let (sha256, size) = digest_of(&mut zip, &entry.name, entry.size)?;
        if size != entry.size {
            let found = if size > entry.size {
                "more".to_owned()
            } else {
                size.to_string()
            };
            return Err(fail(
                &entry.name,
                format!("{found} bytes, the manifest says {}", entry.size),
            ));
        }
        if sha256 != entry.sha256 {
            return Err(fail(
                &entry.name,
                format!(
                    "SHA-256 {sha256} does not match the manifest's {}",
                    entry.sha256
                ),
            ));
        }
        if let Some(file) = entry.name.strip_prefix("photos/") {
            let named = file.split('.').next().unwrap_or_default();
            if named != sha256 {
                return Err(fail(&entry.name, "its bytes do not hash to its name"));
            }
            photos += 1;
        }
    }

    let draws = check_draws(&mut zip, &manifest)?;
    let (records, signatures, unsigned_records) = check_records(&mut zip, &manifest)?;
    check_audit(&mut zip)?;
    Ok(Verified {
        manifest,
        draws,
        records,
        signatures,
        unsigned_records,
        photos,
    })
}

/// Each draw record as `draw verify` checks it; redraws against the task's initial draw.
fn check_draws<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    manifest: &Manifest,
) -> Result<usize, Failure> {
    let mut records: Vec<(String, DrawRecord)> = Vec::new();
    for entry in &manifest.files {
        if !(entry.name.starts_with("draws/") && entry.name.ends_with(".json")) {
            continue;
        }
        let bytes = read_whole(zip, &entry.name)?;
        let record: DrawRecord = serde_json::from_slice(&bytes)
            .map_err(|e| fail(&entry.name, format!("not a draw record: {e}")))?;
        if record.task.id != manifest.task_id {
            return Err(fail(
                &entry.name,
                format!("a draw of task {}, not of this one", record.task.id),
            ));
        }
        records.push((entry.name.clone(), record));
    }
    let initial = records.iter().find(|(_, r)| r.redraw.is_none());
    for (name, record) in &records {
        let checked = match (&record.redraw, initial) {
            (None, _) => crate::draw::verify(record),
            (Some(_), Some((_, initial))) => crate::draw::verify_redraw_pools(record, initial)
                .and_then(|()| crate::draw::verify(record)),
            (Some(_), None) => {
                Err("a redraw, and the task's initial draw record is not here".into())
            }
        };
        checked.map_err(|difference| fail(name, format!("does not verify: {difference}")))?;
    }
    Ok(records.len())
}

/// Each record document and its inspectors' signatures against the dossier's keys.
fn check_records<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    manifest: &Manifest,
) -> Result<(usize, usize, usize), Failure> {
    let keys: Vec<SigningKeyEntry> = serde_json::from_slice(&read_whole(zip, KEYS_FILE)?)
        .map_err(|e| fail(KEYS_FILE, format!("not a list of signing keys: {e}")))?;
    let (mut records, mut signatures, mut unsigned) = (0, 0, 0);
    for entry in &manifest.files {
        let Some(id) = entry
            .name
            .strip_prefix("records/")
            .and_then(|rest| rest.strip_suffix(&format!("/{DOCUMENT_FILE}")))
        else {
            continue;
        };
        let name = &entry.name;
        let bytes = read_whole(zip, name)?;
        let mut doc =
            RecordDoc::load(&bytes).map_err(|e| fail(name, format!("does not load: {e}")))?;
        match doc.record_id() {
            Ok(found) if found.as_str() == id => {}
            Ok(found) => return Err(fail(name, format!("the document is record {found}"))),
            Err(e) => return Err(fail(name, e.to_string())),
        }
        let mut registered = registry_of(&keys);
        let checks = doc
            .check_signatures(&mut registered)
            .map_err(|e| fail(name, e.to_string()))?;
        if checks.is_empty() {
            unsigned += 1;
        }
        for check in &checks {
            let reason = match &check.status {
                SignatureStatus::Valid => continue,
                SignatureStatus::Stale => {
                    "the record's content changed after it was signed".to_owned()
                }
                SignatureStatus::Invalid(why) => why.clone(),
            };
            return Err(fail(
                name,
                format!(
                    "the signature of inspector {} fails: {reason}",
                    check.signature.inspector_id
                ),
            ));
        }
        signatures += checks.len();
        records += 1;
    }
    Ok((records, signatures, unsigned))
}

/// Each audit entry hashes to the hash it carries (the entries are a part of the chain, so
/// their links to entries outside it cannot be checked here; `audit verify` walks the whole).
fn check_audit<R: Read + Seek>(zip: &mut ZipArchive<R>) -> Result<(), Failure> {
    let entries: Vec<Entry> = serde_json::from_slice(&read_whole(zip, AUDIT_FILE)?)
        .map_err(|e| fail(AUDIT_FILE, format!("not a list of audit entries: {e}")))?;
    for entry in &entries {
        if entry.compute_hash() != entry.hash {
            return Err(fail(
                AUDIT_FILE,
                format!("entry {} does not hash to its hash", entry.seq),
            ));
        }
    }
    Ok(())
}
