//! Finishing a record: the content digest signatures cover, signing, the completeness check
//! and submission.

use super::{
    EvidenceNote, FollowUp, InspectorSignature, ItemAnswer, PartySignature, PhotoMeta, RecordDoc,
    Submission, keys, now,
};
use crate::error::{Error, Result};
use crate::ids::{BlobHash, InspectorId, ItemCode};
use crate::vocab::{FollowUpMeasure, ResultCategory, ReviewState};
use automerge::ChangeHash;
use serde::Serialize;
use sha2::Digest;
use std::collections::BTreeSet;
use std::fmt;

/// Inspector signatures a record needs before it can be submitted.
pub const REQUIRED_INSPECTOR_SIGNATURES: usize = 2;

/// One reason a record cannot be submitted yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Missing {
    /// Nobody said whether the item was checked.
    ItemNotAnswered {
        /// The item.
        item: ItemCode,
    },
    /// The item was checked but no method is recorded.
    ItemWithoutMethod {
        /// The item.
        item: ItemCode,
    },
    /// No finding (or, for an item not checked, no reason) is recorded.
    ItemWithoutFinding {
        /// The item.
        item: ItemCode,
    },
    /// No result category is selected.
    NoResultCategory,
    /// "No problem found" is selected together with a category that reports a problem.
    ContradictoryResults,
    /// A selected result needs a follow-up measure that is not recorded.
    FollowUpRequired {
        /// The result that needs it.
        result: ResultCategory,
        /// The measure it needs; `None` means any measure other than "none".
        measure: Option<FollowUpMeasure>,
    },
    /// The follow-up measure needs a deadline (责令改正 is always 限期).
    FollowUpDeadline,
    /// Fewer valid inspector signatures than needed.
    InspectorSignatures {
        /// Valid signatures present.
        valid: usize,
        /// Needed.
        needed: usize,
    },
    /// An inspector signed, but the record changed afterwards: they must sign again.
    StaleSignature {
        /// Who signed.
        inspector: InspectorId,
    },
    /// Concurrent edits left different values that an inspector must settle.
    UnresolvedConflict {
        /// The field, as listed by `RecordDoc::conflicts`.
        field: String,
    },
}

impl Missing {
    /// A stable code for apps to key messages on.
    pub fn code(&self) -> &'static str {
        match self {
            Missing::ItemNotAnswered { .. } => "item_not_answered",
            Missing::ItemWithoutMethod { .. } => "item_without_method",
            Missing::ItemWithoutFinding { .. } => "item_without_finding",
            Missing::NoResultCategory => "no_result_category",
            Missing::ContradictoryResults => "contradictory_results",
            Missing::FollowUpRequired { .. } => "follow_up_required",
            Missing::FollowUpDeadline => "follow_up_deadline",
            Missing::InspectorSignatures { .. } => "inspector_signatures",
            Missing::StaleSignature { .. } => "stale_signature",
            Missing::UnresolvedConflict { .. } => "unresolved_conflict",
        }
    }

    /// The item concerned, if the reason is about one item.
    pub fn item(&self) -> Option<&ItemCode> {
        match self {
            Missing::ItemNotAnswered { item }
            | Missing::ItemWithoutMethod { item }
            | Missing::ItemWithoutFinding { item } => Some(item),
            _ => None,
        }
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::ItemNotAnswered { item } => {
                write!(f, "item {item}: say whether it was checked (是否检查)")
            }
            Missing::ItemWithoutMethod { item } => {
                write!(f, "item {item}: record the method used (核查方式)")
            }
            Missing::ItemWithoutFinding { item } => {
                write!(
                    f,
                    "item {item}: record the finding, or why it was not checked (检查情况)"
                )
            }
            Missing::NoResultCategory => write!(f, "select at least one result (检查结果)"),
            Missing::ContradictoryResults => write!(
                f,
                "\"{}\" cannot stand with a result that reports a problem",
                ResultCategory::NoProblem.label()
            ),
            Missing::FollowUpRequired {
                result,
                measure: Some(m),
            } => write!(
                f,
                "result \"{}\" needs follow-up \"{}\"",
                result.label(),
                m.label()
            ),
            Missing::FollowUpRequired {
                result,
                measure: None,
            } => write!(
                f,
                "result \"{}\" needs a follow-up measure (后续处置)",
                result.label()
            ),
            Missing::FollowUpDeadline => {
                write!(f, "the follow-up measure needs a deadline (整改期限)")
            }
            Missing::InspectorSignatures { valid, needed } => write!(
                f,
                "{needed} inspector signatures are needed, {valid} present (检查人员签名)"
            ),
            Missing::StaleSignature { inspector } => write!(
                f,
                "inspector {inspector} signed an earlier version and must sign again"
            ),
            Missing::UnresolvedConflict { field } => {
                write!(f, "conflicting answers for {field} must be settled")
            }
        }
    }
}

/// What `submit` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SubmitOutcome {
    /// Submitted as this round.
    Submitted {
        /// Round number.
        round: u64,
    },
    /// Not submitted: these are missing.
    Incomplete {
        /// What is missing, in the order of the form.
        missing: Vec<Missing>,
    },
}

/// What signatures cover: every answer, note, photo, result, follow-up and the party's
/// statement, but not the signatures themselves nor the review.
#[derive(Serialize)]
struct Content {
    items: Vec<(ItemCode, ItemAnswer)>,
    notes: Vec<EvidenceNote>,
    photos: Vec<PhotoMeta>,
    results: BTreeSet<ResultCategory>,
    follow_up: FollowUp,
    party_statement: Option<String>,
}

/// Results that report a problem and so contradict "no problem found".
const PROBLEM_RESULTS: &[ResultCategory] = &[
    ResultCategory::NotPublicized,
    ResultCategory::FalsePublicity,
    ResultCategory::Rectified,
    ResultCategory::Uncooperative,
    ResultCategory::PendingFollowup,
];

impl RecordDoc {
    /// SHA-256 (hex) of the record's content as signatures cover it.
    pub fn content_digest(&self) -> Result<String> {
        let mut notes = self.notes()?;
        notes.sort_by(|a, b| a.id.cmp(&b.id));
        let mut photos = self.photos()?;
        photos.sort_by(|a, b| a.sha256.cmp(&b.sha256));
        let content = Content {
            items: self
                .items()?
                .into_iter()
                .map(|(item, answer)| (item.code, answer))
                .collect(),
            notes,
            photos,
            results: self.result_categories()?,
            follow_up: self.follow_up()?,
            party_statement: self.party_statement()?,
        };
        Ok(hex::encode(sha2::Sha256::digest(serde_json::to_vec(
            &content,
        )?)))
    }

    /// The content digest as it was at `heads`: lets anyone check what a signature covered.
    pub fn content_digest_at(&mut self, heads: &[ChangeHash]) -> Result<String> {
        let past = RecordDoc {
            doc: self.doc.fork_at(heads)?,
        };
        past.content_digest()
    }

    /// Puts an inspector's signature under their id and commits.
    pub(super) fn put_signature(&mut self, signature: &InspectorSignature) -> Result<()> {
        let obj = self.root_map(keys::SIGNATURES)?;
        self.put_json(&obj, signature.inspector_id.as_str(), signature)?;
        self.commit("inspector signs");
        Ok(())
    }

    /// Records the party's signature.
    pub fn party_sign(
        &mut self,
        name: &str,
        role: &str,
        image_sha256: Option<BlobHash>,
    ) -> Result<PartySignature> {
        self.ensure_editable()?;
        if name.trim().is_empty() {
            return Err(Error::InvalidInput(
                "the party's signer needs a name".into(),
            ));
        }
        let signature = PartySignature::Signed {
            name: name.to_owned(),
            role: role.to_owned(),
            heads: self.heads_hex(),
            content_sha256: self.content_digest()?,
            signed_at: now(),
            image_sha256,
        };
        self.put_party_signature(&signature)?;
        Ok(signature)
    }

    /// Records that the party refused to sign, and why.
    pub fn party_refuse(
        &mut self,
        recorded_by: &InspectorId,
        reason: &str,
    ) -> Result<PartySignature> {
        self.ensure_editable()?;
        if reason.trim().is_empty() {
            return Err(Error::InvalidInput("record why the party refused".into()));
        }
        let signature = PartySignature::Refused {
            reason: reason.to_owned(),
            recorded_by: recorded_by.clone(),
            recorded_at: now(),
        };
        self.put_party_signature(&signature)?;
        Ok(signature)
    }

    fn put_party_signature(&mut self, signature: &PartySignature) -> Result<()> {
        let obj = self.root_map(keys::PARTY)?;
        self.put_json(&obj, keys::SIGNATURE, signature)?;
        self.commit("party signature");
        Ok(())
    }

    /// Everything that stands between the record and submission, in form order. Empty when
    /// the record is complete.
    pub fn missing_for_submit(&self) -> Result<Vec<Missing>> {
        let mut missing = Vec::new();
        let assignment = self.assignment()?;
        for (item, answer) in self.items()? {
            let has_finding = answer
                .finding
                .as_deref()
                .is_some_and(|f| !f.trim().is_empty());
            match answer.checked {
                None => missing.push(Missing::ItemNotAnswered { item: item.code }),
                Some(checked) => {
                    if checked && answer.methods.is_empty() {
                        missing.push(Missing::ItemWithoutMethod {
                            item: item.code.clone(),
                        });
                    }
                    if !has_finding {
                        missing.push(Missing::ItemWithoutFinding { item: item.code });
                    }
                }
            }
        }

        let results = self.result_categories()?;
        if results.is_empty() {
            missing.push(Missing::NoResultCategory);
        }
        if results.contains(&ResultCategory::NoProblem)
            && PROBLEM_RESULTS.iter().any(|r| results.contains(r))
        {
            missing.push(Missing::ContradictoryResults);
        }
        let follow_up = self.follow_up()?;
        if results.contains(&ResultCategory::Rectified)
            && follow_up.measure != Some(FollowUpMeasure::OrderRectification)
        {
            missing.push(Missing::FollowUpRequired {
                result: ResultCategory::Rectified,
                measure: Some(FollowUpMeasure::OrderRectification),
            });
        }
        if results.contains(&ResultCategory::PendingFollowup)
            && matches!(follow_up.measure, None | Some(FollowUpMeasure::None))
        {
            missing.push(Missing::FollowUpRequired {
                result: ResultCategory::PendingFollowup,
                measure: None,
            });
        }
        if follow_up
            .measure
            .is_some_and(FollowUpMeasure::needs_deadline)
            && follow_up.deadline.is_none()
        {
            missing.push(Missing::FollowUpDeadline);
        }

        let digest = self.content_digest()?;
        let mut valid = BTreeSet::new();
        for signature in self.signatures()? {
            if assignment.inspector(&signature.inspector_id).is_none() {
                continue;
            }
            if signature.content_sha256 == digest {
                valid.insert(signature.inspector_id);
            } else {
                missing.push(Missing::StaleSignature {
                    inspector: signature.inspector_id,
                });
            }
        }
        if valid.len() < REQUIRED_INSPECTOR_SIGNATURES {
            missing.push(Missing::InspectorSignatures {
                valid: valid.len(),
                needed: REQUIRED_INSPECTOR_SIGNATURES,
            });
        }

        for conflict in self.conflicts()? {
            missing.push(Missing::UnresolvedConflict {
                field: conflict.field,
            });
        }
        Ok(missing)
    }

    /// Submits the record for review if it is complete; otherwise changes nothing and says
    /// what is missing. A returned record is submitted as the next round.
    pub fn submit(&mut self, by: &InspectorId) -> Result<SubmitOutcome> {
        self.ensure_editable()?;
        if self.assignment()?.inspector(by).is_none() {
            return Err(Error::InvalidInput(format!(
                "inspector {by} is not in this record's group"
            )));
        }
        let missing = self.missing_for_submit()?;
        if !missing.is_empty() {
            return Ok(SubmitOutcome::Incomplete { missing });
        }
        let review = self.review()?;
        debug_assert!(matches!(
            review.state,
            ReviewState::Open | ReviewState::Returned
        ));
        let round = review.round + 1;
        let submission = Submission {
            round,
            by: by.clone(),
            at: now(),
            heads: self.heads_hex(),
        };
        let obj = self.root_map(keys::SUBMISSIONS)?;
        self.put_json(&obj, &round.to_string(), &submission)?;
        self.commit("submit");
        Ok(SubmitOutcome::Submitted { round })
    }
}
