//! Recusal (回避) in the console: declaring and withdrawing inspectors'
//! conflicts of interest on the inspector directory, and redrawing one drawn
//! target of a task (回避 or 超出范围) from the task page. Both call the
//! API's own domain functions (`registry::inspectors::insert_conflict`,
//! `delete_conflict`, `draw::redraw`).

use std::collections::{BTreeSet, HashMap};

use crate::store::sql::Conn;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use maud::{Markup, html};

use super::draw::DRAWERS;
use super::form::{CsrfForm, FieldErrors, FormData, csrf_field, input, select};
use super::registry::{DirectoryForms, WRITERS, inspectors_view, task_view};
use super::session::WebUser;
use super::{WebResult, see_other};
use crate::AppState;
use crate::draw::records::RecordSummary;
use crate::draw::{self, RedrawReasonCode, RedrawRequest};
use crate::error::{Error, Result};
use crate::registry::inspectors::{self, Inspector};
use crate::registry::targets;

/// Optional observer rows on the redraw form.
const REDRAW_OBSERVER_ROWS: usize = 2;

/// Routes of the recusal forms.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/inspectors/conflicts", post(declare_conflict))
        .route(
            "/inspectors/{id}/conflicts/{target_id}/delete",
            post(remove_conflict),
        )
        .route("/tasks/{id}/redraw", post(redraw))
}

/// The form declaring a conflict of interest between one of `inspectors`
/// and a target named by 统一社会信用代码 or id.
pub fn conflict_form(
    user: &WebUser,
    inspectors: &[Inspector],
    values: &FormData,
    errors: &FieldErrors,
) -> Markup {
    let mut options = vec![(String::new(), "请选择检查人员".to_owned())];
    options.extend(inspectors.iter().map(|i| {
        (
            i.id.to_string(),
            format!(
                "{}（{}，{}）",
                i.input.name, i.input.department, i.input.cert_no
            ),
        )
    }));
    html! {
        form.box #conflict-form method="post" action="/inspectors/conflicts" {
            h2 { "声明回避（利害关系）" }
            p.hint { "声明后，此后固定的候选池中该人员不会被派往该检查对象。已经抽中的检查组，请在任务页面“重新抽取”。" }
            (csrf_field(user))
            (errors.show("form"))
            div.row {
                (select("检查人员", "inspector_id", &options, values.get("inspector_id"), errors))
                (input("检查对象（统一社会信用代码或编号）", "target_id", "text", values.get("target_id"), errors))
            }
            (input("回避原因", "reason", "text", values.get("reason"), errors))
            button.primary type="submit" { "声明回避" }
        }
    }
}

/// The id of the target a form names: an 18-character 统一社会信用代码, or
/// the target's id. `None` when no such target is registered.
fn target_named(c: &Conn, text: &str) -> Result<Option<i64>> {
    if text.chars().count() == 18 {
        return targets::id_by_uscc(c, &text.to_uppercase());
    }
    match text.parse::<i64>() {
        Ok(id) => match targets::get(c, id) {
            Ok(_) => Ok(Some(id)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        },
        Err(_) => Ok(None),
    }
}

/// `POST /inspectors/conflicts`: declares a conflict of interest.
async fn declare_conflict(State(state): State<AppState>, post: CsrfForm) -> WebResult<Response> {
    let CsrfForm { user, form } = post;
    user.require(WRITERS)?;
    let mut errors = FieldErrors::new();
    let inspector_id: Option<i64> = form.get("inspector_id").parse().ok();
    if inspector_id.is_none() {
        errors.add("inspector_id", "请选择检查人员。");
    }
    let target = form.get("target_id").to_owned();
    if target.is_empty() {
        errors.add("target_id", "请填写检查对象的统一社会信用代码或编号。");
    }
    let reason = form.get("reason").to_owned();
    if reason.is_empty() {
        errors.add("reason", "请填写回避原因。");
    }
    if errors.is_empty()
        && let Some(inspector_id) = inspector_id
    {
        let actor = user.auth.username.clone();
        let written = state
            .db
            .write(move |tx| {
                let Some(target_id) = target_named(tx, &target)? else {
                    return Ok(false);
                };
                inspectors::insert_conflict(tx, &actor, inspector_id, target_id, &reason)?;
                Ok(true)
            })
            .await;
        match written {
            Ok(true) => return Ok(see_other("/inspectors")),
            Ok(false) => errors.add(
                "target_id",
                format!(
                    "未找到统一社会信用代码或编号为“{}”的检查对象。",
                    form.get("target_id")
                ),
            ),
            Err(Error::Conflict(_)) => errors.add(
                "target_id",
                "该检查人员已声明与此检查对象回避，无需重复声明。",
            ),
            Err(Error::NotFound(_)) => errors.add("inspector_id", "没有这名检查人员。"),
            Err(e) => errors.absorb(e, &["target_id", "reason"])?,
        }
    }
    let forms = DirectoryForms {
        conflict_values: form,
        conflict_errors: errors,
        ..DirectoryForms::new()
    };
    let body = inspectors_view(&state, user, &Default::default(), forms).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}

/// `POST /inspectors/{id}/conflicts/{target_id}/delete`: withdraws a
/// declared conflict.
async fn remove_conflict(
    State(state): State<AppState>,
    Path((id, target_id)): Path<(i64, i64)>,
    post: CsrfForm,
) -> WebResult<Response> {
    post.user.require(WRITERS)?;
    let actor = post.user.auth.username.clone();
    state
        .db
        .write(move |tx| inspectors::delete_conflict(tx, &actor, id, target_id))
        .await?;
    Ok(see_other("/inspectors"))
}

/// The form redrawing one target of task `task_id` whose records are
/// `records`: the target, the reason (回避 with the inspector who steps
/// aside, or 超出范围), a required explanation and optional observers.
pub fn redraw_form(
    user: &WebUser,
    task_id: i64,
    records: &[RecordSummary],
    names: &HashMap<i64, String>,
    values: &FormData,
    errors: &FieldErrors,
) -> Markup {
    let name_of = |id: &i64| names.get(id).cloned().unwrap_or_else(|| format!("#{id}"));
    let active: Vec<&RecordSummary> = records.iter().filter(|r| !r.withdrawn).collect();
    let mut target_options = vec![(String::new(), "请选择检查对象".to_owned())];
    target_options.extend(active.iter().map(|r| {
        let group: Vec<String> = r.group.iter().map(name_of).collect();
        (
            r.target_id.to_string(),
            format!("{}（检查组：{}）", r.target_name, group.join("、")),
        )
    }));
    let reasons = [
        ("recusal".to_owned(), "回避：检查组中有人须回避".to_owned()),
        (
            "out_of_scope".to_owned(),
            "超出范围：检查对象不属于本任务范围".to_owned(),
        ),
    ];
    let members: BTreeSet<i64> = active
        .iter()
        .flat_map(|r| r.group.iter().copied())
        .collect();
    let mut inspector_options = vec![(String::new(), "（仅回避时选择）".to_owned())];
    inspector_options.extend(members.iter().map(|id| (id.to_string(), name_of(id))));
    html! {
        form.box #redraw-form method="post" action=(format!("/tasks/{task_id}/redraw")) {
            h2 { "重新抽取" }
            p.hint { "重新抽取不会修改原摇号记录，而是生成一条注明原记录和原因的新记录。回避：不含该人员重新抽取检查组；超出范围：撤回该检查对象，从同一风险等级中另抽一户。" }
            (csrf_field(user))
            (errors.show("form"))
            div.row {
                (select("检查对象", "target_id", &target_options, values.get("target_id"), errors))
                (select("原因", "reason", &reasons, values.get("reason"), errors))
                (select("须回避的检查人员", "inspector_id", &inspector_options, values.get("inspector_id"), errors))
            }
            div.field.invalid[errors.get("explanation").is_some()] {
                label for="explanation" { "情况说明（必填，写入摇号记录）" }
                textarea #explanation name="explanation" rows="3" { (values.get("explanation")) }
                (errors.show("explanation"))
            }
            p.hint { "可选：现场观察员输入姓名和随机数，一并写入记录。" }
            (errors.show("entropy"))
            @for i in 0..REDRAW_OBSERVER_ROWS {
                div.row {
                    (input(&format!("观察员 {} 姓名", i + 1), &format!("observer{i}"), "text", values.get(&format!("observer{i}")), errors))
                    (input(&format!("观察员 {} 随机数", i + 1), &format!("entropy{i}"), "text", values.get(&format!("entropy{i}")), errors))
                }
            }
            button.primary type="submit" { "重新抽取" }
        }
    }
}

/// `POST /tasks/{id}/redraw`: redraws one target through `draw::redraw`
/// and shows the new draw record.
async fn redraw(
    State(state): State<AppState>,
    Path(task_id): Path<i64>,
    post: CsrfForm,
) -> WebResult<Response> {
    let CsrfForm { user, form } = post;
    user.require(DRAWERS)?;
    let mut errors = FieldErrors::new();
    let target_id: Option<i64> = form.get("target_id").parse().ok();
    if target_id.is_none() {
        errors.add("target_id", "请选择要重新抽取的检查对象。");
    }
    let reason = match form.get("reason") {
        "recusal" => Some(RedrawReasonCode::Recusal),
        "out_of_scope" => Some(RedrawReasonCode::OutOfScope),
        _ => {
            errors.add("reason", "请选择重新抽取的原因。");
            None
        }
    };
    let inspector_id: Option<i64> = form.get("inspector_id").parse().ok();
    if reason == Some(RedrawReasonCode::Recusal) && inspector_id.is_none() {
        errors.add("inspector_id", "回避须选择需要回避的检查人员。");
    }
    let explanation = form.get("explanation").to_owned();
    if explanation.is_empty() {
        errors.add("explanation", "请填写情况说明。");
    }
    let entropy = super::draw::observer_entropy(&form, REDRAW_OBSERVER_ROWS, &mut errors);
    if errors.is_empty()
        && let (Some(target_id), Some(reason)) = (target_id, reason)
    {
        let request = RedrawRequest {
            target_id,
            reason,
            inspector_id,
            explanation,
            entropy,
        };
        // Read under the writer lock (see draw::routes).
        let current = state.clone();
        let actor = user.auth.username.clone();
        match state
            .db
            .write(move |tx| draw::redraw(tx, &actor, task_id, request, &current.calendar()))
            .await
        {
            Ok(summary) => return Ok(see_other(&format!("/draws/{}", summary.id))),
            Err(e) => errors.absorb(e, &["target_id", "inspector_id", "explanation", "entropy"])?,
        }
    }
    let body = task_view(&state, user, task_id, &Default::default(), form, errors).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}
