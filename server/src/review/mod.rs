//! After the inspection (一抽查一公示): the supervisor's review of submitted
//! records, the statutory clock (deadlines), publication of approved results
//! and what it feeds back to the target, statistics, the calendar admin, and the
//! retention of records and their purge after it.
//!
//! Dates that the law counts in (inspection ended, published) are calendar
//! dates in China time (UTC+8), whatever the server's zone.

use crate::store::sql::{Conn, OptionalExtension, params};
use axum::Router;
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde_json::{Value, json};

use crate::AppState;
use crate::actor::Actor;
use crate::calendar::Calendar;
use crate::error::{Error, Result};

pub mod calendar_admin;
pub mod candidates;
pub mod deadlines;
#[cfg(feature = "demo")]
pub mod demo;
pub mod follow_ups;
pub mod index;
pub mod publication;
pub mod records;
pub mod retention;
pub mod risk;
pub mod stats;

pub use index::{refresh_record_index, refresh_stale};

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(records::routes())
        .merge(publication::routes())
        .merge(candidates::routes())
        .merge(follow_ups::routes())
        .merge(deadlines::routes())
        .merge(stats::routes())
        .merge(calendar_admin::routes())
        .merge(retention::routes())
}

/// China Standard Time, in which deadlines are counted.
fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// The calendar date of an instant in China.
pub fn china_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&china()).date_naive()
}

/// The calendar date of a stored RFC 3339 timestamp in China.
pub fn china_date_of(stored: &str) -> Result<NaiveDate> {
    DateTime::parse_from_rfc3339(stored)
        .map(|t| china_date(t.with_timezone(&Utc)))
        .map_err(|e| Error::Internal(format!("stored time {stored:?} does not parse: {e}")))
}

/// Today in China.
pub fn china_today() -> NaiveDate {
    china_date(Utc::now())
}

/// A deadline `days` working days after `from`, and how many working days are
/// left from `today`, as JSON fields. A year on the way without a holiday
/// schedule is counted Monday to Friday: `provisional` is then true and
/// `unscheduled_years` names the years (the answer is final, and may move,
/// once an admin loads them). Computed when read, so it is final the moment
/// the schedule is loaded.
pub fn deadline_fields(calendar: &Calendar, from: NaiveDate, days: u32, today: NaiveDate) -> Value {
    let deadline = calendar.deadline(from, days);
    let left = calendar.working_days_left(today, deadline.value);
    let mut years = deadline.unscheduled_years;
    years.extend(left.unscheduled_years);
    years.sort_unstable();
    years.dedup();
    json!({"deadline": deadline.value, "working_days_left": left.value,
           "overdue": deadline.value < today, "provisional": !years.is_empty(),
           "unscheduled_years": years})
}

/// The inspector id linked to a user account, if any.
pub fn inspector_of_user(conn: &Conn, user_id: i64) -> Result<Option<i64>> {
    conn.query_row(
        "SELECT id FROM inspectors WHERE user_id = ?1",
        [user_id],
        |r| r.get(0),
    )
    .optional()
}

/// Whether the user was ever in the record's inspector group.
pub fn was_in_group(conn: &Conn, user_id: i64, record_id: &str) -> Result<bool> {
    conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM record_assignment_history h
            JOIN inspectors i ON i.id = h.inspector_id
         WHERE h.record_id = ?1 AND i.user_id = ?2)",
        params![record_id, user_id],
        |r| r.get(0),
    )
}

/// Separation of duties: nobody reviews or publishes a record they inspected.
pub fn ensure_not_in_group(conn: &Conn, user: &Actor, record_id: &str) -> Result<()> {
    if was_in_group(conn, user.user_id, record_id)? {
        return Err(Error::OwnRecord(record_id.to_owned()));
    }
    Ok(())
}

/// The document of a record a supervisor is about to decide on or publish:
/// 404 if there is no such record or the caller may not see it (the same
/// answer), 409 if it was withdrawn, 403 if the caller was in its inspector
/// group.
pub fn record_for_decision(
    conn: &Conn,
    user: &Actor,
    id: &str,
) -> Result<suiji_mobile_core::RecordDoc> {
    crate::visibility::ensure_full(conn, user, id)?;
    let withdrawn: Option<Option<String>> = conn
        .query_row(
            "SELECT withdrawn_at FROM records WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    match withdrawn {
        None => return Err(Error::NotFound(format!("record {id}"))),
        Some(Some(_)) => return Err(Error::Conflict(format!("record {id} is withdrawn"))),
        Some(None) => {}
    }
    ensure_not_in_group(conn, user, id)?;
    crate::draw::records::load_document(conn, id)
}

/// Maps a record document error to the server's error: wrong review state is a
/// conflict, bad input is invalid, anything else internal.
pub fn doc_error(record_id: &str, field: &str) -> impl Fn(suiji_mobile_core::Error) -> Error {
    let record_id = record_id.to_owned();
    let field = field.to_owned();
    move |e| match e {
        suiji_mobile_core::Error::WrongState { .. } => {
            Error::Conflict(format!("record {record_id}: {e}"))
        }
        suiji_mobile_core::Error::InvalidInput(reason) => Error::invalid(field.clone(), reason),
        other => Error::Internal(format!("record {record_id}: {other}")),
    }
}
