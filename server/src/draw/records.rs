//! Inspection records on the server: one automerge record document per drawn
//! (task, target), created at the draw with its `assignment` filled in,
//! regrouped on recusal and withdrawn when a target is out of scope. The
//! document model itself is `suiji_mobile_core::RecordDoc`.
//!
//! The draw writes the record's publication deadline (its window end plus the
//! rules' working days) into the assignment, for the phones, and into
//! `records.deadline`. A deadline that runs into a year without a holiday
//! schedule is provisional (counted Monday to Friday there; the draw is never
//! refused for it) and says so in both places; `finalise_deadlines` rewrites
//! both when an admin loads the year. The review API does not read this copy:
//! it counts every deadline when read (`review::deadline_fields`).

use crate::store::sql::{Conn, OptionalExtension, Tx, params};
use serde::Serialize;
use suiji_mobile_core::record::{
    AssignedInspector, AssignedItem, Assignment, PlanRef, RecheckOf, TargetSnapshot, TaskRef,
    server_actor,
};
use suiji_mobile_core::vocab::{Method, ReviewState};
use suiji_mobile_core::{InspectorId, ItemCode, RecordDoc, RecordId};

use super::algorithm::DrawnTarget;
use crate::calendar::{Calendar, Counted};
use crate::db::now;
use crate::error::{Error, Result};
use crate::plans::{self, Task};
use crate::registry::{items, rules};

/// The id of the record of `target_id` in `task_id`.
pub fn record_id(task_id: i64, target_id: i64) -> String {
    format!("r{task_id}-{target_id}")
}

/// What the draw needs to know about a record in force.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveRecord {
    /// Record id.
    pub id: String,
    /// The draw that made its current group.
    pub draw_id: i64,
    /// Inspector ids and lead flags.
    pub group: Vec<(i64, bool)>,
}

/// The record in force for a target of a task, if any.
pub fn active_record_of(conn: &Conn, task_id: i64, target_id: i64) -> Result<Option<ActiveRecord>> {
    let found: Option<(String, i64)> = conn
        .query_row(
            "SELECT id, draw_id FROM records WHERE task_id = ?1 AND target_id = ?2 AND withdrawn_at IS NULL",
            params![task_id, target_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((id, draw_id)) = found else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT inspector_id, lead FROM record_inspectors WHERE record_id = ?1 ORDER BY lead DESC, inspector_id",
    )?;
    let group = stmt
        .query_map([&id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(Some(ActiveRecord { id, draw_id, group }))
}

/// (record id, inspector id) of every active group member in a task.
pub fn task_group_members(conn: &Conn, task_id: i64) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare(
        "SELECT ri.record_id, ri.inspector_id FROM record_inspectors ri
         JOIN records r ON r.id = ri.record_id WHERE r.task_id = ?1 AND r.withdrawn_at IS NULL",
    )?;
    let rows = stmt.query_map([task_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect::<Result<_, _>>()
}

/// 统一社会信用代码 of every target ever drawn in a task (withdrawn ones too).
pub fn task_target_usccs(conn: &Conn, task_id: i64) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT t.uscc FROM records r JOIN targets t ON t.id = r.target_id WHERE r.task_id = ?1",
    )?;
    let rows = stmt.query_map([task_id], |r| r.get(0))?;
    rows.collect::<Result<_, _>>()
}

/// Everything about a task that every record of it shares.
struct TaskContext {
    plan: PlanRef,
    task: TaskRef,
    agency: String,
    items: Vec<AssignedItem>,
    deadline: Counted<chrono::NaiveDate>,
}

fn task_context(conn: &Conn, task: &Task, calendar: &Calendar) -> Result<TaskContext> {
    let plan = plans::get_plan_by_id(conn, task.plan_id)?;
    let agency: String = conn.query_row(
        "SELECT name FROM departments WHERE code = ?1",
        [&task.department],
        |r| r.get(0),
    )?;
    let mut assigned = Vec::new();
    for item in &task.items {
        let v = items::get(conn, &item.code, Some(item.version))?;
        assigned.push(AssignedItem {
            code: ItemCode::new(v.code.clone()),
            version: v.version as u32,
            name: v.input.name.clone(),
            legal_basis: v.input.legal_basis.clone(),
            content: v.input.content.clone(),
            methods: v
                .input
                .methods
                .iter()
                .filter_map(|m| Method::from_code(m))
                .collect(),
        });
    }
    let rules = rules::load(conn)?;
    let deadline = calendar.deadline(task.window_end, rules.result_publication_days);
    Ok(TaskContext {
        plan: PlanRef {
            id: plan.id.to_string(),
            number: plan.number,
            name: plan.name,
        },
        task: TaskRef {
            id: task.id.to_string(),
            number: task.number.clone(),
            name: task.name.clone(),
            directed: task.directed,
        },
        agency,
        items: assigned,
        deadline,
    })
}

fn assignment(
    conn: &Conn,
    ctx: &TaskContext,
    task: &Task,
    drawn: &DrawnTarget,
) -> Result<(i64, Assignment)> {
    let mut target = conn.prepare_cached(
        "SELECT id, name, address, legal_rep, target_type, industry, region, risk_class FROM targets WHERE uscc = ?1",
    )?;
    let (target_id, snapshot) = target
        .query_row([&drawn.uscc], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                TargetSnapshot {
                    id: r.get::<_, i64>(0)?.to_string(),
                    uscc: Some(drawn.uscc.clone()),
                    name: r.get(1)?,
                    address: r.get(2)?,
                    legal_representative: Some(r.get(3)?),
                    kind: r.get(4)?,
                    industry: Some(r.get(5)?),
                    region: Some(r.get(6)?),
                    risk_class: Some(r.get(7)?),
                },
            ))
        })
        .optional()?
        .ok_or_else(|| {
            Error::Conflict(format!(
                "drawn target {} is no longer in the directory",
                drawn.uscc
            ))
        })?;
    let mut inspector =
        conn.prepare_cached("SELECT name, cert_no FROM inspectors WHERE id = ?1")?;
    let mut inspectors = Vec::new();
    for (n, id) in drawn.group.iter().enumerate() {
        let (name, cert_no): (String, String) =
            inspector.query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        inspectors.push(AssignedInspector {
            inspector_id: InspectorId::new(id.to_string()),
            name,
            cert_no,
            lead: n == 0,
        });
    }
    Ok((
        target_id,
        Assignment {
            plan: ctx.plan.clone(),
            task: ctx.task.clone(),
            agency: ctx.agency.clone(),
            target: snapshot,
            items: ctx.items.clone(),
            inspectors,
            window_start: task.window_start,
            window_end: task.window_end,
            publication_deadline: ctx.deadline.value,
            publication_deadline_provisional: ctx.deadline.provisional(),
            recheck_of: None,
        },
    ))
}

/// Builds and saves record documents, spread over the machine's cores.
fn build_documents(work: &[(String, Assignment)]) -> Result<Vec<Vec<u8>>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = work.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = work
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(id, a)| {
                            RecordDoc::create(&RecordId::new(id.clone()), a)
                                .map(|mut doc| doc.save())
                                .map_err(|e| Error::Internal(format!("creating record {id}: {e}")))
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(work.len());
        for h in handles {
            all.extend(
                h.join()
                    .map_err(|_| Error::Internal("record builder panicked".into()))??,
            );
        }
        Ok(all)
    })
}

/// Creates the record documents of drawn targets in `tx`.
pub fn create_for_draw(
    tx: &Tx<'_>,
    task: &Task,
    draw_id: i64,
    drawn: &[DrawnTarget],
    calendar: &Calendar,
) -> Result<()> {
    create(tx, task, draw_id, drawn, calendar, None).map(drop)
}

/// Creates the one record of a 复查 task in `tx`: `target` with its group,
/// the assignment naming what it rechecks. `draw_id` is the draw that made
/// the group of the record rechecked. Returns the new record's id.
pub fn create_recheck(
    tx: &Tx<'_>,
    task: &Task,
    draw_id: i64,
    target: &DrawnTarget,
    recheck_of: &RecheckOf,
    calendar: &Calendar,
) -> Result<String> {
    let mut ids = create(
        tx,
        task,
        draw_id,
        std::slice::from_ref(target),
        calendar,
        Some(recheck_of),
    )?;
    ids.pop()
        .ok_or_else(|| Error::Internal("a recheck made no record".into()))
}

fn create(
    tx: &Tx<'_>,
    task: &Task,
    draw_id: i64,
    drawn: &[DrawnTarget],
    calendar: &Calendar,
    recheck_of: Option<&RecheckOf>,
) -> Result<Vec<String>> {
    let ctx = task_context(tx, task, calendar)?;
    let mut work = Vec::with_capacity(drawn.len());
    let mut target_ids = Vec::with_capacity(drawn.len());
    for d in drawn {
        let (target_id, mut a) = assignment(tx, &ctx, task, d)?;
        a.recheck_of = recheck_of.cloned();
        work.push((record_id(task.id, target_id), a));
        target_ids.push(target_id);
    }
    let docs = build_documents(&work)?;
    let at = now();
    let deadline = ctx.deadline.value.to_string();
    let provisional = ctx.deadline.provisional();
    let mut insert_record = tx.prepare_cached(
        "INSERT INTO records (id, task_id, target_id, draw_id, target_name, deadline,
            deadline_provisional, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut insert_member = tx.prepare_cached(
        "INSERT INTO record_inspectors (record_id, inspector_id, lead) VALUES (?1, ?2, ?3)",
    )?;
    let mut insert_history = tx.prepare_cached(
        "INSERT INTO record_assignment_history (record_id, inspector_id) VALUES (?1, ?2)
         ON CONFLICT DO NOTHING",
    )?;
    let mut insert_chunk =
        tx.prepare_cached("INSERT INTO record_chunks (record_id, seq, bytes) VALUES (?1, 0, ?2)")?;
    for (((id, a), bytes), (target_id, d)) in
        work.iter().zip(&docs).zip(target_ids.iter().zip(drawn))
    {
        insert_record.execute(params![
            id,
            task.id,
            target_id,
            draw_id,
            a.target.name,
            deadline,
            provisional,
            at
        ])?;
        for (n, inspector) in d.group.iter().enumerate() {
            insert_member.execute(params![id, inspector, n == 0])?;
            insert_history.execute(params![id, inspector])?;
        }
        insert_chunk.execute(params![id, bytes])?;
    }
    Ok(work.into_iter().map(|(id, _)| id).collect())
}

/// Loads a record document from its chunks.
pub fn load_document(conn: &Conn, record_id: &str) -> Result<RecordDoc> {
    let mut stmt =
        conn.prepare_cached("SELECT bytes FROM record_chunks WHERE record_id = ?1 ORDER BY seq")?;
    let mut bytes = Vec::new();
    let mut found = false;
    for chunk in stmt.query_map([record_id], |r| r.get::<_, Vec<u8>>(0))? {
        bytes.extend(chunk?);
        found = true;
    }
    if !found {
        let purged: Option<String> = conn
            .prepare_cached("SELECT purged_at FROM records WHERE id = ?1")?
            .query_row([record_id], |r| r.get(0))
            .optional()?
            .flatten();
        return Err(match purged {
            Some(at) => Error::Gone(format!(
                "record {record_id} was purged at {at}, after its retention period; its \
                 published result, draw record and audit entries are kept"
            )),
            None => Error::NotFound(format!("record {record_id}")),
        });
    }
    RecordDoc::load(&bytes)
        .map_err(|e| Error::Internal(format!("record {record_id} does not load: {e}")))
}

/// Appends the changes made to `doc` since it was loaded as a new chunk.
pub fn append_changes(tx: &Tx<'_>, record_id: &str, doc: &mut RecordDoc) -> Result<()> {
    let bytes = doc.save_incremental();
    if bytes.is_empty() {
        return Ok(());
    }
    insert_chunk(tx, record_id, &bytes)
}

/// Appends `bytes` (changes or a document, as `save` and its kin write them) to a record's
/// chunks. The record's `doc_version` rises with it (a trigger).
pub fn insert_chunk(tx: &Tx<'_>, record_id: &str, bytes: &[u8]) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO record_chunks (record_id, seq, bytes)
         VALUES (?1, (SELECT COALESCE(MAX(seq), -1) + 1 FROM record_chunks WHERE record_id = ?1), ?2)",
    )?
    .execute(params![record_id, bytes])?;
    Ok(())
}

/// Gives a record the group of a redraw and rewrites its assignment.
pub fn regroup(
    tx: &Tx<'_>,
    task: &Task,
    record: &str,
    draw_id: i64,
    drawn: &DrawnTarget,
    calendar: &Calendar,
) -> Result<()> {
    let ctx = task_context(tx, task, calendar)?;
    let (_, a) = assignment(tx, &ctx, task, drawn)?;
    let mut doc = load_document(tx, record)?;
    doc.save_incremental();
    doc.set_actor(server_actor());
    doc.replace_assignment(&a)
        .map_err(|e| Error::Internal(format!("replacing the assignment of {record}: {e}")))?;
    append_changes(tx, record, &mut doc)?;
    tx.execute(
        "DELETE FROM record_inspectors WHERE record_id = ?1",
        [record],
    )?;
    for (n, inspector) in drawn.group.iter().enumerate() {
        tx.execute(
            "INSERT INTO record_inspectors (record_id, inspector_id, lead) VALUES (?1, ?2, ?3)",
            params![record, inspector, n == 0],
        )?;
        tx.execute(
            "INSERT INTO record_assignment_history (record_id, inspector_id) VALUES (?1, ?2)
             ON CONFLICT DO NOTHING",
            params![record, inspector],
        )?;
    }
    tx.execute(
        "UPDATE records SET draw_id = ?1, deadline = ?2, deadline_provisional = ?3 WHERE id = ?4",
        params![
            draw_id,
            ctx.deadline.value.to_string(),
            ctx.deadline.provisional(),
            record
        ],
    )?;
    Ok(())
}

/// Brings the deadlines written at the draw up to date after an admin loaded
/// (or replaced) the holiday schedule of `year`, with `calendar` the calendar
/// that now includes it: every record whose deadline was provisional, or whose
/// count from its window end runs through `year`, is counted again. Where the
/// date or its provisional mark changes, `records` changes and, for a record
/// in force, so does the document's assignment (written as the server, so
/// phones get the final date at their next sync; signatures do not cover the
/// assignment). The document of a published or withdrawn record is left as it
/// was. Returns the ids of the records whose deadline changed.
pub fn finalise_deadlines(tx: &Tx<'_>, calendar: &Calendar, year: i32) -> Result<Vec<String>> {
    let days = rules::load(tx)?.result_publication_days;
    let mut stmt = tx.prepare(
        "SELECT r.id, t.window_end, r.deadline, r.deadline_provisional, r.withdrawn_at IS NOT NULL
         FROM records r JOIN tasks t ON t.id = r.task_id
         WHERE r.deadline_provisional = 1 OR (t.window_end <= ?2 AND r.deadline >= ?1)
         ORDER BY r.id",
    )?;
    let candidates = stmt
        .query_map(
            params![format!("{year}-01-01"), format!("{year}-12-31")],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, chrono::NaiveDate>(1)?,
                    r.get::<_, chrono::NaiveDate>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, bool>(4)?,
                ))
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let mut changed = Vec::new();
    for (id, window_end, stored, stored_provisional, withdrawn) in candidates {
        let deadline = calendar.deadline(window_end, days);
        if (deadline.value, deadline.provisional()) == (stored, stored_provisional) {
            continue;
        }
        tx.execute(
            "UPDATE records SET deadline = ?1, deadline_provisional = ?2 WHERE id = ?3",
            params![deadline.value.to_string(), deadline.provisional(), id],
        )?;
        changed.push(id.clone());
        if withdrawn {
            continue;
        }
        let mut doc = load_document(tx, &id)?;
        let published = doc
            .review()
            .map_err(|e| Error::Internal(format!("record {id}: {e}")))?
            .state
            == ReviewState::Published;
        if !published {
            let mut assignment = doc
                .assignment()
                .map_err(|e| Error::Internal(format!("record {id}: {e}")))?;
            assignment.publication_deadline = deadline.value;
            assignment.publication_deadline_provisional = deadline.provisional();
            doc.save_incremental();
            doc.set_actor(server_actor());
            doc.replace_assignment(&assignment)
                .map_err(|e| Error::Internal(format!("updating the deadline of {id}: {e}")))?;
            append_changes(tx, &id, &mut doc)?;
        }
    }
    Ok(changed)
}

/// Withdraws a record (its target was out of scope); phones drop it at their next sync.
pub fn withdraw(tx: &Tx<'_>, record: &str, reason: &str) -> Result<()> {
    tx.execute(
        "UPDATE records SET withdrawn_at = ?1, withdrawn_reason = ?2 WHERE id = ?3",
        params![now(), reason, record],
    )?;
    Ok(())
}

/// A record as lists show it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordSummary {
    /// Record id.
    pub id: String,
    /// Task id.
    pub task_id: i64,
    /// Task number.
    pub task_number: String,
    /// Target id.
    pub target_id: i64,
    /// Target name.
    pub target_name: String,
    /// Publication deadline, as written at the draw (see the module doc).
    pub deadline: String,
    /// Whether that deadline is provisional (a year on the way has no holiday schedule).
    pub deadline_provisional: bool,
    /// Inspector ids, the lead first.
    pub group: Vec<i64>,
    /// Whether withdrawn (recusal of the target, out of scope).
    pub withdrawn: bool,
    /// When the record's document was purged after its retention period, if it was.
    pub purged_at: Option<String>,
}

/// Records of a task (in force, withdrawn or purged), or those an inspector holds now
/// (in force and not purged).
pub fn list(
    conn: &Conn,
    task_id: Option<i64>,
    inspector_id: Option<i64>,
) -> Result<Vec<RecordSummary>> {
    let mut stmt = conn.prepare(
        "SELECT r.id, r.task_id, t.number, r.target_id, r.target_name, r.deadline, r.withdrawn_at IS NOT NULL,
            r.deadline_provisional,
            (SELECT json_group_array(inspector_id) FROM
                (SELECT inspector_id FROM record_inspectors WHERE record_id = r.id
                 ORDER BY lead DESC, inspector_id) AS g),
            r.purged_at
         FROM records r JOIN tasks t ON t.id = r.task_id
         WHERE (CAST(?1 AS BIGINT) IS NULL OR r.task_id = ?1)
           AND (CAST(?2 AS BIGINT) IS NULL OR (r.withdrawn_at IS NULL AND r.purged_at IS NULL AND EXISTS
                (SELECT 1 FROM record_inspectors ri WHERE ri.record_id = r.id AND ri.inspector_id = ?2)))
         ORDER BY r.task_id, r.id",
    )?;
    let rows = stmt.query_map(params![task_id, inspector_id], |r| {
        let group: String = r.get(8)?;
        Ok(RecordSummary {
            id: r.get(0)?,
            task_id: r.get(1)?,
            task_number: r.get(2)?,
            target_id: r.get(3)?,
            target_name: r.get(4)?,
            deadline: r.get(5)?,
            withdrawn: r.get(6)?,
            deadline_provisional: r.get(7)?,
            group: serde_json::from_str(&group).unwrap_or_default(),
            purged_at: r.get(9)?,
        })
    })?;
    rows.collect::<Result<_, _>>()
}
