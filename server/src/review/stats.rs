//! The statistics table an agency files each month and year, per department
//! and for the whole agency, as JSON or CSV.
//!
//! What falls in a period:
//! - **tasks, targets in scope, drawn, ratio**: tasks whose initial draw took
//!   place in the period (China date). Targets in scope are the committed
//!   candidate pool; drawn are the task's records in force (replacements
//!   included, withdrawn ones not). A joint task counts for every
//!   participating department, and once for the agency.
//! - **items checked, results by category, published on time / late**:
//!   results first published in the period, as their current version says.
//!   Items count for the department that checks them; result categories for
//!   every department of the task. On time means first published no later
//!   than the record's deadline. A deadline that runs into a year without a
//!   holiday schedule (shown as provisional elsewhere) is counted as
//!   `deadline_unknown` until an admin loads that year: on time or late is not
//!   judged against a provisional date, which may still move either way.

use std::collections::BTreeMap;

use crate::store::sql::Conn;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::json;
use suiji_mobile_core::vocab::ResultCategory;

use super::publication::PublicContent;
use super::{china_date_of, refresh_stale};
use crate::AppState;
use crate::auth::{AuthUser, Role};
use crate::calendar::Calendar;
use crate::error::{Error, Result};
use crate::extract::ApiQuery;
use crate::plans;
use crate::registry::rules;
use crate::spreadsheet::{Cell, Format, Table};

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/stats", get(stats))
}

/// One line of the table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatsRow {
    /// Department code (`null` for the agency-wide line).
    pub department: Option<String>,
    /// Department name (全部 for the agency).
    pub department_name: String,
    /// 抽查任务数.
    pub tasks: i64,
    /// 检查对象数 (candidate pools).
    pub targets_in_scope: i64,
    /// 抽取数.
    pub drawn: i64,
    /// 抽查比例 (drawn / in scope), `null` with nothing in scope.
    pub ratio: Option<f64>,
    /// 检查事项数 checked.
    pub items_checked: i64,
    /// Results by category code, every category present.
    pub results: BTreeMap<String, i64>,
    /// Results first published in the period.
    pub published: i64,
    /// Of which on time.
    pub published_on_time: i64,
    /// Of which late.
    pub published_late: i64,
    /// Of which the deadline is not final yet (a year on the way without a holiday schedule).
    pub deadline_unknown: i64,
}

/// The whole table.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Year.
    pub year: i32,
    /// Month, or `null` for the year.
    pub month: Option<u32>,
    /// First day of the period.
    pub from: NaiveDate,
    /// Last day of the period.
    pub to: NaiveDate,
    /// Per department, by code.
    pub departments: Vec<StatsRow>,
    /// The whole agency.
    pub agency: StatsRow,
}

fn empty_row(department: Option<String>, name: String) -> StatsRow {
    StatsRow {
        department,
        department_name: name,
        results: ResultCategory::ALL
            .iter()
            .map(|c| (c.code().to_owned(), 0))
            .collect(),
        ..StatsRow::default()
    }
}

/// The period a year and optional month cover.
pub fn period(year: i32, month: Option<u32>) -> Result<(NaiveDate, NaiveDate)> {
    let bad = || Error::invalid("month", "a month is 1 to 12");
    let (from, to) = match month {
        Some(m) => {
            let from = NaiveDate::from_ymd_opt(year, m, 1).ok_or_else(bad)?;
            let next = if m == 12 {
                NaiveDate::from_ymd_opt(year + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(year, m + 1, 1)
            }
            .ok_or_else(bad)?;
            (from, next.pred_opt().ok_or_else(bad)?)
        }
        None => (
            NaiveDate::from_ymd_opt(year, 1, 1)
                .ok_or_else(|| Error::invalid("year", "not a year"))?,
            NaiveDate::from_ymd_opt(year, 12, 31)
                .ok_or_else(|| Error::invalid("year", "not a year"))?,
        ),
    };
    Ok((from, to))
}

/// Computes the table for a period.
pub fn compute(conn: &Conn, calendar: &Calendar, year: i32, month: Option<u32>) -> Result<Stats> {
    let (from, to) = period(year, month)?;
    let in_period = |d: NaiveDate| d >= from && d <= to;
    let rules = rules::load(conn)?;
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    {
        let mut stmt = conn.prepare("SELECT code, name FROM departments ORDER BY code")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (code, name) = row?;
            names.insert(code, name);
        }
    }
    let mut rows: BTreeMap<String, StatsRow> = names
        .iter()
        .map(|(code, name)| (code.clone(), empty_row(Some(code.clone()), name.clone())))
        .collect();
    let mut agency = empty_row(None, "全部".into());

    // Draws in the period.
    let draws: Vec<(i64, String, i64)> = {
        let mut stmt = conn.prepare(
            "SELECT d.task_id, d.drawn_at, COALESCE(c.target_count, 0) FROM draws d
             LEFT JOIN draw_commitments c ON c.id = d.commitment_id WHERE d.kind = 'initial'",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?
    };
    for (task_id, drawn_at, in_scope) in draws {
        if !in_period(china_date_of(&drawn_at)?) {
            continue;
        }
        let task = plans::get_task_by_id(conn, task_id)?;
        let drawn: i64 = conn.query_row(
            "SELECT COUNT(*) FROM records WHERE task_id = ?1 AND withdrawn_at IS NULL",
            [task_id],
            |r| r.get(0),
        )?;
        for dept in &task.departments {
            if let Some(row) = rows.get_mut(dept) {
                row.tasks += 1;
                row.targets_in_scope += in_scope;
                row.drawn += drawn;
            }
        }
        agency.tasks += 1;
        agency.targets_in_scope += in_scope;
        agency.drawn += drawn;
    }

    // Results first published in the period.
    let published: Vec<(i64, String, String, Option<String>, String)> = {
        let mut stmt = conn.prepare(
            "SELECT pr.task_id, pr.first_published_on, v.content, r.inspection_ended_on, t.window_end
             FROM published_results pr
             JOIN result_versions v ON v.result_id = pr.id AND v.version = pr.current_version
             JOIN records r ON r.id = pr.record_id
             JOIN tasks t ON t.id = pr.task_id",
        )?;
        stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?
    };
    let date = |s: &str| -> Result<NaiveDate> {
        s.parse()
            .map_err(|e| Error::Internal(format!("stored date {s:?}: {e}")))
    };
    for (task_id, published_on, content, ended, window_end) in published {
        let published_on = date(&published_on)?;
        if !in_period(published_on) {
            continue;
        }
        let content: PublicContent = serde_json::from_str(&content)?;
        let task = plans::get_task_by_id(conn, task_id)?;
        let start = date(ended.as_deref().unwrap_or(&window_end))?;
        let timing = match calendar.add_working_days(start, rules.result_publication_days) {
            Ok(deadline) if published_on <= deadline => 0,
            Ok(_) => 1,
            Err(_) => 2,
        };
        let mut lines: Vec<&mut StatsRow> = Vec::new();
        let depts: Vec<String> = task.departments.clone();
        for (code, row) in rows.iter_mut() {
            if depts.contains(code) {
                lines.push(row);
            }
        }
        lines.push(&mut agency);
        for row in lines {
            let is_agency = row.department.is_none();
            let dept_name = row.department_name.clone();
            row.items_checked += content
                .items
                .iter()
                .filter(|i| i.checked && (is_agency || i.department == dept_name))
                .count() as i64;
            for c in &content.results {
                *row.results.entry(c.code.clone()).or_default() += 1;
            }
            row.published += 1;
            match timing {
                0 => row.published_on_time += 1,
                1 => row.published_late += 1,
                _ => row.deadline_unknown += 1,
            }
        }
    }
    let ratio = |row: &mut StatsRow| {
        row.ratio = (row.targets_in_scope > 0).then(|| {
            (row.drawn as f64 / row.targets_in_scope as f64 * 10_000.0).round() / 10_000.0
        });
    };
    let mut departments: Vec<StatsRow> = rows.into_values().collect();
    departments.iter_mut().for_each(ratio);
    ratio(&mut agency);
    Ok(Stats {
        year,
        month,
        from,
        to,
        departments,
        agency,
    })
}

/// The statistics as a spreadsheet table: one row per department, then the agency's total
/// (合计), with Chinese headers.
pub fn to_table(stats: &Stats) -> Table {
    let mut header: Vec<String> = [
        "部门代码",
        "部门",
        "抽查任务数",
        "检查对象数",
        "抽取数",
        "抽查比例",
        "检查事项数",
    ]
    .map(str::to_owned)
    .to_vec();
    header.extend(ResultCategory::ALL.iter().map(|c| c.label().to_owned()));
    header.extend(["公示数", "按时公示", "逾期公示", "期限无法计算"].map(str::to_owned));
    let rows = stats
        .departments
        .iter()
        .chain(std::iter::once(&stats.agency))
        .map(|row| {
            let mut line: Vec<Cell> = vec![
                row.department.as_deref().unwrap_or("合计").into(),
                row.department_name.as_str().into(),
                row.tasks.into(),
                row.targets_in_scope.into(),
                row.drawn.into(),
                row.ratio
                    .map(|r| format!("{:.2}%", r * 100.0))
                    .unwrap_or_default()
                    .into(),
                row.items_checked.into(),
            ];
            line.extend(
                ResultCategory::ALL
                    .iter()
                    .map(|c| row.results.get(c.code()).copied().unwrap_or(0).into()),
            );
            line.extend([
                row.published.into(),
                row.published_on_time.into(),
                row.published_late.into(),
                row.deadline_unknown.into(),
            ]);
            line
        })
        .collect();
    Table {
        sheet: "抽查统计".into(),
        header,
        rows,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    year: i32,
    month: Option<u32>,
    format: Option<String>,
}

async fn stats(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Response> {
    user.require(&[Role::Supervisor, Role::Admin, Role::Planner])?;
    let format = match q.format.as_deref() {
        None | Some("json") => None,
        Some("csv") => Some(Format::Csv),
        Some("xlsx") => Some(Format::Xlsx),
        Some(_) => return Err(Error::invalid("format", "json, csv or xlsx")),
    };
    let calendar = state.calendar();
    let (year, month) = (q.year, q.month);
    let stats = state
        .db
        .write(move |tx| {
            refresh_stale(tx)?;
            compute(tx, &calendar, year, month)
        })
        .await?;
    if let Some(format) = format {
        let stem = match month {
            Some(m) => format!("stats-{year}-{m:02}"),
            None => format!("stats-{year}"),
        };
        return to_table(&stats).download(format, &stem);
    }
    Ok(Json(json!(stats)).into_response())
}
