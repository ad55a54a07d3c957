//! The inspector directory's forms in the console: adding an inspector on
//! `/inspectors`, and a page per inspector editing them, deactivation and
//! the expert flag included. Both call the API's own domain functions
//! (`registry::inspectors::insert` and `update`).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};

use super::form::{CsrfForm, FieldErrors, FormData, csrf_field, input};
use super::registry::{DirectoryForms, READERS, WRITERS, inspectors_view};
use super::session::WebUser;
use super::{WebResult, see_other};
use crate::AppState;
use crate::accounts::{self, User};
use crate::auth::Role;
use crate::error::Error;
use crate::registry::departments::{self, Department};
use crate::registry::inspectors::{self, Inspector, InspectorInput};

/// Fields of the inspector forms a domain refusal may name.
const INSPECTOR_FIELDS: &[&str] = &[
    "user_id",
    "name",
    "cert_no",
    "department",
    "expertise",
    "region",
];

/// Routes of the inspector forms (the directory itself is in `registry`).
pub fn routes() -> Router<AppState> {
    Router::new().route("/inspectors/{id}", get(inspector_page).post(edit_inspector))
}

/// The form adding an inspector, showing `values` and `errors`. `users`
/// are the accounts that may be linked (those holding the inspector role).
pub fn new_inspector_form(
    user: &WebUser,
    users: &[User],
    depts: &[Department],
    values: &FormData,
    errors: &FieldErrors,
) -> Markup {
    html! {
        form.box #inspector-form method="post" action="/inspectors" {
            h2 { "新增检查人员" }
            p.hint { "检查人员须关联一个持有检查员角色的登录账号；账号由管理员创建。" }
            (csrf_field(user))
            (errors.show("form"))
            (inspector_fields(users, depts, values, errors, "new-"))
            button.primary type="submit" { "新增检查人员" }
        }
    }
}

/// The fields shared by the new and edit forms. `prefix` keeps the ids of
/// the department select and checkboxes apart from the directory's filter.
fn inspector_fields(
    users: &[User],
    depts: &[Department],
    values: &FormData,
    errors: &FieldErrors,
    prefix: &str,
) -> Markup {
    let selected_user = values.get("user_id");
    let selected_dept = values.get("department");
    html! {
        div.row {
            div.field.invalid[errors.get("user_id").is_some()] {
                label for=(format!("{prefix}user_id")) { "登录账号" }
                select id=(format!("{prefix}user_id")) name="user_id" {
                    option value="" { "请选择账号" }
                    @for u in users {
                        @let id = u.id.to_string();
                        option value=(id) selected[id == selected_user] {
                            (u.username) "（" (u.display_name) "）"
                            @if u.inspector_id.is_some() { " 已关联" }
                        }
                    }
                }
                (errors.show("user_id"))
            }
            (input("姓名", "name", "text", values.get("name"), errors))
            (input("执法证号", "cert_no", "text", values.get("cert_no"), errors))
        }
        div.row {
            div.field.invalid[errors.get("department").is_some()] {
                label for=(format!("{prefix}department")) { "所属部门" }
                select id=(format!("{prefix}department")) name="department" {
                    option value="" { "请选择部门" }
                    @for d in depts {
                        option value=(d.code) selected[d.code == selected_dept] { (d.name) "（" (d.code) "）" }
                    }
                }
                (errors.show("department"))
            }
            (input("区域", "region", "text", values.get("region"), errors))
            (input("专业领域（多个用逗号分隔）", "expertise", "text", values.get("expertise"), errors))
        }
        div.field {
            label { input type="checkbox" name="active" value="yes" checked[values.get("active") == "yes"]; " 在岗（可被抽取；取消勾选即停用）" }
            label { input type="checkbox" name="expert" value="yes" checked[values.get("expert") == "yes"]; " 列为专家" }
        }
    }
}

/// The form values of a stored inspector, to pre-fill the edit form.
fn values_of(inspector: &Inspector) -> FormData {
    let i = &inspector.input;
    let mut pairs = vec![
        ("user_id".to_owned(), i.user_id.to_string()),
        ("name".to_owned(), i.name.clone()),
        ("cert_no".to_owned(), i.cert_no.clone()),
        ("department".to_owned(), i.department.clone()),
        ("region".to_owned(), i.region.clone()),
        ("expertise".to_owned(), i.expertise.join("，")),
    ];
    if i.active {
        pairs.push(("active".to_owned(), "yes".to_owned()));
    }
    if i.expert {
        pairs.push(("expert".to_owned(), "yes".to_owned()));
    }
    FormData::new(pairs)
}

/// Reads the inspector fields of a posted form. Missing values are
/// recorded in `errors` (in Chinese); the domain checks the rest.
fn inspector_input(form: &FormData, errors: &mut FieldErrors) -> InspectorInput {
    let user_id = form.get("user_id").parse().unwrap_or_else(|_| {
        errors.add("user_id", "请选择检查人员的登录账号。");
        0
    });
    for (field, message) in [
        ("name", "请填写姓名。"),
        ("cert_no", "请填写执法证号。"),
        ("department", "请选择所属部门。"),
        ("region", "请填写区域。"),
    ] {
        if form.get(field).is_empty() {
            errors.add(field, message);
        }
    }
    InspectorInput {
        user_id,
        name: form.get("name").to_owned(),
        cert_no: form.get("cert_no").to_owned(),
        department: form.get("department").to_owned(),
        expertise: form
            .get("expertise")
            .split([',', '，', '、'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        region: form.get("region").to_owned(),
        active: form.get("active") == "yes",
        expert: form.get("expert") == "yes",
    }
}

/// Places a refusal of `inspectors::insert` or `update` next to its field.
fn absorb(errors: &mut FieldErrors, e: Error) -> WebResult<()> {
    match e {
        Error::Duplicate {
            field: "cert_no", ..
        } => {
            errors.add("cert_no", "已有检查人员使用此执法证号。");
        }
        Error::Duplicate { .. } => errors.add("user_id", "此账号已关联另一名检查人员。"),
        e => errors.absorb(e, INSPECTOR_FIELDS)?,
    }
    Ok(())
}

/// Accounts holding the inspector role, which an inspector may be linked to.
pub fn inspector_accounts(users: Vec<User>) -> Vec<User> {
    users
        .into_iter()
        .filter(|u| u.roles.contains(&Role::Inspector))
        .collect()
}

/// `POST /inspectors`: adds an inspector through `inspectors::insert`.
pub async fn create_inspector(
    State(state): State<AppState>,
    post: CsrfForm,
) -> WebResult<Response> {
    let CsrfForm { user, form } = post;
    user.require(WRITERS)?;
    let mut errors = FieldErrors::new();
    let input = inspector_input(&form, &mut errors);
    if errors.is_empty() {
        let actor = user.auth.username.clone();
        match state
            .db
            .write(move |tx| inspectors::insert(tx, &actor, &input))
            .await
        {
            Ok(created) => return Ok(see_other(&format!("/inspectors/{}", created.id))),
            Err(e) => absorb(&mut errors, e)?,
        }
    }
    let forms = DirectoryForms {
        new_values: form,
        new_errors: errors,
        ..DirectoryForms::default()
    };
    let body = inspectors_view(&state, user, &Default::default(), forms).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}

async fn inspector_page(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<i64>,
) -> WebResult<Markup> {
    user.require(READERS)?;
    inspector_view(&state, user, id, None, FieldErrors::new()).await
}

/// One inspector: attributes and conflicts, and (for writers) the edit form
/// showing `values` (the stored ones when `None`) and `errors`.
async fn inspector_view(
    state: &AppState,
    user: WebUser,
    id: i64,
    values: Option<FormData>,
    errors: FieldErrors,
) -> WebResult<Markup> {
    let (inspector, users, depts) = state
        .db
        .read(move |c| {
            Ok((
                inspectors::get(c, id)?,
                accounts::all_users(c)?,
                departments::all(c)?,
            ))
        })
        .await?;
    let users = inspector_accounts(users);
    let values = values.unwrap_or_else(|| values_of(&inspector));
    let i = &inspector.input;
    Ok(super::layout::page(
        &i.name,
        Some(&user),
        html! {
            p.muted { a href="/inspectors" { "执法检查人员名录库" } " › " (i.name) }
            h1 { (i.name) @if i.expert { " " span.badge.info { "专家" } } }
            dl.facts #inspector {
                dt { "状态" } dd { @if i.active { "在岗" } @else { span.badge.warn { "停用" } } }
                dt { "执法证号" } dd { code { (i.cert_no) } }
                dt { "所属部门" } dd { (i.department) }
                dt { "区域" } dd { (i.region) }
                dt { "专业领域" } dd { @if i.expertise.is_empty() { "—" } @else { (i.expertise.join("、")) } }
                dt { "回避" } dd {
                    @for c in &inspector.conflicts { div.conflict { (c.target_name) "：" (c.reason) } }
                    @if inspector.conflicts.is_empty() { "—" }
                }
            }
            @if user.has_any(WRITERS) {
                form.box #edit-form method="post" action=(format!("/inspectors/{id}")) {
                    h2 { "修改检查人员信息" }
                    p.hint { "停用后该人员不再进入此后固定的候选池；已抽中的检查组不受影响。" }
                    (csrf_field(&user))
                    (errors.show("form"))
                    (inspector_fields(&users, &depts, &values, &errors, ""))
                    button.primary type="submit" { "保存" }
                }
            }
        },
    ))
}

/// `POST /inspectors/{id}`: edits an inspector through `inspectors::update`.
async fn edit_inspector(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    post: CsrfForm,
) -> WebResult<Response> {
    let CsrfForm { user, form } = post;
    user.require(WRITERS)?;
    let mut errors = FieldErrors::new();
    let input = inspector_input(&form, &mut errors);
    if errors.is_empty() {
        let actor = user.auth.username.clone();
        match state
            .db
            .write(move |tx| inspectors::update(tx, &actor, id, &input))
            .await
        {
            Ok(_) => return Ok(see_other(&format!("/inspectors/{id}"))),
            Err(e) => absorb(&mut errors, e)?,
        }
    }
    let body = inspector_view(&state, user, id, Some(form), errors).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}
