//! uniffi bindings over suiji-mobile-core. Logic lives in mobile-core; this crate only wraps
//! its types in `uniffi::Object`s, exposes its vocabularies as enums and flattens errors into
//! one enum an app can act on.

use std::collections::BTreeSet;
use std::sync::Arc;
use suiji_mobile_core::photo::PhotoLimits;
use suiji_mobile_core::record::{
    Conflict, EvidenceNote, Missing, NoteKind, PartySignature, PhotoMeta, SignatureStatus,
    SubmitOutcome,
};
use suiji_mobile_core::store::{OutboxEntry, OutboxItem, Pending, TaskSummary};
use suiji_mobile_core::sync::client as core_sync;
use suiji_mobile_core::sync::session as core_session;
pub use suiji_mobile_core::vocab::{FollowUpMeasure, Method, ResultCategory, ReviewState};
use suiji_mobile_core::{BlobHash, InspectorId, ItemCode, NoteId, RecordId, Store, StoreOptions};

uniffi::setup_scaffolding!();

/// The one error type apps see. Raw SQLite, automerge or image errors never cross: each is
/// mapped to the variant an app would act on, with a readable message.
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum SuijiError {
    /// The record, item, photo, note or blob does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The action clashes with the record's state (submitted, approved, another inspector's
    /// store) or with a sync of the store still running.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The input is not acceptable (unknown code, bad date, corrupt photo, too large...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Talking to the server failed (no connection, a broken or timed-out one, a server
    /// failure): nothing of the failed step was applied; retry later.
    #[error("network: {0}")]
    Network(String),
    /// The server no longer accepts the login: the inspector must log in again.
    #[error("not logged in: {0}")]
    Unauthorized(String),
    /// The sync listener cancelled the sync (`SyncListener.is_cancelled`). What was applied
    /// before stays applied; sync again later.
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// The phone's storage failed.
    #[error("storage: {0}")]
    Storage(String),
    /// Anything else.
    #[error("{reason}")]
    Other {
        /// What went wrong.
        reason: String,
    },
}

impl From<suiji_mobile_core::Error> for SuijiError {
    fn from(e: suiji_mobile_core::Error) -> Self {
        use suiji_mobile_core::Error as E;
        let message = e.to_string();
        match e {
            E::NotFound(_) => SuijiError::NotFound(message),
            E::NotEditable { .. }
            | E::WrongState { .. }
            | E::WrongInspector { .. }
            | E::SyncRunning => SuijiError::Conflict(message),
            E::InvalidInput(_)
            | E::PhotoTooLarge { .. }
            | E::UnsupportedImage(_)
            | E::BadImage(_)
            | E::Malformed(_)
            | E::Json(_)
            | E::UnsupportedSchema { .. } => SuijiError::InvalidInput(message),
            E::Sqlite(_) | E::Io(_) => SuijiError::Storage(message),
            E::Network(_) => SuijiError::Network(message),
            E::Cancelled => SuijiError::Cancelled(message),
            E::Unauthorized(_) | E::SignerNotLoggedIn { .. } => SuijiError::Unauthorized(message),
            E::Server { status, .. } if status >= 500 => SuijiError::Network(message),
            E::Server { status: 404, .. } => SuijiError::NotFound(message),
            E::Server { .. } => SuijiError::Other { reason: message },
            E::Automerge(_) | E::Random(_) => SuijiError::Other { reason: message },
        }
    }
}

type Result<T> = std::result::Result<T, SuijiError>;

fn invalid(message: impl Into<String>) -> SuijiError {
    SuijiError::InvalidInput(message.into())
}

fn blob_hash(text: &str) -> Result<BlobHash> {
    BlobHash::parse(text).ok_or_else(|| invalid(format!("not a SHA-256 hash: {text:?}")))
}

fn date(text: &str) -> Result<chrono::NaiveDate> {
    suiji_mobile_core::record::parse_date(text).map_err(invalid)
}

// ----- vocabularies ------------------------------------------------------------------------
//
// The core's own enums cross as they are (`uniffi::remote` restates their variants and checks
// them against the core's at compile time); each list function gives every value in the
// official order with its stable code (as the server's API and documents spell it) and its
// official wording to show.

/// How an item was checked (核查方式); a record may use several per item.
#[uniffi::remote(Enum)]
pub enum Method {
    /// 实地检查
    OnSite,
    /// 书面检查
    Documentary,
    /// 行政部门检查结果或专业意见
    OfficialOpinion,
    /// 检验检测
    Testing,
    /// 网络监测
    OnlineMonitoring,
    /// 委托专业机构辅助
    ProfessionalAgency,
}

/// The statutory result categories (检查结果); a record may carry several.
#[uniffi::remote(Enum)]
pub enum ResultCategory {
    /// 未发现问题
    NoProblem,
    /// 未按规定公示应当公示的信息
    NotPublicized,
    /// 公示信息隐瞒真实情况、弄虚作假
    FalsePublicity,
    /// 通过登记的住所（经营场所）无法联系
    Unreachable,
    /// 发现问题已责令改正
    Rectified,
    /// 不配合检查情节严重
    Uncooperative,
    /// 未发现开展本次抽查涉及的经营活动
    NoActivity,
    /// 发现问题待后续处理
    PendingFollowup,
    /// 已关闭停业或正在组织清算
    Closed,
    /// 已注销、被吊销、被撤销或已迁出
    Deregistered,
}

/// Follow-up measures (后续处置措施). The core's `None` crosses as `NoFollowUp`, so that
/// Swift's `.none` stays `Optional`'s.
#[uniffi::remote(Enum)]
pub enum FollowUpMeasure {
    /// 无需后续处置
    #[uniffi(name = "NoFollowUp")]
    None,
    /// 责令改正, always with a deadline
    OrderRectification,
    /// 移送办案机构
    ReferCaseUnit,
    /// 抄告相关部门
    NotifyDepartment,
    /// 移送公安/司法机关
    ReferPolice,
    /// 其他
    Other,
}

/// Where a record stands in review.
#[uniffi::remote(Enum)]
pub enum ReviewState {
    /// Drawn and assigned; inspectors are filling it in (待检查).
    Open,
    /// The inspectors submitted it; a supervisor is to review it (已提交).
    Submitted,
    /// A supervisor sent it back with comments; inspectors may edit and submit again (已退回).
    Returned,
    /// A supervisor approved it (已审核).
    Approved,
    /// Its result is public (已公示).
    Published,
}

/// One inspection method with its code and official wording.
#[derive(Debug, Clone, uniffi::Record)]
pub struct MethodEntry {
    /// The method.
    pub method: Method,
    /// Its stable code.
    pub code: String,
    /// Official Chinese wording to show.
    pub label: String,
}

/// One result category with its code and official wording.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ResultCategoryEntry {
    /// The category.
    pub category: ResultCategory,
    /// Its stable code.
    pub code: String,
    /// Official Chinese wording to show.
    pub label: String,
}

/// One follow-up measure with its code and official wording.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FollowUpMeasureEntry {
    /// The measure.
    pub measure: FollowUpMeasure,
    /// Its stable code.
    pub code: String,
    /// Official Chinese wording to show.
    pub label: String,
}

/// One review state with its code and official wording.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ReviewStateEntry {
    /// The state.
    pub state: ReviewState,
    /// Its stable code.
    pub code: String,
    /// Official Chinese wording to show.
    pub label: String,
}

/// Inspection methods (核查方式).
#[uniffi::export]
pub fn methods() -> Vec<MethodEntry> {
    Method::ALL
        .iter()
        .map(|&method| MethodEntry {
            method,
            code: method.code().into(),
            label: method.label().into(),
        })
        .collect()
}

/// Statutory result categories (检查结果).
#[uniffi::export]
pub fn result_categories() -> Vec<ResultCategoryEntry> {
    ResultCategory::ALL
        .iter()
        .map(|&category| ResultCategoryEntry {
            category,
            code: category.code().into(),
            label: category.label().into(),
        })
        .collect()
}

/// Follow-up measures (后续处置措施).
#[uniffi::export]
pub fn follow_up_measures() -> Vec<FollowUpMeasureEntry> {
    FollowUpMeasure::ALL
        .iter()
        .map(|&measure| FollowUpMeasureEntry {
            measure,
            code: measure.code().into(),
            label: measure.label().into(),
        })
        .collect()
}

/// Review states (审核状态).
#[uniffi::export]
pub fn review_states() -> Vec<ReviewStateEntry> {
    ReviewState::ALL
        .iter()
        .map(|&state| ReviewStateEntry {
            state,
            code: state.code().into(),
            label: state.label().into(),
        })
        .collect()
}

/// The record document schema version the bound core speaks.
#[uniffi::export]
pub fn record_schema_version() -> u64 {
    suiji_mobile_core::RECORD_SCHEMA_VERSION
}

// ----- records crossing the boundary -------------------------------------------------------

/// Photo import settings.
#[derive(Debug, Clone, uniffi::Record)]
pub struct PhotoSettings {
    /// Largest original accepted, in bytes.
    pub max_bytes: u64,
    /// Originals with more pixels than this get a downscaled copy for upload.
    pub pixel_budget: u64,
    /// Longest edge of thumbnails.
    pub thumbnail_edge: u32,
}

/// One row of the task list.
#[derive(Debug, Clone, uniffi::Record)]
pub struct TaskRow {
    /// Record id.
    pub record_id: String,
    /// Task name.
    pub task_name: String,
    /// Target's name.
    pub target_name: String,
    /// Target's address.
    pub target_address: String,
    /// Last day of the window (YYYY-MM-DD).
    pub window_end: String,
    /// Publication deadline (YYYY-MM-DD).
    pub publication_deadline: String,
    /// Whether the deadline is provisional (its year's holiday schedule was not loaded on the
    /// server yet): show it as such; it may move.
    pub publication_deadline_provisional: bool,
    /// Where the record stands.
    pub status: ReviewState,
    /// Assigned items.
    pub items_total: u32,
    /// Items answered.
    pub items_answered: u32,
    /// Photos attached.
    pub photo_count: u32,
    /// Unresolved conflicts.
    pub conflict_count: u32,
    /// The rule the server named when it last refused this record's changes (until a later
    /// sync of it goes through); the local changes are kept.
    pub refused_rule: Option<String>,
    /// What the server said when it refused them.
    pub refused_message: Option<String>,
}

impl From<TaskSummary> for TaskRow {
    fn from(t: TaskSummary) -> Self {
        TaskRow {
            record_id: t.record_id.0,
            task_name: t.task_name,
            target_name: t.target_name,
            target_address: t.target_address,
            window_end: t.window_end.to_string(),
            publication_deadline: t.publication_deadline.to_string(),
            publication_deadline_provisional: t.publication_deadline_provisional,
            status: t.status,
            items_total: t.items_total,
            items_answered: t.items_answered,
            photo_count: t.photo_count,
            conflict_count: t.conflict_count,
            refused_rule: t.refusal.as_ref().map(|r| r.rule.clone()),
            refused_message: t.refusal.map(|r| r.message),
        }
    }
}

/// The assignment, flattened for display.
#[derive(Debug, Clone, uniffi::Record)]
pub struct AssignmentView {
    /// 抽查计划编号.
    pub plan_number: String,
    /// 抽查计划名称.
    pub plan_name: String,
    /// 抽查任务编号.
    pub task_number: String,
    /// 抽查任务名称.
    pub task_name: String,
    /// 检查实施机关.
    pub agency: String,
    /// Target name.
    pub target_name: String,
    /// 统一社会信用代码.
    pub target_uscc: Option<String>,
    /// Target address.
    pub target_address: String,
    /// Legal representative.
    pub legal_representative: Option<String>,
    /// Inspector group.
    pub inspectors: Vec<InspectorView>,
    /// Window start (YYYY-MM-DD).
    pub window_start: String,
    /// Window end (YYYY-MM-DD).
    pub window_end: String,
    /// Publication deadline (YYYY-MM-DD).
    pub publication_deadline: String,
    /// Whether the deadline is provisional (a year on the way has no holiday schedule yet);
    /// show it as such. The server sends the final date once the schedule is loaded.
    pub publication_deadline_provisional: bool,
    /// On a 复查 (recheck): the earlier record whose order to correct this visit checks.
    pub recheck_of_record: Option<String>,
    /// On a 复查: the date the party had to correct by (YYYY-MM-DD).
    pub recheck_deadline: Option<String>,
}

/// One member of the inspector group.
#[derive(Debug, Clone, uniffi::Record)]
pub struct InspectorView {
    /// Inspector id.
    pub inspector_id: String,
    /// Name.
    pub name: String,
    /// 执法证号.
    pub cert_no: String,
    /// Group leader.
    pub lead: bool,
}

/// An assigned item with its answer.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ItemView {
    /// Item code.
    pub code: String,
    /// Item name.
    pub name: String,
    /// 法律依据.
    pub legal_basis: String,
    /// 检查内容.
    pub content: String,
    /// The methods the item list foresees for this item (to offer first).
    pub foreseen_methods: Vec<Method>,
    /// Checked, not checked, or unanswered (null).
    pub checked: Option<bool>,
    /// Methods used.
    pub methods: Vec<Method>,
    /// Finding.
    pub finding: Option<String>,
    /// Disposition.
    pub disposition: Option<String>,
}

/// A photo's metadata.
#[derive(Debug, Clone, uniffi::Record)]
pub struct PhotoView {
    /// SHA-256 of the original.
    pub sha256: String,
    /// Item code.
    pub item: String,
    /// Caption.
    pub caption: String,
    /// MIME type.
    pub mime: String,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Size of the original in bytes.
    pub size: u64,
    /// EXIF capture time.
    pub captured_at: Option<String>,
    /// EXIF latitude.
    pub latitude: Option<f64>,
    /// EXIF longitude.
    pub longitude: Option<f64>,
    /// Thumbnail blob hash.
    pub thumbnail_sha256: String,
    /// Upload copy blob hash.
    pub upload_sha256: Option<String>,
    /// Who took it.
    pub taken_by: String,
}

impl From<PhotoMeta> for PhotoView {
    fn from(p: PhotoMeta) -> Self {
        PhotoView {
            sha256: p.sha256.to_string(),
            item: p.item.0,
            caption: p.caption,
            mime: p.mime,
            width: p.width,
            height: p.height,
            size: p.size,
            captured_at: p.captured_at,
            latitude: p.gps.map(|g| g.latitude),
            longitude: p.gps.map(|g| g.longitude),
            thumbnail_sha256: p.thumbnail_sha256.to_string(),
            upload_sha256: p.upload_sha256.map(|h| h.to_string()),
            taken_by: p.taken_by.0,
        }
    }
}

/// An evidence note.
#[derive(Debug, Clone, uniffi::Record)]
pub struct NoteView {
    /// Note id.
    pub id: String,
    /// Item code.
    pub item: String,
    /// Text.
    pub text: String,
    /// Photo hashes.
    pub photos: Vec<String>,
    /// True for a copy of a document (复印件).
    pub document_copy: bool,
    /// Witness who signed the copy.
    pub witness: Option<String>,
    /// Author.
    pub author: String,
    /// Created (RFC 3339).
    pub created_at: String,
}

impl From<EvidenceNote> for NoteView {
    fn from(n: EvidenceNote) -> Self {
        let (document_copy, witness) = match n.kind {
            NoteKind::Note => (false, None),
            NoteKind::DocumentCopy { witness } => (true, witness),
        };
        NoteView {
            id: n.id.0,
            item: n.item.0,
            text: n.text,
            photos: n.photos.into_iter().map(|h| h.to_string()).collect(),
            document_copy,
            witness,
            author: n.author.0,
            created_at: n.created_at.to_rfc3339(),
        }
    }
}

/// The follow-up measure.
#[derive(Debug, Clone, uniffi::Record)]
pub struct FollowUpView {
    /// The measure.
    pub measure: Option<FollowUpMeasure>,
    /// Deadline (YYYY-MM-DD).
    pub deadline: Option<String>,
    /// Detail.
    pub detail: Option<String>,
}

/// One field with competing values.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ConflictView {
    /// Field path (`items/A01/finding`).
    pub field: String,
    /// Item code, for per-item fields.
    pub item: Option<String>,
    /// Competing values.
    pub values: Vec<ConflictValueView>,
}

/// One competing value.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ConflictValueView {
    /// The value as text.
    pub value: String,
    /// Who wrote it.
    pub actor: String,
    /// The inspector who wrote it.
    pub inspector_id: Option<String>,
}

impl From<Conflict> for ConflictView {
    fn from(c: Conflict) -> Self {
        ConflictView {
            field: c.field,
            item: c.item.map(|i| i.0),
            values: c
                .values
                .into_iter()
                .map(|v| ConflictValueView {
                    value: v.value,
                    actor: v.actor,
                    inspector_id: v.inspector_id.map(|i| i.0),
                })
                .collect(),
        }
    }
}

/// One reason a record cannot be submitted.
#[derive(Debug, Clone, uniffi::Record)]
pub struct MissingView {
    /// Stable code (`item_not_answered`, `no_result_category`, ...).
    pub code: String,
    /// Item concerned.
    pub item: Option<String>,
    /// Readable message.
    pub message: String,
}

impl From<Missing> for MissingView {
    fn from(m: Missing) -> Self {
        MissingView {
            code: m.code().into(),
            item: m.item().map(|i| i.0.clone()),
            message: m.to_string(),
        }
    }
}

/// What `submit` did.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SubmitResult {
    /// Whether the record was submitted.
    pub submitted: bool,
    /// The round submitted (0 if not submitted).
    pub round: u64,
    /// What is missing (empty if submitted).
    pub missing: Vec<MissingView>,
}

/// The review part.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ReviewView {
    /// Where the record stands.
    pub state: ReviewState,
    /// Round.
    pub round: u64,
    /// Comment of the latest review step, e.g. why it was returned.
    pub last_comment: Option<String>,
}

/// What waits to go to the server (`MobileStore.pending`).
#[derive(Debug, Clone, uniffi::Record)]
pub struct PendingView {
    /// Records with local changes the server may not have.
    pub records: u32,
    /// Photos, thumbnails and signature images queued for upload.
    pub blobs: u32,
    /// Their bytes.
    pub blob_bytes: u64,
}

impl From<Pending> for PendingView {
    fn from(p: Pending) -> Self {
        PendingView {
            records: p.records,
            blobs: p.blobs,
            blob_bytes: p.blob_bytes,
        }
    }
}

/// An outbox entry (read-only: only a sync clears entries, once the server holds them).
#[derive(Debug, Clone, uniffi::Record)]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    /// `record` or `blob`.
    pub kind: String,
    /// Record id or blob hash.
    pub key: String,
    /// Generation.
    pub generation: i64,
    /// Queued at (RFC 3339).
    pub queued_at: String,
}

impl From<OutboxEntry> for OutboxRow {
    fn from(e: OutboxEntry) -> Self {
        let (kind, key) = match e.item {
            OutboxItem::Record(id) => ("record", id.0),
            OutboxItem::Blob(hash) => ("blob", hash.to_string()),
        };
        OutboxRow {
            id: e.id,
            kind: kind.into(),
            key,
            generation: e.generation,
            queued_at: e.queued_at,
        }
    }
}

// ----- objects -----------------------------------------------------------------------------

/// The phone's store: open it once per app run.
#[derive(uniffi::Object)]
pub struct MobileStore {
    store: Arc<Store>,
}

#[uniffi::export]
impl MobileStore {
    /// Opens (or creates) the store in `dir` for an inspector, with default photo settings.
    #[uniffi::constructor]
    pub fn open(dir: String, inspector_id: String) -> Result<Arc<Self>> {
        let store = Store::open(dir, StoreOptions::new(InspectorId(inspector_id)))?;
        Ok(Arc::new(MobileStore {
            store: Arc::new(store),
        }))
    }

    /// Opens (or creates) the store with explicit photo settings.
    #[uniffi::constructor]
    pub fn open_with_photo_settings(
        dir: String,
        inspector_id: String,
        photos: PhotoSettings,
    ) -> Result<Arc<Self>> {
        let mut options = StoreOptions::new(InspectorId(inspector_id));
        options.photos = PhotoLimits {
            max_bytes: usize::try_from(photos.max_bytes).unwrap_or(usize::MAX),
            pixel_budget: photos.pixel_budget,
            thumbnail_edge: photos.thumbnail_edge,
            ..PhotoLimits::default()
        };
        let store = Store::open(dir, options)?;
        Ok(Arc::new(MobileStore {
            store: Arc::new(store),
        }))
    }

    /// The inspector the store belongs to.
    pub fn inspector_id(&self) -> String {
        self.store.inspector_id().0.clone()
    }

    /// The task list (from the index; loads no document).
    pub fn list_tasks(&self) -> Result<Vec<TaskRow>> {
        Ok(self
            .store
            .list_tasks()?
            .into_iter()
            .map(TaskRow::from)
            .collect())
    }

    /// Takes in a record document handed over by the server; returns its id.
    pub fn put_assigned_record(&self, bytes: Vec<u8>) -> Result<String> {
        Ok(self.store.put_assigned_record(&bytes)?.0)
    }

    /// Opens a record held by the store.
    pub fn record(&self, record_id: String) -> Result<Arc<InspectionRecord>> {
        let id = RecordId(record_id);
        self.store.read(&id, |_| Ok(()))?;
        Ok(Arc::new(InspectionRecord {
            store: self.store.clone(),
            id,
        }))
    }

    /// Removes a record whose assignment was withdrawn.
    pub fn remove_record(&self, record_id: String) -> Result<()> {
        Ok(self.store.remove_record(&RecordId(record_id))?)
    }

    /// What still needs uploading.
    pub fn outbox(&self) -> Result<Vec<OutboxRow>> {
        Ok(self
            .store
            .outbox()?
            .into_iter()
            .map(OutboxRow::from)
            .collect())
    }

    /// What waits to go to the server, cheaply (one query, no record is read): for a
    /// background job (WorkManager, BGTaskScheduler) to decide whether to sync.
    pub fn pending(&self) -> Result<PendingView> {
        Ok(self.store.pending()?.into())
    }

    /// A blob's bytes (photo, thumbnail), verified against its hash.
    pub fn blob(&self, sha256: String) -> Result<Vec<u8>> {
        Ok(self.store.blob(&blob_hash(&sha256)?)?)
    }

    /// A blob's file path, for image views that load from a path.
    pub fn blob_path(&self, sha256: String) -> Result<String> {
        Ok(self
            .store
            .blob_path(&blob_hash(&sha256)?)?
            .to_string_lossy()
            .into_owned())
    }

    /// Logs the store's own inspector in on the server at `server_url` and keeps the session
    /// in the store: later syncs need no tokens, and refreshed ones are kept as they come.
    /// Opens a session bound to this phone's device and registers the inspector's signing
    /// key. A wrong password is `SuijiError.Unauthorized`; another inspector's account
    /// `Conflict`. Blocks.
    #[uniffi::method(default(options = None))]
    pub fn login(
        &self,
        server_url: String,
        username: String,
        password: String,
        options: Option<SyncOptions>,
    ) -> Result<()> {
        Ok(core_session::login(
            &self.store,
            &server_url,
            &username,
            &password,
            &options.unwrap_or_default().into(),
        )?)
    }

    /// Logs out: revokes the session on the server if it can be reached, and forgets it on
    /// the phone in any case. Returns whether the server revoked it (false offline, or when
    /// not logged in). Records, photos and queued uploads stay for the next login. Blocks.
    #[uniffi::method(default(options = None))]
    pub fn logout(&self, options: Option<SyncOptions>) -> Result<bool> {
        Ok(core_session::logout(
            &self.store,
            &options.unwrap_or_default().into(),
        )?)
    }

    /// The server the inspector is logged in on, or null when not logged in (never, logged
    /// out, or the server refused the session at a sync): then show the login screen.
    pub fn logged_in_server(&self) -> Result<Option<String>> {
        Ok(self.store.session()?.map(|s| s.server_url))
    }

    /// Syncs with the server of the login: sends local changes, takes in the server's, new
    /// and withdrawn records, then uploads queued photos. Blocks until done: call it from a
    /// background thread. `listener` hears the progress and can cancel
    /// (`SuijiError.Cancelled`, at the next request). Network failures and timeouts leave the
    /// store as before the failed round (`SuijiError.Network`: retry later);
    /// `SuijiError.Unauthorized` means log in again (the session was forgotten).
    #[uniffi::method(default(listener = None, options = None))]
    pub fn sync(
        &self,
        listener: Option<Arc<dyn SyncListener>>,
        options: Option<SyncOptions>,
    ) -> Result<SyncReport> {
        let report = core_session::sync(
            &self.store,
            &options.unwrap_or_default().into(),
            &Forward(listener),
        )?;
        Ok(report.into())
    }

    /// A partner logs in on this phone with their own password so that they can sign here
    /// (`InspectionRecord.sign_for`): registers a signing key for them on this device, on the
    /// server of this store's login. Returns their inspector id. Blocks.
    #[uniffi::method(default(options = None))]
    pub fn add_signer(
        &self,
        username: String,
        password: String,
        options: Option<SyncOptions>,
    ) -> Result<String> {
        Ok(core_session::add_signer(
            &self.store,
            &username,
            &password,
            &options.unwrap_or_default().into(),
        )?
        .0)
    }

    /// The public key (hex) of the store's own inspector on this phone, created if needed.
    pub fn signing_public_key(&self) -> Result<String> {
        Ok(self.store.signing_public_key(self.store.inspector_id())?)
    }

    /// The inspectors who can sign on this phone, with their public keys.
    pub fn signers(&self) -> Result<Vec<SignerKey>> {
        Ok(self
            .store
            .signers()?
            .into_iter()
            .map(|s| SignerKey {
                inspector_id: s.inspector_id.0,
                public_key: s.public_key,
                registered: s.registered,
            })
            .collect())
    }

    /// Downloads a blob a record refers to (a partner's thumbnail or photo) unless it is
    /// already on the phone, and returns its path. Blocks.
    #[uniffi::method(default(listener = None, options = None))]
    pub fn fetch_blob(
        &self,
        sha256: String,
        listener: Option<Arc<dyn SyncListener>>,
        options: Option<SyncOptions>,
    ) -> Result<String> {
        let path = core_session::fetch_blob(
            &self.store,
            &blob_hash(&sha256)?,
            &options.unwrap_or_default().into(),
            &Forward(listener),
        )?;
        Ok(path.to_string_lossy().into_owned())
    }
}

// ----- signatures --------------------------------------------------------------------------

/// An inspector's public signing key.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SignerKey {
    /// The inspector.
    pub inspector_id: String,
    /// Ed25519 public key, hex.
    pub public_key: String,
    /// Whether the server registered it (as this phone knows; ignored when checking).
    pub registered: bool,
}

/// One inspector signature with what checking it found.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SignatureCheckView {
    /// Who signed.
    pub inspector_id: String,
    /// The key it names.
    pub public_key: String,
    /// When (RFC 3339).
    pub signed_at: String,
    /// Their handwritten signature image's blob, if one was drawn.
    pub image_sha256: Option<String>,
    /// `valid`, `stale` (the record changed after signing) or `invalid`.
    pub status: String,
    /// Why it is invalid.
    pub reason: Option<String>,
}

// ----- sync --------------------------------------------------------------------------------

/// How long the phone waits on the server. Leave out for 20 s to connect and 60 s for each
/// read or write.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SyncOptions {
    /// Longest wait to open a connection, in milliseconds.
    #[uniffi(default = 20000)]
    pub connect_timeout_ms: u64,
    /// Longest wait for each read or write on a connection, in milliseconds: a server that
    /// stops answering fails the sync (`SuijiError.Network`) after this.
    #[uniffi(default = 60000)]
    pub io_timeout_ms: u64,
}

impl Default for SyncOptions {
    fn default() -> Self {
        core_sync::SyncOptions::default().into()
    }
}

impl From<core_sync::SyncOptions> for SyncOptions {
    fn from(o: core_sync::SyncOptions) -> Self {
        SyncOptions {
            connect_timeout_ms: o.connect_timeout.as_millis() as u64,
            io_timeout_ms: o.io_timeout.as_millis() as u64,
        }
    }
}

impl From<SyncOptions> for core_sync::SyncOptions {
    fn from(o: SyncOptions) -> Self {
        core_sync::SyncOptions {
            connect_timeout: std::time::Duration::from_millis(o.connect_timeout_ms),
            io_timeout: std::time::Duration::from_millis(o.io_timeout_ms),
        }
    }
}

/// How far a sync has got.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SyncProgress {
    /// Rounds sent so far.
    pub round: u32,
    /// Records with nothing left to exchange.
    pub documents_done: u32,
    /// Records held.
    pub documents_total: u32,
    /// Photo bytes the server holds, of those queued.
    pub bytes_done: u64,
    /// Photo bytes queued for upload.
    pub bytes_total: u64,
}

/// Told about a sync as it runs, on the thread running it. Implement it in the app.
#[uniffi::export(foreign)]
pub trait SyncListener: Send + Sync {
    /// After every round and every photo chunk.
    fn on_progress(&self, progress: SyncProgress);
    /// Asked before every request of the sync: true stops it there with
    /// `SuijiError.Cancelled` (a request under way ends first, within the timeouts). Return
    /// true once the user cancelled or the background job's time is up.
    fn is_cancelled(&self) -> bool;
}

/// Hands the core's sync events to the app's listener.
struct Forward(Option<Arc<dyn SyncListener>>);

impl core_sync::SyncListener for Forward {
    fn progress(&self, p: &core_sync::SyncProgress) {
        if let Some(listener) = &self.0 {
            listener.on_progress(SyncProgress {
                round: p.round,
                documents_done: p.documents_done,
                documents_total: p.documents_total,
                bytes_done: p.bytes_done,
                bytes_total: p.bytes_total,
            });
        }
    }

    fn is_cancelled(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|listener| listener.is_cancelled())
    }
}

/// A record the server refused, and why.
#[derive(Debug, Clone, uniffi::Record)]
pub struct RefusedRecord {
    /// Record id.
    pub record_id: String,
    /// The rule broken: writer, shape, record_closed, not_assigned, unknown_record,
    /// malformed_message.
    pub rule: String,
    /// What the server said.
    pub message: String,
}

/// A photo that could not be uploaded (it stays queued).
#[derive(Debug, Clone, uniffi::Record)]
pub struct FailedBlob {
    /// Blob hash.
    pub sha256: String,
    /// Why.
    pub reason: String,
}

/// What a sync did.
#[derive(Debug, Clone, uniffi::Record)]
pub struct SyncReport {
    /// Requests to the sync endpoint.
    pub rounds: u32,
    /// Every HTTP request of the sync (rounds, blob uploads, a token refresh).
    pub http_requests: u32,
    /// Whether phone and server ended in step.
    pub complete: bool,
    /// Records new to the phone or changed by the server.
    pub received: Vec<String>,
    /// Of those, the new ones.
    pub new_records: Vec<String>,
    /// Records whose changes the server stored.
    pub sent: Vec<String>,
    /// Records the server refused.
    pub refused: Vec<RefusedRecord>,
    /// Records dropped because their assignment was withdrawn.
    pub withdrawn: Vec<String>,
    /// Photos (blobs) the server now holds.
    pub blobs_uploaded: Vec<String>,
    /// Photos that could not be uploaded.
    pub blobs_failed: Vec<FailedBlob>,
    /// Photos the server had lost that this phone sent again.
    pub blobs_requeued: Vec<String>,
    /// Body bytes sent (blob uploads included).
    pub bytes_sent: u64,
    /// Of those, the bytes of photo (blob) uploads.
    pub blob_bytes_sent: u64,
    /// Body bytes received.
    pub bytes_received: u64,
}

impl From<core_sync::SyncReport> for SyncReport {
    fn from(r: core_sync::SyncReport) -> Self {
        let ids = |ids: Vec<RecordId>| ids.into_iter().map(|id| id.0).collect();
        SyncReport {
            rounds: r.rounds,
            http_requests: r.http_requests,
            complete: r.complete,
            received: ids(r.received),
            new_records: ids(r.new_records),
            sent: ids(r.sent),
            refused: r
                .refused
                .into_iter()
                .map(|x| RefusedRecord {
                    record_id: x.record_id.0,
                    rule: x.rule,
                    message: x.message,
                })
                .collect(),
            withdrawn: ids(r.withdrawn),
            blobs_uploaded: r.blobs_uploaded.into_iter().map(String::from).collect(),
            blobs_failed: r
                .blobs_failed
                .into_iter()
                .map(|b| FailedBlob {
                    sha256: b.sha256.into(),
                    reason: b.reason,
                })
                .collect(),
            blobs_requeued: r.blobs_requeued.into_iter().map(String::from).collect(),
            bytes_sent: r.bytes_sent,
            blob_bytes_sent: r.blob_bytes_sent,
            bytes_received: r.bytes_received,
        }
    }
}

/// One inspection record in the store. Every edit is saved at once.
#[derive(uniffi::Object)]
pub struct InspectionRecord {
    store: Arc<Store>,
    id: RecordId,
}

impl InspectionRecord {
    fn edit<T>(
        &self,
        f: impl FnOnce(&mut suiji_mobile_core::RecordDoc) -> suiji_mobile_core::Result<T>,
    ) -> Result<T> {
        Ok(self.store.edit(&self.id, f)?)
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&suiji_mobile_core::RecordDoc) -> suiji_mobile_core::Result<T>,
    ) -> Result<T> {
        Ok(self.store.read(&self.id, f)?)
    }
}

#[uniffi::export]
impl InspectionRecord {
    /// The record id.
    pub fn id(&self) -> String {
        self.id.0.clone()
    }

    /// Where the record stands.
    pub fn status(&self) -> Result<ReviewState> {
        self.read(|d| d.status())
    }

    /// The assignment.
    pub fn assignment(&self) -> Result<AssignmentView> {
        let a = self.read(|d| d.assignment())?;
        Ok(AssignmentView {
            plan_number: a.plan.number,
            plan_name: a.plan.name,
            task_number: a.task.number,
            task_name: a.task.name,
            agency: a.agency,
            target_name: a.target.name,
            target_uscc: a.target.uscc,
            target_address: a.target.address,
            legal_representative: a.target.legal_representative,
            inspectors: a
                .inspectors
                .into_iter()
                .map(|i| InspectorView {
                    inspector_id: i.inspector_id.0,
                    name: i.name,
                    cert_no: i.cert_no,
                    lead: i.lead,
                })
                .collect(),
            window_start: a.window_start.to_string(),
            window_end: a.window_end.to_string(),
            publication_deadline: a.publication_deadline.to_string(),
            publication_deadline_provisional: a.publication_deadline_provisional,
            recheck_of_record: a.recheck_of.as_ref().map(|r| r.record_id.clone()),
            recheck_deadline: a.recheck_of.map(|r| r.deadline.to_string()),
        })
    }

    /// Assigned items with their answers.
    pub fn items(&self) -> Result<Vec<ItemView>> {
        let items = self.read(|d| d.items())?;
        Ok(items
            .into_iter()
            .map(|(item, answer)| ItemView {
                code: item.code.0,
                name: item.name,
                legal_basis: item.legal_basis,
                content: item.content,
                foreseen_methods: item.methods,
                checked: answer.checked,
                methods: answer.methods.into_iter().collect(),
                finding: answer.finding,
                disposition: answer.disposition,
            })
            .collect())
    }

    /// Records whether an item was checked.
    pub fn set_checked(&self, item: String, checked: bool) -> Result<()> {
        self.edit(|d| d.set_checked(&ItemCode(item), checked))
    }

    /// Sets the methods used for an item.
    pub fn set_methods(&self, item: String, methods: Vec<Method>) -> Result<()> {
        self.edit(|d| d.set_methods(&ItemCode(item), &methods))
    }

    /// Sets the finding for an item.
    pub fn set_finding(&self, item: String, finding: String) -> Result<()> {
        self.edit(|d| d.set_finding(&ItemCode(item), &finding))
    }

    /// Sets the on-the-spot disposition for an item.
    pub fn set_disposition(&self, item: String, disposition: String) -> Result<()> {
        self.edit(|d| d.set_disposition(&ItemCode(item), &disposition))
    }

    /// Result categories selected, in the official order.
    pub fn result_categories(&self) -> Result<Vec<ResultCategory>> {
        let set: BTreeSet<ResultCategory> = self.read(|d| d.result_categories())?;
        Ok(set.into_iter().collect())
    }

    /// Sets the selected result categories.
    pub fn set_result_categories(&self, categories: Vec<ResultCategory>) -> Result<()> {
        self.edit(|d| d.set_result_categories(&categories))
    }

    /// The follow-up measure.
    pub fn follow_up(&self) -> Result<FollowUpView> {
        let f = self.read(|d| d.follow_up())?;
        Ok(FollowUpView {
            measure: f.measure,
            deadline: f.deadline.map(|d| d.to_string()),
            detail: f.detail,
        })
    }

    /// Sets the follow-up measure, its deadline (YYYY-MM-DD) and detail.
    pub fn set_follow_up(
        &self,
        measure: Option<FollowUpMeasure>,
        deadline: Option<String>,
        detail: Option<String>,
    ) -> Result<()> {
        let deadline = deadline.as_deref().map(date).transpose()?;
        self.edit(|d| d.set_follow_up(measure, deadline, detail.as_deref()))
    }

    /// The party's statement.
    pub fn party_statement(&self) -> Result<Option<String>> {
        self.read(|d| d.party_statement())
    }

    /// Records the party's statement.
    pub fn set_party_statement(&self, statement: String) -> Result<()> {
        self.edit(|d| d.set_party_statement(&statement))
    }

    /// Imports a photo (JPEG, PNG or WebP bytes) for an item.
    pub fn import_photo(&self, item: String, bytes: Vec<u8>, caption: String) -> Result<PhotoView> {
        Ok(self
            .store
            .import_photo(&self.id, &ItemCode(item), &bytes, &caption)?
            .into())
    }

    /// Imports a photo for an item from a file the app can read (the camera's or the
    /// gallery's copy): the core reads it, so the bytes do not cross into the app's runtime.
    /// The same checks and limits as `import_photo` hold; a missing file is `NotFound`. The
    /// file is left where it is.
    pub fn import_photo_file(
        &self,
        item: String,
        path: String,
        caption: String,
    ) -> Result<PhotoView> {
        Ok(self
            .store
            .import_photo_file(&self.id, &ItemCode(item), path, &caption)?
            .into())
    }

    /// Removes a photo: it leaves the record, and its files and queued uploads go unless
    /// another record uses the same photo.
    pub fn remove_photo(&self, sha256: String) -> Result<()> {
        Ok(self.store.remove_photo(&self.id, &blob_hash(&sha256)?)?)
    }

    /// Photos attached.
    pub fn photos(&self) -> Result<Vec<PhotoView>> {
        Ok(self
            .read(|d| d.photos())?
            .into_iter()
            .map(PhotoView::from)
            .collect())
    }

    /// Changes a photo's caption.
    pub fn set_photo_caption(&self, sha256: String, caption: String) -> Result<()> {
        let hash = blob_hash(&sha256)?;
        self.edit(|d| d.set_photo_caption(&hash, &caption))
    }

    /// Adds an evidence note to an item, optionally naming attached photos. A
    /// `document_copy` note stands for a copy of a document (复印件), signed by `witness`.
    pub fn add_note(
        &self,
        item: String,
        text: String,
        photos: Vec<String>,
        document_copy: bool,
        witness: Option<String>,
    ) -> Result<NoteView> {
        let photos = photos
            .iter()
            .map(|p| blob_hash(p))
            .collect::<Result<Vec<_>>>()?;
        let kind = if document_copy {
            NoteKind::DocumentCopy { witness }
        } else if witness.is_some() {
            return Err(invalid("only a document copy has a witness"));
        } else {
            NoteKind::Note
        };
        let author = self.store.inspector_id().clone();
        Ok(self
            .edit(|d| d.add_note(&author, &ItemCode(item), &text, &photos, kind))?
            .into())
    }

    /// Evidence notes.
    pub fn notes(&self) -> Result<Vec<NoteView>> {
        Ok(self
            .read(|d| d.notes())?
            .into_iter()
            .map(NoteView::from)
            .collect())
    }

    /// Removes an evidence note.
    pub fn remove_note(&self, id: String) -> Result<()> {
        self.edit(|d| d.remove_note(&NoteId(id)))
    }

    /// Signs as the store's inspector with their key on this phone, with their handwritten
    /// signature (PNG from a signature pad) if one was drawn. The key is registered with the
    /// server at `MobileStore.login`; the server refuses signatures of an unregistered key.
    pub fn sign(&self, image_png: Option<Vec<u8>>) -> Result<()> {
        let me = self.store.inspector_id().clone();
        self.store.sign(&self.id, &me, image_png.as_deref())?;
        Ok(())
    }

    /// Signs as another inspector of the group on this phone. They must have logged in here
    /// first (`MobileStore.add_signer`), which registered a key for them on this device;
    /// otherwise `SuijiError.Unauthorized`.
    pub fn sign_for(&self, inspector_id: String, image_png: Option<Vec<u8>>) -> Result<()> {
        self.store
            .sign(&self.id, &InspectorId(inspector_id), image_png.as_deref())?;
        Ok(())
    }

    /// Inspector ids whose signatures are present.
    pub fn signed_by(&self) -> Result<Vec<String>> {
        Ok(self
            .read(|d| d.signatures())?
            .into_iter()
            .map(|s| s.inspector_id.0)
            .collect())
    }

    /// Checks every inspector signature against the given public keys (as the server's
    /// signed-copy download lists them, or as each phone reports its own), offline.
    pub fn check_signatures(&self, keys: Vec<SignerKey>) -> Result<Vec<SignatureCheckView>> {
        let mut doc = self.store.record(&self.id)?;
        let mut registered = |inspector: &InspectorId, key: &str| {
            keys.iter()
                .any(|k| k.inspector_id == inspector.0 && k.public_key == key)
        };
        Ok(doc
            .check_signatures(&mut registered)?
            .into_iter()
            .map(|check| SignatureCheckView {
                inspector_id: check.signature.inspector_id.0.clone(),
                public_key: check.signature.public_key.clone(),
                signed_at: check.signature.signed_at.to_rfc3339(),
                image_sha256: check.signature.image_sha256.map(|h| h.as_str().to_owned()),
                status: check.status.code().to_owned(),
                reason: match check.status {
                    SignatureStatus::Invalid(why) => Some(why),
                    _ => None,
                },
            })
            .collect())
    }

    /// Records the party's handwritten signature: `image_png` from the signature pad.
    pub fn party_sign(&self, name: String, role: String, image_png: Vec<u8>) -> Result<()> {
        self.store.party_sign(&self.id, &name, &role, &image_png)?;
        Ok(())
    }

    /// Records that the party refused to sign.
    pub fn party_refuse(&self, reason: String) -> Result<()> {
        let me = self.store.inspector_id().clone();
        self.edit(|d| d.party_refuse(&me, &reason))?;
        Ok(())
    }

    /// `signed`, `refused` or null.
    pub fn party_signature_kind(&self) -> Result<Option<String>> {
        Ok(self.read(|d| d.party_signature())?.map(|s| match s {
            PartySignature::Signed { .. } => "signed".to_owned(),
            PartySignature::Refused { .. } => "refused".to_owned(),
        }))
    }

    /// Fields with competing values after a merge.
    pub fn conflicts(&self) -> Result<Vec<ConflictView>> {
        Ok(self
            .read(|d| d.conflicts())?
            .into_iter()
            .map(ConflictView::from)
            .collect())
    }

    /// What stands between the record and submission.
    pub fn missing(&self) -> Result<Vec<MissingView>> {
        Ok(self
            .read(|d| d.missing_for_submit())?
            .into_iter()
            .map(MissingView::from)
            .collect())
    }

    /// Submits if complete; otherwise returns what is missing and changes nothing.
    pub fn submit(&self) -> Result<SubmitResult> {
        Ok(match self.store.submit(&self.id)? {
            SubmitOutcome::Submitted { round } => SubmitResult {
                submitted: true,
                round,
                missing: vec![],
            },
            SubmitOutcome::Incomplete { missing } => SubmitResult {
                submitted: false,
                round: 0,
                missing: missing.into_iter().map(MissingView::from).collect(),
            },
        })
    }

    /// The review part.
    pub fn review(&self) -> Result<ReviewView> {
        let r = self.read(|d| d.review())?;
        Ok(ReviewView {
            state: r.state,
            round: r.round,
            last_comment: r.history.last().and_then(|e| e.comment.clone()),
        })
    }

    /// The record document as bytes (for the sync layer and diagnostics).
    pub fn export(&self) -> Result<Vec<u8>> {
        Ok(self.store.export_record(&self.id)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_map_to_the_flat_variants_apps_act_on() {
        use suiji_mobile_core::Error as E;
        assert!(matches!(
            SuijiError::from(E::NotFound("record x".into())),
            SuijiError::NotFound(m) if m.contains("record x")
        ));
        assert!(matches!(
            SuijiError::from(E::NotEditable {
                record: "r".into(),
                status: "submitted".into()
            }),
            SuijiError::Conflict(_)
        ));
        assert!(matches!(
            SuijiError::from(E::PhotoTooLarge { size: 2, limit: 1 }),
            SuijiError::InvalidInput(_)
        ));
        assert!(matches!(
            SuijiError::from(E::Io(std::io::Error::other("disk full"))),
            SuijiError::Storage(m) if m.contains("disk full")
        ));
        assert!(matches!(
            SuijiError::from(E::Network("connection reset".into())),
            SuijiError::Network(_)
        ));
        assert!(matches!(
            SuijiError::from(E::Unauthorized("refresh token spent".into())),
            SuijiError::Unauthorized(_)
        ));
        let server = |status: u16| E::Server {
            status,
            code: "x".into(),
            message: "y".into(),
        };
        assert!(matches!(
            SuijiError::from(server(503)),
            SuijiError::Network(_)
        ));
        assert!(matches!(
            SuijiError::from(server(404)),
            SuijiError::NotFound(_)
        ));
        assert!(matches!(
            SuijiError::from(server(403)),
            SuijiError::Other { .. }
        ));
    }

    #[test]
    fn vocabularies_expose_every_code() {
        assert_eq!(result_categories().len(), 10);
        assert!(
            methods()
                .iter()
                .any(|m| m.code == "on_site" && m.label == "实地检查")
        );
        assert_eq!(
            record_schema_version(),
            suiji_mobile_core::RECORD_SCHEMA_VERSION
        );
        assert!(
            follow_up_measures()
                .iter()
                .any(|m| m.code == "order_rectification")
        );
    }
}
