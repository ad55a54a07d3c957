//! The agency's rules (细则): per-risk-class ratios, group size, the yearly
//! frequency cap, publication deadlines, which flags make a target a
//! must-include in draws, how outcomes weigh in the next draws (a clean target's cooldown, a
//! problem target's weight), how many observers a draw needs and how long a task's records
//! are kept after its results were published.

use crate::store::sql::{Conn, Tx, params};
use axum::Json;
use axum::extract::{FromRequest, Request, State};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{check_ratio, require_reader, require_writer};
use crate::AppState;
use crate::audit;
use crate::auth::AuthUser;
use crate::db::now;
use crate::error::{Error, Result};
use crate::extract::{ApiJson, parse_json};

/// Share of each credit risk class drawn by default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassRatios {
    /// Class A (low risk).
    #[serde(rename = "A")]
    pub a: f64,
    /// Class B.
    #[serde(rename = "B")]
    pub b: f64,
    /// Class C.
    #[serde(rename = "C")]
    pub c: f64,
    /// Class D (high risk).
    #[serde(rename = "D")]
    pub d: f64,
}

/// The rules in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Per-class ratios.
    pub ratios: ClassRatios,
    /// Inspectors per group, at least 2.
    pub group_size: u32,
    /// Times a year the same target may be drawn for the same item.
    pub frequency_cap: u32,
    /// Working days from the end of an inspection to publication of its result.
    pub result_publication_days: u32,
    /// Working days from a draw to publication of the drawn list.
    pub list_publication_days: u32,
    /// Working days from verification to listing in 经营异常名录.
    pub abnormal_list_days: u32,
    /// Targets listed as 严重违法失信 are always drawn.
    pub must_include_serious: bool,
    /// Targets on 经营异常名录 are always drawn.
    pub must_include_abnormal: bool,
    /// Targets with complaints are always drawn.
    pub must_include_complaints: bool,
    /// Lowest ratio of a task with general items (一般检查事项).
    pub general_ratio_min: f64,
    /// Highest ratio of a task with general items; key items have no ceiling.
    pub general_ratio_max: f64,
    /// Observers' entries a draw needs at least (distinct observers, 1 to 50).
    pub min_observers: u32,
    /// A published result with problems found makes its target one risk class riskier.
    pub risk_raise_on_problems: bool,
    /// This many clean results (未发现问题) in a row make a target one class lower; 0 never
    /// (0 to 20).
    pub risk_lower_after_clean: u32,
    /// A target on the 严重违法失信 list goes to class D when a result of it is published.
    pub risk_serious_to_d: bool,
    /// Years a task's records are kept after its results were last published (at least 2,
    /// the 归档 rules' minimum); only then may an admin purge them.
    pub retention_years: u32,
    /// Days after a clean result (未发现问题) during which its target is left out of the pools of
    /// tasks sharing an item with it, counted back from the task's window start; 0 off (0 to
    /// 1095).
    pub clean_cooldown_days: u32,
    /// How much more likely than the others of its stratum a target whose latest result had
    /// problems is to be drawn for a task sharing an item with it; 1 off (1 to 10).
    pub problem_weight: u32,
    /// When the rules last changed (ignored on input).
    #[serde(default, skip_deserializing)]
    pub updated_at: String,
}

impl Rules {
    /// Fails unless `ratio` is allowed for a task whose items include general
    /// ones (`has_general`); key items have no ceiling.
    pub fn check_task_ratio(&self, ratio: f64, has_general: bool) -> Result<()> {
        check_ratio("ratio", ratio)?;
        if has_general && !(self.general_ratio_min..=self.general_ratio_max).contains(&ratio) {
            return Err(Error::invalid(
                "ratio",
                format!(
                    "{ratio} is out of bounds for general items (一般检查事项): between {} and {}",
                    self.general_ratio_min, self.general_ratio_max
                ),
            ));
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        for (field, r) in [
            ("ratios.A", self.ratios.a),
            ("ratios.B", self.ratios.b),
            ("ratios.C", self.ratios.c),
            ("ratios.D", self.ratios.d),
        ] {
            check_ratio(field, r)?;
        }
        check_ratio("general_ratio_min", self.general_ratio_min)?;
        check_ratio("general_ratio_max", self.general_ratio_max)?;
        if self.general_ratio_min > self.general_ratio_max {
            return Err(Error::invalid(
                "general_ratio_max",
                "must not be below general_ratio_min",
            ));
        }
        if !(2..=10).contains(&self.group_size) {
            return Err(Error::invalid(
                "group_size",
                "a group has 2 to 10 inspectors",
            ));
        }
        if !(1..=crate::draw::MAX_OBSERVERS as u32).contains(&self.min_observers) {
            return Err(Error::invalid(
                "min_observers",
                format!(
                    "a draw needs 1 to {} observers' entries",
                    crate::draw::MAX_OBSERVERS
                ),
            ));
        }
        if self.risk_lower_after_clean > 20 {
            return Err(Error::invalid(
                "risk_lower_after_clean",
                "0 (never) to 20 clean results in a row",
            ));
        }
        if !(MIN_RETENTION_YEARS..=MAX_RETENTION_YEARS).contains(&self.retention_years) {
            return Err(Error::invalid(
                "retention_years",
                format!(
                    "records are kept {MIN_RETENTION_YEARS} to {MAX_RETENTION_YEARS} years \
                     after their results were published"
                ),
            ));
        }
        if self.clean_cooldown_days > MAX_CLEAN_COOLDOWN_DAYS {
            return Err(Error::invalid(
                "clean_cooldown_days",
                format!("0 (off) to {MAX_CLEAN_COOLDOWN_DAYS} days"),
            ));
        }
        if !(1..=crate::draw::algorithm::MAX_PROBLEM_WEIGHT).contains(&self.problem_weight) {
            return Err(Error::invalid(
                "problem_weight",
                format!("1 (off) to {}", crate::draw::algorithm::MAX_PROBLEM_WEIGHT),
            ));
        }
        if !(1..=52).contains(&self.frequency_cap) {
            return Err(Error::invalid("frequency_cap", "between 1 and 52 a year"));
        }
        for (field, days) in [
            ("result_publication_days", self.result_publication_days),
            ("list_publication_days", self.list_publication_days),
            ("abnormal_list_days", self.abnormal_list_days),
        ] {
            if !(1..=120).contains(&days) {
                return Err(Error::invalid(field, "between 1 and 120 working days"));
            }
        }
        Ok(())
    }
}

/// The shortest retention the rules allow, and the default: two years.
pub const MIN_RETENTION_YEARS: u32 = 2;
/// The longest retention the rules take.
pub const MAX_RETENTION_YEARS: u32 = 100;
/// The longest cooldown after a clean result the rules take: three years.
pub const MAX_CLEAN_COOLDOWN_DAYS: u32 = 1095;

/// The rules in force.
pub fn load(conn: &Conn) -> Result<Rules> {
    conn.query_row(
        "SELECT ratio_a, ratio_b, ratio_c, ratio_d, group_size, frequency_cap,
            result_publication_days, list_publication_days, abnormal_list_days,
            must_include_serious, must_include_abnormal, must_include_complaints, updated_at,
            general_ratio_min, general_ratio_max, min_observers, retention_years,
            risk_raise_on_problems, risk_lower_after_clean, risk_serious_to_d,
            clean_cooldown_days, problem_weight
         FROM rules WHERE id = 1",
        [],
        |r| {
            Ok(Rules {
                ratios: ClassRatios {
                    a: r.get(0)?,
                    b: r.get(1)?,
                    c: r.get(2)?,
                    d: r.get(3)?,
                },
                group_size: r.get(4)?,
                frequency_cap: r.get(5)?,
                result_publication_days: r.get(6)?,
                list_publication_days: r.get(7)?,
                abnormal_list_days: r.get(8)?,
                must_include_serious: r.get(9)?,
                must_include_abnormal: r.get(10)?,
                must_include_complaints: r.get(11)?,
                updated_at: r.get(12)?,
                general_ratio_min: r.get(13)?,
                general_ratio_max: r.get(14)?,
                min_observers: r.get(15)?,
                retention_years: r.get(16)?,
                risk_raise_on_problems: r.get(17)?,
                risk_lower_after_clean: r.get(18)?,
                risk_serious_to_d: r.get(19)?,
                clean_cooldown_days: r.get(20)?,
                problem_weight: r.get(21)?,
            })
        },
    )
}

/// Replaces the rules, auditing before and after.
pub fn store(tx: &Tx<'_>, actor: &str, rules: &Rules) -> Result<Rules> {
    rules.validate()?;
    let before = load(tx)?;
    tx.execute(
        "UPDATE rules SET ratio_a = ?1, ratio_b = ?2, ratio_c = ?3, ratio_d = ?4,
            group_size = ?5, frequency_cap = ?6, result_publication_days = ?7,
            list_publication_days = ?8, abnormal_list_days = ?9, must_include_serious = ?10,
            must_include_abnormal = ?11, must_include_complaints = ?12, updated_at = ?13,
            general_ratio_min = ?14, general_ratio_max = ?15, min_observers = ?16,
            retention_years = ?17, risk_raise_on_problems = ?18, risk_lower_after_clean = ?19,
            risk_serious_to_d = ?20, clean_cooldown_days = ?21, problem_weight = ?22
         WHERE id = 1",
        params![
            rules.ratios.a,
            rules.ratios.b,
            rules.ratios.c,
            rules.ratios.d,
            rules.group_size,
            rules.frequency_cap,
            rules.result_publication_days,
            rules.list_publication_days,
            rules.abnormal_list_days,
            rules.must_include_serious,
            rules.must_include_abnormal,
            rules.must_include_complaints,
            now(),
            rules.general_ratio_min,
            rules.general_ratio_max,
            rules.min_observers,
            rules.retention_years,
            rules.risk_raise_on_problems,
            rules.risk_lower_after_clean,
            rules.risk_serious_to_d,
            rules.clean_cooldown_days,
            rules.problem_weight
        ],
    )?;
    let after = load(tx)?;
    audit::append(
        tx,
        actor,
        "rules.update",
        "rules",
        Some(&json!(before)),
        Some(&json!(after)),
    )?;
    Ok(after)
}

pub(super) async fn get_rules(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Rules>> {
    require_reader(&user)?;
    Ok(Json(state.db.read(load).await?))
}

/// `PUT /api/v1/rules`: the role is checked before the body is read, and the body names
/// only the rules it changes (a JSON merge over the rules in force: `{"group_size": 3}`, or
/// `{"ratios": {"D": 0.5}}`); the rules that result are checked as a whole.
pub(super) async fn put_rules(
    State(state): State<AppState>,
    user: AuthUser,
    request: Request,
) -> Result<Json<Rules>> {
    require_writer(&user)?;
    let ApiJson(change) = ApiJson::<Map<String, Value>>::from_request(request, &state).await?;
    Ok(Json(
        state
            .db
            .write(move |tx| apply_change(tx, &user.username, change))
            .await?,
    ))
}

/// Applies a partial change to the rules in force (fields absent keep their value; nested
/// `ratios` merge the same way) and stores the result, auditing it. `updated_at` in the
/// change is ignored, so that what `GET` answers may be sent back as it is.
pub fn apply_change(tx: &Tx<'_>, actor: &str, mut change: Map<String, Value>) -> Result<Rules> {
    change.remove("updated_at");
    let mut merged = serde_json::to_value(load(tx)?)?;
    if let Some(fields) = merged.as_object_mut() {
        fields.remove("updated_at");
    }
    merge(&mut merged, Value::Object(change));
    let rules: Rules = parse_json(&serde_json::to_vec(&merged)?)?;
    store(tx, actor, &rules)
}

/// JSON merge (RFC 7396 without deletion: a `null` is kept and refused by the type check).
fn merge(base: &mut Value, change: Value) {
    match (base, change) {
        (Value::Object(base), Value::Object(change)) => {
            for (key, value) in change {
                match base.get_mut(&key) {
                    Some(inner) if inner.is_object() && value.is_object() => merge(inner, value),
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, change) => *base = change,
    }
}
