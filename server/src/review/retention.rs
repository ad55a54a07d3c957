//! Retention (档案保存期限) and the purge of a task's records after it.
//!
//! Nothing of a record is deleted before its task's published results are `retention_years`
//! old (the rules; at least two years), counted from the latest publication of any of the
//! task's results, a correction included, as a China date: a task whose results were last
//! published on 2026-11-20 may be purged from 2028-11-20 with the default two years. Then an
//! admin may purge the task, once every record in force is published.
//!
//! A purge empties each record but keeps the publication record: the record row (which the
//! published results, the draw records, the frequency cap and "not the same inspectors as
//! last time" name), its inspector group, the published results with every version, the
//! draws and the audit log. It deletes the record's document (its chunks: answers, findings,
//! notes, photo metadata, signatures, the review history), its sync states, its blob
//! references, and the blobs no other record references (rows, uploaders, files). The record
//! then answers 410 wherever its document is asked for, and phones that hold it are told it
//! is withdrawn. One audit entry (`task.purge`) names the counts and the reason; a second
//! purge of the same task finds nothing left to delete, changes nothing and is not audited.
//!
//! Blob files are deleted after the transaction commits (a failed commit must leave them),
//! and what the sync endpoint keeps in memory of each record is dropped then too; the
//! records' `doc_version` is raised in the transaction, so a cache of another server process
//! no longer matches either.

use crate::store::sql::{Tx, params};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{china_date_of, china_today};
use crate::AppState;
use crate::audit;
use crate::auth::{AuthUser, Role};
use crate::db::now;
use crate::error::{Error, Result};
use crate::extract::{ApiJson, ApiPath};
use crate::plans;
use crate::registry::{check_text, rules};

/// Longest reason a purge takes, in characters.
const MAX_REASON: usize = 1000;

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/tasks/{id}/purge", post(purge))
}

/// The body of a purge.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Why the task's records are purged (the disposal decision, 销毁审批), kept in the audit
    /// log.
    pub reason: String,
}

/// What a purge did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// The task purged.
    pub task_id: i64,
    /// The latest publication of the task's results (China date) the retention counts from.
    pub last_published_on: NaiveDate,
    /// The rules' retention in years.
    pub retention_years: u32,
    /// The first day the purge was allowed.
    pub allowed_on: NaiveDate,
    /// Records emptied by this purge.
    pub records: usize,
    /// Document chunks deleted.
    pub chunks: usize,
    /// Sync states (record, device) deleted.
    pub sync_states: usize,
    /// Blob references (record, blob) deleted.
    pub blob_references: usize,
    /// Blobs deleted because no other record references them.
    pub blobs: usize,
    /// Whether the task had been purged already (nothing was left to delete).
    pub already_purged: bool,
}

/// A purge stored, with what is to be done once it has committed.
#[derive(Debug)]
pub struct Purged {
    /// The answer.
    pub report: PurgeReport,
    /// Records emptied, to forget in memory.
    pub records: Vec<String>,
    /// Blobs whose files are to be deleted.
    pub blobs: Vec<String>,
}

/// The first day a task whose results were last published on `last_published_on` may be
/// purged.
pub fn allowed_on(last_published_on: NaiveDate, retention_years: u32) -> NaiveDate {
    // 29 February plus whole years falls on 28 February, never before the anniversary's
    // month; a date this far out cannot overflow.
    last_published_on
        .checked_add_months(Months::new(retention_years.saturating_mul(12)))
        .unwrap_or(NaiveDate::MAX)
}

/// The latest day (China date) any of the task's results was published or corrected, if any.
fn last_published_on(tx: &Tx<'_>, task_id: i64) -> Result<Option<NaiveDate>> {
    let mut stmt = tx.prepare(
        "SELECT v.published_at FROM result_versions v
         JOIN published_results p ON p.id = v.result_id WHERE p.task_id = ?1",
    )?;
    let stamps = stmt
        .query_map([task_id], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>>>()?;
    let mut latest = None;
    for stamp in stamps {
        let day = china_date_of(&stamp)?;
        latest = latest.max(Some(day));
    }
    Ok(latest)
}

/// Purges the records of `task_id` on `today` (China date) for `actor`, if the retention
/// period has passed and every record in force is published; see the module doc. 404 for an
/// unknown task, 409 `conflict` for a task with unpublished records or no published result,
/// 409 `retained` (naming the day) before the period has passed.
pub fn purge_task(
    tx: &Tx<'_>,
    actor: &str,
    task_id: i64,
    reason: &str,
    today: NaiveDate,
) -> Result<Purged> {
    check_text("reason", reason, MAX_REASON)?;
    plans::get_task_by_id(tx, task_id)?;
    crate::review::refresh_stale(tx)?;

    let unfinished: Vec<(String, String)> = {
        let mut stmt = tx.prepare(
            "SELECT id, review_state FROM records
             WHERE task_id = ?1 AND withdrawn_at IS NULL AND purged_at IS NULL
               AND review_state != 'published' ORDER BY id",
        )?;
        stmt.query_map([task_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_>>()?
    };
    if let Some((first, state)) = unfinished.first() {
        return Err(Error::Conflict(format!(
            "task {task_id} has {} record(s) whose result is not published (record {first} \
             is {state}); a task is purged only once every record in force is published",
            unfinished.len()
        )));
    }
    let Some(last) = last_published_on(tx, task_id)? else {
        return Err(Error::Conflict(format!(
            "task {task_id} has no published result; nothing of it may be purged"
        )));
    };
    let retention_years = rules::load(tx)?.retention_years;
    let allowed = allowed_on(last, retention_years);
    if today < allowed {
        return Err(Error::Retained {
            allowed_on: allowed,
            message: format!(
                "task {task_id}'s results were last published on {last}; its records are kept \
                 {retention_years} years (the rules' retention_years) and may be purged from \
                 {allowed}"
            ),
        });
    }

    let records: Vec<String> = {
        let mut stmt = tx.prepare(
            "SELECT id FROM records WHERE task_id = ?1 AND purged_at IS NULL ORDER BY id",
        )?;
        stmt.query_map([task_id], |r| r.get(0))?
            .collect::<Result<_>>()?
    };
    let mut report = PurgeReport {
        task_id,
        last_published_on: last,
        retention_years,
        allowed_on: allowed,
        records: records.len(),
        chunks: 0,
        sync_states: 0,
        blob_references: 0,
        blobs: 0,
        already_purged: records.is_empty(),
    };
    if records.is_empty() {
        return Ok(Purged {
            report,
            records,
            blobs: Vec::new(),
        });
    }

    let at = now();
    let mut referenced: Vec<String> = Vec::new();
    {
        let mut chunks = tx.prepare_cached("DELETE FROM record_chunks WHERE record_id = ?1")?;
        let mut states = tx.prepare_cached("DELETE FROM sync_states WHERE record_id = ?1")?;
        let mut mark = tx.prepare_cached(
            "UPDATE records SET purged_at = ?2, doc_version = doc_version + 1, index_stale = 0
             WHERE id = ?1",
        )?;
        for id in &records {
            let (hashes, dropped) = crate::store::blobs::drop_references(tx, id)?;
            referenced.extend(hashes);
            report.chunks += chunks.execute([id])?;
            report.sync_states += states.execute([id])?;
            report.blob_references += dropped;
            mark.execute(params![id, at])?;
        }
    }
    referenced.sort();
    referenced.dedup();
    let mut orphans = Vec::new();
    for hash in referenced {
        if crate::store::blobs::forget_if_unreferenced(tx, &hash)? {
            orphans.push(hash);
        }
    }
    report.blobs = orphans.len();
    audit::append(
        tx,
        actor,
        "task.purge",
        &format!("task:{task_id}"),
        None,
        Some(&json!({
            "reason": reason.trim(),
            "last_published_on": last,
            "retention_years": retention_years,
            "allowed_on": allowed,
            "records": records,
            "chunks": report.chunks,
            "sync_states": report.sync_states,
            "blob_references": report.blob_references,
            "blobs": orphans,
        })),
    )?;
    Ok(Purged {
        report,
        records,
        blobs: orphans,
    })
}

/// Deletes the files of the purged blobs and forgets the purged records in memory; call it
/// once the purge has committed. A file already gone is fine; another failure is logged, and
/// the file stays as disk space: no record references it and it has no uploader, so nobody
/// may download it (at the next start `blobs::reconcile` gives it a row again).
pub fn after_commit(state: &AppState, purged: &Purged) {
    for id in &purged.records {
        state.sync.forget(id);
    }
    for hash in &purged.blobs {
        if let Err(e) = state.blobs.remove(hash) {
            tracing::warn!(sha256 = %hash, error = %e, "purged blob not deleted");
        }
    }
}

/// `POST /api/v1/tasks/{id}/purge`: admins only, checked before the body is read.
async fn purge(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(task_id): ApiPath<i64>,
    request: axum::extract::Request,
) -> Result<Json<PurgeReport>> {
    user.require(&[Role::Admin])?;
    let ApiJson(body) =
        <ApiJson<PurgeRequest> as axum::extract::FromRequest<AppState>>::from_request(
            request, &state,
        )
        .await?;
    let actor = user.username.clone();
    let today = china_today();
    let purged = state
        .db
        .write(move |tx| purge_task(tx, &actor, task_id, &body.reason, today))
        .await?;
    after_commit(&state, &purged);
    tracing::info!(
        task_id,
        records = purged.report.records,
        blobs = purged.report.blobs,
        "task purged"
    );
    Ok(Json(purged.report))
}
