//! The shared phone core of suiji: what an inspector's phone holds and edits offline.
//!
//! - [`record`]: the inspection record document (automerge), used by phones and the server.
//! - [`vocab`], [`ids`]: the closed vocabularies and newtype ids the record speaks.
//! - [`sync`]: the sync wire format, shared with the server, and (feature `phone`) the
//!   phone's HTTP sync client.
//! - `store` (feature `phone`, on by default): the phone's local SQLite store, blob directory,
//!   photo import, outbox and sync rounds. The server depends on this crate with `default-features = false`
//!   and gets only the document model.

pub mod error;
pub mod ids;
pub mod record;
pub mod sync;
pub mod vocab;

#[cfg(feature = "phone")]
pub mod photo;
#[cfg(feature = "phone")]
pub mod store;

pub use error::{Error, Result};
pub use ids::{BlobHash, InspectorId, ItemCode, NoteId, RecordId};
pub use record::{Assignment, RecordDoc};
#[cfg(feature = "phone")]
pub use store::{Store, StoreOptions};

/// Version of the inspection record document schema this crate reads and writes.
pub const RECORD_SCHEMA_VERSION: u64 = 1;
