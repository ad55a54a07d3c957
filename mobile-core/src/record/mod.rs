//! The inspection record document: one automerge document per (task, target) pair, with a
//! typed API so that nobody outside this module writes automerge paths.
//!
//! # Layout (schema version 1)
//!
//! ```text
//! ROOT
//! ├─ schema_version : uint                       server, at creation
//! ├─ record_id      : str                        server, at creation
//! ├─ assignment     : str (JSON `Assignment`)    server only; replaced whole on a redraw
//! ├─ items          : map item code →            map created by the server per assigned item
//! │    ├─ checked     : bool
//! │    ├─ methods     : map method code → bool   (true = used; concurrent picks merge)
//! │    ├─ finding     : str                       scalar, not text: concurrent different
//! │    └─ disposition : str                       answers become a conflict, not a char merge
//! ├─ notes          : map note id → str (JSON `EvidenceNote`)
//! ├─ photos         : map sha256 → str (JSON `PhotoMeta`)
//! ├─ results        : map result category code → bool
//! ├─ follow_up      : map { measure: str, deadline: str (YYYY-MM-DD), detail: str }
//! ├─ party          : map { statement: str, signature: str (JSON `PartySignature`) }
//! ├─ signatures     : map inspector id → str (JSON `InspectorSignature`)
//! ├─ submissions    : map round number → str (JSON `Submission`)      phones
//! └─ review         : map { state: str, round: uint,                   server only
//!                           history: map zero-padded seq → str (JSON `ReviewEvent`) }
//! ```
//!
//! Every map object is created by the server in the record's first change, so that two phones
//! never create the same object concurrently (automerge would keep two objects under one key and
//! one phone's edits would vanish behind the other's). Phones only put scalars.
//!
//! The first change is deterministic: fixed server actor, time 0, values in a fixed order. The
//! same record id and assignment always give the same change hash, so the server can recreate
//! a record it lost and phones agree on it.
//!
//! Values that are written once and replaced whole (assignment, notes, photo metadata,
//! signatures, review events) are JSON strings: one operation each instead of one per field,
//! which keeps the draw's mass creation of records fast and their validation simple.

mod actor;
mod assignment;
mod authorship;
mod conflicts;
mod finish;
mod review;
mod signing;
mod values;

pub use actor::{
    ActorIdentity, SERVER_ACTOR, actor_identity, actor_inspector, actor_label, inspector_actor,
    server_actor,
};
pub use assignment::{
    AssignedInspector, AssignedItem, Assignment, PlanRef, RecheckOf, TargetSnapshot, TaskRef,
};
pub use authorship::{WriteCheck, WrittenSignatures};
pub use conflicts::{Conflict, ConflictValue};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use finish::{Missing, SubmitOutcome};
pub use signing::{
    SIGNATURE_CONTEXT, SignatureCheck, SignatureStatus, parse_public_key, public_key_hex,
};
pub use values::{
    EvidenceNote, FollowUp, Gps, InspectorSignature, ItemAnswer, NoteKind, PartySignature,
    PhotoMeta, Review, ReviewEvent, Submission,
};

use crate::RECORD_SCHEMA_VERSION;
use crate::error::{Error, Result};
use crate::ids::{BlobHash, InspectorId, ItemCode, NoteId, RecordId};
use crate::vocab::{FollowUpMeasure, Method, ResultCategory, ReviewState};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, AutoCommit, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};

pub(crate) mod keys {
    //! Property names of the layout above, in one place.
    pub const SCHEMA_VERSION: &str = "schema_version";
    pub const RECORD_ID: &str = "record_id";
    pub const ASSIGNMENT: &str = "assignment";
    pub const ITEMS: &str = "items";
    pub const NOTES: &str = "notes";
    pub const PHOTOS: &str = "photos";
    pub const RESULTS: &str = "results";
    pub const FOLLOW_UP: &str = "follow_up";
    pub const PARTY: &str = "party";
    pub const SIGNATURES: &str = "signatures";
    pub const SUBMISSIONS: &str = "submissions";
    pub const REVIEW: &str = "review";

    pub const CHECKED: &str = "checked";
    pub const METHODS: &str = "methods";
    pub const FINDING: &str = "finding";
    pub const DISPOSITION: &str = "disposition";

    pub const MEASURE: &str = "measure";
    pub const DEADLINE: &str = "deadline";
    pub const DETAIL: &str = "detail";

    pub const STATEMENT: &str = "statement";
    pub const SIGNATURE: &str = "signature";

    pub const STATE: &str = "state";
    pub const ROUND: &str = "round";
    pub const HISTORY: &str = "history";

    /// Root maps, in creation order.
    pub const ROOT_MAPS: &[&str] = &[
        ITEMS,
        NOTES,
        PHOTOS,
        RESULTS,
        FOLLOW_UP,
        PARTY,
        SIGNATURES,
        SUBMISSIONS,
        REVIEW,
    ];
}

/// One inspection record document.
///
/// Phones edit through the inspector methods (each one automerge change, committed at once);
/// the server creates records, replaces assignments and writes the review. Which actor writes is
/// the caller's choice via [`RecordDoc::set_actor`]: phones use [`inspector_actor`], the server
/// [`server_actor`]. One writer per actor at a time: the server must serialise its writes to
/// one record.
#[derive(Debug, Clone)]
pub struct RecordDoc {
    doc: AutoCommit,
}

impl RecordDoc {
    /// Creates a record as the server does at the draw. Deterministic: identical inputs give
    /// identical bytes and heads.
    ///
    /// A record is two changes by the server actor at time 0: the skeleton (schema version and
    /// every map, which depends only on the item codes) and the record's own values (id and
    /// assignment). The skeleton of the last item list used is cached per thread and cloned,
    /// because creating its ~30 objects op by op is what makes mass creation at a draw slow.
    pub fn create(record_id: &RecordId, assignment: &Assignment) -> Result<RecordDoc> {
        assignment.validate().map_err(Error::InvalidInput)?;
        if record_id.as_str().is_empty() {
            return Err(Error::InvalidInput("empty record id".into()));
        }
        let json = serde_json::to_string(assignment)?;
        let codes: Vec<ItemCode> = assignment.items.iter().map(|i| i.code.clone()).collect();
        let mut doc = SKELETON.with(|cache| -> Result<AutoCommit> {
            let mut cache = cache.borrow_mut();
            match &*cache {
                Some((cached, skeleton)) if *cached == codes => Ok(skeleton.clone()),
                _ => {
                    let skeleton = skeleton(&codes)?;
                    *cache = Some((codes, skeleton.clone()));
                    Ok(skeleton)
                }
            }
        })?;
        doc.put(ROOT, keys::RECORD_ID, record_id.as_str())?;
        doc.put(ROOT, keys::ASSIGNMENT, json)?;
        doc.commit_with(CommitOptions::default().with_message("assign").with_time(0));
        Ok(RecordDoc { doc })
    }

    /// Loads a record from saved bytes (a snapshot, optionally followed by incremental chunks).
    pub fn load(bytes: &[u8]) -> Result<RecordDoc> {
        let doc = AutoCommit::load(bytes)?;
        RecordDoc::from_automerge(doc)
    }

    /// Wraps an automerge document after checking it looks like a record of a known schema.
    pub fn from_automerge(doc: AutoCommit) -> Result<RecordDoc> {
        let record = RecordDoc { doc };
        let version = record.schema_version()?;
        if version > RECORD_SCHEMA_VERSION {
            return Err(Error::UnsupportedSchema {
                found: version,
                supported: RECORD_SCHEMA_VERSION,
            });
        }
        record.record_id()?;
        for name in keys::ROOT_MAPS {
            record.root_map(name)?;
        }
        Ok(record)
    }

    /// Sets the actor that the following changes are written as.
    pub fn set_actor(&mut self, actor: ActorId) {
        self.doc.set_actor(actor);
    }

    /// The actor changes are currently written as.
    pub fn actor(&self) -> &ActorId {
        self.doc.get_actor()
    }

    /// The underlying automerge document, for the sync layer (sync messages, change
    /// inspection). Never write record paths through it: use the typed methods.
    pub fn automerge_mut(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    /// The underlying automerge document, read-only.
    pub fn automerge(&self) -> &AutoCommit {
        &self.doc
    }

    /// The whole document, compacted.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// The changes made since the last `save` or `save_incremental` (empty if none).
    pub fn save_incremental(&mut self) -> Vec<u8> {
        self.doc.save_incremental()
    }

    /// The changes since `heads`, as bytes `load_incremental` accepts.
    pub fn save_after(&mut self, heads: &[ChangeHash]) -> Vec<u8> {
        self.doc.save_after(heads)
    }

    /// Applies saved bytes or changes from another replica of the same record.
    pub fn load_incremental(&mut self, bytes: &[u8]) -> Result<()> {
        self.doc.load_incremental(bytes)?;
        Ok(())
    }

    /// Merges another replica's changes into this one.
    pub fn merge(&mut self, other: &mut RecordDoc) -> Result<()> {
        self.doc.merge(&mut other.doc)?;
        Ok(())
    }

    /// A copy with its own actor, as a second device would hold it.
    pub fn fork_as(&mut self, actor: ActorId) -> RecordDoc {
        let mut doc = self.doc.fork();
        doc.set_actor(actor);
        RecordDoc { doc }
    }

    /// The current heads.
    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// The current heads as hex strings, sorted.
    pub fn heads_hex(&mut self) -> Vec<String> {
        let mut heads: Vec<String> = self.heads().iter().map(|h| h.to_string()).collect();
        heads.sort();
        heads
    }

    // ----- reading -------------------------------------------------------------------------

    /// The schema version the document was created with.
    pub fn schema_version(&self) -> Result<u64> {
        match self.doc.get(ROOT, keys::SCHEMA_VERSION)? {
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Uint(v) => Ok(*v),
                ScalarValue::Int(v) if *v >= 0 => Ok(*v as u64),
                _ => Err(Error::Malformed("schema_version is not a number".into())),
            },
            _ => Err(Error::Malformed("no schema_version".into())),
        }
    }

    /// The record's id.
    pub fn record_id(&self) -> Result<RecordId> {
        self.str_at(&ROOT, keys::RECORD_ID)?
            .map(RecordId)
            .ok_or_else(|| Error::Malformed("no record_id".into()))
    }

    /// The server's assignment.
    pub fn assignment(&self) -> Result<Assignment> {
        let json = self
            .str_at(&ROOT, keys::ASSIGNMENT)?
            .ok_or_else(|| Error::Malformed("no assignment".into()))?;
        Ok(serde_json::from_str(&json)?)
    }

    /// The answer recorded for one item (empty if nothing yet).
    pub fn item(&self, code: &ItemCode) -> Result<ItemAnswer> {
        let obj = self.item_obj(code)?;
        let methods_obj = self.map_at(&obj, keys::METHODS)?;
        let mut methods = BTreeSet::new();
        for key in self.doc.keys(&methods_obj) {
            if self.bool_at(&methods_obj, &key)? == Some(true) {
                let m = Method::from_code(&key)
                    .ok_or_else(|| Error::Malformed(format!("unknown method {key:?}")))?;
                methods.insert(m);
            }
        }
        Ok(ItemAnswer {
            checked: self.bool_at(&obj, keys::CHECKED)?,
            methods,
            finding: self.str_at(&obj, keys::FINDING)?,
            disposition: self.str_at(&obj, keys::DISPOSITION)?,
        })
    }

    /// Every assigned item with its answer, in assignment order.
    pub fn items(&self) -> Result<Vec<(AssignedItem, ItemAnswer)>> {
        let assignment = self.assignment()?;
        assignment
            .items
            .into_iter()
            .map(|item| {
                let answer = self.item(&item.code)?;
                Ok((item, answer))
            })
            .collect()
    }

    /// Result categories selected.
    pub fn result_categories(&self) -> Result<BTreeSet<ResultCategory>> {
        let obj = self.root_map(keys::RESULTS)?;
        let mut out = BTreeSet::new();
        for key in self.doc.keys(&obj) {
            if self.bool_at(&obj, &key)? == Some(true) {
                out.insert(
                    ResultCategory::from_code(&key)
                        .ok_or_else(|| Error::Malformed(format!("unknown result {key:?}")))?,
                );
            }
        }
        Ok(out)
    }

    /// The follow-up measure.
    pub fn follow_up(&self) -> Result<FollowUp> {
        let obj = self.root_map(keys::FOLLOW_UP)?;
        let measure = match self.str_at(&obj, keys::MEASURE)? {
            Some(code) => Some(
                FollowUpMeasure::from_code(&code)
                    .ok_or_else(|| Error::Malformed(format!("unknown measure {code:?}")))?,
            ),
            None => None,
        };
        let deadline = match self.str_at(&obj, keys::DEADLINE)? {
            Some(text) => Some(parse_date(&text).map_err(Error::Malformed)?),
            None => None,
        };
        Ok(FollowUp {
            measure,
            deadline,
            detail: self.str_at(&obj, keys::DETAIL)?,
        })
    }

    /// The party's statement (陈述申辩 / 当事人意见).
    pub fn party_statement(&self) -> Result<Option<String>> {
        self.str_at(&self.root_map(keys::PARTY)?, keys::STATEMENT)
    }

    /// The party's signature or refusal.
    pub fn party_signature(&self) -> Result<Option<PartySignature>> {
        self.json_at(&self.root_map(keys::PARTY)?, keys::SIGNATURE)
    }

    /// Evidence notes, ordered by creation time.
    pub fn notes(&self) -> Result<Vec<EvidenceNote>> {
        let mut notes: Vec<EvidenceNote> = self.json_values(keys::NOTES)?;
        notes.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(notes)
    }

    /// Photo metadata, ordered by import time.
    pub fn photos(&self) -> Result<Vec<PhotoMeta>> {
        let mut photos: Vec<PhotoMeta> = self.json_values(keys::PHOTOS)?;
        photos.sort_by(|a, b| (a.imported_at, &a.sha256).cmp(&(b.imported_at, &b.sha256)));
        Ok(photos)
    }

    /// One photo's metadata.
    pub fn photo(&self, sha256: &BlobHash) -> Result<Option<PhotoMeta>> {
        self.json_at(&self.root_map(keys::PHOTOS)?, sha256.as_str())
    }

    /// Inspector signatures.
    pub fn signatures(&self) -> Result<Vec<InspectorSignature>> {
        self.json_values(keys::SIGNATURES)
    }

    /// Submissions, by round.
    pub fn submissions(&self) -> Result<Vec<Submission>> {
        let mut subs: Vec<Submission> = self.json_values(keys::SUBMISSIONS)?;
        subs.sort_by_key(|s| s.round);
        Ok(subs)
    }

    /// The highest round submitted from a phone (0 if never).
    pub fn submitted_round(&self) -> Result<u64> {
        let obj = self.root_map(keys::SUBMISSIONS)?;
        Ok(self
            .doc
            .keys(&obj)
            .filter_map(|k| k.parse::<u64>().ok())
            .max()
            .unwrap_or(0))
    }

    /// Where the record stands as this replica sees it: the server's review state, except that
    /// a submission the server has not acknowledged yet already counts as submitted.
    pub fn status(&self) -> Result<ReviewState> {
        let review = self.review()?;
        match review.state {
            ReviewState::Approved | ReviewState::Published => Ok(review.state),
            _ if self.submitted_round()? > review.round => Ok(ReviewState::Submitted),
            state => Ok(state),
        }
    }

    /// Whether inspectors may change the record now (open, or returned to them).
    pub fn is_editable(&self) -> Result<bool> {
        Ok(matches!(
            self.status()?,
            ReviewState::Open | ReviewState::Returned
        ))
    }

    // ----- inspector edits -----------------------------------------------------------------

    /// Records whether an item was checked.
    pub fn set_checked(&mut self, code: &ItemCode, checked: bool) -> Result<()> {
        self.ensure_editable()?;
        let obj = self.item_obj(code)?;
        self.put_answer(&obj, keys::CHECKED, checked)?;
        self.commit("set checked");
        Ok(())
    }

    /// Marks one method as used (true) or not (false) for an item.
    pub fn set_method(&mut self, code: &ItemCode, method: Method, used: bool) -> Result<()> {
        self.ensure_editable()?;
        let obj = self.map_at(&self.item_obj(code)?, keys::METHODS)?;
        self.put_answer(&obj, method.code(), used)?;
        self.commit("set method");
        Ok(())
    }

    /// Sets the methods used for an item to exactly `methods`.
    pub fn set_methods(&mut self, code: &ItemCode, methods: &[Method]) -> Result<()> {
        self.ensure_editable()?;
        let obj = self.map_at(&self.item_obj(code)?, keys::METHODS)?;
        let existing: Vec<String> = self.doc.keys(&obj).collect();
        for key in existing {
            if !methods.iter().any(|m| m.code() == key) {
                self.put_answer(&obj, key.as_str(), false)?;
            }
        }
        for m in methods {
            self.put_answer(&obj, m.code(), true)?;
        }
        self.commit("set methods");
        Ok(())
    }

    /// Sets what was found for an item.
    pub fn set_finding(&mut self, code: &ItemCode, finding: &str) -> Result<()> {
        self.put_item_text(code, keys::FINDING, finding, "set finding")
    }

    /// Sets what was done on the spot for an item.
    pub fn set_disposition(&mut self, code: &ItemCode, disposition: &str) -> Result<()> {
        self.put_item_text(code, keys::DISPOSITION, disposition, "set disposition")
    }

    /// Selects or deselects one result category.
    pub fn set_result_category(&mut self, category: ResultCategory, selected: bool) -> Result<()> {
        self.ensure_editable()?;
        let obj = self.root_map(keys::RESULTS)?;
        self.put_answer(&obj, category.code(), selected)?;
        self.commit("set result category");
        Ok(())
    }

    /// Sets the selected result categories to exactly `categories`.
    pub fn set_result_categories(&mut self, categories: &[ResultCategory]) -> Result<()> {
        self.ensure_editable()?;
        let obj = self.root_map(keys::RESULTS)?;
        let existing: Vec<String> = self.doc.keys(&obj).collect();
        for key in existing {
            if !categories.iter().any(|c| c.code() == key) {
                self.put_answer(&obj, key.as_str(), false)?;
            }
        }
        for c in categories {
            self.put_answer(&obj, c.code(), true)?;
        }
        self.commit("set result categories");
        Ok(())
    }

    /// Sets the follow-up measure, its deadline and detail. `None` clears a field.
    pub fn set_follow_up(
        &mut self,
        measure: Option<FollowUpMeasure>,
        deadline: Option<NaiveDate>,
        detail: Option<&str>,
    ) -> Result<()> {
        self.ensure_editable()?;
        let obj = self.root_map(keys::FOLLOW_UP)?;
        match measure {
            Some(m) => self.put_answer(&obj, keys::MEASURE, m.code())?,
            None => self.delete_answer(&obj, keys::MEASURE)?,
        }
        match deadline {
            Some(d) => self.put_answer(&obj, keys::DEADLINE, d.to_string())?,
            None => self.delete_answer(&obj, keys::DEADLINE)?,
        }
        match detail {
            Some(d) => self.put_answer(&obj, keys::DETAIL, d)?,
            None => self.delete_answer(&obj, keys::DETAIL)?,
        }
        self.commit("set follow-up");
        Ok(())
    }

    /// Records the party's statement.
    pub fn set_party_statement(&mut self, statement: &str) -> Result<()> {
        self.ensure_editable()?;
        let obj = self.root_map(keys::PARTY)?;
        self.put_answer(&obj, keys::STATEMENT, statement)?;
        self.commit("set party statement");
        Ok(())
    }

    /// Adds an evidence note for an item. Photos named must already be attached to the record.
    pub fn add_note(
        &mut self,
        author: &InspectorId,
        item: &ItemCode,
        text: &str,
        photos: &[BlobHash],
        kind: NoteKind,
    ) -> Result<EvidenceNote> {
        self.ensure_editable()?;
        self.item_obj(item)?;
        if text.trim().is_empty() {
            return Err(Error::InvalidInput("a note needs text".into()));
        }
        if let NoteKind::DocumentCopy {
            witness: Some(witness),
        } = &kind
            && witness.trim().is_empty()
        {
            return Err(Error::InvalidInput("a witness needs a name".into()));
        }
        for photo in photos {
            if self.photo(photo)?.is_none() {
                return Err(Error::NotFound(format!("photo {photo}")));
            }
        }
        let created_at = now();
        let id = self.fresh_id("n", text.as_bytes());
        let note = EvidenceNote {
            id: NoteId(id),
            item: item.clone(),
            text: text.to_owned(),
            photos: photos.to_vec(),
            kind,
            author: author.clone(),
            created_at,
        };
        let obj = self.root_map(keys::NOTES)?;
        self.put_json(&obj, note.id.as_str(), &note)?;
        self.commit("add note");
        Ok(note)
    }

    /// Removes an evidence note.
    pub fn remove_note(&mut self, id: &NoteId) -> Result<()> {
        self.ensure_editable()?;
        let obj = self.root_map(keys::NOTES)?;
        if self.doc.get(&obj, id.as_str())?.is_none() {
            return Err(Error::NotFound(format!("note {id}")));
        }
        self.doc.delete(&obj, id.as_str())?;
        self.commit("remove note");
        Ok(())
    }

    /// Attaches a photo (its metadata; the bytes live in the blob store). The item must be
    /// assigned. Re-attaching the same photo replaces its metadata.
    pub fn attach_photo(&mut self, photo: &PhotoMeta) -> Result<()> {
        self.ensure_editable()?;
        self.item_obj(&photo.item)?;
        let obj = self.root_map(keys::PHOTOS)?;
        self.put_json(&obj, photo.sha256.as_str(), photo)?;
        self.commit("attach photo");
        Ok(())
    }

    /// Changes a photo's caption.
    pub fn set_photo_caption(&mut self, sha256: &BlobHash, caption: &str) -> Result<()> {
        let mut photo = self
            .photo(sha256)?
            .ok_or_else(|| Error::NotFound(format!("photo {sha256}")))?;
        photo.caption = caption.to_owned();
        self.attach_photo(&photo)
    }

    /// Detaches a photo from the record.
    pub fn remove_photo(&mut self, sha256: &BlobHash) -> Result<()> {
        self.ensure_editable()?;
        let obj = self.root_map(keys::PHOTOS)?;
        if self.doc.get(&obj, sha256.as_str())?.is_none() {
            return Err(Error::NotFound(format!("photo {sha256}")));
        }
        self.doc.delete(&obj, sha256.as_str())?;
        self.commit("remove photo");
        Ok(())
    }

    // ----- helpers -------------------------------------------------------------------------

    /// `Ok` if inspectors may edit the record now, else [`Error::NotEditable`].
    pub fn ensure_editable(&self) -> Result<()> {
        let status = self.status()?;
        if matches!(status, ReviewState::Open | ReviewState::Returned) {
            Ok(())
        } else {
            Err(Error::NotEditable {
                record: self.record_id()?.0,
                status: status.code().into(),
            })
        }
    }

    fn put_item_text(&mut self, code: &ItemCode, key: &str, text: &str, msg: &str) -> Result<()> {
        self.ensure_editable()?;
        let obj = self.item_obj(code)?;
        self.put_answer(&obj, key, text)?;
        self.commit(msg);
        Ok(())
    }

    pub(crate) fn commit(&mut self, message: &str) {
        self.doc.commit_with(
            CommitOptions::default()
                .with_message(message)
                .with_time(now().timestamp()),
        );
    }

    /// An id unique to this actor and moment: hash of actor, heads, clock and some content.
    fn fresh_id(&mut self, prefix: &str, salt: &[u8]) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.doc.get_actor().to_bytes());
        for head in self.doc.get_heads() {
            h.update(head.0);
        }
        h.update(
            now()
                .timestamp_nanos_opt()
                .unwrap_or_default()
                .to_le_bytes(),
        );
        h.update(salt);
        format!("{prefix}{}", &hex::encode(h.finalize())[..16])
    }

    pub(crate) fn root_map(&self, name: &str) -> Result<ObjId> {
        self.map_at(&ROOT, name)
    }

    pub(crate) fn map_at(&self, parent: &ObjId, key: &str) -> Result<ObjId> {
        match self.doc.get(parent, key)? {
            Some((Value::Object(ObjType::Map), id)) => Ok(id),
            _ => Err(Error::Malformed(format!("{key} is not a map"))),
        }
    }

    fn item_obj(&self, code: &ItemCode) -> Result<ObjId> {
        let items = self.root_map(keys::ITEMS)?;
        match self.doc.get(&items, code.as_str())? {
            Some((Value::Object(ObjType::Map), id)) => Ok(id),
            Some(_) => Err(Error::Malformed(format!("item {code} is not a map"))),
            None => Err(Error::NotFound(format!("item {code} is not assigned"))),
        }
    }

    pub(crate) fn str_at(&self, obj: &ObjId, key: &str) -> Result<Option<String>> {
        match self.doc.get(obj, key)? {
            None => Ok(None),
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Str(text) => Ok(Some(text.to_string())),
                _ => Err(Error::Malformed(format!("{key} is not a string"))),
            },
            Some(_) => Err(Error::Malformed(format!("{key} is not a string"))),
        }
    }

    pub(crate) fn bool_at(&self, obj: &ObjId, key: &str) -> Result<Option<bool>> {
        match self.doc.get(obj, key)? {
            None => Ok(None),
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Boolean(b) => Ok(Some(*b)),
                _ => Err(Error::Malformed(format!("{key} is not a boolean"))),
            },
            Some(_) => Err(Error::Malformed(format!("{key} is not a boolean"))),
        }
    }

    pub(crate) fn uint_at(&self, obj: &ObjId, key: &str) -> Result<Option<u64>> {
        match self.doc.get(obj, key)? {
            None => Ok(None),
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Uint(v) => Ok(Some(*v)),
                ScalarValue::Int(v) if *v >= 0 => Ok(Some(*v as u64)),
                _ => Err(Error::Malformed(format!("{key} is not a number"))),
            },
            Some(_) => Err(Error::Malformed(format!("{key} is not a number"))),
        }
    }

    pub(crate) fn json_at<T: DeserializeOwned>(&self, obj: &ObjId, key: &str) -> Result<Option<T>> {
        match self.str_at(obj, key)? {
            None => Ok(None),
            Some(json) => Ok(Some(serde_json::from_str(&json)?)),
        }
    }

    fn json_values<T: DeserializeOwned>(&self, map: &str) -> Result<Vec<T>> {
        let obj = self.root_map(map)?;
        let mut out = Vec::new();
        for key in self.doc.keys(&obj) {
            if let Some(v) = self.json_at(&obj, &key)? {
                out.push(v);
            }
        }
        Ok(out)
    }

    pub(crate) fn put_json<T: Serialize>(
        &mut self,
        obj: &ObjId,
        key: &str,
        value: &T,
    ) -> Result<()> {
        self.put_answer(obj, key, serde_json::to_string(value)?)
    }

    /// Puts a scalar so that it settles any conflict at `key`. Automerge treats a put of the
    /// value already visible as a no-op, which would leave the competing values standing when
    /// an inspector picks the current winner; deleting first makes the choice an operation that
    /// supersedes every competing value.
    pub(crate) fn put_answer(
        &mut self,
        obj: &ObjId,
        key: &str,
        value: impl Into<ScalarValue>,
    ) -> Result<()> {
        if self.doc.get_all(obj, key)?.len() > 1 {
            self.doc.delete(obj, key)?;
        }
        self.doc.put(obj, key, value)?;
        Ok(())
    }

    /// Deletes `key` (and with it any competing values).
    pub(crate) fn delete_answer(&mut self, obj: &ObjId, key: &str) -> Result<()> {
        if self.doc.get(obj, key)?.is_some() {
            self.doc.delete(obj, key)?;
        }
        Ok(())
    }
}

thread_local! {
    static SKELETON: std::cell::RefCell<Option<(Vec<ItemCode>, AutoCommit)>> =
        const { std::cell::RefCell::new(None) };
}

/// The first change of every record with these item codes: the schema version and all maps.
fn skeleton(codes: &[ItemCode]) -> Result<AutoCommit> {
    let mut doc = AutoCommit::new().with_actor(server_actor());
    doc.put(ROOT, keys::SCHEMA_VERSION, RECORD_SCHEMA_VERSION)?;
    let mut maps = BTreeMap::new();
    for name in keys::ROOT_MAPS {
        maps.insert(*name, doc.put_object(ROOT, *name, ObjType::Map)?);
    }
    for code in codes {
        let obj = doc.put_object(&maps[keys::ITEMS], code.as_str(), ObjType::Map)?;
        doc.put_object(&obj, keys::METHODS, ObjType::Map)?;
    }
    let review = &maps[keys::REVIEW];
    doc.put(review, keys::STATE, ReviewState::Open.code())?;
    doc.put(review, keys::ROUND, 0u64)?;
    doc.put_object(review, keys::HISTORY, ObjType::Map)?;
    doc.commit_with(
        CommitOptions::default()
            .with_message("record skeleton")
            .with_time(0),
    );
    Ok(doc)
}

/// The current time, the one clock of this crate.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now()
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> std::result::Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("not a YYYY-MM-DD date: {text:?}"))
}

#[cfg(test)]
pub(crate) mod tests;
