//! The paper an inspection produces, rendered by the server as A4 PDFs: the
//! 检查通知书 shown to the party on arrival, the 检查记录表 signed on site,
//! and the 责令改正通知书 when the inspectors ordered a correction.
//!
//! Each page's footer carries the record id and a digest, and the first page
//! a QR code of the public check (`GET /public/check`), which tells anyone
//! holding the paper whether it matches what the server holds:
//! - the notice's digest covers the record id and its assignment (agency,
//!   task, target, items, inspectors, window), which only the server writes;
//! - the record's and the rectification order's digest is the record's
//!   content digest, the one inspectors' and the party's signatures cover.
//!
//! Who may download a document is who may see the whole record
//! ([`visibility::ensure_full`]): an unknown record and one the caller may
//! not see are the same 404.

mod forms;
pub mod layout;

use std::collections::BTreeSet;

use crate::store::sql::{Conn, OptionalExtension};
use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use suiji_mobile_core::record::{
    AssignedItem, Assignment, EvidenceNote, FollowUp, ItemAnswer, PartySignature, PhotoMeta,
    RecordDoc, SignatureCheck,
};
use suiji_mobile_core::vocab::{FollowUpMeasure, ResultCategory, ReviewState};

use crate::AppState;
use crate::actor::Actor;
use crate::auth::AuthUser;
use crate::blobs::BlobStore;
use crate::draw::records::load_document;
use crate::error::{Error, Result};
use crate::extract::ApiPath;
use crate::review::doc_error;
use crate::visibility;

/// Routes of the documents and of the public check.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/records/{id}/notice.pdf", get(notice_pdf))
        .route("/api/v1/records/{id}/record.pdf", get(record_pdf))
        .route(
            "/api/v1/records/{id}/rectification.pdf",
            get(rectification_pdf),
        )
        .route("/api/v1/public/check", get(public_check))
}

/// The three documents of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 检查通知书.
    Notice,
    /// 检查记录表.
    Record,
    /// 责令改正通知书; only when the follow-up measure is 责令改正.
    Rectification,
}

impl Kind {
    /// Every kind, in the order a dossier lists them.
    pub const ALL: [Kind; 3] = [Kind::Notice, Kind::Record, Kind::Rectification];

    /// The document's Chinese title.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Notice => "检查通知书",
            Kind::Record => "检查记录表",
            Kind::Rectification => "责令改正通知书",
        }
    }

    /// The file name stem (`notice`, `record`, `rectification`).
    pub fn stem(self) -> &'static str {
        match self {
            Kind::Notice => "notice",
            Kind::Record => "record",
            Kind::Rectification => "rectification",
        }
    }
}

/// A signature image, or why there is none to show.
#[derive(Debug, Clone)]
pub enum Picture {
    /// The image bytes (JPEG or PNG) as the server holds them.
    Held(Vec<u8>),
    /// The phone has not uploaded it yet.
    Missing,
}

/// Everything the documents of one record show, read in one go.
#[derive(Debug, Clone)]
pub struct Papers {
    /// The record id.
    pub record_id: String,
    /// What the server assigned: agency, task, target, items, inspectors, window.
    pub assignment: Assignment,
    /// Each item with its answer.
    pub items: Vec<(AssignedItem, ItemAnswer)>,
    /// The statutory result categories chosen.
    pub results: BTreeSet<ResultCategory>,
    /// The follow-up measure.
    pub follow_up: FollowUp,
    /// The party's statement (当事人意见).
    pub party_statement: Option<String>,
    /// The party's signature or refusal, with the signature image.
    pub party_signature: Option<(PartySignature, Option<Picture>)>,
    /// Evidence notes.
    pub notes: Vec<EvidenceNote>,
    /// Photos with their thumbnails.
    pub photos: Vec<(PhotoMeta, Picture)>,
    /// Inspectors' signatures as checked now, with their images.
    pub signatures: Vec<(SignatureCheck, Option<Picture>)>,
    /// Where the record stands in review.
    pub state: ReviewState,
    /// When the inspection ended, if it has.
    pub inspection_ended_on: Option<String>,
    /// The record's content digest (what signatures cover).
    pub content_digest: String,
    /// The notice's digest: record id and assignment.
    pub notice_digest: String,
}

impl Papers {
    /// Whether the inspectors ordered a correction (责令改正).
    pub fn orders_rectification(&self) -> bool {
        self.follow_up.measure == Some(FollowUpMeasure::OrderRectification)
    }

    /// The digest a document of `kind` carries in its footer.
    pub fn digest(&self, kind: Kind) -> &str {
        match kind {
            Kind::Notice => &self.notice_digest,
            Kind::Record | Kind::Rectification => &self.content_digest,
        }
    }
}

/// The digest a notice carries: SHA-256 (hex) over the record id and its
/// assignment as stored, so a notice checks for as long as nobody is
/// reassigned, whatever the inspectors record.
pub fn notice_digest(record_id: &str, assignment: &Assignment) -> Result<String> {
    let mut hash = Sha256::new();
    hash.update(b"suiji notice v1\n");
    hash.update(record_id.as_bytes());
    hash.update(b"\n");
    hash.update(serde_json::to_vec(assignment)?);
    Ok(hex::encode(hash.finalize()))
}

/// Reads what the documents of record `id` show, if `user` may see the whole
/// record; thumbnails and signature images come from `blobs`.
pub fn papers(conn: &Conn, blobs: &dyn BlobStore, user: &Actor, id: &str) -> Result<Papers> {
    visibility::ensure_full(conn, user, id)?;
    papers_of(conn, blobs, id)
}

/// [`papers`] without the visibility check, for callers that made it (the
/// dossier export).
pub fn papers_of(conn: &Conn, blobs: &dyn BlobStore, id: &str) -> Result<Papers> {
    let mut doc = load_document(conn, id)?;
    papers_of_document(conn, blobs, id, &mut doc)
}

/// [`papers_of`] from record `id`'s document `doc`, already loaded.
pub fn papers_of_document(
    conn: &Conn,
    blobs: &dyn BlobStore,
    id: &str,
    doc: &mut RecordDoc,
) -> Result<Papers> {
    let ended: Option<Option<String>> = conn
        .query_row(
            "SELECT inspection_ended_on FROM records WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(inspection_ended_on) = ended else {
        return Err(visibility::not_found(id));
    };
    let err = doc_error(id, "record");
    let assignment = doc.assignment().map_err(&err)?;
    let picture = |hash: &str| match blobs.read(hash) {
        Ok(bytes) => Picture::Held(bytes),
        Err(_) => Picture::Missing,
    };
    let photos = doc
        .photos()
        .map_err(&err)?
        .into_iter()
        .map(|p| {
            let thumbnail = picture(p.thumbnail_sha256.as_str());
            (p, thumbnail)
        })
        .collect();
    let signatures = crate::signing::record_signatures(conn, doc)?
        .into_iter()
        .map(|check| {
            let image = check
                .signature
                .image_sha256
                .as_ref()
                .map(|h| picture(h.as_str()));
            (check, image)
        })
        .collect();
    let party_signature = doc.party_signature().map_err(&err)?.map(|s| {
        let image = match &s {
            PartySignature::Signed {
                image_sha256: Some(h),
                ..
            } => Some(picture(h.as_str())),
            _ => None,
        };
        (s, image)
    });
    Ok(Papers {
        record_id: id.to_owned(),
        notice_digest: notice_digest(id, &assignment)?,
        content_digest: doc.content_digest().map_err(&err)?,
        items: doc.items().map_err(&err)?,
        results: doc.result_categories().map_err(&err)?,
        follow_up: doc.follow_up().map_err(&err)?,
        party_statement: doc.party_statement().map_err(&err)?,
        party_signature,
        notes: doc.notes().map_err(&err)?,
        photos,
        signatures,
        state: doc.status().map_err(&err)?,
        inspection_ended_on,
        assignment,
    })
}

/// The PDF of `kind` for `papers`; `check_base` is the public address the QR
/// code and footer point at (`https://host`, no trailing slash).
///
/// A rectification order is a conflict (409) unless the inspectors chose 责令改正.
pub fn render(papers: &Papers, kind: Kind, check_base: &str) -> Result<Vec<u8>> {
    if kind == Kind::Rectification && !papers.orders_rectification() {
        return Err(Error::Conflict(format!(
            "record {} orders no correction (责令改正), so it has no 责令改正通知书",
            papers.record_id
        )));
    }
    let url = check_url(check_base, &papers.record_id, papers.digest(kind));
    forms::render(papers, kind, &url).map_err(|e| Error::Internal(format!("rendering PDF: {e}")))
}

/// The public check's address for a document.
pub fn check_url(base: &str, record_id: &str, digest: &str) -> String {
    let record: String = record_id
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!(
        "{}/public/check?record={record}&digest={digest}",
        base.trim_end_matches('/')
    )
}

/// The public address documents point at: the configured `--public-url`, or
/// else the address this request came to (`Host`), which is only right when
/// people reach the server directly.
pub fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// Renders at once at most one per core; more wait their turn, so a burst of downloads
/// queues instead of taking every core from sync and review.
fn renders() -> &'static tokio::sync::Semaphore {
    static RENDERS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    RENDERS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    })
}

/// Reads and renders document `kind` of record `id` for `user`.
pub async fn document(
    state: &AppState,
    user: &Actor,
    id: &str,
    kind: Kind,
    check_base: String,
) -> Result<Vec<u8>> {
    let _turn = renders()
        .acquire()
        .await
        .map_err(|_| Error::Internal("the render queue is closed".into()))?;
    let (user, id, blobs) = (user.clone(), id.to_owned(), state.blobs.clone());
    let papers = state
        .db
        .read(move |conn| papers(conn, &*blobs, &user, &id))
        .await?;
    tokio::task::spawn_blocking(move || render(&papers, kind, &check_base)).await?
}

/// A PDF as a download: never cached, named after the document and record.
pub fn pdf_response(kind: Kind, record_id: &str, bytes: Vec<u8>) -> Response {
    let safe: String = record_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let disposition = format!("attachment; filename=\"{}-{safe}.pdf\"", kind.stem());
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pdf"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

async fn serve_pdf(
    state: AppState,
    user: AuthUser,
    headers: HeaderMap,
    id: String,
    kind: Kind,
) -> Result<Response> {
    let base = public_base(&state, &headers);
    let bytes = document(&state, &user, &id, kind, base).await?;
    Ok(pdf_response(kind, &id, bytes))
}

/// `GET /api/v1/records/{id}/notice.pdf`: the 检查通知书.
async fn notice_pdf(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response> {
    serve_pdf(state, user, headers, id, Kind::Notice).await
}

/// `GET /api/v1/records/{id}/record.pdf`: the 检查记录表.
async fn record_pdf(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response> {
    serve_pdf(state, user, headers, id, Kind::Record).await
}

/// `GET /api/v1/records/{id}/rectification.pdf`: the 责令改正通知书.
async fn rectification_pdf(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Result<Response> {
    serve_pdf(state, user, headers, id, Kind::Rectification).await
}

/// What the public check is asked.
#[derive(Debug, Deserialize)]
pub struct CheckQuery {
    /// The record id printed on the document.
    pub record: String,
    /// The digest printed on the document (64 hex digits).
    pub digest: String,
}

/// What the public check answers. A document that does not match and a
/// record that does not exist get the same answer, so record ids cannot be
/// probed; the digest, which only a holder of the paper has, is the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckAnswer {
    /// Whether the document matches the server's record.
    pub matches: bool,
    /// What it matches: `notice` (the assignment as it stands), `current`
    /// (the record's content now) or `signed` (the content when someone
    /// signed; the record changed since). Absent when it does not match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<&'static str>,
    /// When it matches: the record id, agency, task number and target name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<CheckedRecord>,
}

/// The facts a matching document's holder is told; all of them are printed
/// on the document already.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckedRecord {
    /// The record id.
    pub id: String,
    /// The agency.
    pub agency: String,
    /// The task number.
    pub task_number: String,
    /// The target's name.
    pub target_name: String,
    /// Its review state (`open`, `submitted`, …, `published`).
    pub state: String,
    /// The public result, once published.
    pub result_id: Option<i64>,
}

/// Whether a printed document matches the record (see [`CheckAnswer`]).
pub fn check(conn: &Conn, query: &CheckQuery) -> Result<CheckAnswer> {
    let digest = query.digest.trim().to_ascii_lowercase();
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid("digest", "64 hexadecimal digits"));
    }
    let no = CheckAnswer {
        matches: false,
        matched: None,
        record: None,
    };
    if query.record.len() > 200 {
        return Ok(no);
    }
    let exists: Option<String> = conn
        .query_row(
            "SELECT id FROM records WHERE id = ?1",
            [&query.record],
            |r| r.get(0),
        )
        .optional()?;
    let Some(id) = exists else { return Ok(no) };
    let doc = load_document(conn, &id)?;
    let err = doc_error(&id, "record");
    let assignment = doc.assignment().map_err(&err)?;
    let matched = if notice_digest(&id, &assignment)? == digest {
        Some("notice")
    } else if doc.content_digest().map_err(&err)? == digest {
        Some("current")
    } else {
        let signed_inspector = doc
            .signatures()
            .map_err(&err)?
            .iter()
            .any(|s| s.content_sha256 == digest);
        let signed_party = matches!(
            doc.party_signature().map_err(&err)?,
            Some(PartySignature::Signed { content_sha256, .. }) if content_sha256 == digest
        );
        (signed_inspector || signed_party).then_some("signed")
    };
    let Some(matched) = matched else {
        return Ok(no);
    };
    let state = doc.status().map_err(&err)?.code().to_owned();
    Ok(CheckAnswer {
        matches: true,
        matched: Some(matched),
        record: Some(CheckedRecord {
            state,
            result_id: crate::review::publication::result_of_record(conn, &id)?,
            id: id.clone(),
            agency: assignment.agency,
            task_number: assignment.task.number,
            target_name: assignment.target.name,
        }),
    })
}

/// `GET /api/v1/public/check?record=…&digest=…`: no login.
async fn public_check(
    State(state): State<AppState>,
    Query(query): Query<CheckQuery>,
) -> Result<Json<serde_json::Value>> {
    let answer = state.db.read(move |conn| check(conn, &query)).await?;
    Ok(Json(json!(answer)))
}
