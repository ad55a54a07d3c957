//! The sync endpoint: phones exchange `automerge::sync` messages for many
//! record documents per HTTP request (wire format in
//! `suiji_mobile_core::sync::wire`).
//!
//! Every incoming change is applied to a copy of the server's document and
//! checked before anything is kept: only the record's group may write it,
//! only at answer paths (never `assignment` or `review`), values must have
//! the right shape, and an approved record takes no more changes. One bad
//! message refuses the whole request (4xx naming the rule and the record) and
//! nothing of it is stored. Sync state is kept per (record, device): in
//! memory during a sync, and its persistent part in `sync_states`, so a
//! repeat sync sends only what is new.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use automerge::sync::{Message, State, SyncDoc};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use suiji_mobile_core::RecordDoc;
use suiji_mobile_core::record::server_actor;
use suiji_mobile_core::sync::complete_message;
use suiji_mobile_core::sync::wire::{
    self, CONTENT_TYPE, DocMessage, NewRecord, PROTOCOL_VERSION, SyncRequest, SyncResponse, rules,
};
use suiji_mobile_core::vocab::ReviewState;

use crate::AppState;
use crate::auth::{AuthUser, Role};
use crate::draw::records::{append_changes, load_document};
use crate::error::{Error, Result};
use crate::extract::body_bytes;

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

/// Full sync states of recent exchanges, by (record, device). Only their
/// persistent part survives a restart, which costs at most an extra round.
#[derive(Default)]
pub struct SyncStates {
    states: Mutex<HashMap<(String, String), State>>,
}

impl SyncStates {
    fn take(&self, conn: &Connection, record: &str, device: &str) -> Result<State> {
        let key = (record.to_owned(), device.to_owned());
        if let Some(state) = self
            .states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key)
        {
            return Ok(state);
        }
        let stored: Option<Vec<u8>> = conn
            .query_row(
                "SELECT state FROM sync_states WHERE record_id = ?1 AND device = ?2",
                params![record, device],
                |r| r.get(0),
            )
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

/// Records assigned to an inspector now, and every record they were ever assigned.
fn assignments(conn: &Connection, inspector_id: i64) -> Result<(HashSet<String>, HashSet<String>)> {
    let mut now = conn.prepare_cached(
        "SELECT r.id FROM records r JOIN record_inspectors ri ON ri.record_id = r.id
         WHERE ri.inspector_id = ?1 AND r.withdrawn_at IS NULL",
    )?;
    let assigned = now
        .query_map([inspector_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut ever = conn.prepare_cached(
        "SELECT record_id FROM record_assignment_history WHERE inspector_id = ?1",
    )?;
    let history = ever
        .query_map([inspector_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok((assigned, history))
}

fn record_exists(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM records WHERE id = ?1)",
        [id],
        |r| r.get(0),
    )?)
}

/// Indexes the blobs a record's photos refer to, so their readers may download them.
fn index_blobs(tx: &Transaction<'_>, record_id: &str, doc: &RecordDoc) -> Result<()> {
    let photos = doc
        .photos()
        .map_err(|e| Error::Internal(format!("reading photos of {record_id}: {e}")))?;
    let mut insert = tx
        .prepare_cached("INSERT OR IGNORE INTO record_blobs (record_id, sha256) VALUES (?1, ?2)")?;
    for photo in photos {
        insert.execute(params![record_id, photo.sha256.as_str()])?;
        insert.execute(params![record_id, photo.thumbnail_sha256.as_str()])?;
        if let Some(upload) = &photo.upload_sha256 {
            insert.execute(params![record_id, upload.as_str()])?;
        }
    }
    Ok(())
}

/// Replaces a record's chunks by one snapshot once they pile up.
fn maybe_compact(tx: &Transaction<'_>, record_id: &str, doc: &mut RecordDoc) -> Result<()> {
    let chunks: i64 = tx.query_row(
        "SELECT COUNT(*) FROM record_chunks WHERE record_id = ?1",
        [record_id],
        |r| r.get(0),
    )?;
    if chunks > COMPACT_AFTER_CHUNKS {
        let snapshot = doc.save();
        tx.execute(
            "DELETE FROM record_chunks WHERE record_id = ?1",
            [record_id],
        )?;
        tx.execute(
            "INSERT INTO record_chunks (record_id, seq, bytes) VALUES (?1, 0, ?2)",
            params![record_id, snapshot],
        )?;
    }
    Ok(())
}

/// Applies one phone message to a copy of the record and keeps the copy only
/// if every new change passes the checks. Returns whether anything new was kept.
fn apply_message(
    tx: &Transaction<'_>,
    record_id: &str,
    doc: &mut RecordDoc,
    state: &mut State,
    bytes: &[u8],
) -> Result<bool> {
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
        return Ok(false);
    }
    if copy.heads() == before {
        return Ok(false);
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
    let violations = copy
        .write_violations(&before)
        .map_err(|e| malformed(e.to_string()))?;
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
    if !shape.is_empty() {
        return Err(refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused",
            rules::SHAPE,
            record_id,
            format!("record {record_id}: {}", shape.join("; ")),
        ));
    }
    // Keep exactly the new changes, as one chunk.
    let chunk = copy.save_after(&before);
    tx.execute(
        "INSERT INTO record_chunks (record_id, seq, bytes)
         VALUES (?1, (SELECT COALESCE(MAX(seq), -1) + 1 FROM record_chunks WHERE record_id = ?1), ?2)",
        params![record_id, chunk],
    )?;
    // A new submission moves the review state to submitted.
    let review_round = copy.review().map(|r| r.round).unwrap_or(0);
    if copy.submitted_round().unwrap_or(0) > review_round {
        copy.save_incremental();
        copy.set_actor(server_actor());
        copy.accept_submission("server").map_err(|e| {
            Error::Internal(format!("accepting the submission of {record_id}: {e}"))
        })?;
        append_changes(tx, record_id, &mut copy)?;
    }
    index_blobs(tx, record_id, &copy)?;
    crate::review::refresh_record_index(tx, record_id, &copy)?;
    maybe_compact(tx, record_id, &mut copy)?;
    *doc = copy;
    Ok(true)
}

/// One round of a phone's sync, in one transaction.
pub fn exchange(
    tx: &Transaction<'_>,
    states: &SyncStates,
    inspector_id: i64,
    request: SyncRequest,
) -> Result<SyncResponse> {
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
    let device = request.device.as_str();
    let (assigned, ever) = assignments(tx, inspector_id)?;
    let mut docs: HashMap<String, RecordDoc> = HashMap::new();
    let mut new_states: Vec<(String, State)> = Vec::new();
    let mut accepted = Vec::new();
    let mut seen = HashSet::new();
    for m in &request.messages {
        if !seen.insert(m.record_id.as_str()) {
            return Err(Error::invalid(
                "messages",
                format!("two messages for record {}", m.record_id),
            ));
        }
        if !assigned.contains(&m.record_id) {
            if ever.contains(&m.record_id) {
                continue; // withdrawn from this inspector: listed below, message ignored
            }
            if !record_exists(tx, &m.record_id)? {
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
        let mut doc = load_document(tx, &m.record_id)?;
        let mut state = states.take(tx, &m.record_id, device)?;
        if apply_message(tx, &m.record_id, &mut doc, &mut state, &m.message)? {
            accepted.push(m.record_id.clone());
        }
        docs.insert(m.record_id.clone(), doc);
        new_states.push((m.record_id.clone(), state));
    }
    let received: HashSet<String> = new_states.iter().map(|(id, _)| id.clone()).collect();
    let mut states_by_record: HashMap<String, State> = new_states.into_iter().collect();

    let held: HashMap<&str, &Vec<String>> = request
        .held
        .iter()
        .map(|h| (h.record_id.as_str(), &h.heads))
        .collect();
    let mut withdrawn: Vec<String> = held
        .keys()
        .filter(|id| !assigned.contains(**id))
        .map(|id| (*id).to_owned())
        .collect();
    withdrawn.sort();
    let mut response = SyncResponse {
        protocol: PROTOCOL_VERSION,
        messages: Vec::new(),
        new_records: Vec::new(),
        withdrawn,
        accepted,
        in_sync: false,
    };
    let mut ids: Vec<&String> = assigned.iter().collect();
    ids.sort();
    for id in ids {
        let mut doc = match docs.remove(id) {
            Some(doc) => doc,
            None => load_document(tx, id)?,
        };
        let Some(phone_heads) = held.get(id.as_str()) else {
            response.new_records.push(NewRecord {
                record_id: id.clone(),
                document: doc.save(),
            });
            continue;
        };
        let mut phone_heads: Vec<String> = (*phone_heads).clone();
        phone_heads.sort();
        if !received.contains(id) && doc.heads_hex() == phone_heads {
            continue;
        }
        let mut state = match states_by_record.remove(id) {
            Some(state) => state,
            None => states.take(tx, id, device)?,
        };
        let sent_before = state.sent_hashes.clone();
        let generated = doc.automerge_mut().sync().generate_sync_message(&mut state);
        if let Some(mut message) = generated {
            complete_message(doc.automerge_mut(), &mut state, &sent_before, &mut message);
            response.messages.push(DocMessage {
                record_id: id.clone(),
                message: message.encode(),
            });
        }
        states_by_record.insert(id.clone(), state);
    }
    let mut save = tx.prepare_cached(
        "INSERT INTO sync_states (record_id, device, state) VALUES (?1, ?2, ?3)
         ON CONFLICT(record_id, device) DO UPDATE SET state = excluded.state",
    )?;
    for (id, state) in states_by_record {
        save.execute(params![id, device, state.encode()])?;
        states.put(&id, device, state);
    }
    response.in_sync = response.messages.is_empty()
        && response.new_records.is_empty()
        && response.withdrawn.is_empty();
    Ok(response)
}

async fn sync(
    AxumState(state): AxumState<AppState>,
    user: AuthUser,
    request: Request,
) -> Result<Response> {
    user.require(&[Role::Inspector])?;
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
    let user_id = user.user_id;
    let states = state.sync_states.clone();
    let response = state
        .db
        .write(move |tx| {
            let inspector_id: i64 = tx
                .query_row(
                    "SELECT id FROM inspectors WHERE user_id = ?1",
                    [user_id],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| {
                    Error::Forbidden("your account is not linked to an inspector".into())
                })?;
            exchange(tx, &states, inspector_id, sync_request)
        })
        .await?;
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
    use automerge::transaction::Transactable;
    use suiji_mobile_core::InspectorId;
    use suiji_mobile_core::record::inspector_actor;
    use suiji_mobile_core::sync::wire::HeldRecord;

    struct Phone {
        inspector: i64,
        device: String,
        docs: HashMap<String, RecordDoc>,
        states: HashMap<String, State>,
    }

    impl Phone {
        fn new(inspector: i64, device: &str) -> Phone {
            Phone {
                inspector,
                device: device.into(),
                docs: HashMap::new(),
                states: HashMap::new(),
            }
        }

        fn request(&mut self, round: u32) -> SyncRequest {
            let mut held = Vec::new();
            let mut messages = Vec::new();
            for (id, doc) in &mut self.docs {
                held.push(HeldRecord {
                    record_id: id.clone(),
                    heads: doc.heads_hex(),
                });
                let state = self.states.entry(id.clone()).or_default();
                if let Some(m) = doc.automerge_mut().sync().generate_sync_message(state) {
                    messages.push(DocMessage {
                        record_id: id.clone(),
                        message: m.encode(),
                    });
                }
            }
            SyncRequest {
                protocol: PROTOCOL_VERSION,
                device: self.device.clone(),
                round,
                held,
                messages,
            }
        }

        fn apply(&mut self, response: SyncResponse) {
            for id in response.withdrawn {
                self.docs.remove(&id);
                self.states.remove(&id);
            }
            for new in response.new_records {
                let mut doc = RecordDoc::load(&new.document).unwrap();
                doc.set_actor(inspector_actor(
                    &InspectorId::new(self.inspector.to_string()),
                    self.device.as_bytes(),
                ));
                self.docs.insert(new.record_id, doc);
            }
            for m in response.messages {
                let doc = self.docs.get_mut(&m.record_id).unwrap();
                let state = self.states.entry(m.record_id.clone()).or_default();
                doc.automerge_mut()
                    .sync()
                    .receive_sync_message(state, Message::decode(&m.message).unwrap())
                    .unwrap();
            }
        }

        /// Syncs until both sides are done; returns the number of rounds.
        fn sync(&mut self, db: &Db, states: &SyncStates) -> Result<u32> {
            for round in 1..=10 {
                let request = self.request(round);
                let nothing_to_send = request.messages.is_empty();
                let inspector = self.inspector;
                let response = db.write_blocking(|tx| exchange(tx, states, inspector, request))?;
                let done = response.in_sync && nothing_to_send;
                self.apply(response);
                if done {
                    return Ok(round);
                }
            }
            panic!("sync did not converge in 10 rounds");
        }
    }

    fn demo() -> (
        tempfile::TempDir,
        Db,
        Vec<crate::draw::records::RecordSummary>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("s.db")).unwrap();
        crate::demo::seed(&db, &crate::calendar::Calendar::official()).unwrap();
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
        let states = SyncStates::default();
        let inspector = records[0].group[0];
        let mine: HashSet<String> = records
            .iter()
            .filter(|r| r.group.contains(&inspector))
            .map(|r| r.id.clone())
            .collect();
        let mut phone = Phone::new(inspector, "a1");
        phone.sync(&db, &states).unwrap();
        assert_eq!(phone.docs.keys().cloned().collect::<HashSet<_>>(), mine);

        let id = records[0].id.clone();
        let doc = phone.docs.get_mut(&id).unwrap();
        let item = doc.assignment().unwrap().items[0].code.clone();
        doc.set_finding(&item, "后厨卫生良好，证照齐全").unwrap();
        let rounds = phone.sync(&db, &states).unwrap();
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
            .write_blocking(|tx| exchange(tx, &states, inspector, request))
            .unwrap();
        assert!(response.in_sync && response.messages.is_empty());
    }

    #[test]
    fn writing_the_assignment_is_refused_and_nothing_is_stored() {
        let (_dir, db, records) = demo();
        let states = SyncStates::default();
        let inspector = records[0].group[0];
        let id = records[0].id.clone();
        let mut phone = Phone::new(inspector, "b2");
        phone.sync(&db, &states).unwrap();
        let before = server_doc(&db, &id).heads_hex();
        let doc = phone.docs.get_mut(&id).unwrap();
        let item = doc.assignment().unwrap().items[0].code.clone();
        doc.set_finding(&item, "正常").unwrap();
        doc.automerge_mut()
            .put(automerge::ROOT, "assignment", "{\"forged\": true}")
            .unwrap();
        doc.automerge_mut().commit();
        let err = phone.sync(&db, &states).unwrap_err();
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
        let states = SyncStates::default();
        let id = records[0].id.clone();
        let member = records[0].group[0];
        let stranger = (1..=60).find(|i| !records[0].group.contains(i)).unwrap();
        let mut phone = Phone::new(member, "c3");
        phone.sync(&db, &states).unwrap();
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
            .write_blocking(|tx| exchange(tx, &states, stranger, request(&id)))
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
            .write_blocking(|tx| exchange(tx, &states, member, request("r999-1")))
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
            .write_blocking(|tx| exchange(tx, &states, member, garbage))
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
}
