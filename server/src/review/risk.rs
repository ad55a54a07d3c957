//! Risk classes (信用风险分类) follow outcomes. A target's class is where its
//! outcomes have taken it from an anchor: the class it had when its first
//! outcome counted, or the class the registry last set by hand. Each of its
//! published results after the anchor (current version, in publication order)
//! applies the rules:
//!
//! - problems found (any result category but 未发现问题 and the neutral ones
//!   below) make it one class riskier (`risk_raise_on_problems`), and end a
//!   clean run;
//! - `risk_lower_after_clean` clean results (未发现问题) in a row make it one
//!   class lower, and start the run again;
//! - 未发现开展本次抽查涉及的经营活动, 已关闭停业或正在组织清算 and
//!   已注销、被吊销、被撤销或已迁出 say nothing of its risk: no change;
//! - a target on the 严重违法失信 list is D (`risk_serious_to_d`).
//!
//! The class is worked out again from the anchor whenever one of its results
//! is published or corrected, so a correction takes back what the first
//! version did. Every change is kept in `risk_class_history`, and the next
//! draw commitment's pool takes the class as it is then, so `draw verify`
//! still holds.

use crate::store::sql::{Conn, OptionalExtension, Tx, params};
use serde::Serialize;
use suiji_mobile_core::vocab::ResultCategory;

use crate::db::now;
use crate::error::{Error, Result};
use crate::registry::rules::{self, Rules};

/// Classes from the lowest risk to the highest.
const CLASSES: [&str; 4] = ["A", "B", "C", "D"];

/// Why an outcome moved a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Problems found: one class riskier.
    Problems,
    /// A run of clean results: one class lower.
    CleanRun,
    /// On the 严重违法失信 list: D.
    Serious,
}

impl Rule {
    fn code(self) -> &'static str {
        match self {
            Rule::Problems => "problems",
            Rule::CleanRun => "clean_run",
            Rule::Serious => "serious",
        }
    }
}

/// What one published result says of its target's risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 未发现问题 and nothing else.
    Clean,
    /// A problem category (or 未发现问题 beside one).
    Problems,
    /// Only categories that say nothing of risk.
    Neutral,
}

impl Outcome {
    /// The outcome of a result's categories.
    pub fn of(categories: &[ResultCategory]) -> Outcome {
        let neutral = |c: &ResultCategory| {
            matches!(
                c,
                ResultCategory::NoActivity | ResultCategory::Closed | ResultCategory::Deregistered
            )
        };
        if categories
            .iter()
            .any(|c| *c != ResultCategory::NoProblem && !neutral(c))
        {
            Outcome::Problems
        } else if categories.contains(&ResultCategory::NoProblem) {
            Outcome::Clean
        } else {
            Outcome::Neutral
        }
    }
}

/// The class `outcomes` lead to from `anchor` under `rules`, with the rule
/// that moved it last (`None` if nothing did).
pub fn follow(
    rules: &Rules,
    anchor: &str,
    outcomes: &[Outcome],
    serious: bool,
) -> (&'static str, Option<Rule>) {
    let mut at = CLASSES.iter().position(|c| *c == anchor).unwrap_or(0);
    let mut moved = None;
    let mut clean_run = 0;
    for outcome in outcomes {
        match outcome {
            Outcome::Problems => {
                clean_run = 0;
                if rules.risk_raise_on_problems && at < CLASSES.len() - 1 {
                    at += 1;
                    moved = Some(Rule::Problems);
                }
            }
            Outcome::Clean => {
                clean_run += 1;
                if rules.risk_lower_after_clean > 0 && clean_run >= rules.risk_lower_after_clean {
                    clean_run = 0;
                    if at > 0 {
                        at -= 1;
                        moved = Some(Rule::CleanRun);
                    }
                }
            }
            Outcome::Neutral => {}
        }
    }
    if serious && rules.risk_serious_to_d && at != CLASSES.len() - 1 {
        at = CLASSES.len() - 1;
        moved = Some(Rule::Serious);
    }
    (CLASSES[at], moved)
}

/// Works out target `target_id`'s class again after result `result_id` was
/// published (`corrected` false) or corrected, and stores it with its history
/// when it changed.
pub fn reclassify(
    tx: &Tx<'_>,
    target_id: i64,
    result_id: i64,
    record_id: &str,
    corrected: bool,
) -> Result<()> {
    let rules = rules::load(tx)?;
    let (class, anchor, after, serious): (String, Option<String>, Option<i64>, bool) = tx
        .query_row(
            "SELECT risk_class, risk_anchor_class, risk_anchor_after, flag_serious
             FROM targets WHERE id = ?1",
            [target_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
    let (anchor, after) = match (anchor, after) {
        (Some(anchor), Some(after)) => (anchor, after),
        // No anchor yet (first outcome, or the registry set the class since): count from the
        // class as it is, with this result for a new publication and nothing earlier.
        _ => {
            let after = if corrected {
                tx.query_row(
                    "SELECT COALESCE(MAX(id), 0) FROM published_results WHERE target_id = ?1",
                    [target_id],
                    |r| r.get(0),
                )?
            } else {
                result_id - 1
            };
            tx.execute(
                "UPDATE targets SET risk_anchor_class = ?2, risk_anchor_after = ?3 WHERE id = ?1",
                params![target_id, class, after],
            )?;
            (class.clone(), after)
        }
    };
    let outcomes = outcomes_after(tx, target_id, after)?;
    let (to, rule) = follow(&rules, &anchor, &outcomes, serious);
    if to == class {
        return Ok(());
    }
    tx.execute(
        "UPDATE targets SET risk_class = ?2, risk_auto_seq = risk_auto_seq + 1, updated_at = ?3
         WHERE id = ?1",
        params![target_id, to, now()],
    )?;
    tx.execute(
        "INSERT INTO risk_class_history
             (target_id, from_class, to_class, reason, rule, result_id, record_id, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            target_id,
            class,
            to,
            if corrected { "corrected" } else { "published" },
            rule.map(Rule::code),
            result_id,
            record_id,
            now()
        ],
    )?;
    Ok(())
}

/// The outcomes of target `target_id`'s published results after result id `after`, current
/// versions, in publication order.
fn outcomes_after(conn: &Conn, target_id: i64, after: i64) -> Result<Vec<Outcome>> {
    let mut stmt = conn.prepare(
        "SELECT v.content FROM published_results p
         JOIN result_versions v ON v.result_id = p.id AND v.version = p.current_version
         WHERE p.target_id = ?1 AND p.id > ?2 ORDER BY p.id",
    )?;
    let rows = stmt.query_map(params![target_id, after], |r| r.get::<_, String>(0))?;
    let mut outcomes = Vec::new();
    for content in rows {
        let content: serde_json::Value = serde_json::from_str(&content?)?;
        let categories: Vec<ResultCategory> = content["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["code"].as_str().and_then(ResultCategory::from_code))
            .collect();
        outcomes.push(Outcome::of(&categories));
    }
    Ok(outcomes)
}

/// One change of a target's class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassChange {
    /// The class before.
    pub from: String,
    /// The class after.
    pub to: String,
    /// `published`, `corrected` or `registry`.
    pub reason: String,
    /// For outcomes, the rule: `problems`, `clean_run` or `serious`.
    pub rule: Option<String>,
    /// The result that moved it.
    pub result_id: Option<i64>,
    /// Its record.
    pub record_id: Option<String>,
    /// When.
    pub at: String,
}

/// Every change of target `target_id`'s class, oldest first.
pub fn history(conn: &Conn, target_id: i64) -> Result<Vec<ClassChange>> {
    let exists: Option<i64> = conn
        .query_row("SELECT id FROM targets WHERE id = ?1", [target_id], |r| {
            r.get(0)
        })
        .optional()?;
    if exists.is_none() {
        return Err(Error::NotFound(format!("target {target_id}")));
    }
    let mut stmt = conn.prepare(
        "SELECT from_class, to_class, reason, rule, result_id, record_id, at
         FROM risk_class_history WHERE target_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([target_id], |r| {
        Ok(ClassChange {
            from: r.get(0)?,
            to: r.get(1)?,
            reason: r.get(2)?,
            rule: r.get(3)?,
            result_id: r.get(4)?,
            record_id: r.get(5)?,
            at: r.get(6)?,
        })
    })?;
    rows.collect::<Result<_>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(raise: bool, lower_after: u32, serious: bool) -> Rules {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("rules.db")).unwrap();
        let mut r = db.read_blocking(rules::load).unwrap();
        r.risk_raise_on_problems = raise;
        r.risk_lower_after_clean = lower_after;
        r.risk_serious_to_d = serious;
        r
    }

    #[test]
    fn outcomes_move_a_class_one_step_at_a_time_within_a_to_d() {
        use Outcome::*;
        let r = rules(true, 3, true);
        assert_eq!(
            follow(&r, "A", &[Problems], false),
            ("B", Some(Rule::Problems))
        );
        assert_eq!(
            follow(&r, "C", &[Problems, Problems, Problems], false).0,
            "D"
        );
        // Two clean results are not yet a run of three; a problem ends the run.
        assert_eq!(follow(&r, "C", &[Clean, Clean], false), ("C", None));
        assert_eq!(
            follow(&r, "C", &[Clean, Clean, Problems, Clean, Clean], false).0,
            "D"
        );
        assert_eq!(
            follow(&r, "C", &[Clean, Clean, Clean], false),
            ("B", Some(Rule::CleanRun))
        );
        assert_eq!(
            follow(&r, "A", &[Clean; 6], false),
            ("A", None),
            "A is the floor"
        );
        // Neutral results neither move the class nor break a run.
        assert_eq!(
            follow(&r, "B", &[Clean, Neutral, Clean, Neutral, Clean], false).0,
            "A"
        );
        assert_eq!(follow(&r, "A", &[Clean], true), ("D", Some(Rule::Serious)));
        // Rules switched off.
        let off = rules(false, 0, false);
        assert_eq!(
            follow(&off, "B", &[Problems, Clean, Clean, Clean], true),
            ("B", None)
        );
    }

    #[test]
    fn a_result_is_clean_only_without_any_problem_category() {
        use ResultCategory::*;
        assert_eq!(Outcome::of(&[NoProblem]), Outcome::Clean);
        assert_eq!(Outcome::of(&[NoProblem, Rectified]), Outcome::Problems);
        assert_eq!(Outcome::of(&[Unreachable]), Outcome::Problems);
        assert_eq!(Outcome::of(&[Closed]), Outcome::Neutral);
        assert_eq!(Outcome::of(&[]), Outcome::Neutral);
    }
}
