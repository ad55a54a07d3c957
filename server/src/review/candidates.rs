//! Decisions on 经营异常名录 candidates. Publishing a result of
//! 通过登记的住所（经营场所）无法联系 or 公示信息隐瞒真实情况、弄虚作假 makes its
//! target a candidate (publication.rs); a supervisor then decides, within
//! `abnormal_list_days` working days of the finding's verification:
//!
//! - `list`: the target goes on the list (`targets.flag_abnormal`), with the
//!   date and the record the finding came from;
//! - `not_list`: it does not, saying why;
//! - later, `remove` on a listed candidate, once the party has corrected
//!   (for example, shown that it can be reached at its registered address):
//!   the flag is cleared unless another listed candidate keeps the target on.
//!
//! A late decision is taken and marked late. Every decision is kept
//! (`abnormal_decisions`, never edited) and audited; separation of duties
//! holds as for review: a supervisor who inspected the record does not decide.

use crate::store::sql::{Conn, OptionalExtension, Tx, params};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{china_today, deadline_fields, ensure_not_in_group};
use crate::AppState;
use crate::actor::Actor;
use crate::audit;
use crate::auth::{AuthUser, Role};
use crate::calendar::Calendar;
use crate::db::now;
use crate::error::{Error, Result};
use crate::extract::{ApiJson, ApiPath};
use crate::registry::rules;

/// Who decides on candidates.
pub const CANDIDATE_DECIDERS: &[Role] = &[Role::Supervisor];

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/v1/abnormal-candidates/{id}/decision",
        post(decision_route),
    )
}

/// What a supervisor decides on a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Put the target on the 经营异常名录.
    List,
    /// Do not list it.
    NotList,
    /// Take a listed target off again.
    Remove,
}

impl Verdict {
    /// The stable code (`list`, `not_list`, `remove`).
    pub fn code(self) -> &'static str {
        match self {
            Verdict::List => "list",
            Verdict::NotList => "not_list",
            Verdict::Remove => "remove",
        }
    }

    /// The Chinese wording.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::List => "列入经营异常名录",
            Verdict::NotList => "不予列入",
            Verdict::Remove => "移出经营异常名录",
        }
    }

    /// The candidate status a decision leads to, from `status`; `None` when
    /// the decision does not apply there.
    fn next(self, status: &str) -> Option<&'static str> {
        match (status, self) {
            ("pending", Verdict::List) => Some("listed"),
            ("pending", Verdict::NotList) => Some("not_listed"),
            ("listed", Verdict::Remove) => Some("removed"),
            _ => None,
        }
    }
}

/// The body of `POST /api/v1/abnormal-candidates/{id}/decision`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionInput {
    /// The decision.
    pub decision: Verdict,
    /// Why (required; up to 2,000 characters).
    pub reason: String,
}

/// A decision as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CandidateDecision {
    /// Decision id.
    pub id: i64,
    /// The candidate decided on.
    pub candidate_id: i64,
    /// Its target.
    pub target_id: i64,
    /// The decision.
    pub decision: Verdict,
    /// Its wording.
    pub decision_label: &'static str,
    /// Why.
    pub reason: String,
    /// The China date it was taken.
    pub decided_on: NaiveDate,
    /// Taken after the candidate's deadline.
    pub late: bool,
    /// The supervisor's login name.
    pub decided_by: String,
}

/// What a decision did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decided {
    /// The decision kept.
    pub decision: CandidateDecision,
    /// The candidate's status now (`listed`, `not_listed`, `removed`).
    pub status: &'static str,
    /// Whether the target is on the 经营异常名录 now.
    pub flag_abnormal: bool,
    /// Since when, when listed by a decision here.
    pub abnormal_listed_on: Option<NaiveDate>,
    /// The record the listing came from.
    pub abnormal_source_record: Option<String>,
}

struct Candidate {
    target_id: i64,
    record_id: String,
    verified_on: NaiveDate,
    status: String,
}

fn parse_date(text: &str) -> Result<NaiveDate> {
    text.parse()
        .map_err(|e| Error::Internal(format!("stored date {text:?}: {e}")))
}

/// Decides on candidate `id` as `user` on `today` (China date).
pub fn decide_candidate(
    tx: &Tx<'_>,
    user: &Actor,
    id: i64,
    input: &DecisionInput,
    calendar: &Calendar,
    today: NaiveDate,
) -> Result<Decided> {
    user.require(CANDIDATE_DECIDERS)?;
    let reason = input.reason.trim();
    if reason.is_empty() {
        return Err(Error::invalid("reason", "say why (required)"));
    }
    if reason.chars().count() > 2000 {
        return Err(Error::invalid("reason", "at most 2,000 characters"));
    }
    let candidate = tx
        .query_row(
            "SELECT target_id, record_id, verified_on, status FROM abnormal_candidates WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("abnormal candidate {id}")))?;
    let candidate = Candidate {
        target_id: candidate.0,
        record_id: candidate.1,
        verified_on: parse_date(&candidate.2)?,
        status: candidate.3,
    };
    ensure_not_in_group(tx, user, &candidate.record_id)?;
    let Some(status) = input.decision.next(&candidate.status) else {
        return Err(Error::Conflict(format!(
            "abnormal candidate {id} is {}: {} applies only to {}",
            candidate.status,
            input.decision.code(),
            match input.decision {
                Verdict::List | Verdict::NotList => "a pending candidate",
                Verdict::Remove => "a listed candidate",
            }
        )));
    };
    let days = rules::load(tx)?.abnormal_list_days;
    let deadline = deadline_fields(calendar, candidate.verified_on, days, today);
    let late = deadline["overdue"] == json!(true) && input.decision != Verdict::Remove;
    let before = target_listing(tx, candidate.target_id)?;
    tx.execute(
        "UPDATE abnormal_candidates SET status = ?2 WHERE id = ?1",
        params![id, status],
    )?;
    let decision_id: i64 = tx.query_row(
        "INSERT INTO abnormal_decisions
             (candidate_id, target_id, decision, reason, decided_on, late, decided_by, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
        params![
            id,
            candidate.target_id,
            input.decision.code(),
            reason,
            today.to_string(),
            late,
            user.user_id,
            now()
        ],
        |r| r.get(0),
    )?;
    match input.decision {
        Verdict::List => {
            tx.execute(
                "UPDATE targets SET flag_abnormal = 1,
                     abnormal_listed_on = COALESCE(abnormal_listed_on, ?2),
                     abnormal_source_record = COALESCE(abnormal_source_record, ?3),
                     updated_at = ?4
                 WHERE id = ?1",
                params![
                    candidate.target_id,
                    today.to_string(),
                    candidate.record_id,
                    now()
                ],
            )?;
        }
        Verdict::Remove => {
            // Another listed candidate keeps the target on the list, from its own record.
            let other: Option<(String, String)> = tx
                .query_row(
                    "SELECT a.record_id, d.decided_on FROM abnormal_candidates a
                     JOIN abnormal_decisions d ON d.candidate_id = a.id AND d.decision = 'list'
                     WHERE a.target_id = ?1 AND a.status = 'listed' ORDER BY d.id LIMIT 1",
                    [candidate.target_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            match other {
                Some((record, since)) => tx.execute(
                    "UPDATE targets SET abnormal_listed_on = ?2, abnormal_source_record = ?3,
                         updated_at = ?4 WHERE id = ?1",
                    params![candidate.target_id, since, record, now()],
                )?,
                None => tx.execute(
                    "UPDATE targets SET flag_abnormal = 0, abnormal_listed_on = NULL,
                         abnormal_source_record = NULL, updated_at = ?2 WHERE id = ?1",
                    params![candidate.target_id, now()],
                )?,
            };
        }
        Verdict::NotList => {}
    }
    let after = target_listing(tx, candidate.target_id)?;
    let decision = decision_by_id(tx, decision_id)?;
    audit::append(
        tx,
        &user.username,
        &format!("abnormal_candidate.{}", input.decision.code()),
        &format!("target:{}", candidate.target_id),
        Some(&json!({"candidate": id, "status": candidate.status, "target": before})),
        Some(&json!({"candidate": id, "status": status, "target": after,
                     "reason": reason, "late": late, "record": candidate.record_id})),
    )?;
    Ok(Decided {
        status,
        flag_abnormal: after.flag_abnormal,
        abnormal_listed_on: after.listed_on,
        abnormal_source_record: after.source_record,
        decision,
    })
}

/// A target's place on the 经营异常名录.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// On the list.
    pub flag_abnormal: bool,
    /// Since when, when listed by a decision here.
    pub listed_on: Option<NaiveDate>,
    /// The record the listing came from.
    pub source_record: Option<String>,
}

/// Where target `target_id` stands on the 经营异常名录.
pub fn target_listing(conn: &Conn, target_id: i64) -> Result<Listing> {
    let (flag, since, record): (bool, Option<String>, Option<String>) = conn
        .query_row(
            "SELECT flag_abnormal, abnormal_listed_on, abnormal_source_record
             FROM targets WHERE id = ?1",
            [target_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("target {target_id}")))?;
    Ok(Listing {
        flag_abnormal: flag,
        listed_on: since.as_deref().map(parse_date).transpose()?,
        source_record: record,
    })
}

const DECISION_COLUMNS: &str = "d.id, d.candidate_id, d.target_id, d.decision, d.reason,
     d.decided_on, d.late, u.username
     FROM abnormal_decisions d JOIN users u ON u.id = d.decided_by";

fn decision_of(r: &crate::store::sql::Row<'_>) -> Result<CandidateDecision> {
    let decision = match r.get_ref(3)?.as_str()? {
        "list" => Verdict::List,
        "not_list" => Verdict::NotList,
        _ => Verdict::Remove,
    };
    Ok(CandidateDecision {
        id: r.get(0)?,
        candidate_id: r.get(1)?,
        target_id: r.get(2)?,
        decision,
        decision_label: decision.label(),
        reason: r.get(4)?,
        decided_on: r.get(5)?,
        late: r.get(6)?,
        decided_by: r.get(7)?,
    })
}

fn decision_by_id(conn: &Conn, id: i64) -> Result<CandidateDecision> {
    conn.query_row(
        &format!("SELECT {DECISION_COLUMNS} WHERE d.id = ?1"),
        [id],
        decision_of,
    )
}

/// Every decision on the candidates of target `target_id`, oldest first.
pub fn decisions_of_target(conn: &Conn, target_id: i64) -> Result<Vec<CandidateDecision>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {DECISION_COLUMNS} WHERE d.target_id = ?1 ORDER BY d.id"
    ))?;
    let rows = stmt.query_map([target_id], decision_of)?;
    rows.collect::<Result<_>>()
}

/// `POST /api/v1/abnormal-candidates/{id}/decision`.
async fn decision_route(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<DecisionInput>,
) -> Result<(StatusCode, Json<Decided>)> {
    user.require(CANDIDATE_DECIDERS)?;
    let calendar = state.calendar();
    let decided = state
        .db
        .write(move |tx| decide_candidate(tx, &user, id, &input, &calendar, china_today()))
        .await?;
    Ok((StatusCode::CREATED, Json(decided)))
}
