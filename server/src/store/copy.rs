//! `suiji-server store copy`: moves an agency's data from a SQLite data directory to a
//! PostgreSQL database and another blob store (docs/deploy.md).
//!
//! The blobs go first, each read from the source directory and written through the target
//! store, which checks it against its name; they are content-addressed, so a copy cut short
//! is simply run again. Then every table is copied in one PostgreSQL transaction that holds
//! the write lock every server takes, so the target is all copied or untouched. Rows keep
//! their ids (the identities are set past them afterwards), the tables' own triggers are
//! off while their rows go in (they guard changes made through the server: a copied draw is
//! not a new draw, a copied chunk does not bump its record's version), and foreign keys are
//! checked as rows arrive, in the order the schema made the tables (the one cycle,
//! `targets.abnormal_source_record`, is checked at commit). Last, the copy is read back:
//! the audit chain must verify, as must every draw record against its stored hash, its own
//! seed and, for a redraw, its initial draw.

use std::collections::BTreeMap;
use std::io::Read;

use crate::audit;
use crate::blobs::{BlobStore, FsBlobStore};
use crate::db::{self, Db};
use crate::draw;
use crate::error::{Error, Result};
use crate::store::sql::{Conn, Tx, Value, ValueRef};

/// The tables the server fills itself in an empty database; a copy replaces their rows.
const REPLACED: &[&str] = &["meta", "rules"];

/// What a copy moved and checked.
#[derive(Debug, Default)]
pub struct Copied {
    /// Rows per table, in the order they were copied.
    pub rows: Vec<(String, u64)>,
    /// Blobs copied (or found already there).
    pub blobs: u64,
    /// Audit entries verified in the copy.
    pub audit_entries: u64,
    /// Draw records verified in the copy.
    pub draws: u64,
}

/// Copies the SQLite database `source` (with its blobs `source_blobs` and the draw seal key
/// beside it) into the empty PostgreSQL database `target` and the blob store `target_blobs`
/// (none: the blobs stay where they are), then verifies the copy. `progress` hears of each table and every thousand blobs.
pub fn copy(
    source: &Db,
    source_blobs: &FsBlobStore,
    target: &Db,
    target_blobs: Option<&dyn BlobStore>,
    mut progress: impl FnMut(&str) + Send,
) -> Result<Copied> {
    let source_path = source
        .path()
        .ok_or_else(|| Error::Internal("the source of a copy is a SQLite database".into()))?;
    if !target.is_postgres() {
        return Err(Error::Internal(
            "the target of a copy is a PostgreSQL database".into(),
        ));
    }
    let seal = draw::seal::SealKey::for_database(source_path)?;
    let mut copied = Copied {
        blobs: match target_blobs {
            Some(to) => copy_blobs(source_blobs, to, &mut progress)?,
            None => 0,
        },
        ..Copied::default()
    };
    // A connection of the copy's own, read inside the target's transaction.
    let src = Conn::sqlite(rusqlite::Connection::open_with_flags(
        source_path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?);
    let tables_progress = &mut progress;
    copied.rows = target.write_blocking(move |tx| {
        let snapshot = src.snapshot()?;
        let rows = copy_tables(&snapshot, tx, tables_progress)?;
        // Servers on the copy must hold the key that sealed its open commitments.
        db::meta_set(tx, crate::SEAL_KEY_ID, seal.id())?;
        Ok(rows)
    })?;
    progress("verifying the copy");
    let (audit_entries, draws) = target.read_blocking(verify_copy)?;
    copied.audit_entries = audit_entries;
    copied.draws = draws;
    Ok(copied)
}

/// Copies every committed blob of `from` into `to`, each checked against its name by `to`.
fn copy_blobs(
    from: &FsBlobStore,
    to: &dyn BlobStore,
    progress: &mut (impl FnMut(&str) + Send),
) -> Result<u64> {
    const CHUNK: usize = 4 * 1024 * 1024;
    let names = from.list()?;
    let mut copied = 0;
    for name in &names {
        let status = to.status(name)?;
        if !status.complete {
            let mut reader = from.open(name)?;
            let total = reader.size;
            // What an earlier copy cut short already staged is skipped, not sent again.
            let mut offset = status.received;
            std::io::copy(&mut (&mut reader).take(offset), &mut std::io::sink())?;
            let mut buf = Vec::with_capacity(CHUNK);
            loop {
                buf.clear();
                let n = (&mut reader).take(CHUNK as u64).read_to_end(&mut buf)?;
                if n == 0 {
                    break;
                }
                to.stage(name, offset, total, &buf)?;
                offset += n as u64;
            }
            if offset != total {
                return Err(Error::Internal(format!(
                    "blob {name} is {offset} bytes, not the {total} its store said"
                )));
            }
            to.commit(name, &mut || Ok(()))?;
        }
        copied += 1;
        if copied % 1000 == 0 {
            progress(&format!("{copied} of {} blobs", names.len()));
        }
    }
    Ok(copied)
}

/// Copies every table of the target's schema from `src`, in the order the schema made them,
/// but `blob_staging`: chunked uploads in flight belong to the store they were staged for
/// (a copy into an S3 store stages there itself, and empties the table as it commits).
fn copy_tables(
    src: &Conn,
    tx: &Tx<'_>,
    progress: &mut (impl FnMut(&str) + Send),
) -> Result<Vec<(String, u64)>> {
    let tables = target_tables(tx)?;
    for (table, _) in &tables {
        let holds_rows: bool =
            tx.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), [], |r| {
                r.get(0)
            })?;
        if holds_rows && !REPLACED.contains(&table.as_str()) {
            return Err(Error::Conflict(format!(
                "the target database already holds data (table {table}): a copy goes into an \
                 empty one"
            )));
        }
    }
    for (table, columns) in &tables {
        check_columns(src, table, columns)?;
        tx.execute_batch(&format!("ALTER TABLE {table} DISABLE TRIGGER USER"))?;
    }
    tx.execute_batch("SET CONSTRAINTS ALL DEFERRED")?;
    let mut counts = Vec::new();
    for (table, columns) in &tables {
        progress(&format!("copying {table}"));
        if REPLACED.contains(&table.as_str()) {
            tx.execute_batch(&format!("DELETE FROM {table}"))?;
        }
        let list = columns.join(", ");
        let marks = (1..=columns.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut insert = tx.prepare(&format!("INSERT INTO {table} ({list}) VALUES ({marks})"))?;
        let mut select = src.prepare(&format!("SELECT {list} FROM {table}"))?;
        let mut rows = select.query([])?;
        let mut n = 0u64;
        let mut values: Vec<Value> = Vec::with_capacity(columns.len());
        while let Some(row) = rows.next()? {
            values.clear();
            for i in 0..columns.len() {
                values.push(owned(row.get_ref(i)?));
            }
            insert.execute(&values)?;
            n += 1;
        }
        counts.push((table.clone(), n));
    }
    // The deferred foreign keys are checked now, before the triggers come back.
    tx.execute_batch("SET CONSTRAINTS ALL IMMEDIATE")?;
    for (table, _) in &tables {
        tx.execute_batch(&format!("ALTER TABLE {table} ENABLE TRIGGER USER"))?;
    }
    // New rows made through the servers continue after the copied ids.
    let mut stmt = tx.prepare(
        "SELECT table_name, column_name FROM information_schema.columns
         WHERE table_schema = current_schema() AND is_identity = 'YES'",
    )?;
    let identities = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>>>()?;
    for (table, column) in identities {
        tx.query_row(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),
                               (SELECT COALESCE(MAX({column}), 0) + 1 FROM {table}), false)"
            ),
            [],
            |_| Ok(()),
        )?;
    }
    Ok(counts)
}

/// The target's tables with their columns, in the order the schema created them (which
/// puts every table after those it references).
fn target_tables(tx: &Conn) -> Result<Vec<(String, Vec<String>)>> {
    let mut stmt = tx.prepare(
        "SELECT c.relname, a.attname
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE n.nspname = current_schema() AND c.relkind = 'r'
           AND c.relname NOT IN ('schema_migrations', 'blob_staging')
         ORDER BY c.oid, a.attnum",
    )?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>>>()?;
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    for (table, column) in rows {
        match tables.last_mut() {
            Some((last, columns)) if *last == table => columns.push(column),
            _ => tables.push((table, vec![column])),
        }
    }
    Ok(tables)
}

/// Fails unless SQLite table `table` has exactly `columns` (in any order).
fn check_columns(src: &Conn, table: &str, columns: &[String]) -> Result<()> {
    let mut stmt = src.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let mut have = stmt
        .query_map([table], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>>>()?;
    let mut want = columns.to_vec();
    have.sort();
    want.sort();
    if have != want {
        return Err(Error::Internal(format!(
            "table {table} differs between the databases (SQLite {have:?}, PostgreSQL \
             {want:?}): run both at this server's version"
        )));
    }
    Ok(())
}

fn owned(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => Value::Text(t.to_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

/// Reads the copy back: the audit chain and every draw record must verify. How many audit
/// entries and draws it checked.
pub fn verify_copy(conn: &Conn) -> Result<(u64, u64)> {
    let entries = match audit::verify(conn)? {
        audit::Verification::Intact { entries } => entries as u64,
        audit::Verification::Broken { seq, reason } => {
            return Err(Error::Internal(format!(
                "the copied audit log does not verify at entry {seq}: {reason}"
            )));
        }
    };
    let mut stmt =
        conn.prepare("SELECT id, task_id, kind, record_sha256 FROM draws ORDER BY id")?;
    let draws = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>>>()?;
    let mut initials: BTreeMap<i64, draw::DrawRecord> = BTreeMap::new();
    for (id, task_id, kind, stored_hash) in &draws {
        let (text, _) = draw::record_text(conn, *id)?
            .ok_or_else(|| Error::Internal(format!("draw {id} vanished")))?;
        if draw::algorithm::sha256_hex(text.as_bytes()) != *stored_hash {
            return Err(Error::Internal(format!(
                "the copied draw {id} does not match its stored hash"
            )));
        }
        let record: draw::DrawRecord = serde_json::from_str(&text)?;
        let checked = match kind.as_str() {
            "initial" => draw::verify(&record),
            _ => match initials.get(task_id) {
                Some(initial) => {
                    draw::verify(&record).and_then(|()| draw::verify_redraw_pools(&record, initial))
                }
                None => Err("its task has no initial draw before it".into()),
            },
        };
        checked.map_err(|why| {
            Error::Internal(format!("the copied draw {id} does not verify: {why}"))
        })?;
        if kind == "initial" {
            initials.insert(*task_id, record);
        }
    }
    Ok((entries, draws.len() as u64))
}
