//! Syncing records between phones and the server: the wire format both sides speak
//! ([`wire`]) and, on phones, the HTTP client that runs a sync (`client`, feature `phone`).

pub mod wire;

#[cfg(feature = "phone")]
pub mod client;

#[cfg(feature = "phone")]
pub use client::{
    Client, Credentials, FailedBlob, RefusedRecord, SyncListener, SyncProgress, SyncReport,
    fetch_blob, sync,
};

#[cfg(all(test, feature = "phone"))]
mod tests;
