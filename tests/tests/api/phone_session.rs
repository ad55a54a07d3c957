//! The session a phone's store keeps (`sync::session`) against the real server: log in once,
//! sync without handling tokens (refreshed tokens kept as they come), log out (the server
//! refuses the session from then on); and a sync cancelled mid-upload.

use std::sync::Arc;
use suiji_mobile_core::sync::client::{self, Credentials, SyncListener, SyncProgress};
use suiji_mobile_core::sync::{SyncOptions, session};
use suiji_mobile_core::{Error, InspectorId, ItemCode, RecordId, Store, StoreOptions};
use suiji_tests::{PASSWORD, TestServer, drawn_task};

/// An empty store for an inspector, in its own directory.
fn phone_store(inspector_id: i64) -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions::new(InspectorId::new(inspector_id.to_string()));
    let store = Store::open(dir.path(), options).unwrap();
    (dir, Arc::new(store))
}

/// Runs blocking client code off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("client thread")
}

#[tokio::test]
async fn a_phone_logs_in_once_syncs_on_its_kept_session_and_is_refused_after_logging_out() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 2).await;
    let inspector = records[0].group[0];
    let username = agency.username_of(inspector).to_owned();
    let (_dir, store) = phone_store(inspector);

    let (s, url) = (store.clone(), server.base.clone());
    blocking(move || session::login(&s, &url, &username, PASSWORD, &SyncOptions::default()))
        .await
        .unwrap();
    let kept = store.session().unwrap().expect("the login is kept");
    assert_eq!(kept.server_url, server.base.trim_end_matches('/'));

    let s = store.clone();
    let report = blocking(move || session::sync(&s, &SyncOptions::default(), &()))
        .await
        .unwrap();
    assert!(report.complete, "{report:?}");
    assert!(
        report
            .new_records
            .iter()
            .any(|r| r.as_str() == records[0].id),
        "{report:?}"
    );

    // An access token the server no longer takes: the sync refreshes it and the store keeps
    // the new pair (the old refresh token is spent).
    store
        .keep_credentials(&Credentials {
            access_token: "expired".into(),
            refresh_token: kept.credentials.refresh_token.clone(),
        })
        .unwrap();
    let s = store.clone();
    let report = blocking(move || session::sync(&s, &SyncOptions::default(), &()))
        .await
        .unwrap();
    assert!(report.credentials.is_some(), "the tokens were refreshed");
    let refreshed = store.session().unwrap().expect("still logged in");
    assert_eq!(Some(&refreshed.credentials), report.credentials.as_ref());
    assert_ne!(
        refreshed.credentials.refresh_token,
        kept.credentials.refresh_token
    );

    // Logging out revokes the session on the server and forgets it on the phone.
    let s = store.clone();
    let revoked = blocking(move || session::logout(&s, &SyncOptions::default()))
        .await
        .unwrap();
    assert!(revoked);
    assert_eq!(store.session().unwrap(), None);
    let s = store.clone();
    let after = blocking(move || session::sync(&s, &SyncOptions::default(), &())).await;
    assert!(matches!(after, Err(Error::Unauthorized(_))), "{after:?}");
    // The tokens it had are refused by the server, access and refresh alike.
    let (s, url) = (store.clone(), server.base.clone());
    let mut old = refreshed.credentials;
    let replayed = blocking(move || client::sync(&s, &url, &mut old, &())).await;
    assert!(
        matches!(replayed, Err(Error::Unauthorized(_))),
        "{replayed:?}"
    );
    // The records stay on the phone for the next login.
    assert!(!store.list_tasks().unwrap().is_empty());
}

/// A photo of noise, `edge` pixels square: a JPEG far larger than one upload chunk.
fn noise_jpeg(edge: u32) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    let img = image::RgbImage::from_fn(edge, edge, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let [r, g, b, _] = state.to_le_bytes();
        image::Rgb([r, g, b])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// Cancels a sync once `chunks` blob requests have gone through.
struct CancelMidUpload {
    chunks: u32,
    seen: std::sync::atomic::AtomicU32,
}

impl SyncListener for CancelMidUpload {
    fn progress(&self, progress: &SyncProgress) {
        if progress.bytes_done > 0 {
            self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn is_cancelled(&self) -> bool {
        self.seen.load(std::sync::atomic::Ordering::SeqCst) >= self.chunks
    }
}

#[tokio::test]
async fn a_sync_cancelled_mid_upload_keeps_the_rest_queued_and_a_later_sync_resumes_it() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 1).await;
    let inspector = records[0].group[0];
    let username = agency.username_of(inspector).to_owned();
    let (_dir, store) = phone_store(inspector);
    let (s, url) = (store.clone(), server.base.clone());
    blocking(move || {
        session::login(&s, &url, &username, PASSWORD, &SyncOptions::default())?;
        session::sync(&s, &SyncOptions::default(), &())
    })
    .await
    .unwrap();

    let id = RecordId::new(records[0].id.as_str());
    let item: ItemCode = store.record(&id).unwrap().assignment().unwrap().items[0]
        .code
        .clone();
    let bytes = noise_jpeg(1000);
    let chunk = client::CHUNK_SIZE as u64;
    assert!(bytes.len() as u64 > 3 * chunk, "{} bytes", bytes.len());
    let photo = store.import_photo(&id, &item, &bytes, "现场全景").unwrap();
    assert_eq!(
        photo.upload_sha256, None,
        "under the pixel budget: the original goes up"
    );

    // The thumbnail's batch, then the first chunk of the original; then it stops.
    let listener = Arc::new(CancelMidUpload {
        chunks: 2,
        seen: Default::default(),
    });
    let (s, l) = (store.clone(), listener.clone());
    let cancelled = blocking(move || session::sync(&s, &SyncOptions::default(), &*l)).await;
    assert!(matches!(cancelled, Err(Error::Cancelled)), "{cancelled:?}");
    let pending = store.pending().unwrap();
    assert_eq!((pending.records, pending.blobs), (0, 1), "{pending:?}");
    assert_eq!(pending.blob_bytes, photo.size, "only the original waits");

    // A later sync completes, sending the original from where the server's copy ends.
    let s = store.clone();
    let report = blocking(move || session::sync(&s, &SyncOptions::default(), &()))
        .await
        .unwrap();
    assert!(
        report.complete && report.blobs_failed.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.blobs_uploaded, vec![photo.sha256.clone()]);
    assert!(
        report.blob_bytes_sent <= photo.size - chunk,
        "resumed: {} of {} bytes sent again",
        report.blob_bytes_sent,
        photo.size
    );
    assert!(store.pending().unwrap().is_empty());
}

#[tokio::test]
async fn a_session_the_server_revoked_is_forgotten_at_the_next_sync() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 1).await;
    let inspector = records[0].group[0];
    let username = agency.username_of(inspector).to_owned();
    let (_dir, store) = phone_store(inspector);
    let (s, url) = (store.clone(), server.base.clone());
    blocking(move || session::login(&s, &url, &username, PASSWORD, &SyncOptions::default()))
        .await
        .unwrap();
    // Revoked elsewhere (here with a copy of its tokens, as an administrator's revocation).
    let mut copy = store.session().unwrap().unwrap().credentials;
    let url = server.base.clone();
    blocking(move || client::Client::new(&url)?.log_out(&mut copy))
        .await
        .unwrap();

    let s = store.clone();
    let refused = blocking(move || session::sync(&s, &SyncOptions::default(), &())).await;
    assert!(
        matches!(refused, Err(Error::Unauthorized(_))),
        "{refused:?}"
    );
    assert_eq!(
        store.session().unwrap(),
        None,
        "the app shows its login screen"
    );
}
