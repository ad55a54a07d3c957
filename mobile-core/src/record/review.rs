//! The server's side of a record: replacing the assignment on a redraw, the review steps, and
//! shape checks of what phones wrote.

use super::{Assignment, RecordDoc, Review, ReviewEvent, keys, now};
use crate::error::{Error, Result};
use crate::vocab::ReviewState;
use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT, ReadDoc};

impl RecordDoc {
    /// The review part: state, round and history.
    pub fn review(&self) -> Result<Review> {
        let obj = self.root_map(keys::REVIEW)?;
        let state = match self.str_at(&obj, keys::STATE)? {
            Some(code) => ReviewState::from_code(&code)
                .ok_or_else(|| Error::Malformed(format!("unknown review state {code:?}")))?,
            None => ReviewState::Open,
        };
        let round = self.uint_at(&obj, keys::ROUND)?.unwrap_or(0);
        let history_obj = self.map_at(&obj, keys::HISTORY)?;
        let mut history = Vec::new();
        // Keys are zero-padded sequence numbers, and automerge lists map keys sorted.
        for key in self.doc.keys(&history_obj).collect::<Vec<_>>() {
            if let Some(event) = self.json_at::<ReviewEvent>(&history_obj, &key)? {
                history.push(event);
            }
        }
        Ok(Review {
            state,
            round,
            history,
        })
    }

    /// Replaces the assignment (a redraw of inspectors, a corrected dossier). Items new to the
    /// assignment get their maps; answers to items no longer assigned stay in the document but
    /// no longer count. Server only.
    pub fn replace_assignment(&mut self, assignment: &Assignment) -> Result<()> {
        assignment.validate().map_err(Error::InvalidInput)?;
        let items = self.root_map(keys::ITEMS)?;
        for item in &assignment.items {
            if self.doc.get(&items, item.code.as_str())?.is_none() {
                let obj = self
                    .doc
                    .put_object(&items, item.code.as_str(), ObjType::Map)?;
                self.doc.put_object(&obj, keys::METHODS, ObjType::Map)?;
            }
        }
        self.doc
            .put(ROOT, keys::ASSIGNMENT, serde_json::to_string(assignment)?)?;
        self.commit("replace assignment");
        Ok(())
    }

    /// Acknowledges a phone's submission: the record becomes `submitted` for the round the
    /// phone wrote. Returns that round. Server only.
    pub fn accept_submission(&mut self, by: &str) -> Result<u64> {
        let review = self.review()?;
        let round = self.submitted_round()?;
        if round <= review.round
            || !matches!(review.state, ReviewState::Open | ReviewState::Returned)
        {
            return Err(Error::WrongState {
                action: "accept a submission of".into(),
                state: review.state.code().into(),
            });
        }
        self.review_step(&review, ReviewState::Submitted, round, by, None)?;
        Ok(round)
    }

    /// Sends a submitted record back to the inspectors with comments. Server only.
    pub fn return_for_revision(&mut self, by: &str, comment: &str) -> Result<()> {
        let review = self.review_in(ReviewState::Submitted, "return")?;
        if comment.trim().is_empty() {
            return Err(Error::InvalidInput("say why the record is returned".into()));
        }
        self.review_step(
            &review,
            ReviewState::Returned,
            review.round,
            by,
            Some(comment),
        )
    }

    /// Approves a submitted record. Server only.
    pub fn approve(&mut self, by: &str, comment: Option<&str>) -> Result<()> {
        let review = self.review_in(ReviewState::Submitted, "approve")?;
        self.review_step(&review, ReviewState::Approved, review.round, by, comment)
    }

    /// Marks an approved record as published. Server only.
    pub fn publish(&mut self, by: &str) -> Result<()> {
        let review = self.review_in(ReviewState::Approved, "publish")?;
        self.review_step(&review, ReviewState::Published, review.round, by, None)
    }

    fn review_in(&self, state: ReviewState, action: &str) -> Result<Review> {
        let review = self.review()?;
        if review.state != state {
            return Err(Error::WrongState {
                action: action.into(),
                state: review.state.code().into(),
            });
        }
        Ok(review)
    }

    fn review_step(
        &mut self,
        before: &Review,
        state: ReviewState,
        round: u64,
        by: &str,
        comment: Option<&str>,
    ) -> Result<()> {
        let obj = self.root_map(keys::REVIEW)?;
        let history = self.map_at(&obj, keys::HISTORY)?;
        let event = ReviewEvent {
            state,
            round,
            by: by.to_owned(),
            at: now(),
            comment: comment.map(str::to_owned),
        };
        let key = format!("{:06}", before.history.len());
        self.put_json(&history, &key, &event)?;
        self.doc.put(&obj, keys::STATE, state.code())?;
        self.doc.put(&obj, keys::ROUND, round)?;
        self.commit(&format!("review: {}", state.code()));
        Ok(())
    }

    /// Shape problems in the document: unknown root keys, values of the wrong type, JSON that
    /// does not parse, entries naming items that are not assigned. Empty when well formed.
    /// The server runs this on a record with incoming changes applied before keeping them.
    pub fn check_shape(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let known: Vec<&str> = [keys::SCHEMA_VERSION, keys::RECORD_ID, keys::ASSIGNMENT]
            .into_iter()
            .chain(keys::ROOT_MAPS.iter().copied())
            .collect();
        for key in self.doc.keys(ROOT) {
            if !known.contains(&key.as_str()) {
                problems.push(format!("unknown field {key}"));
            }
        }
        let assignment = match self.assignment() {
            Ok(a) => a,
            Err(e) => {
                problems.push(e.to_string());
                return problems;
            }
        };
        let mut note = |r: Result<()>| {
            if let Err(e) = r {
                problems.push(e.to_string());
            }
        };
        note(self.items().map(drop));
        note(self.result_categories().map(drop));
        note(self.follow_up().map(drop));
        note(self.party_statement().map(drop));
        note(self.party_signature().map(drop));
        note(self.signatures().map(drop));
        note(self.submissions().map(drop));
        note(self.review().map(drop));
        note(self.notes().and_then(|notes| {
            match notes.iter().find(|n| assignment.item(&n.item).is_none()) {
                Some(n) => Err(Error::Malformed(format!(
                    "note {} names unassigned item {}",
                    n.id, n.item
                ))),
                None => Ok(()),
            }
        }));
        note(self.photos().and_then(|photos| {
            match photos.iter().find(|p| assignment.item(&p.item).is_none()) {
                Some(p) => Err(Error::Malformed(format!(
                    "photo {} names unassigned item {}",
                    p.sha256, p.item
                ))),
                None => Ok(()),
            }
        }));
        note((|| {
            let obj = self.root_map(keys::SIGNATURES)?;
            for key in self.doc.keys(&obj) {
                let sig: Option<super::InspectorSignature> = self.json_at(&obj, &key)?;
                if let Some(sig) = sig
                    && sig.inspector_id.as_str() != key
                {
                    return Err(Error::Malformed(format!(
                        "signature under {key} is by {}",
                        sig.inspector_id
                    )));
                }
            }
            Ok(())
        })());
        problems
    }
}
