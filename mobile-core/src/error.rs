//! The one error type of mobile-core.

/// Everything that can go wrong in mobile-core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The automerge document could not be read, loaded or changed.
    #[error("record document: {0}")]
    Automerge(#[from] automerge::AutomergeError),

    /// A value stored as JSON inside a document, or handed in as JSON, does not parse.
    #[error("malformed JSON value: {0}")]
    Json(#[from] serde_json::Error),

    /// The document does not have the shape of an inspection record (missing or mistyped field).
    #[error("malformed record document: {0}")]
    Malformed(String),

    /// The document was written by a newer schema than this build understands.
    #[error("record schema version {found} is newer than this build's {supported}")]
    UnsupportedSchema {
        /// Version found in the document.
        found: u64,
        /// Newest version this build reads.
        supported: u64,
    },

    /// A caller handed in a value that is not allowed (unknown item, empty text, bad date...).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The record, item, photo, note or blob asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),

    /// The record may not be edited in its current state (submitted and not returned, approved,
    /// published).
    #[error("record {record} is {status} and cannot be edited")]
    NotEditable {
        /// The record.
        record: String,
        /// Its current status code.
        status: String,
    },

    /// A review step was asked for in a state that does not allow it (e.g. approving a record
    /// that was never submitted).
    #[error("cannot {action} a record that is {state}")]
    WrongState {
        /// What was attempted.
        action: String,
        /// The record's state.
        state: String,
    },

    /// The store belongs to another inspector than the one opening it.
    #[cfg(feature = "phone")]
    #[error("this store belongs to inspector {stored}, not {given}")]
    WrongInspector {
        /// Inspector recorded in the store.
        stored: String,
        /// Inspector who tried to open it.
        given: String,
    },

    /// The photo is larger than the configured limit.
    #[cfg(feature = "phone")]
    #[error("photo is {size} bytes, over the limit of {limit} bytes")]
    PhotoTooLarge {
        /// Size of the bytes handed in.
        size: usize,
        /// Configured limit.
        limit: usize,
    },

    /// The bytes are not an image of an accepted kind (JPEG, PNG, WebP).
    #[cfg(feature = "phone")]
    #[error("not an accepted photo: {0}")]
    UnsupportedImage(String),

    /// The bytes claim to be an accepted image but do not decode (corrupt or truncated).
    #[cfg(feature = "phone")]
    #[error("photo does not decode: {0}")]
    BadImage(#[source] image::ImageError),

    /// The local SQLite database failed.
    #[cfg(feature = "phone")]
    #[error("local database: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// Reading or writing the blob directory failed.
    #[cfg(feature = "phone")]
    #[error("blob directory: {0}")]
    Io(#[from] std::io::Error),

    /// The operating system's random source failed (needed for a device id).
    #[cfg(feature = "phone")]
    #[error("random source: {0}")]
    Random(String),

    /// An inspector who has not logged in on this phone tried to sign on it: they log in here
    /// with their own password first, which registers their signing key for this device.
    #[cfg(feature = "phone")]
    #[error("inspector {inspector} has not logged in on this phone: log in here to sign")]
    SignerNotLoggedIn {
        /// The inspector who tried to sign.
        inspector: String,
    },

    /// Another sync of this store is still running: wait for it to end.
    #[cfg(feature = "phone")]
    #[error("a sync of this store is already running")]
    SyncRunning,

    /// The server could not be reached, or the connection broke or timed out before its answer
    /// was read. Nothing of the round that failed was applied: retry later.
    #[cfg(feature = "phone")]
    #[error("network: {0}")]
    Network(String),

    /// The sync listener asked to stop ([`crate::sync::SyncListener::is_cancelled`]). Every
    /// round applied before it stays applied, and nothing half-done was kept: sync again later.
    #[cfg(feature = "phone")]
    #[error("the sync was cancelled")]
    Cancelled,

    /// The server no longer accepts this login (the access token was refused and could not be
    /// refreshed): the inspector must log in again.
    #[cfg(feature = "phone")]
    #[error("not logged in: {0}")]
    Unauthorized(String),

    /// The server answered with an error the client cannot work around (a malformed request,
    /// a forbidden download, an oversize body, a server failure).
    #[cfg(feature = "phone")]
    #[error("server answered {status} ({code}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Machine code from the error body (`internal`, `forbidden`…), or `http` when the
        /// body had none.
        code: String,
        /// What the server said.
        message: String,
    },
}

/// Result with mobile-core's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
