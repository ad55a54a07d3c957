//! Syncing records between phones and the server: the wire format both sides speak
//! ([`wire`]) and, on phones, the HTTP client that runs a sync (`client`, feature `phone`)
//! and the session the store keeps for it (`session`).

pub mod wire;

use automerge::sync::{Message, MessageVersion, State};
use automerge::{AutoCommit, ChangeHash};
use std::collections::BTreeSet;

#[cfg(feature = "phone")]
pub mod client;
#[cfg(feature = "phone")]
pub mod session;

#[cfg(feature = "phone")]
pub use client::{
    Client, Credentials, FailedBlob, RefusedRecord, SyncListener, SyncOptions, SyncProgress,
    SyncReport, fetch_blob, sync,
};

/// Makes a message carry every change the peer lacks, in the smaller of two forms: the
/// changes themselves, or the whole document.
///
/// Call it on every message generated. The server applies each message to a copy of its
/// document and keeps the copy only if it changed and passed its checks, so a change whose
/// dependencies are not on the server yet is dropped rather than queued. automerge picks the
/// changes to send by the peer's Bloom filter, whose false positives (about 1 %) can hold
/// back a dependency; it then believes the dependent change delivered and never sends it
/// again, and the sync stalls; and a false positive on a change with nothing depending on it
/// leaves the message without it, which costs a round trip. So when the peer's heads are
/// known, any change not below them that the message does not carry is added, to a message
/// automerge made without changes too. automerge also sends the whole document whenever the
/// peer lacks more than a third of its changes, which for a record (a large assignment, then
/// many small edits) is often several times the size of the edits; then the changes go
/// instead.
pub fn complete_message(
    automerge: &mut AutoCommit,
    state: &mut State,
    sent_before: &BTreeSet<ChangeHash>,
    message: &mut Message,
) {
    let Some(theirs) = state.their_heads.clone() else {
        return;
    };
    if message.changes.is_empty() && {
        let mut sorted = theirs.clone();
        sorted.sort();
        sorted == automerge.get_heads()
    } {
        return; // the peer holds what this side holds: nothing can be missing
    }
    // What the peer surely holds: its heads that are known here, and the heads both sides
    // last shared (its other heads are changes it has and this side has not seen yet).
    let mut known: Vec<ChangeHash> = theirs
        .into_iter()
        .chain(state.shared_heads.iter().copied())
        .filter(|h| automerge.get_change_meta_by_hash(h).is_some())
        .collect();
    known.sort();
    known.dedup();
    let missing = automerge.get_changes(&known);
    let carried = |h: &ChangeHash| state.sent_hashes.contains(h) && !sent_before.contains(h);
    let changes_len: usize = missing.iter().map(|c| c.raw_bytes().len()).sum();
    let message_len: usize = message.changes.iter().map(<[u8]>::len).sum();
    if missing.iter().all(|c| carried(&c.hash())) && message_len <= changes_len {
        return;
    }
    let mut changes = Vec::with_capacity(changes_len);
    for change in &missing {
        changes.extend_from_slice(change.raw_bytes());
    }
    let whole = automerge.save();
    if whole.len() < changes.len() {
        message.changes = vec![whole].into();
        state
            .sent_hashes
            .extend(automerge.get_changes(&[]).iter().map(|c| c.hash()));
    } else {
        message.changes = vec![changes].into();
        state.sent_hashes.extend(missing.iter().map(|c| c.hash()));
    }
    message.version = MessageVersion::V2;
}

#[cfg(all(test, feature = "phone"))]
mod tests;
