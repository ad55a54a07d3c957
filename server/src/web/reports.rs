//! Deadlines (due soon, overdue) and statistics (the monthly table and a
//! chart of results by category).

use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use chrono::Datelike;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use suiji_mobile_core::vocab::ResultCategory;

use super::WebResult;
use super::form::{FieldErrors, input, select};
use super::layout::{days_left, deadline_date, page, state_label, text};
use super::session::WebUser;
use crate::AppState;
use crate::auth::Role;
use crate::review::deadlines::{deadlines_table, open_deadlines, sort_deadlines};
use crate::review::stats::{Stats, StatsRow, compute, to_table};
use crate::review::{china_today, refresh_stale};
use crate::spreadsheet::Format;

/// Who reads deadlines and statistics.
pub const READERS: &[Role] = &[Role::Supervisor, Role::Admin, Role::Planner];

/// Routes of the report pages.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/deadlines", get(deadlines))
        .route("/deadlines/export", get(deadlines_export))
        .route("/stats", get(stats))
        .route("/stats/export", get(stats_export))
}

/// The spreadsheet form a console export asks for: `xlsx` (the default) or `csv`.
pub fn export_format(format: &str) -> Format {
    match format {
        "csv" => Format::Csv,
        _ => Format::Xlsx,
    }
}

/// Links to a page's export, as Excel and as CSV; `query` is the page's own query string.
pub fn export_links(path: &str, query: &str) -> Markup {
    let sep = if query.is_empty() { "" } else { "&" };
    html! {
        p.exports {
            "导出："
            a.button href=(format!("{path}?{query}{sep}format=xlsx")) download { "Excel（XLSX）" }
            " "
            a.button href=(format!("{path}?{query}{sep}format=csv")) download { "CSV" }
        }
    }
}

/// The open deadlines `user` may see, sorted into overdue and due within `within` working
/// days of `today`, as the deadlines page and its export show them.
async fn sorted_deadlines(
    state: &AppState,
    user: &WebUser,
    today: chrono::NaiveDate,
    within: i64,
) -> WebResult<Value> {
    let calendar = state.calendar();
    let auth = user.auth.clone();
    let all = state
        .db
        .write(move |tx| {
            refresh_stale(tx)?;
            open_deadlines(tx, &auth, &calendar, today)
        })
        .await?;
    Ok(sort_deadlines(all, today, within))
}

#[derive(Debug, Default, Deserialize)]
struct ExportParams {
    #[serde(default)]
    within: String,
    #[serde(default)]
    year: String,
    #[serde(default)]
    month: String,
    #[serde(default)]
    format: String,
}

/// `GET /deadlines/export`: the deadlines page's lists as a spreadsheet.
async fn deadlines_export(
    State(state): State<AppState>,
    user: WebUser,
    Query(p): Query<ExportParams>,
) -> WebResult<Response> {
    user.require(READERS)?;
    let within = p
        .within
        .parse::<i64>()
        .ok()
        .filter(|n| (0..=365).contains(n))
        .unwrap_or(5);
    let today = china_today();
    let sorted = sorted_deadlines(&state, &user, today, within).await?;
    Ok(deadlines_table(&sorted)
        .download(export_format(&p.format), &format!("deadlines-{today}"))?)
}

/// `GET /stats/export`: the statistics page's table by department as a spreadsheet.
async fn stats_export(
    State(state): State<AppState>,
    user: WebUser,
    Query(p): Query<ExportParams>,
) -> WebResult<Response> {
    user.require(READERS)?;
    let year = p
        .year
        .parse::<i32>()
        .ok()
        .filter(|y| (2000..=2100).contains(y))
        .unwrap_or_else(|| china_today().year());
    let month = p.month.parse::<u32>().ok().filter(|m| (1..=12).contains(m));
    let calendar = state.calendar();
    let stats = state
        .db
        .write(move |tx| {
            refresh_stale(tx)?;
            compute(tx, &calendar, year, month)
        })
        .await?;
    let stem = match month {
        Some(m) => format!("stats-{year}-{m:02}"),
        None => format!("stats-{year}"),
    };
    Ok(to_table(&stats).download(export_format(&p.format), &stem)?)
}

#[derive(Debug, Default, Deserialize)]
struct DeadlineParams {
    #[serde(default)]
    within: String,
}

async fn deadlines(
    State(state): State<AppState>,
    user: WebUser,
    Query(p): Query<DeadlineParams>,
) -> WebResult<Markup> {
    user.require(READERS)?;
    let mut errors = FieldErrors::new();
    let within = match p.within.as_str() {
        "" => 5,
        s => match s.parse::<i64>() {
            Ok(n) if (0..=365).contains(&n) => n,
            _ => {
                errors.add("within", "请输入 0 到 365 之间的工作日数。");
                5
            }
        },
    };
    let today = china_today();
    let report = sorted_deadlines(&state, &user, today, within).await?;
    let table = |id: &str, entries: &Value| -> Markup {
        let list = entries.as_array().cloned().unwrap_or_default();
        html! {
            div.table-wrap { table id=(id) {
                thead { tr { th { "事项" } th { "对象 / 任务" } th { "起算" } th { "期限" } th { "剩余" } } }
                tbody {
                    @for e in &list {
                        tr {
                            td { (kind_label(e)) }
                            td {
                                @if let Some(record) = e["record_id"].as_str() {
                                    @if user.has_any(&[Role::Supervisor, Role::Admin]) && e["may_open"] == Value::Bool(true) {
                                        a href=(format!("/records/{record}")) { (text(&e["target_name"])) }
                                    } @else { (text(&e["target_name"])) }
                                    br; span.muted { (text(&e["task_number"])) " · " (state_label(e["state"].as_str().unwrap_or(""))) }
                                } @else if let Some(draw) = e["draw_id"].as_i64() {
                                    @if user.has_any(super::draw::DRAWERS) {
                                        a href=(format!("/draws/{draw}")) { (text(&e["task_number"])) " " (text(&e["task_name"])) }
                                    } @else { (text(&e["task_number"])) " " (text(&e["task_name"])) }
                                } @else {
                                    (text(&e["target_name"]))
                                }
                            }
                            td { (text(&e["counted_from"])) }
                            td { (deadline_date(e)) }
                            td { (days_left(e)) }
                        }
                    }
                    @if list.is_empty() { tr { td colspan="5" { "无。" } } }
                }
            } }
        }
    };
    Ok(page(
        "公示期限",
        Some(&user),
        html! {
            h1 { "公示期限" }
            p.muted { "按工作日计算（含调休），截至 " (today) "。标“暂定”的期限经过尚未公布节假日安排的年度，暂按周一至周五计算，管理员载入该年度安排后自动更正。" }
            form.filters.box method="get" action="/deadlines" {
                (input("“即将到期”指剩余工作日不超过", "within", "number", &within.to_string(), &errors))
                div.field { button.primary type="submit" { "刷新" } }
            }
            (export_links("/deadlines/export", &format!("within={within}")))
            h2 { "已超期（" (report["overdue"].as_array().map_or(0, Vec::len)) "）" }
            (table("overdue", &report["overdue"]))
            h2 { "即将到期（" (report["due_soon"].as_array().map_or(0, Vec::len)) "）" }
            (table("due-soon", &report["due_soon"]))
        },
    ))
}

fn kind_label(e: &Value) -> &'static str {
    match e["kind"].as_str() {
        Some("record_result") => "检查结果公示",
        Some("drawn_list") => "抽查名单公示",
        Some("abnormal_candidate") => "列入经营异常名录",
        _ => "其他",
    }
}

#[derive(Debug, Default, Deserialize)]
struct StatsParams {
    #[serde(default)]
    year: String,
    #[serde(default)]
    month: String,
}

async fn stats(
    State(state): State<AppState>,
    user: WebUser,
    Query(p): Query<StatsParams>,
) -> WebResult<Markup> {
    user.require(READERS)?;
    let today = china_today();
    let mut errors = FieldErrors::new();
    let year = match p.year.parse::<i32>() {
        Ok(y) if (2000..=2100).contains(&y) => y,
        Ok(_) | Err(_) if !p.year.is_empty() => {
            errors.add("year", "请输入 2000 到 2100 之间的年度。");
            today.year()
        }
        _ => today.year(),
    };
    let month = match p.month.parse::<u32>() {
        Ok(m) if (1..=12).contains(&m) => Some(m),
        _ if p.month.is_empty() => None,
        _ => {
            errors.add("month", "月份为 1 到 12。");
            None
        }
    };
    let calendar = state.calendar();
    let (period, months) = state
        .db
        .write(move |tx| {
            refresh_stale(tx)?;
            let period = compute(tx, &calendar, year, month)?;
            let months = (1..=12)
                .map(|m| compute(tx, &calendar, year, Some(m)))
                .collect::<crate::Result<Vec<Stats>>>()?;
            Ok((period, months))
        })
        .await?;
    let mut month_options = vec![(String::new(), "全年".to_owned())];
    month_options.extend((1..=12).map(|m| (m.to_string(), format!("{m} 月"))));
    let title = match month {
        Some(m) => format!("{year} 年 {m} 月"),
        None => format!("{year} 年"),
    };
    Ok(page(
        "统计",
        Some(&user),
        html! {
            h1 { "抽查统计" }
            form.filters.box method="get" action="/stats" {
                (input("年度", "year", "number", &year.to_string(), &errors))
                (select("月份", "month", &month_options, &month.map(|m| m.to_string()).unwrap_or_default(), &errors))
                div.field { button.primary type="submit" { "统计" } }
            }
            (export_links("/stats/export", &match month {
                Some(m) => format!("year={year}&month={m}"),
                None => format!("year={year}"),
            }))
            h2 { (title) "：按部门" }
            (stats_table(&period))
            h2 { (title) "：检查结果分类" }
            (result_chart(&period.agency))
            h2 { (year) " 年逐月" }
            div.table-wrap { table #monthly {
                thead { tr { th { "月份" } th.num { "任务" } th.num { "抽取" } th.num { "公示" } th.num { "按时" } th.num { "超期" } } }
                tbody { @for s in &months {
                    tr {
                        td { @if let Some(m) = s.month { a href=(format!("/stats?year={year}&month={m}")) { (m) " 月" } } }
                        td.num { (s.agency.tasks) }
                        td.num { (s.agency.drawn) }
                        td.num { (s.agency.published) }
                        td.num { (s.agency.published_on_time) }
                        td.num { (s.agency.published_late) }
                    }
                } }
            } }
        },
    ))
}

fn stats_table(stats: &Stats) -> Markup {
    html! {
        div.table-wrap { table #stats {
            thead { tr { th { "部门" } th.num { "任务" } th.num { "检查对象" } th.num { "抽取" } th.num { "比例" }
                th.num { "检查事项" } th.num { "公示" } th.num { "按时" } th.num { "超期" } } }
            tbody {
                @for row in stats.departments.iter().chain(std::iter::once(&stats.agency)) {
                    tr {
                        td { @if row.department.is_none() { strong { (row.department_name) } } @else { (row.department_name) } }
                        td.num { (row.tasks) }
                        td.num { (row.targets_in_scope) }
                        td.num { (row.drawn) }
                        td.num { (row.ratio.map(|r| format!("{:.1}%", r * 100.0)).unwrap_or_else(|| "—".into())) }
                        td.num { (row.items_checked) }
                        td.num { (row.published) }
                        td.num { (row.published_on_time) }
                        td.num { (row.published_late) }
                    }
                }
            }
        } }
    }
}

/// Results by category as CSS bars (no script, readable on a phone).
fn result_chart(row: &StatsRow) -> Markup {
    let max = row.results.values().copied().max().unwrap_or(0).max(1);
    html! {
        div.chart #result-chart role="img" aria-label="检查结果分类" {
            @for category in ResultCategory::ALL {
                @let n = row.results.get(category.code()).copied().unwrap_or(0);
                span.label { (category.label()) }
                div { div.bar style=(format!("width: {}%", n * 100 / max)) {} }
                span.num { (n) }
            }
        }
    }
}
