//! Follow-ups (后续处置) and their 复查. Publishing a result that chose a
//! measure (责令改正 with its deadline, or a referral) makes a follow-up
//! (publication.rs). An order to correct is then rechecked:
//!
//! - once its deadline has passed, a planner starts a 复查 with
//!   `POST /api/v1/follow-ups/{id}/recheck`: a directed task of its own in the
//!   original plan, with one record for the same target and the same items,
//!   inspected by the original group except whoever has since declared a
//!   conflict with the target or left (or by inspectors the planner names);
//! - that record flows through phones, review and publication like any other,
//!   its assignment naming the record it rechecks;
//! - publishing its result closes the follow-up: 改正 (`corrected`, the
//!   recheck found no problem), 未改正 (`not_corrected`: it found problems,
//!   and its own measures, a new order or a referral, are follow-ups of their
//!   own) or `ended` (the party closed or left the register). A correction of
//!   that result closes it again.
//!
//! A follow-up open past its deadline is overdue: its 复查 is due and not yet
//! started. A recheck is not a spot check: it is not drawn, and it does not
//! count towards the frequency cap.

use crate::store::sql::{Conn, OptionalExtension, Tx, params};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::json;
use suiji_mobile_core::record::RecheckOf;
use suiji_mobile_core::vocab::{FollowUpMeasure, ResultCategory};

use super::china_today;
use super::risk::Outcome;
use crate::AppState;
use crate::actor::Actor;
use crate::audit;
use crate::auth::{AuthUser, Role};
use crate::calendar::Calendar;
use crate::db::now;
use crate::draw::algorithm::DrawnTarget;
use crate::error::{Error, Result};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::plans::{self, Conditions};
use crate::registry::rules;

/// Who reads follow-ups.
pub const FOLLOW_UP_READERS: &[Role] = &[Role::Supervisor, Role::Admin, Role::Planner];

/// Who starts a 复查.
pub const RECHECK_STARTERS: &[Role] = &[Role::Planner];

/// Working days a 复查's inspection window lasts, from the day it is started.
pub const RECHECK_WINDOW_DAYS: u32 = 10;

/// The most inspectors a planner may name for a 复查.
const MAX_GROUP: usize = 10;

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/follow-ups", get(list_route))
        .route("/api/v1/follow-ups/{id}/recheck", post(recheck_route))
}

/// Where a follow-up stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Ordered; for an order to correct, not yet rechecked.
    Open,
    /// A 复查 is under way.
    Rechecking,
    /// 改正: the 复查 found no problem.
    Corrected,
    /// 未改正: the 复查 found problems.
    NotCorrected,
    /// The party closed or left the register: nothing left to recheck.
    Ended,
}

impl Status {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Rechecking => "rechecking",
            Status::Corrected => "corrected",
            Status::NotCorrected => "not_corrected",
            Status::Ended => "ended",
        }
    }

    /// The Chinese wording.
    pub fn label(self) -> &'static str {
        match self {
            Status::Open => "未办结",
            Status::Rechecking => "复查中",
            Status::Corrected => "已改正",
            Status::NotCorrected => "未改正",
            Status::Ended => "已终结",
        }
    }

    fn from_code(code: &str) -> Option<Status> {
        [
            Status::Open,
            Status::Rechecking,
            Status::Corrected,
            Status::NotCorrected,
            Status::Ended,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }

    /// Whether nothing more is to be done.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            Status::Corrected | Status::NotCorrected | Status::Ended
        )
    }

    /// How a 复查 whose result has these categories closes its follow-up.
    fn of_recheck(categories: &[ResultCategory]) -> Status {
        match Outcome::of(categories) {
            Outcome::Clean => Status::Corrected,
            Outcome::Problems => Status::NotCorrected,
            Outcome::Neutral => Status::Ended,
        }
    }
}

/// The 复查 of a follow-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecheckRef {
    /// The 复查 task.
    pub task_id: i64,
    /// Its number.
    pub task_number: String,
    /// Its one record.
    pub record_id: String,
    /// When it was started.
    pub created_at: String,
    /// The planner who started it.
    pub created_by: String,
    /// When its result closed the follow-up.
    pub closed_at: Option<String>,
}

/// A follow-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FollowUp {
    /// Follow-up id.
    pub id: i64,
    /// The record whose published result ordered it.
    pub record_id: String,
    /// Its target.
    pub target_id: i64,
    /// The target's name.
    pub target_name: String,
    /// The target's 统一社会信用代码.
    pub uscc: String,
    /// The measure's code (`order_rectification`, `refer_case_unit`, …).
    pub measure: String,
    /// Its wording.
    pub measure_label: Option<&'static str>,
    /// The date the party had to act by (责令改正).
    pub deadline: Option<NaiveDate>,
    /// What was ordered, as the record wrote it.
    pub detail: Option<String>,
    /// Where it stands.
    pub status: Status,
    /// Its wording.
    pub status_label: &'static str,
    /// Open past its deadline: for an order to correct, its 复查 is due.
    pub overdue: bool,
    /// Whether a planner may start its 复查 now.
    pub recheck_due: bool,
    /// Its 复查, once started.
    pub recheck: Option<RecheckRef>,
    /// When it was made.
    pub created_at: String,
}

/// Which follow-ups to list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Only those in this status (`open`, `rechecking`, `corrected`, …).
    pub status: Option<String>,
    /// Only those still open: `open` or `rechecking`.
    #[serde(default)]
    pub unfinished: bool,
    /// Only overdue ones (open past their deadline).
    #[serde(default)]
    pub overdue: bool,
    /// Only those of this target.
    pub target_id: Option<i64>,
    /// The day counted from (default: today in China).
    pub as_of: Option<NaiveDate>,
}

const COLUMNS: &str = "f.id, f.record_id, f.target_id, t.name, t.uscc, f.measure, f.deadline,
    f.detail, f.status, f.created_at, k.task_id, kt.number, k.record_id, k.created_at,
    k.created_by, k.closed_at
    FROM follow_ups f JOIN targets t ON t.id = f.target_id
    LEFT JOIN rechecks k ON k.follow_up_id = f.id
    LEFT JOIN tasks kt ON kt.id = k.task_id";

fn follow_up_of(r: &crate::store::sql::Row<'_>, today: NaiveDate) -> Result<FollowUp> {
    let measure: String = r.get(5)?;
    let deadline: Option<NaiveDate> = r.get(6)?;
    let status_code: String = r.get(8)?;
    let status = Status::from_code(&status_code)
        .ok_or_else(|| Error::Internal(format!("unknown follow-up status {status_code:?}")))?;
    let overdue = status == Status::Open && deadline.is_some_and(|d| d < today);
    let recheck = match r.get::<_, Option<i64>>(10)? {
        Some(task_id) => Some(RecheckRef {
            task_id,
            task_number: r.get(11)?,
            record_id: r.get(12)?,
            created_at: r.get(13)?,
            created_by: r.get(14)?,
            closed_at: r.get(15)?,
        }),
        None => None,
    };
    Ok(FollowUp {
        id: r.get(0)?,
        record_id: r.get(1)?,
        target_id: r.get(2)?,
        target_name: r.get(3)?,
        uscc: r.get(4)?,
        measure_label: FollowUpMeasure::from_code(&measure).map(|m| m.label()),
        recheck_due: overdue && measure == FollowUpMeasure::OrderRectification.code(),
        measure,
        deadline,
        detail: r.get(7)?,
        status,
        status_label: status.label(),
        overdue,
        recheck,
        created_at: r.get(9)?,
    })
}

/// Follow-ups matching `filter`, those with the earliest deadline first.
pub fn list(conn: &Conn, filter: &Filter, today: NaiveDate) -> Result<Vec<FollowUp>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS}
         WHERE (CAST(?1 AS TEXT) IS NULL OR f.status = ?1) AND (?2 = 0 OR f.status IN ('open', 'rechecking'))
           AND (?3 = 0 OR (f.status = 'open' AND f.deadline < ?4))
           AND (CAST(?5 AS BIGINT) IS NULL OR f.target_id = ?5)
         ORDER BY f.deadline IS NULL, f.deadline, f.id"
    ))?;
    let rows = stmt.query_map(
        params![
            filter.status,
            filter.unfinished,
            filter.overdue,
            today.to_string(),
            filter.target_id
        ],
        |r| follow_up_of(r, today),
    )?;
    rows.collect::<Result<_>>()
}

/// Follow-up `id`.
pub fn follow_up(conn: &Conn, id: i64, today: NaiveDate) -> Result<FollowUp> {
    conn.query_row(&format!("SELECT {COLUMNS} WHERE f.id = ?1"), [id], |r| {
        follow_up_of(r, today)
    })
    .optional()?
    .ok_or_else(|| Error::NotFound(format!("follow-up {id}")))
}

/// The body of `POST /api/v1/follow-ups/{id}/recheck`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecheckInput {
    /// The group, the lead first, instead of the original one (when one of it
    /// has a conflict with the target or has left).
    #[serde(default)]
    pub inspectors: Option<Vec<i64>>,
}

/// A 复查 started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Started {
    /// The 复查 task.
    pub task_id: i64,
    /// Its number: the original task's, then `-FC` and the follow-up id.
    pub task_number: String,
    /// Its one record.
    pub record_id: String,
    /// The follow-up rechecked.
    pub follow_up_id: i64,
    /// The record whose order is rechecked.
    pub original_record_id: String,
    /// The group, the lead first.
    pub inspectors: Vec<i64>,
    /// The inspection window.
    pub window_start: NaiveDate,
    /// Its last day.
    pub window_end: NaiveDate,
}

struct Original {
    task_id: i64,
    draw_id: i64,
    target_id: i64,
    uscc: String,
    target_name: String,
    risk_class: String,
    group: Vec<i64>,
}

fn original(tx: &Tx<'_>, record_id: &str) -> Result<Original> {
    let (task_id, draw_id, target_id, uscc, target_name, risk_class) = tx.query_row(
        "SELECT r.task_id, r.draw_id, r.target_id, t.uscc, t.name, t.risk_class
         FROM records r JOIN targets t ON t.id = r.target_id WHERE r.id = ?1",
        [record_id],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        },
    )?;
    let mut stmt = tx.prepare(
        "SELECT inspector_id FROM record_inspectors WHERE record_id = ?1
         ORDER BY lead DESC, inspector_id",
    )?;
    let group = stmt
        .query_map([record_id], |r| r.get(0))?
        .collect::<Result<_>>()?;
    Ok(Original {
        task_id,
        draw_id,
        target_id,
        uscc,
        target_name,
        risk_class,
        group,
    })
}

/// Why an inspector may not recheck a target: `None` when they may.
fn unfit(
    tx: &Tx<'_>,
    inspector: i64,
    target_id: i64,
    requirements: &[crate::draw::algorithm::Requirement],
) -> Result<Option<(String, String)>> {
    let found: Option<(String, bool, String, bool)> = tx
        .query_row(
            "SELECT d.code, i.active, i.expertise,
                 EXISTS(SELECT 1 FROM inspector_conflicts c
                        WHERE c.inspector_id = i.id AND c.target_id = ?2)
             FROM inspectors i JOIN departments d ON d.id = i.department_id WHERE i.id = ?1",
            params![inspector, target_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((department, active, expertise, conflict)) = found else {
        return Ok(Some((inspector.to_string(), "no such inspector".into())));
    };
    let why = if !active {
        "is no longer active"
    } else if conflict {
        "has declared a conflict of interest (回避) with the target"
    } else {
        match requirements.iter().find(|r| r.department == department) {
            None => "is of a department that takes no part in the task",
            Some(req) => {
                let expertise: Vec<String> = serde_json::from_str(&expertise)?;
                if req.qualifications.iter().all(|q| expertise.contains(q)) {
                    return Ok(None);
                }
                "is not qualified for the task's items"
            }
        }
    };
    Ok(Some((inspector.to_string(), why.into())))
}

/// Starts the 复查 of follow-up `id` as `user` on `today` (China date).
pub fn start_recheck(
    tx: &Tx<'_>,
    user: &Actor,
    id: i64,
    input: &RecheckInput,
    calendar: &Calendar,
    today: NaiveDate,
) -> Result<Started> {
    user.require(RECHECK_STARTERS)?;
    let follow_up = follow_up(tx, id, today)?;
    if follow_up.measure != FollowUpMeasure::OrderRectification.code() {
        return Err(Error::Conflict(format!(
            "follow-up {id} is {}: only an order to correct (责令改正) is rechecked",
            follow_up.measure_label.unwrap_or(&follow_up.measure)
        )));
    }
    if let Some(recheck) = &follow_up.recheck {
        return Err(Error::Conflict(format!(
            "follow-up {id} is already rechecked: task {} (record {})",
            recheck.task_number, recheck.record_id
        )));
    }
    let Some(deadline) = follow_up.deadline else {
        return Err(Error::Conflict(format!(
            "follow-up {id} has no deadline to correct by, so no 复查 is due"
        )));
    };
    if deadline >= today {
        return Err(Error::Conflict(format!(
            "the party has until {deadline} to correct: the 复查 of follow-up {id} is due from the day after"
        )));
    }
    let original = original(tx, &follow_up.record_id)?;
    let original_task = plans::get_task_by_id(tx, original.task_id)?;
    let rules = rules::load(tx)?;
    let requirements = crate::draw::task_params(tx, &original_task, &rules)?.requirements;

    let group = match &input.inspectors {
        Some(named) => {
            if named.len() < 2 || named.len() > MAX_GROUP {
                return Err(Error::invalid(
                    "inspectors",
                    format!("name 2 to {MAX_GROUP} inspectors"),
                ));
            }
            let mut seen = named.clone();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() != named.len() {
                return Err(Error::invalid("inspectors", "an inspector is named twice"));
            }
            for &inspector in named {
                if let Some((who, why)) = unfit(tx, inspector, original.target_id, &requirements)? {
                    return Err(Error::invalid(
                        "inspectors",
                        format!("inspector {who} {why}"),
                    ));
                }
            }
            named.clone()
        }
        None => {
            let mut kept = Vec::new();
            let mut dropped = Vec::new();
            for &inspector in &original.group {
                match unfit(tx, inspector, original.target_id, &requirements)? {
                    None => kept.push(inspector),
                    Some((who, why)) => dropped.push(format!("inspector {who} {why}")),
                }
            }
            if kept.len() < 2 {
                return Err(Error::Conflict(format!(
                    "the original group of record {} cannot recheck: {}; name the group in `inspectors`",
                    follow_up.record_id,
                    dropped.join("; ")
                )));
            }
            kept
        }
    };
    if original_task.joint {
        let departments: Vec<String> = group
            .iter()
            .map(|i| {
                tx.query_row(
                    "SELECT d.code FROM inspectors i JOIN departments d ON d.id = i.department_id
                     WHERE i.id = ?1",
                    [i],
                    |r| r.get(0),
                )
            })
            .collect::<Result<_>>()?;
        if let Some(missing) = original_task
            .departments
            .iter()
            .find(|d| !departments.contains(d))
        {
            let message = format!(
                "a joint 复查 needs an inspector of every department; none of {missing} is in the group"
            );
            return Err(match input.inspectors {
                Some(_) => Error::invalid("inspectors", message),
                None => Error::Conflict(format!("{message}; name the group in `inspectors`")),
            });
        }
    }

    let number = format!("{}-FC{id}", original_task.number);
    let taken: bool = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM tasks WHERE number = ?1)",
        [&number],
        |r| r.get(0),
    )?;
    if taken {
        return Err(Error::Conflict(format!("task number `{number}` is taken")));
    }
    let window_end = calendar.deadline(today, RECHECK_WINDOW_DAYS).value;
    let at = now();
    let task_id: i64 = tx.query_row(
        "INSERT INTO tasks (plan_id, number, name, directed, conditions, ratio, count,
            window_start, window_end, department_id, joint, published_at, created_at, created_by)
         SELECT plan_id, ?2, ?3, 1, ?4, NULL, 1, ?5, ?6, department_id, joint, ?7, ?7, ?8
         FROM tasks WHERE id = ?1 RETURNING id",
        params![
            original.task_id,
            number,
            format!("复查：{}", original.target_name),
            serde_json::to_string(&Conditions::default())?,
            today,
            window_end,
            at,
            user.username
        ],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO task_items (task_id, item_id, item_version, department_id)
         SELECT ?1, item_id, item_version, department_id FROM task_items WHERE task_id = ?2",
        params![task_id, original.task_id],
    )?;
    let task = plans::get_task_by_id(tx, task_id)?;
    let record_id = crate::draw::records::create_recheck(
        tx,
        &task,
        original.draw_id,
        &DrawnTarget {
            uscc: original.uscc.clone(),
            risk_class: original.risk_class.clone(),
            must_include: false,
            group: group.clone(),
        },
        &RecheckOf {
            record_id: follow_up.record_id.clone(),
            task_number: original_task.number.clone(),
            detail: follow_up.detail.clone(),
            deadline,
        },
        calendar,
    )?;
    tx.execute(
        "INSERT INTO rechecks (task_id, follow_up_id, record_id, original_record_id, created_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            task_id,
            id,
            record_id,
            follow_up.record_id,
            at,
            user.username
        ],
    )?;
    tx.execute(
        "UPDATE follow_ups SET status = 'rechecking' WHERE id = ?1",
        [id],
    )?;
    let started = Started {
        task_id,
        task_number: number,
        record_id,
        follow_up_id: id,
        original_record_id: follow_up.record_id.clone(),
        inspectors: group,
        window_start: today,
        window_end,
    };
    audit::append(
        tx,
        &user.username,
        "follow_up.recheck",
        &format!("follow_up:{id}"),
        Some(&json!({"status": follow_up.status.code()})),
        Some(
            &json!({"status": Status::Rechecking.code(), "recheck": started,
                     "named_group": input.inspectors.is_some()}),
        ),
    )?;
    Ok(started)
}

/// Closes the follow-up that record `record_id` rechecks, if it is a 复查,
/// from the categories of its published result (as first published or as
/// corrected). Called in the publication's transaction.
pub fn close_by_recheck(
    tx: &Tx<'_>,
    actor: &str,
    record_id: &str,
    categories: &[ResultCategory],
) -> Result<()> {
    let found: Option<(i64, String)> = tx
        .query_row(
            "SELECT f.id, f.status FROM rechecks k JOIN follow_ups f ON f.id = k.follow_up_id
             WHERE k.record_id = ?1",
            [record_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((id, before)) = found else {
        return Ok(());
    };
    let status = Status::of_recheck(categories);
    if before == status.code() {
        return Ok(());
    }
    let at = now();
    tx.execute(
        "UPDATE rechecks SET outcome = ?2, closed_at = ?3 WHERE record_id = ?1",
        params![record_id, status.code(), at],
    )?;
    tx.execute(
        "UPDATE follow_ups SET status = ?2 WHERE id = ?1",
        params![id, status.code()],
    )?;
    audit::append(
        tx,
        actor,
        "follow_up.close",
        &format!("follow_up:{id}"),
        Some(&json!({"status": before})),
        Some(
            &json!({"status": status.code(), "recheck_record": record_id,
                     "results": categories.iter().map(|c| c.code()).collect::<Vec<_>>()}),
        ),
    )?;
    Ok(())
}

/// `GET /api/v1/follow-ups`.
async fn list_route(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(filter): ApiQuery<Filter>,
) -> Result<Json<Vec<FollowUp>>> {
    user.require(FOLLOW_UP_READERS)?;
    let today = filter.as_of.unwrap_or_else(china_today);
    Ok(Json(state.db.read(move |c| list(c, &filter, today)).await?))
}

/// `POST /api/v1/follow-ups/{id}/recheck`.
async fn recheck_route(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<RecheckInput>,
) -> Result<(StatusCode, Json<Started>)> {
    user.require(RECHECK_STARTERS)?;
    let calendar = state.calendar();
    let started = state
        .db
        .write(move |tx| start_recheck(tx, &user, id, &input, &calendar, china_today()))
        .await?;
    Ok((StatusCode::CREATED, Json(started)))
}
