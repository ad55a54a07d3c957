//! The verifiable draw (摇号): commit to the pools, draw with observers'
//! entropy, create one inspection record per drawn target, publish the drawn
//! list, redraw on recusal or out-of-scope targets, and verify published
//! draw records. [`algorithm`] holds the pure, documented algorithm.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::store::sql::{Conn, OptionalExtension, Tx, params};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::audit;
use crate::auth;
use crate::calendar::Calendar;
use crate::db::now;
use crate::error::{Error, Result};
use crate::extract::{Page, Paging};
use crate::plans::{self, Task};
use crate::registry::rules::{self, Rules};
use crate::review::risk;
use seal::SealKey;
use suiji_mobile_core::vocab::ResultCategory;

pub mod algorithm;
pub mod doc_cache;
pub mod records;
pub mod routes;
pub mod seal;

use algorithm::{
    ALGORITHM, ALGORITHM_V2, ALGORITHMS, CLASSES, DrawError, Entropy, Outcome, Params,
    PoolInspector, Quota, Requirement, TargetPool, json_hash, sha256_hex,
};

/// What the commitment publishes before the draw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitmentInfo {
    /// Commitment id.
    pub id: i64,
    /// Task it is for.
    pub task_id: i64,
    /// Algorithm version.
    pub algorithm: String,
    /// When the pools were fixed.
    pub committed_at: String,
    /// SHA-256 of the server secret (the secret is revealed at the draw).
    pub secret_sha256: String,
    /// SHA-256 of the draw parameters.
    pub params_sha256: String,
    /// SHA-256 of the candidate target pool.
    pub target_pool_sha256: String,
    /// Candidates in the pool.
    pub target_count: i64,
    /// SHA-256 of the inspector pool.
    pub inspector_pool_sha256: String,
    /// Inspectors in the pool.
    pub inspector_count: i64,
    /// The public beacon named in advance, if any: the draw needs its value
    /// and cannot happen before it is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beacon: Option<Beacon>,
}

/// A public source of randomness a commitment names in advance, such as a
/// lottery result, and when it is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Beacon {
    /// What it is, e.g. `福彩3D 第2026330期开奖号码`.
    pub name: String,
    /// When its value becomes public (RFC 3339).
    pub due_at: String,
}

/// What a planner may say when committing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    /// A public beacon whose value the draw will need.
    #[serde(default)]
    pub beacon: Option<Beacon>,
}

/// What the ceremony brings to a draw.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ceremony {
    /// The open commitment drawn from.
    pub commitment_id: i64,
    /// Observers' entries, in the order given: at least the rules'
    /// `min_observers`, distinct observers, nothing empty.
    #[serde(default)]
    pub entropy: Vec<Entropy>,
    /// The value of the commitment's beacon, once due.
    #[serde(default)]
    pub beacon_value: Option<String>,
}

/// The task as a draw record names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Task id.
    pub id: i64,
    /// 抽查任务编号.
    pub number: String,
    /// 抽查任务名称.
    pub name: String,
    /// 抽查计划编号.
    pub plan_number: String,
    /// 抽查计划名称.
    pub plan_name: String,
    /// 定向 or 不定向.
    pub directed: bool,
    /// Participating departments, the initiator first.
    pub departments: Vec<String>,
}

/// How a redraw's seed was derived from the draw it replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedrawBasis {
    /// Seed of the draw this one replaces (hex).
    pub parent_seed: String,
    /// Number of this redraw within the task, from 1.
    pub sequence: u32,
    /// `recusal` or `out_of_scope`.
    pub reason: String,
    /// The target concerned.
    pub target_uscc: String,
    /// The recused inspector, for a recusal.
    pub recused_inspector: Option<i64>,
    /// The initial draw's commitment, published before it: this redraw's
    /// pools are restrictions of its pools (see [`verify_redraw_pools`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment: Option<CommitmentInfo>,
}

/// A complete, self-contained draw record: everything needed to recompute
/// the draw. Never edited once made.
///
/// The pools come last and are type parameters: the server stores an initial
/// draw's record with `null` pools ([`POOLS_BY_REFERENCE`]) and splices in
/// the pool texts of its commitment, byte for byte, whenever the record is
/// read, so that a million-entry pool is stored and hashed once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrawRecord<TP = TargetPool, IP = Vec<PoolInspector>> {
    /// Algorithm version.
    pub algorithm: String,
    /// Draw id.
    pub draw_id: i64,
    /// `initial` or `redraw`.
    pub kind: String,
    /// The draw this one replaces (redraws).
    pub parent_draw_id: Option<i64>,
    /// Why (redraws): the reason code and the explanation given.
    pub reason: Option<String>,
    /// The task.
    pub task: TaskInfo,
    /// The commitment published before the draw (initial draws).
    pub commitment: Option<CommitmentInfo>,
    /// How the seed derives from the parent (redraws).
    pub redraw: Option<RedrawBasis>,
    /// Draw parameters.
    pub params: Params,
    /// The server secret, revealed (hex; empty for redraws).
    pub secret: String,
    /// Observers' entropy, in the order given.
    pub entropy: Vec<Entropy>,
    /// The value of the commitment's beacon, when it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beacon_value: Option<String>,
    /// The rules' `min_observers` at the draw (initial draws).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_observers: Option<u32>,
    /// The seed (hex).
    pub seed: String,
    /// Inspector loads before this draw (redraws: the task's other groups).
    pub initial_loads: BTreeMap<i64, u64>,
    /// What was drawn.
    pub result: Outcome,
    /// Names of the drawn targets, for people reading the record.
    pub target_names: BTreeMap<String, String>,
    /// When the draw was made.
    pub drawn_at: String,
    /// Candidate targets.
    pub target_pool: TP,
    /// Candidate inspectors.
    pub inspector_pool: IP,
}

/// How the stored text of an initial draw record ends: its pools are those
/// of its commitment (`draw_commitments.target_pool` and `inspector_pool`),
/// spliced in by [`record_text`]. A used commitment is immutable, like the
/// draw record.
pub const POOLS_BY_REFERENCE: &str = r#","target_pool":null,"inspector_pool":null}"#;

/// The published text of a record stored as `head` + [`POOLS_BY_REFERENCE`]
/// whose commitment holds these pool texts, in pieces.
fn published_pieces<'a>(
    head: &'a str,
    target_pool: &'a str,
    inspector_pool: &'a str,
) -> [&'a str; 6] {
    [
        head,
        r#","target_pool":"#,
        target_pool,
        r#","inspector_pool":"#,
        inspector_pool,
        "}",
    ]
}

/// A draw record's published text (with its commitment's pools spliced in)
/// and its publication time, or `None` if there is no such draw.
pub fn record_text(conn: &Conn, draw_id: i64) -> Result<Option<(String, Option<String>)>> {
    type Pools = (Option<String>, Option<String>);
    let found: Option<(String, Option<String>, Pools)> = conn
        .query_row(
            "SELECT d.record, d.published_at, c.target_pool, c.inspector_pool
             FROM draws d LEFT JOIN draw_commitments c ON c.id = d.commitment_id
             WHERE d.id = ?1",
            [draw_id],
            |r| Ok((r.get(0)?, r.get(1)?, (r.get(2)?, r.get(3)?))),
        )
        .optional()?;
    let Some((stored, published, pools)) = found else {
        return Ok(None);
    };
    let text = match (stored.strip_suffix(POOLS_BY_REFERENCE), pools) {
        (None, _) => stored,
        (Some(head), (Some(t), Some(i))) => published_pieces(head, &t, &i).concat(),
        (Some(_), _) => {
            return Err(Error::Internal(format!(
                "draw {draw_id} refers to the pools of a commitment it does not have"
            )));
        }
    };
    Ok(Some((text, published)))
}

/// A short account of a draw.
#[derive(Debug, Clone, Serialize)]
pub struct DrawSummary {
    /// Draw id.
    pub id: i64,
    /// Task id.
    pub task_id: i64,
    /// `initial` or `redraw`.
    pub kind: String,
    /// The draw replaced, for redraws.
    pub parent_id: Option<i64>,
    /// Why, for redraws.
    pub reason: Option<String>,
    /// Seed (hex).
    pub seed: String,
    /// SHA-256 of the stored record.
    pub record_sha256: String,
    /// Targets drawn.
    pub targets: usize,
    /// When.
    pub drawn_at: String,
    /// When the drawn list was published, if it is.
    pub published_at: Option<String>,
}

fn draw_error(e: DrawError) -> Error {
    match e {
        DrawError::EmptyPool => Error::invalid("pool", e.to_string()),
        DrawError::GroupUnfillable { .. } => Error::invalid("inspectors", e.to_string()),
        DrawError::Params(_) => Error::invalid("params", e.to_string()),
    }
}

fn task_info(conn: &Conn, task: &Task) -> Result<TaskInfo> {
    let plan = plans::get_plan_by_id(conn, task.plan_id)?;
    Ok(TaskInfo {
        id: task.id,
        number: task.number.clone(),
        name: task.name.clone(),
        plan_number: plan.number,
        plan_name: plan.name,
        directed: task.directed,
        departments: task.departments.clone(),
    })
}

/// The draw parameters of a task under the rules in force.
pub fn task_params(conn: &Conn, task: &Task, rules: &Rules) -> Result<Params> {
    let quota = match (task.ratio, task.count) {
        (Some(r), _) => Quota::Ratio(r),
        (None, Some(n)) => Quota::Count(u64::from(n)),
        (None, None) => {
            return Err(Error::Internal(format!(
                "task {} has no ratio or count",
                task.id
            )));
        }
    };
    let mut requirements = Vec::new();
    for department in &task.departments {
        let mut qualifications = Vec::new();
        for item in task.items.iter().filter(|i| &i.department == department) {
            let version = crate::registry::items::get(conn, &item.code, Some(item.version))?;
            if let Some(q) = version.input.qualification
                && !qualifications.contains(&q)
            {
                qualifications.push(q);
            }
        }
        requirements.push(Requirement {
            department: department.clone(),
            qualifications,
        });
    }
    Ok(Params {
        quota,
        class_ratios: [
            rules.ratios.a,
            rules.ratios.b,
            rules.ratios.c,
            rules.ratios.d,
        ],
        group_size: rules.group_size,
        joint: task.joint,
        requirements,
        problem_weight: rules.problem_weight,
        clean_cooldown_days: rules.clean_cooldown_days,
    })
}

/// The candidate target pool of a task: targets matching its conditions,
/// minus those over the yearly frequency cap for its items and those found
/// clean for them within the rules' `clean_cooldown_days`, must-includes
/// marked per the rules, targets whose latest result for its items had
/// problems weighted (`problem_weight` above 1), grouped by stratum and
/// sorted by 统一社会信用代码.
pub fn target_pool(conn: &Conn, task: &Task, rules: &Rules) -> Result<TargetPool> {
    use crate::store::sql::Value as V;
    let c = &task.conditions;
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<V> = Vec::new();
    for (column, values) in [
        ("target_type", &c.target_types),
        ("industry", &c.industries),
        ("region", &c.regions),
        ("risk_class", &c.risk_classes),
        ("reg_status", &c.reg_statuses),
    ] {
        if !values.is_empty() {
            clauses.push(format!(
                "{column} IN ({})",
                vec!["?"; values.len()].join(", ")
            ));
            args.extend(values.iter().cloned().map(V::Text));
        }
    }
    for (column, flag) in [
        ("flag_abnormal", c.flag_abnormal),
        ("flag_serious", c.flag_serious),
    ] {
        if let Some(f) = flag {
            clauses.push(format!("{column} = ?"));
            args.push(V::Integer(f.into()));
        }
    }
    if let Some(has) = c.has_complaints {
        clauses.push(
            if has {
                "complaints > 0"
            } else {
                "complaints = 0"
            }
            .into(),
        );
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };

    // Targets already drawn `frequency_cap` times this year for one of the
    // task's items (a 复查 is not drawn, so it does not count).
    let year = task.window_start.format("%Y").to_string();
    let mut capped: HashSet<i64> = HashSet::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT r.target_id FROM records r
             JOIN tasks t ON t.id = r.task_id
             JOIN task_items ti ON ti.task_id = r.task_id
             JOIN task_items mine ON mine.item_id = ti.item_id AND mine.task_id = ?1
             WHERE r.withdrawn_at IS NULL AND r.task_id != ?1 AND substr(t.window_start, 1, 4) = ?2
               AND NOT EXISTS(SELECT 1 FROM rechecks k WHERE k.task_id = r.task_id)
             GROUP BY r.target_id, ti.item_id HAVING COUNT(*) >= ?3",
        )?;
        let rows = stmt.query_map(params![task.id, year, rules.frequency_cap], |r| r.get(0))?;
        for id in rows {
            capped.insert(id?);
        }
    }
    // Each target's latest published result (current version, record not
    // withdrawn) of a task sharing an item with this one, by completion date:
    // clean within `clean_cooldown_days` before the window starts leaves it
    // out; problems weigh it `problem_weight`.
    let mut cooling: HashSet<i64> = HashSet::new();
    let mut weighted: HashSet<i64> = HashSet::new();
    if rules.clean_cooldown_days > 0 || rules.problem_weight > 1 {
        let cutoff = (task.window_start - chrono::Days::new(u64::from(rules.clean_cooldown_days)))
            .to_string();
        let mut stmt = conn.prepare_cached(
            "SELECT target_id, completed_on, results FROM (
                 SELECT p.target_id, json_extract(v.content, '$.completed_on') AS completed_on,
                     json_extract(v.content, '$.results') AS results,
                     ROW_NUMBER() OVER (PARTITION BY p.target_id
                         ORDER BY json_extract(v.content, '$.completed_on') DESC, p.id DESC) AS n
                 FROM published_results p
                 JOIN result_versions v ON v.result_id = p.id AND v.version = p.current_version
                 JOIN records r ON r.id = p.record_id
                 WHERE r.withdrawn_at IS NULL AND p.task_id != ?1
                   AND EXISTS (SELECT 1 FROM task_items ti
                               JOIN task_items mine ON mine.item_id = ti.item_id AND mine.task_id = ?1
                               WHERE ti.task_id = p.task_id)) AS latest
             WHERE n = 1",
        )?;
        let rows = stmt.query_map([task.id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })?;
        for row in rows {
            let (id, Some(completed_on), Some(results)) = row? else {
                continue;
            };
            let results: Vec<serde_json::Value> = serde_json::from_str(&results)?;
            let categories: Vec<ResultCategory> = results
                .iter()
                .filter_map(|c| c["code"].as_str().and_then(ResultCategory::from_code))
                .collect();
            match risk::Outcome::of(&categories) {
                risk::Outcome::Clean if completed_on > cutoff && rules.clean_cooldown_days > 0 => {
                    cooling.insert(id);
                }
                risk::Outcome::Problems if rules.problem_weight > 1 => {
                    weighted.insert(id);
                }
                _ => {}
            }
        }
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT id, uscc, risk_class, flag_abnormal, flag_serious, complaints FROM targets {filter}"
    ))?;
    let mut rows = stmt.query(&args)?;
    let mut pool = TargetPool::empty();
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        if capped.contains(&id) || cooling.contains(&id) {
            continue;
        }
        let class = row
            .get_ref(2)?
            .as_str()
            .map_err(|e| Error::Internal(format!("target {id}: risk class: {e}")))?;
        let Some(c) = CLASSES.iter().position(|k| *k == class) else {
            return Err(Error::Internal(format!(
                "target {id} has risk class {class}"
            )));
        };
        let abnormal: bool = row.get(3)?;
        let serious: bool = row.get(4)?;
        let complaints: i64 = row.get(5)?;
        let must_include = (rules.must_include_serious && serious)
            || (rules.must_include_abnormal && abnormal)
            || (rules.must_include_complaints && complaints > 0);
        let stratum = &mut pool.strata[c];
        let list = if must_include {
            &mut stratum.must_include
        } else if weighted.contains(&id) {
            &mut stratum.weighted
        } else {
            &mut stratum.others
        };
        list.push(row.get(1)?);
    }
    // Sorting here is cheaper than an index-ordered scan of the table.
    pool.sort();
    Ok(pool)
}

/// The inspector pool of a task: active inspectors of the participating
/// departments qualified for their department's items, each with the targets
/// of the pool they are excluded from. Sorted by id. `targets` must be
/// sorted, as [`target_pool`] returns it.
pub fn inspector_pool(
    conn: &Conn,
    task: &Task,
    params: &Params,
    targets: &TargetPool,
) -> Result<Vec<PoolInspector>> {
    // The pool's lists are sorted, so membership is a binary search in the
    // target's stratum: no million-entry set to build for a few thousand
    // conflicts.
    let in_pool = |uscc: &str, class: &str| {
        algorithm::class_index(class).is_some_and(|c| targets.find_in(c, uscc).is_some())
    };
    let mut pool: Vec<PoolInspector> = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT i.id, d.code, i.expertise FROM inspectors i JOIN departments d ON d.id = i.department_id
         WHERE i.active = 1 ORDER BY i.id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let department: String = row.get(1)?;
        let Some(req) = params
            .requirements
            .iter()
            .find(|r| r.department == department)
        else {
            continue;
        };
        let expertise: Vec<String> = serde_json::from_str(&row.get::<_, String>(2)?)?;
        if req.qualifications.iter().all(|q| expertise.contains(q)) {
            pool.push(PoolInspector {
                id: row.get(0)?,
                department,
                excluded: Vec::new(),
            });
        }
    }
    for req in &params.requirements {
        if !pool.iter().any(|i| i.department == req.department) {
            return Err(Error::invalid(
                "inspectors",
                format!(
                    "no active inspector of department {} is qualified for {}",
                    req.department,
                    if req.qualifications.is_empty() {
                        "the task's items".into()
                    } else {
                        req.qualifications.join(", ")
                    }
                ),
            ));
        }
    }
    let index: HashMap<i64, usize> = pool.iter().enumerate().map(|(p, i)| (i.id, p)).collect();
    let mut add = |inspector: i64, uscc: String, class: String| {
        if let Some(&p) = index.get(&inspector)
            && in_pool(uscc.as_str(), class.as_str())
        {
            pool[p].excluded.push(uscc);
        }
    };
    let mut conflicts = conn.prepare(
        "SELECT c.inspector_id, t.uscc, t.risk_class FROM inspector_conflicts c
         JOIN targets t ON t.id = c.target_id",
    )?;
    for row in conflicts.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))? {
        let (inspector, uscc, class) = row?;
        add(inspector, uscc, class);
    }
    // The group that inspected each target last time (in another task).
    let mut last = conn.prepare(
        "SELECT ri.inspector_id, t.uscc, t.risk_class FROM records r
         JOIN record_inspectors ri ON ri.record_id = r.id
         JOIN targets t ON t.id = r.target_id
         WHERE r.withdrawn_at IS NULL AND r.task_id != ?1
           AND r.created_at = (SELECT MAX(r2.created_at) FROM records r2
                               WHERE r2.target_id = r.target_id AND r2.withdrawn_at IS NULL AND r2.task_id != ?1)",
    )?;
    for row in last.query_map([task.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))? {
        let (inspector, uscc, class) = row?;
        add(inspector, uscc, class);
    }
    for inspector in &mut pool {
        inspector.excluded.sort();
        inspector.excluded.dedup();
    }
    Ok(pool)
}

fn commitment_info(row: &crate::store::sql::Row<'_>) -> Result<CommitmentInfo> {
    Ok(CommitmentInfo {
        id: row.get(0)?,
        task_id: row.get(1)?,
        algorithm: row.get(2)?,
        committed_at: row.get(3)?,
        secret_sha256: row.get(4)?,
        params_sha256: row.get(5)?,
        target_pool_sha256: row.get(6)?,
        target_count: row.get(7)?,
        inspector_pool_sha256: row.get(8)?,
        inspector_count: row.get(9)?,
        beacon: match (row.get(10)?, row.get(11)?) {
            (Some(name), Some(due_at)) => Some(Beacon { name, due_at }),
            _ => None,
        },
    })
}

const COMMITMENT_COLUMNS: &str =
    "id, task_id, algorithm, committed_at, secret_sha256, params_sha256,
    target_pool_sha256, target_count, inspector_pool_sha256, inspector_count,
    beacon_name, beacon_due_at";

/// A commitment not used by a draw. (`used_at` was set by earlier versions;
/// now a draw naming the commitment marks it used, which spares rewriting
/// a row that holds a million-entry pool just to set a time.)
const UNUSED: &str = "used_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM draws d WHERE d.commitment_id = draw_commitments.id)";

/// The live (not superseded, not used) commitment of a task, if any.
pub fn open_commitment(conn: &Conn, task_id: i64) -> Result<Option<CommitmentInfo>> {
    conn.query_row(
        &format!(
            "SELECT {COMMITMENT_COLUMNS} FROM draw_commitments
                 WHERE task_id = ?1 AND superseded_at IS NULL AND {UNUSED}"
        ),
        [task_id],
        commitment_info,
    )
    .optional()
}

/// Where a commitment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitmentState {
    /// Not yet drawn from: the next draw of its task uses it.
    Open,
    /// A draw used it.
    Used,
    /// A later commitment of its task replaced it before any draw.
    Superseded,
}

/// A commitment as the public list shows it, from the moment it is made.
#[derive(Debug, Clone, Serialize)]
pub struct PublicCommitment {
    /// What was published.
    #[serde(flatten)]
    pub commitment: CommitmentInfo,
    /// 抽查任务编号.
    pub task_number: String,
    /// 抽查任务名称.
    pub task_name: String,
    /// 抽查计划编号.
    pub plan_number: String,
    /// Open, used or superseded.
    pub state: CommitmentState,
    /// When a later commitment superseded it.
    pub superseded_at: Option<String>,
    /// The draw that used it.
    pub draw_id: Option<i64>,
}

/// Every commitment, of every task or of the task with this number, the
/// latest first, one page at a time. Superseded commitments stay listed.
pub fn public_commitments(
    conn: &Conn,
    task_number: Option<&str>,
    paging: Paging,
) -> Result<Page<PublicCommitment>> {
    let paging = paging.validate()?;
    let filter = "(CAST(?1 AS TEXT) IS NULL OR t.number = ?1)";
    let total: i64 = conn.query_row(
        &format!(
            "SELECT COUNT(*) FROM draw_commitments c JOIN tasks t ON t.id = c.task_id WHERE {filter}"
        ),
        [task_number],
        |r| r.get(0),
    )?;
    let columns = COMMITMENT_COLUMNS
        .split(',')
        .map(|c| format!("c.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut stmt = conn.prepare(&format!(
        "SELECT {columns}, t.number, t.name, p.number, c.superseded_at, c.used_at,
            (SELECT d.id FROM draws d WHERE d.commitment_id = c.id)
         FROM draw_commitments c JOIN tasks t ON t.id = c.task_id JOIN plans p ON p.id = t.plan_id
         WHERE {filter} ORDER BY c.id DESC LIMIT ?2 OFFSET ?3"
    ))?;
    let rows = stmt.query_map(params![task_number, paging.limit(), paging.offset()], |r| {
        let superseded_at: Option<String> = r.get(15)?;
        let used_at: Option<String> = r.get(16)?;
        let draw_id: Option<i64> = r.get(17)?;
        let state = if draw_id.is_some() || used_at.is_some() {
            CommitmentState::Used
        } else if superseded_at.is_some() {
            CommitmentState::Superseded
        } else {
            CommitmentState::Open
        };
        Ok(PublicCommitment {
            commitment: commitment_info(r)?,
            task_number: r.get(12)?,
            task_name: r.get(13)?,
            plan_number: r.get(14)?,
            state,
            superseded_at,
            draw_id,
        })
    })?;
    Ok(Page {
        items: rows.collect::<Result<_, _>>()?,
        total,
        page: paging.page,
        per_page: paging.per_page,
    })
}

fn initial_draw_id(conn: &Conn, task_id: i64) -> Result<Option<i64>> {
    conn.query_row(
        "SELECT id FROM draws WHERE task_id = ?1 AND kind = 'initial'",
        [task_id],
        |r| r.get(0),
    )
    .optional()
}

/// Longest beacon name and value, in characters.
const BEACON_TEXT_MAX: usize = 200;

/// Parses an RFC 3339 time.
fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// A beacon as a request names it, checked and with its time normalised.
fn checked_beacon(beacon: &Beacon, committed_at: &str) -> Result<Beacon> {
    let name = beacon.name.trim();
    if name.is_empty() || name.chars().count() > BEACON_TEXT_MAX {
        return Err(Error::invalid(
            "beacon.name",
            format!("1 to {BEACON_TEXT_MAX} characters naming the public source"),
        ));
    }
    let due = parse_time(&beacon.due_at).ok_or_else(|| {
        Error::invalid(
            "beacon.due_at",
            "an RFC 3339 time such as 2026-11-30T13:30:00Z",
        )
    })?;
    let due_at = due.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if due_at.as_str() <= committed_at {
        return Err(Error::invalid(
            "beacon.due_at",
            "must be after the commitment: a beacon already known could be ground",
        ));
    }
    Ok(Beacon {
        name: name.to_owned(),
        due_at,
    })
}

/// Fixes the pools and parameters of a task's draw and publishes their
/// hashes with the hash of a fresh server secret, which is stored sealed
/// with `seal`. A new commitment supersedes an earlier one not yet used; the
/// earlier one stays listed publicly ([`public_commitments`]).
pub fn commit(
    tx: &Tx<'_>,
    actor: &str,
    task_id: i64,
    request: &CommitRequest,
    seal: &SealKey,
) -> Result<CommitmentInfo> {
    let committed_at = now();
    let beacon = request
        .beacon
        .as_ref()
        .map(|b| checked_beacon(b, &committed_at))
        .transpose()?;
    let task = plans::get_task_by_id(tx, task_id)?;
    if let Some(record) = &task.recheck_of {
        return Err(Error::Conflict(format!(
            "task {} is the 复查 of record {record}: its target and group are set, not drawn",
            task.number
        )));
    }
    if initial_draw_id(tx, task_id)?.is_some() {
        return Err(Error::Conflict(format!(
            "task {} has already been drawn",
            task.number
        )));
    }
    let rules = rules::load(tx)?;
    if let Some(ratio) = task.ratio {
        rules.check_task_ratio(ratio, plans::has_general_items(tx, &task)?)?;
    }
    let params = task_params(tx, &task, &rules)?;
    let targets = target_pool(tx, &task, &rules)?;
    if targets.is_empty() {
        return Err(draw_error(DrawError::EmptyPool));
    }
    let inspectors = inspector_pool(tx, &task, &params, &targets)?;
    let group = (params.group_size as usize).max(if params.joint {
        params.requirements.len()
    } else {
        0
    });
    if inspectors.len() < group {
        return Err(Error::invalid(
            "inspectors",
            format!(
                "the inspector pool has {} inspectors but a group needs {group}",
                inspectors.len()
            ),
        ));
    }
    let secret = auth::random_bytes::<32>()?;
    let secret_sha256 = sha256_hex(&secret);
    let sealed = seal.seal(&secret, &secret_sha256)?;
    let superseded = tx.execute(
        &format!(
            "UPDATE draw_commitments SET superseded_at = ?1
             WHERE task_id = ?2 AND superseded_at IS NULL AND {UNUSED}"
        ),
        params![committed_at, task_id],
    )?;
    let target_json = serde_json::to_string(&targets)?;
    let inspector_json = serde_json::to_string(&inspectors)?;
    let params_json = serde_json::to_string(&params)?;
    tx.execute(
        "INSERT INTO draw_commitments (task_id, algorithm, secret, secret_sha256, params, params_sha256,
            target_pool, target_pool_sha256, target_count, inspector_pool, inspector_pool_sha256,
            inspector_count, committed_at, committed_by, sealed_secret, beacon_name, beacon_due_at)
         VALUES (?1, ?2, '', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        params![
            task_id,
            ALGORITHM,
            secret_sha256,
            params_json,
            sha256_hex(params_json.as_bytes()),
            target_json,
            sha256_hex(target_json.as_bytes()),
            targets.len() as i64,
            inspector_json,
            sha256_hex(inspector_json.as_bytes()),
            inspectors.len() as i64,
            committed_at,
            actor,
            sealed,
            beacon.as_ref().map(|b| &b.name),
            beacon.as_ref().map(|b| &b.due_at),
        ],
    )?;
    let info = open_commitment(tx, task_id)?
        .ok_or_else(|| Error::Internal("commitment vanished".into()))?;
    audit::append(
        tx,
        actor,
        "draw.commit",
        &format!("task:{task_id}"),
        None,
        Some(&json!({"commitment": info, "superseded": superseded})),
    )?;
    Ok(info)
}

/// Most observer entries a draw takes.
pub const MAX_OBSERVERS: usize = 50;
/// Longest observer name, in characters.
pub const OBSERVER_NAME_MAX: usize = 100;
/// Longest observer value, in characters.
pub const OBSERVER_VALUE_MAX: usize = 1000;

/// Checks observers' entropy entries: at least `min` of them, each naming a
/// different observer (names compared trimmed), neither part empty once
/// trimmed, within bounds. Entries count as given, untrimmed.
pub fn check_entropy(entropy: &[Entropy], min: usize) -> Result<()> {
    if entropy.len() > MAX_OBSERVERS {
        return Err(Error::invalid(
            "entropy",
            format!("at most {MAX_OBSERVERS} observer entries"),
        ));
    }
    let mut seen: HashSet<&str> = HashSet::new();
    for (i, e) in entropy.iter().enumerate() {
        let name = e.observer.trim();
        if name.is_empty() || e.observer.chars().count() > OBSERVER_NAME_MAX {
            return Err(Error::invalid(
                format!("entropy[{i}].observer"),
                format!("1 to {OBSERVER_NAME_MAX} characters, not only spaces"),
            ));
        }
        if e.value.trim().is_empty() || e.value.chars().count() > OBSERVER_VALUE_MAX {
            return Err(Error::invalid(
                format!("entropy[{i}].value"),
                format!("1 to {OBSERVER_VALUE_MAX} characters, not only spaces"),
            ));
        }
        if !seen.insert(name) {
            return Err(Error::invalid(
                format!("entropy[{i}].observer"),
                format!("observer `{name}` already has an entry: one entry per observer"),
            ));
        }
    }
    if entropy.len() < min {
        return Err(Error::invalid(
            "entropy",
            format!(
                "a draw needs entries of at least {min} different observers (the rules' min_observers); got {}",
                entropy.len()
            ),
        ));
    }
    Ok(())
}

/// Stores a draw record. With `committed` (the commitment's pool texts, for
/// an initial draw whose record has `null` pools) the record is stored
/// without the pools and its hash is that of the published text.
fn insert_draw<TP: Serialize, IP: Serialize>(
    tx: &Tx<'_>,
    actor: &str,
    record: &mut DrawRecord<TP, IP>,
    publish: bool,
    committed: Option<(&str, &str)>,
) -> Result<DrawSummary> {
    let task_id = record.task.id;
    let commitment_id = record.commitment.as_ref().map(|c| c.id);
    let parent_id = record.parent_draw_id;
    let reason = record.reason.clone();
    let kind = if parent_id.is_some() {
        "redraw"
    } else {
        "initial"
    };
    // The id is part of the record, so reserve it first.
    let draw_id: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM draws", [], |r| {
        r.get(0)
    })?;
    record.draw_id = draw_id;
    let text = serde_json::to_string(record)?;
    let sha = match committed {
        None => sha256_hex(text.as_bytes()),
        Some((targets, inspectors)) => {
            let head = text.strip_suffix(POOLS_BY_REFERENCE).ok_or_else(|| {
                Error::Internal("a record stored by reference must have null pools".into())
            })?;
            let mut h = Sha256::new();
            for piece in published_pieces(head, targets, inspectors) {
                h.update(piece.as_bytes());
            }
            hex::encode(h.finalize())
        }
    };
    let published_at = publish.then(now);
    tx.execute(
        "INSERT INTO draws (id, task_id, commitment_id, parent_id, kind, reason, seed, record,
            record_sha256, drawn_at, drawn_by, published_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            draw_id,
            task_id,
            commitment_id,
            parent_id,
            kind,
            reason,
            record.seed,
            text,
            sha,
            record.drawn_at,
            actor,
            published_at
        ],
    )?;
    Ok(DrawSummary {
        id: draw_id,
        task_id,
        kind: kind.into(),
        parent_id,
        reason,
        seed: record.seed.clone(),
        record_sha256: sha,
        targets: record.result.targets.len(),
        drawn_at: record.drawn_at.clone(),
        published_at,
    })
}

/// Names of the targets with these codes.
fn target_names(
    conn: &Conn,
    usccs: impl Iterator<Item = String>,
) -> Result<BTreeMap<String, String>> {
    let mut stmt = conn.prepare_cached("SELECT name FROM targets WHERE uscc = ?1")?;
    let mut names = BTreeMap::new();
    for uscc in usccs {
        let name: String = stmt
            .query_row([&uscc], |r| r.get(0))
            .optional()?
            .unwrap_or_default();
        names.insert(uscc, name);
    }
    Ok(names)
}

/// Draws a task from its open commitment with the ceremony's entropy and
/// creates its records, all in `tx`.
pub fn execute(
    tx: &Tx<'_>,
    actor: &str,
    task_id: i64,
    ceremony: Ceremony,
    seal: &SealKey,
    calendar: &Calendar,
) -> Result<DrawSummary> {
    let observers: Vec<String> = ceremony
        .entropy
        .iter()
        .map(|e| e.observer.clone())
        .collect();
    let (summary, outcome) = draw_from_commitment(tx, actor, task_id, ceremony, seal)?;
    let task = plans::get_task_by_id(tx, task_id)?;
    records::create_for_draw(tx, &task, summary.id, &outcome.targets, calendar)?;
    audit::append(
        tx,
        actor,
        "draw.execute",
        &format!("task:{task_id}"),
        None,
        Some(&json!({
            "draw_id": summary.id,
            "seed": summary.seed,
            "record_sha256": summary.record_sha256,
            "targets": summary.targets,
            "observers": observers,
        })),
    )?;
    Ok(summary)
}

/// The draw itself, without the record documents: checks the commitment,
/// runs the algorithm and stores the draw record. [`execute`] is this plus
/// the records and the audit entry; benchmarks time the parts apart.
pub fn draw_from_commitment(
    tx: &Tx<'_>,
    actor: &str,
    task_id: i64,
    ceremony: Ceremony,
    seal: &SealKey,
) -> Result<(DrawSummary, Outcome)> {
    let Ceremony {
        commitment_id,
        entropy,
        beacon_value,
    } = ceremony;
    let min_observers = rules::load(tx)?.min_observers;
    check_entropy(&entropy, min_observers as usize)?;
    let task = plans::get_task_by_id(tx, task_id)?;
    if initial_draw_id(tx, task_id)?.is_some() {
        return Err(Error::Conflict(format!(
            "task {} has already been drawn",
            task.number
        )));
    }
    let Some(info) = open_commitment(tx, task_id)? else {
        return Err(Error::Conflict(format!(
            "task {} has no open commitment: commit to the pools first (POST /api/v1/tasks/{task_id}/draw/commit)",
            task.number
        )));
    };
    if info.id != commitment_id {
        return Err(Error::Conflict(format!(
            "commitment {commitment_id} is not the open commitment of this task (that is {})",
            info.id
        )));
    }
    let drawn_at = time_after(&info.committed_at)?;
    let beacon_value = check_beacon_value(&info, beacon_value, &drawn_at)?;
    let (sealed, params_json, target_json, inspector_json): (Option<String>, String, String, String) =
        tx.query_row(
            "SELECT sealed_secret, params, target_pool, inspector_pool FROM draw_commitments WHERE id = ?1",
            [commitment_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
    let secret_bytes = sealed
        .and_then(|s| seal.unseal(&s, &info.secret_sha256))
        .filter(|s| sha256_hex(s) == info.secret_sha256)
        .ok_or_else(|| {
            Error::Conflict(format!(
                "the draw seal key ({}) does not open commitment {commitment_id}: was the key file replaced? Commit again (the new commitment is public too)",
                seal::KEY_FILE
            ))
        })?;
    // The commitment named the algorithm: one made before an upgrade is drawn
    // with the version it promised.
    let version = known_algorithm(&info.algorithm)?;
    let params: Params = serde_json::from_str(&params_json)?;
    let targets: TargetPool = serde_json::from_str(&target_json)?;
    let inspectors: Vec<PoolInspector> = serde_json::from_str(&inspector_json)?;
    let seed = algorithm::seed_for(version, &secret_bytes, &entropy, beacon_value.as_deref());
    let outcome = algorithm::run(&params, &targets, &inspectors, seed, &HashMap::new())
        .map_err(draw_error)?;
    drop((targets, inspectors));
    let names = target_names(tx, outcome.targets.iter().map(|t| t.uscc.clone()))?;
    // The stored record refers to the committed pools instead of copying them.
    let mut record = DrawRecord {
        algorithm: version.into(),
        draw_id: 0,
        kind: "initial".into(),
        parent_draw_id: None,
        reason: None,
        task: task_info(tx, &task)?,
        commitment: Some(info),
        redraw: None,
        params,
        secret: hex::encode(secret_bytes),
        entropy,
        beacon_value,
        min_observers: Some(min_observers),
        seed: hex::encode(seed),
        initial_loads: BTreeMap::new(),
        result: outcome,
        target_names: names,
        drawn_at,
        target_pool: (),
        inspector_pool: (),
    };
    let summary = insert_draw(
        tx,
        actor,
        &mut record,
        false,
        Some((&target_json, &inspector_json)),
    )?;
    Ok((summary, record.result))
}

/// The version of [`ALGORITHMS`] named `name`, or a conflict.
fn known_algorithm(name: &str) -> Result<&'static str> {
    ALGORITHMS.into_iter().find(|a| *a == name).ok_or_else(|| {
        Error::Conflict(format!(
            "draw algorithm `{name}` is unknown to this server (it knows {}): commit again",
            ALGORITHMS.join(", ")
        ))
    })
}

/// The current time, strictly after `committed_at` (times have milliseconds,
/// and a demo commits and draws within one), so that a record's commitment
/// always precedes its draw.
fn time_after(committed_at: &str) -> Result<String> {
    for _ in 0..1000 {
        let at = now();
        if at.as_str() > committed_at {
            return Ok(at);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(Error::Conflict(format!(
        "the commitment is dated {committed_at}, after this server's clock: check the clock"
    )))
}

/// The beacon value a draw from `info` takes at `drawn_at`: required once
/// the commitment's beacon is due, refused before and without a beacon.
fn check_beacon_value(
    info: &CommitmentInfo,
    value: Option<String>,
    drawn_at: &str,
) -> Result<Option<String>> {
    match (&info.beacon, value) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(Error::invalid(
            "beacon_value",
            "this commitment names no beacon",
        )),
        (Some(b), _) if drawn_at < b.due_at.as_str() => Err(Error::invalid(
            "beacon_value",
            format!(
                "the beacon `{}` is due at {}: the draw cannot happen before it",
                b.name, b.due_at
            ),
        )),
        (Some(b), None) => Err(Error::invalid(
            "beacon_value",
            format!("the draw needs the value of the beacon `{}`", b.name),
        )),
        (Some(b), Some(v)) => {
            if v.trim().is_empty() || v.chars().count() > BEACON_TEXT_MAX {
                return Err(Error::invalid(
                    "beacon_value",
                    format!(
                        "the value of `{}`: 1 to {BEACON_TEXT_MAX} characters",
                        b.name
                    ),
                ));
            }
            Ok(Some(v))
        }
    }
}

/// Loads a stored draw record.
pub fn load_record(conn: &Conn, draw_id: i64) -> Result<(DrawRecord, Option<String>)> {
    let (text, published) =
        record_text(conn, draw_id)?.ok_or_else(|| Error::NotFound(format!("draw {draw_id}")))?;
    Ok((serde_json::from_str(&text)?, published))
}

/// Draw summaries of a task, oldest first.
pub fn draws_of_task(conn: &Conn, task_id: i64) -> Result<Vec<DrawSummary>> {
    let mut stmt = conn.prepare(
        "SELECT id, task_id, kind, parent_id, reason, seed, record_sha256, drawn_at, published_at,
            json_array_length(record, '$.result.targets')
         FROM draws WHERE task_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([task_id], |r| {
        Ok(DrawSummary {
            id: r.get(0)?,
            task_id: r.get(1)?,
            kind: r.get(2)?,
            parent_id: r.get(3)?,
            reason: r.get(4)?,
            seed: r.get(5)?,
            record_sha256: r.get(6)?,
            drawn_at: r.get(7)?,
            published_at: r.get(8)?,
            targets: r.get::<_, i64>(9)? as usize,
        })
    })?;
    rows.collect::<Result<_, _>>()
}

/// Publishes a task's drawn list (公示): its draw records become public.
pub fn publish(tx: &Tx<'_>, actor: &str, task_id: i64) -> Result<Vec<DrawSummary>> {
    let task = plans::get_task_by_id(tx, task_id)?;
    if initial_draw_id(tx, task_id)?.is_none() {
        return Err(Error::Conflict(format!(
            "task {} has not been drawn",
            task.number
        )));
    }
    let at = now();
    let n = tx.execute(
        "UPDATE draws SET published_at = ?1 WHERE task_id = ?2 AND published_at IS NULL",
        params![at, task_id],
    )?;
    audit::append(
        tx,
        actor,
        "draw.publish",
        &format!("task:{task_id}"),
        None,
        Some(&json!({"published_at": at, "draws": n})),
    )?;
    draws_of_task(tx, task_id)
}

/// Why a target is redrawn, as a request names it.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RedrawReasonCode {
    /// An inspector of the group recused; `inspector_id` names them.
    Recusal,
    /// The target is outside the task's scope.
    OutOfScope,
}

/// Why a target is redrawn.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub enum RedrawReason {
    /// An inspector of the group recused (回避): the group is drawn again without them.
    Recusal {
        /// The recusing inspector.
        inspector_id: i64,
    },
    /// The target turned out to be outside the task's scope: a replacement is
    /// drawn from the same stratum and given a group.
    OutOfScope,
}

/// The seed of a redraw made with `algorithm` (its record's): fixed by the
/// parent draw's seed and what is redrawn, so the server cannot choose it.
pub fn redraw_seed(algorithm: &str, basis: &RedrawBasis, entropy: &[Entropy]) -> Result<[u8; 32]> {
    let parent = hex::decode(&basis.parent_seed)
        .map_err(|_| Error::invalid("seed", "parent seed is not hex"))?;
    let mut material = Vec::new();
    material.extend_from_slice(b"suiji-redraw-v1");
    material.extend_from_slice(&parent);
    material.extend_from_slice(&basis.sequence.to_be_bytes());
    material.extend_from_slice(basis.reason.as_bytes());
    material.push(0);
    material.extend_from_slice(basis.target_uscc.as_bytes());
    material.push(0);
    if let Some(i) = basis.recused_inspector {
        material.extend_from_slice(&i.to_be_bytes());
    }
    Ok(algorithm::seed_for(algorithm, &material, entropy, None))
}

/// A request to redraw one target of a task.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedrawRequest {
    /// The target whose draw is redone.
    pub target_id: i64,
    /// Why.
    pub reason: RedrawReasonCode,
    /// The recusing inspector (for `recusal` only).
    #[serde(default)]
    pub inspector_id: Option<i64>,
    /// The explanation recorded with the redraw.
    pub explanation: String,
    /// Observers' entropy, if any watched.
    #[serde(default)]
    pub entropy: Vec<Entropy>,
}

/// Redraws one target of a drawn task; the old draw record stays as it was.
pub fn redraw(
    tx: &Tx<'_>,
    actor: &str,
    task_id: i64,
    request: RedrawRequest,
    calendar: &Calendar,
) -> Result<DrawSummary> {
    let RedrawRequest {
        target_id,
        reason,
        inspector_id,
        explanation,
        entropy,
    } = request;
    let reason = &match (reason, inspector_id) {
        (RedrawReasonCode::Recusal, Some(inspector_id)) => RedrawReason::Recusal { inspector_id },
        (RedrawReasonCode::Recusal, None) => {
            return Err(Error::invalid(
                "inspector_id",
                "a recusal names the recusing inspector",
            ));
        }
        (RedrawReasonCode::OutOfScope, None) => RedrawReason::OutOfScope,
        (RedrawReasonCode::OutOfScope, Some(_)) => {
            return Err(Error::invalid(
                "inspector_id",
                "only a recusal names an inspector",
            ));
        }
    };
    let explanation = explanation.as_str();
    // A redraw's seed is fixed by its parent's; observers' entries are optional.
    check_entropy(&entropy, 0)?;
    crate::registry::check_text("explanation", explanation, 500)?;
    let task = plans::get_task_by_id(tx, task_id)?;
    if task.recheck_of.is_some() {
        return Err(Error::Conflict(format!(
            "task {} is a 复查, which is not drawn: nothing to redraw",
            task.number
        )));
    }
    let initial = initial_draw_id(tx, task_id)?
        .ok_or_else(|| Error::Conflict(format!("task {} has not been drawn", task.number)))?;
    let current = records::active_record_of(tx, task_id, target_id)?.ok_or_else(|| {
        Error::invalid(
            "target_id",
            format!("target {target_id} has no active record in this task"),
        )
    })?;
    let (parent, parent_published) = load_record(tx, current.draw_id)?;
    let (initial_record, _) = load_record(tx, initial)?;
    let uscc: String =
        tx.query_row("SELECT uscc FROM targets WHERE id = ?1", [target_id], |r| {
            r.get(0)
        })?;
    let sequence: u32 = tx.query_row(
        "SELECT COUNT(*) + 1 FROM draws WHERE task_id = ?1 AND kind = 'redraw'",
        [task_id],
        |r| r.get(0),
    )?;
    // Loads of the task's other active groups.
    let mut loads: BTreeMap<i64, u64> = BTreeMap::new();
    for (record_id, inspector) in records::task_group_members(tx, task_id)? {
        if record_id != current.id {
            *loads.entry(inspector).or_default() += 1;
        }
    }
    let mut inspectors = initial_record.inspector_pool.clone();
    let (reason_code, recused, targets) = match reason {
        RedrawReason::Recusal { inspector_id } => {
            if !current.group.iter().any(|(id, _)| id == inspector_id) {
                return Err(Error::invalid(
                    "inspector_id",
                    format!("inspector {inspector_id} is not in the group of this target"),
                ));
            }
            if let Some(p) = inspectors.iter_mut().find(|i| i.id == *inspector_id) {
                p.excluded.push(uscc.clone());
                p.excluded.sort();
                p.excluded.dedup();
            }
            let (class, _) = initial_record
                .target_pool
                .find(&uscc)
                .ok_or_else(|| Error::Internal("drawn target missing from its pool".into()))?;
            let mut only = TargetPool::empty();
            only.strata[class].others.push(uscc.clone());
            ("recusal", Some(*inspector_id), only)
        }
        RedrawReason::OutOfScope => {
            let class = parent
                .result
                .targets
                .iter()
                .chain(initial_record.result.targets.iter())
                .find(|t| t.uscc == uscc)
                .and_then(|t| CLASSES.iter().position(|c| *c == t.risk_class))
                .ok_or_else(|| Error::Internal("target missing from its draw".into()))?;
            let drawn: HashSet<String> = records::task_target_usccs(tx, task_id)?
                .into_iter()
                .collect();
            let stratum = &initial_record.target_pool.strata[class];
            let mut rest = TargetPool::empty();
            rest.strata[class].others = stratum
                .must_include
                .iter()
                .chain(&stratum.others)
                .filter(|u| !drawn.contains(*u))
                .cloned()
                .collect();
            // Weighted candidates keep their weight in the replacement draw.
            rest.strata[class].weighted = stratum
                .weighted
                .iter()
                .filter(|u| !drawn.contains(*u))
                .cloned()
                .collect();
            rest.sort();
            if rest.is_empty() {
                return Err(Error::invalid(
                    "target_id",
                    format!(
                        "no undrawn candidate of risk class {} is left to replace it",
                        CLASSES[class]
                    ),
                ));
            }
            ("out_of_scope", None, rest)
        }
    };
    let basis = RedrawBasis {
        parent_seed: parent.seed.clone(),
        sequence,
        reason: reason_code.into(),
        target_uscc: uscc.clone(),
        recused_inspector: recused,
        commitment: initial_record.commitment.clone(),
    };
    // A redraw follows the algorithm of the task's initial draw.
    let version = known_algorithm(&initial_record.algorithm)?;
    let seed = redraw_seed(version, &basis, &entropy)?;
    let mut params = initial_record.params.clone();
    params.quota = Quota::Count(1);
    let load_map: HashMap<i64, u64> = loads.iter().map(|(k, v)| (*k, *v)).collect();
    let outcome =
        algorithm::run(&params, &targets, &inspectors, seed, &load_map).map_err(draw_error)?;
    let reason_text = format!("{reason_code}: {}", explanation.trim());
    let mut record = DrawRecord {
        algorithm: version.into(),
        draw_id: 0,
        kind: "redraw".into(),
        parent_draw_id: Some(parent.draw_id),
        reason: Some(reason_text.clone()),
        task: task_info(tx, &task)?,
        commitment: None,
        redraw: Some(basis),
        params,
        secret: String::new(),
        entropy,
        beacon_value: None,
        min_observers: None,
        seed: hex::encode(seed),
        initial_loads: loads,
        target_names: target_names(tx, outcome.targets.iter().map(|t| t.uscc.clone()))?,
        target_pool: targets,
        inspector_pool: inspectors,
        result: outcome,
        drawn_at: now(),
    };
    let summary = insert_draw(tx, actor, &mut record, parent_published.is_some(), None)?;
    let drawn = &record.result.targets[0];
    match reason {
        RedrawReason::Recusal { .. } => {
            records::regroup(tx, &task, &current.id, summary.id, drawn, calendar)?;
        }
        RedrawReason::OutOfScope => {
            records::withdraw(tx, &current.id, &reason_text)?;
            records::create_for_draw(tx, &task, summary.id, std::slice::from_ref(drawn), calendar)?;
        }
    }
    audit::append(
        tx,
        actor,
        "draw.redraw",
        &format!("task:{task_id}"),
        Some(&json!({"record": current.id, "group": current.group})),
        Some(&json!({
            "draw_id": summary.id,
            "parent_draw_id": parent.draw_id,
            "reason": reason_text,
            "target": drawn.uscc,
            "group": drawn.group,
        })),
    )?;
    Ok(summary)
}

/// Recomputes a draw record and names the first difference, if any.
pub fn verify(record: &DrawRecord) -> std::result::Result<(), String> {
    if !ALGORITHMS.contains(&record.algorithm.as_str()) {
        return Err(format!(
            "unknown algorithm `{}` (this verifier knows {})",
            record.algorithm,
            ALGORITHMS.join(", ")
        ));
    }
    record.target_pool.check()?;
    if record.algorithm == ALGORITHM_V2 {
        if let Some(c) = record
            .target_pool
            .strata
            .iter()
            .position(|s| !s.weighted.is_empty())
        {
            return Err(format!(
                "target_pool[{c}].weighted: {ALGORITHM_V2} has no weighted candidates (they came with {ALGORITHM})"
            ));
        }
        if record.params.problem_weight != 1 || record.params.clean_cooldown_days != 0 {
            return Err(format!(
                "params: {ALGORITHM_V2} has no problem_weight or clean_cooldown_days (they came with {ALGORITHM})"
            ));
        }
    }
    if !record.inspector_pool.windows(2).all(|w| w[0].id < w[1].id) {
        return Err("inspector_pool is not sorted by id without repeats".into());
    }
    let drawn_at = parse_time(&record.drawn_at)
        .ok_or_else(|| format!("drawn_at `{}` is not an RFC 3339 time", record.drawn_at))?;
    // Every entry must count: distinct observers, nothing empty. An initial
    // draw names the minimum it was held to; records from before that rule
    // have no `min_observers` and are held to none.
    if let Err(e) = check_entropy(&record.entropy, record.min_observers.unwrap_or(0) as usize) {
        return Err(format!("the observers' entries do not count: {e}"));
    }
    let committed = record
        .commitment
        .as_ref()
        .or(record.redraw.as_ref().and_then(|b| b.commitment.as_ref()));
    if let Some(c) = committed {
        if c.algorithm != record.algorithm {
            return Err(format!(
                "the record says algorithm {} but its commitment {}",
                record.algorithm, c.algorithm
            ));
        }
        {
            let at = parse_time(&c.committed_at).ok_or_else(|| {
                format!(
                    "commitment.committed_at `{}` is not an RFC 3339 time",
                    c.committed_at
                )
            })?;
            if at >= drawn_at {
                return Err(format!(
                    "the commitment ({}) must precede the draw ({})",
                    c.committed_at, record.drawn_at
                ));
            }
        }
    }
    let seed = match (&record.commitment, &record.redraw) {
        (Some(c), None) => {
            let beacon = match (&c.beacon, &record.beacon_value) {
                (None, None) => None,
                (None, Some(_)) => {
                    return Err("beacon_value given but the commitment names no beacon".into());
                }
                (Some(b), None) => {
                    return Err(format!(
                        "the commitment names the beacon `{}` but the record has no beacon_value",
                        b.name
                    ));
                }
                (Some(b), Some(v)) => {
                    let due = parse_time(&b.due_at).ok_or_else(|| {
                        format!("beacon.due_at `{}` is not an RFC 3339 time", b.due_at)
                    })?;
                    if due > drawn_at {
                        return Err(format!(
                            "the beacon `{}` was due at {}, after the draw ({})",
                            b.name, b.due_at, record.drawn_at
                        ));
                    }
                    if parse_time(&c.committed_at).is_some_and(|at| at >= due) {
                        return Err(format!(
                            "the beacon `{}` was due at {}, not after the commitment ({})",
                            b.name, b.due_at, c.committed_at
                        ));
                    }
                    Some(v.as_str())
                }
            };
            let secret =
                hex::decode(&record.secret).map_err(|_| "secret is not hex".to_string())?;
            if sha256_hex(&secret) != c.secret_sha256 {
                return Err("secret does not match the committed secret_sha256".into());
            }
            if json_hash(&record.params) != c.params_sha256 {
                return Err("params do not match the committed params_sha256".into());
            }
            if json_hash(&record.target_pool) != c.target_pool_sha256 {
                return Err("target_pool does not match the committed target_pool_sha256".into());
            }
            if json_hash(&record.inspector_pool) != c.inspector_pool_sha256 {
                return Err(
                    "inspector_pool does not match the committed inspector_pool_sha256".into(),
                );
            }
            algorithm::seed_for(&record.algorithm, &secret, &record.entropy, beacon)
        }
        (None, Some(basis)) => {
            if record.beacon_value.is_some() {
                return Err(
                    "a redraw takes no beacon_value: its seed derives from its parent's".into(),
                );
            }
            redraw_seed(&record.algorithm, basis, &record.entropy).map_err(|e| e.to_string())?
        }
        _ => {
            return Err(
                "a record needs either a commitment (initial draw) or a redraw basis".into(),
            );
        }
    };
    if hex::encode(seed) != record.seed {
        return Err(format!(
            "seed should be {} but the record says {}",
            hex::encode(seed),
            record.seed
        ));
    }
    let loads: HashMap<i64, u64> = record.initial_loads.iter().map(|(k, v)| (*k, *v)).collect();
    let outcome = algorithm::run(
        &record.params,
        &record.target_pool,
        &record.inspector_pool,
        seed,
        &loads,
    )
    .map_err(|e| format!("the draw cannot be recomputed: {e}"))?;
    for (i, (want, got)) in outcome.strata.iter().zip(&record.result.strata).enumerate() {
        if want != got {
            return Err(format!(
                "result.strata[{i}] should be {want:?} but the record says {got:?}"
            ));
        }
    }
    if outcome.targets.len() != record.result.targets.len() {
        return Err(format!(
            "{} targets should be drawn but the record lists {}",
            outcome.targets.len(),
            record.result.targets.len()
        ));
    }
    for (i, (want, got)) in outcome
        .targets
        .iter()
        .zip(&record.result.targets)
        .enumerate()
    {
        if want != got {
            return Err(format!(
                "result.targets[{i}] should be {want:?} but the record says {got:?}"
            ));
        }
    }
    if outcome.strata.len() != record.result.strata.len() {
        return Err("result.strata has the wrong length".into());
    }
    Ok(())
}

/// Checks that a redraw's pools come from the pools its task committed to
/// before the initial draw, given that draw's record (`initial`, itself to
/// be checked with [`verify`]): the redraw names the same commitment, its
/// candidates are in the committed target pool, in the same stratum, and its
/// inspector pool is the committed one with exclusions only added.
pub fn verify_redraw_pools(
    redraw: &DrawRecord,
    initial: &DrawRecord,
) -> std::result::Result<(), String> {
    let Some(basis) = &redraw.redraw else {
        return Err("the first record is not a redraw".into());
    };
    if initial.kind != "initial" || initial.commitment.is_none() {
        return Err("the second record is not an initial draw with a commitment".into());
    }
    if redraw.task.id != initial.task.id {
        return Err(format!(
            "the redraw is of task {} but the initial draw of task {}",
            redraw.task.number, initial.task.number
        ));
    }
    match &basis.commitment {
        None => return Err("the redraw names no commitment".into()),
        Some(c) if Some(c) != initial.commitment.as_ref() => {
            return Err("the redraw names another commitment than the initial draw's".into());
        }
        Some(_) => {}
    }
    if redraw.parent_draw_id == Some(initial.draw_id) && basis.parent_seed != initial.seed {
        return Err("the redraw's parent_seed is not the initial draw's seed".into());
    }
    for (c, stratum) in redraw.target_pool.strata.iter().enumerate() {
        for uscc in stratum
            .must_include
            .iter()
            .chain(&stratum.others)
            .chain(&stratum.weighted)
        {
            if initial.target_pool.find_in(c, uscc).is_none() {
                return Err(format!(
                    "redraw target_pool[{c}] lists {uscc}, which the committed pool does not have in that stratum"
                ));
            }
        }
        // A weight is committed: a redraw may not give one to a candidate.
        if let Some(uscc) = stratum
            .weighted
            .iter()
            .find(|u| !initial.target_pool.is_weighted(c, u))
        {
            return Err(format!(
                "redraw target_pool[{c}].weighted lists {uscc}, which the committed pool does not weight"
            ));
        }
    }
    if redraw.inspector_pool.len() != initial.inspector_pool.len() {
        return Err("the redraw's inspector_pool is not the committed one".into());
    }
    for (mine, committed) in redraw.inspector_pool.iter().zip(&initial.inspector_pool) {
        if mine.id != committed.id
            || mine.department != committed.department
            || !committed.excluded.iter().all(|u| mine.excluded.contains(u))
        {
            return Err(format!(
                "inspector {} of the redraw's inspector_pool differs from the committed pool beyond added exclusions",
                mine.id
            ));
        }
    }
    if redraw.params.requirements != initial.params.requirements
        || redraw.params.group_size != initial.params.group_size
        || redraw.params.joint != initial.params.joint
        || redraw.params.problem_weight != initial.params.problem_weight
    {
        return Err("the redraw's params differ from the committed params".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
