//! The draw algorithm, version [`ALGORITHM`]: a pure function from the
//! committed pools, the parameters and a seed to the drawn targets and their
//! inspector groups. The server runs it at the draw; `suiji-server draw
//! verify` runs it again on a published record.
//!
//! # Seed
//!
//! `seed = SHA-256("suiji-draw-v1" 0x00 secret E1 E2 …)` where each observer
//! entry `Ei = u32be(len(name)) name u32be(len(value)) value` (UTF-8 bytes), in
//! the order the entries were given. A [ChaCha20](rand_chacha::ChaCha20Rng)
//! generator seeded with it drives every random choice. Random integers below
//! `n` come from `next_u64` by rejection (values at or above the largest
//! multiple of `n` are discarded, then `x % n`), so the stream is used the same
//! way by every version of this code.
//!
//! # Quotas
//!
//! `N` is the task's count, or `ceil(ratio × pool size)`, at most the pool size.
//! Each risk class `c` (stratum) with `n_c` candidates, `m_c` of them
//! must-includes, starts at `q_c = max(m_c, 1)` if `n_c > 0` (so every stratum
//! with candidates is drawn from, and must-includes are always drawn; the total
//! may then exceed `N`). While `Σ q_c < N`, one more target goes to the
//! stratum with room (`q_c < n_c`) whose weight `w_c = ratio_c × n_c` divided by
//! `q_c + 0.5` is largest (Sainte-Laguë highest averages), ties to the riskier
//! class. So the per-class ratios of the agency's rules set the proportions.
//!
//! # Order of random choices
//!
//! 1. Strata A, B, C, D in turn. Must-includes are taken first, in pool order
//!    (pools are sorted by 统一社会信用代码). Then `q_c - m_c` of the other
//!    candidates, in pool order, by a partial Fisher–Yates shuffle: for
//!    `i = 0, 1, …`, swap position `i` with `i + uniform(len - i)`.
//! 2. Groups, for the drawn targets in the order they were drawn. A group has
//!    `max(group_size, departments)` members. For a joint task, the first
//!    slots take one inspector of each participating department in task order;
//!    the other slots take any pool inspector. Each slot takes an inspector who
//!    is neither excluded for that target (declared conflict, or in the group
//!    that inspected it last time) nor already in the group, with the lowest
//!    number of targets so far; among those, uniformly at random (rejection
//!    sampling over the inspectors at that load, in the order this reference
//!    implementation keeps them). The first member is the lead.

use std::collections::HashMap;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Name and version of this algorithm, written into every draw record.
pub const ALGORITHM: &str = "suiji-draw-v1";

/// Risk classes in stratum order.
pub const CLASSES: [&str; 4] = ["A", "B", "C", "D"];

/// One candidate target in the committed pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolTarget {
    /// 统一社会信用代码 (pool entries are sorted by it and unique).
    pub uscc: String,
    /// Risk class A–D: the stratum.
    pub risk_class: String,
    /// Drawn whatever the random choice (严重违法失信, complaints … per the rules).
    pub must_include: bool,
}

/// One inspector in the committed pool: active, qualified for their
/// department's items of the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolInspector {
    /// Inspector id (pool entries are sorted by it).
    pub id: i64,
    /// Department code.
    pub department: String,
    /// Targets (统一社会信用代码) this inspector must not inspect: declared
    /// conflicts and targets whose last group they were in. Sorted.
    pub excluded: Vec<String>,
}

/// Size of the draw: a share of the pool or a number of targets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quota {
    /// A share in (0, 1].
    Ratio(f64),
    /// A number of targets.
    Count(u64),
}

/// What one department must provide to every group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// Department code.
    pub department: String,
    /// Qualifications its items need (for error messages and the record).
    pub qualifications: Vec<String>,
}

/// The parameters fixed at the commitment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// How many targets.
    pub quota: Quota,
    /// Ratio of each risk class A–D from the rules: the stratum weights.
    pub class_ratios: [f64; 4],
    /// Inspectors per group (at least 2).
    pub group_size: u32,
    /// Joint task: one inspector of every department in each group.
    pub joint: bool,
    /// Participating departments, the initiator first, with what each needs.
    pub requirements: Vec<Requirement>,
}

/// An observer's contribution at the ceremony.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entropy {
    /// Who typed it.
    pub observer: String,
    /// What they typed.
    pub value: String,
}

/// One stratum's numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stratum {
    /// Risk class.
    pub risk_class: String,
    /// Candidates in the pool.
    pub candidates: u64,
    /// Of which must-includes.
    pub must_include: u64,
    /// Targets drawn from it.
    pub drawn: u64,
}

/// One drawn target and its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrawnTarget {
    /// 统一社会信用代码.
    pub uscc: String,
    /// Stratum.
    pub risk_class: String,
    /// Whether it was a must-include.
    pub must_include: bool,
    /// Inspector ids, the lead first.
    pub group: Vec<i64>,
}

/// What the draw produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Strata in order A–D.
    pub strata: Vec<Stratum>,
    /// Drawn targets in draw order.
    pub targets: Vec<DrawnTarget>,
}

/// Why a draw cannot be made; nothing is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrawError {
    /// No candidate targets.
    #[error("the candidate pool is empty: no target matches the task")]
    EmptyPool,
    /// A group cannot be filled for a target.
    #[error(
        "cannot fill the group for target {uscc}: no available inspector of department {department} qualified for {qualifications} (others are excluded by conflicts, the last group or are already in the group)"
    )]
    GroupUnfillable {
        /// The target.
        uscc: String,
        /// The department short of inspectors.
        department: String,
        /// What the missing inspector must be qualified for.
        qualifications: String,
    },
    /// Parameters out of bounds.
    #[error("invalid draw parameters: {0}")]
    Params(String),
}

/// SHA-256 hex of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The seed from the server secret and the observers' entropy, in order.
pub fn seed(secret: &[u8], entropy: &[Entropy]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ALGORITHM.as_bytes());
    h.update([0u8]);
    h.update(secret);
    for e in entropy {
        for part in [&e.observer, &e.value] {
            h.update((part.len() as u32).to_be_bytes());
            h.update(part.as_bytes());
        }
    }
    h.finalize().into()
}

/// The canonical hash of a JSON-serialisable value (serde_json's compact form,
/// fields in declaration order).
pub fn json_hash<T: Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).expect("pool types serialise");
    sha256_hex(&bytes)
}

/// A uniform integer in `0..n` from the generator, by rejection.
pub fn uniform(rng: &mut ChaCha20Rng, n: u64) -> u64 {
    assert!(n > 0, "uniform over an empty range");
    let zone = u64::MAX - (u64::MAX % n);
    loop {
        let x = rng.next_u64();
        if x < zone {
            return x % n;
        }
    }
}

fn class_index(class: &str) -> Option<usize> {
    CLASSES.iter().position(|c| *c == class)
}

/// The number of targets to draw from each stratum (see the module docs).
pub fn quotas(params: &Params, sizes: [u64; 4], musts: [u64; 4]) -> [u64; 4] {
    let total: u64 = sizes.iter().sum();
    let target = match params.quota {
        Quota::Count(n) => n.min(total),
        Quota::Ratio(r) => (((r * total as f64) - 1e-9).ceil().max(0.0) as u64).min(total),
    };
    let mut q = [0u64; 4];
    for c in 0..4 {
        if sizes[c] > 0 {
            q[c] = musts[c].max(1);
        }
    }
    while q.iter().sum::<u64>() < target {
        let mut best: Option<(usize, f64)> = None;
        // Riskier classes first, so ties go to them.
        for c in (0..4).rev() {
            if q[c] >= sizes[c] {
                continue;
            }
            let weight = params.class_ratios[c] * sizes[c] as f64;
            let priority = weight / (q[c] as f64 + 0.5);
            if best.is_none_or(|(_, p)| priority > p) {
                best = Some((c, priority));
            }
        }
        match best {
            Some((c, _)) => q[c] += 1,
            None => break,
        }
    }
    q
}

/// Inspectors bucketed by load, with O(1) moves between buckets.
struct Levels {
    levels: Vec<Vec<usize>>,
    /// Position of each member inspector in its level, by pool index.
    position: HashMap<usize, usize>,
}

impl Levels {
    fn new(members: Vec<usize>) -> Levels {
        let position = members.iter().enumerate().map(|(p, &i)| (i, p)).collect();
        Levels {
            levels: vec![members],
            position,
        }
    }

    fn contains(&self, inspector: usize) -> bool {
        self.position.contains_key(&inspector)
    }

    fn bump(&mut self, inspector: usize, load: usize) {
        let Some(&pos) = self.position.get(&inspector) else {
            return;
        };
        let level = &mut self.levels[load];
        level.swap_remove(pos);
        if let Some(&moved) = level.get(pos) {
            self.position.insert(moved, pos);
        }
        if self.levels.len() <= load + 1 {
            self.levels.push(Vec::new());
        }
        self.levels[load + 1].push(inspector);
        self.position
            .insert(inspector, self.levels[load + 1].len() - 1);
    }
}

/// Runs the draw. Deterministic in its inputs; `targets` must be sorted by
/// 统一社会信用代码 and `inspectors` by id (as pools are built).
pub fn run(
    params: &Params,
    targets: &[PoolTarget],
    inspectors: &[PoolInspector],
    seed: [u8; 32],
    initial_loads: &HashMap<i64, u64>,
) -> Result<Outcome, DrawError> {
    if targets.is_empty() {
        return Err(DrawError::EmptyPool);
    }
    if params.group_size < 2 {
        return Err(DrawError::Params(
            "a group needs at least 2 inspectors".into(),
        ));
    }
    if params.requirements.is_empty() {
        return Err(DrawError::Params("no participating department".into()));
    }
    let mut rng = ChaCha20Rng::from_seed(seed);

    // 1. Targets, stratum by stratum.
    let mut by_class: [Vec<usize>; 4] = Default::default();
    for (i, t) in targets.iter().enumerate() {
        let c = class_index(&t.risk_class).ok_or_else(|| {
            DrawError::Params(format!("target {} has risk class {}", t.uscc, t.risk_class))
        })?;
        by_class[c].push(i);
    }
    let sizes = by_class.each_ref().map(|v| v.len() as u64);
    let musts = by_class
        .each_ref()
        .map(|v| v.iter().filter(|&&i| targets[i].must_include).count() as u64);
    let q = quotas(params, sizes, musts);
    let mut drawn: Vec<usize> = Vec::new();
    let mut strata = Vec::new();
    for c in 0..4 {
        let (must, mut rest): (Vec<usize>, Vec<usize>) =
            by_class[c].iter().partition(|&&i| targets[i].must_include);
        drawn.extend(&must);
        let k = (q[c] - musts[c]) as usize;
        for i in 0..k {
            let j = i + uniform(&mut rng, (rest.len() - i) as u64) as usize;
            rest.swap(i, j);
        }
        drawn.extend(&rest[..k]);
        strata.push(Stratum {
            risk_class: CLASSES[c].to_owned(),
            candidates: sizes[c],
            must_include: musts[c],
            drawn: q[c],
        });
    }

    // 2. Groups.
    let mut excluded_for: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, inspector) in inspectors.iter().enumerate() {
        for uscc in &inspector.excluded {
            excluded_for.entry(uscc.as_str()).or_default().push(i);
        }
    }
    let mut loads: Vec<usize> = inspectors
        .iter()
        .map(|i| initial_loads.get(&i.id).copied().unwrap_or(0) as usize)
        .collect();
    // One structure for "any inspector" and one per department.
    let mut structures: Vec<Levels> = Vec::new();
    let build = |members: Vec<usize>, loads: &[usize]| {
        let mut levels = Levels::new(Vec::new());
        let max = members.iter().map(|&m| loads[m]).max().unwrap_or(0);
        levels.levels = vec![Vec::new(); max + 1];
        for m in members {
            levels.levels[loads[m]].push(m);
            levels.position.insert(m, levels.levels[loads[m]].len() - 1);
        }
        levels
    };
    structures.push(build((0..inspectors.len()).collect(), &loads));
    for req in &params.requirements {
        let members = (0..inspectors.len())
            .filter(|&i| inspectors[i].department == req.department)
            .collect();
        structures.push(build(members, &loads));
    }
    let group_size = (params.group_size as usize).max(if params.joint {
        params.requirements.len()
    } else {
        0
    });
    let mut results = Vec::with_capacity(drawn.len());
    for &t in &drawn {
        let target = &targets[t];
        let excluded = excluded_for
            .get(target.uscc.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut group: Vec<usize> = Vec::with_capacity(group_size);
        for slot in 0..group_size {
            // Joint tasks: the first slots are one per department (structure 1 + d).
            // Other tasks: every slot is "any" (structure 0 holds only the task's department).
            let (structure, req) = if params.joint && slot < params.requirements.len() {
                (1 + slot, &params.requirements[slot])
            } else {
                (0, &params.requirements[0])
            };
            let levels = &structures[structure];
            let blocked = |i: &usize| excluded.contains(i) || group.contains(i);
            let mut chosen = None;
            for (load, level) in levels.levels.iter().enumerate() {
                let unavailable = excluded
                    .iter()
                    .chain(group.iter())
                    .filter(|&&i| levels.contains(i) && loads[i] == load)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len();
                if level.len() <= unavailable {
                    continue;
                }
                loop {
                    let pick = level[uniform(&mut rng, level.len() as u64) as usize];
                    if !blocked(&pick) {
                        chosen = Some(pick);
                        break;
                    }
                }
                break;
            }
            let Some(pick) = chosen else {
                let (department, qualifications) = if structure == 0 && params.joint {
                    (
                        "any participating department".to_owned(),
                        "the task's items".to_owned(),
                    )
                } else {
                    (req.department.clone(), req.qualifications.join(", "))
                };
                return Err(DrawError::GroupUnfillable {
                    uscc: target.uscc.clone(),
                    department,
                    qualifications: if qualifications.is_empty() {
                        "the task's items".into()
                    } else {
                        qualifications
                    },
                });
            };
            for s in structures.iter_mut() {
                s.bump(pick, loads[pick]);
            }
            loads[pick] += 1;
            group.push(pick);
        }
        results.push(DrawnTarget {
            uscc: target.uscc.clone(),
            risk_class: target.risk_class.clone(),
            must_include: target.must_include,
            group: group.iter().map(|&i| inspectors[i].id).collect(),
        });
    }
    Ok(Outcome {
        strata,
        targets: results,
    })
}
