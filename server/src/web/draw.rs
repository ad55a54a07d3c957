//! The draw ceremony (摇号): the commitment published before the draw, the
//! observers' names and entropy, the result with its seed inputs, drawn
//! targets and groups, the downloadable draw record and how to verify it.

use std::collections::HashMap;

use crate::store::sql::Conn;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};

use super::form::{CsrfForm, FieldErrors, FormData, csrf_field, post_button};
use super::layout::{page, time};
use super::session::WebUser;
use super::{WebResult, see_other};
use crate::AppState;
use crate::auth::Role;
use crate::draw::algorithm::Entropy;
use crate::draw::{self, Beacon, Ceremony, CommitRequest, CommitmentInfo, routes::stored_record};
use crate::error::Result;
use crate::plans;

/// Who runs draws.
pub const DRAWERS: &[Role] = &[Role::Admin, Role::Planner];
/// Observer rows on the ceremony form, at least (more if the rules ask more).
const OBSERVER_ROWS: usize = 4;

/// Observer rows the ceremony form shows when the rules ask for `min`.
fn observer_rows(min: u32) -> usize {
    OBSERVER_ROWS.max(min as usize + 1)
}

/// Routes of the ceremony pages.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tasks/{id}/draw", get(ceremony).post(execute))
        .route("/tasks/{id}/draw/commit", post(commit))
        .route("/tasks/{id}/draw/publish", post(publish))
        .route("/draws/{id}", get(result))
        .route("/draws/{id}/record.json", get(download))
}

/// Names of every inspector by id.
pub fn inspector_names(c: &Conn) -> Result<HashMap<i64, String>> {
    let mut stmt = c.prepare("SELECT id, name FROM inspectors")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect::<std::result::Result<_, _>>()
}

/// The observers' entries of a form with `rows` rows of `observer{i}` and
/// `entropy{i}` fields, in row order. Empty rows are skipped; a row with only
/// one of the two gets an error next to the missing one.
pub fn observer_entropy(form: &FormData, rows: usize, errors: &mut FieldErrors) -> Vec<Entropy> {
    let mut entropy = Vec::new();
    for i in 0..rows {
        let (name, value) = (
            form.get(&format!("observer{i}")),
            form.get(&format!("entropy{i}")),
        );
        match (name.is_empty(), value.is_empty()) {
            (true, true) => {}
            (false, true) => errors.add(&format!("entropy{i}"), "请输入这位观察员的随机数。"),
            (true, false) => errors.add(&format!("observer{i}"), "请输入观察员姓名。"),
            (false, false) => entropy.push(Entropy {
                observer: name.to_owned(),
                value: value.to_owned(),
            }),
        }
    }
    entropy
}

/// A redraw reason code in Chinese.
pub fn redraw_reason_label(code: &str) -> &str {
    match code {
        "recusal" => "回避",
        "out_of_scope" => "超出范围",
        other => other,
    }
}

fn commitment_facts(c: &CommitmentInfo) -> Markup {
    html! {
        dl.facts #commitment {
            dt { "承诺编号" } dd { (c.id) }
            dt { "固定时间" } dd { (time(&c.committed_at)) }
            dt { "算法版本" } dd { code { (c.algorithm) } }
            dt { "候选检查对象" } dd { (c.target_count) " 户，哈希 " code.hash { (c.target_pool_sha256) } }
            dt { "候选检查人员" } dd { (c.inspector_count) " 人，哈希 " code.hash { (c.inspector_pool_sha256) } }
            dt { "参数哈希" } dd { code.hash { (c.params_sha256) } }
            dt { "服务器密钥哈希" } dd { code.hash { (c.secret_sha256) } }
            @if let Some(b) = &c.beacon {
                dt { "公开随机源" } dd #beacon { (b.name) "（" (time(&b.due_at)) " 公布；摇号须在此之后并输入其结果）" }
            }
        }
    }
}

async fn ceremony(
    State(state): State<AppState>,
    user: WebUser,
    Path(task_id): Path<i64>,
) -> WebResult<Markup> {
    user.require(DRAWERS)?;
    ceremony_view(
        &state,
        user,
        task_id,
        FormData::default(),
        FieldErrors::new(),
    )
    .await
}

async fn ceremony_view(
    state: &AppState,
    user: WebUser,
    task_id: i64,
    values: FormData,
    errors: FieldErrors,
) -> WebResult<Markup> {
    let (task, commitment, draws, min_observers) = state
        .db
        .read(move |c| {
            Ok((
                plans::get_task_by_id(c, task_id)?,
                draw::open_commitment(c, task_id)?,
                draw::draws_of_task(c, task_id)?,
                crate::registry::rules::load(c)?.min_observers,
            ))
        })
        .await?;
    let rows = observer_rows(min_observers);
    Ok(page(
        "摇号现场",
        Some(&user),
        html! {
            p.muted { a href=(format!("/tasks/{task_id}")) { (task.number) " " (task.name) } " › 摇号" }
            h1 { "摇号现场：" (task.name) }
            ol.steps {
                li { "1. 固定候选池并公布承诺（哈希）：此后候选名单和参数不能再改。" }
                li { "2. 现场观察员（人大代表、政协委员、媒体等）各自输入姓名和一个随机数。" }
                li { "3. 以服务器密钥和全部观察员随机数（以及承诺中指定的公开随机源）计算种子，抽取检查对象和检查组，生成不可更改的摇号记录。" }
            }
            p.hint { "每一次承诺一经作出即在 " a href=(format!("/public/commitments?task={}", super::session::form_urlencode(&task.number))) { "承诺公示" } " 中公开，被替代的承诺也永久保留。" }
            @if !draws.is_empty() {
                h2 { "本任务的摇号记录" }
                div.table-wrap { table #draws {
                    thead { tr { th { "编号" } th { "类型" } th { "时间" } th.num { "抽中" } th { "公示" } } }
                    tbody { @for d in &draws {
                        tr {
                            td { a href=(format!("/draws/{}", d.id)) { "摇号记录 " (d.id) } }
                            td { @if d.kind == "initial" { "首次摇号" } @else { "重新抽取" } }
                            td { (time(&d.drawn_at)) }
                            td.num { (d.targets) }
                            td { @if d.published_at.is_some() { span.badge.ok { "已公示" } } @else { span.badge.warn { "未公示" } } }
                        }
                    } }
                } }
            }
            @match &commitment {
                Some(c) => {
                    section.box {
                        h2 { "第一步：已公布的承诺" }
                        p { "摇号前已固定以下内容。摇号后公开的记录可以逐项与这些哈希核对。" }
                        (commitment_facts(c))
                    }
                    form.box #ceremony method="post" action=(format!("/tasks/{task_id}/draw")) data-progress="正在摇号，请稍候…" {
                        h2 { "第二步：观察员输入随机数" }
                        p.hint { "至少 " (min_observers) " 位不同的观察员（按本机关细则）。每人输入姓名和自己想到的任意数字或文字；这些内容会写入摇号记录并公开。" }
                        (csrf_field(&user))
                        input type="hidden" name="commitment_id" value=(c.id);
                        (errors.show("form"))
                        (errors.show("entropy"))
                        @if let Some(b) = &c.beacon {
                            div.field.invalid[errors.get("beacon_value").is_some()] {
                                label for="beacon_value" { (b.name) "（" (time(&b.due_at)) " 公布）" }
                                input type="text" id="beacon_value" name="beacon_value" value=(values.get("beacon_value"));
                                (errors.show("beacon_value"))
                            }
                        }
                        @for i in 0..rows {
                            div.row {
                                div.field.invalid[errors.get(&format!("observer{i}")).is_some()] {
                                    label for=(format!("observer{i}")) { "观察员 " (i + 1) " 姓名" }
                                    input type="text" id=(format!("observer{i}")) name=(format!("observer{i}")) value=(values.get(&format!("observer{i}")));
                                    (errors.show(&format!("observer{i}")))
                                }
                                div.field.invalid[errors.get(&format!("entropy{i}")).is_some()] {
                                    label for=(format!("entropy{i}")) { "观察员 " (i + 1) " 随机数" }
                                    input type="text" id=(format!("entropy{i}")) name=(format!("entropy{i}")) value=(values.get(&format!("entropy{i}")));
                                    (errors.show(&format!("entropy{i}")))
                                }
                            }
                        }
                        p.progress aria-live="polite" {}
                        button.primary type="submit" { "开始摇号" }
                    }
                },
                None if draws.iter().all(|d| d.kind != "initial") => {
                    section.box {
                        h2 { "第一步：固定候选池" }
                        p { "按任务条件固定候选检查对象和检查人员，并公布其哈希（承诺）。" }
                        (errors.show("form"))
                        form #commit method="post" action=(format!("/tasks/{task_id}/draw/commit")) {
                            (csrf_field(&user))
                            p.hint { "可选：事先指定一个公开随机源（如彩票开奖号码）。摇号须在其公布之后进行，并输入其结果。" }
                            div.row {
                                div.field.invalid[errors.get("beacon").is_some()] {
                                    label for="beacon_name" { "公开随机源名称" }
                                    input type="text" id="beacon_name" name="beacon_name" placeholder="福彩3D 第2026330期开奖号码" value=(values.get("beacon_name"));
                                    (errors.show("beacon"))
                                }
                                div.field {
                                    label for="beacon_due_at" { "公布时间（RFC 3339，如 2026-11-30T21:30:00+08:00）" }
                                    input type="text" id="beacon_due_at" name="beacon_due_at" value=(values.get("beacon_due_at"));
                                }
                            }
                            button.primary type="submit" { "固定候选池并公布承诺" }
                        }
                    }
                },
                None => {
                    p.notice { "本任务已完成首次摇号。" }
                },
            }
        },
    ))
}

async fn commit(
    State(state): State<AppState>,
    Path(task_id): Path<i64>,
    post: CsrfForm,
) -> WebResult<Response> {
    post.user.require(DRAWERS)?;
    let actor = post.user.auth.username.clone();
    let (name, due_at) = (post.form.get("beacon_name"), post.form.get("beacon_due_at"));
    let request = CommitRequest {
        beacon: (!name.is_empty() || !due_at.is_empty()).then(|| Beacon {
            name: name.to_owned(),
            due_at: due_at.to_owned(),
        }),
    };
    let seal = state.seal.clone();
    match state
        .db
        .write(move |tx| draw::commit(tx, &actor, task_id, &request, &seal))
        .await
    {
        Ok(_) => Ok(see_other(&format!("/tasks/{task_id}/draw"))),
        Err(e) => {
            let mut errors = FieldErrors::new();
            errors.absorb(e, &["beacon"])?;
            let body = ceremony_view(&state, post.user, task_id, post.form, errors).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
        }
    }
}

async fn execute(
    State(state): State<AppState>,
    Path(task_id): Path<i64>,
    post: CsrfForm,
) -> WebResult<Response> {
    let CsrfForm { user, form } = post;
    user.require(DRAWERS)?;
    let mut errors = FieldErrors::new();
    let min = state
        .db
        .read(|c| Ok(crate::registry::rules::load(c)?.min_observers))
        .await? as usize;
    let entropy = observer_entropy(&form, observer_rows(min as u32), &mut errors);
    if errors.is_empty() && entropy.len() < min {
        for i in entropy.len()..min {
            errors.add(
                &format!("observer{i}"),
                format!("摇号需要至少 {min} 位观察员：请填写姓名和随机数。"),
            );
        }
    }
    let commitment_id: Option<i64> = form.get("commitment_id").parse().ok();
    if errors.is_empty()
        && let Some(commitment_id) = commitment_id
    {
        // Read under the writer lock (see draw::routes).
        let current = state.clone();
        let actor = user.auth.username.clone();
        let beacon_value = Some(form.get("beacon_value").to_owned()).filter(|v| !v.is_empty());
        let ceremony = Ceremony {
            commitment_id,
            entropy,
            beacon_value,
        };
        let seal = state.seal.clone();
        match state
            .db
            .write(move |tx| {
                let calendar = current.calendar();
                draw::execute(tx, &actor, task_id, ceremony, &seal, &calendar)
            })
            .await
        {
            Ok(summary) => return Ok(see_other(&format!("/draws/{}", summary.id))),
            Err(e) => errors.absorb(e, &["entropy", "beacon_value"])?,
        }
    } else if commitment_id.is_none() {
        errors.add("form", "缺少承诺编号，请刷新页面。");
    }
    let body = ceremony_view(&state, user, task_id, form, errors).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}

async fn publish(
    State(state): State<AppState>,
    Path(task_id): Path<i64>,
    post: CsrfForm,
) -> WebResult<Response> {
    post.user.require(DRAWERS)?;
    let actor = post.user.auth.username.clone();
    let draws = state
        .db
        .write(move |tx| draw::publish(tx, &actor, task_id))
        .await?;
    let last = draws.iter().map(|d| d.id).max().unwrap_or_default();
    Ok(see_other(&format!("/draws/{last}")))
}

async fn result(
    State(state): State<AppState>,
    user: WebUser,
    Path(draw_id): Path<i64>,
) -> WebResult<Markup> {
    user.require(DRAWERS)?;
    let (record, published, names) = state
        .db
        .read(move |c| {
            let (record, published) = draw::load_record(c, draw_id)?;
            Ok((record, published, inspector_names(c)?))
        })
        .await?;
    let name_of = |id: &i64| names.get(id).cloned().unwrap_or_else(|| format!("#{id}"));
    let task_id = record.task.id;
    Ok(page(
        "摇号结果",
        Some(&user),
        html! {
            p.muted { a href=(format!("/tasks/{task_id}")) { (record.task.number) " " (record.task.name) } " › " a href=(format!("/tasks/{task_id}/draw")) { "摇号" } " › 记录 " (draw_id) }
            h1 { "摇号结果" }
            p.notice #draw-done { "摇号记录 " (draw_id) " 已生成（" (time(&record.drawn_at)) "），共抽中 " (record.result.targets.len()) " 户。记录一经生成不可修改。" }
            @if let (Some(parent), Some(basis)) = (record.parent_draw_id, &record.redraw) {
                section.box #replaces {
                    h2 { "重新抽取" }
                    p { "本记录替代 " a href=(format!("/draws/{parent}")) { "摇号记录 " (parent) } " 中的一户；原记录保持不变。" }
                    dl.facts {
                        dt { "替代的摇号记录" } dd { a href=(format!("/draws/{parent}")) { "摇号记录 " (parent) } }
                        dt { "原因" } dd {
                            (redraw_reason_label(&basis.reason))
                            @if let Some(inspector) = basis.recused_inspector { "：检查人员 " (name_of(&inspector)) " 回避" }
                        }
                        dt { "涉及的检查对象" } dd {
                            @if let Some(name) = record.target_names.get(&basis.target_uscc) { (name) " " }
                            code { (basis.target_uscc) }
                        }
                        dt { "情况说明" } dd #redraw-explanation { (explanation_of(&record.reason, &basis.reason)) }
                    }
                }
            }
            section.box {
                h2 { "种子的来源" }
                dl.facts #seed-inputs {
                    @if let Some(basis) = &record.redraw {
                        dt { "被替代记录的种子" } dd { code.hash { (basis.parent_seed) } }
                        dt { "重新抽取序号" } dd { (basis.sequence) }
                    } @else {
                        dt { "服务器密钥（揭示）" } dd { code.hash { (record.secret) } }
                    }
                    @if let Some(c) = &record.commitment {
                        dt { "摇号前公布的密钥哈希" } dd { code.hash { (c.secret_sha256) } }
                    }
                    @for e in &record.entropy {
                        dt { "观察员 " (e.observer) } dd { code { (e.value) } }
                    }
                    @if let (Some(c), Some(v)) = (&record.commitment, &record.beacon_value) {
                        @if let Some(b) = &c.beacon { dt { (b.name) } dd { code { (v) } } }
                    }
                    dt { "种子" } dd { code.hash { (record.seed) } }
                    dt { "算法" } dd { code { (record.algorithm) } }
                }
            }
            @if let Some(c) = &record.commitment {
                section.box { h2 { "摇号前公布的承诺" } (commitment_facts(c)) }
            }
            h2 { "分层抽取" }
            div.table-wrap { table {
                thead { tr { th { "风险等级" } th.num { "候选" } th.num { "抽取" } } }
                tbody { @for s in &record.result.strata {
                    tr { td { (s.risk_class) " 类" } td.num { (s.candidates) } td.num { (s.drawn) } }
                } }
            } }
            h2 { "抽中的检查对象与检查组" }
            div.table-wrap { table #drawn {
                thead { tr { th.num { "序号" } th { "检查对象" } th { "统一社会信用代码" } th { "风险" } th { "检查组（组长在前）" } } }
                tbody { @for (i, t) in record.result.targets.iter().enumerate() {
                    tr {
                        td.num { (i + 1) }
                        td { (record.target_names.get(&t.uscc).cloned().unwrap_or_default()) @if t.must_include { " " span.badge.danger { "必查" } } }
                        td { code { (t.uscc) } }
                        td { (t.risk_class) }
                        td { (t.group.iter().map(name_of).collect::<Vec<_>>().join("、")) }
                    }
                } }
            } }
            section.verify #verify {
                h2 { "下载与验证" }
                p { a.button href=(format!("/draws/{draw_id}/record.json")) download { "下载摇号记录（JSON）" }
                    @if published.is_some() { " " a href=(format!("/public/draws/{draw_id}")) { "公开页面" } } }
                p { "任何人都可以重新计算本次摇号：下载摇号记录后运行 " code { "suiji-server draw verify 文件名" } "，程序会用记录中的候选池、参数、密钥和观察员随机数重算，并输出 verified 或第一处不一致。" }
            }
            @if published.is_none() {
                section.box {
                    h2 { "公示抽查名单" }
                    p { "公示后，摇号记录和抽中名单向社会公开。" }
                    (post_button(&user, &format!("/tasks/{task_id}/draw/publish"), "公示本任务的摇号记录", "primary"))
                }
            } @else {
                p.notice { "已公示。" }
            }
        },
    ))
}

/// The explanation of a redraw, from its stored reason `code: explanation`.
fn explanation_of(reason: &Option<String>, code: &str) -> String {
    let reason = reason.as_deref().unwrap_or_default();
    reason
        .strip_prefix(code)
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(reason)
        .to_owned()
}

async fn download(
    State(state): State<AppState>,
    user: WebUser,
    Path(draw_id): Path<i64>,
) -> WebResult<Response> {
    user.require(DRAWERS)?;
    let text = state
        .db
        .read(move |c| stored_record(c, draw_id, false))
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"draw-{draw_id}.json\""),
            ),
        ],
        text,
    )
        .into_response())
}
