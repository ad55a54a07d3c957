//! The store's side of syncing with the server: per-record `automerge::sync` states, building
//! a round's request, and applying the server's answer in one transaction.
//!
//! A sync is a [`SyncSession`] of rounds. [`Store::prepare_round`] lists every record the
//! phone holds (with its heads, from the index) and generates one sync message per record
//! with something to say, from the session's in-memory states; it writes nothing.
//! [`Store::apply_round`] applies the server's answer — its sync messages, new records,
//! withdrawn records, acknowledgements — and persists the advanced sync states, all in one
//! SQLite transaction; only once that commits does the session take the round's states. A
//! round that fails (network, refusal) is simply dropped: store and session stay as they were,
//! so nothing is ever marked as sent that the server did not store.
//!
//! The HTTP client in `sync::client` drives these; tests drive them against a plain
//! [`RecordDoc`] standing in for the server.

use super::{
    Loaded, Store, Writer, blobs, delete_record, insert_record, outbox, save_changes, take_doc,
};
use crate::error::{Error, Result};
use crate::ids::{BlobHash, RecordId};
use crate::record::RecordDoc;
use crate::store::{BlobRole, OutboxEntry, OutboxItem};
use crate::sync::complete_message;
use crate::sync::wire::{DocMessage, HeldRecord, PROTOCOL_VERSION, SyncRequest, SyncResponse};
use automerge::ChangeHash;
use automerge::sync::{BloomFilter, Capability, Have, Message, State, SyncDoc};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

/// The file in a store's directory whose lock a sync session holds.
pub const SYNC_LOCK_FILE: &str = "sync.lock";

/// Why the server refused a record's changes (shown in the task list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRefusal {
    /// The rule broken (`sync::wire::rules`).
    pub rule: String,
    /// What the server said, for people.
    pub message: String,
}

/// One sync with the server, from its first round to its last: the in-memory sync state of
/// each record in conversation, and the records left out after a refusal.
#[derive(Debug)]
pub struct SyncSession {
    device: String,
    round: u32,
    states: HashMap<RecordId, State>,
    excluded: BTreeSet<RecordId>,
    /// The store's sync lock, held while the session lives (`None` where the file system
    /// has no locks).
    _claim: Option<std::fs::File>,
}

impl SyncSession {
    /// This phone's device id (hex), as the request names it.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Rounds sent so far (applied or refused).
    pub fn rounds(&self) -> u32 {
        self.round
    }

    /// Whether a record was left out of this session after the server refused it.
    pub fn is_excluded(&self, id: &RecordId) -> bool {
        self.excluded.contains(id)
    }
}

/// A round ready to send: the request, and what the session becomes once its answer is
/// applied.
#[derive(Debug)]
pub struct PreparedRound {
    request: SyncRequest,
    /// Sync states after generating this round's messages.
    states: HashMap<RecordId, State>,
    /// Records messaged, and the heads each message carried.
    sent: HashMap<RecordId, Vec<ChangeHash>>,
    /// Record outbox entries as they were when the messages were generated.
    outbox: HashMap<RecordId, OutboxEntry>,
}

impl PreparedRound {
    /// The request to send.
    pub fn request(&self) -> &SyncRequest {
        &self.request
    }

    /// Whether the phone has anything to say in this round.
    pub fn has_messages(&self) -> bool {
        !self.request.messages.is_empty()
    }

    /// Whether this round carries a message for `id`.
    pub fn messages_record(&self, id: &RecordId) -> bool {
        self.sent.contains_key(id)
    }
}

/// What applying a server's answer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedRound {
    /// Held records whose documents the server's messages changed.
    pub changed: Vec<RecordId>,
    /// Records newly taken in.
    pub new_records: Vec<RecordId>,
    /// Records dropped, with everything of them.
    pub withdrawn: Vec<RecordId>,
    /// Records whose changes from this round the server stored.
    pub accepted: Vec<RecordId>,
    /// Records whose outbox entry was cleared (the server holds everything they had).
    pub acknowledged: Vec<RecordId>,
    /// Blobs the server said it lacks that this phone holds, queued for upload again.
    pub requeued_blobs: Vec<BlobHash>,
}

/// Flags that every session opens with for a record: the server (automerge 0.12, as this
/// build) reads version-2 messages and the sync-reset flag, and the first message asks it to
/// forget which changes it believes it sent this device, because the last answer of an
/// earlier session may never have arrived.
///
/// When an earlier sync ended with both sides holding the same heads, the server is taken to
/// hold at least those (it never loses what it acknowledged), so the first message already
/// carries every local change made since, instead of only announcing the phone's heads and
/// waiting a round trip for the server's. Should the server hold less after all, it drops the
/// message (dependencies missing), forgets its state for this device, and the ordinary
/// exchange takes over in the next round.
fn opening_state(persisted: Option<&[u8]>) -> State {
    let mut state = persisted
        .and_then(|bytes| State::decode(bytes).ok())
        .unwrap_or_default();
    state.their_capabilities = Some(vec![Capability::MessageV2, Capability::SyncReset]);
    state.needs_reset = true;
    if !state.shared_heads.is_empty() {
        state.their_heads = Some(state.shared_heads.clone());
        state.their_need = Some(Vec::new());
        state.their_have = Some(vec![Have {
            last_sync: state.shared_heads.clone(),
            bloom: BloomFilter::default(),
        }]);
    }
    state
}

/// The state of a record just handed over whole: both sides hold exactly `heads`, so there
/// is nothing to say until one of them changes.
fn settled_state(heads: Vec<ChangeHash>) -> State {
    let mut state = State::new();
    state.shared_heads = heads.clone();
    state.their_heads = Some(heads.clone());
    state.last_sent_heads = heads;
    state.have_responded = true;
    state.their_capabilities = Some(vec![Capability::MessageV2, Capability::SyncReset]);
    state
}

/// Whether the server's last answer in this session left it holding exactly what the phone
/// holds (`heads`, sorted hex) and wanting nothing: then neither side has anything to say.
/// automerge would still announce heads that moved since its last message — here only because
/// the phone took in the server's changes — and that announcement would cost a round trip
/// that tells the server nothing it needs: the next sync lists the heads anyway.
fn in_step(state: &State, heads: &[String]) -> bool {
    state.their_need.as_ref().is_none_or(Vec::is_empty)
        && state
            .their_heads
            .as_ref()
            .is_some_and(|theirs| sorted_hex(theirs) == heads)
}

fn sorted_hex(heads: &[ChangeHash]) -> Vec<String> {
    let mut hex: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
    hex.sort();
    hex
}

fn persisted_state(conn: &Connection, id: &RecordId) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .query_row(
            "SELECT state FROM sync_states WHERE record_id = ?1",
            [id.as_str()],
            |r| r.get(0),
        )
        .optional()?)
}

impl Store {
    /// Starts a sync session, or refuses with [`Error::SyncRunning`] while another session of
    /// this store is open, in this process or another (a second tap on "sync", a background
    /// job): two sessions would each advance the sync states from what they read and repeat
    /// each other's rounds. The claim is an OS file lock, so it ends with the process however
    /// the process ends.
    pub fn begin_sync(&self) -> Result<SyncSession> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(self.dir.join(SYNC_LOCK_FILE))?;
        let claim = match file.try_lock() {
            Ok(()) => Some(file),
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::SyncRunning),
            Err(std::fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                None
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        };
        Ok(SyncSession {
            device: self.device.clone(),
            round: 0,
            states: HashMap::new(),
            excluded: BTreeSet::new(),
            _claim: claim,
        })
    }

    /// Builds the next round's request: every record held, with its heads, and a sync message
    /// for each record (not refused in this session) with something to say. A record that has
    /// not changed since the last sync that reached the server is only listed; the server
    /// answers it if it has something new. Writes nothing.
    pub fn prepare_round(&self, session: &SyncSession) -> Result<PreparedRound> {
        let mut w = self.lock_writer();
        let rows: Vec<(String, Option<String>, Option<Vec<u8>>)> = {
            let mut stmt = w.conn.prepare_cached(
                "SELECT r.record_id, r.heads, s.state
                 FROM records r LEFT JOIN sync_states s USING (record_id)
                 ORDER BY r.record_id",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        let outbox: HashMap<RecordId, OutboxEntry> = outbox::list(&w.conn)?
            .into_iter()
            .filter_map(|entry| match &entry.item {
                OutboxItem::Record(id) => Some((id.clone(), entry)),
                OutboxItem::Blob(_) => None,
            })
            .collect();

        let mut held = Vec::with_capacity(rows.len());
        let mut messages = Vec::new();
        let mut states = HashMap::new();
        let mut sent = HashMap::new();
        for (id, heads, persisted) in rows {
            let id = RecordId(id);
            let heads: Vec<String> = match heads {
                Some(text) if !text.is_empty() => text.split(',').map(str::to_owned).collect(),
                // A row from before heads were indexed: ask the document.
                _ => sorted_hex(&w.get(&id, &self.actor)?.doc.heads()),
            };
            held.push(HeldRecord {
                record_id: id.0.clone(),
                heads: heads.clone(),
            });
            if session.excluded.contains(&id) {
                continue;
            }
            let mut state = match session.states.get(&id) {
                Some(state) if in_step(state, &heads) => {
                    states.insert(id, state.clone());
                    continue;
                }
                Some(state) => state.clone(),
                None => {
                    let state = opening_state(persisted.as_deref());
                    if sorted_hex(&state.shared_heads) == heads {
                        continue;
                    }
                    state
                }
            };
            let loaded = w.get(&id, &self.actor)?;
            let sent_before = state.sent_hashes.clone();
            let generated = loaded
                .doc
                .automerge_mut()
                .sync()
                .generate_sync_message(&mut state);
            if let Some(mut message) = generated {
                complete_message(
                    loaded.doc.automerge_mut(),
                    &mut state,
                    &sent_before,
                    &mut message,
                );
                sent.insert(id.clone(), message.heads.clone());
                messages.push(DocMessage {
                    record_id: id.0.clone(),
                    message: message.encode(),
                });
            }
            states.insert(id, state);
        }
        Ok(PreparedRound {
            request: SyncRequest {
                protocol: PROTOCOL_VERSION,
                device: session.device.clone(),
                round: session.round + 1,
                held,
                messages,
            },
            states,
            sent,
            outbox,
        })
    }

    /// Applies the server's answer to a round, all in one transaction: its sync messages
    /// (merged into the records), the withdrawn records (dropped with everything of them),
    /// the new records (taken in), outbox acknowledgements for records the server now holds
    /// whole, refusal markers cleared for records it took, and the advanced sync states.
    /// On any error nothing is written, the documents touched are reloaded from disk, and the
    /// session is unchanged.
    pub fn apply_round(
        &self,
        session: &mut SyncSession,
        round: PreparedRound,
        response: &SyncResponse,
    ) -> Result<AppliedRound> {
        if response.protocol != PROTOCOL_VERSION {
            return Err(Error::Malformed(format!(
                "the server speaks sync protocol {}, this phone {PROTOCOL_VERSION}",
                response.protocol
            )));
        }
        let PreparedRound {
            request,
            mut states,
            mut sent,
            outbox,
        } = round;
        let held: HashMap<&str, &Vec<String>> = request
            .held
            .iter()
            .map(|h| (h.record_id.as_str(), &h.heads))
            .collect();
        let compact_after = self.options.compact_after_chunks;
        let mut applied = AppliedRound::default();
        let mut w = self.lock_writer();
        let Writer { conn, docs } = &mut *w;

        // The server's messages, into documents taken out of the cache: if anything below
        // fails they are dropped and reloaded from disk.
        let mut touched: HashMap<RecordId, Loaded> = HashMap::new();
        let mut answered = HashSet::new();
        for m in &response.messages {
            if !held.contains_key(m.record_id.as_str()) {
                continue; // not something this phone listed
            }
            let id = RecordId(m.record_id.clone());
            let message = Message::decode(&m.message)
                .map_err(|e| Error::Malformed(format!("sync message for {id}: {e}")))?;
            if !touched.contains_key(&id) {
                match take_doc(conn, docs, &id, &self.actor) {
                    Ok(loaded) => touched.insert(id.clone(), loaded),
                    Err(Error::NotFound(_)) => continue, // removed since the round was prepared
                    Err(e) => return Err(e),
                };
            }
            let loaded = touched.get_mut(&id).expect("just taken");
            let state = match states.get_mut(&id) {
                Some(state) => state,
                None => {
                    let persisted = persisted_state(conn, &id)?;
                    states
                        .entry(id.clone())
                        .or_insert(opening_state(persisted.as_deref()))
                }
            };
            let before = loaded.doc.heads();
            loaded
                .doc
                .automerge_mut()
                .sync()
                .receive_sync_message(state, message)?;
            if loaded.doc.heads() != before {
                applied.changed.push(id.clone());
            }
            answered.insert(id);
        }
        // A record messaged and not answered: the server generated nothing for it, which it
        // does only when its heads equal those of the message (see `sync::client`).
        sent.retain(|id, _| !answered.contains(id));
        for (id, heads) in &sent {
            if let Some(state) = states.get_mut(id) {
                state.their_heads = Some(heads.clone());
                state.shared_heads = heads.clone();
            }
        }

        let tx = conn.transaction()?;
        let mut orphans = Vec::new();
        for id in &response.withdrawn {
            let id = RecordId(id.clone());
            touched.remove(&id);
            docs.remove(&id);
            states.remove(&id);
            if let Some(blobs) = delete_record(&tx, &id)? {
                orphans.extend(blobs);
                applied.withdrawn.push(id);
            }
        }
        for new in &response.new_records {
            let id = RecordId(new.record_id.clone());
            let mut doc = RecordDoc::load(&new.document)?;
            let found = doc.record_id()?;
            if found != id {
                return Err(Error::Malformed(format!(
                    "new record {id} is a document of record {found}"
                )));
            }
            let problems = doc.check_shape();
            if !problems.is_empty() {
                return Err(Error::Malformed(format!(
                    "new record {id}: {}",
                    problems.join("; ")
                )));
            }
            doc.set_actor(self.actor.clone());
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM records WHERE record_id = ?1)",
                [id.as_str()],
                |r| r.get(0),
            )?;
            if exists {
                // Taken in some other way since the round was prepared: merge.
                if !touched.contains_key(&id) {
                    touched.insert(id.clone(), take_doc(&tx, docs, &id, &self.actor)?);
                }
                let loaded = touched.get_mut(&id).expect("just taken");
                loaded.doc.merge(&mut doc)?;
            } else {
                let loaded = insert_record(&tx, &id, doc)?;
                states.insert(id.clone(), settled_state(loaded.saved_heads.clone()));
                touched.insert(id.clone(), loaded);
            }
            applied.new_records.push(id);
        }
        for (id, loaded) in touched.iter_mut() {
            save_changes(&tx, id, loaded, false, compact_after)?;
        }

        // Acknowledgements: the server stored this round's changes, or it is known to hold
        // exactly what the phone holds.
        let messaged: HashSet<&str> = request
            .messages
            .iter()
            .map(|m| m.record_id.as_str())
            .collect();
        applied.accepted = response
            .accepted
            .iter()
            .filter(|id| messaged.contains(id.as_str()))
            .map(|id| RecordId(id.clone()))
            .collect();
        for (id, entry) in &outbox {
            let Some(state) = states.get(id) else {
                continue;
            };
            let current = match touched.get_mut(id) {
                Some(loaded) => sorted_hex(&loaded.doc.heads()),
                None => held
                    .get(id.as_str())
                    .map(|h| (*h).clone())
                    .unwrap_or_default(),
            };
            let in_step = state
                .their_heads
                .as_ref()
                .is_some_and(|theirs| sorted_hex(theirs) == current);
            if (applied.accepted.contains(id) || in_step) && outbox::ack(&tx, entry)? {
                applied.acknowledged.push(id.clone());
            }
        }
        for id in &messaged {
            tx.execute("DELETE FROM sync_refusals WHERE record_id = ?1", [id])?;
        }
        // Blobs the server lost (a restored backup): whoever holds one sends it again. Never
        // an original that has an upload copy: it stays on the phone, whatever a server from
        // before `record_blobs.expected` still lists.
        let mut kept_on_phone = tx.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM photos WHERE sha256 = ?1 AND upload_sha256 IS NOT NULL)",
        )?;
        for hash in &response.missing_blobs {
            let Some(hash) = BlobHash::parse(hash) else {
                return Err(Error::Malformed(format!(
                    "the server names a missing blob {hash:?}"
                )));
            };
            if kept_on_phone.query_row([hash.as_str()], |r| r.get::<_, bool>(0))? {
                continue;
            }
            if self.blobs.path(&hash).exists() && outbox::enqueue_if_absent(&tx, &hash)? {
                applied.requeued_blobs.push(hash);
            }
        }
        drop(kept_on_phone);
        {
            let mut save = tx.prepare_cached(
                "INSERT INTO sync_states (record_id, state)
                 SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM records WHERE record_id = ?1)
                 ON CONFLICT (record_id) DO UPDATE SET state = excluded.state",
            )?;
            for (id, state) in &states {
                save.execute(params![id.as_str(), state.encode()])?;
            }
        }
        tx.commit()?;

        docs.extend(touched);
        drop(w);
        self.blobs.remove_files(&orphans);
        session.states = states;
        session.round = request.round;
        applied.changed.sort();
        applied.acknowledged.sort();
        Ok(applied)
    }

    /// Records that the server refused a round because of `id` (the round is dropped): marks
    /// the record with the rule and message for the task list, keeps its local changes, and
    /// leaves it out of the rest of the session. The marker goes when a later sync of the
    /// record goes through.
    pub fn refuse(
        &self,
        session: &mut SyncSession,
        round: PreparedRound,
        id: &RecordId,
        refusal: &SyncRefusal,
    ) -> Result<()> {
        {
            let w = self.lock_writer();
            w.conn.execute(
                "INSERT INTO sync_refusals (record_id, rule, message, refused_at)
                 SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM records WHERE record_id = ?1)
                 ON CONFLICT (record_id) DO UPDATE SET
                     rule = excluded.rule, message = excluded.message,
                     refused_at = excluded.refused_at",
                params![
                    id.as_str(),
                    refusal.rule,
                    refusal.message,
                    chrono::Utc::now().to_rfc3339()
                ],
            )?;
        }
        session.excluded.insert(id.clone());
        session.states.remove(id);
        session.round = round.request.round;
        Ok(())
    }

    /// Why the server last refused a record, if it did and no sync of it has gone through
    /// since.
    pub fn sync_refusal(&self, id: &RecordId) -> Result<Option<SyncRefusal>> {
        let conn = self.lock_reader();
        Ok(conn
            .query_row(
                "SELECT rule, message FROM sync_refusals WHERE record_id = ?1",
                [id.as_str()],
                |r| {
                    Ok(SyncRefusal {
                        rule: r.get(0)?,
                        message: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// The persisted sync state of a record (its encoded `automerge::sync::State`), if any.
    pub fn persisted_sync_state(&self, id: &RecordId) -> Result<Option<Vec<u8>>> {
        persisted_state(&self.lock_reader(), id)
    }

    /// What a blob in the blob directory is and its size, from the `blobs` table.
    pub fn blob_info(&self, hash: &BlobHash) -> Result<Option<(BlobRole, u64)>> {
        let conn = self.lock_reader();
        let row: Option<(String, i64)> = conn
            .query_row(
                "SELECT role, size FROM blobs WHERE sha256 = ?1",
                [hash.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(role, size)| {
            let role = match role.as_str() {
                "original" => BlobRole::Original,
                "thumbnail" => BlobRole::Thumbnail,
                "upload" => BlobRole::Upload,
                _ => return None,
            };
            Some((role, size.max(0) as u64))
        }))
    }

    /// What a blob is to the photos of the records held (original, thumbnail or upload copy),
    /// or `None` if no record held refers to it.
    pub fn referenced_blob_role(&self, hash: &BlobHash) -> Result<Option<BlobRole>> {
        let conn = self.lock_reader();
        let (original, thumbnail, upload): (bool, bool, bool) = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM photos WHERE sha256 = ?1),
                    EXISTS (SELECT 1 FROM photos WHERE thumbnail_sha256 = ?1),
                    EXISTS (SELECT 1 FROM photos WHERE upload_sha256 = ?1)",
            [hash.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(if thumbnail {
            Some(BlobRole::Thumbnail)
        } else if upload {
            Some(BlobRole::Upload)
        } else if original {
            Some(BlobRole::Original)
        } else {
            None
        })
    }

    /// Stores a blob downloaded from the server (a partner's thumbnail or photo) in the blob
    /// directory, after checking its bytes against its hash and that a record held refers to
    /// it. Returns its path.
    pub fn put_fetched_blob(&self, hash: &BlobHash, bytes: &[u8]) -> Result<PathBuf> {
        if &BlobHash::of(bytes) != hash {
            return Err(Error::Malformed(format!(
                "the bytes downloaded for blob {hash} do not match its hash"
            )));
        }
        let role = self
            .referenced_blob_role(hash)?
            .ok_or_else(|| Error::NotFound(format!("no record held refers to blob {hash}")))?;
        let mut w = self.lock_writer();
        self.blobs.put(hash, bytes)?;
        let tx = w.conn.transaction()?;
        blobs::record_blob(&tx, hash, bytes.len() as u64, sniff_mime(bytes), role)?;
        tx.commit()?;
        Ok(self.blobs.path(hash))
    }
}

/// The media type of image bytes, from their signature.
fn sniff_mime(bytes: &[u8]) -> &'static str {
    match bytes {
        [0xFF, 0xD8, 0xFF, ..] => "image/jpeg",
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => "image/webp",
        _ => "application/octet-stream",
    }
}
