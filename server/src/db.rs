//! SQLite access: one writer connection, a few readers beside it (WAL), and the
//! numbered, append-only schema migrations. The code above it reads and writes through
//! [`crate::store::sql`]'s connections and transactions.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};
use crate::store::sql::{Conn, Tx, params};

/// The schema migrations, in order. Migration `i` (1-based) moves the database
/// from `PRAGMA user_version = i - 1` to `i`. Never edit a shipped entry: append.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_accounts_audit.sql"),
    include_str!("../migrations/0002_registry.sql"),
    include_str!("../migrations/0003_plans_tasks.sql"),
    include_str!("../migrations/0004_draws_records.sql"),
    include_str!("../migrations/0005_general_item_ratio_bounds.sql"),
    include_str!("../migrations/0006_blobs_sync.sql"),
    include_str!("../migrations/0007_review_publication.sql"),
    include_str!("../migrations/0008_used_commitments_immutable.sql"),
    include_str!("../migrations/0009_record_doc_versions.sql"),
    include_str!("../migrations/0010_device_sessions_signing_keys.sql"),
    include_str!("../migrations/0011_public_sealed_commitments.sql"),
    include_str!("../migrations/0012_accounts_retired_refresh_tokens.sql"),
    include_str!("../migrations/0013_blobs_uploaders.sql"),
    include_str!("../migrations/0014_sync_blobs_expected.sql"),
    include_str!("../migrations/0015_deadlines_provisional.sql"),
    include_str!("../migrations/0016_retention.sql"),
    include_str!("../migrations/0018_abnormal_decisions.sql"),
    include_str!("../migrations/0020_risk_classes.sql"),
    include_str!("../migrations/0021_rechecks.sql"),
    include_str!("../migrations/0022_frequency_rules.sql"),
    include_str!("../migrations/0023_blob_staging.sql"),
];

/// How many idle reader connections are kept for reuse.
const MAX_IDLE_READERS: usize = 8;

/// The server database: a cheap handle to one SQLite writer and a pool of readers, or to a
/// pool of PostgreSQL connections.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

enum Inner {
    Sqlite {
        path: PathBuf,
        writer: Mutex<Conn>,
        readers: Mutex<Vec<Conn>>,
    },
    Postgres {
        pool: r2d2::Pool<PgManager>,
    },
}

/// How many PostgreSQL connections one server keeps at most.
const MAX_POSTGRES_CONNECTIONS: u32 = 16;

/// How many idle PostgreSQL connections the pool keeps open for the next request.
const MIN_IDLE_POSTGRES_CONNECTIONS: u32 = 2;

/// How many times a write tries to begin on a fresh connection when the database connection
/// it was handed fails before the write's own work starts (a restarted database, a dropped
/// socket).
const WRITE_BEGIN_ATTEMPTS: usize = 3;

/// Takes the PostgreSQL advisory lock every write transaction holds until it ends, so that
/// writes from every server run one at a time, as SQLite's one writer does (docs/storage.md).
/// The lock's key is two `int4`s: `"SUIJ"` read big-endian, then the hash of the connection's
/// schema, so deployments (or test servers) in different schemas of one database never wait
/// on each other while every server on one schema shares one lock.
const WRITE_LOCK: &str = "SELECT pg_advisory_xact_lock(1398098250, hashtext(current_schema()))";

/// Opens PostgreSQL connections for the pool.
#[derive(Debug)]
struct PgManager {
    url: String,
}

impl r2d2::ManageConnection for PgManager {
    type Connection = Conn;
    type Error = Error;

    fn connect(&self) -> Result<Conn> {
        Conn::postgres(&self.url)
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<()> {
        conn.execute_batch("SELECT 1")
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.is_broken()
    }
}

impl Db {
    /// Opens (creating if needed) the SQLite database at `path` and brings its schema
    /// up to date.
    pub fn open(path: &Path) -> Result<Db> {
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        migrate(&mut writer, MIGRATIONS.len())?;
        Ok(Db {
            inner: Arc::new(Inner::Sqlite {
                path: path.to_owned(),
                writer: Mutex::new(Conn::sqlite(writer)),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Opens the PostgreSQL database at `url` (`postgres://user@host:port/db`) and brings its
    /// schema up to date; several servers may do so at once.
    pub fn open_postgres(url: &str) -> Result<Db> {
        let pool = r2d2::Pool::builder()
            .max_size(MAX_POSTGRES_CONNECTIONS)
            .min_idle(Some(MIN_IDLE_POSTGRES_CONNECTIONS))
            .connection_timeout(std::time::Duration::from_secs(10))
            .build(PgManager {
                url: url.to_owned(),
            })
            .map_err(|e| Error::Internal(format!("connecting to PostgreSQL: {e}")))?;
        let db = Db {
            inner: Arc::new(Inner::Postgres { pool }),
        };
        db.write_blocking(|tx| migrate_postgres(tx, POSTGRES_MIGRATIONS.len()))?;
        Ok(db)
    }

    /// The SQLite database file; `None` on PostgreSQL.
    pub fn path(&self) -> Option<&Path> {
        match &*self.inner {
            Inner::Sqlite { path, .. } => Some(path),
            Inner::Postgres { .. } => None,
        }
    }

    /// Whether the database is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(&*self.inner, Inner::Postgres { .. })
    }

    /// Runs `f` in a write transaction on a blocking thread; commits if `f`
    /// returns `Ok`, rolls back otherwise.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            OFF_RUNTIME.set(true);
            db.write_blocking(f)
        })
        .await?
    }

    /// Runs `f` with a read-only connection on a blocking thread.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn) -> Result<T> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            OFF_RUNTIME.set(true);
            db.read_blocking(f)
        })
        .await?
    }

    /// [`Db::write`] for callers that are already off the async runtime.
    ///
    /// On SQLite, a closure that panicked poisons the writer's lock. The connection is still
    /// sound: the panic dropped the closure's transaction, which rolled it back. So the lock is
    /// taken back rather than refusing every later write until a restart, and anything a failed
    /// rollback left open is rolled back first, so the next write starts clean.
    ///
    /// On PostgreSQL the transaction first takes the database-wide write lock, which it holds
    /// until it ends, so writes from every server run one at a time, each seeing all that the
    /// ones before committed. A pooled connection found dead before `f` starts is replaced;
    /// once `f` has run, a failure goes to the caller: its work was rolled back (or, when the
    /// connection died during `COMMIT` itself, may have landed, as with any database client).
    ///
    /// The PostgreSQL client blocks on a runtime of its own, which cannot run on a thread that
    /// drives async tasks; called from one (a test's body, say), the work moves to a thread of
    /// its own for the call.
    pub fn write_blocking<T: Send>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T> + Send,
    ) -> Result<T> {
        match &*self.inner {
            Inner::Sqlite { writer, .. } => {
                let conn = writer.lock().unwrap_or_else(|poisoned| {
                    tracing::warn!("a write panicked; the writer connection is taken back");
                    writer.clear_poison();
                    poisoned.into_inner()
                });
                let tx = conn.begin_write()?;
                let value = f(&tx)?;
                tx.commit()?;
                Ok(value)
            }
            Inner::Postgres { .. } if on_async_thread() => off_async(|| self.write_blocking(f)),
            Inner::Postgres { pool } => {
                let mut f = Some(f);
                let mut attempt = 1;
                loop {
                    let conn = pooled(pool)?;
                    let tx = match locked_write(&conn) {
                        Ok(tx) => tx,
                        Err(e) if attempt < WRITE_BEGIN_ATTEMPTS && conn.is_broken() => {
                            tracing::warn!(attempt, error = ?e, "a write could not begin; retrying");
                            attempt += 1;
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let f = f.take().expect("the work runs once, after the write began");
                    let value = f(&tx)?;
                    tx.commit()?;
                    return Ok(value);
                }
            }
        }
    }

    /// [`Db::read`] for callers that are already off the async runtime.
    pub fn read_blocking<T: Send>(&self, f: impl FnOnce(&Conn) -> Result<T> + Send) -> Result<T> {
        let (path, readers) = match &*self.inner {
            Inner::Sqlite { path, readers, .. } => (path, readers),
            Inner::Postgres { .. } if on_async_thread() => {
                return off_async(|| self.read_blocking(f));
            }
            Inner::Postgres { pool } => return f(&*pooled(pool)?),
        };
        let idle = readers.lock().ok().and_then(|mut r| r.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&conn)?;
                Conn::sqlite(conn)
            }
        };
        let value = f(&conn);
        if let Ok(mut readers) = readers.lock()
            && readers.len() < MAX_IDLE_READERS
        {
            readers.push(conn);
        }
        value
    }
}

/// A connection from the PostgreSQL pool.
fn pooled(pool: &r2d2::Pool<PgManager>) -> Result<r2d2::PooledConnection<PgManager>> {
    pool.get()
        .map_err(|e| Error::Internal(format!("no PostgreSQL connection: {e}")))
}

/// Runs `work`, which blocks on the PostgreSQL client's own runtime, on a thread of its own:
/// for callers on a thread that drives async tasks, where blocking on a runtime panics.
pub(crate) fn off_async<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(work).join())
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Begins a write transaction on `conn` and takes the write lock of its schema in it.
fn locked_write(conn: &Conn) -> Result<Tx<'_>> {
    let tx = conn.begin_write()?;
    tx.query_row(WRITE_LOCK, [], |_| Ok(()))?;
    Ok(tx)
}

thread_local! {
    /// Set on the blocking threads [`Db::read`] and [`Db::write`] run their work on.
    static OFF_RUNTIME: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread may be driving async tasks: it is inside a tokio runtime and not one of
/// the blocking threads `Db` itself runs work on.
pub(crate) fn on_async_thread() -> bool {
    tokio::runtime::Handle::try_current().is_ok() && !OFF_RUNTIME.get()
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // journal_mode is persistent and cannot be set on a read-only connection.
    if !conn.is_readonly(rusqlite::MAIN_DB)? {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
    }
    Ok(())
}

/// The schema version a database is at.
pub fn schema_version(conn: &Conn) -> Result<usize> {
    if conn.is_postgres() {
        return postgres_schema_version(conn);
    }
    sqlite_schema_version(conn.raw()?)
}

fn sqlite_schema_version(conn: &Connection) -> Result<usize> {
    let v: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    Ok(v as usize)
}

/// Applies migrations until the database is at schema version `target`, each
/// in its own transaction together with its version bump.
pub fn migrate(conn: &mut Connection, target: usize) -> Result<()> {
    let current = sqlite_schema_version(conn)?;
    if current > MIGRATIONS.len() {
        return Err(Error::Internal(format!(
            "database schema version {current} is newer than this server knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().take(target).skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied schema migration");
    }
    Ok(())
}

/// The PostgreSQL schema migrations, in order (`migrations/postgres/`): migration `i`
/// (1-based) moves the database from version `i - 1` to `i`, as recorded in
/// `schema_migrations`. Never edit a shipped entry: append.
pub const POSTGRES_MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_schema.sql"),
    include_str!("../migrations/postgres/0002_blob_staging.sql"),
];

fn postgres_schema_version(conn: &Conn) -> Result<usize> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables
                        WHERE table_schema = current_schema() AND table_name = 'schema_migrations')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    let v: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    Ok(v as usize)
}

/// Applies PostgreSQL migrations until the schema is at version `target`, inside the
/// caller's write transaction, whose lock keeps servers starting together from racing.
fn migrate_postgres(tx: &Tx<'_>, target: usize) -> Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
    )?;
    let current = postgres_schema_version(tx)?;
    if current > POSTGRES_MIGRATIONS.len() {
        return Err(Error::Internal(format!(
            "database schema version {current} is newer than this server knows ({})",
            POSTGRES_MIGRATIONS.len()
        )));
    }
    for (index, sql) in POSTGRES_MIGRATIONS
        .iter()
        .enumerate()
        .take(target)
        .skip(current)
    {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![index + 1, now()],
        )?;
        tracing::info!(version = index + 1, "applied PostgreSQL schema migration");
    }
    Ok(())
}

/// Opens the database at `path` with its schema brought only up to version `target`: the
/// database an older server left, for upgrade tests.
#[cfg(test)]
pub(crate) fn open_at_version(path: &Path, target: usize) -> Result<Conn> {
    let mut conn = Connection::open(path)?;
    configure(&conn)?;
    migrate(&mut conn, target)?;
    Ok(Conn::sqlite(conn))
}

/// Reads a value from the `meta` table.
pub fn meta_get(conn: &Conn, key: &str) -> Result<Option<String>> {
    use crate::store::sql::OptionalExtension;
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
        row.get(0)
    })
    .optional()
}

/// Writes a value to the `meta` table.
pub fn meta_set(tx: &Tx<'_>, key: &str, value: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

/// The current time as RFC 3339 UTC text, the way every timestamp is stored.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(conn: &Connection) -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare(
                "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .unwrap();
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn database_made_by_first_schema_upgrades_to_fresh_schema() {
        let dir = tempfile::tempdir().unwrap();
        let old_path = dir.path().join("old.db");
        {
            let mut conn = Connection::open(&old_path).unwrap();
            migrate(&mut conn, 1).unwrap();
            assert_eq!(sqlite_schema_version(&conn).unwrap(), 1);
            conn.execute(
                "INSERT INTO users (username, display_name, password_hash, roles, created_at)
                 VALUES ('old', 'Old User', 'x', '[\"admin\"]', '2026-01-01T00:00:00Z')",
                [],
            )
            .unwrap();
        }
        let upgraded = Db::open(&old_path).unwrap();
        let fresh = Db::open(&dir.path().join("fresh.db")).unwrap();
        let (version, old_schema, name) = upgraded
            .read_blocking(|old| {
                let name: String = old.query_row(
                    "SELECT display_name FROM users WHERE username = 'old'",
                    [],
                    |r| r.get(0),
                )?;
                Ok((schema_version(old)?, schema(old.raw()?), name))
            })
            .unwrap();
        let new_schema = fresh.read_blocking(|new| Ok(schema(new.raw()?))).unwrap();
        assert_eq!(version, MIGRATIONS.len());
        assert_eq!(old_schema, new_schema);
        assert_eq!(name, "Old User", "data survives the upgrade");
    }

    #[test]
    fn newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("future.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 999).unwrap();
        }
        assert!(Db::open(&path).is_err());
    }

    #[test]
    fn a_write_that_panicked_is_rolled_back_and_later_writes_work() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            db.write_blocking(|tx| -> Result<()> {
                meta_set(tx, "half", "written")?;
                panic!("a bug inside a write");
            })
        }));
        assert!(panicked.is_err());
        db.write_blocking(|tx| meta_set(tx, "after", "works"))
            .expect("the next write is not refused");
        let (half, after) = db
            .read_blocking(|c| Ok((meta_get(c, "half")?, meta_get(c, "after")?)))
            .unwrap();
        assert_eq!(half, None, "the panicked write was rolled back");
        assert_eq!(after.as_deref(), Some("works"));
    }

    #[test]
    fn failed_write_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let result: Result<()> = db.write_blocking(|tx| {
            meta_set(tx, "k", "v")?;
            Err(Error::Conflict("boom".into()))
        });
        assert!(result.is_err());
        let value = db.read_blocking(|c| meta_get(c, "k")).unwrap();
        assert_eq!(value, None);
    }
}
