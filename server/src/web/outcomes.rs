//! Outcomes (处置): 经营异常名录 candidates to decide, with their deadlines, and
//! the follow-ups ordered by published results.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::form::{CsrfForm, FieldErrors, FormData, csrf_field};
use super::layout::{days_left, deadline_date, page, text};
use super::session::WebUser;
use super::{WebResult, see_other};
use crate::AppState;
use crate::review::candidates::{CANDIDATE_DECIDERS, DecisionInput, Verdict, decide_candidate};
use crate::review::china_today;
use crate::review::follow_ups::{self, FollowUp, RECHECK_STARTERS, RecheckInput, start_recheck};
use crate::review::publication::list_abnormal_candidates;

/// Routes of the outcome pages.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/outcomes", get(outcomes))
        .route("/abnormal-candidates/{id}/decision", post(decide))
        .route("/follow-ups/{id}/recheck", post(recheck))
}

#[derive(Debug, Default, Deserialize)]
struct OutcomeParams {
    done: Option<String>,
}

async fn outcomes(
    State(state): State<AppState>,
    user: WebUser,
    Query(p): Query<OutcomeParams>,
) -> WebResult<Markup> {
    let notice = match p.done.as_deref() {
        Some("list") => Some("已列入经营异常名录。"),
        Some("not_list") => Some("已决定不予列入。"),
        Some("remove") => Some("已移出经营异常名录。"),
        _ => None,
    };
    outcomes_page(&state, user, notice, None, None).await
}

/// The page, with `failed` the candidate whose decision form was refused, with its input
/// and errors.
async fn outcomes_page(
    state: &AppState,
    user: WebUser,
    notice: Option<&str>,
    failed: Option<(i64, FormData, FieldErrors)>,
    recheck_failed: Option<(i64, String)>,
) -> WebResult<Markup> {
    user.require(super::reports::READERS)?;
    let calendar = state.calendar();
    let today = china_today();
    let (candidates, follow_ups) = state
        .db
        .read(move |c| {
            Ok((
                list_abnormal_candidates(c, None, &calendar, today)?,
                follow_ups::list(
                    c,
                    &follow_ups::Filter {
                        unfinished: true,
                        ..Default::default()
                    },
                    today,
                )?,
            ))
        })
        .await?;
    let may_decide = user.has_any(CANDIDATE_DECIDERS);
    let may_recheck = user.has_any(RECHECK_STARTERS);
    let open: Vec<&Value> = candidates
        .iter()
        .filter(|c| matches!(c["status"].as_str(), Some("pending" | "listed")))
        .collect();
    let decided: Vec<&Value> = candidates
        .iter()
        .filter(|c| matches!(c["status"].as_str(), Some("not_listed" | "removed")))
        .collect();
    Ok(page(
        "处置",
        Some(&user),
        html! {
            h1 { "处置" }
            @if let Some(notice) = notice { p.notice #notice { (notice) } }
            h2 { "经营异常名录候选" }
            p.muted { "抽查结果为“通过登记的住所（经营场所）无法联系”或“公示信息隐瞒真实情况、弄虚作假”的，应在核实后规定的工作日内作出是否列入经营异常名录的决定；当事人改正后可移出。" }
            @if open.is_empty() { p #no-candidates { "没有待决定或已列入的候选。" } }
            @for c in &open {
                (candidate_card(&user, c, may_decide, failed.as_ref()))
            }
            @if !decided.is_empty() {
                details {
                    summary { "已决定不予列入或已移出（" (decided.len()) "）" }
                    ul { @for c in &decided {
                        li { (text(&c["target_name"])) "：" (status_label(c["status"].as_str().unwrap_or(""))) }
                    } }
                }
            }
            h2 { "后续处置（未办结）" }
            p.muted { "责令改正的，期限届满后发起复查：原检查组（回避或离岗的除外）对同一对象、同一事项复查，复查结果公示后本项办结（已改正、未改正或已终结）。" }
            @if let Some((id, message)) = &recheck_failed { p.error #recheck-error data-follow-up=(id) { (message) } }
            @if follow_ups.is_empty() { p #no-follow-ups { "没有未办结的后续处置。" } }
            @else {
                div.table-wrap { table #follow-ups {
                    thead { tr { th { "检查对象" } th { "统一社会信用代码" } th { "措施" } th { "期限" } th { "说明" } th { "记录" } th { "复查" } } }
                    tbody { @for f in &follow_ups {
                        (follow_up_row(&user, f, may_recheck))
                    } }
                } }
            }
        },
    ))
}

fn follow_up_row(user: &WebUser, f: &FollowUp, may_recheck: bool) -> Markup {
    html! {
        tr.overdue[f.overdue] id=(format!("follow-up-{}", f.id)) {
            td { a href=(format!("/targets/{}", f.target_id)) { (f.target_name) } }
            td { code { (f.uscc) } }
            td { (f.measure_label.unwrap_or(&f.measure)) }
            td {
                @if let Some(d) = f.deadline { (d.to_string()) } @else { "—" }
                @if f.overdue { " " span.badge.warn { "已到期" } }
            }
            td { (f.detail.as_deref().unwrap_or("")) }
            td { a href=(format!("/records/{}", f.record_id)) { (f.record_id) } }
            td {
                @if let Some(k) = &f.recheck {
                    span.badge { (f.status_label) } " "
                    a.recheck-task href=(format!("/tasks/{}", k.task_id)) { (k.task_number) }
                } @else if f.recheck_due && may_recheck {
                    form.recheck method="post" action=(format!("/follow-ups/{}/recheck", f.id)) {
                        (csrf_field(user))
                        button.primary type="submit" { "发起复查" }
                    }
                } @else if f.recheck_due {
                    "待复查"
                } @else { "—" }
            }
        }
    }
}

fn status_label(status: &str) -> &'static str {
    match status {
        "pending" => "待决定",
        "listed" => "已列入",
        "not_listed" => "不予列入",
        "removed" => "已移出",
        _ => "—",
    }
}

fn candidate_card(
    user: &WebUser,
    c: &Value,
    may_decide: bool,
    failed: Option<&(i64, FormData, FieldErrors)>,
) -> Markup {
    let id = c["id"].as_i64().unwrap_or_default();
    let status = c["status"].as_str().unwrap_or("");
    let overdue = status == "pending" && c["overdue"] == Value::Bool(true);
    let (values, errors) = match failed {
        Some((failed_id, values, errors)) if *failed_id == id => (values.clone(), errors.clone()),
        _ => (FormData::default(), FieldErrors::new()),
    };
    let choices: &[Verdict] = match status {
        "pending" => &[Verdict::List, Verdict::NotList],
        _ => &[Verdict::Remove],
    };
    html! {
        section.box.candidate.overdue[overdue] id=(format!("candidate-{id}")) {
            h3 { a href=(format!("/targets/{}", text(&c["target_id"]))) { (text(&c["target_name"])) } " " span.badge { (status_label(status)) }
                @if overdue { " " span.badge.warn { "已超期" } } }
            dl.facts {
                dt { "统一社会信用代码" } dd { code { (text(&c["uscc"])) } }
                dt { "抽查结果" } dd { (text(&c["category_label"])) }
                dt { "核实日期" } dd { (text(&c["verified_on"])) }
                @if status == "pending" { dt { "决定期限" } dd { (deadline_date(c)) " " (days_left(c)) } }
                dt { "检查记录" } dd { a href=(format!("/records/{}", text(&c["record_id"]))) { (text(&c["record_id"])) } }
            }
            @if may_decide {
                form.decision method="post" action=(format!("/abnormal-candidates/{id}/decision")) {
                    (csrf_field(user))
                    (errors.show("form"))
                    fieldset {
                        legend { "决定" }
                        @for (i, choice) in choices.iter().enumerate() {
                            label.choice {
                                input type="radio" name="decision" value=(choice.code())
                                    checked[values.get("decision") == choice.code() || (values.get("decision").is_empty() && i == 0)];
                                " " (choice.label())
                            }
                        }
                    }
                    div.field.invalid[errors.get("reason").is_some()] {
                        label for=(format!("reason-{id}")) { "理由" }
                        textarea id=(format!("reason-{id}")) name="reason" rows="2" { (values.get("reason")) }
                        (errors.show("reason"))
                    }
                    button.primary type="submit" { "提交决定" }
                }
            }
        }
    }
}

/// `POST /abnormal-candidates/{id}/decision` from the page's form.
async fn decide(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    post: CsrfForm,
) -> WebResult<Response> {
    let CsrfForm { user, form } = post;
    user.require(CANDIDATE_DECIDERS)?;
    let mut errors = FieldErrors::new();
    let decision = match form.get("decision") {
        "list" => Some(Verdict::List),
        "not_list" => Some(Verdict::NotList),
        "remove" => Some(Verdict::Remove),
        _ => None,
    };
    match decision {
        None => errors.add("form", "请选择一项决定。"),
        Some(_) if form.get("reason").trim().is_empty() => {
            errors.add("reason", "请写明理由。");
        }
        Some(decision) => {
            let input = DecisionInput {
                decision,
                reason: form.get("reason").to_owned(),
            };
            let (auth, calendar) = (user.auth.clone(), state.calendar());
            match state
                .db
                .write(move |tx| decide_candidate(tx, &auth, id, &input, &calendar, china_today()))
                .await
            {
                Ok(_) => {
                    return Ok(see_other(&format!(
                        "/outcomes?done={}#candidate-{id}",
                        decision.code()
                    )));
                }
                Err(e) => errors.absorb(e, &["reason"])?,
            }
        }
    }
    let body = outcomes_page(&state, user, None, Some((id, form, errors)), None).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}

/// `POST /follow-ups/{id}/recheck` from the page's button: starts the 复查 with
/// the original group and opens its task.
async fn recheck(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    post: CsrfForm,
) -> WebResult<Response> {
    let CsrfForm { user, .. } = post;
    user.require(RECHECK_STARTERS)?;
    let (auth, calendar) = (user.auth.clone(), state.calendar());
    let result = state
        .db
        .write(move |tx| {
            start_recheck(
                tx,
                &auth,
                id,
                &RecheckInput::default(),
                &calendar,
                china_today(),
            )
        })
        .await;
    let mut errors = FieldErrors::new();
    match result {
        Ok(started) => {
            return Ok(see_other(&format!(
                "/tasks/{}?done=recheck",
                started.task_id
            )));
        }
        Err(e) => errors.absorb(e, &[])?,
    }
    let message = errors.get("form").unwrap_or_default().to_owned();
    let body = outcomes_page(&state, user, None, None, Some((id, message))).await?;
    Ok((StatusCode::CONFLICT, body).into_response())
}
