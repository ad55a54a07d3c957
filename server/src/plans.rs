//! Annual plans (抽查计划) and their tasks (抽查任务): directed or undirected,
//! by ratio or count, items pinned to the version in force, a time window, an
//! initiating department and, for a joint task (联合抽查), the participating
//! departments with their items. Plans and their tasks can be published.

use std::collections::BTreeSet;

use crate::store::sql::{Conn, OptionalExtension, Tx, params};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::AppState;
use crate::audit;
use crate::auth::AuthUser;
use crate::calendar::Calendar;
use crate::db::now;
use crate::error::{Error, Result};
use crate::extract::{ApiJson, ApiPath};
use crate::registry::{
    REG_STATUSES, RISK_CLASSES, TARGET_TYPES, check_code, check_name, check_one_of, check_ratio,
    departments, items, require_reader, require_writer,
};

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/plans", get(list_plans).post(create_plan))
        .route("/api/v1/plans/{id}", get(get_plan))
        .route("/api/v1/plans/{id}/tasks", post(create_task))
        .route("/api/v1/plans/{id}/publish", post(publish_plan))
        .route("/api/v1/tasks/{id}", get(get_task))
        .route("/api/v1/public/plans", get(public_plans))
}

/// Body of `POST /api/v1/plans`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPlan {
    /// Plan number (抽查计划编号), unique.
    pub number: String,
    /// Plan name.
    pub name: String,
    /// The year the plan covers.
    pub year: i32,
    /// Code of the department making the plan.
    pub department: String,
}

/// A plan with its tasks.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Database id.
    pub id: i64,
    /// 抽查计划编号.
    pub number: String,
    /// 抽查计划名称.
    pub name: String,
    /// Year covered.
    pub year: i32,
    /// Department code.
    pub department: String,
    /// When published, if it is.
    pub published_at: Option<String>,
    /// The plan's tasks.
    pub tasks: Vec<Task>,
}

/// Conditions of a directed task (定向抽查): a target must match every
/// condition given; an empty list means no condition on that attribute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Conditions {
    /// Target type codes.
    pub target_types: Vec<String>,
    /// Industries.
    pub industries: Vec<String>,
    /// Regions.
    pub regions: Vec<String>,
    /// Risk classes A–D.
    pub risk_classes: Vec<String>,
    /// Registration statuses.
    pub reg_statuses: Vec<String>,
    /// Only targets on (or off) the 经营异常名录.
    pub flag_abnormal: Option<bool>,
    /// Only targets listed (or not) as 严重违法失信.
    pub flag_serious: Option<bool>,
    /// Only targets with (or without) complaints.
    pub has_complaints: Option<bool>,
}

impl Conditions {
    /// Whether no condition is set.
    pub fn is_empty(&self) -> bool {
        *self == Conditions::default()
    }

    fn validate(&self) -> Result<()> {
        for (i, t) in self.target_types.iter().enumerate() {
            check_code(&format!("conditions.target_types[{i}]"), t, TARGET_TYPES)?;
        }
        for (i, r) in self.risk_classes.iter().enumerate() {
            check_one_of(&format!("conditions.risk_classes[{i}]"), r, RISK_CLASSES)?;
        }
        for (i, s) in self.reg_statuses.iter().enumerate() {
            check_one_of(&format!("conditions.reg_statuses[{i}]"), s, REG_STATUSES)?;
        }
        for (name, list) in [("industries", &self.industries), ("regions", &self.regions)] {
            for (i, v) in list.iter().enumerate() {
                check_name(&format!("conditions.{name}[{i}]"), v, 100)?;
            }
        }
        Ok(())
    }
}

/// An item of a new task: which item, which version (default: the one in
/// force) and which department checks it (default: the item's own).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskItemInput {
    /// Item code.
    pub code: String,
    /// Pinned version.
    #[serde(default)]
    pub version: Option<i64>,
    /// Checking department code.
    #[serde(default)]
    pub department: Option<String>,
}

/// Body of `POST /api/v1/plans/{id}/tasks`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// 抽查任务编号, unique.
    pub number: String,
    /// 抽查任务名称.
    pub name: String,
    /// 定向 (true) or 不定向 (false).
    pub directed: bool,
    /// Conditions of a directed task; must be empty for an undirected one.
    #[serde(default)]
    pub conditions: Conditions,
    /// Share of candidates to draw, in (0, 1]. Give this or `count`.
    #[serde(default)]
    pub ratio: Option<f64>,
    /// Number of targets to draw. Give this or `ratio`.
    #[serde(default)]
    pub count: Option<u32>,
    /// Items to check.
    pub items: Vec<TaskItemInput>,
    /// First day of the inspection window (YYYY-MM-DD).
    pub window_start: NaiveDate,
    /// Last day of the inspection window (YYYY-MM-DD).
    pub window_end: NaiveDate,
    /// Initiating department code; defaults to the plan's.
    #[serde(default)]
    pub department: Option<String>,
    /// Joint task (联合抽查): items of several departments checked in one visit.
    #[serde(default)]
    pub joint: bool,
}

/// An item of a task, pinned to its version.
#[derive(Debug, Clone, Serialize)]
pub struct TaskItem {
    /// Item code.
    pub code: String,
    /// Pinned version.
    pub version: i64,
    /// Item name in that version.
    pub name: String,
    /// Department that checks it.
    pub department: String,
}

/// A task.
#[derive(Debug, Clone, Serialize)]
pub struct Task {
    /// Database id.
    pub id: i64,
    /// Plan id.
    pub plan_id: i64,
    /// 抽查任务编号.
    pub number: String,
    /// 抽查任务名称.
    pub name: String,
    /// 定向 (true) or 不定向 (false).
    pub directed: bool,
    /// Conditions (empty for undirected).
    pub conditions: Conditions,
    /// Ratio, if drawn by ratio.
    pub ratio: Option<f64>,
    /// Count, if drawn by count.
    pub count: Option<u32>,
    /// Window start.
    pub window_start: NaiveDate,
    /// Window end.
    pub window_end: NaiveDate,
    /// Initiating department code.
    pub department: String,
    /// Joint task.
    pub joint: bool,
    /// Every department taking part (the initiator first).
    pub departments: Vec<String>,
    /// Items, pinned to versions.
    pub items: Vec<TaskItem>,
    /// When published, if it is.
    pub published_at: Option<String>,
    /// A 复查 task (made by `POST /api/v1/follow-ups/{id}/recheck`, never
    /// drawn): the record it rechecks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recheck_of: Option<String>,
}

fn task_items(conn: &Conn, task_id: i64) -> Result<Vec<TaskItem>> {
    let mut stmt = conn.prepare_cached(
        "SELECT i.code, ti.item_version, v.name, d.code
         FROM task_items ti JOIN items i ON i.id = ti.item_id
         JOIN item_versions v ON v.item_id = ti.item_id AND v.version = ti.item_version
         JOIN departments d ON d.id = ti.department_id
         WHERE ti.task_id = ?1 ORDER BY i.code",
    )?;
    let rows = stmt.query_map([task_id], |r| {
        Ok(TaskItem {
            code: r.get(0)?,
            version: r.get(1)?,
            name: r.get(2)?,
            department: r.get(3)?,
        })
    })?;
    rows.collect::<Result<_, _>>()
}

const TASK_COLUMNS: &str = "t.id, t.plan_id, t.number, t.name, t.directed, t.conditions, t.ratio,
    t.count, t.window_start, t.window_end, d.code, t.joint, t.published_at,
    (SELECT k.original_record_id FROM rechecks k WHERE k.task_id = t.id)";

fn task_from_row(r: &crate::store::sql::Row<'_>) -> Result<(Task, String)> {
    Ok((
        Task {
            id: r.get(0)?,
            plan_id: r.get(1)?,
            number: r.get(2)?,
            name: r.get(3)?,
            directed: r.get(4)?,
            conditions: Conditions::default(),
            ratio: r.get(6)?,
            count: r.get(7)?,
            window_start: r.get(8)?,
            window_end: r.get(9)?,
            department: r.get(10)?,
            joint: r.get(11)?,
            departments: Vec::new(),
            items: Vec::new(),
            published_at: r.get(12)?,
            recheck_of: r.get(13)?,
        },
        r.get(5)?,
    ))
}

fn finish_task(conn: &Conn, (mut task, conditions): (Task, String)) -> Result<Task> {
    task.conditions = serde_json::from_str(&conditions)?;
    task.items = task_items(conn, task.id)?;
    let mut departments = vec![task.department.clone()];
    for item in &task.items {
        if !departments.contains(&item.department) {
            departments.push(item.department.clone());
        }
    }
    task.departments = departments;
    Ok(task)
}

/// Loads one task.
pub fn get_task_by_id(conn: &Conn, id: i64) -> Result<Task> {
    let row = conn
        .query_row(
            &format!(
                "SELECT {TASK_COLUMNS} FROM tasks t JOIN departments d ON d.id = t.department_id
                 WHERE t.id = ?1"
            ),
            [id],
            task_from_row,
        )
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("task {id}")))?;
    finish_task(conn, row)
}

fn tasks_of_plan(conn: &Conn, plan_id: i64, published_only: bool) -> Result<Vec<Task>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks t JOIN departments d ON d.id = t.department_id
         WHERE t.plan_id = ?1 AND (?2 = 0 OR t.published_at IS NOT NULL) ORDER BY t.number"
    ))?;
    let rows: Vec<_> = stmt
        .query_map(params![plan_id, published_only], task_from_row)?
        .collect::<Result<_, _>>()?;
    rows.into_iter().map(|row| finish_task(conn, row)).collect()
}

/// Loads one plan with its tasks.
pub fn get_plan_by_id(conn: &Conn, id: i64) -> Result<Plan> {
    plan_with_tasks(conn, id, false)
}

fn plan_with_tasks(conn: &Conn, id: i64, published_only: bool) -> Result<Plan> {
    let mut plan = conn
        .query_row(
            "SELECT p.id, p.number, p.name, p.year, d.code, p.published_at
             FROM plans p JOIN departments d ON d.id = p.department_id WHERE p.id = ?1",
            [id],
            |r| {
                Ok(Plan {
                    id: r.get(0)?,
                    number: r.get(1)?,
                    name: r.get(2)?,
                    year: r.get(3)?,
                    department: r.get(4)?,
                    published_at: r.get(5)?,
                    tasks: Vec::new(),
                })
            },
        )
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("plan {id}")))?;
    plan.tasks = tasks_of_plan(conn, id, published_only)?;
    Ok(plan)
}

fn check_number(field: &str, number: &str) -> Result<()> {
    check_name(field, number, 60)?;
    if number.chars().any(char::is_whitespace) {
        return Err(Error::invalid(field, "must not contain spaces"));
    }
    Ok(())
}

/// Creates a plan.
pub fn insert_plan(tx: &Tx<'_>, actor: &str, plan: &NewPlan) -> Result<Plan> {
    check_number("number", &plan.number)?;
    check_name("name", &plan.name, 200)?;
    if !(2000..=2100).contains(&plan.year) {
        return Err(Error::invalid("year", "between 2000 and 2100"));
    }
    let department_id = departments::id_by_code(tx, "department", &plan.department)?;
    let taken: bool = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM plans WHERE number = ?1)",
        [&plan.number],
        |r| r.get(0),
    )?;
    if taken {
        return Err(Error::Conflict(format!(
            "plan number `{}` is taken",
            plan.number
        )));
    }
    let created_id: i64 = tx.query_row(
        "INSERT INTO plans (number, name, year, department_id, created_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
        params![
            plan.number,
            plan.name.trim(),
            plan.year,
            department_id,
            now(),
            actor
        ],
        |r| r.get(0),
    )?;
    let created = get_plan_by_id(tx, created_id)?;
    audit::append(
        tx,
        actor,
        "plan.create",
        &format!("plan:{}", created.id),
        None,
        Some(&json!(created)),
    )?;
    Ok(created)
}

/// A task as its creation answers it: the task and what the planner should know.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedTask {
    /// The task.
    #[serde(flatten)]
    pub task: Task,
    /// Warnings about it (`task_warnings`); the task is created all the same.
    pub warnings: Vec<TaskWarning>,
}

/// Something about a task the planner should know, which does not stop it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskWarning {
    /// What kind of warning: `provisional_deadline`.
    pub code: &'static str,
    /// The task field it concerns.
    pub field: &'static str,
    /// In words.
    pub message: String,
    /// The deadline it concerns, as counted now.
    pub deadline: NaiveDate,
    /// The years on the way to it that have no holiday schedule.
    pub unscheduled_years: Vec<i32>,
}

/// What a planner should know about `task` as the calendar stands: its
/// results' publication deadline (the window end plus the rules' working
/// days, the date the draw writes into each record) runs into a year without a
/// holiday schedule, so it is provisional until an admin loads that year, and
/// may then move. The task can still be drawn.
pub fn task_warnings(conn: &Conn, task: &Task, calendar: &Calendar) -> Result<Vec<TaskWarning>> {
    let days = crate::registry::rules::load(conn)?.result_publication_days;
    let deadline = calendar.deadline(task.window_end, days);
    if !deadline.provisional() {
        return Ok(Vec::new());
    }
    let years: Vec<String> = deadline
        .unscheduled_years
        .iter()
        .map(i32::to_string)
        .collect();
    Ok(vec![TaskWarning {
        code: "provisional_deadline",
        field: "window_end",
        message: format!(
            "the results' publication deadline ({days} working days after the window end) is \
             provisional: the working-day calendar has no holiday schedule for {}, so it is \
             counted Monday to Friday there; it becomes final, and may move, when an admin \
             loads that schedule",
            years.join(", ")
        ),
        deadline: deadline.value,
        unscheduled_years: deadline.unscheduled_years,
    }])
}

/// Creates a task in a plan, pinning each item to a version.
pub fn insert_task(tx: &Tx<'_>, actor: &str, plan_id: i64, task: &NewTask) -> Result<Task> {
    let plan = get_plan_by_id(tx, plan_id)?;
    check_number("number", &task.number)?;
    check_name("name", &task.name, 200)?;
    match (task.ratio, task.count) {
        (Some(ratio), None) => check_ratio("ratio", ratio)?, // item-class bounds below
        (None, Some(count)) if count >= 1 => {}
        (None, Some(_)) => return Err(Error::invalid("count", "draw at least one target")),
        _ => {
            return Err(Error::invalid(
                "ratio",
                "give exactly one of `ratio` and `count`",
            ));
        }
    }
    task.conditions.validate()?;
    if task.directed && task.conditions.is_empty() {
        return Err(Error::invalid(
            "conditions",
            "a directed task (定向) needs at least one condition",
        ));
    }
    if !task.directed && !task.conditions.is_empty() {
        return Err(Error::invalid(
            "conditions",
            "an undirected task (不定向) draws from the whole directory; remove the conditions or set directed",
        ));
    }
    if task.window_start > task.window_end {
        return Err(Error::invalid(
            "window_end",
            "the window ends before it starts",
        ));
    }
    if task.window_start.year() != plan.year {
        return Err(Error::invalid(
            "window_start",
            format!("the window must start in the plan's year {}", plan.year),
        ));
    }
    if task.items.is_empty() {
        return Err(Error::invalid("items", "a task checks at least one item"));
    }
    let department = task.department.clone().unwrap_or(plan.department.clone());
    let department_id = departments::id_by_code(tx, "department", &department)?;
    let mut pinned = Vec::new();
    let mut seen = BTreeSet::new();
    let mut item_departments = BTreeSet::new();
    let mut has_general = false;
    for (i, item) in task.items.iter().enumerate() {
        let field = format!("items[{i}]");
        if !seen.insert(item.code.clone()) {
            return Err(Error::invalid(format!("{field}.code"), "item listed twice"));
        }
        let version = items::get(tx, &item.code, item.version).map_err(|e| match e {
            Error::NotFound(what) => Error::invalid(format!("{field}.code"), format!("no {what}")),
            other => other,
        })?;
        let dept_code = item
            .department
            .clone()
            .unwrap_or(version.input.department.clone());
        let dept_id = departments::id_by_code(tx, &format!("{field}.department"), &dept_code)?;
        item_departments.insert(dept_code);
        has_general |= version.input.class == items::ItemClass::General;
        pinned.push((version.item_id, version.version, dept_id));
    }
    if let Some(ratio) = task.ratio {
        crate::registry::rules::load(tx)?.check_task_ratio(ratio, has_general)?;
    }
    let others: Vec<_> = item_departments
        .iter()
        .filter(|d| **d != department)
        .collect();
    if task.joint && others.is_empty() {
        return Err(Error::invalid(
            "joint",
            "a joint task (联合抽查) needs items of at least two departments",
        ));
    }
    if !task.joint && !others.is_empty() {
        return Err(Error::invalid(
            "items",
            format!(
                "items of other departments ({}) need a joint task (联合抽查)",
                others
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let taken: bool = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM tasks WHERE number = ?1)",
        [&task.number],
        |r| r.get(0),
    )?;
    if taken {
        return Err(Error::Conflict(format!(
            "task number `{}` is taken",
            task.number
        )));
    }
    let task_id: i64 = tx.query_row(
        "INSERT INTO tasks (plan_id, number, name, directed, conditions, ratio, count,
            window_start, window_end, department_id, joint, created_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) RETURNING id",
        params![
            plan_id,
            task.number,
            task.name.trim(),
            task.directed,
            serde_json::to_string(&task.conditions)?,
            task.ratio,
            task.count,
            task.window_start,
            task.window_end,
            department_id,
            task.joint,
            now(),
            actor
        ],
        |r| r.get(0),
    )?;
    for (item_id, version, dept_id) in pinned {
        tx.execute(
            "INSERT INTO task_items (task_id, item_id, item_version, department_id)
             VALUES (?1, ?2, ?3, ?4)",
            params![task_id, item_id, version, dept_id],
        )?;
    }
    let created = get_task_by_id(tx, task_id)?;
    audit::append(
        tx,
        actor,
        "task.create",
        &format!("task:{task_id}"),
        None,
        Some(&json!(created)),
    )?;
    Ok(created)
}

/// Whether any of the task's items (in their pinned versions) is a general item.
pub fn has_general_items(conn: &Conn, task: &Task) -> Result<bool> {
    for item in &task.items {
        if items::get(conn, &item.code, Some(item.version))?
            .input
            .class
            == items::ItemClass::General
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Publishes a plan and every task of it not yet published.
pub fn publish(tx: &Tx<'_>, actor: &str, plan_id: i64) -> Result<Plan> {
    let before = get_plan_by_id(tx, plan_id)?;
    if before.tasks.is_empty() {
        return Err(Error::Conflict(
            "a plan without tasks cannot be published".into(),
        ));
    }
    let at = now();
    tx.execute(
        "UPDATE plans SET published_at = COALESCE(published_at, ?1) WHERE id = ?2",
        params![at, plan_id],
    )?;
    let tasks = tx.execute(
        "UPDATE tasks SET published_at = ?1 WHERE plan_id = ?2 AND published_at IS NULL",
        params![at, plan_id],
    )?;
    let after = get_plan_by_id(tx, plan_id)?;
    audit::append(
        tx,
        actor,
        "plan.publish",
        &format!("plan:{plan_id}"),
        None,
        Some(&json!({"published_at": at, "tasks_published": tasks})),
    )?;
    Ok(after)
}

async fn list_plans(State(state): State<AppState>, user: AuthUser) -> Result<Json<Vec<Plan>>> {
    require_reader(&user)?;
    Ok(Json(state.db.read(all_plans).await?))
}

/// Every plan with its tasks, the latest year first.
pub fn all_plans(c: &Conn) -> Result<Vec<Plan>> {
    let ids: Vec<i64> = c
        .prepare("SELECT id FROM plans ORDER BY year DESC, number")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    ids.into_iter().map(|id| get_plan_by_id(c, id)).collect()
}

async fn public_plans(State(state): State<AppState>) -> Result<Json<Vec<Plan>>> {
    let plans = state
        .db
        .read(|c| {
            let ids: Vec<i64> = c
                .prepare(
                    "SELECT id FROM plans WHERE published_at IS NOT NULL ORDER BY year DESC, number",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            ids.into_iter().map(|id| plan_with_tasks(c, id, true)).collect()
        })
        .await?;
    Ok(Json(plans))
}

async fn get_plan(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Plan>> {
    require_reader(&user)?;
    Ok(Json(state.db.read(move |c| get_plan_by_id(c, id)).await?))
}

async fn create_plan(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(plan): ApiJson<NewPlan>,
) -> Result<(StatusCode, Json<Plan>)> {
    require_writer(&user)?;
    let created = state
        .db
        .write(move |tx| insert_plan(tx, &user.username, &plan))
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn create_task(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(plan_id): ApiPath<i64>,
    ApiJson(task): ApiJson<NewTask>,
) -> Result<(StatusCode, Json<CreatedTask>)> {
    require_writer(&user)?;
    let current = state.clone();
    let created = state
        .db
        .write(move |tx| {
            let task = insert_task(tx, &user.username, plan_id, &task)?;
            let warnings = task_warnings(tx, &task, &current.calendar())?;
            Ok(CreatedTask { task, warnings })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn publish_plan(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Plan>> {
    require_writer(&user)?;
    Ok(Json(
        state
            .db
            .write(move |tx| publish(tx, &user.username, id))
            .await?,
    ))
}

async fn get_task(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Task>> {
    require_reader(&user)?;
    Ok(Json(state.db.read(move |c| get_task_by_id(c, id)).await?))
}
