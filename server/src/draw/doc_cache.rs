//! Parsed record documents kept in memory between requests.
//!
//! Parsing a record from its chunks is the dearest step of a sync round, and a phone's round
//! touches every record it holds. Each record row carries `doc_version`, raised by a trigger
//! whenever a chunk is written (migration 0009), so a kept document is used only while its
//! version is the stored one; nothing has to remember to invalidate it.
//!
//! Only pairs of (version, document) that are committed may be kept: a document read in a
//! transaction before that transaction wrote to the record, or one written by a transaction
//! that has since committed. A document written by a transaction that might still roll back
//! must not be kept, since its version number could be reused by a different write.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use crate::store::sql::{Conn, OptionalExtension};
use lru::LruCache;
use suiji_mobile_core::RecordDoc;

use super::records::load_document;
use crate::error::{Error, Result};

/// Documents kept when no other capacity is given: every record of a busy month of checks.
pub const DEFAULT_CAPACITY: usize = 4096;

/// A record document as stored at one version.
#[derive(Debug)]
pub struct VersionedDoc {
    /// The `doc_version` of the record when this was read or written.
    pub version: i64,
    /// Its heads as sorted lowercase hex, as phones list them.
    pub heads: Vec<String>,
    /// The document.
    pub doc: RecordDoc,
}

impl VersionedDoc {
    /// Wraps a document read or written at `version`.
    pub fn new(version: i64, mut doc: RecordDoc) -> VersionedDoc {
        VersionedDoc {
            version,
            heads: doc.heads_hex(),
            doc,
        }
    }
}

/// A bounded cache of parsed record documents, least recently used out first.
pub struct DocCache {
    entries: Mutex<LruCache<String, Arc<VersionedDoc>>>,
}

impl Default for DocCache {
    fn default() -> DocCache {
        DocCache::new(DEFAULT_CAPACITY)
    }
}

impl DocCache {
    /// A cache holding at most `capacity` documents (at least one).
    pub fn new(capacity: usize) -> DocCache {
        DocCache {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Arc<VersionedDoc>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kept document of `record_id` if it is at `version`.
    pub fn get(&self, record_id: &str, version: i64) -> Option<Arc<VersionedDoc>> {
        let mut entries = self.lock();
        match entries.get(record_id) {
            Some(entry) if entry.version == version => Some(entry.clone()),
            _ => None,
        }
    }

    /// Keeps a committed (version, document) pair, unless a newer version is kept already.
    pub fn keep(&self, record_id: &str, entry: Arc<VersionedDoc>) {
        let mut entries = self.lock();
        if entries
            .peek(record_id)
            .is_some_and(|kept| kept.version > entry.version)
        {
            return;
        }
        entries.put(record_id.to_owned(), entry);
    }

    /// Drops the kept document of `record_id`, if any (a purged record: nothing of it stays
    /// in memory).
    pub fn forget(&self, record_id: &str) {
        self.lock().pop(record_id);
    }

    /// How many documents are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no document is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The stored version of a record's document.
pub fn doc_version(conn: &Conn, record_id: &str) -> Result<i64> {
    conn.prepare_cached("SELECT doc_version FROM records WHERE id = ?1")?
        .query_row([record_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("record {record_id}")))
}

/// A record's document at `version`, which must be the version `conn` sees: from the cache
/// if it holds that version, else parsed from the chunks. The second value says whether it
/// was parsed, so the caller can keep it once it knows the read was committed data.
pub fn load_at(
    conn: &Conn,
    cache: &DocCache,
    record_id: &str,
    version: i64,
) -> Result<(Arc<VersionedDoc>, bool)> {
    if let Some(entry) = cache.get(record_id, version) {
        return Ok((entry, false));
    }
    let doc = load_document(conn, record_id)?;
    Ok((Arc::new(VersionedDoc::new(version, doc)), true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use suiji_mobile_core::record::{
        AssignedInspector, AssignedItem, Assignment, PlanRef, TargetSnapshot, TaskRef,
    };
    use suiji_mobile_core::vocab::Method;
    use suiji_mobile_core::{InspectorId, ItemCode, RecordId};

    fn doc(id: &str) -> RecordDoc {
        let assignment = Assignment {
            plan: PlanRef {
                id: "1".into(),
                number: "P".into(),
                name: "计划".into(),
            },
            task: TaskRef {
                id: "1".into(),
                number: "T".into(),
                name: "任务".into(),
                directed: false,
            },
            agency: "市场监督管理局".into(),
            target: TargetSnapshot {
                id: "1".into(),
                uscc: None,
                name: "某公司".into(),
                address: "某路".into(),
                legal_representative: None,
                kind: "enterprise".into(),
                industry: None,
                region: None,
                risk_class: None,
            },
            items: vec![AssignedItem {
                code: ItemCode::new("SCJG-SP-001".to_owned()),
                version: 1,
                name: "食品安全检查".into(),
                legal_basis: "《中华人民共和国食品安全法》".into(),
                content: "证照".into(),
                methods: vec![Method::OnSite],
            }],
            inspectors: ["1", "2"]
                .iter()
                .map(|id| AssignedInspector {
                    inspector_id: InspectorId::new((*id).to_owned()),
                    name: format!("检查员{id}"),
                    cert_no: format!("浙{id}"),
                    lead: *id == "1",
                })
                .collect(),
            window_start: "2026-09-01".parse().unwrap(),
            window_end: "2026-09-30".parse().unwrap(),
            publication_deadline: "2026-10-30".parse().unwrap(),
            publication_deadline_provisional: false,
            recheck_of: None,
        };
        RecordDoc::create(&RecordId::new(id.to_owned()), &assignment).unwrap()
    }

    #[test]
    fn a_kept_document_serves_only_its_own_version() {
        let cache = DocCache::new(8);
        cache.keep("r1", Arc::new(VersionedDoc::new(3, doc("r1"))));
        assert!(cache.get("r1", 3).is_some());
        assert!(cache.get("r1", 4).is_none(), "a newer version was written");
        assert!(cache.get("r2", 3).is_none());
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let cache = DocCache::new(8);
        cache.keep("r1", Arc::new(VersionedDoc::new(5, doc("r1"))));
        cache.keep("r1", Arc::new(VersionedDoc::new(4, doc("r1"))));
        assert!(cache.get("r1", 5).is_some());
        assert!(cache.get("r1", 4).is_none());
        cache.keep("r1", Arc::new(VersionedDoc::new(6, doc("r1"))));
        assert!(cache.get("r1", 6).is_some());
    }

    #[test]
    fn the_least_recently_used_document_goes_first() {
        let cache = DocCache::new(2);
        cache.keep("r1", Arc::new(VersionedDoc::new(1, doc("r1"))));
        cache.keep("r2", Arc::new(VersionedDoc::new(1, doc("r2"))));
        assert!(cache.get("r1", 1).is_some());
        cache.keep("r3", Arc::new(VersionedDoc::new(1, doc("r3"))));
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get("r2", 1).is_none(),
            "r2 was the least recently used"
        );
        assert!(cache.get("r1", 1).is_some() && cache.get("r3", 1).is_some());
    }
}
