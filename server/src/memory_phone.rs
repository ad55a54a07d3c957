//! A phone held in memory: one inspector's record documents and sync states, synced through
//! the server's own [`crate::sync::exchange`] with no HTTP and no phone store.
//!
//! The demo walks its records through inspection with it (it seeds before the server
//! listens), and tests use it where the real phone store would add nothing but weight.
//! Phones in the field run `suiji-mobile-core`'s store and sync client instead.

use std::collections::HashMap;

use automerge::sync::{Message, State, SyncDoc};
use rusqlite::Transaction;
use suiji_mobile_core::record::{InspectorSignature, SigningKey};
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
    pub fn register_key(&self, tx: &Transaction<'_>) -> Result<()> {
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
