//! The supervisor's pages: the review queue, the record view with its items,
//! findings, notes, photos, signatures and conflicts, and the decisions
//! (return with a comment, approve, publish, correct a published result).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use suiji_mobile_core::vocab::ResultCategory;

use super::form::{CsrfForm, FieldErrors, FormData, csrf_field, input};
use super::layout::{days_left, deadline_date, page, state_label, text, time};
use super::session::WebUser;
use super::{WebError, WebResult, see_other};
use crate::AppState;
use crate::auth::Role;
use crate::documents::{self, Kind};
use crate::error::Error;
use crate::review::publication::{
    Correction, ItemCorrection, correct_result, public_entry, publish_record, result_of_record,
};
use crate::review::records::{
    Decision, QueueQuery, REVIEW_READERS, decide, queue_rows, record_view,
};
use crate::review::{china_today, refresh_stale};

/// Who decides on records.
const DECIDERS: &[Role] = &[Role::Supervisor];

/// Routes of the review pages.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/review", get(queue))
        .route("/review/export", get(queue_export))
        .route("/records/{id}", get(record))
        .route("/records/{id}/return", post(return_record))
        .route("/records/{id}/approve", post(approve_record))
        .route("/records/{id}/publish", post(publish))
        .route("/records/{id}/correct", post(correct))
        .route("/photos/{hash}", get(photo))
        .route("/records/{id}/{document}", get(document))
}

/// `GET /records/{id}/notice.pdf`, `record.pdf` or `rectification.pdf`: a record's
/// documents (the same as the API's), for whoever may see the whole record.
async fn document(
    State(state): State<AppState>,
    user: WebUser,
    headers: axum::http::HeaderMap,
    Path((id, document)): Path<(String, String)>,
) -> WebResult<Response> {
    let Some(kind) = Kind::ALL
        .into_iter()
        .find(|k| document == format!("{}.pdf", k.stem()))
    else {
        return Err(WebError::for_user(
            Error::NotFound(format!("document {document}")),
            &user,
        ));
    };
    let base = documents::public_base(&state, &headers);
    let bytes = documents::document(&state, &user.auth, &id, kind, base)
        .await
        .map_err(|e| WebError::for_user(e, &user))?;
    Ok(documents::pdf_response(kind, &id, bytes))
}

#[derive(Debug, Default, Deserialize)]
struct QueueParams {
    #[serde(default)]
    status: String,
}

#[derive(Debug, Default, Deserialize)]
struct QueueExportParams {
    #[serde(default)]
    status: String,
    #[serde(default)]
    format: String,
}

/// `GET /review/export`: the review queue of one status as a spreadsheet, every line.
async fn queue_export(
    State(state): State<AppState>,
    user: WebUser,
    Query(p): Query<QueueExportParams>,
) -> WebResult<Response> {
    user.require(REVIEW_READERS)?;
    let today = china_today();
    let (status, rows) = queue_lines(&state, &user, &p.status, today).await?;
    Ok(crate::review::records::queue_table(&rows).download(
        super::reports::export_format(&p.format),
        &format!("review-queue-{status}-{today}"),
    )?)
}

/// The review queue lines of status `wanted` (one of [`STATUSES`], else `submitted`) that
/// `user` may see, counted as of `today`; with the status used.
async fn queue_lines(
    state: &AppState,
    user: &WebUser,
    wanted: &str,
    today: chrono::NaiveDate,
) -> WebResult<(&'static str, Vec<Value>)> {
    let status = STATUSES
        .iter()
        .find(|(code, _)| *code == wanted)
        .map(|(code, _)| *code)
        .unwrap_or("submitted");
    let q = QueueQuery {
        status: Some(status.to_owned()),
        ..QueueQuery::default()
    };
    let calendar = state.calendar();
    let auth = user.auth.clone();
    let rows = state
        .db
        .write(move |tx| {
            refresh_stale(tx)?;
            queue_rows(tx, &auth, &q, &calendar, today)
        })
        .await?;
    Ok((status, rows))
}

const STATUSES: &[(&str, &str)] = &[
    ("submitted", "待审核"),
    ("returned", "已退回"),
    ("approved", "已审核待公示"),
    ("published", "已公示"),
    ("all", "全部"),
];

async fn queue(
    State(state): State<AppState>,
    user: WebUser,
    Query(p): Query<QueueParams>,
) -> WebResult<Markup> {
    user.require(REVIEW_READERS)?;
    let (status, rows) = queue_lines(&state, &user, &p.status, china_today()).await?;
    Ok(page(
        "审核队列",
        Some(&user),
        html! {
            h1 { "审核队列" }
            (super::reports::export_links("/review/export", &format!("status={status}")))
            nav.row {
                @for (code, label) in STATUSES {
                    @if *code == status { strong { (label) } } @else { a href=(format!("/review?status={code}")) { (label) } }
                }
            }
            div.table-wrap { table #queue {
                thead { tr { th { "检查对象" } th { "任务" } th { "状态" } th.num { "轮次" } th { "提交时间" } th { "公示期限" } th { "剩余" } th { "提示" } } }
                tbody {
                    @for r in &rows {
                        tr.conflicted[r["has_conflicts"] == Value::Bool(true)] {
                            td { a href=(format!("/records/{}", text(&r["id"]))) { (text(&r["target_name"])) } br; code { (text(&r["uscc"])) } }
                            td { (text(&r["task_number"])) br; span.muted { (text(&r["task_name"])) } }
                            td { (state_label(r["state"].as_str().unwrap_or(""))) }
                            td.num { (text(&r["round"])) }
                            td { (r["submitted_at"].as_str().map(time).unwrap_or_else(|| "—".into())) }
                            td { (deadline_date(r)) }
                            td { (days_left(r)) }
                            td {
                                @if r["has_conflicts"] == Value::Bool(true) { span.badge.warn { "有冲突" } " " }
                                @if r["you_inspected"] == Value::Bool(true) { span.badge.info { "本人参与检查" } }
                            }
                        }
                    }
                    @if rows.is_empty() { tr { td colspan="8" { "没有记录。" } } }
                }
            } }
        },
    ))
}

#[derive(Debug, Default, Deserialize)]
struct RecordParams {
    done: Option<String>,
}

async fn record(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Query(p): Query<RecordParams>,
) -> WebResult<Markup> {
    user.require(REVIEW_READERS)?;
    let notice = match p.done.as_deref() {
        Some("returned") => Some("已退回检查人员修改，他们的手机下次同步时会收到退回意见。"),
        Some("approved") => Some("已审核通过。"),
        Some("published") => Some("已公示：结果已出现在公开的抽查结果中。"),
        Some("corrected") => Some("已更正：公开的抽查结果显示新版本，原版本保留并标注为已更正。"),
        _ => None,
    };
    record_page(
        &state,
        user,
        &id,
        notice,
        FormData::default(),
        FieldErrors::new(),
    )
    .await
}

async fn record_page(
    state: &AppState,
    user: WebUser,
    id: &str,
    notice: Option<&str>,
    values: FormData,
    errors: FieldErrors,
) -> WebResult<Markup> {
    let calendar = state.calendar();
    let (auth, record_id) = (user.auth.clone(), id.to_owned());
    let (v, published) = state
        .db
        .write(move |tx| {
            refresh_stale(tx)?;
            let v = record_view(tx, &auth, &record_id, &calendar, china_today())?;
            let published = match result_of_record(tx, &record_id)? {
                Some(result_id) => Some(public_entry(tx, result_id)?),
                None => None,
            };
            Ok((v, published))
        })
        .await?;
    let review_state = v["review"]["state"].as_str().unwrap_or("");
    let conflicts = v["conflicts"].as_array().cloned().unwrap_or_default();
    let conflicted_items: Vec<&str> = conflicts
        .iter()
        .filter_map(|c| c["item"].as_str())
        .collect();
    let publication = &v["publication"];
    let you_inspected = v["you_inspected"] == Value::Bool(true);
    let inspectors = v["inspectors"].as_array().cloned().unwrap_or_default();
    let name_of = |inspector: &Value| -> String {
        inspectors
            .iter()
            .find(|i| i["inspector_id"] == *inspector)
            .map(|i| text(&i["name"]))
            .unwrap_or_else(|| text(inspector))
    };
    Ok(page(
        "检查记录",
        Some(&user),
        html! {
            p.muted { a href="/review" { "审核队列" } " › " (text(&v["target"]["name"])) }
            h1 { (text(&v["target"]["name"])) }
            @if let Some(notice) = notice { p.notice #notice { (notice) } }
            @if you_inspected { p.alert { "您曾参与该记录的检查，按职责分离原则不能审核或公示它。" } }
            section.box #deadline {
                dl.facts {
                    dt { "状态" } dd { strong #state { (state_label(review_state)) } " · 第 " (text(&v["review"]["round"])) " 轮" }
                    dt { "统一社会信用代码" } dd { code { (text(&v["target"]["uscc"])) } }
                    dt { "任务" } dd { (text(&v["task"]["number"])) " " (text(&v["task"]["name"])) }
                    dt { "检查组" } dd { (inspectors.iter().map(|i| text(&i["name"])).collect::<Vec<_>>().join("、")) }
                    dt { "检查期间" } dd { (text(&v["window_start"])) " 至 " (text(&v["window_end"])) }
                    dt { "公示期限" } dd {
                        (deadline_date(publication)) " " (days_left(publication))
                        br;
                        span.muted { "自" @if publication["counted_from_kind"] == "inspection_ended" { "检查完成日 " } @else { "检查期间结束日 " }
                            (text(&publication["counted_from"])) " 起 " (text(&publication["working_days"])) " 个工作日" }
                    }
                }
            }
            p #documents { "打印文书："
                a href=(format!("/records/{id}/notice.pdf")) { "检查通知书" } " · "
                a #record-pdf href=(format!("/records/{id}/record.pdf")) { "检查记录表" }
                @if v["follow_up"]["measure"]["code"] == "order_rectification" {
                    " · " a href=(format!("/records/{id}/rectification.pdf")) { "责令改正通知书" }
                }
                span.muted { "（PDF，页脚印有记录编号和摘要，可在" a href="/public/check" { "文书核对" } "页核对）" }
            }
            @if !conflicts.is_empty() {
                section.conflict #conflicts {
                    h2 { "⚠ 冲突：两位检查人员填写了不同内容" }
                    p { "以下字段在两部手机上被同时改成了不同的值，需检查人员协商后重新填写。建议退回。" }
                    ul { @for c in &conflicts {
                        li { code { (text(&c["field"])) } "："
                            (c["values"].as_array().map(|vals| vals.iter().map(|x| format!("{}（{}）", text(&x["value"]), name_of(&x["inspector_id"]))).collect::<Vec<_>>().join(" ／ ")).unwrap_or_default())
                        }
                    } }
                }
            }
            h2 { "检查事项与发现" }
            div.table-wrap { table #items {
                thead { tr { th { "事项" } th { "法律依据" } th { "是否检查" } th { "检查方式" } th { "发现的问题" } th { "处理" } } }
                tbody { @for item in v["items"].as_array().into_iter().flatten() {
                    tr.conflicted[conflicted_items.contains(&item["code"].as_str().unwrap_or(""))] {
                        td { (text(&item["name"])) br; code { (text(&item["code"])) } }
                        td { (text(&item["legal_basis"])) }
                        td { (text(&item["checked"])) }
                        td { (item["methods"].as_array().map(|m| m.iter().map(|x| text(&x["label"])).collect::<Vec<_>>().join("、")).unwrap_or_default()) }
                        td { (text(&item["finding"])) }
                        td { (text(&item["disposition"])) }
                    }
                } }
            } }
            section.box {
                dl.facts {
                    dt { "检查结果" } dd #results { (v["results"].as_array().map(|r| r.iter().map(|x| text(&x["label"])).collect::<Vec<_>>().join("；")).unwrap_or_default()) }
                    dt { "后续处置" } dd { (text(&v["follow_up"]["measure"]["label"]))
                        @if v["follow_up"]["deadline"].is_string() { "，期限 " (text(&v["follow_up"]["deadline"])) }
                        @if v["follow_up"]["detail"].is_string() { "（" (text(&v["follow_up"]["detail"])) "）" } }
                    dt { "当事人陈述" } dd { (text(&v["party"]["statement"])) }
                    dt { "当事人签字" } dd {
                        @match v["party"]["signature"]["kind"].as_str() {
                            Some("signed") => { (text(&v["party"]["signature"]["name"])) "（" (text(&v["party"]["signature"]["role"])) "）已签字" },
                            Some("refused") => { "拒绝签字：" (text(&v["party"]["signature"]["reason"])) },
                            _ => "—",
                        }
                    }
                    dt { "检查人员签字" } dd #signatures {
                        @for s in v["signatures"].as_array().into_iter().flatten() {
                            div {
                                (text(&s["name"])) " 已签字 " span.muted { (s["signed_at"].as_str().map(time).unwrap_or_default()) } " "
                                @match s["verification"]["status"].as_str() {
                                    Some("valid") => span.signature-valid { "签名有效" },
                                    Some("stale") => span.signature-stale { "签名后记录已改动，需重新签名" },
                                    _ => span.signature-invalid { "签名无效：" (text(&s["verification"]["reason"])) },
                                }
                            }
                        }
                        @if v["signatures"].as_array().is_none_or(|s| s.is_empty()) { "尚无" }
                    }
                }
            }
            @if v["notes"].as_array().is_some_and(|n| !n.is_empty()) {
                h2 { "证据说明" }
                ul #notes { @for n in v["notes"].as_array().into_iter().flatten() {
                    li { (note_text(n)) }
                } }
            }
            @if v["photos"].as_array().is_some_and(|p| !p.is_empty()) {
                h2 { "现场照片" }
                div.photos #photos { @for p in v["photos"].as_array().into_iter().flatten() {
                    // The full-size photo the server holds: the upload copy when the
                    // original (over the phone's pixel budget) stayed on the phone.
                    @let full_size = if p["upload_sha256"].is_string() { &p["upload_sha256"] } else { &p["sha256"] };
                    figure {
                        a href=(format!("/photos/{}", text(full_size))) target="_blank" {
                            img src=(format!("/photos/{}", text(&p["thumbnail_sha256"]))) alt=(text(&p["caption"])) loading="lazy";
                        }
                        figcaption { (text(&p["caption"])) " · " (text(&p["taken_by_name"])) }
                    }
                } }
            }
            h2 { "审核记录" }
            ol #history { @for e in v["review"]["history"].as_array().into_iter().flatten() {
                li { (state_label(e["state"].as_str().unwrap_or(""))) "（第 " (text(&e["round"])) " 轮）"
                    span.muted { " " (e["at"].as_str().map(time).unwrap_or_default()) " " (text(&e["by"])) }
                    @if e["comment"].is_string() { "：" (text(&e["comment"])) } }
            } }
            @if let Some(entry) = &published { (published_versions(entry)) }
            @if user.has_any(DECIDERS) && !you_inspected {
                @if review_state == "submitted" {
                    div.row {
                        form.box #return-form method="post" action=(format!("/records/{id}/return")) {
                            h2 { "退回修改" }
                            (csrf_field(&user))
                            div.field.invalid[errors.get("comment").is_some()] {
                                label for="return-comment" { "退回意见（必填）" }
                                textarea #return-comment name="comment" { (values.get("comment")) }
                                (errors.show("comment"))
                            }
                            button.danger type="submit" { "退回" }
                        }
                        form.box #approve-form method="post" action=(format!("/records/{id}/approve")) {
                            h2 { "审核通过" }
                            (csrf_field(&user))
                            div.field {
                                label for="approve-comment" { "审核意见（选填）" }
                                textarea #approve-comment name="comment" {}
                            }
                            button.primary type="submit" { "通过" }
                        }
                    }
                }
                @if let Some(entry) = &published {
                    (correction_form(&user, id, entry, &values, &errors))
                }
                @if review_state == "approved" {
                    form.box #publish-form method="post" action=(format!("/records/{id}/publish")) {
                        h2 { "公示结果" }
                        p { "公示内容仅包括计划、任务、抽查类型、检查机关、完成日期和检查结果，不含检查人员、发现内容、照片。" }
                        (csrf_field(&user))
                        button.primary type="submit" { "公示" }
                    }
                }
                (errors.show("form"))
            }
        },
    ))
}

/// The published result of a record: its current version, and the earlier
/// versions corrections replaced with when and why.
fn published_versions(entry: &Value) -> Markup {
    let previous = entry["previous_versions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // The reason for replacing version n is stored with version n + 1.
    let reason_after = |version: &Value| -> String {
        let next = version.as_i64().unwrap_or(0) + 1;
        std::iter::once(entry)
            .chain(&previous)
            .find(|v| v["version"].as_i64() == Some(next))
            .map(|v| text(&v["correction_reason"]))
            .unwrap_or_default()
    };
    html! {
        section.box #published {
            h2 { "公示结果" }
            dl.facts {
                dt { "状态" } dd { strong #published-status { (text(&entry["status"])) } " · 第 " (text(&entry["version"])) " 版" }
                dt { "检查结果" } dd #published-result { (text(&entry["result"])) }
                dt { "检查完成日期" } dd { (text(&entry["completed_on"])) }
                dt { "公示时间" } dd { (entry["published_at"].as_str().map(time).unwrap_or_default()) }
                @if entry["correction_reason"].is_string() {
                    dt { "更正原因" } dd { (text(&entry["correction_reason"])) }
                }
            }
            @if !previous.is_empty() {
                h3 { "历史版本（已更正）" }
                div.table-wrap { table #versions {
                    thead { tr { th { "版本" } th { "检查结果" } th { "更正时间" } th { "更正原因" } } }
                    tbody { @for old in &previous {
                        tr {
                            td { "第 " (text(&old["version"])) " 版" }
                            td { (text(&old["result"])) }
                            td { (old["corrected_at"].as_str().map(time).unwrap_or_default()) }
                            td { (reason_after(&old["version"])) }
                        }
                    } }
                } }
            }
        }
    }
}

/// The codes of the entries of `entry[list]` that pass `filter`.
fn codes_of(entry: &Value, list: &str, filter: impl Fn(&Value) -> bool) -> Vec<String> {
    entry[list]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| filter(v))
        .filter_map(|v| v["code"].as_str())
        .map(str::to_owned)
        .collect()
}

/// The form that corrects a published result, filled in with the current
/// version, or with what was posted when a correction was refused.
fn correction_form(
    user: &WebUser,
    id: &str,
    entry: &Value,
    values: &FormData,
    errors: &FieldErrors,
) -> Markup {
    let posted = values.get("form") == "correct";
    let (results, completed_on, checked) = if posted {
        (
            values.all("results"),
            values.get("completed_on").to_owned(),
            values.all("checked"),
        )
    } else {
        (
            codes_of(entry, "results", |_| true),
            entry["completed_on"].as_str().unwrap_or("").to_owned(),
            codes_of(entry, "items", |i| i["checked"] == Value::Bool(true)),
        )
    };
    let reason = if posted { values.get("reason") } else { "" };
    let items = entry["items"].as_array().cloned().unwrap_or_default();
    html! {
        form.box #correct-form method="post" action=(format!("/records/{id}/correct")) {
            h2 { "更正公示结果" }
            p { "更正后公开的抽查结果显示新版本，原版本继续公开并标注为已更正。" }
            (csrf_field(user))
            input type="hidden" name="form" value="correct";
            div.field.invalid[errors.get("reason").is_some()] {
                label for="correct-reason" { "更正原因（必填，随更正后的结果公示）" }
                textarea #correct-reason name="reason" aria-invalid=[errors.get("reason").map(|_| "true")] { (reason) }
                (errors.show("reason"))
            }
            div.field.invalid[errors.get("results").is_some()] {
                span { "检查结果" }
                div { @for category in ResultCategory::ALL {
                    label { input type="checkbox" name="results" value=(category.code()) checked[results.iter().any(|r| r == category.code())]; " " (category.label()) }
                    br;
                } }
                (errors.show("results"))
            }
            (input("检查完成日期", "completed_on", "date", &completed_on, errors))
            div.field.invalid[errors.get("items").is_some()] {
                span { "检查事项（勾选已检查的事项）" }
                div { @for item in &items {
                    input type="hidden" name="item" value=(text(&item["code"]));
                    label { input type="checkbox" name="checked" value=(text(&item["code"])) checked[checked.contains(&text(&item["code"]))]; " " (text(&item["name"])) }
                    br;
                } }
                (errors.show("items"))
            }
            button.primary type="submit" { "更正" }
        }
    }
}

fn note_text(n: &Value) -> String {
    ["text", "content", "note", "caption"]
        .iter()
        .find_map(|k| n[*k].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| n.to_string())
}

async fn decision(
    state: AppState,
    id: String,
    post: CsrfForm,
    make: fn(&FormData) -> Result<Decision, &'static str>,
    done: &str,
) -> WebResult<Response> {
    let CsrfForm { user, form } = post;
    user.require(DECIDERS)?;
    let mut errors = FieldErrors::new();
    match make(&form) {
        Err(message) => errors.add("comment", message),
        Ok(decision) => {
            let (auth, record_id) = (user.auth.clone(), id.clone());
            match state
                .db
                .write(move |tx| decide(tx, &auth, &record_id, &decision))
                .await
            {
                Ok(_) => return Ok(see_other(&format!("/records/{id}?done={done}"))),
                Err(e) => errors.absorb(e, &["comment"])?,
            }
        }
    }
    let body = record_page(&state, user, &id, None, form, errors).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}

async fn return_record(
    State(state): State<AppState>,
    Path(id): Path<String>,
    post: CsrfForm,
) -> WebResult<Response> {
    decision(
        state,
        id,
        post,
        |form| match form.get("comment") {
            "" => Err("请写明需要检查人员改正或补充的内容。"),
            comment => Ok(Decision::Return(comment.to_owned())),
        },
        "returned",
    )
    .await
}

async fn approve_record(
    State(state): State<AppState>,
    Path(id): Path<String>,
    post: CsrfForm,
) -> WebResult<Response> {
    decision(
        state,
        id,
        post,
        |form| {
            Ok(Decision::Approve(
                Some(form.get("comment").to_owned()).filter(|c| !c.is_empty()),
            ))
        },
        "approved",
    )
    .await
}

async fn publish(
    State(state): State<AppState>,
    Path(id): Path<String>,
    post: CsrfForm,
) -> WebResult<Response> {
    post.user.require(DECIDERS)?;
    let (auth, record_id) = (post.user.auth.clone(), id.clone());
    match state
        .db
        .write(move |tx| publish_record(tx, &auth, &record_id))
        .await
    {
        Ok(_) => Ok(see_other(&format!("/records/{id}?done=published"))),
        Err(e) => {
            let mut errors = FieldErrors::new();
            errors.absorb(e, &[])?;
            let body = record_page(&state, post.user, &id, None, post.form, errors).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
        }
    }
}

/// Corrects the record's published result with `correct_result`, the
/// function behind `POST /api/v1/results/{id}/corrections`.
async fn correct(
    State(state): State<AppState>,
    Path(id): Path<String>,
    post: CsrfForm,
) -> WebResult<Response> {
    let CsrfForm { user, form } = post;
    user.require(DECIDERS)?;
    let mut errors = FieldErrors::new();
    let reason = form.get("reason");
    if reason.is_empty() {
        errors.add("reason", "请写明更正的原因，它将随更正后的结果一起公示。");
    }
    let completed_on = match form.get("completed_on") {
        "" => None,
        date => date.parse().map_or_else(
            |_| {
                errors.add("completed_on", "日期格式应为 年-月-日，例如 2026-11-02。");
                None
            },
            Some,
        ),
    };
    if errors.is_empty() {
        let ticked = form.all("checked");
        let correction = Correction {
            reason: reason.to_owned(),
            results: Some(form.all("results")),
            completed_on,
            items: Some(
                form.all("item")
                    .into_iter()
                    .map(|code| ItemCorrection {
                        checked: ticked.contains(&code),
                        code,
                    })
                    .collect(),
            ),
        };
        let (auth, record_id) = (user.auth.clone(), id.clone());
        let corrected = state
            .db
            .write(move |tx| {
                let result_id = result_of_record(tx, &record_id)?
                    .ok_or_else(|| Error::Conflict("该记录尚未公示，没有可更正的结果。".into()))?;
                correct_result(tx, &auth, result_id, correction)
            })
            .await;
        match corrected {
            Ok(_) => return Ok(see_other(&format!("/records/{id}?done=corrected"))),
            Err(e) => errors.absorb(e, &["reason", "results", "completed_on", "items"])?,
        }
    }
    let body = record_page(&state, user, &id, None, form, errors).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}

/// A photo of a record the user may read (the same rule as the blob API).
async fn photo(
    State(state): State<AppState>,
    user: WebUser,
    Path(hash): Path<String>,
) -> WebResult<Response> {
    crate::blobs::check_hash(&hash)?;
    let allowed = crate::blobs::may_read_now(&state.db, &user.auth, &hash).await?;
    if !allowed {
        return Err(WebError::for_user(
            Error::Forbidden("没有您可以查看的记录引用这张照片。".into()),
            &user,
        ));
    }
    let blobs = state.blobs.clone();
    let h = hash.clone();
    let bytes = tokio::task::spawn_blocking(move || blobs.read(&h))
        .await
        .map_err(Error::from)??;
    Ok(crate::blobs::served(&hash, bytes))
}
