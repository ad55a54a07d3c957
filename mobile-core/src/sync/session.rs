//! The session the store keeps ([`Store::session`]): log in once with [`login`], then
//! [`sync`], [`fetch_blob`] and [`add_signer`] find the server and the tokens in the store and
//! keep every refreshed pair there the moment the server issues it; [`logout`] ends the
//! session on the server when it can be reached and always forgets it on the phone.
//!
//! A session the server no longer accepts (a sync answered 401 even after a refresh) is
//! forgotten too, so [`Store::session`] tells an app whether to show the login screen.

use crate::error::{Error, Result};
use crate::ids::{BlobHash, InspectorId};
use crate::store::{Session, Store};
use crate::sync::client::{
    Client, Credentials, SyncListener, SyncOptions, SyncProgress, SyncReport,
};
use std::cell::RefCell;
use std::path::PathBuf;

/// Logs the store's own inspector in on the server at `server_url` (see
/// [`Client::log_in`]) and keeps the session in the store, replacing (and ending on the
/// server, if it can) any session kept before.
pub fn login(
    store: &Store,
    server_url: &str,
    username: &str,
    password: &str,
    options: &SyncOptions,
) -> Result<()> {
    let client = Client::with_options(server_url, options)?;
    let credentials = client.log_in(store, username, password)?;
    let previous = store.session()?;
    store.keep_session(&Session {
        server_url: client.server_url().to_owned(),
        credentials,
    })?;
    if let Some(mut previous) = previous {
        // The old session only has to be ended if the server can be reached; otherwise it
        // expires on its own.
        let _ = Client::with_options(&previous.server_url, options)
            .and_then(|old| old.log_out(&mut previous.credentials));
    }
    Ok(())
}

/// Ends the kept session: revokes it on the server (its tokens are refused from then on) and
/// forgets it on the phone, whether or not the server could be reached. Returns whether the
/// server revoked it; `false` also when no session was kept. Records, photos and the outbox
/// stay: a later login syncs them.
pub fn logout(store: &Store, options: &SyncOptions) -> Result<bool> {
    let Some(mut session) = store.session()? else {
        return Ok(false);
    };
    let revoked = Client::with_options(&session.server_url, options)
        .and_then(|client| client.log_out(&mut session.credentials))
        .is_ok();
    store.forget_session()?;
    Ok(revoked)
}

/// Runs a whole sync ([`Client::sync`]) with the kept session. Without one it is
/// [`Error::Unauthorized`]; a session the server refuses is forgotten and is
/// [`Error::Unauthorized`] too: log in again.
pub fn sync(
    store: &Store,
    options: &SyncOptions,
    listener: &dyn SyncListener,
) -> Result<SyncReport> {
    with_session(store, options, listener, |client, credentials, listener| {
        client.sync(store, credentials, listener)
    })
}

/// Downloads a blob a record held refers to ([`Client::fetch_blob`]) with the kept session.
pub fn fetch_blob(
    store: &Store,
    sha256: &BlobHash,
    options: &SyncOptions,
    listener: &dyn SyncListener,
) -> Result<PathBuf> {
    if let Ok(path) = store.blob_path(sha256) {
        return Ok(path);
    }
    with_session(store, options, listener, |client, credentials, listener| {
        client.fetch_blob(store, credentials, sha256, listener)
    })
}

/// A partner logs in on this phone to sign here ([`Client::add_signer`]), on the kept
/// session's server. Without a kept session it is [`Error::Unauthorized`].
pub fn add_signer(
    store: &Store,
    username: &str,
    password: &str,
    options: &SyncOptions,
) -> Result<InspectorId> {
    let session = kept(store)?;
    Client::with_options(&session.server_url, options)?.add_signer(store, username, password)
}

fn kept(store: &Store) -> Result<Session> {
    store
        .session()?
        .ok_or_else(|| Error::Unauthorized("not logged in on this phone".into()))
}

/// Runs `f` with the kept session's client and tokens, keeping refreshed tokens in the store
/// as soon as they are issued, and forgetting a session the server refuses.
fn with_session<T>(
    store: &Store,
    options: &SyncOptions,
    listener: &dyn SyncListener,
    f: impl FnOnce(&Client, &mut Credentials, &dyn SyncListener) -> Result<T>,
) -> Result<T> {
    let mut session = kept(store)?;
    let client = Client::with_options(&session.server_url, options)?;
    let keeper = Keeper {
        store,
        inner: listener,
        failed: RefCell::new(None),
    };
    let result = f(&client, &mut session.credentials, &keeper);
    if keeper.failed.into_inner().is_some() {
        // Keeping the refreshed tokens failed when they came; try once more with the last
        // pair, which is the only one the server still takes.
        store.keep_credentials(&session.credentials)?;
    }
    if let Err(Error::Unauthorized(_)) = &result {
        store.forget_session()?;
    }
    result
}

/// Keeps refreshed tokens in the store, and passes everything on to the app's listener.
struct Keeper<'a> {
    store: &'a Store,
    inner: &'a dyn SyncListener,
    failed: RefCell<Option<Error>>,
}

impl SyncListener for Keeper<'_> {
    fn progress(&self, progress: &SyncProgress) {
        self.inner.progress(progress);
    }

    fn credentials_refreshed(&self, credentials: &Credentials) {
        if let Err(e) = self.store.keep_credentials(credentials) {
            *self.failed.borrow_mut() = Some(e);
        }
        self.inner.credentials_refreshed(credentials);
    }

    fn is_cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }
}
