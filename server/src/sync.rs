//! The sync endpoint: phones exchange `automerge::sync` messages for many
//! record documents per HTTP request (wire format in
//! `suiji_mobile_core::sync::wire`).
//!
//! Every incoming change is applied to a copy of the server's document and
//! checked before anything is kept: each change the server does not hold yet
//! must be by the actor of the session's inspector on the session's device
//! (never the server's, a partner's or another device's: rule `writer`),
//! only the record's group may write it, only at answer paths (never
//! `assignment` or `review`), every signature written must verify against a
//! key registered for its inspector (rule `signature`), values must have the
//! right shape, and an approved record takes no more changes. One bad
//! message refuses the whole request (4xx naming the rule and the record) and
//! nothing of it is stored. Sync state is kept per (record, device): in
//! memory during a sync, and its persistent part in `sync_states`, so a
//! repeat sync sends only what is new.
//!
//! A round is worked out in two steps so that phones syncing at once use
//! every core: [`plan_round`] does the work (parse, apply, check, answer) on
//! a read connection, from one snapshot, beside other rounds; the round is
//! then stored under the write lock, where each record whose document changed
//! since the snapshot (its `doc_version` rose: a partner's sync, a review) is
//! worked out once more before anything is written. Parsed documents are kept
//! in memory between rounds ([`DocCache`]), so a record the phone already
//! holds in step costs a comparison of heads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::store::sql::{Conn, OptionalExtension, Tx, params};
use automerge::ActorId;
use automerge::ChangeHash;
use automerge::sync::{BloomFilter, Have, Message, State, SyncDoc};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use suiji_mobile_core::InspectorId;
use suiji_mobile_core::RecordDoc;
use suiji_mobile_core::record::{PartySignature, inspector_actor, server_actor};
use suiji_mobile_core::sync::complete_message;
use suiji_mobile_core::sync::wire::{
    self, CONTENT_TYPE, DocMessage, NewRecord, PROTOCOL_VERSION, SyncRequest, SyncResponse, rules,
};
use suiji_mobile_core::vocab::ReviewState;

use crate::AppState;
use crate::auth::{AuthUser, Role};
use crate::draw::doc_cache::{DocCache, VersionedDoc, doc_version, load_at};
use crate::draw::records::insert_chunk;
use crate::error::{Error, Result};
use crate::extract::body_bytes;
use crate::review::index::IndexRow;

/// Largest sync request accepted.
pub const SYNC_BODY_LIMIT: usize = 32 * 1024 * 1024;
/// Incremental chunks a record may gather before it is compacted to one snapshot.
const COMPACT_AFTER_CHUNKS: i64 = 32;
/// Sync states kept in memory before the cache is emptied.
const STATE_CACHE_LIMIT: usize = 200_000;

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route(
        wire::SYNC_PATH,
        post(sync).layer(DefaultBodyLimit::max(SYNC_BODY_LIMIT)),
    )
}

/// What the sync endpoint keeps in memory between requests: the full sync
/// states of recent exchanges and parsed record documents.
pub struct SyncMemory {
    states: SyncStates,
    /// Parsed record documents, each with the version it was stored at.
    pub docs: DocCache,
    /// Rounds planned at once: one per core. More only hold more documents in
    /// memory while they wait for a core.
    planning: tokio::sync::Semaphore,
}

impl Default for SyncMemory {
    fn default() -> SyncMemory {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        SyncMemory {
            states: SyncStates::default(),
            docs: DocCache::default(),
            planning: tokio::sync::Semaphore::new(cores),
        }
    }
}

/// Full sync states of recent exchanges, by (record, device). Only their
/// persistent part survives a restart, which costs at most an extra round.
#[derive(Default)]
struct SyncStates {
    states: Mutex<HashMap<(String, String), State>>,
}

impl SyncMemory {
    /// Drops everything kept in memory of `record_id`: its parsed document and the sync
    /// states of every device. Called once a purge of the record has committed.
    pub fn forget(&self, record_id: &str) {
        self.docs.forget(record_id);
        self.states
            .states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(record, _), _| record != record_id);
    }
}

impl SyncStates {
    fn get(&self, conn: &Conn, record: &str, device: &str) -> Result<State> {
        let key = (record.to_owned(), device.to_owned());
        if let Some(state) = self
            .states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(state.clone());
        }
        let stored: Option<Vec<u8>> = conn
            .prepare_cached("SELECT state FROM sync_states WHERE record_id = ?1 AND device = ?2")?
            .query_row(params![record, device], |r| r.get(0))
            .optional()?;
        Ok(stored
            .and_then(|bytes| State::decode(&bytes).ok())
            .unwrap_or_default())
    }

    fn put(&self, record: &str, device: &str, state: State) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        if states.len() >= STATE_CACHE_LIMIT {
            states.clear();
        }
        states.insert((record.to_owned(), device.to_owned()), state);
    }
}

fn refused(
    status: StatusCode,
    code: &'static str,
    rule: &'static str,
    record_id: &str,
    message: String,
) -> Error {
    Error::Refused {
        status,
        code,
        rule,
        record_id: record_id.to_owned(),
        message,
    }
}

/// Who a round comes from: the session's inspector and the device the session is bound to.
/// Every change a round brings must carry [`Syncer::actor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syncer {
    /// The inspector.
    pub inspector_id: i64,
    /// The session's device id (hex).
    pub device_id: String,
}

impl Syncer {
    /// The one actor this syncer's changes may carry.
    pub fn actor(&self) -> ActorId {
        let device = hex::decode(&self.device_id).unwrap_or_default();
        inspector_actor(&InspectorId::new(self.inspector_id.to_string()), &device)
    }
}

fn check_device(device: &str) -> Result<()> {
    if !device.is_empty() && device.len() <= 64 && device.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(Error::invalid(
            "device",
            "a device id is 1 to 64 hex digits",
        ))
    }
}

/// The inspector an account is linked to.
pub fn inspector_of(conn: &Conn, user_id: i64) -> Result<i64> {
    conn.prepare_cached("SELECT id FROM inspectors WHERE user_id = ?1")?
        .query_row([user_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Error::Forbidden("your account is not linked to an inspector".into()))
}

/// Records assigned to an inspector now, with the version of each document,
/// and every record they were ever assigned. A purged record is assigned to nobody: a
/// phone holding it is told it is withdrawn, and drops it.
fn assignments(conn: &Conn, inspector_id: i64) -> Result<(BTreeMap<String, i64>, HashSet<String>)> {
    let mut now = conn.prepare_cached(
        "SELECT r.id, r.doc_version FROM records r JOIN record_inspectors ri ON ri.record_id = r.id
         WHERE ri.inspector_id = ?1 AND r.withdrawn_at IS NULL AND r.purged_at IS NULL",
    )?;
    let assigned = now
        .query_map([inspector_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut ever = conn.prepare_cached(
        "SELECT record_id FROM record_assignment_history WHERE inspector_id = ?1",
    )?;
    let history = ever
        .query_map([inspector_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok((assigned, history))
}

fn record_exists(conn: &Conn, id: &str) -> Result<bool> {
    conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM records WHERE id = ?1)",
        [id],
        |r| r.get(0),
    )
}

/// One blob a record refers to, and whether its phones upload it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RecordBlob {
    sha256: String,
    /// False for a photo's original that has an upload copy: it stays on the phone.
    expected: bool,
}

/// The blobs a record refers to: its photos' (thumbnail; the upload copy when the original is
/// over the phone's pixel budget, which then stays on the phone; the original otherwise) and
/// its handwritten signature images (the inspectors' and the party's).
fn photo_blobs(record_id: &str, doc: &RecordDoc) -> Result<Vec<RecordBlob>> {
    let err = |e: suiji_mobile_core::Error| Error::Internal(format!("reading {record_id}: {e}"));
    let photos = doc.photos().map_err(err)?;
    let mut blobs = Vec::with_capacity(photos.len() * 3);
    let mut expect = |sha256: &str, expected: bool| {
        blobs.push(RecordBlob {
            sha256: sha256.to_owned(),
            expected,
        })
    };
    for photo in photos {
        expect(photo.sha256.as_str(), photo.upload_sha256.is_none());
        expect(photo.thumbnail_sha256.as_str(), true);
        if let Some(upload) = &photo.upload_sha256 {
            expect(upload.as_str(), true);
        }
    }
    for signature in doc.signatures().map_err(err)? {
        if let Some(image) = signature.image_sha256 {
            expect(image.as_str(), true);
        }
    }
    if let Some(PartySignature::Signed {
        image_sha256: Some(image),
        ..
    }) = doc.party_signature().map_err(err)?
    {
        expect(image.as_str(), true);
    }
    Ok(blobs)
}

/// Indexes the blobs a record's photos refer to, each with the inspector whose phone sent
/// the reference first (`writer`): the readers of the record may download a blob when that
/// inspector uploaded it (`crate::blobs::may_read`). Whether the phones upload it is kept up
/// to date; who sent the reference first never changes.
fn index_blobs(tx: &Tx<'_>, record_id: &str, blobs: &[RecordBlob], writer: i64) -> Result<()> {
    crate::store::blobs::index_references(
        tx,
        record_id,
        blobs.iter().map(|b| crate::store::blobs::Reference {
            sha256: b.sha256.clone(),
            expected: b.expected,
        }),
        writer,
    )
}

/// Marks the originals that stay on the phones (those with an upload copy) among the blobs
/// this server lacks, as indexes from before `record_blobs.expected` listed them as missing;
/// returns how many rows it changed. Reads only the records whose blobs are missing, so a
/// server in order pays one query at start.
pub fn mark_originals_kept_on_phones(db: &crate::db::Db) -> Result<usize> {
    db.write_blocking(|tx| {
        let mut changed = 0;
        for id in crate::store::blobs::records_missing_blobs(tx)? {
            let doc = crate::draw::records::load_document(tx, &id)?;
            for blob in photo_blobs(&id, &doc)? {
                if !blob.expected && crate::store::blobs::mark_kept_on_phone(tx, &id, &blob.sha256)?
                {
                    changed += 1;
                }
            }
        }
        Ok(changed)
    })
}

/// The blobs that records the phone listed without a message refer to and this server does
/// not hold, sorted. Records with a message are left out: their blobs are usually in the
/// phone's queue to upload right after the round, and the phone lists them again next time.
fn missing_blobs(
    tx: &Tx<'_>,
    asked: &Asked<'_>,
    assigned: &BTreeMap<String, i64>,
) -> Result<Vec<String>> {
    let mut found = std::collections::BTreeSet::new();
    for id in asked.held.keys() {
        if asked.messages.contains_key(id) || !assigned.contains_key(*id) {
            continue;
        }
        found.extend(crate::store::blobs::missing_of_record(tx, id)?);
    }
    Ok(found.into_iter().collect())
}

/// Replaces a record's chunks by one snapshot once they pile up.
fn maybe_compact(tx: &Tx<'_>, record_id: &str, doc: &mut RecordDoc) -> Result<()> {
    let chunks: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM record_chunks WHERE record_id = ?1")?
        .query_row([record_id], |r| r.get(0))?;
    if chunks > COMPACT_AFTER_CHUNKS {
        let snapshot = doc.save();
        tx.prepare_cached("DELETE FROM record_chunks WHERE record_id = ?1")?
            .execute([record_id])?;
        tx.prepare_cached("INSERT INTO record_chunks (record_id, seq, bytes) VALUES (?1, 0, ?2)")?
            .execute(params![record_id, snapshot])?;
    }
    Ok(())
}

/// Applies one phone message to `doc` if every new change passes the checks.
/// Returns the chunks to store — the phone's changes, then the server's
/// acceptance of a new submission — or nothing when the message brought
/// nothing new (`doc` is then as it was).
fn apply_message(
    conn: &Conn,
    writer: &ActorId,
    record_id: &str,
    doc: &mut RecordDoc,
    state: &mut State,
    bytes: &[u8],
) -> Result<Vec<Vec<u8>>> {
    let malformed = |e: String| {
        refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused",
            rules::MALFORMED_MESSAGE,
            record_id,
            format!("record {record_id}: the sync message cannot be used: {e}"),
        )
    };
    let message = Message::decode(bytes).map_err(|e| malformed(e.to_string()))?;
    let before = doc.heads();
    let closed = matches!(
        doc.review().map(|r| r.state),
        Ok(ReviewState::Approved | ReviewState::Published)
    );
    let mut copy = doc.clone();
    copy.automerge_mut()
        .sync()
        .receive_sync_message(state, message)
        .map_err(|e| malformed(e.to_string()))?;
    if !copy.automerge_mut().get_missing_deps(&[]).is_empty() {
        // Changes whose dependencies have not arrived (the sender's Bloom
        // filter hid them) are not kept half; forget what the peer was sent
        // so the next exchange starts over and brings the whole history.
        *state = State::new();
        return Ok(Vec::new());
    }
    if copy.heads() == before {
        return Ok(Vec::new());
    }
    if closed {
        return Err(refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused",
            rules::RECORD_CLOSED,
            record_id,
            format!("record {record_id} is approved and takes no more changes"),
        ));
    }
    let writes = copy
        .check_writes(&before, writer)
        .map_err(|e| malformed(e.to_string()))?;
    let violations = writes.violations;
    if !violations.is_empty() {
        return Err(refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused",
            rules::WRITER,
            record_id,
            format!("record {record_id}: {}", violations.join("; ")),
        ));
    }
    let shape = copy.check_shape();
    if shape.is_empty() {
        let bad = crate::signing::check_new_signatures(conn, &mut copy, &writes.signatures)?;
        if !bad.is_empty() {
            return Err(refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "refused",
                rules::SIGNATURE,
                record_id,
                format!("record {record_id}: {}", bad.join("; ")),
            ));
        }
    } else {
        return Err(refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused",
            rules::SHAPE,
            record_id,
            format!("record {record_id}: {}", shape.join("; ")),
        ));
    }
    // Keep exactly the new changes, as one chunk.
    let mut chunks = vec![copy.save_after(&before)];
    // A new submission moves the review state to submitted.
    let review_round = copy.review().map(|r| r.round).unwrap_or(0);
    if copy.submitted_round().unwrap_or(0) > review_round {
        let submitted = copy.heads();
        copy.set_actor(server_actor());
        copy.accept_submission("server").map_err(|e| {
            Error::Internal(format!("accepting the submission of {record_id}: {e}"))
        })?;
        chunks.push(copy.save_after(&submitted));
    }
    *doc = copy;
    Ok(chunks)
}

/// Takes a phone that listed `heads` for a record and sent no message for it at its word,
/// when every one of those heads is known here: it then holds exactly their history, so the
/// answer carries exactly the changes made since, rather than what the sync state remembers
/// of an earlier exchange (which may miss what the phone took in without announcing it; see
/// `in_step` in the phone's store). Returns whether it did: false when a head is unknown
/// here (or not a change hash), and `state` is then untouched.
fn holds_listed(doc: &mut RecordDoc, state: &mut State, heads: &[String]) -> bool {
    let Ok(mut heads) = heads
        .iter()
        .map(|h| h.parse::<ChangeHash>())
        .collect::<std::result::Result<Vec<_>, _>>()
    else {
        return false;
    };
    if !heads
        .iter()
        .all(|h| doc.automerge_mut().get_change_meta_by_hash(h).is_some())
    {
        return false;
    }
    heads.sort();
    state.their_need = Some(Vec::new());
    state.their_have = Some(vec![Have {
        last_sync: heads.clone(),
        bloom: BloomFilter::default(),
    }]);
    state.their_heads = Some(heads.clone());
    state.shared_heads = heads;
    state.sent_hashes.clear();
    state.in_flight = false;
    true
}

/// What a phone asked in a round, by record.
struct Asked<'a> {
    device: &'a str,
    /// The one actor new changes may carry.
    writer: ActorId,
    messages: HashMap<&'a str, &'a [u8]>,
    held: HashMap<&'a str, &'a [String]>,
}

impl<'a> Asked<'a> {
    fn of(request: &'a SyncRequest, syncer: &Syncer) -> Result<Asked<'a>> {
        if request.protocol != PROTOCOL_VERSION {
            return Err(Error::invalid(
                "protocol",
                format!(
                    "this server speaks sync protocol {PROTOCOL_VERSION}, not {}",
                    request.protocol
                ),
            ));
        }
        check_device(&request.device)?;
        if request.device != syncer.device_id {
            return Err(Error::invalid(
                "device",
                format!(
                    "this session was opened for device {}, not {}",
                    syncer.device_id, request.device
                ),
            ));
        }
        let mut messages = HashMap::new();
        for m in &request.messages {
            if messages
                .insert(m.record_id.as_str(), m.message.as_slice())
                .is_some()
            {
                return Err(Error::invalid(
                    "messages",
                    format!("two messages for record {}", m.record_id),
                ));
            }
        }
        let held = request
            .held
            .iter()
            .map(|h| (h.record_id.as_str(), h.heads.as_slice()))
            .collect();
        Ok(Asked {
            device: &request.device,
            writer: syncer.actor(),
            messages,
            held,
        })
    }
}

/// The document after a step that stores changes, with what is indexed from it.
struct Changed {
    doc: RecordDoc,
    index: IndexRow,
    blobs: Vec<RecordBlob>,
}

/// One record's part of a round, worked out from one version of its document.
struct Step {
    /// Chunks to append: the phone's changes, then the server's acceptance of a submission.
    chunks: Vec<Vec<u8>>,
    /// The document after the chunks, when there are any.
    changed: Option<Changed>,
    /// The sync state to keep for (record, device).
    state: Option<State>,
    /// The message to answer with.
    reply: Option<Vec<u8>>,
    /// The whole document, for a phone that does not hold the record yet.
    whole: Option<Vec<u8>>,
}

/// Works out one record's part of a round from its document at `version`
/// (the version `conn` sees). `None` when there is nothing to do: no
/// message, and the phone holds what the server holds. Documents parsed
/// from chunks are added to `parsed`.
fn step(
    conn: &Conn,
    memory: &SyncMemory,
    asked: &Asked<'_>,
    record_id: &str,
    version: i64,
    parsed: &mut Vec<(String, Arc<VersionedDoc>)>,
) -> Result<Option<Step>> {
    let message = asked.messages.get(record_id).copied();
    let phone_heads = asked.held.get(record_id).copied();
    let (entry, fresh) = load_at(conn, &memory.docs, record_id, version)?;
    if fresh {
        parsed.push((record_id.to_owned(), entry.clone()));
    }
    if message.is_none()
        && let Some(heads) = phone_heads
    {
        let mut heads = heads.to_vec();
        heads.sort();
        if heads == entry.heads {
            return Ok(None);
        }
    }
    let mut doc = entry.doc.clone();
    let mut step = Step {
        chunks: Vec::new(),
        changed: None,
        state: None,
        reply: None,
        whole: None,
    };
    let mut state = match (message, phone_heads) {
        (None, None) => None,
        _ => Some(memory.states.get(conn, record_id, asked.device)?),
    };
    match (message, phone_heads, state.as_mut()) {
        (Some(bytes), _, Some(state)) => {
            step.chunks = apply_message(conn, &asked.writer, record_id, &mut doc, state, bytes)?;
        }
        (None, Some(heads), Some(state)) => {
            let taken_at_their_word = holds_listed(&mut doc, state, heads);
            if !taken_at_their_word {
                // The phone holds changes this server lacks yet sends none: it believes the
                // server has them (the server lost commits it had acknowledged) or it has
                // been told to keep them back (refused). Open the exchange afresh, so an
                // answer is generated even if the last one went astray and the remembered
                // state would wait for it: the phone learns the server's heads and sends
                // what is missing.
                *state = State {
                    shared_heads: std::mem::take(&mut state.shared_heads),
                    ..State::new()
                };
            }
        }
        _ => {}
    }
    match (phone_heads, state.as_mut()) {
        (Some(_), Some(state)) => {
            let sent_before = state.sent_hashes.clone();
            let generated = doc.automerge_mut().sync().generate_sync_message(state);
            if let Some(mut message) = generated {
                complete_message(doc.automerge_mut(), state, &sent_before, &mut message);
                step.reply = Some(message.encode());
            }
        }
        _ => step.whole = Some(doc.save()),
    }
    if !step.chunks.is_empty() {
        step.changed = Some(Changed {
            index: IndexRow::of(record_id, &doc)?,
            blobs: photo_blobs(record_id, &doc)?,
            doc,
        });
    }
    step.state = state;
    Ok(Some(step))
}

/// A round worked out from one snapshot of the database, not stored yet.
pub struct Plan {
    syncer: Syncer,
    /// Records assigned in the snapshot, with the document version each step was worked out from.
    assigned: BTreeMap<String, i64>,
    /// Records the phone holds that are no longer assigned to it.
    withdrawn: Vec<String>,
    steps: BTreeMap<String, Step>,
    /// Documents parsed from committed chunks, to keep in memory once the round is stored.
    parsed: Vec<(String, Arc<VersionedDoc>)>,
}

/// Works out a round for `syncer` from what `conn` sees (one snapshot:
/// call it inside a transaction). Refuses the whole round (4xx naming the
/// rule and the record) when any message breaks a rule. Writes nothing.
pub fn plan_round(
    conn: &Conn,
    memory: &SyncMemory,
    syncer: &Syncer,
    request: &SyncRequest,
) -> Result<Plan> {
    let asked = Asked::of(request, syncer)?;
    let (assigned, ever) = assignments(conn, syncer.inspector_id)?;
    for m in &request.messages {
        if assigned.contains_key(&m.record_id) || ever.contains(&m.record_id) {
            continue; // a withdrawn record's message is ignored; the record is listed below
        }
        if !record_exists(conn, &m.record_id)? {
            return Err(refused(
                StatusCode::NOT_FOUND,
                "not_found",
                rules::UNKNOWN_RECORD,
                &m.record_id,
                format!("no record {}", m.record_id),
            ));
        }
        return Err(refused(
            StatusCode::FORBIDDEN,
            "forbidden",
            rules::NOT_ASSIGNED,
            &m.record_id,
            format!("record {} is not assigned to you", m.record_id),
        ));
    }
    let mut withdrawn: Vec<String> = asked
        .held
        .keys()
        .filter(|id| !assigned.contains_key(**id))
        .map(|id| (*id).to_owned())
        .collect();
    withdrawn.sort();
    let mut parsed = Vec::new();
    let mut steps = BTreeMap::new();
    for (id, &version) in &assigned {
        if let Some(step) = step(conn, memory, &asked, id, version, &mut parsed)? {
            steps.insert(id.clone(), step);
        }
    }
    Ok(Plan {
        syncer: syncer.clone(),
        assigned,
        withdrawn,
        steps,
        parsed,
    })
}

/// A stored round: the answer, and what to keep in memory once the
/// transaction that stored it has committed ([`Stored::remember`]).
pub struct Stored {
    /// The answer to the phone.
    pub response: SyncResponse,
    states: Vec<(String, State)>,
    docs: Vec<(String, Arc<VersionedDoc>)>,
}

impl Stored {
    /// Keeps the round's sync states and documents in memory. Call it only
    /// after the transaction that stored the round has committed.
    pub fn remember(self, memory: &SyncMemory, device: &str) -> SyncResponse {
        for (id, state) in self.states {
            memory.states.put(&id, device, state);
        }
        for (id, doc) in self.docs {
            memory.docs.keep(&id, doc);
        }
        self.response
    }
}

/// Stores a planned round in `tx`, which holds the write lock. A record whose
/// document changed since the plan's snapshot is worked out again first, from
/// what is stored now; a round whose assignments changed is planned again whole.
pub fn store_round(
    tx: &Tx<'_>,
    memory: &SyncMemory,
    request: &SyncRequest,
    plan: Plan,
) -> Result<Stored> {
    let asked = Asked::of(request, &plan.syncer)?;
    let (assigned, _) = assignments(tx, plan.syncer.inspector_id)?;
    let mut plan = if assigned.keys().ne(plan.assigned.keys()) {
        tracing::debug!(
            device = asked.device,
            "assignments changed: round planned again"
        );
        plan_round(tx, memory, &plan.syncer.clone(), request)?
    } else {
        plan
    };
    let mut again = 0;
    for (id, &version) in &assigned {
        if plan.assigned.get(id) != Some(&version) {
            again += 1;
            plan.steps.remove(id);
            if let Some(step) = step(tx, memory, &asked, id, version, &mut plan.parsed)? {
                plan.steps.insert(id.clone(), step);
            }
        }
    }
    if again > 0 {
        tracing::debug!(
            device = asked.device,
            records = again,
            "records changed since the snapshot: worked out again"
        );
    }
    let mut response = SyncResponse {
        protocol: PROTOCOL_VERSION,
        messages: Vec::new(),
        new_records: Vec::new(),
        withdrawn: plan.withdrawn,
        accepted: Vec::new(),
        in_sync: false,
        missing_blobs: missing_blobs(tx, &asked, &assigned)?,
    };
    let mut states = Vec::new();
    let writer = plan.syncer.inspector_id;
    let mut docs = plan.parsed;
    let mut save_state = tx.prepare_cached(
        "INSERT INTO sync_states (record_id, device, state) VALUES (?1, ?2, ?3)
         ON CONFLICT(record_id, device) DO UPDATE SET state = excluded.state",
    )?;
    for (id, step) in plan.steps {
        for chunk in &step.chunks {
            insert_chunk(tx, &id, chunk)?;
        }
        if let Some(mut changed) = step.changed {
            index_blobs(tx, &id, &changed.blobs, writer)?;
            changed.index.write(tx, &id)?;
            maybe_compact(tx, &id, &mut changed.doc)?;
            let version = doc_version(tx, &id)?;
            docs.push((
                id.clone(),
                Arc::new(VersionedDoc::new(version, changed.doc)),
            ));
            response.accepted.push(id.clone());
        }
        if let Some(document) = step.whole {
            response.new_records.push(NewRecord {
                record_id: id.clone(),
                document,
            });
        }
        if let Some(message) = step.reply {
            response.messages.push(DocMessage {
                record_id: id.clone(),
                message,
            });
        }
        if let Some(state) = step.state {
            save_state.execute(params![id, asked.device, state.encode()])?;
            states.push((id, state));
        }
    }
    response.in_sync = response.messages.is_empty()
        && response.new_records.is_empty()
        && response.withdrawn.is_empty();
    Ok(Stored {
        response,
        states,
        docs,
    })
}

/// One round of a phone's sync, planned and stored in one transaction. Keeps
/// the round's sync states in memory at once, but no documents: the caller's
/// transaction may still roll back.
pub fn exchange(
    tx: &Tx<'_>,
    memory: &SyncMemory,
    syncer: &Syncer,
    request: SyncRequest,
) -> Result<SyncResponse> {
    let plan = plan_round(tx, memory, syncer, &request)?;
    let mut stored = store_round(tx, memory, &request, plan)?;
    stored.docs.clear();
    Ok(stored.remember(memory, &request.device))
}

async fn sync(
    AxumState(state): AxumState<AppState>,
    user: AuthUser,
    request: Request,
) -> Result<Response> {
    user.require(&[Role::Inspector])?;
    let Some(device_id) = user.device_id.clone() else {
        return Err(Error::Forbidden(
            "this session is not a phone's: log in from the phone with its device_id to sync"
                .into(),
        ));
    };
    let is_cbor = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with(CONTENT_TYPE));
    if !is_cbor {
        return Err(Error::Malformed(format!(
            "a sync request is {CONTENT_TYPE}"
        )));
    }
    let body: Bytes = body_bytes(request, &state, SYNC_BODY_LIMIT).await?;
    let sync_request: SyncRequest =
        wire::decode(&body).map_err(|e| Error::Malformed(format!("not a sync request: {e}")))?;
    let sync_request = Arc::new(sync_request);
    let user_id = user.user_id;
    // Worked out beside other rounds, from one snapshot ...
    let permit = state
        .sync
        .planning
        .acquire()
        .await
        .map_err(|_| Error::Internal("sync planning closed".into()))?;
    let planned = {
        let (memory, request) = (state.sync.clone(), sync_request.clone());
        state
            .db
            .read(move |conn| {
                let snapshot = conn.snapshot()?;
                let syncer = Syncer {
                    inspector_id: inspector_of(&snapshot, user_id)?,
                    device_id,
                };
                let plan = plan_round(&snapshot, &memory, &syncer, &request);
                Ok((syncer, plan))
            })
            .await?
    };
    drop(permit);
    // ... and stored under the write lock. A round refused from the snapshot
    // is worked out again from what is stored now, which decides.
    let stored = {
        let (memory, request) = (state.sync.clone(), sync_request.clone());
        state
            .db
            .write(move |tx| {
                let plan = match planned {
                    (_, Ok(plan)) => plan,
                    (syncer, Err(e)) => {
                        tracing::debug!(error = %e, "round refused from the snapshot: planned again");
                        plan_round(tx, &memory, &syncer, &request)?
                    }
                };
                store_round(tx, &memory, &request, plan)
            })
            .await?
    };
    let response = stored.remember(&state.sync, &sync_request.device);
    Ok((
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        wire::encode(&response),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::draw::records::load_document;
    use automerge::transaction::Transactable;
    use suiji_mobile_core::sync::wire::HeldRecord;

    use crate::memory_phone::MemoryPhone as Phone;

    /// Syncs `phone` until neither side has anything to say, each round in a write
    /// transaction of its own; returns how many rounds it took.
    fn sync(phone: &mut Phone, db: &Db, memory: &SyncMemory) -> Result<u32> {
        let inspector = phone.inspector;
        phone.sync(|request| db.write_blocking(|tx| exchange_as(tx, memory, inspector, request)))
    }

    /// One round as `inspector` on the device the request names.
    fn exchange_as(
        tx: &Tx<'_>,
        memory: &SyncMemory,
        inspector: i64,
        request: SyncRequest,
    ) -> Result<SyncResponse> {
        let syncer = Syncer {
            inspector_id: inspector,
            device_id: request.device.clone(),
        };
        exchange(tx, memory, &syncer, request)
    }

    fn demo() -> (
        tempfile::TempDir,
        Db,
        Vec<crate::draw::records::RecordSummary>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("s.db")).unwrap();
        crate::demo::seed(
            &db,
            &crate::calendar::Calendar::official(),
            &crate::demo::seal_of(&db),
        )
        .unwrap();
        let records = db
            .read_blocking(|c| crate::draw::records::list(c, None, None))
            .unwrap();
        (dir, db, records)
    }

    fn server_doc(db: &Db, id: &str) -> RecordDoc {
        let id = id.to_owned();
        db.read_blocking(move |c| load_document(c, &id)).unwrap()
    }

    #[test]
    fn a_phone_gets_its_records_and_its_answers_reach_the_server() {
        let (_dir, db, records) = demo();
        let states = SyncMemory::default();
        let inspector = records[0].group[0];
        let mine: HashSet<String> = records
            .iter()
            .filter(|r| r.group.contains(&inspector))
            .map(|r| r.id.clone())
            .collect();
        let mut phone = Phone::new(inspector, "a1").unwrap();
        sync(&mut phone, &db, &states).unwrap();
        assert_eq!(phone.docs.keys().cloned().collect::<HashSet<_>>(), mine);

        let id = records[0].id.clone();
        let doc = phone.docs.get_mut(&id).unwrap();
        let item = doc.assignment().unwrap().items[0].code.clone();
        doc.set_finding(&item, "后厨卫生良好，证照齐全").unwrap();
        let rounds = sync(&mut phone, &db, &states).unwrap();
        assert!(rounds <= 3, "{rounds} rounds");
        let mut server = server_doc(&db, &id);
        assert_eq!(
            server.item(&item).unwrap().finding.as_deref(),
            Some("后厨卫生良好，证照齐全")
        );
        assert_eq!(
            server.heads_hex(),
            phone.docs.get_mut(&id).unwrap().heads_hex()
        );

        // A repeat sync with nothing new is one round with nothing in it.
        let request = phone.request(1);
        assert!(
            request.messages.is_empty(),
            "persisted state: nothing to send"
        );
        let response = db
            .write_blocking(|tx| exchange_as(tx, &states, inspector, request))
            .unwrap();
        assert!(response.in_sync && response.messages.is_empty());
    }

    #[test]
    fn writing_the_assignment_is_refused_and_nothing_is_stored() {
        let (_dir, db, records) = demo();
        let states = SyncMemory::default();
        let inspector = records[0].group[0];
        let id = records[0].id.clone();
        let mut phone = Phone::new(inspector, "b2").unwrap();
        sync(&mut phone, &db, &states).unwrap();
        let before = server_doc(&db, &id).heads_hex();
        let doc = phone.docs.get_mut(&id).unwrap();
        let item = doc.assignment().unwrap().items[0].code.clone();
        doc.set_finding(&item, "正常").unwrap();
        doc.automerge_mut()
            .put(automerge::ROOT, "assignment", "{\"forged\": true}")
            .unwrap();
        doc.automerge_mut().commit();
        let err = sync(&mut phone, &db, &states).unwrap_err();
        match err {
            Error::Refused {
                status,
                rule,
                record_id,
                ..
            } => {
                assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
                assert_eq!(rule, rules::WRITER);
                assert_eq!(record_id, id);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            server_doc(&db, &id).heads_hex(),
            before,
            "nothing of the message was kept"
        );
    }

    #[test]
    fn strangers_and_unknown_records_are_refused() {
        let (_dir, db, records) = demo();
        let states = SyncMemory::default();
        let id = records[0].id.clone();
        let member = records[0].group[0];
        let stranger = (1..=60).find(|i| !records[0].group.contains(i)).unwrap();
        let mut phone = Phone::new(member, "c3").unwrap();
        sync(&mut phone, &db, &states).unwrap();
        let doc = phone.docs.get_mut(&id).unwrap();
        let message = {
            let mut state = State::new();
            doc.automerge_mut()
                .sync()
                .generate_sync_message(&mut state)
                .unwrap()
                .encode()
        };
        let request = |record: &str| SyncRequest {
            protocol: PROTOCOL_VERSION,
            device: "d4".into(),
            round: 1,
            held: vec![],
            messages: vec![DocMessage {
                record_id: record.into(),
                message: message.clone(),
            }],
        };
        let err = db
            .write_blocking(|tx| exchange_as(tx, &states, stranger, request(&id)))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Refused {
                    status: StatusCode::FORBIDDEN,
                    rule: rules::NOT_ASSIGNED,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = db
            .write_blocking(|tx| exchange_as(tx, &states, member, request("r999-1")))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Refused {
                    status: StatusCode::NOT_FOUND,
                    ..
                }
            ),
            "{err:?}"
        );
        let garbage = SyncRequest {
            messages: vec![DocMessage {
                record_id: id.clone(),
                message: vec![1, 2, 3],
            }],
            ..request(&id)
        };
        let err = db
            .write_blocking(|tx| exchange_as(tx, &states, member, garbage))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Refused {
                    rule: rules::MALFORMED_MESSAGE,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    /// A round planned from a snapshot, with `between` run before it is
    /// stored, as the endpoint does it when other rounds land in between.
    fn planned_then_stored(
        db: &Db,
        memory: &SyncMemory,
        inspector: i64,
        request: SyncRequest,
        between: impl FnOnce(),
    ) -> SyncResponse {
        let plan = db
            .read_blocking(|conn| {
                let snapshot = conn.snapshot()?;
                let syncer = Syncer {
                    inspector_id: inspector,
                    device_id: request.device.clone(),
                };
                plan_round(&snapshot, memory, &syncer, &request)
            })
            .unwrap();
        between();
        let stored = db
            .write_blocking(|tx| store_round(tx, memory, &request, plan))
            .unwrap();
        stored.remember(memory, &request.device)
    }

    #[test]
    fn a_record_a_partner_changed_after_the_snapshot_is_worked_out_again() {
        let (_dir, db, records) = demo();
        let memory = SyncMemory::default();
        let id = records[0].id.clone();
        let (a, b) = (records[0].group[0], records[0].group[1]);
        let mut phone_a = Phone::new(a, "aa01").unwrap();
        let mut phone_b = Phone::new(b, "bb02").unwrap();
        sync(&mut phone_a, &db, &memory).unwrap();
        sync(&mut phone_b, &db, &memory).unwrap();
        let items: Vec<_> = phone_a
            .docs
            .get_mut(&id)
            .unwrap()
            .assignment()
            .unwrap()
            .items;
        let (first, second) = (items[0].code.clone(), items[items.len() - 1].code.clone());
        phone_a
            .docs
            .get_mut(&id)
            .unwrap()
            .set_finding(&first, "甲：证照齐全")
            .unwrap();
        phone_b
            .docs
            .get_mut(&id)
            .unwrap()
            .set_checked(&second, true)
            .unwrap();

        let request = phone_a.request(1);
        let response = planned_then_stored(&db, &memory, a, request, || {
            sync(&mut phone_b, &db, &memory).unwrap();
        });
        assert_eq!(response.accepted, vec![id.clone()]);
        phone_a.apply(response).unwrap();

        // What is stored and what is kept in memory both have both edits.
        let mut stored = server_doc(&db, &id);
        assert_eq!(
            stored.item(&first).unwrap().finding.as_deref(),
            Some("甲：证照齐全")
        );
        assert!(stored.item(&second).unwrap().checked == Some(true));
        let version = db.read_blocking(|c| doc_version(c, &id)).unwrap();
        let kept = memory
            .docs
            .get(&id, version)
            .expect("the stored version is kept");
        let heads = stored.heads_hex();
        assert_eq!(kept.heads, heads, "the kept document is the stored one");
        // The answer already carried the partner's edit to phone A.
        assert!(
            phone_a
                .docs
                .get_mut(&id)
                .unwrap()
                .item(&second)
                .unwrap()
                .checked
                == Some(true)
        );
        sync(&mut phone_a, &db, &memory).unwrap();
        sync(&mut phone_b, &db, &memory).unwrap();
        assert_eq!(
            phone_a.docs.get_mut(&id).unwrap().heads_hex().len(),
            heads.len()
        );
        assert_eq!(phone_a.docs.get_mut(&id).unwrap().heads_hex(), heads);
        assert_eq!(phone_b.docs.get_mut(&id).unwrap().heads_hex(), heads);
    }

    #[test]
    fn a_phone_that_only_lists_its_heads_gets_exactly_the_changes_it_lacks() {
        let (_dir, db, records) = demo();
        let memory = SyncMemory::default();
        let id = records[0].id.clone();
        let (a, b) = (records[0].group[0], records[0].group[1]);
        let mut phone_a = Phone::new(a, "ab01").unwrap();
        let mut phone_b = Phone::new(b, "ab02").unwrap();
        sync(&mut phone_a, &db, &memory).unwrap();
        sync(&mut phone_b, &db, &memory).unwrap();
        let item = phone_b
            .docs
            .get_mut(&id)
            .unwrap()
            .assignment()
            .unwrap()
            .items[0]
            .code
            .clone();
        // A lists its heads, sends no message, and takes in what the answer carries without
        // announcing it, as a phone in step with the answer does.
        let listing_round = |phone: &mut Phone| {
            let request = listing(phone, &id);
            let inspector = phone.inspector;
            let response = db
                .write_blocking(|tx| exchange_as(tx, &memory, inspector, request))
                .unwrap();
            let carried: usize = response
                .messages
                .iter()
                .map(|m| {
                    Message::decode(&m.message)
                        .unwrap()
                        .changes
                        .iter()
                        .map(|c| c.len())
                        .sum::<usize>()
                })
                .sum();
            phone.apply(response).unwrap();
            carried
        };

        for finding in ["乙：第一次", "乙：第二次"] {
            let before = phone_a.docs.get_mut(&id).unwrap().heads();
            let b_doc = phone_b.docs.get_mut(&id).unwrap();
            b_doc.set_finding(&item, finding).unwrap();
            let lacking = b_doc.save_after(&before).len();
            sync(&mut phone_b, &db, &memory).unwrap();
            let carried = listing_round(&mut phone_a);
            assert!(
                carried > 0 && carried <= lacking,
                "the answer carries {carried} bytes; A lacks {lacking} bytes of changes"
            );
            let doc = phone_a.docs.get_mut(&id).unwrap();
            assert_eq!(doc.item(&item).unwrap().finding.as_deref(), Some(finding));
            assert_eq!(doc.heads_hex(), server_doc(&db, &id).heads_hex());
        }
    }

    /// A request that lists one record with the phone's heads and sends no message.
    fn listing(phone: &mut Phone, id: &str) -> SyncRequest {
        SyncRequest {
            protocol: PROTOCOL_VERSION,
            device: phone.device.clone(),
            round: 1,
            held: vec![HeldRecord {
                record_id: id.to_owned(),
                heads: phone.docs.get_mut(id).unwrap().heads_hex(),
            }],
            messages: Vec::new(),
        }
    }

    #[test]
    fn a_partner_change_the_phones_bloom_filter_hides_is_sent_anyway() {
        let (_dir, db, records) = demo();
        let memory = SyncMemory::default();
        let id = records[0].id.clone();
        let (a, b) = (records[0].group[0], records[0].group[1]);
        let mut phone_a = Phone::new(a, "fa01").unwrap();
        let mut phone_b = Phone::new(b, "fb02").unwrap();
        sync(&mut phone_a, &db, &memory).unwrap();
        sync(&mut phone_b, &db, &memory).unwrap();
        let items = phone_a
            .docs
            .get_mut(&id)
            .unwrap()
            .assignment()
            .unwrap()
            .items;
        let (first, second) = (items[0].code.clone(), items[items.len() - 1].code.clone());
        phone_b
            .docs
            .get_mut(&id)
            .unwrap()
            .set_checked(&second, true)
            .unwrap();
        let b_heads = phone_b.docs.get_mut(&id).unwrap().heads();
        sync(&mut phone_b, &db, &memory).unwrap();
        phone_a
            .docs
            .get_mut(&id)
            .unwrap()
            .set_finding(&first, "甲：证照齐全")
            .unwrap();
        // A's Bloom filter claims B's change, as a false positive (about 1 %) does.
        let mut request = phone_a.request(1);
        for m in request.messages.iter_mut().filter(|m| m.record_id == id) {
            let mut message = Message::decode(&m.message).unwrap();
            let doc = phone_a.docs.get_mut(&id).unwrap();
            for have in &mut message.have {
                let mut hashes: Vec<_> = doc
                    .automerge_mut()
                    .get_changes(&have.last_sync)
                    .iter()
                    .map(|c| c.hash())
                    .collect();
                hashes.extend(b_heads.iter().copied());
                have.bloom = BloomFilter::from_hashes(hashes.into_iter());
            }
            m.message = message.encode();
        }
        let response = db
            .write_blocking(|tx| exchange_as(tx, &memory, a, request))
            .unwrap();
        phone_a.apply(response).unwrap();
        let doc = phone_a.docs.get_mut(&id).unwrap();
        assert_eq!(doc.item(&second).unwrap().checked, Some(true));
        assert_eq!(doc.heads_hex(), server_doc(&db, &id).heads_hex());
    }

    #[test]
    fn a_phone_holding_changes_the_server_lost_is_answered_even_after_a_lost_answer() {
        let (_dir, db, records) = demo();
        let id = records[0].id.clone();
        let a = records[0].group[0];
        let mut phone = Phone::new(a, "fc03").unwrap();
        sync(&mut phone, &db, &SyncMemory::default()).unwrap();
        let item = phone.docs.get_mut(&id).unwrap().assignment().unwrap().items[0]
            .code
            .clone();
        // The phone holds a change the server lost, believes the server has it, and so only
        // lists the record; the restarted server's first answer never arrives.
        phone
            .docs
            .get_mut(&id)
            .unwrap()
            .set_finding(&item, "服务器丢失的记录")
            .unwrap();
        let restarted = SyncMemory::default();
        for attempt in ["lost", "kept"] {
            let request = listing(&mut phone, &id);
            let response = db
                .write_blocking(|tx| exchange_as(tx, &restarted, a, request))
                .unwrap();
            assert!(
                response.messages.iter().any(|m| m.record_id == id),
                "the {attempt} answer has a message for the record"
            );
            if attempt == "kept" {
                phone.apply(response).unwrap();
            }
        }
        // The ordinary exchange then brings the change up.
        sync(&mut phone, &db, &restarted).unwrap();
        let mut stored = server_doc(&db, &id);
        assert_eq!(
            stored.item(&item).unwrap().finding.as_deref(),
            Some("服务器丢失的记录")
        );
        assert_eq!(
            stored.heads_hex(),
            phone.docs.get_mut(&id).unwrap().heads_hex()
        );
    }

    #[test]
    fn a_record_withdrawn_after_the_snapshot_is_withdrawn_in_the_answer() {
        let (_dir, db, records) = demo();
        let memory = SyncMemory::default();
        let id = records[0].id.clone();
        let a = records[0].group[0];
        let mut phone = Phone::new(a, "cc03").unwrap();
        sync(&mut phone, &db, &memory).unwrap();
        let item = phone.docs.get_mut(&id).unwrap().assignment().unwrap().items[0]
            .code
            .clone();
        phone
            .docs
            .get_mut(&id)
            .unwrap()
            .set_finding(&item, "企业已注销")
            .unwrap();
        let request = phone.request(1);
        let response = planned_then_stored(&db, &memory, a, request, || {
            db.write_blocking(|tx| crate::draw::records::withdraw(tx, &id, "out of scope"))
                .unwrap();
        });
        assert_eq!(response.withdrawn, vec![id.clone()]);
        assert!(
            response.accepted.is_empty(),
            "a withdrawn record takes nothing"
        );
        assert!(response.messages.iter().all(|m| m.record_id != id));
        assert!(
            server_doc(&db, &id).item(&item).unwrap().finding.is_none(),
            "nothing of the withdrawn record's message was stored"
        );
    }
}
