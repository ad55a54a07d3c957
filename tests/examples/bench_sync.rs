//! Benchmark (not a test) of sync at scale: 50 phones with 40 records each,
//! every record with 30 item edits and 5 small photos made offline, all
//! syncing at once against one server (the real `suiji-server` binary, so its
//! memory is measured alone). Run with
//! `cargo build --release -p suiji-server && cargo run --release -p suiji-tests --example bench_sync`.
//!
//! `SUIJI_BENCH_DATABASE=postgres://…` (an empty database) runs it on PostgreSQL,
//! `SUIJI_BENCH_BLOBS=s3://bucket/prefix` with the blobs in a bucket (`AWS_*` as for the
//! server), and `SUIJI_BENCH_SERVERS=2` (PostgreSQL only) on two server processes sharing
//! them, the phones taking turns between the two.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;
use suiji_tests::{machine, peak_mb};

use suiji_mobile_core::sync::client::{self, Credentials, SyncReport};
use suiji_mobile_core::{InspectorId, Store, StoreOptions};
use suiji_server::auth::{Role, hash_password};
use suiji_server::draw;
use suiji_server::plans::{self, Conditions, NewPlan, NewTask, TaskItemInput};
use suiji_server::registry::departments::{self, Department};
use suiji_server::registry::inspectors::{self, InspectorInput};
use suiji_server::registry::items::{self, ItemClass, ItemInput, NewItem};
use suiji_server::registry::targets::{self, TargetInput};
use suiji_server::{Config, accounts, uscc};

/// The 50 simulated phones share this one process; on glibc's malloc their threads contend
/// for its arenas, which real phones, each with its own process, never do. mimalloc gives
/// each thread its own heap, as the server binary's allocator does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Phones in the benchmark; `SUIJI_BENCH_PHONES` sets another number for a quick run.
fn phone_count() -> usize {
    std::env::var("SUIJI_BENCH_PHONES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}
const RECORDS_PER_PHONE: usize = 40;
const EDITS_PER_RECORD: usize = 30;
/// Photos per record; `SUIJI_BENCH_PHOTOS` sets another number (0 times the records alone).
fn photos_per_record() -> usize {
    std::env::var("SUIJI_BENCH_PHOTOS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}
const PASSWORD: &str = "benchmark-password-1";

/// CPU seconds (user + system) a process has used so far; /proc counts in USER_HZ, which
/// Linux fixes at 100 for user space.
fn cpu_seconds(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

fn jpeg(seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([
            (x * 3 + seed) as u8,
            (y * 5 + seed / 7) as u8,
            (seed % 251) as u8,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode jpeg");
    out.into_inner()
}

/// Builds the agency and draws the task straight into the data directory.
fn setup(dir: &std::path::Path) -> anyhow::Result<Vec<(i64, String)>> {
    let state = suiji_server::open(Config {
        database: bench_database(),
        blobs: bench_blobs(),
        data_dir: dir.to_owned(),
        demo: false,
        transport: Default::default(),
        public_url: None,
    })?;
    let hash = hash_password(PASSWORD)?;
    let calendar = state.calendar();
    let inspectors = state.db.write_blocking(|tx| {
        departments::insert(
            tx,
            "bench",
            &Department {
                id: 0,
                code: "SCJG".into(),
                name: "市场监督管理局".into(),
            },
        )?;
        let mut codes = Vec::new();
        for n in 1..=3 {
            let code = format!("SCJG-SP-00{n}");
            items::insert(
                tx,
                "bench",
                &NewItem {
                    code: code.clone(),
                    input: ItemInput {
                        name: format!("食品安全检查事项{n}"),
                        legal_basis: "《中华人民共和国食品安全法》第一百一十条".into(),
                        department: "SCJG".into(),
                        target_type: "enterprise".into(),
                        methods: vec!["on_site".into()],
                        content: "证照、从业人员健康证明、加工过程".into(),
                        class: ItemClass::Key,
                        default_ratio: 0.1,
                        frequency: 1,
                        qualification: Some("食品安全".into()),
                    },
                },
            )?;
            codes.push(code);
        }
        let at = suiji_server::db::now();
        let records = phone_count() * RECORDS_PER_PHONE / 2;
        for i in 0..records {
            targets::insert_unaudited(
                tx,
                &TargetInput {
                    uscc: uscc::generate('9', '1', "330106", 5000 + i as u32),
                    name: format!("杭州基准{i}餐饮有限公司"),
                    target_type: "enterprise".into(),
                    industry: "餐饮业".into(),
                    region: "西湖区".into(),
                    address: format!("文三路{i}号"),
                    legal_rep: "张三".into(),
                    reg_status: "存续".into(),
                    risk_class: ["A", "B", "C", "D"][i % 4].into(),
                    flag_abnormal: false,
                    flag_serious: false,
                    complaints: 0,
                },
                &at,
            )?;
        }
        let mut list = Vec::new();
        for n in 0..phone_count() {
            let username = format!("phone{n}");
            let user =
                accounts::insert_user(tx, "bench", &username, "检查员", &hash, &[Role::Inspector])?;
            let inspector = inspectors::insert(
                tx,
                "bench",
                &InspectorInput {
                    user_id: user.id,
                    name: format!("检查员{n}"),
                    cert_no: format!("浙SCJG{n:05}"),
                    department: "SCJG".into(),
                    expertise: vec!["食品安全".into()],
                    region: "西湖区".into(),
                    active: true,
                    expert: false,
                },
            )?;
            list.push((inspector.id, username));
        }
        let plan = plans::insert_plan(
            tx,
            "bench",
            &NewPlan {
                number: "BENCH-SYNC".into(),
                name: "同步基准".into(),
                year: 2026,
                department: "SCJG".into(),
            },
        )?;
        let task = plans::insert_task(
            tx,
            "bench",
            plan.id,
            &NewTask {
                number: "BENCH-SYNC-001".into(),
                name: "餐饮全覆盖检查".into(),
                directed: false,
                conditions: Conditions::default(),
                ratio: None,
                count: Some(records as u32),
                items: codes
                    .iter()
                    .map(|c| TaskItemInput {
                        code: c.clone(),
                        version: None,
                        department: None,
                    })
                    .collect(),
                window_start: "2026-09-01".parse().expect("date"),
                window_end: "2026-11-20".parse().expect("date"),
                department: None,
                joint: false,
            },
        )?;
        let commitment = draw::commit(
            tx,
            "bench",
            task.id,
            &draw::CommitRequest::default(),
            &state.seal,
        )?;
        let ceremony = draw::Ceremony {
            commitment_id: commitment.id,
            entropy: ["观察员甲", "观察员乙"]
                .map(|observer| draw::algorithm::Entropy {
                    observer: observer.into(),
                    value: "2026".into(),
                })
                .to_vec(),
            beacon_value: None,
        };
        draw::execute(tx, "bench", task.id, ceremony, &state.seal, &calendar)?;
        Ok(list)
    })?;
    Ok(inspectors)
}

/// Logs an inspector in on their phone store, as the app does: the session is bound to the
/// store's device and their signing key registered.
fn login(base: &str, store: &Store, username: &str) -> anyhow::Result<Credentials> {
    Ok(client::log_in(store, base, username, PASSWORD)?)
}

/// The database to run on: an empty PostgreSQL database named by `SUIJI_BENCH_DATABASE`, or
/// the SQLite file in the data directory.
fn bench_database() -> Option<String> {
    std::env::var("SUIJI_BENCH_DATABASE").ok()
}

/// The blob store to run on: a bucket named by `SUIJI_BENCH_BLOBS`, or the data directory.
fn bench_blobs() -> Option<String> {
    std::env::var("SUIJI_BENCH_BLOBS").ok()
}

/// Server processes the phones share (`SUIJI_BENCH_SERVERS`, 1 unless set).
fn server_count() -> usize {
    std::env::var("SUIJI_BENCH_SERVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Starts `suiji-server serve` on `data` (and the benchmark's database and blob store);
/// answers the process and its base URL.
fn start_server(
    binary: &std::path::Path,
    data: &std::path::Path,
) -> anyhow::Result<(std::process::Child, String)> {
    let mut command = Command::new(binary);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data);
    if let Some(url) = bench_database() {
        command.args(["--database", &url]);
    }
    if let Some(url) = bench_blobs() {
        command.args(["--blobs", &url]);
    }
    let mut child = command
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let base = loop {
        let line = lines
            .next()
            .ok_or_else(|| anyhow::anyhow!("server exited"))??;
        if let Some(url) = line.strip_prefix("suiji is listening on ") {
            break url.to_owned();
        }
    };
    // The server's own log (RUST_LOG, "warn" by default) goes to standard error.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("server: {line}");
        }
    });
    Ok((child, base))
}

fn main() -> anyhow::Result<()> {
    println!("machine: {}", machine());
    println!(
        "database: {}; blobs: {}; servers: {}",
        if bench_database().is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        if bench_blobs().is_some() {
            "S3"
        } else {
            "files"
        },
        server_count()
    );
    if server_count() > 1 && bench_database().is_none() {
        anyhow::bail!("several servers share a PostgreSQL database: set SUIJI_BENCH_DATABASE");
    }
    let root = tempfile::tempdir()?;
    let data = root.path().join("server");
    let started = Instant::now();
    let inspectors = setup(&data)?;
    println!(
        "setup: {} inspectors, {} records drawn in {:.1} s",
        inspectors.len(),
        phone_count() * RECORDS_PER_PHONE / 2,
        started.elapsed().as_secs_f64()
    );

    let binary = std::env::current_exe()?
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("suiji-server"))
        .filter(|p| p.exists())
        .ok_or_else(|| {
            anyhow::anyhow!("build the server first: cargo build --release -p suiji-server")
        })?;
    let mut servers = vec![start_server(&binary, &data)?];
    for n in 1..server_count() {
        // Each server its own data directory, all holding the draw seal key.
        let more = root.path().join(format!("server{n}"));
        std::fs::create_dir_all(&more)?;
        let key = draw::seal::KEY_FILE;
        std::fs::copy(data.join(key), more.join(key))?;
        servers.push(start_server(&binary, &more)?);
    }
    let bases: Vec<String> = servers.iter().map(|(_, base)| base.clone()).collect();

    // Phones fetch their assignments.
    let mut phones = Vec::new();
    for (n, (id, username)) in inspectors.iter().enumerate() {
        let dir = root.path().join(username);
        let store = Store::open(&dir, StoreOptions::new(InspectorId::new(id.to_string())))?;
        let credentials = login(&bases[n % bases.len()], &store, username)?;
        phones.push((Arc::new(store), credentials));
    }
    let t = Instant::now();
    let fetched = run_all(&bases, &mut phones)?;
    let held: usize = phones
        .iter()
        .map(|(s, _)| s.list_tasks().map(|t| t.len()).unwrap_or(0))
        .sum();
    println!(
        "initial fetch: {held} records onto {} phones in {:.2} s, rounds per phone max {}",
        phones.len(),
        t.elapsed().as_secs_f64(),
        fetched.iter().map(|r| r.rounds).max().unwrap_or(0)
    );

    // Offline work, each phone on its own thread.
    let t = Instant::now();
    let work: Vec<(usize, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = phones
            .iter()
            .enumerate()
            .map(|(n, (store, _))| scope.spawn(move || offline_work(store, n as u32 * 1000)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("phone thread"))
            .collect::<anyhow::Result<_>>()
    })?;
    let change_bytes: usize = work.iter().map(|(c, _)| c).sum();
    let blob_bytes: u64 = work.iter().map(|(_, b)| b).sum();
    println!(
        "offline work: {:.1} s; document changes {:.1} MB",
        t.elapsed().as_secs_f64(),
        change_bytes as f64 / 1e6
    );

    // Everyone syncs at once.
    let servers_cpu = || {
        servers
            .iter()
            .map(|(child, _)| cpu_seconds(&child.id().to_string()))
            .sum::<f64>()
    };
    let (server_cpu, phones_cpu) = (servers_cpu(), cpu_seconds("self"));
    let t = Instant::now();
    let reports = run_all(&bases, &mut phones)?;
    let elapsed = t.elapsed().as_secs_f64();
    let record_syncs = phone_count() * RECORDS_PER_PHONE;
    let rounds: Vec<u32> = reports.iter().map(|r| r.rounds).collect();
    let uploaded: usize = reports.iter().map(|r| r.blobs_uploaded.len()).sum();
    let complete = reports.iter().all(|r| r.complete && r.refused.is_empty());
    // A phone that finished before its partner's changes reached the server gets them at its
    // next sync: every phone syncs once more, and only then is everyone in step.
    let t = Instant::now();
    let follow_up = run_all(&bases, &mut phones)?;
    let follow_up_secs = t.elapsed().as_secs_f64();
    let server_cpu = servers_cpu() - server_cpu;
    let phones_cpu = cpu_seconds("self") - phones_cpu;
    let in_step = check_in_step(&data, &phones)?;
    let total = elapsed + follow_up_secs;
    println!(
        "sync: {} phones × {RECORDS_PER_PHONE} records concurrently in {elapsed:.2} s (all complete: {complete}), then every phone once more in {follow_up_secs:.2} s, bringing {} records changed by a partner meanwhile",
        phone_count(),
        follow_up.iter().map(|r| r.received.len()).sum::<usize>(),
    );
    println!(
        "time until all in sync: {total:.2} s = {:.0} record-syncs/s; every copy (both phones and the server) holds the same heads: {in_step}",
        record_syncs as f64 / total
    );
    println!(
        "round trips per phone: max {}, mean {:.1}; in the second sync max {}, mean {:.1}",
        rounds.iter().max().unwrap_or(&0),
        rounds.iter().sum::<u32>() as f64 / rounds.len() as f64,
        follow_up.iter().map(|r| r.rounds).max().unwrap_or(0),
        follow_up.iter().map(|r| r.rounds).sum::<u32>() as f64 / follow_up.len() as f64,
    );
    let requests: Vec<u32> = reports
        .iter()
        .zip(&follow_up)
        .map(|(first, second)| first.http_requests + second.http_requests)
        .collect();
    println!(
        "HTTP requests per phone in both syncs (rounds, blob uploads, token refreshes): max {}, mean {:.1}",
        requests.iter().max().unwrap_or(&0),
        requests.iter().sum::<u32>() as f64 / requests.len() as f64,
    );
    // Both syncs' bytes: the second one carries the partners' late changes.
    let wire: u64 = reports
        .iter()
        .chain(&follow_up)
        .map(|r| r.bytes_sent + r.bytes_received)
        .sum();
    let blob_wire: u64 = reports
        .iter()
        .chain(&follow_up)
        .map(|r| r.blob_bytes_sent)
        .sum();
    println!(
        "bytes on the wire in both syncs: {:.1} MB in all = records {:.1} MB + blobs {:.1} MB ({uploaded} blobs uploaded)",
        wire as f64 / 1e6,
        (wire - blob_wire) as f64 / 1e6,
        blob_wire as f64 / 1e6,
    );
    println!(
        "made offline: document changes {:.1} MB + photos and thumbnails {:.1} MB; wire / made = {:.2} (records alone: {:.2}, each change goes up once and down to the partner once)",
        change_bytes as f64 / 1e6,
        blob_bytes as f64 / 1e6,
        wire as f64 / (change_bytes as f64 + blob_bytes as f64),
        (wire - blob_wire) as f64 / change_bytes as f64,
    );
    println!(
        "CPU time during both syncs: server {server_cpu:.1} s ({:.2} ms a record-sync, so {:.0} record-syncs/s on {} cores with the phones elsewhere), phones {phones_cpu:.1} s",
        server_cpu * 1000.0 / record_syncs as f64,
        record_syncs as f64 / server_cpu
            * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    for (child, _) in &mut servers {
        println!("server peak memory (VmHWM): {:.0} MB", peak_mb(child.id()));
        let _ = child.kill();
    }
    Ok(())
}

/// One phone's offline work: the item edits and photos of every record it holds. Returns
/// the bytes of the document changes made and of the blobs queued (photos and thumbnails).
fn offline_work(store: &Store, mut seed: u32) -> anyhow::Result<(usize, u64)> {
    let mut change_bytes = 0;
    let mut blob_bytes = 0;
    for task in store.list_tasks()? {
        let id = task.record_id.clone();
        let mut before = store.record(&id)?;
        let heads = before.heads();
        let codes: Vec<_> = before
            .assignment()?
            .items
            .iter()
            .map(|i| i.code.clone())
            .collect();
        for e in 0..EDITS_PER_RECORD {
            let code = &codes[e % codes.len()];
            store.edit(&id, |doc| {
                doc.set_finding(code, &format!("第{e}次记录：现场检查情况正常"))
            })?;
        }
        for p in 0..photos_per_record() {
            seed += 1;
            store.import_photo(&id, &codes[p % codes.len()], &jpeg(seed), "现场照片")?;
        }
        change_bytes += store.record(&id)?.save_after(&heads).len();
    }
    for entry in store.outbox()? {
        if let suiji_mobile_core::store::OutboxItem::Blob(hash) = entry.item {
            blob_bytes += store.blob(&hash)?.len() as u64;
        }
    }
    Ok((change_bytes, blob_bytes))
}

/// Whether every record's copies — on each phone that holds it and on the server (read from
/// the server's database file) — have the same heads.
fn check_in_step(
    data: &std::path::Path,
    phones: &[(Arc<Store>, Credentials)],
) -> anyhow::Result<bool> {
    let mut copies: std::collections::HashMap<String, Vec<Vec<automerge::ChangeHash>>> =
        std::collections::HashMap::new();
    for (store, _) in phones {
        for task in store.list_tasks()? {
            let heads = store.record(&task.record_id)?.heads();
            copies
                .entry(task.record_id.as_str().to_owned())
                .or_default()
                .push(heads);
        }
    }
    let server = match bench_database() {
        Some(url) => suiji_server::db::Db::open_postgres(&url)?,
        None => suiji_server::db::Db::open(&data.join("suiji.db"))?,
    };
    let all_equal = server.read_blocking(|conn| {
        let mut all_equal = true;
        for (id, heads) in &copies {
            let on_server = draw::records::load_document(conn, id)?.heads();
            all_equal &= heads.len() == 2 && heads.iter().all(|h| *h == on_server);
        }
        Ok(all_equal)
    })?;
    Ok(all_equal && !copies.is_empty())
}

/// Syncs every phone at once, one thread each, phone `n` with server `n % bases.len()`.
fn run_all(
    bases: &[String],
    phones: &mut [(Arc<Store>, Credentials)],
) -> anyhow::Result<Vec<SyncReport>> {
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = phones
            .iter_mut()
            .enumerate()
            .map(|(n, (store, credentials))| {
                let store = store.clone();
                let base = bases[n % bases.len()].as_str();
                scope.spawn(move || client::sync(&store, base, credentials, &()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("phone thread"))
            .collect()
    });
    results
        .into_iter()
        .map(|r| r.map_err(|e| anyhow::anyhow!("{e}")))
        .collect()
}
