//! The statutory clock: what is due soon and what is overdue.
//!
//! - a record's result: `result_publication_days` working days after the
//!   inspection ended (the first accepted submission; the task's window end
//!   while none), until it is published;
//! - a drawn list: `list_publication_days` working days after the draw (China
//!   date of the initial draw), until it is published;
//! - a 经营异常名录 candidate: `abnormal_list_days` working days after the
//!   finding was verified (approved), while pending.
//!
//! Every deadline is computed when read, from the calendar as it stands. One
//! that runs through a year without a holiday schedule is counted Monday to
//! Friday there and marked `provisional` (with its `unscheduled_years`); it is
//! listed and sorted like any other, and is final as soon as an admin loads
//! the year (`review::calendar_admin`).

use crate::store::sql::Conn;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};

use super::publication::list_abnormal_candidates;
use super::{china_date_of, china_today, deadline_fields, refresh_stale};
use crate::AppState;
use crate::actor::Actor;
use crate::auth::{AuthUser, Role};
use crate::calendar::Calendar;
use crate::error::{Error, Result};
use crate::extract::ApiQuery;
use crate::registry::rules;
use crate::spreadsheet::{Cell, Format, Table};
use crate::visibility::{self, Sight};

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/deadlines", get(deadlines))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadlineQuery {
    within_days: Option<i64>,
    as_of: Option<NaiveDate>,
    format: Option<String>,
}

fn parse_date(text: &str) -> Result<NaiveDate> {
    text.parse()
        .map_err(|e| Error::Internal(format!("stored date {text:?}: {e}")))
}

/// Every open deadline `user` may see, each entry with its `deadline`,
/// `working_days_left`, `overdue`, `provisional` and `unscheduled_years`
/// (`review::deadline_fields`). A record's deadline
/// is listed only to those the rule of docs/draw.md ("Who sees a drawn list")
/// lets see the record at least as a line; each such entry says with
/// `may_open` whether they may open the record itself. A drawn list's
/// deadline names the task and the draw, not its targets.
pub fn open_deadlines(
    conn: &Conn,
    user: &Actor,
    calendar: &Calendar,
    today: NaiveDate,
) -> Result<Vec<Value>> {
    let rules = rules::load(conn)?;
    let sights = visibility::sights(conn, user, None)?;
    let mut out = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT r.id, r.task_id, t.number, r.target_name, r.review_state, r.inspection_ended_on,
                t.window_end
         FROM records r JOIN tasks t ON t.id = r.task_id
         WHERE r.withdrawn_at IS NULL AND r.review_state <> 'published' ORDER BY r.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, String>(6)?,
        ))
    })?;
    for row in rows {
        let (id, task_id, task_number, target_name, review_state, ended, window_end) = row?;
        let Some(sight) = sights.get(&id) else {
            continue;
        };
        let from = parse_date(ended.as_deref().unwrap_or(&window_end))?;
        let mut v = json!({
            "kind": "record_result", "record_id": id, "task_id": task_id,
            "task_number": task_number, "target_name": target_name, "state": review_state,
            "counted_from": from,
            "counted_from_kind": if ended.is_some() { "inspection_ended" } else { "window_end" },
            "may_open": *sight == Sight::Full,
        });
        merge(
            &mut v,
            deadline_fields(calendar, from, rules.result_publication_days, today),
        );
        out.push(v);
    }
    let mut stmt = conn.prepare(
        "SELECT d.id, d.task_id, t.number, t.name, d.drawn_at FROM draws d
         JOIN tasks t ON t.id = d.task_id
         WHERE d.kind = 'initial' AND d.published_at IS NULL ORDER BY d.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    for row in rows {
        let (draw_id, task_id, number, name, drawn_at) = row?;
        let from = china_date_of(&drawn_at)?;
        let mut v = json!({
            "kind": "drawn_list", "draw_id": draw_id, "task_id": task_id,
            "task_number": number, "task_name": name, "counted_from": from,
            "counted_from_kind": "draw",
        });
        merge(
            &mut v,
            deadline_fields(calendar, from, rules.list_publication_days, today),
        );
        out.push(v);
    }
    for mut c in list_abnormal_candidates(conn, Some("pending"), calendar, today)? {
        c["kind"] = json!("abnormal_candidate");
        c["counted_from"] = c["verified_on"].clone();
        c["counted_from_kind"] = json!("verified");
        out.push(c);
    }
    Ok(out)
}

fn merge(into: &mut Value, fields: Value) {
    if let Value::Object(map) = fields {
        for (k, v) in map {
            into[k] = v;
        }
    }
}

async fn deadlines(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<DeadlineQuery>,
) -> Result<Response> {
    user.require(&[Role::Supervisor, Role::Admin, Role::Planner])?;
    let format = match q.format.as_deref() {
        None | Some("json") => None,
        Some("csv") => Some(Format::Csv),
        Some("xlsx") => Some(Format::Xlsx),
        Some(_) => return Err(Error::invalid("format", "json, csv or xlsx")),
    };
    let within = q.within_days.unwrap_or(5);
    if !(0..=365).contains(&within) {
        return Err(Error::invalid("within_days", "between 0 and 365"));
    }
    let today = q.as_of.unwrap_or_else(china_today);
    let calendar = state.calendar();
    let all = state
        .db
        .write(move |tx| {
            refresh_stale(tx)?;
            open_deadlines(tx, &user, &calendar, today)
        })
        .await?;
    let sorted = sort_deadlines(all, today, within);
    match format {
        None => Ok(Json(sorted).into_response()),
        Some(format) => deadlines_table(&sorted).download(format, &format!("deadlines-{today}")),
    }
}

/// The sorted deadlines as a spreadsheet table: the overdue first, then those due soon.
pub fn deadlines_table(sorted: &Value) -> Table {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut rows = Vec::new();
    for (list, standing) in [("overdue", "已逾期"), ("due_soon", "即将到期")] {
        for e in sorted[list].as_array().into_iter().flatten() {
            let kind = match e["kind"].as_str() {
                Some("record_result") => "检查结果公示",
                Some("drawn_list") => "抽查名单公示",
                Some("abnormal_candidate") => "列入经营异常名录",
                _ => "",
            };
            let subject = e["target_name"]
                .as_str()
                .or(e["task_name"].as_str())
                .unwrap_or_default();
            rows.push(vec![
                Cell::from(standing),
                kind.into(),
                text(&e["task_number"]).into(),
                subject.into(),
                text(&e["counted_from"]).into(),
                text(&e["deadline"]).into(),
                e["working_days_left"]
                    .as_i64()
                    .map_or(Cell::Text(String::new()), Cell::from),
                if e["provisional"] == json!(true) {
                    "是（节假日安排未公布）"
                } else {
                    "否"
                }
                .into(),
            ]);
        }
    }
    Table {
        sheet: "公示期限".into(),
        header: [
            "状态",
            "类型",
            "任务编号",
            "检查对象或任务",
            "起算日",
            "期限",
            "剩余工作日",
            "暂定",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows,
    }
}

/// Sorts open deadlines into `overdue` and `due_soon` (at most `within`
/// working days left), by deadline; provisional ones among the others.
pub fn sort_deadlines(all: Vec<Value>, today: NaiveDate, within: i64) -> Value {
    let (mut overdue, mut due_soon) = (Vec::new(), Vec::new());
    for entry in all {
        if entry["overdue"] == json!(true) {
            overdue.push(entry);
        } else if entry["working_days_left"]
            .as_i64()
            .is_some_and(|left| left <= within)
        {
            due_soon.push(entry);
        }
    }
    let by_deadline = |a: &Value, b: &Value| {
        a["deadline"]
            .as_str()
            .cmp(&b["deadline"].as_str())
            .then_with(|| a["kind"].as_str().cmp(&b["kind"].as_str()))
    };
    overdue.sort_by(by_deadline);
    due_soon.sort_by(by_deadline);
    json!({
        "as_of": today, "within_days": within,
        "overdue": overdue, "due_soon": due_soon,
    })
}
