//! One target's page (检查对象): its register entry and what outcomes did to
//! it: its place on the 经营异常名录 with every decision, the changes of its
//! risk class, and its follow-ups with their 复查.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use maud::{Markup, html};

use super::WebResult;
use super::layout::{page, target_type_label, time};
use super::session::WebUser;
use crate::AppState;
use crate::registry::targets;
use crate::review::china_today;
use crate::review::{candidates, follow_ups, risk};

/// Routes of the target page.
pub fn routes() -> Router<AppState> {
    Router::new().route("/targets/{id}", get(target_page))
}

fn rule_label(rule: Option<&str>, reason: &str) -> &'static str {
    match (rule, reason) {
        (Some("problems"), _) => "发现问题，风险等级上调一级",
        (Some("clean_run"), _) => "连续未发现问题，风险等级下调一级",
        (Some("serious"), _) => "列入严重违法失信名单，调为 D 类",
        (_, "registry") => "名录库调整",
        _ => "—",
    }
}

fn reason_label(reason: &str) -> &'static str {
    match reason {
        "published" => "结果公示",
        "corrected" => "结果更正",
        "registry" => "名录库",
        _ => "—",
    }
}

async fn target_page(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<i64>,
) -> WebResult<Markup> {
    user.require(super::reports::READERS)?;
    let today = china_today();
    let (target, listing, decisions, history, follow_ups) = state
        .db
        .read(move |c| {
            let filter = follow_ups::Filter {
                target_id: Some(id),
                ..Default::default()
            };
            Ok((
                targets::get(c, id)?,
                candidates::target_listing(c, id)?,
                candidates::decisions_of_target(c, id)?,
                risk::history(c, id)?,
                follow_ups::list(c, &filter, today)?,
            ))
        })
        .await?;
    let t = &target.input;
    Ok(page(
        &t.name,
        Some(&user),
        html! {
            p.muted { a href="/targets" { "检查对象名录库" } " › " (t.name) }
            h1 { (t.name) }
            dl.facts #target-facts {
                dt { "统一社会信用代码" } dd { code { (t.uscc) } }
                dt { "类型" } dd { (target_type_label(&t.target_type)) }
                dt { "行业" } dd { (t.industry) }
                dt { "区域" } dd { (t.region) }
                dt { "地址" } dd { (t.address) }
                dt { "登记状态" } dd { (t.reg_status) }
                dt { "风险等级" } dd #risk-class { (t.risk_class) " 类" }
                dt { "名单" } dd {
                    @if t.flag_abnormal { span.badge.warn { "经营异常名录" } " " }
                    @if t.flag_serious { span.badge.danger { "严重违法失信" } " " }
                    @if !t.flag_abnormal && !t.flag_serious { "—" }
                }
            }
            h2 { "经营异常名录" }
            p #abnormal-listing {
                @if listing.flag_abnormal {
                    "已列入"
                    @if let Some(on) = listing.listed_on { "（" (on.to_string()) " 起" }
                    @if let Some(record) = &listing.source_record {
                        "，依据检查记录 " a href=(format!("/records/{record}")) { (record) }
                    }
                    @if listing.listed_on.is_some() { "）" }
                    "。"
                } @else { "未列入。" }
            }
            @if !decisions.is_empty() {
                div.table-wrap { table #abnormal-decisions {
                    thead { tr { th { "日期" } th { "决定" } th { "理由" } th { "决定人" } } }
                    tbody { @for d in &decisions {
                        tr {
                            td { (d.decided_on.to_string()) @if d.late { " " span.badge.warn { "超期作出" } } }
                            td { (d.decision_label) }
                            td { (d.reason) }
                            td { (d.decided_by) }
                        }
                    } }
                } }
            }
            h2 { "风险等级变化" }
            @if history.is_empty() { p #no-class-changes { "尚无变化。" } }
            @else {
                div.table-wrap { table #risk-history {
                    thead { tr { th { "时间" } th { "变化" } th { "原因" } th { "依据" } } }
                    tbody { @for h in &history {
                        tr {
                            td { (time(&h.at)) }
                            td { (h.from) " → " (h.to) }
                            td { (reason_label(&h.reason)) "：" (rule_label(h.rule.as_deref(), &h.reason)) }
                            td { @if let Some(record) = &h.record_id { a href=(format!("/records/{record}")) { (record) } } @else { "—" } }
                        }
                    } }
                } }
            }
            h2 { "后续处置" }
            @if follow_ups.is_empty() { p #no-follow-ups { "没有后续处置。" } }
            @else {
                div.table-wrap { table #target-follow-ups {
                    thead { tr { th { "措施" } th { "期限" } th { "状态" } th { "记录" } th { "复查" } } }
                    tbody { @for f in &follow_ups {
                        tr {
                            td { (f.measure_label.unwrap_or(&f.measure)) }
                            td { @if let Some(d) = f.deadline { (d.to_string()) } @else { "—" }
                                @if f.overdue { " " span.badge.warn { "已到期" } } }
                            td { (f.status_label) }
                            td { a href=(format!("/records/{}", f.record_id)) { (f.record_id) } }
                            td { @if let Some(k) = &f.recheck {
                                    a href=(format!("/tasks/{}", k.task_id)) { (k.task_number) }
                                } @else if f.recheck_due { a href="/outcomes" { "待复查" } } @else { "—" } }
                        }
                    } }
                } }
            }
        },
    ))
}
