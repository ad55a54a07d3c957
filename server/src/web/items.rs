//! The item list (抽查事项清单, 一单) in the console: the current items, a
//! form creating one, and a page per item with its version history and a
//! form making a new version. Both forms call the API's own domain
//! functions (`registry::items::insert` and `new_version`).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use suiji_mobile_core::vocab::Method;

use super::form::{CsrfForm, FieldErrors, FormData, csrf_field, input, select};
use super::layout::{method_label, page, target_type_label, time};
use super::registry::{READERS, WRITERS};
use super::session::WebUser;
use super::{WebResult, see_other};
use crate::AppState;
use crate::error::Error;
use crate::registry::items::{self, ItemClass, ItemInput, ItemVersion, NewItem};
use crate::registry::{TARGET_TYPES, departments};

/// Fields of the item forms a domain refusal may name.
const ITEM_FIELDS: &[&str] = &[
    "code",
    "name",
    "legal_basis",
    "department",
    "target_type",
    "methods",
    "content",
    "class",
    "default_ratio",
    "frequency",
    "qualification",
];

/// Routes of the item pages.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/items", get(items_page).post(create_item))
        .route("/items/{code}", get(item_page))
        .route("/items/{code}/versions", post(create_version))
}

async fn items_page(State(state): State<AppState>, user: WebUser) -> WebResult<Markup> {
    user.require(READERS)?;
    items_view(&state, user, FormData::default(), FieldErrors::new()).await
}

/// The current item list, with the new-item form (for writers) showing
/// `values` and `errors`.
async fn items_view(
    state: &AppState,
    user: WebUser,
    values: FormData,
    errors: FieldErrors,
) -> WebResult<Markup> {
    let (list, depts) = state
        .db
        .read(|c| Ok((items::current_all(c)?, departments::all(c)?)))
        .await?;
    Ok(page(
        "抽查事项清单",
        Some(&user),
        html! {
            h1 { "抽查事项清单（一单）" }
            div.table-wrap { table #items {
                thead { tr { th { "编码" } th { "名称" } th { "法律依据" } th { "实施部门" } th { "对象类型" }
                    th { "检查方式" } th { "类别" } th.num { "默认比例" } th { "版本" } } }
                tbody {
                    @for item in &list {
                        tr {
                            td { a href=(format!("/items/{}", item.code)) { code { (item.code) } } }
                            td { (item.input.name) }
                            td { (item.input.legal_basis) }
                            td { (item.input.department) }
                            td { (target_type_label(&item.input.target_type)) }
                            td { (methods_text(&item.input.methods)) }
                            td { (class_label(item.input.class)) }
                            td.num { (percent(item.input.default_ratio)) }
                            td { "v" (item.version) }
                        }
                    }
                    @if list.is_empty() { tr { td colspan="9" { "尚无抽查事项。" } } }
                }
            } }
            @if user.has_any(WRITERS) {
                form.box #item-form method="post" action="/items" {
                    h2 { "新增抽查事项" }
                    (csrf_field(&user))
                    (errors.show("form"))
                    div.row {
                        (input("事项编码（字母、数字、- _ .）", "code", "text", values.get("code"), &errors))
                        (input("事项名称", "name", "text", values.get("name"), &errors))
                    }
                    (item_fields(&depts, &values, &errors))
                    button.primary type="submit" { "新增事项" }
                }
            }
        },
    ))
}

/// The fields shared by the new-item and new-version forms (all but the code).
fn item_fields(
    depts: &[departments::Department],
    values: &FormData,
    errors: &FieldErrors,
) -> Markup {
    let mut dept_options = vec![(String::new(), "请选择实施部门".to_owned())];
    dept_options.extend(
        depts
            .iter()
            .map(|d| (d.code.clone(), format!("{}（{}）", d.name, d.code))),
    );
    let mut types = vec![(String::new(), "请选择对象类型".to_owned())];
    types.extend(
        TARGET_TYPES
            .iter()
            .map(|(c, l)| (c.to_string(), l.to_string())),
    );
    let classes = [
        ("general".to_owned(), "一般检查事项".to_owned()),
        ("key".to_owned(), "重点检查事项".to_owned()),
    ];
    let chosen = values.all("methods");
    html! {
        div.field.invalid[errors.get("legal_basis").is_some()] {
            label for="legal_basis" { "法律依据（必填）" }
            textarea #legal_basis name="legal_basis" rows="2" { (values.get("legal_basis")) }
            (errors.show("legal_basis"))
        }
        div.row {
            (select("实施部门", "department", &dept_options, values.get("department"), errors))
            (select("检查对象类型", "target_type", &types, values.get("target_type"), errors))
            (select("事项类别", "class", &classes, values.get("class"), errors))
        }
        div.field.invalid[errors.get("methods").is_some()] {
            span { "检查方式（至少一种）" }
            div { @for m in Method::ALL {
                label { input type="checkbox" name="methods" value=(m.code()) checked[chosen.iter().any(|c| c == m.code())]; " " (m.label()) " " }
            } }
            (errors.show("methods"))
        }
        div.field.invalid[errors.get("content").is_some()] {
            label for="content" { "检查内容" }
            textarea #content name="content" rows="2" { (values.get("content")) }
            (errors.show("content"))
        }
        div.row {
            (input("默认抽查比例（%）", "default_ratio", "number", values.get("default_ratio"), errors))
            (input("抽查频次（次/年）", "frequency", "number", values.get("frequency"), errors))
            (input("检查人员资质要求（可空）", "qualification", "text", values.get("qualification"), errors))
        }
    }
}

/// The form values of an item version, to pre-fill the new-version form.
fn values_of(item: &ItemVersion) -> FormData {
    let i = &item.input;
    let mut pairs = vec![
        ("name".to_owned(), i.name.clone()),
        ("legal_basis".to_owned(), i.legal_basis.clone()),
        ("department".to_owned(), i.department.clone()),
        ("target_type".to_owned(), i.target_type.clone()),
        ("content".to_owned(), i.content.clone()),
        ("class".to_owned(), i.class.as_str().to_owned()),
        ("default_ratio".to_owned(), percent_number(i.default_ratio)),
        ("frequency".to_owned(), i.frequency.to_string()),
        (
            "qualification".to_owned(),
            i.qualification.clone().unwrap_or_default(),
        ),
    ];
    pairs.extend(i.methods.iter().map(|m| ("methods".to_owned(), m.clone())));
    FormData::new(pairs)
}

/// Reads the item fields of a posted form. Missing or unreadable values are
/// recorded in `errors` (in Chinese); the domain checks the rest.
fn item_input(form: &FormData, errors: &mut FieldErrors) -> ItemInput {
    for (field, message) in [
        ("name", "请填写事项名称。"),
        (
            "legal_basis",
            "请填写法律依据：没有法律依据的事项不得列入清单。",
        ),
        ("department", "请选择实施部门。"),
        ("target_type", "请选择检查对象类型。"),
    ] {
        if form.get(field).is_empty() {
            errors.add(field, message);
        }
    }
    let methods = form.all("methods");
    if methods.is_empty() {
        errors.add("methods", "请至少选择一种检查方式。");
    }
    let class = match form.get("class") {
        "key" => ItemClass::Key,
        "general" => ItemClass::General,
        _ => {
            errors.add("class", "请选择事项类别。");
            ItemClass::General
        }
    };
    let default_ratio = match form.get("default_ratio").parse::<f64>() {
        Ok(percent) => percent / 100.0,
        Err(_) => {
            errors.add("default_ratio", "比例须为数字，如 5 表示 5%。");
            0.0
        }
    };
    let frequency = match form.get("frequency").parse::<u32>() {
        Ok(n) => n,
        Err(_) => {
            errors.add("frequency", "频次须为正整数，如每年 1 次填 1。");
            0
        }
    };
    ItemInput {
        name: form.get("name").to_owned(),
        legal_basis: form.get("legal_basis").to_owned(),
        department: form.get("department").to_owned(),
        target_type: form.get("target_type").to_owned(),
        methods,
        content: form.get("content").to_owned(),
        class,
        default_ratio,
        frequency,
        qualification: Some(form.get("qualification").to_owned()).filter(|q| !q.is_empty()),
    }
}

/// `POST /items`: creates an item through `items::insert`.
async fn create_item(State(state): State<AppState>, post: CsrfForm) -> WebResult<Response> {
    let CsrfForm { user, form } = post;
    user.require(WRITERS)?;
    let mut errors = FieldErrors::new();
    if form.get("code").is_empty() {
        errors.add("code", "请填写事项编码。");
    }
    let input = item_input(&form, &mut errors);
    if errors.is_empty() {
        let item = NewItem {
            code: form.get("code").to_owned(),
            input,
        };
        let actor = user.auth.username.clone();
        match state
            .db
            .write(move |tx| items::insert(tx, &actor, &item))
            .await
        {
            Ok(created) => return Ok(see_other(&format!("/items/{}", created.code))),
            Err(Error::Conflict(_)) => errors.add(
                "code",
                format!(
                    "编码“{}”已有抽查事项；修改请在该事项页面生成新版本。",
                    form.get("code")
                ),
            ),
            Err(e) => errors.absorb(e, ITEM_FIELDS)?,
        }
    }
    let body = items_view(&state, user, form, errors).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}

async fn item_page(
    State(state): State<AppState>,
    user: WebUser,
    Path(code): Path<String>,
) -> WebResult<Markup> {
    user.require(READERS)?;
    item_view(&state, user, code, None, FieldErrors::new()).await
}

/// One item: its current version, its history, and (for writers) the
/// new-version form showing `values` (the current version when `None`) and
/// `errors`.
async fn item_view(
    state: &AppState,
    user: WebUser,
    code: String,
    values: Option<FormData>,
    errors: FieldErrors,
) -> WebResult<Markup> {
    let (history, depts) = state
        .db
        .read(move |c| Ok((items::versions_of(c, &code)?, departments::all(c)?)))
        .await?;
    let Some(current) = history.iter().find(|v| v.current).or(history.last()) else {
        return Err(Error::NotFound("item".into()).into());
    };
    let values = values.unwrap_or_else(|| values_of(current));
    let i = &current.input;
    Ok(page(
        &i.name,
        Some(&user),
        html! {
            p.muted { a href="/items" { "抽查事项清单" } " › " (current.code) }
            h1 { (i.name) }
            dl.facts #current {
                dt { "事项编码" } dd { code { (current.code) } }
                dt { "现行版本" } dd { "v" (current.version) "（" (time(&current.created_at)) "，" (current.created_by) "）" }
                dt { "法律依据" } dd { (i.legal_basis) }
                dt { "实施部门" } dd { (i.department) }
                dt { "检查对象类型" } dd { (target_type_label(&i.target_type)) }
                dt { "检查方式" } dd { (methods_text(&i.methods)) }
                dt { "检查内容" } dd { @if i.content.is_empty() { "—" } @else { (i.content) } }
                dt { "事项类别" } dd { (class_label(i.class)) }
                dt { "默认抽查比例" } dd { (percent(i.default_ratio)) }
                dt { "抽查频次" } dd { (i.frequency) " 次/年" }
                dt { "资质要求" } dd { (i.qualification.as_deref().unwrap_or("—")) }
            }
            h2 { "版本历史" }
            p.hint { "已有任务和检查记录固定使用其当时的版本；修改事项只会新增版本，不会改写旧版本。" }
            div.table-wrap { table #versions {
                thead { tr { th { "版本" } th { "名称" } th { "法律依据" } th { "检查方式" } th { "类别" } th.num { "默认比例" } th { "生成时间" } th { "生成人" } } }
                tbody {
                    @for v in history.iter().rev() {
                        tr {
                            td { "v" (v.version) @if v.current { " " span.badge.ok { "现行" } } }
                            td { (v.input.name) }
                            td { (v.input.legal_basis) }
                            td { (methods_text(&v.input.methods)) }
                            td { (class_label(v.input.class)) }
                            td.num { (percent(v.input.default_ratio)) }
                            td { (time(&v.created_at)) }
                            td { (v.created_by) }
                        }
                    }
                }
            } }
            @if user.has_any(WRITERS) {
                form.box #version-form method="post" action=(format!("/items/{}/versions", current.code)) {
                    h2 { "生成新版本" }
                    p.hint { "已按现行版本填好；修改后提交即生成 v" (current.version + 1) "。内容未变则不生成新版本。" }
                    (csrf_field(&user))
                    (errors.show("form"))
                    (input("事项名称", "name", "text", values.get("name"), &errors))
                    (item_fields(&depts, &values, &errors))
                    button.primary type="submit" { "生成新版本" }
                }
            }
        },
    ))
}

/// `POST /items/{code}/versions`: makes a new version through
/// `items::new_version`.
async fn create_version(
    State(state): State<AppState>,
    Path(code): Path<String>,
    post: CsrfForm,
) -> WebResult<Response> {
    let CsrfForm { user, form } = post;
    user.require(WRITERS)?;
    let mut errors = FieldErrors::new();
    let input = item_input(&form, &mut errors);
    if errors.is_empty() {
        let actor = user.auth.username.clone();
        let item_code = code.clone();
        match state
            .db
            .write(move |tx| items::new_version(tx, &actor, &item_code, &input))
            .await
        {
            Ok(updated) => return Ok(see_other(&format!("/items/{}", updated.code))),
            Err(e) => errors.absorb(e, ITEM_FIELDS)?,
        }
    }
    let body = item_view(&state, user, code, Some(form), errors).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}

/// Method codes in Chinese, joined by 、.
fn methods_text(methods: &[String]) -> String {
    methods
        .iter()
        .map(|m| method_label(m))
        .collect::<Vec<_>>()
        .join("、")
}

/// 重点 or 一般.
fn class_label(class: ItemClass) -> &'static str {
    match class {
        ItemClass::Key => "重点",
        ItemClass::General => "一般",
    }
}

/// A ratio as a percentage for display, e.g. `10%` or `2.5%`.
fn percent(ratio: f64) -> String {
    format!("{}%", percent_number(ratio))
}

/// A ratio as the number of percent a form shows (`0.025` → `2.5`), with
/// no float noise, so that posting it back gives the same ratio.
fn percent_number(ratio: f64) -> String {
    let text = format!("{:.6}", ratio * 100.0);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}
