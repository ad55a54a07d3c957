//! The review index: SQL columns on `records` derived from each record
//! document (review state and round, submission times, when the inspection
//! ended, conflicts), so that queues, deadlines and statistics are served from
//! SQL without loading documents.
//!
//! "Inspection ended" is the date (China time) of the **first** accepted
//! submission: that is when the inspectors finished on site. A return for
//! corrections does not restart the statutory clock, so a record cannot be
//! kept from its publication deadline by being sent back and forth. Until a
//! record is submitted, deadlines count from the task's window end.
//!
//! A trigger marks a record `index_stale` whenever a change is appended to it
//! (by sync or anyone else); [`refresh_stale`] brings such records up to date
//! before a list is served, and [`refresh_record_index`] does one record at
//! once where the document is already at hand.

use rusqlite::{Transaction, params};
use suiji_mobile_core::RecordDoc;
use suiji_mobile_core::vocab::ReviewState;

use super::{china_date, doc_error};
use crate::draw::records::load_document;
use crate::error::Result;

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Writes the review index columns of `record_id` from its document `doc` (as
/// stored, with every change kept) and clears its stale mark.
pub fn refresh_record_index(tx: &Transaction<'_>, record_id: &str, doc: &RecordDoc) -> Result<()> {
    let err = doc_error(record_id, "record");
    let review = doc.review().map_err(&err)?;
    let submissions = doc.submissions().map_err(&err)?;
    let accepted: Vec<_> = if review.state == ReviewState::Open {
        Vec::new()
    } else {
        submissions
            .iter()
            .filter(|s| s.round <= review.round)
            .collect()
    };
    let submitted_at = accepted.last().map(|s| rfc3339(s.at));
    let ended_on = accepted.first().map(|s| china_date(s.at).to_string());
    let has_conflicts = !doc.conflicts().map_err(&err)?.is_empty();
    let last_event = |state: ReviewState| {
        review
            .history
            .iter()
            .rev()
            .find(|e| e.state == state)
            .map(|e| rfc3339(e.at))
    };
    tx.execute(
        "UPDATE records SET review_state = ?1, review_round = ?2, submitted_at = ?3,
            inspection_ended_on = ?4, has_conflicts = ?5, approved_at = ?6, published_at = ?7,
            index_stale = 0
         WHERE id = ?8",
        params![
            review.state.code(),
            review.round as i64,
            submitted_at,
            ended_on,
            has_conflicts,
            last_event(ReviewState::Approved),
            last_event(ReviewState::Published),
            record_id
        ],
    )?;
    Ok(())
}

/// Refreshes the index of every record changed since it was last indexed.
/// Returns how many were refreshed.
pub fn refresh_stale(tx: &Transaction<'_>) -> Result<usize> {
    let ids: Vec<String> = {
        let mut stmt = tx.prepare("SELECT id FROM records WHERE index_stale = 1")?;
        stmt.query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    for id in &ids {
        let doc = load_document(tx, id)?;
        refresh_record_index(tx, id, &doc)?;
    }
    Ok(ids.len())
}
