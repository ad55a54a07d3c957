//! A phone held in memory: one inspector's record documents and sync states, synced through
//! the server's own [`crate::sync::exchange`] with no HTTP and no phone store.
//!
//! The demo walks its records through inspection with it (it seeds before the server
//! listens), and tests use it where the real phone store would add nothing but weight.
//! Phones in the field run `suiji-mobile-core`'s store and sync client instead.

use std::collections::HashMap;

use crate::store::sql::Tx;
use automerge::sync::{Message, State, SyncDoc};
use suiji_mobile_core::record::{InspectorSignature, SigningKey};
use suiji_mobile_core::sync::complete_message;
use suiji_mobile_core::sync::wire::{
    DocMessage, HeldRecord, PROTOCOL_VERSION, SyncRequest, SyncResponse,
};
use suiji_mobile_core::{InspectorId, RecordDoc};

use crate::error::{Error, Result};
use crate::sync::Syncer;

/// Most rounds [`MemoryPhone::sync`] runs before it gives up.
pub const MAX_ROUNDS: u32 = 10;

/// One inspector's phone in memory.
pub struct MemoryPhone {
    /// The inspector's id in the directory.
    pub inspector: i64,
    /// The device id the phone syncs as (even-length lowercase hex).
    pub device: String,
    /// The inspector's signing key on this phone.
    pub key: SigningKey,
    /// The record documents held, by record id.
    pub docs: HashMap<String, RecordDoc>,
    /// The automerge sync state with the server, by record id.
    pub states: HashMap<String, State>,
}

impl MemoryPhone {
    /// An empty phone of `inspector` syncing as `device` (even-length lowercase hex), with a
    /// fresh signing key.
    pub fn new(inspector: i64, device: &str) -> Result<MemoryPhone> {
        crate::auth::check_device_id(device)?;
        Ok(MemoryPhone {
            inspector,
            device: device.to_owned(),
            key: SigningKey::from_bytes(&crate::auth::random_bytes::<32>()?),
            docs: HashMap::new(),
            states: HashMap::new(),
        })
    }

    /// Who the server takes this phone's rounds from.
    pub fn syncer(&self) -> Syncer {
        Syncer {
            inspector_id: self.inspector,
            device_id: self.device.clone(),
        }
    }

    /// Registers this phone's signing key for its inspector, as the inspector's login on the
    /// phone does (without a session: the demo seeds before anyone logs in).
    pub fn register_key(&self, tx: &Tx<'_>) -> Result<()> {
        let public_key = suiji_mobile_core::record::public_key_hex(&self.key.verifying_key());
        crate::signing::register_key(tx, self.inspector, &self.device, None, &public_key)?;
        Ok(())
    }

    /// Signs record `id` as this phone's inspector with its key.
    pub fn sign(&mut self, id: &str) -> Result<InspectorSignature> {
        let me = self.inspector_id();
        let key = self.key.clone();
        self.doc(id)?.sign(&me, &key, None).map_err(invalid)
    }

    /// The inspector as the record documents name them.
    pub fn inspector_id(&self) -> InspectorId {
        InspectorId::new(self.inspector.to_string())
    }

    /// The document of record `id`, if the phone holds it.
    pub fn doc(&mut self, id: &str) -> Result<&mut RecordDoc> {
        self.docs
            .get_mut(id)
            .ok_or_else(|| Error::NotFound(format!("the phone does not hold record {id}")))
    }

    /// The request of round `round`: every record held with its heads, and a sync message for
    /// each record with something to say.
    pub fn request(&mut self, round: u32) -> SyncRequest {
        let mut held = Vec::new();
        let mut messages = Vec::new();
        for (id, doc) in &mut self.docs {
            held.push(HeldRecord {
                record_id: id.clone(),
                heads: doc.heads_hex(),
            });
            let state = self.states.entry(id.clone()).or_default();
            let sent_before = state.sent_hashes.clone();
            let generated = doc.automerge_mut().sync().generate_sync_message(state);
            if let Some(mut m) = generated {
                // As the phone's own sync client does: without it, a change the server's
                // Bloom filter falsely claims (about 1 %) is held back for good, and every
                // change after it is dropped by the server for its missing dependency.
                complete_message(doc.automerge_mut(), state, &sent_before, &mut m);
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

    /// Takes in the server's answer: drops withdrawn records, keeps new ones (writing as this
    /// inspector on this device from then on) and applies the messages.
    pub fn apply(&mut self, response: SyncResponse) -> Result<()> {
        for id in response.withdrawn {
            self.docs.remove(&id);
            self.states.remove(&id);
        }
        let actor = self.syncer().actor();
        for new in response.new_records {
            let mut doc = RecordDoc::load(&new.document).map_err(invalid)?;
            doc.set_actor(actor.clone());
            self.docs.insert(new.record_id, doc);
        }
        for m in response.messages {
            let message = Message::decode(&m.message)
                .map_err(|e| Error::Internal(format!("sync message from the server: {e}")))?;
            let state = self.states.entry(m.record_id.clone()).or_default();
            let doc = self.docs.get_mut(&m.record_id).ok_or_else(|| {
                Error::Internal(format!("a message for record {} not held", m.record_id))
            })?;
            doc.automerge_mut()
                .sync()
                .receive_sync_message(state, message)
                .map_err(|e| invalid(e.into()))?;
        }
        Ok(())
    }

    /// Rounds through `exchange` (the server's side: usually [`crate::sync::exchange`] in a
    /// write transaction) until neither side has anything to say; returns how many it took.
    pub fn sync(
        &mut self,
        mut exchange: impl FnMut(SyncRequest) -> Result<SyncResponse>,
    ) -> Result<u32> {
        for round in 1..=MAX_ROUNDS {
            let request = self.request(round);
            let nothing_to_send = request.messages.is_empty();
            let response = exchange(request)?;
            let done = response.in_sync && nothing_to_send;
            self.apply(response)?;
            if done {
                return Ok(round);
            }
        }
        Err(Error::Internal(format!(
            "the phone's sync did not converge in {MAX_ROUNDS} rounds"
        )))
    }
}

fn invalid(e: suiji_mobile_core::Error) -> Error {
    Error::Internal(format!("record document from the server: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::sync::SyncMemory;
    use rand_chacha::ChaCha8Rng;
    use rand_core::{Rng, SeedableRng};

    /// Two partners edit the records they share on their phones, each between the other's
    /// syncs, so every round a phone sends is checked against a server Bloom filter holding
    /// the partner's changes. About 1 % of a phone's changes look held by the server; each
    /// sync has to converge all the same. Seeded, so a failure is the same failure again
    /// (change hashes still vary with the clock, so each run draws other false positives).
    #[test]
    fn partners_editing_between_each_others_syncs_always_converge() {
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
        let group = records[0].group.clone();
        let memory = SyncMemory::default();
        let mut phones = [
            MemoryPhone::new(group[0], "aa01").unwrap(),
            MemoryPhone::new(group[1], "bb02").unwrap(),
        ];
        let sync = |phone: &mut MemoryPhone| {
            let syncer = phone.syncer();
            phone.sync(|request| {
                db.write_blocking(|tx| crate::sync::exchange(tx, &memory, &syncer, request))
            })
        };
        for phone in &mut phones {
            sync(phone).unwrap();
        }
        let shared: Vec<String> = phones[0]
            .docs
            .keys()
            .filter(|id| phones[1].docs.contains_key(*id))
            .cloned()
            .collect();
        let shared: Vec<String> = shared
            .into_iter()
            .filter(|id| phones[0].docs[id].is_editable().unwrap())
            .collect();
        assert!(!shared.is_empty(), "the partners share open records");
        let mut rng = ChaCha8Rng::seed_from_u64(18);
        let mut changes = 0;
        for turn in 0..120 {
            let phone = &mut phones[turn % 2];
            // A few chained edits: a hidden one holds back the ones after it.
            for _ in 0..4 {
                let id = &shared[rng.next_u32() as usize % shared.len()];
                let doc = phone.doc(id).unwrap();
                let items = doc.assignment().unwrap().items;
                let item = &items[rng.next_u32() as usize % items.len()].code;
                doc.set_finding(item, &format!("第{turn}轮记录{}", rng.next_u32()))
                    .unwrap();
                changes += 1;
            }
            if let Err(e) = sync(phone) {
                panic!("turn {turn}, after {changes} changes: {e}");
            }
        }
        for phone in &mut phones {
            sync(phone).unwrap();
        }
        for id in &shared {
            let heads = phones[0].doc(id).unwrap().heads_hex();
            assert_eq!(phones[1].doc(id).unwrap().heads_hex(), heads, "{id}");
        }
    }
}
