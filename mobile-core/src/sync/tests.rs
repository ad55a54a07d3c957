//! Sync tests: real phone stores (SQLite files in temporary directories) and a server made of
//! plain `RecordDoc`s and `automerge::sync` states, exchanging real sync messages through the
//! store's round API and the client's round loop. No HTTP: the end-to-end tests against the
//! real server live in the workspace's `tests/` crate.

use super::client::{Answer, Tally, run_rounds};
use super::wire::{self, NewRecord, SyncRequest, SyncResponse, rules};
use super::{RefusedRecord, SyncReport, complete_message};
use crate::error::Error;
use crate::ids::{BlobHash, InspectorId, ItemCode, RecordId};
use crate::photo::fixtures;
use crate::record::tests::{insp, sample_assignment};
use crate::record::{RecordDoc, inspector_actor, server_actor};
use crate::store::{DB_FILE, OutboxItem, Store, StoreOptions, SyncRefusal};
use crate::vocab::ReviewState;
use automerge::sync::{Message, State, SyncDoc};
use automerge::transaction::Transactable;
use rusqlite::Connection;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

// ----- a plain server --------------------------------------------------------------------------

/// The server's half of the protocol written as plainly as possible: one document per record,
/// one sync state per (record, device), assignments per inspector, answers completed by
/// `complete_message` as the real server's are. Each incoming message is
/// applied to a copy and kept only if `write_violations`, `check_shape` and the closed-record
/// check pass; one bad message refuses the whole request and keeps nothing.
#[derive(Default)]
struct Server {
    docs: BTreeMap<String, RecordDoc>,
    states: HashMap<(String, String), State>,
    assigned: HashMap<InspectorId, BTreeSet<String>>,
    withdrawn: HashMap<InspectorId, BTreeSet<String>>,
}

impl Server {
    /// Creates a record assigned to inspectors 1 and 2 (the sample assignment's group).
    fn create(&mut self, id: &str) -> RecordId {
        let id = RecordId::new(id);
        let doc = RecordDoc::create(&id, &sample_assignment()).unwrap();
        self.docs.insert(id.0.clone(), doc);
        for n in [1, 2] {
            self.assigned
                .entry(insp(n))
                .or_default()
                .insert(id.0.clone());
        }
        id
    }

    fn withdraw(&mut self, id: &RecordId, inspector: u8) {
        self.assigned
            .get_mut(&insp(inspector))
            .unwrap()
            .remove(id.as_str());
        self.withdrawn
            .entry(insp(inspector))
            .or_default()
            .insert(id.0.clone());
    }

    fn doc(&mut self, id: &RecordId) -> &mut RecordDoc {
        self.docs.get_mut(id.as_str()).unwrap()
    }

    /// Forgets everything but the persistent part of its sync states, as a restart does.
    fn restart(&mut self) {
        for state in self.states.values_mut() {
            *state = State::decode(&state.encode()).unwrap();
        }
    }

    fn exchange(&mut self, inspector: &InspectorId, request: &SyncRequest) -> Answer {
        match self.try_exchange(inspector, request) {
            Ok(response) => Answer {
                status: 200,
                body: wire::encode(&response),
            },
            Err((status, code, rule, record_id)) => Answer {
                status,
                body: serde_json::to_vec(&serde_json::json!({"error": {
                    "code": code, "message": format!("{rule} in {record_id}"),
                    "rule": rule, "record_id": record_id,
                }}))
                .unwrap(),
            },
        }
    }

    #[allow(clippy::type_complexity)]
    fn try_exchange(
        &mut self,
        inspector: &InspectorId,
        request: &SyncRequest,
    ) -> Result<SyncResponse, (u16, &'static str, &'static str, String)> {
        let assigned = self.assigned.get(inspector).cloned().unwrap_or_default();
        let withdrawn = self.withdrawn.get(inspector).cloned().unwrap_or_default();
        let mut docs = self.docs.clone();
        let mut states = self.states.clone();
        let refuse = |rule, id: &str| (422, "refused", rule, id.to_owned());
        let mut accepted = Vec::new();
        let mut received = BTreeSet::new();
        for m in &request.messages {
            let id = m.record_id.as_str();
            if !assigned.contains(id) {
                if withdrawn.contains(id) {
                    continue;
                }
                return Err((403, "forbidden", rules::NOT_ASSIGNED, id.to_owned()));
            }
            let doc = docs.get_mut(id).unwrap();
            let state = states
                .entry((id.to_owned(), request.device.clone()))
                .or_default();
            let message =
                Message::decode(&m.message).map_err(|_| refuse(rules::MALFORMED_MESSAGE, id))?;
            let before = doc.heads();
            let closed = matches!(
                doc.review().unwrap().state,
                ReviewState::Approved | ReviewState::Published
            );
            let mut copy = doc.clone();
            copy.automerge_mut()
                .sync()
                .receive_sync_message(state, message)
                .map_err(|_| refuse(rules::MALFORMED_MESSAGE, id))?;
            if copy.heads() != before {
                if closed {
                    return Err(refuse(rules::RECORD_CLOSED, id));
                }
                let device = hex::decode(&request.device).unwrap_or_default();
                let writer = inspector_actor(inspector, &device);
                if !copy.write_violations(&before, &writer).unwrap().is_empty() {
                    return Err(refuse(rules::WRITER, id));
                }
                if !copy.check_shape().is_empty() {
                    return Err(refuse(rules::SHAPE, id));
                }
                *doc = copy;
                accepted.push(id.to_owned());
            }
            received.insert(id.to_owned());
        }
        let held: HashMap<&str, &Vec<String>> = request
            .held
            .iter()
            .map(|h| (h.record_id.as_str(), &h.heads))
            .collect();
        let mut response = SyncResponse {
            protocol: wire::PROTOCOL_VERSION,
            messages: Vec::new(),
            new_records: Vec::new(),
            withdrawn: held
                .keys()
                .filter(|id| !assigned.contains(**id))
                .map(|id| (*id).to_owned())
                .collect(),
            accepted,
            in_sync: false,
            missing_blobs: Vec::new(),
        };
        for id in &assigned {
            let doc = docs.get_mut(id).unwrap();
            let Some(phone_heads) = held.get(id.as_str()) else {
                response.new_records.push(NewRecord {
                    record_id: id.clone(),
                    document: doc.save(),
                });
                continue;
            };
            if !received.contains(id) && doc.heads_hex() == **phone_heads {
                continue;
            }
            let state = states
                .entry((id.clone(), request.device.clone()))
                .or_default();
            let sent_before = state.sent_hashes.clone();
            let generated = doc.automerge_mut().sync().generate_sync_message(state);
            if let Some(mut message) = generated {
                complete_message(doc.automerge_mut(), state, &sent_before, &mut message);
                response.messages.push(wire::DocMessage {
                    record_id: id.clone(),
                    message: message.encode(),
                });
            }
        }
        response.in_sync = response.messages.is_empty()
            && response.new_records.is_empty()
            && response.withdrawn.is_empty();
        self.docs = docs;
        self.states = states;
        Ok(response)
    }
}

// ----- phones ----------------------------------------------------------------------------------

fn open(dir: &Path, inspector: u8) -> Store {
    Store::open(dir, StoreOptions::new(insp(inspector))).unwrap()
}

fn a01() -> ItemCode {
    ItemCode::new("A01")
}

fn a02() -> ItemCode {
    ItemCode::new("A02")
}

/// Runs the client's round loop between a store and the server; returns the report and every
/// request sent.
fn sync_logged(store: &Store, server: &mut Server) -> (SyncReport, Vec<SyncRequest>) {
    let mut tally = Tally::new(&());
    let mut requests = Vec::new();
    let inspector = store.inspector_id().clone();
    run_rounds(store, &mut tally, &mut |request| {
        requests.push(request.clone());
        Ok(server.exchange(&inspector, request))
    })
    .unwrap();
    (tally.report, requests)
}

fn sync(store: &Store, server: &mut Server) -> SyncReport {
    let report = sync_logged(store, server).0;
    assert!(report.complete, "sync did not finish: {report:?}");
    report
}

/// How many changes the messages of a request carry.
fn changes_sent(request: &SyncRequest) -> usize {
    request
        .messages
        .iter()
        .map(|m| Message::decode(&m.message).unwrap().changes.len())
        .sum()
}

fn heads(store: &Store, id: &RecordId) -> Vec<String> {
    store.record(id).unwrap().heads_hex()
}

/// Rows a record still has in every table of the phone's database, by table.
fn rows_of(dir: &Path, id: &RecordId) -> BTreeMap<&'static str, i64> {
    let conn = Connection::open(dir.join(DB_FILE)).unwrap();
    let mut rows = BTreeMap::new();
    for (table, column) in [
        ("records", "record_id"),
        ("record_chunks", "record_id"),
        ("photos", "record_id"),
        ("sync_states", "record_id"),
        ("sync_refusals", "record_id"),
        ("outbox", "key"),
    ] {
        let n: i64 = conn
            .query_row(
                &format!("SELECT COUNT(*) FROM {table} WHERE {column} = ?1"),
                [id.as_str()],
                |r| r.get(0),
            )
            .unwrap();
        rows.insert(table, n);
    }
    rows
}

fn blob_rows(dir: &Path, hash: &BlobHash) -> (i64, i64) {
    let conn = Connection::open(dir.join(DB_FILE)).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [hash.as_str()], |r| r.get(0)).unwrap() };
    (
        count("SELECT COUNT(*) FROM blobs WHERE sha256 = ?1"),
        count("SELECT COUNT(*) FROM outbox WHERE kind = 'blob' AND key = ?1"),
    )
}

// ----- tests -----------------------------------------------------------------------------------

#[test]
fn new_records_arrive_whole_and_a_quiet_repeat_sends_no_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::default();
    let r1 = server.create("task-1/t-1");
    let r2 = server.create("task-1/t-2");
    let phone = open(dir.path(), 1);

    // One round brings them; a second checks that the server has handed over all it had.
    let report = sync(&phone, &mut server);
    assert_eq!(report.rounds, 2);
    assert_eq!(report.new_records, vec![r1.clone(), r2.clone()]);
    assert_eq!(report.received, vec![r1.clone(), r2.clone()]);
    assert!(report.sent.is_empty() && report.refused.is_empty());
    assert_eq!(phone.list_tasks().unwrap().len(), 2);
    assert_eq!(heads(&phone, &r1), server.doc(&r1).heads_hex());
    assert!(phone.persisted_sync_state(&r1).unwrap().is_some());

    let (report, requests) = sync_logged(&phone, &mut server);
    assert!(report.complete);
    assert_eq!(report.rounds, 1);
    assert!(report.received.is_empty());
    assert_eq!(requests[0].held.len(), 2);
    assert!(requests[0].messages.is_empty(), "nothing new: only listed");
}

#[test]
fn two_phones_editing_offline_converge_with_the_server_in_either_order() {
    for a_first in [true, false] {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let mut server = Server::default();
        let id = server.create("task-1/t-1");
        let a = open(dirs[0].path(), 1);
        let b = open(dirs[1].path(), 2);
        sync(&a, &mut server);
        sync(&b, &mut server);

        // Offline: different fields, and the same field with different answers.
        a.edit(&id, |d| {
            d.set_checked(&a01(), true)?;
            d.set_finding(&a01(), "年报信息属实")
        })
        .unwrap();
        b.edit(&id, |d| {
            d.set_checked(&a02(), false)?;
            d.set_finding(&a01(), "年报信息不实")
        })
        .unwrap();
        assert_eq!(a.outbox().unwrap().len(), 1);

        // One round each: the edits go up in the first message, and a phone that has taken
        // in the answer holds what the server holds, so it has nothing left to announce.
        let (first, second) = if a_first { (&a, &b) } else { (&b, &a) };
        let report = sync(first, &mut server);
        assert_eq!(report.sent, vec![id.clone()]);
        assert_eq!(report.rounds, 1, "{report:?}");
        let report = sync(second, &mut server);
        assert_eq!(report.sent, vec![id.clone()]);
        assert_eq!(report.received, vec![id.clone()], "got the partner's edits");
        assert_eq!(report.rounds, 1, "{report:?}");
        assert_eq!(heads(second, &id), server.doc(&id).heads_hex());
        let report = sync(first, &mut server);
        assert_eq!(report.received, vec![id.clone()]);
        assert!(report.sent.is_empty());
        assert_eq!(report.rounds, 1, "{report:?}");

        let server_heads = server.doc(&id).heads_hex();
        assert_eq!(heads(&a, &id), server_heads);
        assert_eq!(heads(&b, &id), server_heads);
        for phone in [&a, &b] {
            let doc = phone.record(&id).unwrap();
            assert_eq!(doc.item(&a01()).unwrap().checked, Some(true));
            assert_eq!(doc.item(&a02()).unwrap().checked, Some(false));
            let conflicts = doc.conflicts().unwrap();
            assert_eq!(conflicts.len(), 1, "{conflicts:?}");
            assert_eq!(phone.list_tasks().unwrap()[0].conflict_count, 1);
            assert!(phone.outbox().unwrap().is_empty(), "edits acknowledged");
        }
        assert_eq!(server.doc(&id).conflicts().unwrap().len(), 1);

        // Both quiet now: a further sync of either moves nothing.
        for phone in [&a, &b] {
            let (report, requests) = sync_logged(phone, &mut server);
            assert_eq!((report.rounds, changes_sent(&requests[0])), (1, 0));
            assert!(report.received.is_empty());
        }
    }
}

#[test]
fn sync_state_survives_reopening_so_a_repeat_sync_sends_only_what_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::default();
    let id = server.create("task-1/t-1");
    {
        let phone = open(dir.path(), 1);
        sync(&phone, &mut server);
        for finding in ["一", "二", "三"] {
            phone.edit(&id, |d| d.set_finding(&a01(), finding)).unwrap();
        }
        let report = sync(&phone, &mut server);
        assert_eq!(report.sent, vec![id.clone()]);
        assert_eq!(
            server.doc(&id).item(&a01()).unwrap().finding.as_deref(),
            Some("三")
        );
    }
    // A new process and a restarted server: only the persisted parts of the states remain.
    server.restart();
    let phone = open(dir.path(), 1);
    let (report, requests) = sync_logged(&phone, &mut server);
    assert!(report.complete);
    assert_eq!(requests.iter().map(changes_sent).sum::<usize>(), 0);
    assert!(report.received.is_empty() && report.sent.is_empty());

    phone.edit(&id, |d| d.set_finding(&a01(), "四")).unwrap();
    server.restart();
    let (report, requests) = sync_logged(&phone, &mut server);
    assert!(report.complete);
    assert_eq!(report.sent, vec![id.clone()]);
    assert_eq!(
        requests.iter().map(changes_sent).sum::<usize>(),
        1,
        "only the new edit goes out"
    );
    assert_eq!(heads(&phone, &id), server.doc(&id).heads_hex());
}

#[test]
fn an_answer_lost_on_the_way_is_made_good_by_the_next_sync() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut server = Server::default();
    let id = server.create("task-1/t-1");
    let a = open(dirs[0].path(), 1);
    let b = open(dirs[1].path(), 2);
    sync(&a, &mut server);
    sync(&b, &mut server);
    b.edit(&id, |d| d.set_finding(&a01(), "乙的发现")).unwrap();
    sync(&b, &mut server);
    a.edit(&id, |d| d.set_disposition(&a01(), "甲的处置"))
        .unwrap();
    let before = heads(&a, &id);
    let state_before = a.persisted_sync_state(&id).unwrap();

    // The server takes A's rounds and answers them, but every answer is lost.
    let mut tally = Tally::new(&());
    let inspector = insp(1);
    let result = run_rounds(&a, &mut tally, &mut |request| {
        server.exchange(&inspector, request);
        Err(Error::Network("connection reset".into()))
    });
    assert!(matches!(result, Err(Error::Network(_))));
    assert_eq!(
        heads(&a, &id),
        before,
        "nothing of the failed round applied"
    );
    assert_eq!(a.persisted_sync_state(&id).unwrap(), state_before);
    assert_eq!(a.outbox().unwrap().len(), 1, "still queued");

    // The server believes it sent B's finding; the next sync must still bring it.
    let report = sync(&a, &mut server);
    assert_eq!(report.received, vec![id.clone()]);
    assert_eq!(heads(&a, &id), server.doc(&id).heads_hex());
    let doc = a.record(&id).unwrap();
    assert_eq!(
        doc.item(&a01()).unwrap().finding.as_deref(),
        Some("乙的发现")
    );
    assert_eq!(
        doc.item(&a01()).unwrap().disposition.as_deref(),
        Some("甲的处置")
    );
    assert!(a.outbox().unwrap().is_empty());
}

#[test]
fn a_dependency_the_servers_bloom_filter_hides_is_sent_anyway() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::default();
    let id = server.create("task-1/t-1");
    let phone = open(dir.path(), 1);
    sync(&phone, &mut server);
    phone.edit(&id, |d| d.set_checked(&a01(), true)).unwrap();
    let first = phone.record(&id).unwrap().heads();
    phone
        .edit(&id, |d| d.set_finding(&a01(), "依赖前一项"))
        .unwrap();

    // Every answer's Bloom filter claims the server has the first edit (a false positive):
    // automerge alone would send only the second edit, which the server cannot apply.
    let inspector = insp(1);
    let mut tally = Tally::new(&());
    run_rounds(&phone, &mut tally, &mut |request| {
        let answer = server.exchange(&inspector, request);
        let mut response: SyncResponse = wire::decode(&answer.body).unwrap();
        for m in &mut response.messages {
            let mut message = Message::decode(&m.message).unwrap();
            for have in &mut message.have {
                let doc = server.doc(&id);
                let mut hashes: Vec<_> = doc
                    .automerge_mut()
                    .get_changes(&have.last_sync)
                    .iter()
                    .map(|c| c.hash())
                    .collect();
                hashes.extend(first.iter().copied());
                have.bloom = automerge::sync::BloomFilter::from_hashes(hashes.into_iter());
            }
            m.message = message.encode();
        }
        Ok(Answer {
            status: 200,
            body: wire::encode(&response),
        })
    })
    .unwrap();
    assert!(tally.report.complete, "{:?}", tally.report);
    assert_eq!(tally.report.sent, vec![id.clone()]);
    assert_eq!(heads(&phone, &id), server.doc(&id).heads_hex());
}

#[test]
fn a_refused_record_keeps_its_changes_and_the_others_still_sync() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::default();
    let bad = server.create("task-1/t-1");
    let good = server.create("task-1/t-2");
    let phone = open(dir.path(), 1);
    sync(&phone, &mut server);
    let server_heads = server.doc(&bad).heads_hex();

    // An inspector may write answers only.
    phone
        .edit(&bad, |d| {
            d.automerge_mut()
                .put(automerge::ROOT, "extra", "x")
                .map_err(Error::from)
        })
        .unwrap();
    phone
        .edit(&good, |d| d.set_finding(&a01(), "正常"))
        .unwrap();

    let report = sync(&phone, &mut server);
    assert_eq!(
        report.refused,
        vec![RefusedRecord {
            record_id: bad.clone(),
            rule: rules::WRITER.into(),
            message: format!("{} in {bad}", rules::WRITER),
        }]
    );
    assert_eq!(report.sent, vec![good.clone()]);
    assert_eq!(server.doc(&bad).heads_hex(), server_heads, "nothing stored");
    assert_eq!(
        server.doc(&good).item(&a01()).unwrap().finding.as_deref(),
        Some("正常")
    );
    assert_ne!(
        heads(&phone, &bad),
        server_heads,
        "the local change is kept"
    );
    let tasks = phone.list_tasks().unwrap();
    let refusal = |id: &RecordId| {
        tasks
            .iter()
            .find(|t| &t.record_id == id)
            .unwrap()
            .refusal
            .clone()
    };
    assert_eq!(refusal(&bad).unwrap().rule, rules::WRITER);
    assert_eq!(refusal(&good), None);
    let queued: Vec<OutboxItem> = phone
        .outbox()
        .unwrap()
        .into_iter()
        .map(|e| e.item)
        .collect();
    assert_eq!(queued, vec![OutboxItem::Record(bad.clone())]);

    // A refusal is cleared by the next sync of the record that goes through.
    let mut session = phone.begin_sync().unwrap();
    let round = phone.prepare_round(&session).unwrap();
    let marker = SyncRefusal {
        rule: rules::RECORD_CLOSED.into(),
        message: "closed".into(),
    };
    phone.refuse(&mut session, round, &good, &marker).unwrap();
    assert_eq!(phone.sync_refusal(&good).unwrap(), Some(marker));
    drop(session);
    phone
        .edit(&good, |d| d.set_finding(&a01(), "复核正常"))
        .unwrap();
    let report = sync(&phone, &mut server);
    assert_eq!(report.sent, vec![good.clone()]);
    assert_eq!(phone.sync_refusal(&good).unwrap(), None);
    assert!(phone.sync_refusal(&bad).unwrap().is_some(), "refused again");
}

#[test]
fn changes_to_an_approved_record_are_refused_as_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::default();
    let id = server.create("task-1/t-1");
    let phone = open(dir.path(), 1);
    sync(&phone, &mut server);
    phone
        .edit(&id, |d| d.set_finding(&a01(), "迟到的修改"))
        .unwrap();
    {
        let doc = server.doc(&id);
        doc.set_actor(server_actor());
        crate::record::tests::answer_everything(doc);
        doc.sign(&insp(1), &crate::record::tests::key(1), None)
            .unwrap();
        doc.sign(&insp(2), &crate::record::tests::key(2), None)
            .unwrap();
        doc.submit(&insp(1)).unwrap();
        doc.accept_submission("supervisor").unwrap();
        doc.approve("supervisor", None).unwrap();
    }
    let report = sync(&phone, &mut server);
    assert_eq!(report.refused.len(), 1);
    assert_eq!(report.refused[0].rule, rules::RECORD_CLOSED);
    assert_eq!(
        phone.list_tasks().unwrap()[0]
            .refusal
            .as_ref()
            .unwrap()
            .rule,
        rules::RECORD_CLOSED
    );
}

#[test]
fn a_withdrawn_record_leaves_nothing_behind_but_blobs_another_record_uses() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::default();
    let gone = server.create("task-1/t-1");
    let kept = server.create("task-1/t-2");
    let phone = open(dir.path(), 1);
    sync(&phone, &mut server);

    let shared = fixtures::jpeg(160, 120);
    let own = fixtures::jpeg(200, 150);
    let shared_photo = phone.import_photo(&gone, &a01(), &shared, "共用").unwrap();
    phone.import_photo(&kept, &a01(), &shared, "共用").unwrap();
    let own_photo = phone.import_photo(&gone, &a02(), &own, "自有").unwrap();
    sync(&phone, &mut server);
    // A marker too, so that everything of the record is there to be removed.
    let mut session = phone.begin_sync().unwrap();
    let round = phone.prepare_round(&session).unwrap();
    let marker = SyncRefusal {
        rule: rules::SHAPE.into(),
        message: "x".into(),
    };
    phone.refuse(&mut session, round, &gone, &marker).unwrap();
    drop(session);
    phone
        .edit(&gone, |d| d.set_finding(&a01(), "未同步"))
        .unwrap();
    let rows = rows_of(dir.path(), &gone);
    assert!(rows.values().all(|n| *n > 0), "{rows:?}");

    server.withdraw(&gone, 1);
    let report = sync(&phone, &mut server);
    assert_eq!(report.withdrawn, vec![gone.clone()]);
    assert!(
        report.refused.is_empty(),
        "a withdrawn record's message is ignored"
    );

    let rows = rows_of(dir.path(), &gone);
    assert!(rows.values().all(|n| *n == 0), "{rows:?}");
    assert!(matches!(phone.record(&gone), Err(Error::NotFound(_))));
    for hash in [&own_photo.sha256, &own_photo.thumbnail_sha256] {
        assert_eq!(blob_rows(dir.path(), hash), (0, 0), "blob {hash}");
        assert!(phone.blob_path(hash).is_err(), "file of {hash} removed");
    }
    assert_eq!(blob_rows(dir.path(), &shared_photo.sha256).0, 1);
    assert_eq!(phone.blob(&shared_photo.sha256).unwrap(), shared);
    assert!(phone.blob(&shared_photo.thumbnail_sha256).is_ok());
    assert_eq!(phone.list_tasks().unwrap().len(), 1);
    // Reopened, it is still gone, and the next sync does not bring it back.
    drop(phone);
    let phone = open(dir.path(), 1);
    let report = sync(&phone, &mut server);
    assert!(report.received.is_empty());
    assert_eq!(phone.list_tasks().unwrap()[0].record_id, kept);
}

#[test]
fn a_server_naming_an_original_that_stays_on_the_phone_gets_only_the_rest_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::default();
    let id = server.create("task-1/t-1");
    let mut options = StoreOptions::new(insp(1));
    options.photos.pixel_budget = 300_000;
    let phone = Store::open(dir.path(), options).unwrap();
    sync(&phone, &mut server);
    let photo = phone
        .import_photo(&id, &a01(), &fixtures::jpeg(1200, 900), "全景")
        .unwrap();
    let upload = photo.upload_sha256.clone().expect("over the small budget");
    sync(&phone, &mut server);
    // The uploads went through (this plain server takes none: acknowledged by hand).
    for entry in phone.outbox().unwrap() {
        phone.ack_outbox(&entry).unwrap();
    }

    // A server from before it knew which blobs stay on phones names the original with the
    // others as lacking.
    let mut session = phone.begin_sync().unwrap();
    let round = phone.prepare_round(&session).unwrap();
    let mut response: SyncResponse =
        wire::decode(&server.exchange(&insp(1), round.request()).body).unwrap();
    response.missing_blobs = vec![
        photo.sha256.as_str().to_owned(),
        photo.thumbnail_sha256.as_str().to_owned(),
        upload.as_str().to_owned(),
    ];
    let applied = phone.apply_round(&mut session, round, &response).unwrap();
    let mut requeued = applied.requeued_blobs.clone();
    requeued.sort();
    let mut expected = vec![photo.thumbnail_sha256.clone(), upload];
    expected.sort();
    assert_eq!(requeued, expected, "the original stays on the phone");
    assert!(
        !phone
            .outbox()
            .unwrap()
            .iter()
            .any(|e| e.item == OutboxItem::Blob(photo.sha256.clone()))
    );
}

#[test]
fn applying_a_round_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::default();
    let changed = server.create("task-1/t-1");
    let gone = server.create("task-1/t-2");
    let phone = open(dir.path(), 1);
    sync(&phone, &mut server);
    let photo = phone
        .import_photo(&gone, &a01(), &fixtures::jpeg(64, 48), "")
        .unwrap();
    phone
        .edit(&changed, |d| d.set_checked(&a01(), true))
        .unwrap();
    {
        let doc = server.doc(&changed);
        doc.set_actor(inspector_actor(&insp(2), b"\x02"));
        doc.set_finding(&a02(), "伙伴的发现").unwrap();
    }
    server.withdraw(&gone, 1);

    let snapshot = |phone: &Store| {
        (
            heads(phone, &changed),
            phone.chunk_count(&changed).unwrap(),
            phone.persisted_sync_state(&changed).unwrap(),
            phone.outbox().unwrap(),
            rows_of(dir.path(), &gone),
            phone.blob_path(&photo.sha256).is_ok(),
        )
    };
    let before = snapshot(&phone);

    // A genuine answer (a message that changes one record, a withdrawn record), with a
    // broken new record at the end.
    let mut session = phone.begin_sync().unwrap();
    let round = phone.prepare_round(&session).unwrap();
    let mut response: SyncResponse =
        wire::decode(&server.exchange(&insp(1), round.request()).body).unwrap();
    assert!(!response.messages.is_empty() && response.withdrawn == vec![gone.0.clone()]);
    response.new_records.push(NewRecord {
        record_id: "task-1/t-9".into(),
        document: b"not a document".to_vec(),
    });
    assert!(phone.apply_round(&mut session, round, &response).is_err());
    assert_eq!(session.rounds(), 0);
    assert_eq!(snapshot(&phone), before);
    drop(session);
    drop(phone);
    let phone = open(dir.path(), 1);
    assert_eq!(snapshot(&phone), before, "and so on disk");

    // The next sync does all of it.
    let report = sync(&phone, &mut server);
    assert_eq!(report.withdrawn, vec![gone.clone()]);
    assert_eq!(report.received, vec![changed.clone()]);
    assert_eq!(heads(&phone, &changed), server.doc(&changed).heads_hex());
    assert!(phone.blob_path(&photo.sha256).is_err());
}

#[test]
fn a_partners_thumbnail_is_stored_once_fetched_and_only_if_a_record_refers_to_it() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut server = Server::default();
    let id = server.create("task-1/t-1");
    let a = open(dirs[0].path(), 1);
    let b = open(dirs[1].path(), 2);
    sync(&a, &mut server);
    sync(&b, &mut server);
    let photo = a
        .import_photo(&id, &a01(), &fixtures::jpeg(320, 240), "门头")
        .unwrap();
    sync(&a, &mut server);
    sync(&b, &mut server);

    let listed = b.list_photos(&id).unwrap();
    assert_eq!(listed[0].thumbnail_sha256, photo.thumbnail_sha256);
    assert!(
        b.blob_path(&photo.thumbnail_sha256).is_err(),
        "not fetched yet"
    );
    let thumbnail = a.blob(&photo.thumbnail_sha256).unwrap();
    assert!(matches!(
        b.put_fetched_blob(&photo.thumbnail_sha256, b"other bytes"),
        Err(Error::Malformed(_))
    ));
    let stranger = b"a blob no record refers to";
    assert!(matches!(
        b.put_fetched_blob(&BlobHash::of(stranger), stranger),
        Err(Error::NotFound(_))
    ));
    let path = b
        .put_fetched_blob(&photo.thumbnail_sha256, &thumbnail)
        .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), thumbnail);
    assert_eq!(
        b.blob_info(&photo.thumbnail_sha256).unwrap(),
        Some((crate::store::BlobRole::Thumbnail, thumbnail.len() as u64))
    );
    assert!(
        b.outbox().unwrap().is_empty(),
        "a fetched blob is not uploaded back"
    );
}

#[test]
fn a_message_for_a_record_never_assigned_is_refused_and_the_rest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::default();
    let mine = server.create("task-1/t-1");
    let phone = open(dir.path(), 1);
    sync(&phone, &mut server);
    // A record handed to this phone some other way, which the server never assigned to it.
    let foreign = RecordId::new("task-1/t-3");
    let mut doc = RecordDoc::create(&foreign, &sample_assignment()).unwrap();
    server.docs.insert(foreign.0.clone(), doc.clone());
    phone.put_assigned_doc(&mut doc).unwrap();
    phone
        .edit(&foreign, |d| d.set_finding(&a01(), "x"))
        .unwrap();
    phone.edit(&mine, |d| d.set_finding(&a01(), "y")).unwrap();

    let report = sync(&phone, &mut server);
    assert_eq!(report.refused.len(), 1);
    assert_eq!(report.refused[0].record_id, foreign);
    assert_eq!(report.refused[0].rule, rules::NOT_ASSIGNED);
    assert_eq!(report.sent, vec![mine.clone()]);
    // Held but not assigned: the next round withdraws it.
    assert_eq!(report.withdrawn, vec![foreign]);
    assert_eq!(phone.list_tasks().unwrap().len(), 1);
}

#[test]
fn client_addresses_must_be_http_and_an_unreachable_server_is_a_network_error() {
    let dir = tempfile::tempdir().unwrap();
    let phone = open(dir.path(), 1);
    assert!(matches!(
        super::Client::new("ftp://example.invalid"),
        Err(Error::InvalidInput(_))
    ));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut credentials = super::Credentials {
        access_token: "a".into(),
        refresh_token: "r".into(),
    };
    let result = super::sync(
        &phone,
        &format!("http://127.0.0.1:{port}/"),
        &mut credentials,
        &(),
    );
    assert!(matches!(result, Err(Error::Network(_))), "{result:?}");
}

#[test]
fn a_second_sync_started_while_one_runs_is_refused_and_the_first_completes() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::default();
    let record = server.create("task-1/t-1");
    let phone = open(dir.path(), 1);
    // The same store opened again, as a background job of the app would.
    let background = open(dir.path(), 1);
    let inspector = phone.inspector_id().clone();
    let mut tally = Tally::new(&());
    let mut tried = Vec::new();
    run_rounds(&phone, &mut tally, &mut |request| {
        // While the first sync is on the wire, neither store may start another.
        tried.push(phone.begin_sync().map(|_| ()));
        tried.push(background.begin_sync().map(|_| ()));
        Ok(server.exchange(&inspector, request))
    })
    .unwrap();
    assert!(tally.report.complete);
    assert_eq!(tally.report.new_records, vec![record.clone()]);
    assert!(!tried.is_empty());
    assert!(
        tried.iter().all(|t| matches!(t, Err(Error::SyncRunning))),
        "{tried:?}"
    );
    // Once it has ended, the other store syncs, and finds nothing new.
    let report = sync(&background, &mut server);
    assert_eq!(report.rounds, 1);
    assert!(report.received.is_empty());
    assert_eq!(heads(&background, &record), server.doc(&record).heads_hex());
}

/// Cancels a sync once it has sent `rounds` rounds.
struct CancelAfter {
    rounds: u32,
    seen: std::cell::Cell<u32>,
}

impl super::SyncListener for CancelAfter {
    fn progress(&self, progress: &super::SyncProgress) {
        self.seen.set(progress.round);
    }

    fn is_cancelled(&self) -> bool {
        self.seen.get() >= self.rounds
    }
}

#[test]
fn a_sync_cancelled_between_rounds_keeps_what_was_applied_and_a_later_sync_completes() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::default();
    let bad = server.create("task-1/t-1");
    let good = server.create("task-1/t-2");
    let phone = open(dir.path(), 1);
    sync(&phone, &mut server);
    // The refused record takes a round of its own, so the good one needs a second round.
    phone
        .edit(&bad, |d| {
            d.automerge_mut()
                .put(automerge::ROOT, "extra", "x")
                .map_err(Error::from)
        })
        .unwrap();
    phone
        .edit(&good, |d| d.set_finding(&a01(), "正常"))
        .unwrap();
    let before = server.doc(&good).heads_hex();

    let listener = CancelAfter {
        rounds: 1,
        seen: Default::default(),
    };
    let mut tally = Tally::new(&listener);
    let inspector = phone.inspector_id().clone();
    let mut exchanges = 0;
    let result = run_rounds(&phone, &mut tally, &mut |request| {
        exchanges += 1;
        Ok(server.exchange(&inspector, request))
    });
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert_eq!(exchanges, 1, "stopped before the second round");
    // The first round's refusal is kept; the good record's change is still queued.
    assert!(phone.sync_refusal(&bad).unwrap().is_some());
    assert_eq!(server.doc(&good).heads_hex(), before);
    assert!(
        phone
            .outbox()
            .unwrap()
            .iter()
            .any(|e| e.item == OutboxItem::Record(good.clone()))
    );

    // The cancelled sync released the store: the next one completes.
    let report = sync(&phone, &mut server);
    assert_eq!(report.sent, vec![good.clone()]);
    assert_eq!(heads(&phone, &good), server.doc(&good).heads_hex());
}

#[test]
fn a_server_that_accepts_and_never_answers_fails_login_and_sync_within_the_timeouts() {
    use super::{SyncOptions, session};
    use std::time::Duration;
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    // Takes every connection and holds it open without a word.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming() {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let phone = std::sync::Arc::new(open(dir.path(), 1));
    phone
        .keep_session(&crate::store::Session {
            server_url: url.clone(),
            credentials: super::Credentials {
                access_token: "a".into(),
                refresh_token: "r".into(),
            },
        })
        .unwrap();
    let options = SyncOptions {
        connect_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_millis(300),
    };
    let (done, results) = std::sync::mpsc::channel();
    let store = phone.clone();
    std::thread::spawn(move || {
        let login = session::login(&store, &url, "inspector", "pw", &options);
        let sync = session::sync(&store, &options, &());
        done.send((login, sync)).unwrap();
    });
    let (login, sync) = results
        .recv_timeout(Duration::from_secs(60))
        .expect("the timeouts end both within a generous bound");
    assert!(matches!(login, Err(Error::Network(_))), "{login:?}");
    assert!(matches!(sync, Err(Error::Network(_))), "{sync:?}");
    assert!(phone.session().unwrap().is_some(), "a timeout is no logout");
}

/// Reads one HTTP/1.1 request from `stream`: its path and `Authorization` header, or `None`
/// once the client has closed the connection.
fn read_request(stream: &mut std::net::TcpStream) -> Option<(String, Option<String>)> {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8(head).unwrap();
    let path = head.split(' ').nth(1)?.to_owned();
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let length: usize = header("content-length").map_or(0, |n| n.parse().unwrap());
    let mut body = vec![0; length];
    stream.read_exact(&mut body).ok()?;
    Some((path, header("authorization")))
}

fn answer(stream: &mut std::net::TcpStream, status: &str, body: &str) {
    use std::io::Write;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

#[test]
fn the_refresh_after_a_401_goes_on_a_new_connection_when_the_server_drops_the_old_one() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let reused = std::sync::Arc::new(AtomicBool::new(false));
    let seen = reused.clone();
    // A server that, like one refusing a request before reading its body, answers the stale
    // token's 401 and then drops the connection at the next request on it.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let seen = seen.clone();
            std::thread::spawn(move || {
                while let Some((path, auth)) = read_request(&mut stream) {
                    match (path.as_str(), auth.as_deref()) {
                        ("/api/v1/auth/logout", Some("Bearer stale")) => {
                            answer(
                                &mut stream,
                                "401 Unauthorized",
                                r#"{"error":{"code":"unauthorized","message":"expired"}}"#,
                            );
                            if read_request(&mut stream).is_some() {
                                seen.store(true, Ordering::SeqCst);
                            }
                            return;
                        }
                        ("/api/v1/auth/refresh", _) => answer(
                            &mut stream,
                            "200 OK",
                            r#"{"access_token":"fresh","refresh_token":"r2"}"#,
                        ),
                        ("/api/v1/auth/logout", Some("Bearer fresh")) => {
                            answer(&mut stream, "200 OK", r#"{"logged_out":true}"#)
                        }
                        _ => answer(&mut stream, "404 Not Found", "{}"),
                    }
                }
            });
        }
    });
    let mut credentials = super::Credentials {
        access_token: "stale".into(),
        refresh_token: "r1".into(),
    };
    let client = super::Client::new(&url).unwrap();
    let result = client.log_out(&mut credentials);
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(credentials.access_token, "fresh");
    assert!(
        !reused.load(Ordering::SeqCst),
        "nothing was sent on the refused connection"
    );
}
