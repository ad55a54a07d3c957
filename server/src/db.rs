//! SQLite access: one writer connection, a few readers beside it (WAL), and the
//! numbered, append-only schema migrations. The code above it reads and writes through
//! [`crate::store::sql`]'s connections and transactions.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};
use crate::store::sql::{Conn, Tx};

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
];

/// How many idle reader connections are kept for reuse.
const MAX_IDLE_READERS: usize = 8;

/// The server database: a cheap handle to one writer and a pool of readers.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Conn>,
    readers: Mutex<Vec<Conn>>,
}

impl Db {
    /// Opens (creating if needed) the database at `path` and brings its schema
    /// up to date.
    pub fn open(path: &Path) -> Result<Db> {
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        migrate(&mut writer, MIGRATIONS.len())?;
        Ok(Db {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(Conn::sqlite(writer)),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in a write transaction on a blocking thread; commits if `f`
    /// returns `Ok`, rolls back otherwise.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.write_blocking(f)).await?
    }

    /// Runs `f` with a read-only connection on a blocking thread.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Conn) -> Result<T> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.read_blocking(f)).await?
    }

    /// [`Db::write`] for callers that are already off the async runtime.
    ///
    /// A closure that panicked poisons the writer's lock. The connection is still sound: the
    /// panic dropped the closure's transaction, which rolled it back. So the lock is taken back
    /// rather than refusing every later write until a restart, and anything a failed rollback
    /// left open is rolled back first, so the next write starts clean.
    pub fn write_blocking<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let conn = self.inner.writer.lock().unwrap_or_else(|poisoned| {
            tracing::warn!("a write panicked; the writer connection is taken back");
            self.inner.writer.clear_poison();
            poisoned.into_inner()
        });
        let tx = conn.begin_write()?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// [`Db::read`] for callers that are already off the async runtime.
    pub fn read_blocking<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        let idle = self.inner.readers.lock().ok().and_then(|mut r| r.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.inner.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&conn)?;
                Conn::sqlite(conn)
            }
        };
        let value = f(&conn);
        if let Ok(mut readers) = self.inner.readers.lock()
            && readers.len() < MAX_IDLE_READERS
        {
            readers.push(conn);
        }
        value
    }
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
        upgraded
            .read_blocking(|old| {
                fresh.read_blocking(|new| {
                    assert_eq!(schema_version(old)?, MIGRATIONS.len());
                    assert_eq!(schema(old.raw()?), schema(new.raw()?));
                    let name: String = old.query_row(
                        "SELECT display_name FROM users WHERE username = 'old'",
                        [],
                        |r| r.get(0),
                    )?;
                    assert_eq!(name, "Old User", "data survives the upgrade");
                    Ok(())
                })
            })
            .unwrap();
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
