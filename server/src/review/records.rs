//! The supervisor's review: the queue of submitted records, the full record
//! view, and the two decisions (return with comments, approve). Decisions
//! are changes to the record document by the server, so a returned record
//! reaches the inspectors' phones at their next sync.

use crate::store::sql::{Conn, OptionalExtension, Tx, params};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};
use suiji_mobile_core::record::server_actor;

use super::{
    china_today, deadline_fields, doc_error, refresh_record_index, refresh_stale, was_in_group,
};
use crate::AppState;
use crate::actor::Actor;
use crate::audit;
use crate::auth::{AuthUser, Role};
use crate::calendar::Calendar;
use crate::draw::records::{append_changes, load_document};
use crate::error::{Error, Result};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Page, Paging};
use crate::registry::rules;
use crate::spreadsheet::{Cell, Format, Table};
use crate::visibility::{self, Sight};

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/review/queue", get(queue))
        .route("/api/v1/records/{id}", get(view))
        .route("/api/v1/records/{id}/return", post(return_record))
        .route("/api/v1/records/{id}/approve", post(approve_record))
}

/// Who may read records under review.
pub const REVIEW_READERS: &[Role] = &[Role::Supervisor, Role::Admin];

/// Filters of the review queue.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    /// Only this task.
    pub task: Option<i64>,
    /// Only tasks of (or with items of) this department.
    pub department: Option<String>,
    /// submitted (default), returned, approved, published, or all (every state but open).
    pub status: Option<String>,
    /// Only overdue (or not overdue) records.
    pub overdue: Option<bool>,
    /// Count working days as of this date instead of today (China time).
    pub as_of: Option<NaiveDate>,
    /// Page number.
    pub page: Option<u32>,
    /// Page size.
    pub per_page: Option<u32>,
    /// `json` (default, paged), or `csv` / `xlsx`: every matching line, unpaged.
    pub format: Option<String>,
}

/// The lines of the review queue matching `q` (unpaged), as `user` sees
/// them (only records the rule of docs/draw.md lets them see whole), with
/// deadlines counted as of `today`.
pub fn queue_rows(
    conn: &Conn,
    user: &Actor,
    q: &QueueQuery,
    calendar: &Calendar,
    today: NaiveDate,
) -> Result<Vec<Value>> {
    let status = q.status.as_deref().unwrap_or("submitted");
    let states: &[&str] = match status {
        "submitted" => &["submitted"],
        "returned" => &["returned"],
        "approved" => &["approved"],
        "published" => &["published"],
        "all" => &["submitted", "returned", "approved", "published"],
        _ => {
            return Err(Error::invalid(
                "status",
                "one of submitted, returned, approved, published, all",
            ));
        }
    };
    let days = rules::load(conn)?.result_publication_days;
    let user_id = user.user_id;
    let sights = visibility::sights(conn, user, q.task)?;
    let mut stmt = conn.prepare(
        "SELECT r.id, r.task_id, t.number, t.name, dp.code, r.target_id, r.target_name, tg.uscc,
                r.review_state, r.review_round, r.submitted_at, r.inspection_ended_on,
                r.has_conflicts, t.window_end,
                EXISTS(SELECT 1 FROM record_assignment_history h JOIN inspectors i ON i.id = h.inspector_id
                       WHERE h.record_id = r.id AND i.user_id = ?3)
         FROM records r
         JOIN tasks t ON t.id = r.task_id
         JOIN departments dp ON dp.id = t.department_id
         JOIN targets tg ON tg.id = r.target_id
         WHERE r.withdrawn_at IS NULL
           AND (CAST(?1 AS BIGINT) IS NULL OR r.task_id = ?1)
           AND (CAST(?2 AS TEXT) IS NULL OR dp.code = ?2 OR EXISTS(SELECT 1 FROM task_items ti
                JOIN departments d2 ON d2.id = ti.department_id WHERE ti.task_id = t.id AND d2.code = ?2))
           AND r.review_state IN (SELECT value FROM json_each(?4))
         ORDER BY r.submitted_at IS NULL, r.submitted_at, r.id",
    )?;
    let rows = stmt.query_map(
        params![q.task, q.department, user_id, json!(states).to_string()],
        |r| {
            Ok((
                json!({
                    "id": r.get::<_, String>(0)?,
                    "task_id": r.get::<_, i64>(1)?,
                    "task_number": r.get::<_, String>(2)?,
                    "task_name": r.get::<_, String>(3)?,
                    "department": r.get::<_, String>(4)?,
                    "target_id": r.get::<_, i64>(5)?,
                    "target_name": r.get::<_, String>(6)?,
                    "uscc": r.get::<_, String>(7)?,
                    "state": r.get::<_, String>(8)?,
                    "round": r.get::<_, i64>(9)?,
                    "submitted_at": r.get::<_, Option<String>>(10)?,
                    "inspection_ended_on": r.get::<_, Option<String>>(11)?,
                    "has_conflicts": r.get::<_, bool>(12)?,
                    "you_inspected": r.get::<_, bool>(14)?,
                }),
                r.get::<_, Option<String>>(11)?,
                r.get::<_, String>(13)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (mut line, ended, window_end) = row?;
        if line["id"]
            .as_str()
            .and_then(|id| sights.get(id))
            .is_none_or(|s| *s != Sight::Full)
        {
            continue;
        }
        let from: NaiveDate = ended
            .as_deref()
            .unwrap_or(&window_end)
            .parse()
            .map_err(|e| Error::Internal(format!("stored date does not parse: {e}")))?;
        let fields = deadline_fields(calendar, from, days, today);
        let published = line["state"] == "published";
        for (k, v) in fields.as_object().into_iter().flatten() {
            line[k] = v.clone();
        }
        if published {
            line["overdue"] = json!(false);
        }
        if q.overdue.is_none_or(|want| line["overdue"] == json!(want)) {
            out.push(line);
        }
    }
    Ok(out)
}

async fn queue(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<QueueQuery>,
) -> Result<Response> {
    user.require(REVIEW_READERS)?;
    let format = match q.format.as_deref() {
        None | Some("json") => None,
        Some("csv") => Some(Format::Csv),
        Some("xlsx") => Some(Format::Xlsx),
        Some(_) => return Err(Error::invalid("format", "json, csv or xlsx")),
    };
    let paging = Paging {
        page: q.page.unwrap_or(1),
        per_page: q.per_page.unwrap_or(50),
    }
    .validate()?;
    let calendar = state.calendar();
    let today = q.as_of.unwrap_or_else(china_today);
    let rows = state
        .db
        .write(move |tx| {
            refresh_stale(tx)?;
            queue_rows(tx, &user, &q, &calendar, today)
        })
        .await?;
    if let Some(format) = format {
        return queue_table(&rows).download(format, &format!("review-queue-{today}"));
    }
    let total = rows.len() as i64;
    let items = rows
        .into_iter()
        .skip(paging.offset() as usize)
        .take(paging.limit() as usize)
        .collect();
    Ok(Json(Page {
        items,
        total,
        page: paging.page,
        per_page: paging.per_page,
    })
    .into_response())
}

/// Review queue lines as a spreadsheet table, in the queue's order.
pub fn queue_table(rows: &[Value]) -> Table {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let yes_no = |v: &Value| if v == &json!(true) { "是" } else { "否" };
    let rows = rows
        .iter()
        .map(|r| {
            let state = r["state"]
                .as_str()
                .and_then(suiji_mobile_core::vocab::ReviewState::from_code)
                .map_or_else(|| text(&r["state"]), |s| s.label().to_owned());
            vec![
                Cell::Text(text(&r["task_number"])),
                Cell::Text(text(&r["task_name"])),
                Cell::Text(text(&r["department"])),
                Cell::Text(text(&r["target_name"])),
                Cell::Text(text(&r["uscc"])),
                Cell::Text(state),
                r["round"].as_i64().unwrap_or(0).into(),
                Cell::Text(text(&r["submitted_at"])),
                Cell::Text(text(&r["inspection_ended_on"])),
                Cell::Text(text(&r["deadline"])),
                r["working_days_left"]
                    .as_i64()
                    .map_or(Cell::Text(String::new()), Cell::from),
                yes_no(&r["overdue"]).into(),
                yes_no(&r["provisional"]).into(),
                yes_no(&r["has_conflicts"]).into(),
            ]
        })
        .collect();
    Table {
        sheet: "审核队列".into(),
        header: [
            "任务编号",
            "任务名称",
            "部门",
            "检查对象",
            "统一社会信用代码",
            "审核状态",
            "提交轮次",
            "提交时间",
            "检查结束日",
            "公示期限",
            "剩余工作日",
            "已逾期",
            "期限暂定",
            "有冲突",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows,
    }
}

/// A record as a supervisor sees it; not found (404) for a record `user` may
/// not see whole, exactly as for an unknown id (docs/draw.md, "Who sees a
/// drawn list").
pub fn record_view(
    conn: &Conn,
    user: &Actor,
    id: &str,
    calendar: &Calendar,
    today: NaiveDate,
) -> Result<Value> {
    visibility::ensure_full(conn, user, id)?;
    let mut doc = load_document(conn, id)?;
    let mut view = document_view(conn, id, &mut doc, calendar, today)?;
    view["you_inspected"] = json!(was_in_group(conn, user.user_id, id)?);
    Ok(view)
}

/// The record view of record `id` whose document is `doc`, as [`record_view`] shows it but
/// without asking who looks (no visibility check, no `you_inspected`): what a task's dossier
/// holds. Callers check who may see it.
pub fn document_view(
    conn: &Conn,
    id: &str,
    doc: &mut suiji_mobile_core::RecordDoc,
    calendar: &Calendar,
    today: NaiveDate,
) -> Result<Value> {
    let row: Option<(i64, Option<String>, Option<String>, String)> = conn
        .query_row(
            "SELECT r.task_id, r.inspection_ended_on, r.withdrawn_at, t.window_end
             FROM records r JOIN tasks t ON t.id = r.task_id WHERE r.id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((task_id, ended, withdrawn_at, window_end)) = row else {
        return Err(Error::NotFound(format!("record {id}")));
    };
    let err = doc_error(id, "record");
    let assignment = doc.assignment().map_err(&err)?;
    let name_of = |inspector: &str| {
        assignment
            .inspectors
            .iter()
            .find(|i| i.inspector_id.as_str() == inspector)
            .map(|i| i.name.clone())
    };
    let items: Vec<Value> = doc
        .items()
        .map_err(&err)?
        .into_iter()
        .map(|(item, answer)| {
            json!({
                "code": item.code, "version": item.version, "name": item.name,
                "legal_basis": item.legal_basis, "content": item.content,
                "checked": answer.checked,
                "methods": answer.methods.iter().map(|m| json!({"code": m.code(), "label": m.label()})).collect::<Vec<_>>(),
                "finding": answer.finding, "disposition": answer.disposition,
            })
        })
        .collect();
    let results: Vec<Value> = doc
        .result_categories()
        .map_err(&err)?
        .into_iter()
        .map(|c| json!({"code": c.code(), "label": c.label()}))
        .collect();
    let follow_up = doc.follow_up().map_err(&err)?;
    let photos: Vec<Value> = doc
        .photos()
        .map_err(&err)?
        .into_iter()
        .map(|p| {
            let mut v = serde_json::to_value(&p).unwrap_or(Value::Null);
            // Over the phone's pixel budget the original stays on the phone and the upload
            // copy is the full-size photo the server holds.
            let full_size = p.upload_sha256.as_ref().unwrap_or(&p.sha256);
            v["url"] = json!(format!("/api/v1/blobs/{full_size}"));
            v["original_on_server"] = json!(p.upload_sha256.is_none());
            v["thumbnail_url"] = json!(format!("/api/v1/blobs/{}", p.thumbnail_sha256));
            v["upload_url"] = json!(
                p.upload_sha256
                    .as_ref()
                    .map(|h| format!("/api/v1/blobs/{h}"))
            );
            v["taken_by_name"] = json!(name_of(p.taken_by.as_str()));
            v
        })
        .collect();
    let signatures: Vec<Value> = crate::signing::record_signatures(conn, doc)?
        .into_iter()
        .map(|check| {
            let mut v = serde_json::to_value(&check.signature).unwrap_or(Value::Null);
            v["name"] = json!(name_of(check.signature.inspector_id.as_str()));
            v["verification"] = json!(check.status);
            v
        })
        .collect();
    let days = rules::load(conn)?.result_publication_days;
    let from: NaiveDate = ended
        .as_deref()
        .unwrap_or(&window_end)
        .parse()
        .map_err(|e| Error::Internal(format!("stored date does not parse: {e}")))?;
    let review = doc.review().map_err(&err)?;
    let mut deadline = deadline_fields(calendar, from, days, today);
    deadline["counted_from"] = json!(from);
    deadline["counted_from_kind"] = json!(if ended.is_some() {
        "inspection_ended"
    } else {
        "window_end"
    });
    deadline["working_days"] = json!(days);
    Ok(json!({
        "id": id,
        "task_id": task_id,
        "withdrawn_at": withdrawn_at,
        "plan": assignment.plan,
        "task": assignment.task,
        "agency": assignment.agency,
        "target": assignment.target,
        "inspectors": assignment.inspectors,
        "window_start": assignment.window_start,
        "window_end": assignment.window_end,
        "items": items,
        "results": results,
        "follow_up": {
            "measure": follow_up.measure.map(|m| json!({"code": m.code(), "label": m.label()})),
            "deadline": follow_up.deadline, "detail": follow_up.detail,
        },
        "party": {
            "statement": doc.party_statement().map_err(&err)?,
            "signature": doc.party_signature().map_err(&err)?,
        },
        "notes": doc.notes().map_err(&err)?,
        "photos": photos,
        "signatures": signatures,
        "conflicts": doc.conflicts().map_err(&err)?,
        "submissions": doc.submissions().map_err(&err)?,
        "missing_for_submit": doc.missing_for_submit().map_err(&err)?.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        "review": review,
        "inspection_ended_on": ended,
        "publication": deadline,
    }))
}

async fn view(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>> {
    user.require(REVIEW_READERS)?;
    let calendar = state.calendar();
    Ok(Json(
        state
            .db
            .write(move |tx| {
                refresh_stale(tx)?;
                record_view(tx, &user, &id, &calendar, china_today())
            })
            .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnBody {
    comment: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    #[serde(default)]
    comment: Option<String>,
}

/// A supervisor's decision on a submitted record.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Send back to the inspectors, saying why.
    Return(String),
    /// Approve, with an optional remark.
    Approve(Option<String>),
}

/// Applies a decision to a record in `tx`: checks separation of duties, writes
/// the review step into the document as the server, refreshes the index and
/// appends to the audit log. Returns the record's new review part.
pub fn decide(tx: &Tx<'_>, user: &Actor, id: &str, decision: &Decision) -> Result<Value> {
    let mut doc = super::record_for_decision(tx, user, id)?;
    doc.save_incremental();
    doc.set_actor(server_actor());
    let before = doc.review().map_err(doc_error(id, "record"))?;
    let (action, comment) = match decision {
        Decision::Return(comment) => {
            doc.return_for_revision(&user.username, comment)
                .map_err(doc_error(id, "comment"))?;
            ("record.return", Some(comment.as_str()))
        }
        Decision::Approve(comment) => {
            doc.approve(&user.username, comment.as_deref())
                .map_err(doc_error(id, "comment"))?;
            ("record.approve", comment.as_deref())
        }
    };
    append_changes(tx, id, &mut doc)?;
    refresh_record_index(tx, id, &doc)?;
    let after = doc.review().map_err(doc_error(id, "record"))?;
    audit::append(
        tx,
        &user.username,
        action,
        &format!("record:{id}"),
        Some(&json!({"state": before.state, "round": before.round})),
        Some(&json!({"state": after.state, "round": after.round, "comment": comment})),
    )?;
    Ok(json!({"id": id, "review": after}))
}

async fn return_record(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ReturnBody>,
) -> Result<Json<Value>> {
    user.require(&[Role::Supervisor])?;
    if body.comment.trim().is_empty() {
        return Err(Error::invalid(
            "comment",
            "say what the inspectors must correct",
        ));
    }
    Ok(Json(
        state
            .db
            .write(move |tx| decide(tx, &user, &id, &Decision::Return(body.comment)))
            .await?,
    ))
}

async fn approve_record(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ApproveBody>,
) -> Result<Json<Value>> {
    user.require(&[Role::Supervisor])?;
    let comment = body.comment.filter(|c| !c.trim().is_empty());
    Ok(Json(
        state
            .db
            .write(move |tx| decide(tx, &user, &id, &Decision::Approve(comment)))
            .await?,
    ))
}
