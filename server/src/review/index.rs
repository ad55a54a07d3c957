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

use crate::store::sql::{Tx, params};
use suiji_mobile_core::RecordDoc;
use suiji_mobile_core::vocab::ReviewState;

use super::{china_date, doc_error};
use crate::draw::records::load_document;
use crate::error::Result;

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The review index columns of one record, as its document gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRow {
    review_state: &'static str,
    review_round: i64,
    submitted_at: Option<String>,
    inspection_ended_on: Option<String>,
    has_conflicts: bool,
    approved_at: Option<String>,
    published_at: Option<String>,
}

impl IndexRow {
    /// Works the columns out of `doc` (as stored, with every change kept).
    pub fn of(record_id: &str, doc: &RecordDoc) -> Result<IndexRow> {
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
        let last_event = |state: ReviewState| {
            review
                .history
                .iter()
                .rev()
                .find(|e| e.state == state)
                .map(|e| rfc3339(e.at))
        };
        Ok(IndexRow {
            review_state: review.state.code(),
            review_round: review.round as i64,
            submitted_at: accepted.last().map(|s| rfc3339(s.at)),
            inspection_ended_on: accepted.first().map(|s| china_date(s.at).to_string()),
            has_conflicts: !doc.conflicts().map_err(&err)?.is_empty(),
            approved_at: last_event(ReviewState::Approved),
            published_at: last_event(ReviewState::Published),
        })
    }

    /// Writes the columns to `record_id` and clears its stale mark.
    pub fn write(&self, tx: &Tx<'_>, record_id: &str) -> Result<()> {
        tx.prepare_cached(
            "UPDATE records SET review_state = ?1, review_round = ?2, submitted_at = ?3,
                inspection_ended_on = ?4, has_conflicts = ?5, approved_at = ?6, published_at = ?7,
                index_stale = 0
             WHERE id = ?8",
        )?
        .execute(params![
            self.review_state,
            self.review_round,
            self.submitted_at,
            self.inspection_ended_on,
            self.has_conflicts,
            self.approved_at,
            self.published_at,
            record_id
        ])?;
        Ok(())
    }
}

/// Writes the review index columns of `record_id` from its document `doc` (as
/// stored, with every change kept) and clears its stale mark.
pub fn refresh_record_index(tx: &Tx<'_>, record_id: &str, doc: &RecordDoc) -> Result<()> {
    IndexRow::of(record_id, doc)?.write(tx, record_id)
}

/// Refreshes the index of every record changed since it was last indexed.
/// Returns how many were refreshed.
pub fn refresh_stale(tx: &Tx<'_>) -> Result<usize> {
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
