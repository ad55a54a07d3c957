//! The draw algorithm, version [`ALGORITHM`]: a pure function from the
//! committed pools, the parameters and a seed to the drawn targets and their
//! inspector groups. The server runs it at the draw; `suiji-server draw
//! verify` runs it again on a published record.
//!
//! # Versions
//!
//! The version string is part of the seed and of every record; a change to
//! the pools' format or to any random choice gets a new one. `suiji-draw-v2`
//! makes the same choices as `suiji-draw-v1` from the same pool and seed, but commits
//! to the target pool in a shorter form: strata A–D, each listing the codes
//! of its must-includes and of its other candidates (see [`TargetPool`]),
//! instead of one `{uscc, risk_class, must_include}` object per candidate.
//!
//! # Seed
//!
//! `seed = SHA-256("suiji-draw-v2" 0x00 secret E1 E2 …)` where each observer
//! entry `Ei = u32be(len(name)) name u32be(len(value)) value` (UTF-8 bytes), in
//! the order the entries were given. When the commitment named a public
//! beacon, its value follows the entries as `u32be(0xFFFFFFFF)
//! u32be(len(value)) value` (see [`seed_with_beacon`]). A [ChaCha20](rand_chacha::ChaCha20Rng)
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
//! 1. Strata A, B, C, D in turn. The stratum's must-includes are taken first,
//!    in list order (every list is sorted by 统一社会信用代码). Then `q_c - m_c`
//!    of its other candidates, by a partial Fisher–Yates shuffle of the
//!    `others` list: for `i = 0, 1, …`, swap position `i` with
//!    `i + uniform(len - i)` and take what is now at position `i`.
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
pub const ALGORITHM: &str = "suiji-draw-v2";

/// Risk classes in stratum order.
pub const CLASSES: [&str; 4] = ["A", "B", "C", "D"];

/// One candidate target: the unit the pool is built from and read back as.
/// The committed pool does not list these; it groups their codes by
/// stratum (see [`TargetPool`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolTarget {
    /// 统一社会信用代码.
    pub uscc: String,
    /// Risk class A–D: the stratum.
    pub risk_class: String,
    /// Drawn whatever the random choice (严重违法失信, complaints … per the rules).
    pub must_include: bool,
}

/// One stratum (risk class) of the committed target pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStratum {
    /// Risk class A–D, as [`CLASSES`] names it at this stratum's position.
    pub risk_class: String,
    /// Must-include targets (统一社会信用代码), sorted, no repeats.
    pub must_include: Vec<String>,
    /// The other candidates, sorted, no repeats.
    pub others: Vec<String>,
}

/// The committed candidate target pool: strata A, B, C, D in that order,
/// each listing only codes. Serialised as a JSON array of the four strata;
/// no code appears twice in the whole pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TargetPool {
    /// Strata A–D.
    pub strata: [PoolStratum; 4],
}

impl TargetPool {
    /// An empty pool with its four strata named.
    pub fn empty() -> TargetPool {
        TargetPool {
            strata: CLASSES.map(|c| PoolStratum {
                risk_class: c.to_owned(),
                ..PoolStratum::default()
            }),
        }
    }

    /// The pool of these candidates, grouped and sorted. Codes must be unique.
    pub fn from_targets(
        targets: impl IntoIterator<Item = PoolTarget>,
    ) -> Result<TargetPool, DrawError> {
        let mut pool = TargetPool::empty();
        for t in targets {
            let c = class_index(&t.risk_class).ok_or_else(|| {
                DrawError::Params(format!("target {} has risk class {}", t.uscc, t.risk_class))
            })?;
            let stratum = &mut pool.strata[c];
            if t.must_include {
                stratum.must_include.push(t.uscc);
            } else {
                stratum.others.push(t.uscc);
            }
        }
        pool.sort();
        Ok(pool)
    }

    /// Sorts every list of codes.
    pub fn sort(&mut self) {
        for s in &mut self.strata {
            s.must_include.sort_unstable();
            s.others.sort_unstable();
        }
    }

    /// Candidates in the pool.
    pub fn len(&self) -> usize {
        self.strata
            .iter()
            .map(|s| s.must_include.len() + s.others.len())
            .sum()
    }

    /// Whether the pool has no candidate.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `uscc` is in the pool, and where: (stratum index, must-include).
    pub fn find(&self, uscc: &str) -> Option<(usize, bool)> {
        (0..4).find_map(|c| self.find_in(c, uscc).map(|must| (c, must)))
    }

    /// Whether `uscc` is in stratum `c` of the pool, and if so whether it
    /// is a must-include.
    pub fn find_in(&self, c: usize, uscc: &str) -> Option<bool> {
        let s = &self.strata[c];
        let has = |list: &[String]| list.binary_search_by(|u| u.as_str().cmp(uscc)).is_ok();
        if has(&s.must_include) {
            Some(true)
        } else if has(&s.others) {
            Some(false)
        } else {
            None
        }
    }

    /// Every candidate, stratum by stratum, must-includes first.
    pub fn iter(&self) -> impl Iterator<Item = PoolTarget> + '_ {
        self.strata.iter().flat_map(|s| {
            let tagged = |must: bool| {
                move |uscc: &String| PoolTarget {
                    uscc: uscc.clone(),
                    risk_class: s.risk_class.clone(),
                    must_include: must,
                }
            };
            s.must_include
                .iter()
                .map(tagged(true))
                .chain(s.others.iter().map(tagged(false)))
        })
    }

    /// Why the pool is malformed (strata misnamed, a list unsorted, a code
    /// twice), if it is.
    pub fn check(&self) -> Result<(), String> {
        let mut all: Vec<&str> = Vec::with_capacity(self.len());
        for (c, s) in self.strata.iter().enumerate() {
            if s.risk_class != CLASSES[c] {
                return Err(format!(
                    "target_pool[{c}] should be stratum {} but is {}",
                    CLASSES[c], s.risk_class
                ));
            }
            for (name, list) in [("must_include", &s.must_include), ("others", &s.others)] {
                if !list.windows(2).all(|w| w[0] < w[1]) {
                    return Err(format!(
                        "target_pool[{c}].{name} is not sorted without repeats"
                    ));
                }
                all.extend(list.iter().map(String::as_str));
            }
        }
        all.sort_unstable();
        if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("target_pool lists {} twice", w[0]));
        }
        Ok(())
    }
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
    seed_with_beacon(secret, entropy, None)
}

/// Marks the beacon value in the seed material: no observer entry's length
/// prefix can take this value, so the material stays unambiguous.
pub const BEACON_MARK: u32 = u32::MAX;

/// The seed from the server secret, the observers' entropy in order and,
/// when the commitment named a public beacon, its value:
/// `SHA-256(ALGORITHM 0x00 secret E1 … En [u32be(BEACON_MARK) u32be(len(value)) value])`.
/// Without a beacon this is [`seed`], as in every earlier record.
pub fn seed_with_beacon(secret: &[u8], entropy: &[Entropy], beacon: Option<&str>) -> [u8; 32] {
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
    if let Some(value) = beacon {
        h.update(BEACON_MARK.to_be_bytes());
        h.update((value.len() as u32).to_be_bytes());
        h.update(value.as_bytes());
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

/// The stratum of a risk class.
pub fn class_index(class: &str) -> Option<usize> {
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

/// Runs the draw. Deterministic in its inputs; the pool's lists must be
/// sorted (as [`TargetPool::check`] requires) and `inspectors` sorted by id.
pub fn run(
    params: &Params,
    targets: &TargetPool,
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
    let sizes = targets
        .strata
        .each_ref()
        .map(|s| (s.must_include.len() + s.others.len()) as u64);
    let musts = targets
        .strata
        .each_ref()
        .map(|s| s.must_include.len() as u64);
    let q = quotas(params, sizes, musts);
    // (stratum, must-include, code) in draw order.
    let mut drawn: Vec<(usize, bool, &str)> = Vec::new();
    let mut strata = Vec::new();
    for (c, stratum) in targets.strata.iter().enumerate() {
        drawn.extend(stratum.must_include.iter().map(|u| (c, true, u.as_str())));
        // A partial Fisher–Yates shuffle of `others`, touching only the
        // positions it swaps: position p holds `moved[p]`, or p if unmoved.
        let rest = &stratum.others;
        let mut moved: HashMap<usize, usize> = HashMap::new();
        let k = (q[c] - musts[c]) as usize;
        for i in 0..k {
            let j = i + uniform(&mut rng, (rest.len() - i) as u64) as usize;
            let at_i = moved.get(&i).copied().unwrap_or(i);
            let at_j = moved.get(&j).copied().unwrap_or(j);
            moved.insert(i, at_j);
            moved.insert(j, at_i);
            drawn.push((c, false, rest[at_j].as_str()));
        }
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
    for &(c, must_include, uscc) in &drawn {
        let excluded = excluded_for.get(uscc).map(Vec::as_slice).unwrap_or(&[]);
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
                    uscc: uscc.to_owned(),
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
            uscc: uscc.to_owned(),
            risk_class: CLASSES[c].to_owned(),
            must_include,
            group: group.iter().map(|&i| inspectors[i].id).collect(),
        });
    }
    Ok(Outcome {
        strata,
        targets: results,
    })
}
