//! The sync wire format, version [`PROTOCOL_VERSION`]: what a phone and the
//! server send each other in `POST /api/v1/sync`, as CBOR
//! ([`CONTENT_TYPE`]).
//!
//! A sync is a few rounds of one HTTP request each. In every round the phone
//! sends the records it holds (with their heads) and, for each record with
//! something to say, one `automerge::sync` message. The server checks and
//! applies the messages, then answers with its own sync messages, the full
//! documents of records newly assigned to the phone, and the records the
//! phone must drop because their assignment was withdrawn. The phone stops
//! when the server says it is in sync and the phone has no message left to
//! send.
//!
//! A request the server refuses (a change that breaks a rule) is answered
//! with a 4xx and a JSON body `{"error": {"code", "message", "rule",
//! "record_id"}}` ([`Refusal`]); nothing of that request is stored.

use serde::{Deserialize, Serialize};

/// Version of this wire format.
pub const PROTOCOL_VERSION: u32 = 1;

/// Media type of request and response bodies.
pub const CONTENT_TYPE: &str = "application/cbor";

/// Path of the sync endpoint.
pub const SYNC_PATH: &str = "/api/v1/sync";

/// A record the phone holds, and its heads (hex change hashes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRecord {
    /// Record id.
    pub record_id: String,
    /// Current heads of the phone's copy.
    pub heads: Vec<String>,
}

/// One `automerge::sync::Message` (encoded) for one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocMessage {
    /// Record id.
    pub record_id: String,
    /// `automerge::sync::Message::encode()`.
    #[serde(with = "serde_bytes")]
    pub message: Vec<u8>,
}

/// A whole record document, for a record the phone does not hold yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRecord {
    /// Record id.
    pub record_id: String,
    /// `RecordDoc::save()` bytes.
    #[serde(with = "serde_bytes")]
    pub document: Vec<u8>,
}

/// What a phone sends in one round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The phone's device id (hex, as in its actor id); the server keeps its
    /// sync state per (record, device).
    pub device: String,
    /// Round number within this sync, from 1 (for logs).
    pub round: u32,
    /// Every record the phone holds.
    pub held: Vec<HeldRecord>,
    /// At most one sync message per record.
    pub messages: Vec<DocMessage>,
}

/// What the server answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// Sync messages for records the phone holds.
    pub messages: Vec<DocMessage>,
    /// Records assigned to the phone's inspector that it does not hold.
    pub new_records: Vec<NewRecord>,
    /// Records the phone holds that are no longer assigned to it: drop them
    /// and everything of them.
    pub withdrawn: Vec<String>,
    /// Records whose phone changes the server accepted in this round.
    pub accepted: Vec<String>,
    /// The server has nothing more to send: once the phone also has no
    /// message to send, the sync is complete.
    pub in_sync: bool,
    /// Blobs that records the phone listed without a message refer to and the server does
    /// not hold (lost with a restored backup, say): a phone that holds one queues it for
    /// upload again. Absent from older servers' answers.
    #[serde(default)]
    pub missing_blobs: Vec<String>,
}

/// Path of the batch upload of small blobs (`POST`, a [`BlobBatch`] answered by a
/// [`BlobBatchResponse`], both CBOR).
pub const BLOB_BATCH_PATH: &str = "/api/v1/blobs";

/// Largest blob sent in a batch; larger ones go up in resumable chunks.
pub const BATCH_BLOB_MAX: usize = 256 * 1024;

/// Most bytes of blobs in one batch, each counted with [`BATCH_BLOB_OVERHEAD`].
pub const BATCH_BYTES_MAX: usize = 2 * 1024 * 1024;

/// What one blob adds to a batch besides its bytes (its name and the CBOR framing), rounded
/// up; a batch's body is at most [`BATCH_BYTES_MAX`] plus a little.
pub const BATCH_BLOB_OVERHEAD: usize = 128;

/// Several small blobs uploaded whole in one request. Each is checked and stored on its
/// own: one whose bytes do not match its name is refused without holding up the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobBatch {
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The blobs, each at most [`BATCH_BLOB_MAX`] bytes.
    pub blobs: Vec<WholeBlob>,
}

/// One blob of a [`BlobBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WholeBlob {
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// The bytes.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// The server's answer to a [`BlobBatch`]: one outcome per blob, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobBatchResponse {
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// One per blob sent.
    pub results: Vec<BlobOutcome>,
}

/// What became of one blob of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobOutcome {
    /// The blob.
    pub sha256: String,
    /// Whether the server now holds it whole (stored now or before).
    pub stored: bool,
    /// Why it was not stored: the HTTP status a single upload would have had (413, 422)
    /// and the error.
    #[serde(default)]
    pub refused: Option<(u16, Refusal)>,
}

/// Why the server refused a request (the `error` object of a 4xx body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Machine code: `refused`, `forbidden`, `not_found`, `malformed` …
    pub code: String,
    /// What was wrong, for people.
    pub message: String,
    /// The rule broken, when a change was refused (see [`rules`]).
    #[serde(default)]
    pub rule: Option<String>,
    /// The record concerned.
    #[serde(default)]
    pub record_id: Option<String>,
}

/// Names of the rules the server enforces on incoming changes.
pub mod rules {
    /// The record is not assigned to the caller's inspector.
    pub const NOT_ASSIGNED: &str = "not_assigned";
    /// No such record.
    pub const UNKNOWN_RECORD: &str = "unknown_record";
    /// A sync message could not be decoded or applied.
    pub const MALFORMED_MESSAGE: &str = "malformed_message";
    /// A change is not by the actor of the session's inspector on the session's device (the
    /// server's actor, a partner's, another device's), is by someone outside the record's
    /// group, or wrote what only the server may write (assignment, review).
    pub const WRITER: &str = "writer";
    /// A value has the wrong shape.
    pub const SHAPE: &str = "shape";
    /// A signature written does not verify against a key registered for its inspector,
    /// or does not cover the heads and content it names.
    pub const SIGNATURE: &str = "signature";
    /// The record is approved or published and takes no more changes.
    pub const RECORD_CLOSED: &str = "record_closed";
}

/// Encodes a value as CBOR.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

/// Decodes CBOR.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    ciborium::from_reader(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_carry_bytes_compactly() {
        let request = SyncRequest {
            protocol: PROTOCOL_VERSION,
            device: "ab12".into(),
            round: 1,
            held: vec![HeldRecord {
                record_id: "r1-2".into(),
                heads: vec!["00".repeat(32)],
            }],
            messages: vec![DocMessage {
                record_id: "r1-2".into(),
                message: vec![7u8; 1000],
            }],
        };
        let bytes = encode(&request);
        assert!(
            bytes.len() < 1000 + 200,
            "bytes are not inflated: {}",
            bytes.len()
        );
        assert_eq!(decode::<SyncRequest>(&bytes).unwrap(), request);
        assert!(decode::<SyncRequest>(&bytes[..bytes.len() / 2]).is_err());
    }
}
