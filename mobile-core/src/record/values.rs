//! Values stored inside a record document as whole JSON strings (written once, replaced whole),
//! and the read-side views of the per-item answers.

use crate::ids::{BlobHash, InspectorId, ItemCode, NoteId};
use crate::vocab::{FollowUpMeasure, Method, ReviewState};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What the inspectors recorded for one item.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ItemAnswer {
    /// Checked (true), not checked (false), or not answered yet (`None`).
    pub checked: Option<bool>,
    /// Methods used.
    pub methods: BTreeSet<Method>,
    /// What was found (检查情况).
    pub finding: Option<String>,
    /// What was done about it on the spot (处理情况).
    pub disposition: Option<String>,
}

/// Whether an evidence note is a plain note or stands for a copy of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NoteKind {
    /// An inspector's note.
    Note,
    /// A copy of a document (复印件) taken as evidence, signed by a witness when one did.
    DocumentCopy {
        /// Who signed the copy as true to the original (usually someone of the party).
        witness: Option<String>,
    },
}

/// An evidence note (证据记录), tied to an item and optionally to photos.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceNote {
    /// Note id, unique within the record.
    pub id: NoteId,
    /// The item it is evidence for.
    pub item: ItemCode,
    /// Text.
    pub text: String,
    /// Photos (by content hash) that belong to it.
    pub photos: Vec<BlobHash>,
    /// Plain note or document copy.
    #[serde(flatten)]
    pub kind: NoteKind,
    /// Who wrote it.
    pub author: InspectorId,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// GPS position from a photo's EXIF data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gps {
    /// Latitude in degrees, north positive.
    pub latitude: f64,
    /// Longitude in degrees, east positive.
    pub longitude: f64,
}

/// A photo's metadata. The bytes are content-addressed blobs kept outside the document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoMeta {
    /// SHA-256 of the original bytes: the evidence.
    pub sha256: BlobHash,
    /// Size of the original in bytes.
    pub size: u64,
    /// MIME type of the original (`image/jpeg`, `image/png`, `image/webp`).
    pub mime: String,
    /// Width in pixels, as stored (before EXIF rotation).
    pub width: u32,
    /// Height in pixels, as stored.
    pub height: u32,
    /// Capture time from EXIF (local time of the camera, as the camera wrote it).
    pub captured_at: Option<String>,
    /// Position from EXIF.
    pub gps: Option<Gps>,
    /// Item the photo belongs to.
    pub item: ItemCode,
    /// Caption.
    pub caption: String,
    /// Who took or imported it.
    pub taken_by: InspectorId,
    /// When it was imported.
    pub imported_at: DateTime<Utc>,
    /// JPEG thumbnail blob for list screens.
    pub thumbnail_sha256: BlobHash,
    /// Downscaled JPEG blob for upload, when the original exceeds the pixel budget.
    pub upload_sha256: Option<BlobHash>,
}

/// The follow-up measure (后续处置) as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct FollowUp {
    /// Measure chosen, if any.
    pub measure: Option<FollowUpMeasure>,
    /// Deadline, for 责令改正.
    pub deadline: Option<NaiveDate>,
    /// Free text (to which authority, what exactly).
    pub detail: Option<String>,
}

/// An inspector's signature: who signed which state of the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectorSignature {
    /// Who signed.
    pub inspector_id: InspectorId,
    /// Document heads (hex change hashes) the inspector saw when signing.
    pub heads: Vec<String>,
    /// SHA-256 of the record's content at those heads (see `RecordDoc::content_digest`).
    pub content_sha256: String,
    /// When.
    pub signed_at: DateTime<Utc>,
    /// Blob of the handwritten signature image, if one was captured.
    pub image_sha256: Option<BlobHash>,
    /// The signer's Ed25519 public key (hex); empty in signatures made before keys existed.
    #[serde(default)]
    pub public_key: String,
    /// Ed25519 signature (hex) over `signed_bytes` (see `record::signing`); empty in
    /// signatures made before keys existed, which never verify.
    #[serde(default)]
    pub signature: String,
}

/// The party's (被检查人) signature or refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PartySignature {
    /// The party signed.
    Signed {
        /// Name of the person signing for the party.
        name: String,
        /// Their role (法定代表人, 负责人, 委托代理人...).
        role: String,
        /// Heads the party saw.
        heads: Vec<String>,
        /// Content digest at those heads.
        content_sha256: String,
        /// When.
        signed_at: DateTime<Utc>,
        /// Handwritten signature image blob, if captured.
        image_sha256: Option<BlobHash>,
    },
    /// The party refused to sign; the inspector records why (拒绝签字).
    Refused {
        /// Reason or circumstances.
        reason: String,
        /// Inspector who recorded the refusal.
        recorded_by: InspectorId,
        /// When.
        recorded_at: DateTime<Utc>,
    },
}

/// A phone's submission of one round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// Round number: 1 for the first submission, one more after every return.
    pub round: u64,
    /// Inspector who pressed submit.
    pub by: InspectorId,
    /// When.
    pub at: DateTime<Utc>,
    /// Heads submitted.
    pub heads: Vec<String>,
}

/// One step of the review history, written by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewEvent {
    /// State the record entered.
    pub state: ReviewState,
    /// Submission round this concerns.
    pub round: u64,
    /// Who acted (a supervisor's user id, or `server`).
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Comments (why returned, remarks on approval).
    pub comment: Option<String>,
}

/// The review part as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Review {
    /// Current state.
    pub state: ReviewState,
    /// The submission round the state refers to (0 before the first submission).
    pub round: u64,
    /// History, oldest first.
    pub history: Vec<ReviewEvent>,
}
