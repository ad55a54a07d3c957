//! Benchmark (not a test) of a task's dossier: a task of 500 records, each answered, signed
//! by its lead inspector and holding 5 distinct real JPEG photos (2,500 in all), downloaded
//! whole from `GET /api/v1/tasks/{id}/dossier.zip` of the real `suiji-server` binary (so its
//! peak memory, VmHWM, is the server's alone), then exported and checked with the CLI. Run
//! with `cargo build --release -p suiji-server && cargo run --release -p suiji-tests
//! --example bench_dossier`. `SUIJI_BENCH_RECORDS` sets another number of records for a quick
//! run, `SUIJI_BENCH_PHOTO_WIDTH` another photo width (4:3; default 1024).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use suiji_mobile_core::record::{PhotoMeta, SigningKey, inspector_actor, public_key_hex};
use suiji_mobile_core::sync::wire::WholeBlob;
use suiji_mobile_core::{BlobHash, InspectorId, ItemCode};
use suiji_server::auth::{Role, hash_password};
use suiji_server::draw;
use suiji_server::plans::{self, Conditions, NewPlan, NewTask, TaskItemInput};
use suiji_server::registry::departments::{self, Department};
use suiji_server::registry::inspectors::{self, InspectorInput};
use suiji_server::registry::items::{self, ItemClass, ItemInput, NewItem};
use suiji_server::registry::targets::{self, TargetInput};
use suiji_server::{Config, accounts, uscc};
use suiji_tests::{machine, peak_mb};

const INSPECTORS: usize = 20;
const PHOTOS_PER_RECORD: usize = 5;
const PASSWORD: &str = "benchmark-password-1";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A distinct photo: a gradient under seeded noise, as a camera's sensor gives (noise keeps
/// JPEG from shrinking it to nothing).
fn jpeg(seed: u32, width: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let img = image::RgbImage::from_fn(width, width * 3 / 4, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let noise = (state & 0x1f) as u8;
        image::Rgb([
            ((x / 4) as u8).wrapping_add(noise),
            ((y / 3) as u8).wrapping_add(noise / 2),
            (seed as u8).wrapping_add(noise),
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode jpeg");
    out.into_inner()
}

fn device_of(inspector: i64) -> Vec<u8> {
    vec![0xbe, 0x00, inspector as u8]
}

fn key_of(inspector: i64) -> SigningKey {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&inspector.to_le_bytes());
    SigningKey::from_bytes(&seed)
}

/// Builds the agency, draws the task and walks every record straight into the data
/// directory. Returns the task id and the photo bytes written.
fn setup(dir: &std::path::Path, records: usize, width: u32) -> anyhow::Result<(i64, u64)> {
    let state = suiji_server::open(Config {
        database: None,
        blobs: None,
        data_dir: dir.to_owned(),
        demo: false,
        transport: Default::default(),
        public_url: None,
    })?;
    let hash = hash_password(PASSWORD)?;
    let calendar = state.calendar();
    let task_id = state.db.write_blocking(|tx| {
        accounts::insert_user(tx, "bench", "admin", "管理员", &hash, &[Role::Admin])?;
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
        for n in 0..INSPECTORS {
            let username = format!("inspector{n}");
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
            suiji_server::signing::register_key(
                tx,
                inspector.id,
                &hex::encode(device_of(inspector.id)),
                None,
                &public_key_hex(&key_of(inspector.id).verifying_key()),
            )?;
        }
        let plan = plans::insert_plan(
            tx,
            "bench",
            &NewPlan {
                number: "BENCH-DOSSIER".into(),
                name: "档案基准".into(),
                year: 2026,
                department: "SCJG".into(),
            },
        )?;
        let task = plans::insert_task(
            tx,
            "bench",
            plan.id,
            &NewTask {
                number: "BENCH-DOSSIER-001".into(),
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
        Ok(task.id)
    })?;

    // Each record: answered, five photos, signed by its lead, as a phone would have it.
    let list = state
        .db
        .read_blocking(|c| draw::records::list(c, Some(task_id), None))?;
    let mut photo_bytes = 0u64;
    let mut seed = 0u32;
    for chunk in list.chunks(50) {
        let mut photos = Vec::new();
        for _ in chunk {
            let mut of_record = Vec::new();
            for _ in 0..PHOTOS_PER_RECORD {
                seed += 1;
                of_record.push(jpeg(seed, width));
            }
            photos.push(of_record);
        }
        for of_record in &photos {
            let whole: Vec<WholeBlob> = of_record
                .iter()
                .map(|bytes| WholeBlob {
                    sha256: BlobHash::of(bytes).as_str().to_owned(),
                    bytes: bytes.clone(),
                })
                .collect();
            for stored in state.blobs.put_many(&whole, usize::MAX)? {
                stored?;
            }
            photo_bytes += of_record.iter().map(|b| b.len() as u64).sum::<u64>();
        }
        state.db.write_blocking(|tx| {
            for (record, of_record) in chunk.iter().zip(&photos) {
                let lead = record.group[0];
                let inspector = InspectorId::new(lead.to_string());
                let mut doc = draw::records::load_document(tx, &record.id)?;
                doc.set_actor(inspector_actor(&inspector, &device_of(lead)));
                let fail =
                    |e: suiji_mobile_core::Error| suiji_server::Error::Internal(e.to_string());
                suiji_tests::answer_all(&mut doc).map_err(fail)?;
                let item: ItemCode = doc.assignment().map_err(fail)?.items[0].code.clone();
                for (n, bytes) in of_record.iter().enumerate() {
                    doc.attach_photo(&PhotoMeta {
                        sha256: BlobHash::of(bytes),
                        size: bytes.len() as u64,
                        mime: "image/jpeg".into(),
                        width,
                        height: width * 3 / 4,
                        captured_at: None,
                        gps: None,
                        item: item.clone(),
                        caption: format!("现场照片{n}"),
                        taken_by: inspector.clone(),
                        imported_at: chrono::Utc::now(),
                        thumbnail_sha256: BlobHash::of(&[n as u8]),
                        upload_sha256: None,
                    })
                    .map_err(fail)?;
                }
                doc.sign(&inspector, &key_of(lead), None).map_err(fail)?;
                draw::records::append_changes(tx, &record.id, &mut doc)?;
            }
            Ok(())
        })?;
    }
    Ok((task_id, photo_bytes))
}

fn main() -> anyhow::Result<()> {
    println!("machine: {}", machine());
    let records = env_number("SUIJI_BENCH_RECORDS", 500);
    let width = env_number("SUIJI_BENCH_PHOTO_WIDTH", 1024) as u32;
    let root = tempfile::tempdir()?;
    let data = root.path().join("server");
    let started = Instant::now();
    let (task_id, photo_bytes) = setup(&data, records, width)?;
    println!(
        "setup: {records} records, {} photos ({:.1} MB, {width} px wide) in {:.1} s",
        records * PHOTOS_PER_RECORD,
        photo_bytes as f64 / 1e6,
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
    let mut child = Command::new(&binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
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
    std::thread::spawn(move || for _ in lines {});
    let pid = child.id();

    let runtime = tokio::runtime::Runtime::new()?;
    let zip_path = root.path().join("api.zip");
    let result = runtime.block_on(async {
        let http = suiji_tests::http_following_redirects();
        let login: serde_json::Value = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"username": "admin", "password": PASSWORD}))
            .send()
            .await?
            .json()
            .await?;
        let token = login["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let before = peak_mb(pid);
        let t = Instant::now();
        let mut response = http
            .get(format!("{base}/api/v1/tasks/{task_id}/dossier.zip"))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?;
        let first_byte = t.elapsed().as_secs_f64();
        let mut file = std::io::BufWriter::new(std::fs::File::create(&zip_path)?);
        let mut size = 0u64;
        while let Some(chunk) = response.chunk().await? {
            size += chunk.len() as u64;
            file.write_all(&chunk)?;
        }
        file.flush()?;
        let elapsed = t.elapsed().as_secs_f64();
        println!(
            "download: {:.1} MB in {elapsed:.2} s ({:.0} MB/s), first byte after {:.3} s",
            size as f64 / 1e6,
            size as f64 / 1e6 / elapsed,
            first_byte
        );
        println!(
            "server peak memory (VmHWM): {before:.1} MB before the download, {:.1} MB after",
            peak_mb(pid)
        );
        anyhow::Ok(())
    });
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let _ = child.wait();
    result?;

    let cli_path = root.path().join("cli.zip");
    let t = Instant::now();
    let out = Command::new(&binary)
        .args(["dossier", "export", &task_id.to_string(), "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&cli_path)
        .output()?;
    anyhow::ensure!(out.status.success(), "export: {out:?}");
    println!(
        "cli export: {:.2} s, {:.1} MB",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(&cli_path)?.len() as f64 / 1e6
    );
    let t = Instant::now();
    let out = Command::new(&binary)
        .args(["dossier", "verify"])
        .arg(&zip_path)
        .output()?;
    println!(
        "cli verify: {:.2} s: {}",
        t.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
    anyhow::ensure!(out.status.success(), "the dossier does not verify");
    Ok(())
}
