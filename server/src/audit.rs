//! The hash-chained audit log: every state change is appended inside the same
//! transaction as the change, and `audit verify` detects any edited, removed or
//! reordered entry.
//!
//! Entry `n` stores `prev_hash` (the hash of entry `n - 1`, or 64 zeros for the
//! first) and `hash = SHA-256(canonical(n, at, actor, action, entity, before,
//! after, prev_hash))`. The newest `seq:hash` is also kept in `meta` so that
//! dropping entries from the end is caught as well.

use crate::store::sql::{Conn, OptionalExtension, Tx, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::db::{meta_get, meta_set, now};
use crate::error::Result;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HEAD_KEY: &str = "audit_head";

/// One audit entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When the change happened (RFC 3339).
    pub at: String,
    /// Who made it: a username, or `system`.
    pub actor: String,
    /// What kind of change, e.g. `target.create`.
    pub action: String,
    /// What it changed, e.g. `target:42`.
    pub entity: String,
    /// The state before, where it matters (JSON text).
    pub before: Option<String>,
    /// The state after, where it matters (JSON text).
    pub after: Option<String>,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// Hash of this entry.
    pub hash: String,
}

impl Entry {
    /// Reads an entry from a row of `SELECT seq, at, actor, action, entity,
    /// before, after, prev_hash, hash`.
    fn from_row(row: &crate::store::sql::Row<'_>) -> Result<Entry> {
        Ok(Entry {
            seq: row.get(0)?,
            at: row.get(1)?,
            actor: row.get(2)?,
            action: row.get(3)?,
            entity: row.get(4)?,
            before: row.get(5)?,
            after: row.get(6)?,
            prev_hash: row.get(7)?,
            hash: row.get(8)?,
        })
    }

    /// The hash this entry should carry, computed from its other fields.
    pub fn compute_hash(&self) -> String {
        // A JSON array is an unambiguous encoding of the fields: no separator games.
        let canonical = serde_json::json!([
            self.seq,
            self.at,
            self.actor,
            self.action,
            self.entity,
            self.before,
            self.after,
            self.prev_hash
        ]);
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// Appends an entry to the log within `tx`.
pub fn append(
    tx: &Tx<'_>,
    actor: &str,
    action: &str,
    entity: &str,
    before: Option<&Value>,
    after: Option<&Value>,
) -> Result<()> {
    let last: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_owned()),
    };
    let mut e = Entry {
        seq,
        at: now(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        entity: entity.to_owned(),
        before: before.map(Value::to_string),
        after: after.map(Value::to_string),
        prev_hash,
        hash: String::new(),
    };
    e.hash = e.compute_hash();
    tx.execute(
        "INSERT INTO audit_log (seq, at, actor, action, entity, before, after, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            e.seq,
            e.at,
            e.actor,
            e.action,
            e.entity,
            e.before,
            e.after,
            e.prev_hash,
            e.hash
        ],
    )?;
    meta_set(tx, HEAD_KEY, &format!("{}:{}", e.seq, e.hash))?;
    Ok(())
}

/// The outcome of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every entry is intact; this many were checked.
    Intact {
        /// Number of entries checked.
        entries: i64,
    },
    /// The first entry found wrong, and why.
    Broken {
        /// The sequence number at which the chain breaks.
        seq: i64,
        /// What is wrong there.
        reason: String,
    },
}

/// Walks the whole chain in order and reports the first bad entry, if any.
pub fn verify(conn: &Conn) -> Result<Verification> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, actor, action, entity, before, after, prev_hash, hash
         FROM audit_log ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    let mut expected_seq = 1;
    let mut prev_hash = GENESIS.to_owned();
    while let Some(row) = rows.next()? {
        let e = Entry::from_row(&row)?;
        if e.seq != expected_seq {
            return Ok(Verification::Broken {
                seq: expected_seq,
                reason: format!(
                    "expected entry {expected_seq} but found {} (entry removed or reordered)",
                    e.seq
                ),
            });
        }
        if e.prev_hash != prev_hash {
            return Ok(Verification::Broken {
                seq: e.seq,
                reason: "does not link to the entry before it (entry removed or reordered)".into(),
            });
        }
        if e.compute_hash() != e.hash {
            return Ok(Verification::Broken {
                seq: e.seq,
                reason: "content does not match its hash (entry edited)".into(),
            });
        }
        prev_hash = e.hash;
        expected_seq += 1;
    }
    let count = expected_seq - 1;
    let head = meta_get(conn, HEAD_KEY)?;
    let actual = (count > 0).then(|| format!("{count}:{prev_hash}"));
    if head != actual {
        return Ok(Verification::Broken {
            seq: count + 1,
            reason: format!(
                "log ends at entry {count} but the recorded head is {} (entries removed from the end)",
                head.as_deref().unwrap_or("empty")
            ),
        });
    }
    Ok(Verification::Intact { entries: count })
}

/// The newest `limit` entries, newest first, optionally filtered by entity prefix.
pub fn recent(conn: &Conn, entity_prefix: Option<&str>, limit: i64) -> Result<Vec<Entry>> {
    let pattern = format!("{}%", entity_prefix.unwrap_or(""));
    let mut stmt = conn.prepare(
        "SELECT seq, at, actor, action, entity, before, after, prev_hash, hash
         FROM audit_log WHERE entity LIKE ?1 ORDER BY seq DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![pattern, limit], Entry::from_row)?;
    rows.collect::<Result<_, _>>()
}

/// Every entry touching task `task_id`: the task itself (`task:<id>`: creation, commitments,
/// draws, redraws, publication of the list), its records (`record:<id>`: reviews,
/// publication) and their published results (`result:<id>`: corrections), oldest first.
pub fn entries_of_task(conn: &Conn, task_id: i64) -> Result<Vec<Entry>> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, actor, action, entity, before, after, prev_hash, hash
         FROM audit_log
         WHERE entity = ?1
            OR entity IN (SELECT 'record:' || id FROM records WHERE task_id = ?2)
            OR entity IN (SELECT 'result:' || id FROM published_results WHERE task_id = ?2)
         ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![format!("task:{task_id}"), task_id], Entry::from_row)?;
    rows.collect::<Result<_, _>>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use serde_json::json;

    fn db_with_entries(n: usize) -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("a.db")).unwrap();
        for i in 0..n {
            db.write_blocking(|tx| {
                append(
                    tx,
                    "alice",
                    "thing.update",
                    &format!("thing:{i}"),
                    Some(&json!({"v": i})),
                    Some(&json!({"v": i + 1})),
                )
            })
            .unwrap();
        }
        (dir, db)
    }

    fn tamper(db: &Db, sql: &str) {
        db.write_blocking(|tx| tx.execute_batch(sql)).unwrap();
    }

    fn verify_db(db: &Db) -> Verification {
        db.read_blocking(verify).unwrap()
    }

    #[test]
    fn intact_chain_verifies() {
        let (_dir, db) = db_with_entries(5);
        assert_eq!(verify_db(&db), Verification::Intact { entries: 5 });
    }

    #[test]
    fn edited_entry_is_named() {
        let (_dir, db) = db_with_entries(5);
        tamper(&db, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3");
        assert!(matches!(
            verify_db(&db),
            Verification::Broken { seq: 3, .. }
        ));
    }

    #[test]
    fn removed_entry_is_named() {
        let (_dir, db) = db_with_entries(5);
        tamper(&db, "DELETE FROM audit_log WHERE seq = 2");
        assert!(matches!(
            verify_db(&db),
            Verification::Broken { seq: 2, .. }
        ));
    }

    #[test]
    fn removed_tail_is_caught() {
        let (_dir, db) = db_with_entries(5);
        tamper(&db, "DELETE FROM audit_log WHERE seq = 5");
        assert!(matches!(
            verify_db(&db),
            Verification::Broken { seq: 5, .. }
        ));
    }

    #[test]
    fn reordered_entries_are_caught() {
        let (_dir, db) = db_with_entries(5);
        // Swap the contents of entries 2 and 3 while keeping their seq numbers.
        tamper(
            &db,
            "UPDATE audit_log SET seq = -2 WHERE seq = 2;
             UPDATE audit_log SET seq = 2 WHERE seq = 3;
             UPDATE audit_log SET seq = 3 WHERE seq = -2;",
        );
        assert!(matches!(
            verify_db(&db),
            Verification::Broken { seq: 2, .. }
        ));
    }
}
