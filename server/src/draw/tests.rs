//! Tests of the draw algorithm and of draw-record verification, with fixed
//! seeds so that statistical checks are exact and never flaky.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::algorithm::*;
use super::{CommitmentInfo, DrawRecord, TaskInfo, verify};
use crate::uscc;

fn pool(sizes: [usize; 4], must_every: usize) -> TargetPool {
    let mut targets = Vec::new();
    let mut serial = 0u32;
    for (c, &n) in sizes.iter().enumerate() {
        for k in 0..n {
            serial += 1;
            targets.push(PoolTarget {
                uscc: uscc::generate('9', '1', "330106", serial * 13),
                risk_class: CLASSES[c].into(),
                must_include: must_every > 0 && k % must_every == 0,
            });
        }
    }
    TargetPool::from_targets(targets).unwrap()
}

fn inspectors(n: i64, departments: &[&str]) -> Vec<PoolInspector> {
    (1..=n)
        .map(|id| PoolInspector {
            id,
            department: departments[(id as usize) % departments.len()].into(),
            excluded: Vec::new(),
        })
        .collect()
}

fn params(quota: Quota, joint: bool, departments: &[&str]) -> Params {
    Params {
        quota,
        class_ratios: [0.03, 0.05, 0.2, 0.6],
        group_size: 2,
        joint,
        requirements: departments
            .iter()
            .map(|d| Requirement {
                department: (*d).into(),
                qualifications: vec![format!("{d}资格")],
            })
            .collect(),
        problem_weight: 1,
        clean_cooldown_days: 0,
    }
}

fn entropy(value: &str) -> Vec<Entropy> {
    vec![Entropy {
        observer: "观察员".into(),
        value: value.into(),
    }]
}

fn no_loads() -> HashMap<i64, u64> {
    HashMap::new()
}

#[test]
fn same_inputs_give_the_same_draw() {
    let targets = pool([400, 300, 200, 100], 0);
    let people = inspectors(30, &["SCJG"]);
    let p = params(Quota::Ratio(0.1), false, &["SCJG"]);
    let seed = seed(b"secret", &entropy("42"));
    let a = run(&p, &targets, &people, seed, &no_loads()).unwrap();
    let b = run(&p, &targets, &people, seed, &no_loads()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.targets.len(), 100);
}

#[test]
fn different_observer_entropy_gives_a_different_draw() {
    let targets = pool([400, 300, 200, 100], 0);
    let people = inspectors(30, &["SCJG"]);
    let p = params(Quota::Ratio(0.1), false, &["SCJG"]);
    let a = run(
        &p,
        &targets,
        &people,
        seed(b"secret", &entropy("42")),
        &no_loads(),
    )
    .unwrap();
    let b = run(
        &p,
        &targets,
        &people,
        seed(b"secret", &entropy("43")),
        &no_loads(),
    )
    .unwrap();
    let picked = |o: &Outcome| {
        o.targets
            .iter()
            .map(|t| t.uscc.clone())
            .collect::<HashSet<_>>()
    };
    assert_ne!(picked(&a), picked(&b));
    // Order of entries matters too.
    let two = vec![
        Entropy {
            observer: "甲".into(),
            value: "1".into(),
        },
        Entropy {
            observer: "乙".into(),
            value: "2".into(),
        },
    ];
    let swapped = vec![two[1].clone(), two[0].clone()];
    assert_ne!(seed(b"s", &two), seed(b"s", &swapped));
}

#[test]
fn quotas_follow_class_ratios_with_one_per_stratum_and_must_includes() {
    let p = params(Quota::Count(100), false, &["SCJG"]);
    // Weights 0.03*1000=30, 0.05*1000=50, 0.2*1000=200, 0.6*1000=600 → 880.
    let q = quotas(&p, [1000, 1000, 1000, 1000], [0, 0, 0, 0]);
    assert_eq!(q.iter().sum::<u64>(), 100);
    for (c, w) in [30.0, 50.0, 200.0, 600.0].iter().enumerate() {
        let expected = 100.0 * w / 880.0;
        assert!(
            (q[c] as f64 - expected).abs() <= 1.0,
            "class {c}: {} vs {expected}",
            q[c]
        );
    }
    // A tiny stratum still gets one; an empty one none.
    let q = quotas(&p, [0, 3, 1000, 1000], [0, 0, 0, 0]);
    assert_eq!((q[0], q[1]), (0, 1));
    // Must-includes are always drawn, even beyond the count.
    let q = quotas(
        &params(Quota::Count(2), false, &["SCJG"]),
        [10, 10, 10, 10],
        [5, 0, 0, 0],
    );
    assert_eq!(q, [5, 1, 1, 1]);
    // A stratum never gets more than it has; the rest goes elsewhere.
    // (D's share of 200 by weight would be 35, but it has only 10.)
    let q = quotas(
        &params(Quota::Count(200), false, &["SCJG"]),
        [100, 100, 100, 10],
        [0; 4],
    );
    assert_eq!(q[3], 10);
    assert_eq!(q.iter().sum::<u64>(), 200);
    // Ratio: ceil(0.05 × 1001) = 51.
    let q = quotas(
        &params(Quota::Ratio(0.05), false, &["SCJG"]),
        [1001, 0, 0, 0],
        [0; 4],
    );
    assert_eq!(q[0], 51);
}

#[test]
fn strata_and_selection_frequencies_over_many_fixed_seeds_match_the_ratios() {
    let sizes = [200usize, 100, 60, 40];
    let targets = pool(sizes, 0);
    let people = inspectors(40, &["SCJG"]);
    let p = params(Quota::Count(40), false, &["SCJG"]);
    let expected = quotas(&p, sizes.map(|s| s as u64), [0; 4]);
    let class_of: HashMap<String, usize> = targets
        .iter()
        .map(|t| {
            let c = CLASSES.iter().position(|c| *c == t.risk_class).unwrap();
            (t.uscc, c)
        })
        .collect();
    let runs = 400;
    let mut hits: HashMap<String, u32> = HashMap::new();
    for r in 0..runs {
        let s = seed(format!("fixed seed {r}").as_bytes(), &[]);
        let o = run(&p, &targets, &people, s, &no_loads()).unwrap();
        let mut per_class = [0u64; 4];
        for t in &o.targets {
            per_class[class_of[t.uscc.as_str()]] += 1;
            *hits.entry(t.uscc.clone()).or_default() += 1;
        }
        assert_eq!(per_class, expected, "every run draws each stratum's quota");
    }
    // Within a stratum every candidate is equally likely: a chi-square test of
    // the inclusion counts against q_c / n_c per run.
    for c in 0..4 {
        let members: Vec<PoolTarget> = targets
            .iter()
            .filter(|t| t.risk_class == CLASSES[c])
            .collect();
        let mean = runs as f64 * expected[c] as f64 / members.len() as f64;
        let chi2: f64 = members
            .iter()
            .map(|t| {
                let o = f64::from(*hits.get(&t.uscc).unwrap_or(&0));
                (o - mean).powi(2) / mean
            })
            .sum();
        let dof = members.len() as f64 - 1.0;
        // Far beyond the 99.9th percentile for these degrees of freedom.
        let bound = dof + 5.0 * (2.0 * dof).sqrt();
        assert!(
            chi2 < bound,
            "class {}: chi2 {chi2:.1} >= {bound:.1}",
            CLASSES[c]
        );
    }
}

#[test]
fn must_includes_are_drawn_first_and_none_twice() {
    let targets = pool([100, 100, 100, 100], 10);
    let people = inspectors(20, &["SCJG"]);
    let o = run(
        &params(Quota::Count(60), false, &["SCJG"]),
        &targets,
        &people,
        seed(b"x", &[]),
        &no_loads(),
    )
    .unwrap();
    let drawn: HashSet<&str> = o.targets.iter().map(|t| t.uscc.as_str()).collect();
    assert_eq!(drawn.len(), o.targets.len(), "no target twice");
    for t in targets.iter().filter(|t| t.must_include) {
        assert!(
            drawn.contains(t.uscc.as_str()),
            "must-include {} drawn",
            t.uscc
        );
    }
}

#[test]
fn groups_have_no_conflicted_or_repeated_inspector_and_spread_work_evenly() {
    let targets = pool([50, 50, 50, 50], 0);
    let mut people = inspectors(25, &["SCJG"]);
    // Inspector 1 conflicts with many targets; 2 was in the last group of some.
    for t in targets.iter().step_by(3) {
        people[0].excluded.push(t.uscc.clone());
    }
    for t in targets.iter().step_by(5) {
        people[1].excluded.push(t.uscc.clone());
    }
    for p in &mut people {
        p.excluded.sort();
    }
    let o = run(
        &params(Quota::Count(120), false, &["SCJG"]),
        &targets,
        &people,
        seed(b"g", &[]),
        &no_loads(),
    )
    .unwrap();
    let excluded: HashMap<i64, HashSet<&str>> = people
        .iter()
        .map(|p| (p.id, p.excluded.iter().map(String::as_str).collect()))
        .collect();
    let mut load: HashMap<i64, usize> = HashMap::new();
    for t in &o.targets {
        assert_eq!(t.group.len(), 2);
        let unique: HashSet<_> = t.group.iter().collect();
        assert_eq!(unique.len(), t.group.len(), "repeated inspector in {t:?}");
        for id in &t.group {
            assert!(
                !excluded[id].contains(t.uscc.as_str()),
                "inspector {id} excluded from {}",
                t.uscc
            );
            *load.entry(*id).or_default() += 1;
        }
    }
    // Inspectors without exclusions share the work within one of each other.
    let free: Vec<usize> = (3..=25)
        .map(|id| load.get(&id).copied().unwrap_or(0))
        .collect();
    let (min, max) = (free.iter().min().unwrap(), free.iter().max().unwrap());
    assert!(max - min <= 1, "loads {free:?}");
}

#[test]
fn joint_task_groups_cover_every_department() {
    let targets = pool([30, 30, 30, 30], 0);
    let departments = ["YJGL", "STHJ", "SCJG"];
    let people = inspectors(30, &departments);
    let mut p = params(Quota::Count(40), true, &departments);
    p.group_size = 2;
    let o = run(&p, &targets, &people, seed(b"joint", &[]), &no_loads()).unwrap();
    let dept: HashMap<i64, &str> = people
        .iter()
        .map(|i| (i.id, i.department.as_str()))
        .collect();
    for t in &o.targets {
        assert_eq!(t.group.len(), 3, "a group grows to one per department");
        let covered: HashSet<&str> = t.group.iter().map(|id| dept[id]).collect();
        assert_eq!(covered.len(), 3, "{t:?}");
        assert_eq!(dept[&t.group[0]], "YJGL", "the initiating department leads");
    }
}

#[test]
fn an_unfillable_group_names_the_target_and_the_qualification() {
    let targets = pool([5, 0, 0, 0], 0);
    let mut people = inspectors(2, &["SCJG"]);
    people[1].excluded = targets.iter().map(|t| t.uscc.clone()).collect();
    let err = run(
        &params(Quota::Count(1), false, &["SCJG"]),
        &targets,
        &people,
        seed(b"u", &[]),
        &no_loads(),
    )
    .unwrap_err();
    match err {
        DrawError::GroupUnfillable {
            uscc,
            department,
            qualifications,
        } => {
            assert!(targets.iter().any(|t| t.uscc == uscc));
            assert_eq!(department, "SCJG");
            assert_eq!(qualifications, "SCJG资格");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        run(
            &params(Quota::Count(1), false, &["SCJG"]),
            &TargetPool::empty(),
            &people,
            seed(b"u", &[]),
            &no_loads()
        ),
        Err(DrawError::EmptyPool)
    );
}

fn record() -> DrawRecord {
    let targets = pool([40, 30, 20, 10], 7);
    let people = inspectors(12, &["SCJG"]);
    let p = params(Quota::Ratio(0.2), false, &["SCJG"]);
    let secret = [7u8; 32];
    let e = entropy("台下观众 1234");
    let s = seed(&secret, &e);
    let result = run(&p, &targets, &people, s, &no_loads()).unwrap();
    DrawRecord {
        algorithm: ALGORITHM.into(),
        draw_id: 1,
        kind: "initial".into(),
        parent_draw_id: None,
        reason: None,
        task: TaskInfo {
            id: 1,
            number: "T-1".into(),
            name: "任务".into(),
            plan_number: "P-1".into(),
            plan_name: "计划".into(),
            directed: false,
            departments: vec!["SCJG".into()],
        },
        commitment: Some(CommitmentInfo {
            id: 1,
            task_id: 1,
            algorithm: ALGORITHM.into(),
            committed_at: "2026-11-22T00:00:00Z".into(),
            secret_sha256: sha256_hex(&secret),
            params_sha256: json_hash(&p),
            target_pool_sha256: json_hash(&targets),
            target_count: targets.len() as i64,
            inspector_pool_sha256: json_hash(&people),
            inspector_count: people.len() as i64,
            beacon: None,
        }),
        redraw: None,
        params: p,
        secret: hex::encode(secret),
        entropy: e,
        beacon_value: None,
        min_observers: Some(1),
        seed: hex::encode(s),
        initial_loads: BTreeMap::new(),
        target_pool: targets,
        inspector_pool: people,
        result,
        target_names: BTreeMap::new(),
        drawn_at: "2026-11-22T00:00:01Z".into(),
    }
}

#[test]
fn an_honest_record_verifies_and_any_change_fails() {
    let honest = record();
    assert_eq!(verify(&honest), Ok(()));
    // Round-trips through JSON as the public endpoint serves it.
    let text = serde_json::to_string(&honest).unwrap();
    assert_eq!(verify(&serde_json::from_str(&text).unwrap()), Ok(()));

    let mut r = record();
    r.result.targets[2].uscc = r
        .target_pool
        .iter()
        .find(|t| !r.result.targets.iter().any(|d| d.uscc == t.uscc))
        .unwrap()
        .uscc
        .clone();
    assert!(verify(&r).unwrap_err().contains("result.targets[2]"));

    let mut r = record();
    r.result.targets[0].group.reverse();
    assert!(verify(&r).unwrap_err().contains("result.targets[0]"));

    let mut r = record();
    r.entropy[0].value = "台下观众 1235".into();
    assert!(verify(&r).unwrap_err().contains("seed"));

    let mut r = record();
    r.secret = hex::encode([8u8; 32]);
    assert!(verify(&r).unwrap_err().contains("secret"));

    let mut r = record();
    let moved = r.target_pool.strata[1].others.remove(0);
    r.target_pool.strata[1].must_include.push(moved);
    r.target_pool.strata[1].must_include.sort();
    assert!(verify(&r).unwrap_err().contains("target_pool"));

    // A pool that is malformed fails before any hash is compared.
    let mut r = record();
    let twice = r.target_pool.strata[0].others[0].clone();
    r.target_pool.strata[2].others.insert(0, twice);
    r.target_pool.strata[2].others.sort();
    assert!(verify(&r).unwrap_err().contains("twice"));

    let mut r = record();
    r.target_pool.strata[3].others.swap(0, 1);
    assert!(verify(&r).unwrap_err().contains("not sorted"));

    let mut r = record();
    r.inspector_pool[3]
        .excluded
        .push("91350100M000100Y43".into());
    assert!(verify(&r).unwrap_err().contains("inspector_pool"));

    let mut r = record();
    r.params.group_size = 3;
    assert!(verify(&r).unwrap_err().contains("params"));

    let mut r = record();
    r.seed = "00".repeat(32);
    assert!(verify(&r).unwrap_err().contains("seed"));
}

#[test]
fn a_record_stored_by_reference_publishes_exactly_the_full_record() {
    let full = record();
    let text = serde_json::to_string(&full).unwrap();
    let mut stored = serde_json::to_value(&full).unwrap();
    stored["target_pool"] = serde_json::Value::Null;
    stored["inspector_pool"] = serde_json::Value::Null;
    let stored: DrawRecord<(), ()> = serde_json::from_value(stored).unwrap();
    let stored = serde_json::to_string(&stored).unwrap();
    let head = stored
        .strip_suffix(super::POOLS_BY_REFERENCE)
        .expect("the pools come last");
    let spliced = super::published_pieces(
        head,
        &serde_json::to_string(&full.target_pool).unwrap(),
        &serde_json::to_string(&full.inspector_pool).unwrap(),
    )
    .concat();
    assert_eq!(spliced, text);
    assert_eq!(verify(&serde_json::from_str(&spliced).unwrap()), Ok(()));
}

#[test]
fn a_published_draw_is_served_with_its_commitments_pools_which_stay_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let state = crate::open(crate::Config {
        database: None,
        blobs: None,
        data_dir: dir.path().to_owned(),
        demo: true,
        transport: Default::default(),
        public_url: None,
    })
    .unwrap();
    crate::demo::seed(&state.db, &state.calendar(), &state.seal).unwrap();
    let (draw_id, commitment_id, sha): (i64, i64, String) = state
        .db
        .read_blocking(|c| {
            c.query_row(
                "SELECT id, commitment_id, record_sha256 FROM draws
                 WHERE kind = 'initial' AND published_at IS NOT NULL ORDER BY id LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
        })
        .unwrap();
    // Stored once, without the pools; served whole, as hashed at the draw.
    let stored: String = state
        .db
        .read_blocking(|c| {
            c.query_row("SELECT record FROM draws WHERE id = ?1", [draw_id], |r| {
                r.get(0)
            })
        })
        .unwrap();
    assert!(stored.ends_with(super::POOLS_BY_REFERENCE));
    let (text, published) = state
        .db
        .read_blocking(|c| super::record_text(c, draw_id))
        .unwrap()
        .unwrap();
    assert!(published.is_some());
    assert_eq!(sha256_hex(text.as_bytes()), sha);
    let record: DrawRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(verify(&record), Ok(()));
    // The commitment it refers to can no longer change or go.
    for sql in [
        "UPDATE draw_commitments SET target_pool = '[]' WHERE id = ?1",
        "UPDATE draw_commitments SET superseded_at = 'now' WHERE id = ?1",
        "DELETE FROM draw_commitments WHERE id = ?1",
    ] {
        let result = state
            .db
            .write_blocking(|tx| tx.execute(sql, [commitment_id]));
        assert!(result.is_err(), "{sql} was allowed");
    }
}

/// [`record`] drawn with a beacon named in its commitment.
fn beacon_record(value: &str) -> DrawRecord {
    let mut r = record();
    let commitment = r.commitment.as_mut().unwrap();
    commitment.beacon = Some(super::Beacon {
        name: "福彩3D 第2026330期开奖号码".into(),
        due_at: "2026-11-22T00:00:00.500Z".into(),
    });
    r.beacon_value = Some(value.into());
    let s = seed_with_beacon(&[7u8; 32], &r.entropy, Some(value));
    r.result = run(&r.params, &r.target_pool, &r.inspector_pool, s, &no_loads()).unwrap();
    r.seed = hex::encode(s);
    r
}

#[test]
fn a_beacon_enters_the_seed_and_must_be_due_before_the_draw() {
    assert_eq!(verify(&beacon_record("372")), Ok(()));
    assert_ne!(
        seed_with_beacon(b"s", &entropy("1"), Some("372")),
        seed(b"s", &entropy("1")),
        "the beacon value changes the seed"
    );
    // A tampered beacon value gives another seed.
    let mut r = beacon_record("372");
    r.beacon_value = Some("373".into());
    assert!(verify(&r).unwrap_err().contains("seed"));
    // The value is needed, and only where a beacon was named.
    let mut r = beacon_record("372");
    r.beacon_value = None;
    assert!(verify(&r).unwrap_err().contains("beacon_value"));
    let mut r = record();
    r.beacon_value = Some("372".into());
    assert!(verify(&r).unwrap_err().contains("no beacon"));
    // Due after the draw.
    let mut r = beacon_record("372");
    r.commitment
        .as_mut()
        .unwrap()
        .beacon
        .as_mut()
        .unwrap()
        .due_at = "2026-11-22T00:00:02Z".into();
    assert!(verify(&r).unwrap_err().contains("after the draw"));
    // Due before the commitment: known in advance, so it could be ground.
    let mut r = beacon_record("372");
    r.commitment
        .as_mut()
        .unwrap()
        .beacon
        .as_mut()
        .unwrap()
        .due_at = "2026-11-21T23:00:00Z".into();
    assert!(verify(&r).unwrap_err().contains("not after the commitment"));
}

#[test]
fn a_commitment_made_after_the_draw_fails_verification() {
    let mut r = record();
    r.commitment.as_mut().unwrap().committed_at = "2026-11-22T00:00:05Z".into();
    let err = verify(&r).unwrap_err();
    assert!(err.contains("must precede the draw"), "{err}");
    let mut r = record();
    r.commitment.as_mut().unwrap().committed_at = r.drawn_at.clone();
    assert!(verify(&r).unwrap_err().contains("precede"));
}

#[test]
fn observer_entries_must_be_distinct_non_empty_and_enough() {
    let entry = |o: &str, v: &str| Entropy {
        observer: o.into(),
        value: v.into(),
    };
    let check = super::check_entropy;
    assert!(check(&[entry("甲", "1"), entry("乙", "2")], 2).is_ok());
    let field = |r: crate::Result<()>| match r.unwrap_err() {
        crate::Error::Invalid { field, .. } => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field(check(&[entry("甲", "1")], 2)), "entropy");
    assert_eq!(
        field(check(&[entry("甲", "1"), entry(" 甲 ", "2")], 2)),
        "entropy[1].observer"
    );
    assert_eq!(
        field(check(&[entry("甲", "1"), entry("乙", "  ")], 2)),
        "entropy[1].value"
    );
    assert_eq!(
        field(check(&[entry("  ", "1"), entry("乙", "2")], 2)),
        "entropy[0].observer"
    );
    let long = "长".repeat(super::OBSERVER_VALUE_MAX + 1);
    assert_eq!(
        field(check(&[entry("甲", &long), entry("乙", "2")], 2)),
        "entropy[0].value"
    );
    // A record whose entries do not meet its own minimum fails.
    let mut r = record();
    r.min_observers = Some(2);
    assert!(verify(&r).unwrap_err().contains("observers"));
}

#[test]
fn a_redraws_pools_are_checked_against_the_committed_pools() {
    let initial = record();
    let mut redraw = record();
    redraw.kind = "redraw".into();
    redraw.draw_id = 2;
    redraw.parent_draw_id = Some(1);
    redraw.commitment = None;
    redraw.redraw = Some(super::RedrawBasis {
        parent_seed: initial.seed.clone(),
        sequence: 1,
        reason: "out_of_scope".into(),
        target_uscc: initial.result.targets[0].uscc.clone(),
        recused_inspector: None,
        commitment: initial.commitment.clone(),
    });
    let mut only = TargetPool::empty();
    only.strata[1].others = initial.target_pool.strata[1].others[..3].to_vec();
    redraw.target_pool = only;
    assert_eq!(super::verify_redraw_pools(&redraw, &initial), Ok(()));
    // A candidate the commitment never had.
    let mut forged = redraw.clone();
    forged.target_pool.strata[1]
        .others
        .push("91330106MA0000000X".into());
    assert!(
        super::verify_redraw_pools(&forged, &initial)
            .unwrap_err()
            .contains("committed pool")
    );
    // An inspector whose exclusions were dropped.
    let mut forged = redraw.clone();
    let mut initial_with = initial.clone();
    initial_with.inspector_pool[0].excluded = vec![initial.result.targets[0].uscc.clone()];
    forged.inspector_pool[0].excluded.clear();
    assert!(
        super::verify_redraw_pools(&forged, &initial_with)
            .unwrap_err()
            .contains("inspector")
    );
    // Another commitment.
    let mut forged = redraw.clone();
    forged
        .redraw
        .as_mut()
        .unwrap()
        .commitment
        .as_mut()
        .unwrap()
        .id = 9;
    assert!(super::verify_redraw_pools(&forged, &initial).is_err());
}

#[test]
fn upgrading_supersedes_open_commitments_whose_secret_was_in_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        // A database before migration 0011, with an open and a superseded
        // commitment holding their secrets in plain text.
        let conn = crate::db::open_at_version(&path, 9).unwrap();
        conn.execute_batch(
            "INSERT INTO departments (id, code, name) VALUES (1, 'SCJG', '市场监管局');
             INSERT INTO plans (id, number, name, year, department_id, created_at, created_by)
             VALUES (1, 'P-1', '计划', 2026, 1, '2026-10-01T00:00:00.000Z', 'planner');
             INSERT INTO tasks (id, plan_id, number, name, directed, conditions, count,
                window_start, window_end, department_id, joint, created_at, created_by)
             VALUES (1, 1, 'T-1', '任务', 0, '{}', 1, '2026-10-01', '2026-11-01', 1, 0,
                '2026-10-01T00:00:00.000Z', 'planner');",
        )
        .unwrap();
        for superseded in [None, Some("2026-11-01T00:00:00.000Z")] {
            conn.execute(
                "INSERT INTO draw_commitments (task_id, algorithm, secret, secret_sha256, params,
                    params_sha256, target_pool, target_pool_sha256, target_count, inspector_pool,
                    inspector_pool_sha256, inspector_count, committed_at, committed_by, superseded_at)
                 VALUES (1, 'suiji-draw-v2', 'abcd', 'h', '{}', 'h', '[]', 'h', 0, '[]', 'h', 0,
                    '2026-10-01T00:00:00.000Z', 'planner', ?1)",
                [superseded],
            )
            .unwrap();
        }
    }
    let db = crate::db::Db::open(&path).unwrap();
    let rows: Vec<(String, Option<String>)> = db
        .read_blocking(|c| {
            let mut stmt =
                c.prepare("SELECT secret, superseded_at FROM draw_commitments ORDER BY id")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()
        })
        .unwrap();
    assert_eq!(rows.len(), 2, "both stay listed");
    assert!(rows.iter().all(|(secret, _)| secret.is_empty()), "{rows:?}");
    assert!(rows.iter().all(|(_, at)| at.is_some()), "{rows:?}");
    assert_eq!(rows[1].1.as_deref(), Some("2026-11-01T00:00:00.000Z"));
    // A sealed secret is accepted; from now on a plain secret, a deletion
    // or an un-superseding is refused.
    let sealed = "INSERT INTO draw_commitments (task_id, algorithm, secret, secret_sha256, params,
            params_sha256, target_pool, target_pool_sha256, target_count, inspector_pool,
            inspector_pool_sha256, inspector_count, committed_at, committed_by, sealed_secret)
         VALUES (1, 'suiji-draw-v2', '', 'h', '{}', 'h', '[]', 'h', 0, '[]', 'h', 0,
            '2026-10-02T00:00:00.000Z', 'planner', 'x')";
    db.write_blocking(|tx| tx.execute(sealed, [])).unwrap();
    for sql in [
        "INSERT INTO draw_commitments (task_id, algorithm, secret, secret_sha256, params,
            params_sha256, target_pool, target_pool_sha256, target_count, inspector_pool,
            inspector_pool_sha256, inspector_count, committed_at, committed_by, sealed_secret)
         VALUES (1, 'suiji-draw-v2', 'abcd', 'h', '{}', 'h', '[]', 'h', 0, '[]', 'h', 0,
            '2026-10-01T00:00:00.000Z', 'planner', 'x')",
        "DELETE FROM draw_commitments WHERE id = 1",
        "UPDATE draw_commitments SET superseded_at = NULL WHERE id = 1",
        "UPDATE draw_commitments SET secret = 'abcd' WHERE id = 2",
    ] {
        let result = db.write_blocking(|tx| tx.execute(sql, []));
        assert!(result.is_err(), "{sql} was allowed");
    }
}

/// A draw record made by the `suiji-draw-v2` code before v3 existed (the
/// [`record`] of that time, kept as served), and a redraw of it.
const V2_RECORD: &str = include_str!("testdata/v2_record.json");
const V2_REDRAW: &str = include_str!("testdata/v2_redraw.json");

#[test]
fn stored_v2_records_still_verify_and_serialise_byte_for_byte() {
    for text in [V2_RECORD, V2_REDRAW] {
        let r: DrawRecord = serde_json::from_str(text).unwrap();
        assert_eq!(r.algorithm, ALGORITHM_V2);
        assert_eq!(verify(&r), Ok(()));
        // No new field appears in a v2 pool, its params or its result.
        assert_eq!(serde_json::to_string(&r).unwrap(), text);
        // The v3 code draws the same from the same pool and seed.
        let seed: [u8; 32] = hex::decode(&r.seed).unwrap().try_into().unwrap();
        let loads = r.initial_loads.iter().map(|(k, v)| (*k, *v)).collect();
        let again = run(&r.params, &r.target_pool, &r.inspector_pool, seed, &loads).unwrap();
        assert_eq!(again, r.result);
    }
    // The version is part of the seed: relabelled v3, the record fails.
    let mut r: DrawRecord = serde_json::from_str(V2_RECORD).unwrap();
    r.algorithm = ALGORITHM.into();
    r.commitment.as_mut().unwrap().algorithm = ALGORITHM.into();
    assert!(verify(&r).unwrap_err().contains("seed"));
    // Or the record and its commitment disagree.
    let mut r: DrawRecord = serde_json::from_str(V2_RECORD).unwrap();
    r.algorithm = ALGORITHM.into();
    assert!(verify(&r).unwrap_err().contains("commitment"));
}

#[test]
fn a_v2_record_with_weighted_candidates_or_a_weight_is_refused() {
    let mut r: DrawRecord = serde_json::from_str(V2_RECORD).unwrap();
    let moved = r.target_pool.strata[2].others.remove(0);
    r.target_pool.strata[2].weighted.push(moved);
    let err = verify(&r).unwrap_err();
    assert!(
        err.contains("target_pool[2].weighted") && err.contains("suiji-draw-v2"),
        "{err}"
    );
    let mut r: DrawRecord = serde_json::from_str(V2_RECORD).unwrap();
    r.params.problem_weight = 3;
    let err = verify(&r).unwrap_err();
    assert!(err.contains("params: suiji-draw-v2"), "{err}");
}

/// Stratum C only: one must-include, `nw` weighted and `no` other candidates.
fn weighted_pool(nw: usize, no: usize) -> TargetPool {
    let mut pool = TargetPool::empty();
    let codes: Vec<String> = (0..=(nw + no) as u32)
        .map(|k| uscc::generate('9', '1', "330106", 1000 + k * 7))
        .collect();
    let c = &mut pool.strata[2];
    c.must_include.push(codes[0].clone());
    c.weighted = codes[1..=nw].to_vec();
    c.others = codes[nw + 1..].to_vec();
    pool.sort();
    pool.check().unwrap();
    pool
}

/// The exact probability that one given weighted (`heavy`) or other
/// candidate is among `k` picks from `nw` weighted and `no` other
/// candidates with weight `w`, as the algorithm picks: a list with the
/// chance of its total weight, then uniformly within it.
fn inclusion(w: f64, nw: u32, no: u32, k: u32, heavy: bool) -> f64 {
    if k == 0 {
        return 0.0;
    }
    let p_heavy = match (nw, no) {
        (_, 0) => 1.0,
        (0, _) => 0.0,
        _ => w * f64::from(nw) / (w * f64::from(nw) + f64::from(no)),
    };
    let next = |nw, no| inclusion(w, nw, no, k - 1, heavy);
    if heavy {
        let mine = 1.0 / f64::from(nw);
        p_heavy * mine
            + p_heavy * (1.0 - mine) * next(nw - 1, no)
            + if no > 0 {
                (1.0 - p_heavy) * next(nw, no - 1)
            } else {
                0.0
            }
    } else {
        let mine = 1.0 / f64::from(no);
        (1.0 - p_heavy) * mine
            + (1.0 - p_heavy) * (1.0 - mine) * next(nw, no - 1)
            + if nw > 0 {
                p_heavy * next(nw - 1, no)
            } else {
                0.0
            }
    }
}

#[test]
fn weighted_candidates_are_drawn_as_often_as_their_weight_says() {
    let (nw, no, k, w) = (3u32, 12u32, 3u32, 4u32);
    let targets = weighted_pool(nw as usize, no as usize);
    let people = inspectors(10, &["SCJG"]);
    let mut p = params(Quota::Count(u64::from(k) + 1), false, &["SCJG"]);
    p.problem_weight = w;
    let stratum = &targets.strata[2];
    let runs = 2000u32;
    let (mut heavy_hits, mut light_hits) = (0u32, 0u32);
    for r in 0..runs {
        let s = seed(format!("weighted {r}").as_bytes(), &[]);
        let o = run(&p, &targets, &people, s, &no_loads()).unwrap();
        assert_eq!(o.targets.len() as u32, k + 1, "the stratum's quota");
        assert_eq!(o.targets[0].uscc, stratum.must_include[0]);
        assert!(o.targets[0].must_include);
        assert_eq!(o.strata[2].weighted, u64::from(nw));
        let drawn: HashSet<&str> = o.targets.iter().map(|t| t.uscc.as_str()).collect();
        assert_eq!(drawn.len(), o.targets.len(), "no target twice");
        for t in &o.targets[1..] {
            if stratum.weighted.contains(&t.uscc) {
                heavy_hits += 1;
            } else {
                assert!(stratum.others.contains(&t.uscc));
                light_hits += 1;
            }
        }
    }
    // Each count against its exact expectation, within six standard
    // deviations of a binomial (the indicators of one draw without
    // replacement are negatively correlated, so the spread is at most that).
    let w = f64::from(w);
    for (hits, n, heavy) in [(heavy_hits, nw, true), (light_hits, no, false)] {
        let p = inclusion(w, nw, no, k, heavy);
        let trials = f64::from(runs) * f64::from(n);
        let (mean, sd) = (trials * p, (trials * p * (1.0 - p)).sqrt());
        assert!(
            (f64::from(hits) - mean).abs() < 6.0 * sd,
            "{} candidates: {hits} hits, expected {mean:.0} ± {:.0}",
            if heavy { "weighted" } else { "other" },
            6.0 * sd
        );
    }
    // And what unweighted sampling would give is far outside that band.
    let uniform_share = f64::from(k) / f64::from(nw + no);
    let exact = inclusion(w, nw, no, k, true);
    assert!(exact > 2.0 * uniform_share, "{exact} vs {uniform_share}");
}

#[test]
fn without_weighted_candidates_or_with_weight_1_v3_draws_as_v2() {
    // Weight 1: the weighted list is drawn as if merged into the others.
    let weighted = weighted_pool(4, 20);
    let mut merged = weighted.clone();
    let moved = std::mem::take(&mut merged.strata[2].weighted);
    merged.strata[2].others.extend(moved);
    merged.sort();
    let people = inspectors(10, &["SCJG"]);
    let p = params(Quota::Count(8), false, &["SCJG"]);
    for r in 0..50 {
        let s = seed(format!("merge {r}").as_bytes(), &[]);
        let a = run(&p, &weighted, &people, s, &no_loads()).unwrap();
        let mut b = run(&p, &merged, &people, s, &no_loads()).unwrap();
        b.strata[2].weighted = 4;
        assert_eq!(a, b);
    }
    // No weighted candidate: the weight changes nothing.
    let plain = pool([40, 30, 20, 10], 7);
    let mut heavy = params(Quota::Ratio(0.2), false, &["SCJG"]);
    heavy.problem_weight = 5;
    for r in 0..50 {
        let s = seed(format!("plain {r}").as_bytes(), &[]);
        assert_eq!(
            run(&heavy, &plain, &people, s, &no_loads()).unwrap(),
            run(&p_ratio(), &plain, &people, s, &no_loads()).unwrap()
        );
    }
    // A weight beyond the rules' bound is refused.
    heavy.problem_weight = 0;
    assert!(matches!(
        run(&heavy, &plain, &people, seed(b"x", &[]), &no_loads()),
        Err(DrawError::Params(_))
    ));
}

fn p_ratio() -> Params {
    params(Quota::Ratio(0.2), false, &["SCJG"])
}

#[test]
fn a_pool_listing_a_code_as_weighted_and_as_another_candidate_is_refused() {
    let mut pool = weighted_pool(3, 5);
    let twice = pool.strata[2].others[0].clone();
    pool.strata[2].weighted.push(twice);
    pool.sort();
    assert!(pool.check().unwrap_err().contains("twice"));
    let mut pool = weighted_pool(3, 5);
    pool.strata[2].weighted.swap(0, 1);
    assert!(pool.check().unwrap_err().contains("weighted is not sorted"));
}

/// [`record`] with a few weighted candidates and `problem_weight` 3.
fn weighted_record() -> DrawRecord {
    let mut r = record();
    for c in 1..4 {
        let s = &mut r.target_pool.strata[c];
        s.weighted = s.others.drain(..3).collect();
    }
    r.params.problem_weight = 3;
    r.params.clean_cooldown_days = 30;
    let commitment = r.commitment.as_mut().unwrap();
    commitment.params_sha256 = json_hash(&r.params);
    commitment.target_pool_sha256 = json_hash(&r.target_pool);
    let s: [u8; 32] = hex::decode(&r.seed).unwrap().try_into().unwrap();
    r.result = run(&r.params, &r.target_pool, &r.inspector_pool, s, &no_loads()).unwrap();
    r
}

#[test]
fn a_v3_record_with_weighted_candidates_verifies_and_a_changed_weight_fails() {
    let honest = weighted_record();
    assert_eq!(honest.algorithm, ALGORITHM);
    assert_eq!(verify(&honest), Ok(()));
    let text = serde_json::to_string(&honest).unwrap();
    assert!(text.contains(r#""weighted":["#) && text.contains(r#""problem_weight":3"#));
    assert_eq!(verify(&serde_json::from_str(&text).unwrap()), Ok(()));
    // A weighted candidate moved back among the others: the pool's hash.
    let mut r = weighted_record();
    let moved = r.target_pool.strata[3].weighted.remove(0);
    r.target_pool.strata[3].others.push(moved);
    r.target_pool.sort();
    assert!(verify(&r).unwrap_err().contains("target_pool"));
    // Another weight: the params' hash.
    let mut r = weighted_record();
    r.params.problem_weight = 1;
    assert!(verify(&r).unwrap_err().contains("params"));
    // A redraw may not give a weight the commitment did not.
    let initial = weighted_record();
    let mut redraw = initial.clone();
    redraw.kind = "redraw".into();
    redraw.draw_id = 2;
    redraw.parent_draw_id = Some(1);
    redraw.commitment = None;
    redraw.redraw = Some(super::RedrawBasis {
        parent_seed: initial.seed.clone(),
        sequence: 1,
        reason: "out_of_scope".into(),
        target_uscc: initial.result.targets[0].uscc.clone(),
        recused_inspector: None,
        commitment: initial.commitment.clone(),
    });
    let mut rest = TargetPool::empty();
    rest.strata[3].weighted = initial.target_pool.strata[3].weighted.clone();
    rest.strata[3].others = initial.target_pool.strata[3].others.clone();
    redraw.target_pool = rest.clone();
    assert_eq!(super::verify_redraw_pools(&redraw, &initial), Ok(()));
    let promoted = rest.strata[3].others.remove(0);
    rest.strata[3].weighted.push(promoted);
    rest.sort();
    redraw.target_pool = rest;
    assert!(
        super::verify_redraw_pools(&redraw, &initial)
            .unwrap_err()
            .contains("does not weight")
    );
}
