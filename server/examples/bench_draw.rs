//! Benchmark (not a test) of the draw at scale: 1,000,000 targets, a 5%
//! stratified draw, groups of 2 from 5,000 inspectors with 20,000 declared
//! conflicts. Reports a plain SQLite scan of the targets, the commitment
//! (pools), the draw (selection, groups, draw record) and, separately, the
//! creation of the record documents, with peak memory. Run with
//! `cargo run --release -p suiji-server --example bench_draw [TARGETS]`, with
//! `SUIJI_BENCH_DATABASE=postgres://…` (an empty database) to run it on PostgreSQL.

use std::time::Instant;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use suiji_server::auth::{Role, hash_password};
use suiji_server::draw::{self, algorithm::Entropy, records};
use suiji_server::plans::{self, Conditions, NewPlan, NewTask, TaskItemInput};
use suiji_server::registry::departments::{self, Department};
use suiji_server::registry::inspectors::{self, InspectorInput};
use suiji_server::registry::items::{self, ItemClass, ItemInput, NewItem};
use suiji_server::registry::targets::{self, TargetInput};
use suiji_server::{Config, accounts, uscc};

const INSPECTORS: usize = 5_000;
const CONFLICTS: usize = 20_000;

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

fn status_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resets the kernel's peak-RSS mark so the next phase is measured alone.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}

fn main() -> anyhow::Result<()> {
    let n_targets: usize = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |s| s.parse())?;
    println!("machine: {}", machine());
    // An empty PostgreSQL database named by `SUIJI_BENCH_DATABASE`, or SQLite.
    let database = std::env::var("SUIJI_BENCH_DATABASE").ok();
    println!(
        "database: {}",
        if database.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    let dir = tempfile::tempdir()?;
    let state = suiji_server::open(Config {
        database,
        blobs: None,
        data_dir: dir.path().to_owned(),
        demo: false,
        transport: Default::default(),
        public_url: None,
    })?;
    let db = state.db.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(7);

    let started = Instant::now();
    let hash = hash_password("benchmark-password-1")?;
    let task_id = db.write_blocking(|tx| {
        departments::insert(
            tx,
            "bench",
            &Department {
                id: 0,
                code: "SCJG".into(),
                name: "市场监督管理局".into(),
            },
        )?;
        items::insert(
            tx,
            "bench",
            &NewItem {
                code: "SCJG-GS-001".into(),
                input: ItemInput {
                    name: "企业公示信息的检查".into(),
                    legal_basis: "《企业信息公示暂行条例》第十四条".into(),
                    department: "SCJG".into(),
                    target_type: "enterprise".into(),
                    methods: vec!["documentary".into()],
                    content: "年度报告".into(),
                    class: ItemClass::Key,
                    default_ratio: 0.05,
                    frequency: 1,
                    qualification: Some("企业信息公示".into()),
                },
            },
        )?;
        let at = suiji_server::db::now();
        for i in 0..n_targets {
            let risk = match rng.next_u32() % 100 {
                0..=39 => "A",
                40..=74 => "B",
                75..=92 => "C",
                _ => "D",
            };
            targets::insert_unaudited(
                tx,
                &TargetInput {
                    uscc: uscc::generate('9', '1', "330106", i as u32),
                    name: format!("杭州基准{i}有限公司"),
                    target_type: "enterprise".into(),
                    industry: "批发和零售业".into(),
                    region: "西湖区".into(),
                    address: format!("文三路{i}号"),
                    legal_rep: "张三".into(),
                    reg_status: "存续".into(),
                    risk_class: risk.into(),
                    flag_abnormal: false,
                    flag_serious: rng.next_u32() % 1000 == 0,
                    complaints: 0,
                },
                &at,
            )?;
        }
        for i in 0..INSPECTORS {
            let user = accounts::insert_user(
                tx,
                "bench",
                &format!("i{i}"),
                "检查员",
                &hash,
                &[Role::Inspector],
            )?;
            inspectors::insert(
                tx,
                "bench",
                &InspectorInput {
                    user_id: user.id,
                    name: format!("检查员{i}"),
                    cert_no: format!("浙SCJG{i:06}"),
                    department: "SCJG".into(),
                    expertise: vec!["企业信息公示".into()],
                    region: "西湖区".into(),
                    active: true,
                    expert: false,
                },
            )?;
        }
        let mut made = 0;
        while made < CONFLICTS {
            let inspector = 1 + i64::from(rng.next_u32()) % INSPECTORS as i64;
            let target = 1 + i64::from(rng.next_u32()) % n_targets as i64;
            if inspectors::insert_conflict(tx, "bench", inspector, target, "亲属关系").is_ok() {
                made += 1;
            }
        }
        let plan = plans::insert_plan(
            tx,
            "bench",
            &NewPlan {
                number: "BENCH-2026".into(),
                name: "基准计划".into(),
                year: 2026,
                department: "SCJG".into(),
            },
        )?;
        let task = plans::insert_task(
            tx,
            "bench",
            plan.id,
            &NewTask {
                number: "BENCH-2026-001".into(),
                name: "5% 分层抽取".into(),
                directed: false,
                conditions: Conditions::default(),
                ratio: Some(0.05),
                count: None,
                items: vec![TaskItemInput {
                    code: "SCJG-GS-001".into(),
                    version: None,
                    department: None,
                }],
                window_start: "2026-09-01".parse().expect("date"),
                window_end: "2026-11-20".parse().expect("date"),
                department: None,
                joint: false,
            },
        )?;
        Ok(task.id)
    })?;
    println!(
        "setup: {n_targets} targets, {INSPECTORS} inspectors, {CONFLICTS} conflicts in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // A plain scan of the targets, the yardstick.
    let started = Instant::now();
    let scanned = db.read_blocking(|c| {
        let mut stmt = c.prepare(
            "SELECT id, uscc, risk_class, flag_abnormal, flag_serious, complaints FROM targets",
        )?;
        let mut rows = stmt.query([])?;
        let mut n = 0usize;
        let mut bytes = 0usize;
        while let Some(row) = rows.next()? {
            let code: String = row.get(1)?;
            bytes += code.len();
            n += 1;
        }
        Ok((n, bytes))
    })?;
    let scan_ms = ms(started);
    println!("plain scan: {} rows in {scan_ms:.0} ms", scanned.0);

    // The parts of the draw, timed apart (the real run follows).
    let rules = db.read_blocking(suiji_server::registry::rules::load)?;
    let task = db.read_blocking(|c| plans::get_task_by_id(c, task_id))?;
    let t = Instant::now();
    let (pool, people, params, target_pool_ms) = db.read_blocking(|c| {
        let params = draw::task_params(c, &task, &rules)?;
        let pool = draw::target_pool(c, &task, &rules)?;
        let target_pool_ms = ms(t);
        let people = draw::inspector_pool(c, &task, &params, &pool)?;
        Ok((pool, people, params, target_pool_ms))
    })?;
    let pools_ms = ms(t);
    let t = Instant::now();
    let json = serde_json::to_string(&pool)?;
    let hash = draw::algorithm::sha256_hex(json.as_bytes());
    let json_ms = ms(t);
    let t = Instant::now();
    let parsed: draw::algorithm::TargetPool = serde_json::from_str(&json)?;
    let parse_ms = ms(t);
    let t = Instant::now();
    let seed = draw::algorithm::seed(b"secret", &[]);
    let outcome = draw::algorithm::run(&params, &parsed, &people, seed, &Default::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let run_ms = ms(t);
    println!(
        "parts: pools {pools_ms:.0} ms (target pool {target_pool_ms:.0} ms; {} targets, {} inspectors); pool JSON + SHA-256 {json_ms:.0} ms ({:.1} MB, {}…); parse {parse_ms:.0} ms; selection + groups {run_ms:.0} ms ({} drawn)",
        pool.len(),
        people.len(),
        json.len() as f64 / 1e6,
        &hash[..12],
        outcome.targets.len()
    );
    drop((pool, people, parsed, json, outcome));

    reset_peak();
    let rss_before = status_mb("VmRSS:");
    let started = Instant::now();
    let commitment = db.write_blocking(|tx| {
        draw::commit(
            tx,
            "bench",
            task_id,
            &draw::CommitRequest::default(),
            &state.seal,
        )
    })?;
    let commit_ms = ms(started);
    let entropy = vec![
        Entropy {
            observer: "观察员甲".into(),
            value: "2026".into(),
        },
        Entropy {
            observer: "观察员乙".into(),
            value: "1130".into(),
        },
    ];
    let calendar = state.calendar();
    let started = Instant::now();
    let (drawn, record_ms, total_ms) = db.write_blocking(|tx| {
        let (summary, outcome) = draw::draw_from_commitment(
            tx,
            "bench",
            task_id,
            draw::Ceremony {
                commitment_id: commitment.id,
                entropy,
                beacon_value: None,
            },
            &state.seal,
        )?;
        let draw_ms = ms(started);
        let t = Instant::now();
        let task = plans::get_task_by_id(tx, task_id)?;
        records::create_for_draw(tx, &task, summary.id, &outcome.targets, &calendar)?;
        Ok((summary.targets, (ms(t), draw_ms), ms(started)))
    })?;
    let (records_ms, draw_ms) = record_ms;
    let peak = status_mb("VmHWM:");
    println!(
        "commit (pools, hashes): {commit_ms:.0} ms; draw (selection, groups, draw record): {draw_ms:.0} ms; together {:.0} ms = {:.1}x the plain scan",
        commit_ms + draw_ms,
        (commit_ms + draw_ms) / scan_ms
    );
    println!(
        "records: {drawn} documents built and stored in {records_ms:.0} ms ({:.0} µs each); whole transaction {total_ms:.0} ms",
        records_ms * 1e3 / drawn as f64
    );
    println!("peak RSS during commit+draw+records: {peak:.0} MB (RSS before: {rss_before:.0} MB)");
    Ok(())
}
