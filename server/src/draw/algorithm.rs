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
//! `suiji-draw-v3` adds the rules' frequency weighting (#20): a stratum may
//! also list `weighted` candidates (targets whose latest result had problems),
//! each drawn with the weight `problem_weight` of the parameters where every
//! other candidate weighs 1. With no weighted candidate, or a weight of 1, it
//! makes exactly the choices of `suiji-draw-v2` from the same pool and seed
//! (the random stream is used the same way), and a v2 pool or v2 parameters
//! serialise byte for byte as before. The verifier accepts both versions
//! ([`ALGORITHMS`]); a v2 record may not have weighted candidates.
//!
//! # Seed
//!
//! `seed = SHA-256(version 0x00 secret E1 E2 …)`, where `version` is the
//! record's algorithm (`"suiji-draw-v3"`, or `"suiji-draw-v2"` for older
//! records; see [`seed_for`]) and each observer
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
//!    of its other candidates (`n_c` counts must-includes, weighted and
//!    others), one at a time. Each list is drawn from by a partial
//!    Fisher–Yates shuffle: its `i`-th pick (`i = 0, 1, …`) swaps position
//!    `i` with `i + uniform(len - i)` and takes what is now at position `i`.
//!    Which list a pick comes from: with `nw` weighted and `no` other
//!    candidates not yet taken and `W = problem_weight`, if both are
//!    non-zero, `u = uniform(W × nw + no)` picks from `weighted` if
//!    `u < W × nw`, else from `others`; if one list is used up, the pick comes
//!    from the other without a random number. (So with no weighted candidate
//!    every pick is the v2 shuffle of `others`.) With `W = 1` the two lists
//!    are merged in sorted order into one `others` list first, which is the
//!    v2 draw of that pool. Integers only, so every verifier agrees.
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

/// Name and version of this algorithm, written into every new draw record.
pub const ALGORITHM: &str = "suiji-draw-v3";

/// The previous version, without weighted candidates: its records still verify.
pub const ALGORITHM_V2: &str = "suiji-draw-v2";

/// Every version this code draws and verifies, oldest first.
pub const ALGORITHMS: [&str; 2] = [ALGORITHM_V2, ALGORITHM];

/// The largest `problem_weight` a draw takes (the rules' bound).
pub const MAX_PROBLEM_WEIGHT: u32 = 10;

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
    /// Candidates drawn with the weight `problem_weight` of the parameters
    /// (their latest result had problems; not also in `others`), sorted, no
    /// repeats. Absent when empty, so a v2 pool serialises as it always did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weighted: Vec<String>,
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
            s.weighted.sort_unstable();
        }
    }

    /// Candidates in the pool.
    pub fn len(&self) -> usize {
        self.strata
            .iter()
            .map(|s| s.must_include.len() + s.others.len() + s.weighted.len())
            .sum()
    }

    /// Weighted candidates in the pool.
    pub fn weighted_len(&self) -> usize {
        self.strata.iter().map(|s| s.weighted.len()).sum()
    }

    /// Whether the pool has no candidate.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `uscc` is in the pool, and where: (stratum index, must-include).
    pub fn find(&self, uscc: &str) -> Option<(usize, bool)> {
        (0..4).find_map(|c| self.find_in(c, uscc).map(|must| (c, must)))
    }

    /// Whether `uscc` is in stratum `c` of the pool (must-includes, others or
    /// weighted), and if so whether it is a must-include.
    pub fn find_in(&self, c: usize, uscc: &str) -> Option<bool> {
        let s = &self.strata[c];
        if has(&s.must_include, uscc) {
            Some(true)
        } else if has(&s.others, uscc) || has(&s.weighted, uscc) {
            Some(false)
        } else {
            None
        }
    }

    /// Whether `uscc` is a weighted candidate of stratum `c`.
    pub fn is_weighted(&self, c: usize, uscc: &str) -> bool {
        has(&self.strata[c].weighted, uscc)
    }

    /// Every candidate, stratum by stratum, must-includes first, then the
    /// others, then the weighted ones.
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
                .chain(s.weighted.iter().map(tagged(false)))
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
            for (name, list) in [
                ("must_include", &s.must_include),
                ("others", &s.others),
                ("weighted", &s.weighted),
            ] {
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

/// Whether the sorted `list` holds `uscc`.
fn has(list: &[String], uscc: &str) -> bool {
    list.binary_search_by(|u| u.as_str().cmp(uscc)).is_ok()
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
    /// The weight of a stratum's `weighted` candidates (1 to
    /// [`MAX_PROBLEM_WEIGHT`]; the others weigh 1). Absent when 1, so v2
    /// parameters serialise as they always did.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub problem_weight: u32,
    /// The rules' `clean_cooldown_days` the pool was built with: a target
    /// found clean for one of the task's items that many days before the
    /// task's window is not in it. Recorded, not used by the draw; absent
    /// when 0 (off).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub clean_cooldown_days: u32,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
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
    /// Of which weighted (absent when none, as in every v2 record).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weighted: u64,
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

/// The seed from the server secret and the observers' entropy, in order,
/// for a new draw ([`ALGORITHM`]).
pub fn seed(secret: &[u8], entropy: &[Entropy]) -> [u8; 32] {
    seed_for(ALGORITHM, secret, entropy, None)
}

/// Marks the beacon value in the seed material: no observer entry's length
/// prefix can take this value, so the material stays unambiguous.
pub const BEACON_MARK: u32 = u32::MAX;

/// The seed of a new draw ([`ALGORITHM`]) from the server secret, the
/// observers' entropy and the beacon value: [`seed_for`] with [`ALGORITHM`].
pub fn seed_with_beacon(secret: &[u8], entropy: &[Entropy], beacon: Option<&str>) -> [u8; 32] {
    seed_for(ALGORITHM, secret, entropy, beacon)
}

/// The seed of a draw made with `algorithm` (one of [`ALGORITHMS`]) from the
/// server secret, the observers' entropy in order and, when the commitment
/// named a public beacon, its value:
/// `SHA-256(algorithm 0x00 secret E1 … En [u32be(BEACON_MARK) u32be(len(value)) value])`.
/// Without a beacon the bracketed part is absent, as in every earlier record.
pub fn seed_for(
    algorithm: &str,
    secret: &[u8],
    entropy: &[Entropy],
    beacon: Option<&str>,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(algorithm.as_bytes());
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

/// A partial Fisher–Yates shuffle of a sorted list, touching only the
/// positions it swaps: position p holds `moved[p]`, or p if unmoved.
struct Shuffle<'a> {
    list: &'a [String],
    moved: HashMap<usize, usize>,
    taken: usize,
}

impl<'a> Shuffle<'a> {
    fn new(list: &'a [String]) -> Shuffle<'a> {
        Shuffle {
            list,
            moved: HashMap::new(),
            taken: 0,
        }
    }

    /// Candidates not yet taken.
    fn left(&self) -> u64 {
        (self.list.len() - self.taken) as u64
    }

    /// Swaps position `i` with `i + uniform(len - i)` and takes position `i`.
    fn take(&mut self, rng: &mut ChaCha20Rng) -> &'a str {
        let i = self.taken;
        let j = i + uniform(rng, self.left()) as usize;
        let at_i = self.moved.get(&i).copied().unwrap_or(i);
        let at_j = self.moved.get(&j).copied().unwrap_or(j);
        self.moved.insert(i, at_j);
        self.moved.insert(j, at_i);
        self.taken += 1;
        self.list[at_j].as_str()
    }
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
    if !(1..=MAX_PROBLEM_WEIGHT).contains(&params.problem_weight) {
        return Err(DrawError::Params(format!(
            "problem_weight is {}, not 1 to {MAX_PROBLEM_WEIGHT}",
            params.problem_weight
        )));
    }
    let weight = u64::from(params.problem_weight);
    let mut rng = ChaCha20Rng::from_seed(seed);

    // 1. Targets, stratum by stratum.
    let sizes = targets
        .strata
        .each_ref()
        .map(|s| (s.must_include.len() + s.others.len() + s.weighted.len()) as u64);
    let musts = targets
        .strata
        .each_ref()
        .map(|s| s.must_include.len() as u64);
    let q = quotas(params, sizes, musts);
    // A weight of 1 makes weighted candidates plain ones: one list, as in v2.
    let merged = targets.strata.each_ref().map(|s| {
        (weight == 1 && !s.weighted.is_empty()).then(|| {
            let mut all = s.others.clone();
            all.extend(s.weighted.iter().cloned());
            all.sort_unstable();
            all
        })
    });
    // (stratum, must-include, code) in draw order.
    let mut drawn: Vec<(usize, bool, &str)> = Vec::new();
    let mut strata = Vec::new();
    for (c, stratum) in targets.strata.iter().enumerate() {
        drawn.extend(stratum.must_include.iter().map(|u| (c, true, u.as_str())));
        let (heavy, light): (&[String], &[String]) = match &merged[c] {
            Some(all) => (&[], all),
            None => (&stratum.weighted, &stratum.others),
        };
        let mut heavy = Shuffle::new(heavy);
        let mut light = Shuffle::new(light);
        for _ in musts[c]..q[c] {
            let (nw, no) = (heavy.left(), light.left());
            // No random number while one list is used up: without weighted
            // candidates this is exactly the v2 shuffle of `others`.
            let from_heavy = match (nw, no) {
                (0, _) => false,
                (_, 0) => true,
                _ => uniform(&mut rng, weight * nw + no) < weight * nw,
            };
            let uscc = if from_heavy {
                heavy.take(&mut rng)
            } else {
                light.take(&mut rng)
            };
            drawn.push((c, false, uscc));
        }
        strata.push(Stratum {
            risk_class: CLASSES[c].to_owned(),
            candidates: sizes[c],
            must_include: musts[c],
            weighted: stratum.weighted.len() as u64,
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
