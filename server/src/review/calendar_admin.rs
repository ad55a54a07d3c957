//! Loading newer holiday schedules: an admin posts a year in holiday-cn's JSON
//! format; it is checked, stored in `calendar_years` (so it survives
//! restarts), applied at once and again over the shipped years at every start.
//!
//! Loading a year makes the deadlines that ran into it final. Those the server
//! counts when read (the review API, the console) are final from the next
//! read; those written at the draw (`records.deadline` and each document's
//! assignment) are counted again in the same transaction
//! (`draw::records::finalise_deadlines`), and the answer says how many moved.

use std::sync::Arc;

use crate::store::sql::{Conn, params};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::AppState;
use crate::audit;
use crate::auth::{AuthUser, Role};
use crate::calendar::Calendar;
use crate::db::now;
use crate::error::{Error, Result};
use crate::extract::ApiJson;

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/calendar", post(load))
        .route("/api/v1/calendar", get(years))
}

/// The shipped schedules with every stored year applied over them.
pub fn build_calendar(conn: &Conn) -> Result<Calendar> {
    let mut calendar = Calendar::official();
    let mut stmt = conn.prepare("SELECT year, json FROM calendar_years ORDER BY year")?;
    let stored = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    for (year, json) in stored {
        if let Err(e) = calendar.load_year(&json) {
            tracing::error!(year, error = %e, "stored holiday schedule does not load; skipped");
        }
    }
    Ok(calendar)
}

async fn load(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>)> {
    user.require(&[Role::Admin])?;
    let text = body.to_string();
    let mut check = Calendar::default();
    let year = check
        .load_year(&text)
        .map_err(|e| Error::invalid("days", e.to_string()))?;
    let days = body["days"].as_array().map_or(0, Vec::len);
    let shared = state.calendar.clone();
    let answer = state
        .db
        .write(move |tx| {
            let replaced: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM calendar_years WHERE year = ?1)",
                [year],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO calendar_years (year, json, loaded_at, loaded_by) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(year) DO UPDATE SET json = excluded.json, loaded_at = excluded.loaded_at,
                    loaded_by = excluded.loaded_by",
                params![year, text, now(), user.username],
            )?;
            // Rebuilt under the writer lock, so concurrent loads cannot drop a year.
            let calendar = build_calendar(tx)?;
            let finalised = crate::draw::records::finalise_deadlines(tx, &calendar, year)?;
            let answer = json!({"year": year, "days": days, "replaced": replaced,
                                "deadlines_updated": finalised.len()});
            audit::append(
                tx,
                &user.username,
                "calendar.load",
                &format!("calendar:{year}"),
                None,
                Some(&answer),
            )?;
            // Shared only now: a failure above rolls back and leaves the old calendar.
            match shared.write() {
                Ok(mut guard) => *guard = Arc::new(calendar),
                Err(poisoned) => *poisoned.into_inner() = Arc::new(calendar),
            }
            Ok(answer)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

async fn years(State(state): State<AppState>, user: AuthUser) -> Result<Json<Value>> {
    let _ = user;
    let calendar = state.calendar();
    let stored = state
        .db
        .read(|c| {
            let mut stmt =
                c.prepare("SELECT year, loaded_at, loaded_by FROM calendar_years ORDER BY year")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i32>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await?;
    let years: Vec<Value> = calendar
        .years()
        .map(|year| match stored.iter().find(|(y, _, _)| *y == year) {
            Some((_, at, by)) => {
                json!({"year": year, "source": "loaded", "loaded_at": at, "loaded_by": by})
            }
            None => json!({"year": year, "source": "shipped"}),
        })
        .collect();
    Ok(Json(json!({"years": years})))
}
