//! The suiji server: registry, plans and tasks, draws, sync, review,
//! publication, audit log.
//!
//! [`open`] prepares the state from a data directory, [`router`] builds the
//! HTTP routes over it and [`serve`] runs them on a listener until a shutdown
//! future resolves. `main.rs` only reads the command line and calls these.

use std::future::Future;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;

pub mod accounts;
pub mod actor;
pub mod audit;
pub mod auth;
pub mod blobs;
pub mod calendar;
pub mod db;
#[cfg(feature = "demo")]
pub mod demo;
pub mod documents;
pub mod dossier;
pub mod draw;
pub mod error;
pub mod extract;
#[cfg(feature = "demo")]
pub mod memory_phone;
pub mod plans;
pub mod registry;
pub mod review;
pub mod signing;
pub mod spreadsheet;
pub mod store;
pub mod sync;
pub mod throttle;
pub mod transport;
pub mod uscc;
pub mod visibility;
pub mod web;

pub use error::{Error, Result};

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory holding the database and blobs.
    pub data_dir: PathBuf,
    /// A PostgreSQL database (`postgres://user@host:port/db`) to use instead of the SQLite
    /// file in the data directory.
    pub database: Option<String>,
    /// An S3-compatible blob store (`s3://bucket/prefix`, endpoint and keys from the `AWS_*`
    /// variables) to use instead of the `blobs` directory in the data directory.
    pub blobs: Option<String>,
    /// Demo mode: well-known demo passwords are accepted.
    pub demo: bool,
    /// Timeouts, connection cap and head sizes of the HTTP transport.
    pub transport: transport::Limits,
    /// The address the public reaches the server at (`https://host`), printed on
    /// documents and in their QR codes; unset, a request's own `Host` is used.
    pub public_url: Option<String>,
}

impl Config {
    /// The database file inside the data directory.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("suiji.db")
    }
}

/// Shared state of every handler: cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub db: db::Db,
    /// Keys that sign and check access tokens.
    pub keys: Arc<auth::JwtKeys>,
    /// The configuration the server was started with.
    pub config: Arc<Config>,
    /// The content-addressed blob store.
    pub blobs: Arc<dyn blobs::BlobStore>,
    /// What the sync endpoint keeps in memory: sync states and parsed record documents.
    pub sync: Arc<sync::SyncMemory>,
    /// The working-day calendar; an admin may load newer years.
    pub calendar: Arc<std::sync::RwLock<Arc<calendar::Calendar>>>,
    /// Key of the web console's CSRF tokens.
    pub csrf: Arc<web::CsrfKey>,
    /// Key sealing open draw commitments' secrets, kept in a file beside
    /// the database, never in it.
    pub seal: Arc<draw::seal::SealKey>,
    /// Sign-in limits and the bound on password hashing.
    pub throttle: Arc<throttle::Throttle>,
    /// The target imports running now, bounded for the API and the console together.
    pub imports: registry::import::ImportPermits,
}

impl AppState {
    /// The working-day calendar as it stands now.
    pub fn calendar(&self) -> Arc<calendar::Calendar> {
        match self.calendar.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// The `meta` key under which servers sharing a PostgreSQL database record their seal key's id.
pub(crate) const SEAL_KEY_ID: &str = "draw_seal_key_id";

/// Records the seal key's id in a PostgreSQL database that has none, and refuses to start
/// when it names another key: a server with a key of its own could not unseal the
/// commitments the others sealed, and would seal ones they could not draw.
fn check_shared_seal_key(db: &db::Db, seal: &draw::seal::SealKey, config: &Config) -> Result<()> {
    let id = seal.id().to_owned();
    let recorded = db.write_blocking(|tx| match db::meta_get(tx, SEAL_KEY_ID)? {
        Some(recorded) => Ok(recorded),
        None => {
            db::meta_set(tx, SEAL_KEY_ID, &id)?;
            Ok(id.clone())
        }
    })?;
    if recorded != id {
        return Err(Error::Internal(format!(
            "{} is not the draw seal key the other servers on this database use: \
             copy theirs over it (docs/deploy.md)",
            draw::seal::key_path(&config.database_path()).display()
        )));
    }
    Ok(())
}

const JWT_SECRET_KEY: &str = "jwt_secret";

/// Opens (creating if needed) the data directory and its database, and loads
/// or creates the token signing secret and the draw seal key file.
pub fn open(config: Config) -> Result<AppState> {
    std::fs::create_dir_all(&config.data_dir)?;
    let db = match &config.database {
        Some(url) => db::Db::open_postgres(url)?,
        None => db::Db::open(&config.database_path())?,
    };
    // On PostgreSQL every server's data directory holds a copy of the same key file.
    let seal = draw::seal::SealKey::for_database(&config.database_path())?;
    if db.is_postgres() {
        check_shared_seal_key(&db, &seal, &config)?;
    }
    // Holiday schedules loaded by an admin apply over the shipped ones.
    let calendar = db.read_blocking(review::calendar_admin::build_calendar)?;
    let secret = db.write_blocking(|tx| match db::meta_get(tx, JWT_SECRET_KEY)? {
        Some(secret) => Ok(secret),
        None => {
            let secret = hex::encode(auth::random_bytes::<32>()?);
            db::meta_set(tx, JWT_SECRET_KEY, &secret)?;
            Ok(secret)
        }
    })?;
    let blob_store: Arc<dyn blobs::BlobStore> = match &config.blobs {
        Some(url) => Arc::new(blobs::S3BlobStore::open(
            url,
            db.clone(),
            blobs::DEFAULT_MAX_BLOB,
        )?),
        None => Arc::new(blobs::FsBlobStore::open(
            &config.data_dir.join("blobs"),
            blobs::DEFAULT_MAX_BLOB,
        )?),
    };
    blobs::reconcile(&db, &*blob_store)?;
    sync::mark_originals_kept_on_phones(&db)?;
    Ok(AppState {
        db,
        keys: Arc::new(auth::JwtKeys::from_secret(secret.as_bytes())),
        blobs: blob_store,
        csrf: Arc::new(web::CsrfKey::derive(secret.as_bytes())),
        seal: Arc::new(seal),
        config: Arc::new(config),
        sync: Arc::new(sync::SyncMemory::default()),
        calendar: Arc::new(std::sync::RwLock::new(Arc::new(calendar))),
        throttle: Arc::new(throttle::Throttle::new(throttle::Limits::from_env())),
        imports: registry::import::ImportPermits::default(),
    })
}

/// The claim of one serving process on a data directory, held until dropped.
///
/// The sync endpoint keeps sync states in memory and the database's writer lock is a
/// lock of the process, so two servers on one directory would each answer phones from a
/// memory the other does not update. Command-line tools (`user create`, `audit verify`)
/// do not take it: SQLite keeps them safe beside a running server.
#[derive(Debug)]
pub struct ServeLock {
    _file: std::fs::File,
}

/// Claims `dir` for serving, through an OS lock on `dir/serve.lock` that ends with the
/// process however it ends; refused with [`Error::Conflict`], naming the holder's process
/// id, while another server holds it.
pub fn lock_for_serving(dir: &Path) -> Result<ServeLock> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("serve.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                String::new()
            } else {
                format!(" (process {holder})")
            };
            return Err(Error::Conflict(format!(
                "data directory {} is in use by another suiji server{holder}",
                dir.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    Ok(ServeLock { _file: file })
}

/// All HTTP routes over `state`, inside the transport's layers (timeouts, head limits,
/// security headers, the JSON shape of client errors; see [`transport`]).
pub fn router(state: AppState) -> Router {
    let limits = state.config.transport.clone();
    let routes = Router::new()
        .route("/health", get(health))
        .merge(accounts::routes())
        .merge(registry::routes())
        .merge(plans::routes())
        .merge(draw::routes::routes())
        .merge(blobs::routes())
        .merge(sync::routes())
        .merge(signing::routes())
        .merge(review::routes())
        .merge(documents::routes())
        .merge(dossier::routes::routes())
        .merge(web::routes(state.clone()))
        .fallback(web::not_found)
        .layer(DefaultBodyLimit::max(extract::JSON_BODY_LIMIT))
        .with_state(state);
    // Internal errors are logged at `error` where they happen, with their cause; a 5xx seen
    // here is most often an expected refusal under load (503 `busy`), and a flood of those
    // must not read as a flood of faults.
    let trace = tower_http::trace::TraceLayer::new_for_http()
        .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::WARN));
    transport::layers(routes, &limits).layer(trace)
}

/// Serves `router(state)` on `listener` within the configured transport limits until
/// `shutdown` resolves, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.config.transport.clone();
    // The transport gives each request its peer's address (`ConnectInfo`), which the
    // per-address login limit reads (`throttle::PeerAddr`).
    transport::serve(listener, router(state), &limits, shutdown).await
}

async fn health(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<axum::Json<serde_json::Value>> {
    let version = state.db.read(db::schema_version).await?;
    Ok(axum::Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "schema_version": version,
        "demo": state.config.demo,
    })))
}
