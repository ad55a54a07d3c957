//! The phone's sync client: runs a whole sync with the server over HTTP (blocking, `ureq`).
//!
//! A sync is a few rounds of `POST /api/v1/sync` (see [`wire`]). Each round the store lists
//! what it holds and generates its `automerge::sync` messages ([`Store::prepare_round`]); the
//! answer is applied in one transaction ([`Store::apply_round`]). The phone stops once it has
//! no message left after applying an answer — the server answers every record whose heads
//! differ from the phone's, so a phone with nothing left to say holds what the server holds —
//! unless that answer brought new or withdrawn records without `in_sync` (the server may hand
//! them over in batches). Rounds are capped at [`MAX_ROUNDS`].
//!
//! How each answer is handled:
//! - 200: applied; a malformed body is an [`Error::Server`] and nothing is applied.
//! - 401: the tokens are refreshed once (`POST /api/v1/auth/refresh`) and the same request is
//!   sent again; a 400, 401 or 403 from the refresh, or a 401 again after it, is
//!   [`Error::Unauthorized`] (the kept session is then forgotten: `sync::session`).
//! - 422 (a change broke a rule), 403 (`not_assigned`) or 404 (`unknown_record`) naming a
//!   record this round carried a message for: nothing of the round was stored, so the round
//!   is dropped, the record is marked refused (rule and message, shown in the task list) with
//!   its local changes kept, and the sync goes on without it. Naming no such record: an
//!   [`Error::Server`].
//! - anything else: [`Error::Server`]; a broken or timed-out connection: [`Error::Network`].
//!   Either way the store is as it was before the failed round and the sync can be retried.
//!
//! After the records, the blobs in the outbox are uploaded (thumbnails first): ask the server
//! how much it has, send the rest in [`CHUNK_SIZE`] chunks, clear the outbox entry once the
//! server reports the blob complete. A 409 (the server holds a different amount) re-asks and
//! continues; a 413 or 422 for one blob is reported in [`SyncReport::blobs_failed`] and the
//! blob stays queued.
//!
//! Everything blocks: call it from a background thread (`spawn_blocking` in async code).

use crate::error::{Error, Result};
use crate::ids::{BlobHash, InspectorId, RecordId};
use crate::store::{BlobRole, OutboxEntry, OutboxItem, Store, SyncRefusal};
use crate::sync::wire::{self, CONTENT_TYPE, Refusal, SYNC_PATH, SyncRequest, SyncResponse, rules};
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

/// Most rounds one sync sends before it stops and reports itself incomplete.
pub const MAX_ROUNDS: u32 = 10;

/// Size of the chunks blobs are uploaded in (the server takes up to 4 MiB).
pub const CHUNK_SIZE: usize = 256 * 1024;

/// Largest sync answer read (new records come whole).
const MAX_SYNC_ANSWER: u64 = 256 * 1024 * 1024;
/// Largest blob downloaded.
const MAX_BLOB: u64 = 64 * 1024 * 1024;
/// Largest small JSON answer (auth, blob status, errors).
const MAX_SMALL_ANSWER: u64 = 1024 * 1024;
/// Times a blob upload re-asks the server's status after a 409 before giving up on it.
const MAX_BLOB_CONFLICTS: u32 = 3;

/// Path of the token refresh endpoint.
pub const REFRESH_PATH: &str = "/api/v1/auth/refresh";
/// Path of the login endpoint.
pub const LOGIN_PATH: &str = "/api/v1/auth/login";
/// Path of the logout endpoint.
pub const LOGOUT_PATH: &str = "/api/v1/auth/logout";
/// Path where an inspector registers a signing key for the device of their session.
pub const SIGNING_KEYS_PATH: &str = "/api/v1/signing-keys";
/// Path prefix of the blob endpoints.
pub const BLOBS_PATH: &str = "/api/v1/blobs";

/// An inspector's tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Bearer token for API calls.
    pub access_token: String,
    /// Token that buys a new pair when the access token expires; each works once.
    pub refresh_token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

/// How a client waits on the server. A request that fails a timeout is an [`Error::Network`],
/// with the store as it was before the failed round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOptions {
    /// Longest wait to open a connection.
    pub connect_timeout: Duration,
    /// Longest wait for each read or write on a connection: a server that accepts and then
    /// stays silent fails the request after this.
    pub io_timeout: Duration,
}

impl Default for SyncOptions {
    /// 20 s to connect, 60 s for each read or write.
    fn default() -> Self {
        SyncOptions {
            connect_timeout: Duration::from_secs(20),
            io_timeout: Duration::from_secs(60),
        }
    }
}

/// How far a sync has got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncProgress {
    /// Rounds sent so far.
    pub round: u32,
    /// Records with nothing left to exchange.
    pub documents_done: u32,
    /// Records held.
    pub documents_total: u32,
    /// Blob bytes the server holds, of those queued for upload.
    pub bytes_done: u64,
    /// Blob bytes queued for upload.
    pub bytes_total: u64,
}

/// Told about a sync as it runs. Every method does nothing by default; `()` listens to nothing.
pub trait SyncListener {
    /// Called after every round and every blob chunk.
    fn progress(&self, progress: &SyncProgress) {
        let _ = progress;
    }

    /// Called as soon as the tokens were refreshed: the old refresh token no longer works, so
    /// store these now (the sync may still fail later).
    fn credentials_refreshed(&self, credentials: &Credentials) {
        let _ = credentials;
    }

    /// Asked before every request of a sync (each round, blob batch, chunk and status query):
    /// `true` stops the sync there with [`Error::Cancelled`]. A request already under way is
    /// not interrupted; it ends with its answer or the client's timeouts.
    fn is_cancelled(&self) -> bool {
        false
    }
}

impl SyncListener for () {}

/// A record the server refused in this sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRecord {
    /// The record.
    pub record_id: RecordId,
    /// The rule broken (`wire::rules`).
    pub rule: String,
    /// What the server said.
    pub message: String,
}

/// A blob that could not be uploaded; it stays in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedBlob {
    /// The blob.
    pub sha256: BlobHash,
    /// Why.
    pub reason: String,
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Requests to the sync endpoint (refused ones included).
    pub rounds: u32,
    /// Every HTTP request the sync made: its rounds, blob uploads and status queries, and a
    /// token refresh.
    pub http_requests: u32,
    /// Whether phone and server ended in step (false when the round cap was reached).
    pub complete: bool,
    /// Records new to the phone or changed by the server.
    pub received: Vec<RecordId>,
    /// Of those, the records new to the phone.
    pub new_records: Vec<RecordId>,
    /// Records whose phone changes the server stored.
    pub sent: Vec<RecordId>,
    /// Records whose changes the server refused, and why.
    pub refused: Vec<RefusedRecord>,
    /// Records dropped because their assignment was withdrawn.
    pub withdrawn: Vec<RecordId>,
    /// Blobs the server now holds whole (uploaded or found there).
    pub blobs_uploaded: Vec<BlobHash>,
    /// Blobs that could not be uploaded.
    pub blobs_failed: Vec<FailedBlob>,
    /// Blobs the server had lost (its records refer to them, it lacks their bytes) that this
    /// phone held and queued again; they are among the uploads of this sync.
    pub blobs_requeued: Vec<BlobHash>,
    /// HTTP body bytes sent (all of them, blob uploads included).
    pub bytes_sent: u64,
    /// Of those, the bytes of blob uploads.
    pub blob_bytes_sent: u64,
    /// HTTP body bytes received.
    pub bytes_received: u64,
    /// The new tokens, if they were refreshed.
    pub credentials: Option<Credentials>,
}

/// A server's answer, read whole.
pub(crate) struct Answer {
    /// HTTP status.
    pub(crate) status: u16,
    /// Body.
    pub(crate) body: Vec<u8>,
}

impl Answer {
    /// The error object of a JSON error body, if it has one.
    fn refusal(&self) -> Option<Refusal> {
        #[derive(Deserialize)]
        struct Body {
            error: Refusal,
        }
        serde_json::from_slice::<Body>(&self.body)
            .ok()
            .map(|b| b.error)
    }

    /// This answer as an error.
    fn into_error(self) -> Error {
        if self.status == 401 {
            let message = self
                .refusal()
                .map_or_else(|| "the server refused the login".to_owned(), |r| r.message);
            return Error::Unauthorized(message);
        }
        match self.refusal() {
            Some(r) => Error::Server {
                status: self.status,
                code: r.code,
                message: r.message,
            },
            None => Error::Server {
                status: self.status,
                code: "http".into(),
                message: String::from_utf8_lossy(&self.body[..self.body.len().min(500)])
                    .into_owned(),
            },
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Server {
            status: self.status,
            code: "malformed_response".into(),
            message: format!("{what}: {e}"),
        })
    }
}

/// A request.
#[derive(Clone, Copy)]
enum Call<'a> {
    Get(&'a str),
    Post(&'a str, &'a [u8], &'a str),
    Put(&'a str, &'a [u8]),
}

/// How much of a blob the server holds.
#[derive(Debug, Clone, Copy, Deserialize)]
struct BlobStatus {
    received: u64,
    complete: bool,
}

/// One sync's tallies: the report being built and the progress told to the listener.
pub(crate) struct Tally<'a> {
    pub(crate) listener: &'a dyn SyncListener,
    pub(crate) report: SyncReport,
    pub(crate) progress: SyncProgress,
}

impl<'a> Tally<'a> {
    pub(crate) fn new(listener: &'a dyn SyncListener) -> Tally<'a> {
        Tally {
            listener,
            report: SyncReport::default(),
            progress: SyncProgress::default(),
        }
    }

    fn tick(&self) {
        self.listener.progress(&self.progress);
    }
}

/// The HTTP side of one sync or download: the tokens (refreshed in place), the bytes moved,
/// and the connections to use.
struct Http<'a> {
    credentials: &'a mut Credentials,
    listener: &'a dyn SyncListener,
    /// Connections of their own, once a refused request may have left the client's pooled
    /// one closing (see [`Client::send`]).
    agent: Option<ureq::Agent>,
    refreshed: bool,
    requests: u32,
    bytes_sent: u64,
    bytes_received: u64,
}

impl<'a> Http<'a> {
    fn new(credentials: &'a mut Credentials, listener: &'a dyn SyncListener) -> Http<'a> {
        Http {
            credentials,
            listener,
            agent: None,
            refreshed: false,
            requests: 0,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }
}

/// A client for one server. Cheap to clone; keeps connections open between requests.
#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    connect: Duration,
    io: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

impl Client {
    /// A client for the server at `server_url` (`http://` or `https://`, with or without a
    /// trailing slash), with 20 s to connect and 60 s for each read or write.
    pub fn new(server_url: &str) -> Result<Client> {
        Client::with_options(server_url, &SyncOptions::default())
    }

    /// A client with the timeouts of `options`.
    pub fn with_options(server_url: &str, options: &SyncOptions) -> Result<Client> {
        Client::with_timeouts(server_url, options.connect_timeout, options.io_timeout)
    }

    /// The server's address, without a trailing slash.
    pub fn server_url(&self) -> &str {
        &self.base
    }

    /// A client with its own timeouts: `connect` to open a connection, `io` for each read or
    /// write on it.
    pub fn with_timeouts(server_url: &str, connect: Duration, io: Duration) -> Result<Client> {
        let base = server_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::InvalidInput(format!(
                "server address {server_url:?} is not an http:// or https:// URL"
            )));
        }
        Ok(Client {
            base: base.to_owned(),
            agent: new_agent(connect, io),
            connect,
            io,
        })
    }

    /// Runs a whole sync of `store` (see the module documentation). `credentials` are updated
    /// in place when refreshed (and reported to `listener` at once).
    pub fn sync(
        &self,
        store: &Store,
        credentials: &mut Credentials,
        listener: &dyn SyncListener,
    ) -> Result<SyncReport> {
        let mut http = Http::new(credentials, listener);
        let mut tally = Tally::new(listener);
        let mut queued = queued_blobs(store)?;
        tally.progress.bytes_total = queued.iter().map(|(_, size)| size).sum();
        run_rounds(store, &mut tally, &mut |request| {
            let body = wire::encode(request);
            self.authorized(
                &mut http,
                MAX_SYNC_ANSWER,
                Call::Post(SYNC_PATH, &body, CONTENT_TYPE),
            )
        })?;
        if !tally.report.blobs_requeued.is_empty() {
            queued = queued_blobs(store)?;
            tally.progress.bytes_total = queued.iter().map(|(_, size)| size).sum();
        }
        self.upload_blobs(store, &queued, &mut http, &mut tally)?;
        tally.tick();
        let mut report = tally.report;
        report.http_requests = http.requests;
        report.bytes_sent = http.bytes_sent;
        report.bytes_received = http.bytes_received;
        report.credentials = http.refreshed.then(|| http.credentials.clone());
        Ok(report)
    }

    /// Downloads a blob that a record held refers to (a partner's thumbnail or photo) into the
    /// store's blob directory, unless it is already there, and returns its path.
    /// `credentials` are updated in place when refreshed (and reported to `listener` at once).
    /// A blob no record held refers to, or one the server does not have, is
    /// [`Error::NotFound`]; one the inspector may not read is an [`Error::Server`] 403.
    pub fn fetch_blob(
        &self,
        store: &Store,
        credentials: &mut Credentials,
        sha256: &BlobHash,
        listener: &dyn SyncListener,
    ) -> Result<PathBuf> {
        if let Ok(path) = store.blob_path(sha256) {
            return Ok(path);
        }
        if store.referenced_blob_role(sha256)?.is_none() {
            return Err(Error::NotFound(format!(
                "no record held refers to blob {sha256}"
            )));
        }
        let mut http = Http::new(credentials, listener);
        let path = format!("{BLOBS_PATH}/{sha256}");
        let answer = self.authorized(&mut http, MAX_BLOB, Call::Get(&path))?;
        match answer.status {
            200 => store.put_fetched_blob(sha256, &answer.body),
            404 => Err(Error::NotFound(format!("the server has no blob {sha256}"))),
            _ => Err(answer.into_error()),
        }
    }

    // ----- blobs -----------------------------------------------------------------------------

    fn upload_blobs(
        &self,
        store: &Store,
        queued: &[(BlobHash, u64)],
        http: &mut Http<'_>,
        tally: &mut Tally<'_>,
    ) -> Result<()> {
        let sent_before = http.bytes_sent;
        let (small, large): (Vec<_>, Vec<_>) = queued
            .iter()
            .partition(|(_, size)| *size as usize <= wire::BATCH_BLOB_MAX);
        let mut done_before = 0u64;
        let mut batch: Vec<&(BlobHash, u64)> = Vec::new();
        let mut batch_bytes = 0usize;
        for blob in small {
            let cost = blob.1 as usize + wire::BATCH_BLOB_OVERHEAD;
            if !batch.is_empty() && batch_bytes + cost > wire::BATCH_BYTES_MAX {
                self.upload_batch(store, &batch, &mut done_before, http, tally)?;
                batch.clear();
                batch_bytes = 0;
            }
            batch_bytes += cost;
            batch.push(blob);
        }
        if !batch.is_empty() {
            self.upload_batch(store, &batch, &mut done_before, http, tally)?;
        }
        for (hash, size) in large {
            // Read the entry again: the blob may have gone with a withdrawn record.
            let Some(entry) = queued_entries(store)?.remove(hash) else {
                done_before += size;
                continue;
            };
            let outcome = match store.blob(hash) {
                Ok(bytes) => self.upload_blob(hash, &bytes, done_before, http, tally)?,
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(()) => {
                    store.ack_outbox(&entry)?;
                    tally.report.blobs_uploaded.push(hash.clone());
                }
                Err(reason) => tally.report.blobs_failed.push(FailedBlob {
                    sha256: hash.clone(),
                    reason,
                }),
            }
            done_before += size;
            tally.progress.bytes_done = done_before;
            tally.tick();
        }
        tally.report.blob_bytes_sent = http.bytes_sent - sent_before;
        Ok(())
    }

    /// Uploads small blobs whole in one request ([`wire::BlobBatch`]); each is acknowledged
    /// or reported failed on its own.
    fn upload_batch(
        &self,
        store: &Store,
        batch: &[&(BlobHash, u64)],
        done_before: &mut u64,
        http: &mut Http<'_>,
        tally: &mut Tally<'_>,
    ) -> Result<()> {
        let batch_size: u64 = batch.iter().map(|(_, size)| size).sum();
        // Read the entries again: blobs may have gone with a withdrawn record.
        let mut entries = queued_entries(store)?;
        let mut blobs = Vec::new();
        let mut sent = Vec::new();
        for (hash, _) in batch {
            let Some(entry) = entries.remove(hash) else {
                continue;
            };
            match store.blob(hash) {
                Ok(bytes) => {
                    blobs.push(wire::WholeBlob {
                        sha256: hash.as_str().to_owned(),
                        bytes,
                    });
                    sent.push((hash, entry));
                }
                Err(e) => tally.report.blobs_failed.push(FailedBlob {
                    sha256: hash.clone(),
                    reason: e.to_string(),
                }),
            }
        }
        if !blobs.is_empty() {
            let body = wire::encode(&wire::BlobBatch {
                protocol: wire::PROTOCOL_VERSION,
                blobs,
            });
            let answer = self.authorized(
                http,
                MAX_SMALL_ANSWER,
                Call::Post(wire::BLOB_BATCH_PATH, &body, CONTENT_TYPE),
            )?;
            if answer.status != 200 {
                return Err(answer.into_error());
            }
            let response: wire::BlobBatchResponse =
                wire::decode(&answer.body).map_err(|e| Error::Server {
                    status: 200,
                    code: "malformed_response".into(),
                    message: format!("blob batch answer: {e}"),
                })?;
            if response.results.len() != sent.len() {
                return Err(Error::Server {
                    status: 200,
                    code: "malformed_response".into(),
                    message: format!(
                        "the blob batch answer has {} outcomes for {} blobs",
                        response.results.len(),
                        sent.len()
                    ),
                });
            }
            let mut stored = Vec::with_capacity(sent.len());
            for ((hash, entry), outcome) in sent.into_iter().zip(response.results) {
                if outcome.stored && outcome.sha256 == hash.as_str() {
                    stored.push(entry);
                    tally.report.blobs_uploaded.push(hash.clone());
                } else {
                    let reason = outcome.refused.map_or_else(
                        || "the server did not store it".to_owned(),
                        |(status, r)| format!("{status} {}: {}", r.code, r.message),
                    );
                    tally.report.blobs_failed.push(FailedBlob {
                        sha256: hash.clone(),
                        reason,
                    });
                }
            }
            store.ack_outbox_all(&stored)?;
        }
        *done_before += batch_size;
        tally.progress.bytes_done = *done_before;
        tally.tick();
        Ok(())
    }

    /// Uploads one blob from wherever the server's copy ends. The inner error is a reason
    /// this blob cannot be uploaded (the others can go on); the outer one stops the sync.
    fn upload_blob(
        &self,
        hash: &BlobHash,
        bytes: &[u8],
        done_before: u64,
        http: &mut Http<'_>,
        tally: &mut Tally<'_>,
    ) -> Result<std::result::Result<(), String>> {
        let total = bytes.len() as u64;
        let mut status = self.blob_status(hash, http)?;
        let mut conflicts = 0;
        while !status.complete {
            let offset = status.received.min(total);
            let end = (offset + CHUNK_SIZE as u64).min(total);
            let path = format!("{BLOBS_PATH}/{hash}?offset={offset}&total={total}");
            let chunk = &bytes[offset as usize..end as usize];
            let answer = self.authorized(http, MAX_SMALL_ANSWER, Call::Put(&path, chunk))?;
            match answer.status {
                200 | 201 => {
                    let next: BlobStatus = answer.json("blob upload answer")?;
                    if !next.complete && next.received <= offset {
                        return Ok(Err(format!(
                            "the server holds {} bytes after a chunk sent at {offset}",
                            next.received
                        )));
                    }
                    status = next;
                }
                409 => {
                    conflicts += 1;
                    if conflicts > MAX_BLOB_CONFLICTS {
                        return Ok(Err(
                            "the server's copy keeps changing under the upload".into()
                        ));
                    }
                    status = self.blob_status(hash, http)?;
                }
                413 | 422 => return Ok(Err(answer.into_error().to_string())),
                _ => return Err(answer.into_error()),
            }
            tally.progress.bytes_done = done_before + status.received.min(total);
            tally.tick();
        }
        Ok(Ok(()))
    }

    fn blob_status(&self, hash: &BlobHash, http: &mut Http<'_>) -> Result<BlobStatus> {
        let path = format!("{BLOBS_PATH}/{hash}/status");
        let answer = self.authorized(http, MAX_SMALL_ANSWER, Call::Get(&path))?;
        match answer.status {
            200 => answer.json("blob status"),
            _ => Err(answer.into_error()),
        }
    }

    // ----- logins ----------------------------------------------------------------------------

    /// Logs the store's own inspector in on this phone: opens a session bound to the store's
    /// device (every change this phone syncs must then carry the store's actor) and registers
    /// the inspector's signing key for it. An account that is not this store's inspector is
    /// [`Error::WrongInspector`]; a wrong password [`Error::Unauthorized`].
    pub fn log_in(&self, store: &Store, username: &str, password: &str) -> Result<Credentials> {
        let (inspector, mut credentials) = self.open_session(store, username, password)?;
        if &inspector != store.inspector_id() {
            self.close_session(&mut credentials);
            return Err(Error::WrongInspector {
                stored: store.inspector_id().0.clone(),
                given: inspector.0,
            });
        }
        self.register_key(store, &inspector, &mut credentials)?;
        Ok(credentials)
    }

    /// A partner logs in on this phone with their own password so that they can sign here:
    /// registers a signing key for them bound to this device, then closes their session (the
    /// phone keeps syncing as its own inspector). Returns who they are.
    pub fn add_signer(&self, store: &Store, username: &str, password: &str) -> Result<InspectorId> {
        let (inspector, mut credentials) = self.open_session(store, username, password)?;
        let registered = self.register_key(store, &inspector, &mut credentials);
        self.close_session(&mut credentials);
        registered.map(|()| inspector)
    }

    /// `POST /api/v1/auth/login` with the store's device id; the inspector the account is.
    fn open_session(
        &self,
        store: &Store,
        username: &str,
        password: &str,
    ) -> Result<(InspectorId, Credentials)> {
        #[derive(Deserialize)]
        struct Login {
            access_token: String,
            refresh_token: String,
            inspector_id: Option<i64>,
        }
        let body = serde_json::to_vec(&serde_json::json!({
            "username": username,
            "password": password,
            "device": concat!("suiji-mobile-core/", env!("CARGO_PKG_VERSION")),
            "device_id": store.device_id(),
        }))?;
        let mut credentials = Credentials {
            access_token: String::new(),
            refresh_token: String::new(),
        };
        let mut http = Http::new(&mut credentials, &());
        let answer = self.send(
            Call::Post(LOGIN_PATH, &body, "application/json"),
            None,
            MAX_SMALL_ANSWER,
            &mut http,
        )?;
        if answer.status != 200 {
            return Err(answer.into_error());
        }
        let login: Login = answer.json("login answer")?;
        let mut credentials = Credentials {
            access_token: login.access_token,
            refresh_token: login.refresh_token,
        };
        match login.inspector_id {
            Some(id) => Ok((InspectorId::new(id.to_string()), credentials)),
            None => {
                self.close_session(&mut credentials);
                Err(Error::InvalidInput(format!(
                    "account {username} is not linked to an inspector"
                )))
            }
        }
    }

    /// Registers this phone's key of `inspector` under their session.
    fn register_key(
        &self,
        store: &Store,
        inspector: &InspectorId,
        credentials: &mut Credentials,
    ) -> Result<()> {
        let public_key = store.signing_public_key(inspector)?;
        let body = serde_json::to_vec(&serde_json::json!({ "public_key": public_key }))?;
        let mut http = Http::new(credentials, &());
        let answer = self.authorized(
            &mut http,
            MAX_SMALL_ANSWER,
            Call::Post(SIGNING_KEYS_PATH, &body, "application/json"),
        )?;
        match answer.status {
            200 | 201 => store.mark_signer_registered(inspector, &public_key),
            _ => Err(answer.into_error()),
        }
    }

    /// Ends the session of `credentials` on the server (`POST /api/v1/auth/logout`); its
    /// access and refresh tokens are refused from then on. An expired access token is
    /// refreshed first. Fails as any request does when the server cannot be reached.
    pub fn log_out(&self, credentials: &mut Credentials) -> Result<()> {
        let mut http = Http::new(credentials, &());
        let answer = self.authorized(
            &mut http,
            MAX_SMALL_ANSWER,
            Call::Post(LOGOUT_PATH, b"{}", "application/json"),
        )?;
        match answer.status {
            200 | 204 => Ok(()),
            _ => Err(answer.into_error()),
        }
    }

    /// Ends a session; a failure only leaves it to expire.
    fn close_session(&self, credentials: &mut Credentials) {
        let mut http = Http::new(credentials, &());
        // A session that could not be closed expires on its own; nothing to tell the caller.
        let _ = self.authorized(
            &mut http,
            MAX_SMALL_ANSWER,
            Call::Post(LOGOUT_PATH, b"{}", "application/json"),
        );
    }

    // ----- HTTP ------------------------------------------------------------------------------

    /// Sends a request with the access token; on a 401 refreshes the tokens once and sends it
    /// again.
    fn authorized(&self, http: &mut Http<'_>, limit: u64, call: Call<'_>) -> Result<Answer> {
        if http.listener.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let token = http.credentials.access_token.clone();
        let answer = self.send(call, Some(&token), limit, http)?;
        if answer.status != 401 {
            return Ok(answer);
        }
        self.refresh(http)?;
        let token = http.credentials.access_token.clone();
        let answer = self.send(call, Some(&token), limit, http)?;
        if answer.status == 401 {
            return Err(answer.into_error());
        }
        Ok(answer)
    }

    /// Trades the refresh token for new tokens.
    fn refresh(&self, http: &mut Http<'_>) -> Result<()> {
        #[derive(Deserialize)]
        struct Tokens {
            access_token: String,
            refresh_token: String,
        }
        let body = serde_json::json!({ "refresh_token": http.credentials.refresh_token });
        let body = serde_json::to_vec(&body)?;
        let answer = self.send(
            Call::Post(REFRESH_PATH, &body, "application/json"),
            None,
            MAX_SMALL_ANSWER,
            http,
        )?;
        if answer.status != 200 {
            return Err(match answer.into_error() {
                // The refresh token itself was refused. Anything else (a 429 from a busy
                // server, a 5xx) says nothing about it: the session is kept for a retry.
                Error::Server {
                    status: 400 | 403,
                    message,
                    ..
                } => Error::Unauthorized(message),
                other => other,
            });
        }
        let tokens: Tokens = answer.json("token refresh answer")?;
        *http.credentials = Credentials {
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
        };
        http.refreshed = true;
        http.listener.credentials_refreshed(http.credentials);
        Ok(())
    }

    /// Sends one request and reads the whole answer, whatever its status.
    ///
    /// A server may refuse a request with a body before reading the body (a 401 from the
    /// authentication, a 413) and then close the connection without saying so; the pool
    /// would hand that connection to the next request (the token refresh that follows a 401),
    /// which would fail as a network error. So after such an answer the rest of this sync or
    /// download goes on connections of its own.
    fn send(
        &self,
        call: Call<'_>,
        token: Option<&str>,
        limit: u64,
        http: &mut Http<'_>,
    ) -> Result<Answer> {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let agent = http.agent.as_ref().unwrap_or(&self.agent);
        let (result, sent) = match call {
            Call::Get(path) => {
                let mut request = agent.get(format!("{}{path}", self.base));
                if let Some(bearer) = &bearer {
                    request = request.header("Authorization", bearer);
                }
                (request.call(), 0)
            }
            Call::Post(path, body, content_type) => {
                let mut request = agent
                    .post(format!("{}{path}", self.base))
                    .header("Content-Type", content_type);
                if let Some(bearer) = &bearer {
                    request = request.header("Authorization", bearer);
                }
                (request.send(body), body.len())
            }
            Call::Put(path, body) => {
                let mut request = agent
                    .put(format!("{}{path}", self.base))
                    .header("Content-Type", "application/octet-stream");
                if let Some(bearer) = &bearer {
                    request = request.header("Authorization", bearer);
                }
                (request.send(body), body.len())
            }
        };
        let what = match call {
            Call::Get(path) => format!("GET {path}"),
            Call::Post(path, ..) => format!("POST {path}"),
            Call::Put(path, _) => format!("PUT {path}"),
        };
        let network = |e: ureq::Error| Error::Network(format!("{what}: {e}"));
        http.requests += 1;
        let mut response = result.map_err(network)?;
        http.bytes_sent += sent as u64;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(network)?;
        http.bytes_received += body.len() as u64;
        if status >= 400 && !matches!(call, Call::Get(_)) {
            http.agent = Some(new_agent(self.connect, self.io));
        }
        Ok(Answer { status, body })
    }
}

/// An agent (a pool of connections) with the client's settings.
fn new_agent(connect: Duration, io: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(connect))
        .timeout_per_read(Some(io))
        .timeout_per_write(Some(io))
        .user_agent(concat!("suiji-mobile-core/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// The blobs queued for upload with their sizes, thumbnails first.
fn queued_blobs(store: &Store) -> Result<Vec<(BlobHash, u64)>> {
    let mut queued = Vec::new();
    for entry in store.outbox()? {
        if let OutboxItem::Blob(hash) = entry.item {
            let (role, size) = store.blob_info(&hash)?.unwrap_or((BlobRole::Original, 0));
            queued.push((role != BlobRole::Thumbnail, hash, size));
        }
    }
    queued.sort_by_key(|(not_thumbnail, _, _)| *not_thumbnail);
    Ok(queued
        .into_iter()
        .map(|(_, hash, size)| (hash, size))
        .collect())
}

/// The blobs in the outbox now, by hash.
fn queued_entries(store: &Store) -> Result<HashMap<BlobHash, OutboxEntry>> {
    Ok(store
        .outbox()?
        .into_iter()
        .filter_map(|e| match &e.item {
            OutboxItem::Blob(hash) => Some((hash.clone(), e)),
            _ => None,
        })
        .collect())
}

/// The records part of a sync: rounds until the phone has nothing left to say (see the module
/// documentation), over any way of delivering a request — `exchange` returns the server's
/// answer to it. Fills in the report's rounds, completeness, records and refusals.
pub(crate) fn run_rounds(
    store: &Store,
    tally: &mut Tally<'_>,
    exchange: &mut dyn FnMut(&SyncRequest) -> Result<Answer>,
) -> Result<()> {
    let mut session = store.begin_sync()?;
    let mut must_send = true;
    let mut received = BTreeSet::new();
    let mut new_records = BTreeSet::new();
    let mut sent = BTreeSet::new();
    let mut withdrawn = BTreeSet::new();
    loop {
        let round = store.prepare_round(&session)?;
        let request = round.request();
        tally.progress.documents_total = request.held.len() as u32;
        tally.progress.documents_done = (request.held.len() - request.messages.len()) as u32;
        if !must_send && !round.has_messages() {
            tally.report.complete = true;
            tally.tick();
            break;
        }
        if tally.report.rounds >= MAX_ROUNDS {
            tally.tick();
            break;
        }
        if tally.listener.is_cancelled() {
            return Err(Error::Cancelled);
        }
        tally.report.rounds += 1;
        tally.progress.round = tally.report.rounds;
        let answer = exchange(request)?;
        match answer.status {
            200 => {
                let response: SyncResponse =
                    wire::decode(&answer.body).map_err(|e| Error::Server {
                        status: 200,
                        code: "malformed_response".into(),
                        message: format!("sync answer: {e}"),
                    })?;
                let applied = store.apply_round(&mut session, round, &response)?;
                received.extend(applied.changed);
                received.extend(applied.new_records.iter().cloned());
                new_records.extend(applied.new_records);
                sent.extend(applied.accepted);
                withdrawn.extend(applied.withdrawn);
                tally.report.blobs_requeued.extend(applied.requeued_blobs);
                // More may come only while the server hands over or withdraws records.
                let handed_over =
                    !response.new_records.is_empty() || !response.withdrawn.is_empty();
                must_send = handed_over && !response.in_sync;
            }
            403 | 404 | 422 => {
                let refused = answer.refusal().and_then(|r| {
                    let id = RecordId(r.record_id.clone()?);
                    round
                        .messages_record(&id)
                        .then(|| {
                            let rule = r.rule.clone().unwrap_or_else(|| match answer.status {
                                403 => rules::NOT_ASSIGNED.into(),
                                404 => rules::UNKNOWN_RECORD.into(),
                                _ => r.code.clone(),
                            });
                            SyncRefusal {
                                rule,
                                message: r.message,
                            }
                        })
                        .map(|refusal| (id, refusal))
                });
                let Some((id, refusal)) = refused else {
                    return Err(answer.into_error());
                };
                store.refuse(&mut session, round, &id, &refusal)?;
                tally.report.refused.push(RefusedRecord {
                    record_id: id,
                    rule: refusal.rule,
                    message: refusal.message,
                });
                must_send = true;
            }
            _ => return Err(answer.into_error()),
        }
        tally.tick();
    }
    tally.report.received = received.into_iter().collect();
    tally.report.new_records = new_records.into_iter().collect();
    tally.report.sent = sent.into_iter().collect();
    tally.report.withdrawn = withdrawn.into_iter().collect();
    Ok(())
}

/// Runs a whole sync of `store` with the server at `server_url`: see [`Client::sync`].
pub fn sync(
    store: &Store,
    server_url: &str,
    credentials: &mut Credentials,
    listener: &dyn SyncListener,
) -> Result<SyncReport> {
    Client::new(server_url)?.sync(store, credentials, listener)
}

/// Logs the store's own inspector in: see [`Client::log_in`].
pub fn log_in(
    store: &Store,
    server_url: &str,
    username: &str,
    password: &str,
) -> Result<Credentials> {
    Client::new(server_url)?.log_in(store, username, password)
}

/// A partner logs in on this phone to sign here: see [`Client::add_signer`].
pub fn add_signer(
    store: &Store,
    server_url: &str,
    username: &str,
    password: &str,
) -> Result<InspectorId> {
    Client::new(server_url)?.add_signer(store, username, password)
}

/// Downloads a blob a record held refers to: see [`Client::fetch_blob`].
pub fn fetch_blob(
    store: &Store,
    server_url: &str,
    credentials: &mut Credentials,
    sha256: &BlobHash,
) -> Result<PathBuf> {
    Client::new(server_url)?.fetch_blob(store, credentials, sha256, &())
}
