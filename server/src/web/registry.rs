//! Registry pages (一单两库): inspection items, targets with search, filters
//! and CSV import, inspectors, plans and tasks.

use axum::extract::{Multipart, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, http::StatusCode};
use chrono::NaiveDate;
use maud::{Markup, html};
use serde::Deserialize;

use super::form::{CsrfForm, FieldErrors, FormData, csrf_field, input, post_button, select};
use super::layout::{page, pager, target_type_label, time};
use super::session::WebUser;
use super::{WebError, WebResult, see_other};
use crate::AppState;
use crate::auth::Role;
use crate::draw::records;
use crate::error::Error;
use crate::plans::{self, Conditions, NewPlan, NewTask, TaskItemInput};
use crate::registry::import::{
    self, CsvEncoding, FileFormat, ImportMode, ImportParams, ImportReport,
};
use crate::registry::inspectors::{self, InspectorFilter};
use crate::registry::targets::{self, TargetFilter};
use crate::registry::{RISK_CLASSES, TARGET_TYPES, departments, items};
use crate::review::publication::publish_task_results;
use crate::visibility::{self, Sight};

/// Who reads the registry pages.
pub const READERS: &[Role] = crate::registry::READERS;
/// Who changes the registry.
pub const WRITERS: &[Role] = crate::registry::WRITERS;

/// Routes of the registry pages.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/targets", get(targets_page))
        .route(
            "/targets/import",
            // The form's other fields around the file: the file's own limit answers first.
            post(import_targets).layer(axum::extract::DefaultBodyLimit::max(
                import::IMPORT_BODY_LIMIT + 64 * 1024,
            )),
        )
        .route(
            "/inspectors",
            get(inspectors_page).post(super::inspectors::create_inspector),
        )
        .route("/plans", get(plans_page).post(create_plan))
        .route("/plans/{id}", get(plan_page))
        .route("/plans/{id}/tasks", post(create_task))
        .route("/plans/{id}/publish", post(publish_plan))
        .route("/tasks/{id}", get(task_page))
        .route("/tasks/{id}/dossier.zip", get(task_dossier))
        .route("/tasks/{id}/publish-results", post(publish_results))
}

/// Query of the target list, as the filter form sends it (empty = no filter).
#[derive(Debug, Default, Deserialize)]
struct TargetQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    industry: String,
    #[serde(default)]
    target_type: String,
    #[serde(default)]
    risk_class: String,
    #[serde(default)]
    flag: String,
    page: Option<u32>,
}

fn some(s: &str) -> Option<String> {
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

async fn targets_page(
    State(state): State<AppState>,
    user: WebUser,
    Query(q): Query<TargetQuery>,
) -> WebResult<Markup> {
    user.require(READERS)?;
    let filter = TargetFilter {
        q: some(&q.q),
        region: some(&q.region),
        industry: some(&q.industry),
        target_type: some(&q.target_type),
        risk_class: some(&q.risk_class),
        flag_abnormal: (q.flag == "abnormal").then_some(true),
        flag_serious: (q.flag == "serious").then_some(true),
        page: Some(q.page.unwrap_or(1).max(1)),
        per_page: Some(50),
    };
    let found = state.db.read(move |c| targets::search(c, &filter)).await?;
    let base = format!(
        "/targets?q={}&region={}&industry={}&target_type={}&risk_class={}&flag={}",
        enc(&q.q),
        enc(&q.region),
        enc(&q.industry),
        enc(&q.target_type),
        enc(&q.risk_class),
        enc(&q.flag)
    );
    let errors = FieldErrors::new();
    let mut types = vec![(String::new(), "全部类型".to_owned())];
    types.extend(
        TARGET_TYPES
            .iter()
            .map(|(c, l)| (c.to_string(), l.to_string())),
    );
    let mut risks = vec![(String::new(), "全部等级".to_owned())];
    risks.extend(
        RISK_CLASSES
            .iter()
            .map(|r| (r.to_string(), format!("{r} 类"))),
    );
    let flags = [
        (String::new(), "不限".to_owned()),
        ("abnormal".to_owned(), "经营异常名录".to_owned()),
        ("serious".to_owned(), "严重违法失信".to_owned()),
    ];
    Ok(page(
        "检查对象名录库",
        Some(&user),
        html! {
            h1 { "检查对象名录库" }
            form.filters.box method="get" action="/targets" {
                (input("名称或统一社会信用代码", "q", "search", &q.q, &errors))
                (input("区域", "region", "text", &q.region, &errors))
                (input("行业", "industry", "text", &q.industry, &errors))
                (select("类型", "target_type", &types, &q.target_type, &errors))
                (select("风险等级", "risk_class", &risks, &q.risk_class, &errors))
                (select("名单", "flag", &flags, &q.flag, &errors))
                div.field { button.primary type="submit" { "查询" } }
            }
            (target_table(&found.items))
            (pager(&base, found.page, found.per_page, found.total))
            @if user.has_any(WRITERS) {
                (import_form(&user, &FieldErrors::new()))
            }
        },
    ))
}

fn enc(s: &str) -> String {
    super::session::form_urlencode(s)
}

fn target_table(list: &[targets::Target]) -> Markup {
    html! {
        div.table-wrap { table #targets {
            thead { tr { th { "统一社会信用代码" } th { "名称" } th { "类型" } th { "行业" } th { "区域" }
                th { "登记状态" } th { "风险" } th { "标记" } } }
            tbody {
                @for t in list {
                    tr {
                        td { code { (t.input.uscc) } }
                        td { a href=(format!("/targets/{}", t.id)) { (t.input.name) } }
                        td { (target_type_label(&t.input.target_type)) }
                        td { (t.input.industry) }
                        td { (t.input.region) }
                        td { (t.input.reg_status) }
                        td { (t.input.risk_class) }
                        td {
                            @if t.input.flag_abnormal { span.badge.warn { "经营异常" } " " }
                            @if t.input.flag_serious { span.badge.danger { "严重违法失信" } " " }
                            @if t.input.complaints > 0 { span.badge.info { "投诉 " (t.input.complaints) } }
                        }
                    }
                }
                @if list.is_empty() { tr { td colspan="8" { "没有符合条件的检查对象。" } } }
            }
        } }
    }
}

fn import_form(user: &WebUser, errors: &FieldErrors) -> Markup {
    let modes = [
        (
            "all_or_nothing".to_owned(),
            "有错误行则全部不导入".to_owned(),
        ),
        ("valid_rows".to_owned(), "导入正确行，列出错误行".to_owned()),
    ];
    let encodings = [
        ("auto".to_owned(), "自动识别（UTF-8 / GBK）".to_owned()),
        ("utf-8".to_owned(), "UTF-8".to_owned()),
        ("gbk".to_owned(), "GBK（Excel 中文版另存的 CSV）".to_owned()),
    ];
    html! {
        form.box #import method="post" action="/targets/import" enctype="multipart/form-data" {
            h2 { "批量导入（CSV 或 Excel）" }
            p.hint { "表头可用中文或英文：统一社会信用代码、名称、类型、行业、区域、地址、法定代表人、登记状态、风险等级，可选 经营异常名录、严重违法失信、投诉。代码已登记的行将更新该对象。Excel 文件读取第一个工作表；错误行按 Excel / WPS 的行号列出（表头为第 1 行）。" }
            (csrf_field(user))
            @if let Some(e) = errors.get("csrf") { p.field-error { (e) } }
            div.field.invalid[errors.get("file").is_some()] {
                label for="file" { "CSV 或 XLSX 文件" }
                input #file type="file" name="file" accept=".csv,text/csv,.xlsx,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
                (errors.show("file"))
            }
            div.row {
                (select("出错时", "mode", &modes, "all_or_nothing", errors))
                (select("编码", "encoding", &encodings, "auto", errors))
            }
            progress hidden {}
            p.progress aria-live="polite" {}
            button.primary type="submit" { "上传并导入" }
        }
    }
}

/// `POST /targets/import`: the file from a multipart form, through the
/// API's own import (the same bound on imports at once, the same spooling to disk and
/// parsing outside the write lock), answered with its row-by-row report.
async fn import_targets(
    State(state): State<AppState>,
    user: WebUser,
    mut multipart: Multipart,
) -> WebResult<Response> {
    let mut csrf = String::new();
    let mut received = None;
    let mut params = ImportParams::default();
    let bad = |e: axum::extract::multipart::MultipartError| {
        WebError::from(Error::Malformed(format!("上传未完成：{e}")))
    };
    let form_error = |status: StatusCode, message: &str| {
        let mut errors = FieldErrors::new();
        errors.add("file", message);
        (
            status,
            page(
                "导入检查对象",
                Some(&user),
                html! { h1 { "导入检查对象" } (import_form(&user, &errors)) },
            ),
        )
    };
    // Held until the answer, as the API's import holds it.
    let mut permit = None;
    let mut declared = None;
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        match field.name().unwrap_or("") {
            "csrf" => csrf = field.text().await.map_err(bad)?,
            "mode" => {
                params.mode = match field.text().await.map_err(bad)?.as_str() {
                    "valid_rows" => ImportMode::ValidRows,
                    _ => ImportMode::AllOrNothing,
                }
            }
            "encoding" => {
                params.encoding = match field.text().await.map_err(bad)?.as_str() {
                    "utf-8" => CsvEncoding::Utf8,
                    "gbk" => CsvEncoding::Gbk,
                    _ => CsvEncoding::Auto,
                }
            }
            "file" if received.is_none() => {
                // The form sends its token first: nothing of the file is read for a request
                // that is not allowed to import.
                if !state.csrf.check(user.auth.session_id, &csrf) {
                    return Err(WebError::for_user(Error::Csrf, &user));
                }
                user.require(WRITERS)?;
                let Some(taken) = state.imports.try_take() else {
                    let message = format!(
                        "已有 {} 个导入正在进行，请 {} 秒后重新上传。",
                        import::MAX_CONCURRENT_IMPORTS,
                        import::IMPORT_RETRY_AFTER_SECONDS
                    );
                    // The browser sends the rest regardless: read and dropped (within the
                    // route's body limit), so the answer is not lost to a reset connection.
                    while field.chunk().await.map_err(bad)?.is_some() {}
                    drop(field);
                    while let Some(mut rest) = multipart.next_field().await.map_err(bad)? {
                        while rest.chunk().await.map_err(bad)?.is_some() {}
                    }
                    let mut busy =
                        form_error(StatusCode::SERVICE_UNAVAILABLE, &message).into_response();
                    busy.headers_mut().insert(
                        axum::http::header::RETRY_AFTER,
                        import::IMPORT_RETRY_AFTER_SECONDS.into(),
                    );
                    return Ok(busy);
                };
                permit = Some(taken);
                let named_xlsx = field
                    .file_name()
                    .is_some_and(|name| name.to_lowercase().ends_with(".xlsx"));
                declared = if named_xlsx {
                    Some(FileFormat::Xlsx)
                } else {
                    field.content_type().and_then(import::declared_format)
                };
                let mut spool = import::Spool::new(&state.config.data_dir)?;
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    spool.push(&chunk)?;
                }
                received = Some(spool.finish()?);
            }
            _ => {}
        }
    }
    if !state.csrf.check(user.auth.session_id, &csrf) {
        return Err(WebError::for_user(Error::Csrf, &user));
    }
    user.require(WRITERS)?;
    let Some((file, digest)) = received.filter(|(_, digest)| digest.bytes > 0) else {
        return Ok(form_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "请选择要导入的 CSV 或 XLSX 文件。",
        )
        .into_response());
    };
    let actor = user.auth.username.clone();
    let report = match import::run(&state, actor, file, digest, params, declared).await {
        Ok(report) => report,
        Err(e @ Error::Invalid { .. }) => {
            let message = format!("文件无法读取：{}", super::form::reason_text(&e));
            return Ok(form_error(StatusCode::UNPROCESSABLE_ENTITY, &message).into_response());
        }
        Err(e) => return Err(e.into()),
    };
    drop(permit);
    let status = if report.committed || report.refused() == 0 {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, import_report(&user, &report)).into_response())
}

fn import_report(user: &WebUser, report: &ImportReport) -> Markup {
    let kind = match (report.format, report.encoding) {
        (FileFormat::Xlsx, _) => "Excel 工作簿（XLSX，第一个工作表）",
        (FileFormat::Csv, CsvEncoding::Gbk) => "CSV（GBK）",
        (FileFormat::Csv, _) => "CSV（UTF-8）",
    };
    page(
        "导入结果",
        Some(user),
        html! {
            h1 { "导入结果" }
            section.box #import-report {
                @if report.committed {
                    p.notice { "已导入：新增 " (report.created) " 个，更新 " (report.updated) " 个检查对象。" }
                } @else if report.refused() == 0 {
                    p.notice { "文件中没有数据行，未写入任何内容。" }
                } @else {
                    p.alert.error-text { "有 " (report.refused()) " 行有误，按“有错误行则全部不导入”未写入任何内容。改正后重新上传，或选择“导入正确行”。" }
                }
                dl.facts {
                    dt { "数据行" } dd { (report.rows) }
                    dt { "正确行" } dd { (report.valid) }
                    dt { "错误行" } dd { (report.refused()) }
                    dt { "文件" } dd { (kind) }
                }
            }
            @if !report.errors.is_empty() {
                h2 { "错误行" }
                p.hint { "行号与 Excel / WPS 中显示的一致：表头为第 1 行，第一行数据为第 2 行。" }
                @if report.more_errors > 0 {
                    p.hint { "下表列出前 " (report.errors.len()) " 行，另有 " (report.more_errors) " 行有误未列出。" }
                }
                div.table-wrap { table #import-errors {
                    thead { tr { th.num { "行号" } th { "字段" } th { "原因" } } }
                    tbody {
                        @for e in &report.errors {
                            tr { td.num { (e.row) } td { (e.field.as_deref().map(column_label).unwrap_or("—")) } td { (e.reason) } }
                        }
                    }
                } }
            }
            p { a.button href="/targets" { "返回检查对象名录库" } }
        },
    )
}

/// The Chinese header of a CSV column, as the import accepts it.
fn column_label(field: &str) -> &str {
    match field {
        "uscc" => "统一社会信用代码",
        "name" => "名称",
        "target_type" => "类型",
        "industry" => "行业",
        "region" => "区域",
        "address" => "地址",
        "legal_rep" => "法定代表人",
        "reg_status" => "登记状态",
        "risk_class" => "风险等级",
        "flag_abnormal" => "经营异常名录",
        "flag_serious" => "严重违法失信",
        "complaints" => "投诉",
        other => other,
    }
}

/// Filters of the inspector directory, as the filter form sends them.
#[derive(Debug, Default, Deserialize)]
pub(super) struct InspectorQuery {
    #[serde(default)]
    department: String,
    #[serde(default)]
    active: String,
}

async fn inspectors_page(
    State(state): State<AppState>,
    user: WebUser,
    Query(q): Query<InspectorQuery>,
) -> WebResult<Markup> {
    user.require(READERS)?;
    inspectors_view(&state, user, &q, DirectoryForms::new()).await
}

/// What the forms of the inspector directory show: posted values and their
/// errors, for the conflict form and the new-inspector form.
#[derive(Debug, Default)]
pub(super) struct DirectoryForms {
    /// Values of the conflict form.
    pub conflict_values: FormData,
    /// Errors of the conflict form.
    pub conflict_errors: FieldErrors,
    /// Values of the new-inspector form.
    pub new_values: FormData,
    /// Errors of the new-inspector form.
    pub new_errors: FieldErrors,
}

impl DirectoryForms {
    /// Forms as first shown: empty, a new inspector active.
    pub fn new() -> DirectoryForms {
        DirectoryForms {
            new_values: FormData::new(vec![("active".to_owned(), "yes".to_owned())]),
            ..DirectoryForms::default()
        }
    }
}

/// The inspector directory filtered by `q`, with the new-inspector and
/// conflict forms (for writers) showing `forms`.
pub(super) async fn inspectors_view(
    state: &AppState,
    user: WebUser,
    q: &InspectorQuery,
    forms: DirectoryForms,
) -> WebResult<Markup> {
    let filter = InspectorFilter {
        department: some(&q.department),
        active: match q.active.as_str() {
            "yes" => Some(true),
            "no" => Some(false),
            _ => None,
        },
        expertise: None,
    };
    let (list, everyone, depts, users) = state
        .db
        .read(move |c| {
            Ok((
                inspectors::search(c, &filter)?,
                inspectors::search(c, &InspectorFilter::default())?,
                departments::all(c)?,
                crate::accounts::all_users(c)?,
            ))
        })
        .await?;
    let users = super::inspectors::inspector_accounts(users);
    let writer = user.has_any(WRITERS);
    let errors = FieldErrors::new();
    let mut dept_options = vec![(String::new(), "全部部门".to_owned())];
    dept_options.extend(depts.iter().map(|d| (d.code.clone(), d.name.clone())));
    let active = [
        (String::new(), "不限".to_owned()),
        ("yes".to_owned(), "在岗".to_owned()),
        ("no".to_owned(), "停用".to_owned()),
    ];
    Ok(page(
        "执法检查人员名录库",
        Some(&user),
        html! {
            h1 { "执法检查人员名录库" }
            form.filters.box method="get" action="/inspectors" {
                (select("部门", "department", &dept_options, &q.department, &errors))
                (select("状态", "active", &active, &q.active, &errors))
                div.field { button.primary type="submit" { "筛选" } }
            }
            div.table-wrap { table {
                thead { tr { th { "姓名" } th { "执法证号" } th { "部门" } th { "专业领域" } th { "区域" }
                    th { "状态" } th { "回避" } } }
                tbody {
                    @for i in &list {
                        tr {
                            td { a href=(format!("/inspectors/{}", i.id)) { (i.input.name) } @if i.input.expert { " " span.badge.info { "专家" } } }
                            td { code { (i.input.cert_no) } }
                            td { (i.input.department) }
                            td { (i.input.expertise.join("、")) }
                            td { (i.input.region) }
                            td { @if i.input.active { "在岗" } @else { span.badge.warn { "停用" } } }
                            td {
                                @for c in &i.conflicts {
                                    div.conflict {
                                        (c.target_name) "：" (c.reason)
                                        @if writer {
                                            " " (post_button(&user, &format!("/inspectors/{}/conflicts/{}/delete", i.id, c.target_id), "撤销", "link"))
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if list.is_empty() { tr { td colspan="7" { "没有符合条件的检查人员。" } } }
                }
            } }
            p.muted { "共 " (list.len()) " 人" }
            @if writer {
                (super::inspectors::new_inspector_form(&user, &users, &depts, &forms.new_values, &forms.new_errors))
                (super::recusal::conflict_form(&user, &everyone, &forms.conflict_values, &forms.conflict_errors))
            }
        },
    ))
}

async fn plans_page(State(state): State<AppState>, user: WebUser) -> WebResult<Markup> {
    user.require(READERS)?;
    plans_view(&state, user, FormData::default(), FieldErrors::new()).await
}

async fn plans_view(
    state: &AppState,
    user: WebUser,
    values: FormData,
    errors: FieldErrors,
) -> WebResult<Markup> {
    let (list, depts) = state
        .db
        .read(|c| Ok((plans::all_plans(c)?, departments::all(c)?)))
        .await?;
    let dept_options: Vec<(String, String)> = depts
        .iter()
        .map(|d| (d.code.clone(), format!("{}（{}）", d.name, d.code)))
        .collect();
    Ok(page(
        "抽查计划",
        Some(&user),
        html! {
            h1 { "抽查计划" }
            div.table-wrap { table #plans {
                thead { tr { th { "计划编号" } th { "名称" } th.num { "年度" } th { "部门" } th.num { "任务数" } th { "状态" } } }
                tbody {
                    @for p in &list {
                        tr {
                            td { a href=(format!("/plans/{}", p.id)) { (p.number) } }
                            td { (p.name) }
                            td.num { (p.year) }
                            td { (p.department) }
                            td.num { (p.tasks.len()) }
                            td { @if p.published_at.is_some() { span.badge.ok { "已公布" } } @else { span.badge.warn { "未公布" } } }
                        }
                    }
                    @if list.is_empty() { tr { td colspan="6" { "尚无抽查计划。" } } }
                }
            } }
            @if user.has_any(WRITERS) {
                form.box method="post" action="/plans" {
                    h2 { "新建抽查计划" }
                    (csrf_field(&user))
                    (errors.show("form"))
                    div.row {
                        (input("计划编号", "number", "text", values.get("number"), &errors))
                        (input("计划名称", "name", "text", values.get("name"), &errors))
                        (input("年度", "year", "number", values.get("year"), &errors))
                        (select("制定部门", "department", &dept_options, values.get("department"), &errors))
                    }
                    button.primary type="submit" { "创建计划" }
                }
            }
        },
    ))
}

async fn create_plan(State(state): State<AppState>, post: CsrfForm) -> WebResult<Response> {
    let CsrfForm { user, form } = post;
    user.require(WRITERS)?;
    let mut errors = FieldErrors::new();
    for (field, label) in [
        ("number", "计划编号"),
        ("name", "计划名称"),
        ("department", "制定部门"),
    ] {
        if form.get(field).is_empty() {
            errors.add(field, format!("请填写{label}。"));
        }
    }
    let year: Option<i32> = form.get("year").parse().ok();
    if year.is_none() {
        errors.add("year", "请填写四位数的年度，如 2026。");
    }
    if errors.is_empty() {
        let plan = NewPlan {
            number: form.get("number").to_owned(),
            name: form.get("name").to_owned(),
            year: year.unwrap_or_default(),
            department: form.get("department").to_owned(),
        };
        let actor = user.auth.username.clone();
        match state
            .db
            .write(move |tx| plans::insert_plan(tx, &actor, &plan))
            .await
        {
            Ok(plan) => return Ok(see_other(&format!("/plans/{}", plan.id))),
            Err(e) => errors.absorb(e, &["number", "name", "year", "department"])?,
        }
    }
    let body = plans_view(&state, user, form, errors).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}

async fn plan_page(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<i64>,
) -> WebResult<Markup> {
    user.require(READERS)?;
    plan_view(&state, user, id, FormData::default(), FieldErrors::new()).await
}

async fn plan_view(
    state: &AppState,
    user: WebUser,
    id: i64,
    values: FormData,
    errors: FieldErrors,
) -> WebResult<Markup> {
    let (plan, all_items) = state
        .db
        .read(move |c| Ok((plans::get_plan_by_id(c, id)?, items::current_all(c)?)))
        .await?;
    let chosen = values.all("items");
    let risks = values.all("risk_classes");
    Ok(page(
        &plan.name,
        Some(&user),
        html! {
            p.muted { a href="/plans" { "抽查计划" } " › " (plan.number) }
            h1 { (plan.name) }
            dl.facts {
                dt { "计划编号" } dd { (plan.number) }
                dt { "年度" } dd { (plan.year) }
                dt { "制定部门" } dd { (plan.department) }
                dt { "状态" } dd { @match &plan.published_at { Some(at) => { "已公布（" (time(at)) "）" }, None => "未公布" } }
            }
            @if plan.published_at.is_none() && user.has_any(WRITERS) {
                p { (post_button(&user, &format!("/plans/{id}/publish"), "公布计划及其任务", "")) }
            }
            h2 { "抽查任务" }
            div.table-wrap { table #tasks {
                thead { tr { th { "任务编号" } th { "名称" } th { "类型" } th { "抽取" } th { "检查期间" } th { "事项" } th { "" } } }
                tbody {
                    @for t in &plan.tasks {
                        tr {
                            td { a href=(format!("/tasks/{}", t.id)) { (t.number) } }
                            td { (t.name) @if t.joint { " " span.badge.info { "联合" } } }
                            td { @if t.directed { "定向" } @else { "不定向" } }
                            td { @if let Some(c) = t.count { (c) " 户" } @else if let Some(r) = t.ratio { (format!("{:.1}%", r * 100.0)) } }
                            td { (t.window_start) " 至 " (t.window_end) }
                            td { (t.items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join("、")) }
                            td { @if user.has_any(crate::web::draw::DRAWERS) { a href=(format!("/tasks/{}/draw", t.id)) { "摇号" } } }
                        }
                    }
                    @if plan.tasks.is_empty() { tr { td colspan="7" { "尚无任务。" } } }
                }
            } }
            @if user.has_any(WRITERS) {
                form.box #new-task method="post" action=(format!("/plans/{id}/tasks")) {
                    h2 { "新建抽查任务" }
                    (csrf_field(&user))
                    (errors.show("form"))
                    div.row {
                        (input("任务编号", "number", "text", values.get("number"), &errors))
                        (input("任务名称", "name", "text", values.get("name"), &errors))
                    }
                    div.row {
                        (select("抽查类型", "directed", &[("yes".into(), "定向（按条件抽取）".into()), ("no".into(), "不定向（全库抽取）".into())], values.get("directed"), &errors))
                        (input("行业（定向，多个用逗号分隔）", "industries", "text", values.get("industries"), &errors))
                        (input("区域（定向，多个用逗号分隔）", "regions", "text", values.get("regions"), &errors))
                    }
                    div.field.invalid[errors.get("conditions").is_some()] {
                        span { "风险等级（定向）" }
                        div { @for r in RISK_CLASSES {
                            label { input type="checkbox" name="risk_classes" value=(r) checked[risks.iter().any(|x| x == r)]; " " (r) " 类 " }
                        } }
                        (errors.show("conditions"))
                    }
                    div.row {
                        (input("抽取户数", "count", "number", values.get("count"), &errors))
                        (input("或抽取比例（%）", "ratio", "number", values.get("ratio"), &errors))
                    }
                    div.row {
                        (input("检查开始日期", "window_start", "date", values.get("window_start"), &errors))
                        (input("检查结束日期", "window_end", "date", values.get("window_end"), &errors))
                    }
                    div.field.invalid[errors.get("items").is_some()] {
                        span { "抽查事项" }
                        @for item in &all_items {
                            label { input type="checkbox" name="items" value=(item.code) checked[chosen.contains(&item.code)]; " " (item.code) " " (item.input.name) "（" (item.input.department) "）" }
                            br;
                        }
                        (errors.show("items"))
                    }
                    div.field { label { input type="checkbox" name="joint" value="yes" checked[values.get("joint") == "yes"]; " 联合抽查（多部门事项一次检查）" } }
                    button.primary type="submit" { "创建任务" }
                }
            }
        },
    ))
}

fn list_of(text: &str) -> Vec<String> {
    text.split([',', '，', '、'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn create_task(
    State(state): State<AppState>,
    Path(plan_id): Path<i64>,
    post: CsrfForm,
) -> WebResult<Response> {
    let CsrfForm { user, form } = post;
    user.require(WRITERS)?;
    let mut errors = FieldErrors::new();
    for (field, label) in [("number", "任务编号"), ("name", "任务名称")] {
        if form.get(field).is_empty() {
            errors.add(field, format!("请填写{label}。"));
        }
    }
    let date = |field: &str, errors: &mut FieldErrors| -> Option<NaiveDate> {
        let parsed = form.get(field).parse().ok();
        if parsed.is_none() {
            errors.add(field, "请选择日期。");
        }
        parsed
    };
    let window_start = date("window_start", &mut errors);
    let window_end = date("window_end", &mut errors);
    let (count, ratio) = (form.get("count"), form.get("ratio"));
    let (mut count_n, mut ratio_n) = (None, None);
    match (count.is_empty(), ratio.is_empty()) {
        (false, true) => match count.parse::<u32>() {
            Ok(n) => count_n = Some(n),
            Err(_) => errors.add("count", "户数须为正整数。"),
        },
        (true, false) => match ratio.parse::<f64>() {
            Ok(r) => ratio_n = Some(r / 100.0),
            Err(_) => errors.add("ratio", "比例须为数字，如 5 表示 5%。"),
        },
        _ => errors.add("count", "请填写抽取户数或抽取比例（二选一）。"),
    }
    let items = form.all("items");
    if items.is_empty() {
        errors.add("items", "请至少选择一个抽查事项。");
    }
    let directed = form.get("directed") != "no";
    if errors.is_empty() {
        let task = NewTask {
            number: form.get("number").to_owned(),
            name: form.get("name").to_owned(),
            directed,
            conditions: Conditions {
                industries: list_of(form.get("industries")),
                regions: list_of(form.get("regions")),
                risk_classes: form.all("risk_classes"),
                ..Conditions::default()
            },
            ratio: ratio_n,
            count: count_n,
            items: items
                .iter()
                .map(|code| TaskItemInput {
                    code: code.clone(),
                    version: None,
                    department: None,
                })
                .collect(),
            window_start: window_start.unwrap_or_default(),
            window_end: window_end.unwrap_or_default(),
            department: None,
            joint: form.get("joint") == "yes",
        };
        let actor = user.auth.username.clone();
        match state
            .db
            .write(move |tx| plans::insert_task(tx, &actor, plan_id, &task))
            .await
        {
            Ok(task) => return Ok(see_other(&format!("/tasks/{}", task.id))),
            Err(e) => errors.absorb(
                e,
                &[
                    "number",
                    "name",
                    "conditions",
                    "count",
                    "ratio",
                    "items",
                    "window_start",
                    "window_end",
                ],
            )?,
        }
    }
    let body = plan_view(&state, user, plan_id, form, errors).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}

async fn publish_plan(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    post: CsrfForm,
) -> WebResult<Response> {
    post.user.require(WRITERS)?;
    let actor = post.user.auth.username.clone();
    state
        .db
        .write(move |tx| plans::publish(tx, &actor, id))
        .await?;
    Ok(see_other(&format!("/plans/{id}")))
}

/// `POST /tasks/{id}/publish-results`: a supervisor publishes every
/// approved record of the task at once.
async fn publish_results(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    post: CsrfForm,
) -> WebResult<Response> {
    post.user.require(&[Role::Supervisor])?;
    let auth = post.user.auth.clone();
    let outcome = state
        .db
        .write(move |tx| publish_task_results(tx, &auth, id))
        .await?;
    let published = outcome["published"].as_array().map_or(0, Vec::len);
    let skipped = outcome["skipped"].as_array().map_or(0, Vec::len);
    let waiting = outcome["not_approved"].as_i64().unwrap_or(0);
    Ok(see_other(&format!(
        "/tasks/{id}?published={published}&skipped={skipped}&waiting={waiting}"
    )))
}

/// What the task page reports after publishing a task's results.
#[derive(Debug, Default, Deserialize)]
pub(super) struct TaskParams {
    published: Option<usize>,
    skipped: Option<usize>,
    waiting: Option<i64>,
    done: Option<String>,
}

/// `GET /tasks/{id}/dossier.zip`: the task's dossier, as the API streams it, for whoever
/// may export it (`dossier::ensure_may_export`).
async fn task_dossier(
    State(state): State<AppState>,
    user: WebUser,
    headers: axum::http::HeaderMap,
    Path(id): Path<i64>,
) -> WebResult<Response> {
    let auth = user.auth.clone();
    crate::dossier::routes::stream(state, auth, &headers, id)
        .await
        .map_err(|e| WebError::for_user(e, &user))
}

async fn task_page(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<i64>,
    Query(done): Query<TaskParams>,
) -> WebResult<Markup> {
    user.require(READERS)?;
    task_view(
        &state,
        user,
        id,
        &done,
        FormData::default(),
        FieldErrors::new(),
    )
    .await
}

/// A task with its items, conditions and records, and the redraw form (for
/// drawers) showing `values` and `errors`.
pub(super) async fn task_view(
    state: &AppState,
    user: WebUser,
    id: i64,
    done: &TaskParams,
    values: FormData,
    errors: FieldErrors,
) -> WebResult<Markup> {
    let auth = user.auth.clone();
    let current = state.clone();
    let (task, visible, drawn, names, warnings) = state
        .db
        .write(move |tx| {
            let task = plans::get_task_by_id(tx, id)?;
            let warnings = plans::task_warnings(tx, &task, &current.calendar())?;
            crate::review::refresh_stale(tx)?;
            // Only the records the user may see (docs/draw.md, "Who sees a drawn list").
            let visible = visibility::visible_records(tx, &auth, Some(id))?;
            let drawn = !crate::draw::draws_of_task(tx, id)?.is_empty();
            let names = super::draw::inspector_names(tx)?;
            Ok((task, visible, drawn, names, warnings))
        })
        .await?;
    let list: Vec<records::RecordSummary> = visible.iter().map(|(r, _)| r.clone()).collect();
    let opens = |sight: &Sight| {
        *sight == Sight::Full && user.has_any(crate::review::records::REVIEW_READERS)
    };
    let c = &task.conditions;
    Ok(page(
        &task.name,
        Some(&user),
        html! {
            p.muted { a href="/plans" { "抽查计划" } " › " a href=(format!("/plans/{}", task.plan_id)) { "计划" } " › " (task.number) }
            h1 { (task.name) }
            @for w in &warnings {
                p.notice #provisional-deadline {
                    "本任务检查结果的公示期限 " (w.deadline) " 为暂定："
                    (w.unscheduled_years.iter().map(|y| format!("{y} 年")).collect::<Vec<_>>().join("、"))
                    "节假日安排尚未公布（或尚未载入），暂按周一至周五计算工作日。仍可摇号；管理员载入该年度安排后期限自动更正，可能变动。"
                }
            }
            @if done.done.as_deref() == Some("recheck") {
                p.notice #notice { "已发起复查：检查组的手机同步后即可收到任务。" }
            }
            dl.facts {
                dt { "任务编号" } dd { (task.number) }
                @if let Some(original) = &task.recheck_of {
                    dt { "复查" } dd #recheck-of { "对检查记录 " a href=(format!("/records/{original}")) { (original) } " 责令改正事项的复查（不摇号，由原检查组实施）" }
                }
                dt { "抽查类型" } dd { @if task.directed { "定向" } @else { "不定向" } @if task.joint { "，联合抽查" } }
                dt { "参与部门" } dd { (task.departments.join("、")) }
                dt { "抽取" } dd { @if let Some(n) = task.count { (n) " 户" } @else if let Some(r) = task.ratio { (format!("{:.1}%", r * 100.0)) } }
                dt { "检查期间" } dd { (task.window_start) " 至 " (task.window_end) }
                @if !c.is_empty() {
                    dt { "抽取条件" } dd {
                        @if !c.industries.is_empty() { "行业：" (c.industries.join("、")) "；" }
                        @if !c.regions.is_empty() { "区域：" (c.regions.join("、")) "；" }
                        @if !c.risk_classes.is_empty() { "风险等级：" (c.risk_classes.join("、")) "；" }
                        @if !c.target_types.is_empty() { "类型：" (c.target_types.iter().map(|t| target_type_label(t)).collect::<Vec<_>>().join("、")) "；" }
                    }
                }
                dt { "抽查事项" } dd { @for i in &task.items { div { (i.code) " " (i.name) " v" (i.version) "（" (i.department) "）" } } }
            }
            @if let Some(published) = done.published {
                p.notice #notice { "已公示 " (published) " 条结果"
                    @if let Some(s) = done.skipped.filter(|s| *s > 0) { "；" (s) " 条因您参与了检查而跳过" }
                    @if let Some(w) = done.waiting.filter(|w| *w > 0) { "；另有 " (w) " 条尚未审核通过" }
                    "。" }
            }
            @if user.has_any(super::draw::DRAWERS) && task.recheck_of.is_none() {
                p { a.button.primary href=(format!("/tasks/{id}/draw")) { "摇号现场" } }
            }
            @if user.has_any(&[Role::Supervisor]) && !list.is_empty() {
                p { (post_button(&user, &format!("/tasks/{id}/publish-results"), "公示本任务全部已审核结果", "")) }
            }
            @if user.has_any(&[Role::Admin, Role::Planner, Role::Supervisor]) && !list.is_empty() {
                p #dossier { a.button #dossier-link href=(format!("/tasks/{id}/dossier.zip")) download { "下载归档（ZIP）" }
                    span.muted { " 摇号记录、检查记录与文书、照片、审计记录和公示结果；可用 suiji-server dossier verify 离线核验" } }
            }
            h2 { "检查记录" }
            div.table-wrap { table {
                thead { tr { th { "检查对象" } th { "检查组" } th { "公示期限" } th { "状态" } } }
                tbody {
                    @for (r, sight) in &visible {
                        tr {
                            td { @if opens(sight) { a href=(format!("/records/{}", r.id)) { (r.target_name) } } @else { (r.target_name) } }
                            td { (r.group.iter().map(|g| names.get(g).cloned().unwrap_or_else(|| g.to_string())).collect::<Vec<_>>().join("、")) }
                            td { (r.deadline) @if r.deadline_provisional { " " (super::layout::provisional_mark(&[])) } }
                            td { @if r.withdrawn { span.badge.warn { "已撤回" } } @else { "有效" } }
                        }
                    }
                    @if list.is_empty() && !drawn { tr { td colspan="4" { "尚未摇号。" } } }
                    @if list.is_empty() && drawn { tr { td colspan="4" { "抽查名单公示前，仅计划员和管理员可以查看；检查记录提交后，审核员可以查看。" } } }
                }
            } }
            @if user.has_any(super::draw::DRAWERS) && task.recheck_of.is_none() && list.iter().any(|r| !r.withdrawn) {
                (super::recusal::redraw_form(&user, id, &list, &names, &values, &errors))
            }
        },
    ))
}
