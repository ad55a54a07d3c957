//! `GET /api/v1/tasks/{id}/dossier.zip`: the task's dossier, streamed as it is built.
//!
//! Who may is checked before anything is sent, so a refusal is an ordinary JSON error. The
//! ZIP is then built on a blocking thread into a [`ChunkSender`], which hands 64 KiB chunks
//! to the response body over a channel of a few chunks: the build runs only as fast as the
//! client reads, and holds at most those few chunks besides what it is writing. A client
//! that goes away drops the body and with it the channel's receiver; the next chunk the build
//! sends fails, and the build stops there. A build that fails after the first bytes are sent
//! ends the body with an error, so the client sees a cut download, never a short ZIP that
//! looks whole.

use std::io::Write;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::mpsc;

use crate::AppState;
use crate::auth::AuthUser;
use crate::error::{Error, Result};
use crate::extract::ApiPath;

/// Size of the chunks the build hands to the response body.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Chunks in flight between the build and the client.
pub const CHUNKS_IN_FLIGHT: usize = 8;

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/tasks/{id}/dossier.zip", get(dossier_zip))
}

/// A writer that sends what is written in chunks over a bounded channel, blocking while the
/// channel is full; a write fails with `BrokenPipe` once the receiver is gone.
pub struct ChunkSender {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChunkSender {
    /// A writer sending to `tx`. Call it on a blocking thread, never on the runtime.
    pub fn new(tx: mpsc::Sender<std::io::Result<Bytes>>) -> Self {
        ChunkSender {
            tx,
            buf: Vec::with_capacity(CHUNK_SIZE),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_SIZE));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client left"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_SIZE {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

async fn dossier_zip(
    State(state): State<AppState>,
    user: AuthUser,
    headers: axum::http::HeaderMap,
    ApiPath(task_id): ApiPath<i64>,
) -> Result<Response> {
    stream(state, user, &headers, task_id).await
}

/// The dossier of `task_id` for `user` as a streamed ZIP download, once
/// [`super::ensure_may_export`] lets them have it; the API route and the console's
/// `/tasks/{id}/dossier.zip` both answer with it.
pub async fn stream(
    state: AppState,
    user: AuthUser,
    headers: &axum::http::HeaderMap,
    task_id: i64,
) -> Result<Response> {
    let check_base = crate::documents::public_base(&state, headers);
    state
        .db
        .read(move |conn| super::ensure_may_export(conn, &user, task_id))
        .await?;
    let (tx, mut rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let on_error = tx.clone();
    let (db, blobs, calendar) = (state.db.clone(), state.blobs.clone(), state.calendar());
    let today = crate::review::china_today();
    tokio::task::spawn_blocking(move || {
        let built = db.read_blocking(|conn| {
            let mut out = super::write(
                conn,
                &*blobs,
                &calendar,
                today,
                task_id,
                &check_base,
                ChunkSender::new(tx),
            )?;
            out.flush()?;
            Ok(())
        });
        match built {
            Ok(()) => {}
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                tracing::info!(task_id, "the client left; the dossier build stopped");
            }
            Err(e) => {
                tracing::error!(task_id, error = ?e, "building a dossier failed");
                let _ = on_error
                    .blocking_send(Err(std::io::Error::other("the dossier could not be built")));
            }
        }
    });
    let body = Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"dossier-task-{task_id}.zip\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response())
}
