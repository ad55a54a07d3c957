//! Benchmark of the phone store (not a test):
//!
//! 1. builds a store with 500 records and 5,000 photo entries (10 per record, with answers
//!    and notes), then in a fresh process measures the time and peak memory (VmHWM) to open
//!    it and list tasks;
//! 2. times the import of one 12-megapixel JPEG with EXIF (hash, EXIF, decode, thumbnail,
//!    downscale, blob writes, document save).
//!
//! Run: `cargo run --release -p suiji-mobile-core --example bench_store`
//! Aims: open + list < 200 ms and < 50 MB; import < 400 ms.

use chrono::{NaiveDate, Utc};
use std::path::Path;
use std::time::Instant;
use suiji_mobile_core::photo::{PhotoLimits, fixtures, process_photo};
use suiji_mobile_core::record::{
    AssignedInspector, AssignedItem, Assignment, NoteKind, PhotoMeta, PlanRef, TargetSnapshot,
    TaskRef,
};
use suiji_mobile_core::vocab::{Method, ResultCategory};
use suiji_mobile_core::{
    BlobHash, InspectorId, ItemCode, RecordDoc, RecordId, Store, StoreOptions,
};

const RECORDS: usize = 500;
const PHOTOS_PER_RECORD: usize = 10;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--open-and-list" {
        open_and_list(Path::new(&args[2]));
        return;
    }
    print_machine();
    let dir = tempfile::tempdir().expect("temporary directory");
    let store_dir = dir.path().join("store");

    let t = Instant::now();
    build(&store_dir);
    println!(
        "built store: {RECORDS} records, {} photo entries in {:.1} s",
        RECORDS * PHOTOS_PER_RECORD,
        t.elapsed().as_secs_f64()
    );

    // Measure opening in a fresh process, so that peak memory is that of opening and listing
    // alone, not of building.
    let status = std::process::Command::new(std::env::current_exe().expect("own path"))
        .arg("--open-and-list")
        .arg(&store_dir)
        .status()
        .expect("run the measuring process");
    assert!(status.success());

    import_12mp(&store_dir);
}

fn print_machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("machine: {cores} cores (nproc), {cpu}");
}

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn open_and_list(dir: &Path) {
    let before = vm_hwm_kib();
    let t = Instant::now();
    let store = Store::open(dir, StoreOptions::new(InspectorId::new("insp-1"))).expect("open");
    let opened = t.elapsed();
    let tasks = store.list_tasks().expect("list");
    let listed = t.elapsed();
    let photos: u32 = tasks.iter().map(|t| t.photo_count).sum();
    assert_eq!(tasks.len(), RECORDS);
    assert_eq!(photos as usize, RECORDS * PHOTOS_PER_RECORD);
    println!(
        "open: {:.1} ms, open + list {} tasks ({} photos): {:.1} ms",
        opened.as_secs_f64() * 1e3,
        tasks.len(),
        photos,
        listed.as_secs_f64() * 1e3
    );
    if let (Some(before), Some(after)) = (before, vm_hwm_kib()) {
        println!(
            "peak memory (VmHWM) of the measuring process: {:.1} MB ({:.1} MB before opening)",
            after as f64 / 1024.0,
            before as f64 / 1024.0
        );
    }
}

fn assignment(n: usize) -> Assignment {
    let date = |m, d| NaiveDate::from_ymd_opt(2025, m, d).expect("valid date");
    Assignment {
        plan: PlanRef {
            id: "plan-2025".into(),
            number: "SJ-2025-001".into(),
            name: "2025年度双随机抽查计划".into(),
        },
        task: TaskRef {
            id: format!("task-{}", n % 7),
            number: format!("SJ-2025-001-{:02}", n % 7),
            name: "企业公示信息及登记事项抽查".into(),
            directed: n.is_multiple_of(2),
        },
        agency: "某某区市场监督管理局".into(),
        target: TargetSnapshot {
            id: format!("t-{n}"),
            uscc: Some(format!("91310000MA1FL{n:05}")),
            name: format!("上海某某贸易有限公司第{n}分公司"),
            address: format!("上海市某某区某某路{n}号"),
            legal_representative: Some("张三".into()),
            kind: "enterprise".into(),
            industry: Some("批发业".into()),
            region: Some("310101".into()),
            risk_class: Some(["A", "B", "C", "D"][n % 4].into()),
        },
        items: (1..=5)
            .map(|i| AssignedItem {
                code: ItemCode::new(format!("A0{i}")),
                version: 1,
                name: format!("抽查事项{i}"),
                legal_basis: "《企业信息公示暂行条例》".into(),
                content: "核查公示信息是否真实、及时".into(),
                methods: vec![Method::OnSite, Method::Documentary],
            })
            .collect(),
        inspectors: (1..=2)
            .map(|i| AssignedInspector {
                inspector_id: InspectorId::new(format!("insp-{i}")),
                name: format!("检查员{i}"),
                cert_no: format!("3100000000{i}"),
                lead: i == 1,
            })
            .collect(),
        window_start: date(5, 1),
        window_end: date(6, 1 + (n % 29) as u32),
        publication_deadline: date(7, 29),
        publication_deadline_provisional: false,
        recheck_of: None,
    }
}

fn build(dir: &Path) {
    let store = Store::open(dir, StoreOptions::new(InspectorId::new("insp-1"))).expect("open");
    let me = InspectorId::new("insp-1");
    for n in 0..RECORDS {
        let id = RecordId::new(format!("task-{}/t-{n}", n % 7));
        let mut doc = RecordDoc::create(&id, &assignment(n)).expect("create");
        store.put_assigned_record(&doc.save()).expect("put");
        store
            .edit(&id, |d| {
                for i in 1..=5 {
                    let code = ItemCode::new(format!("A0{i}"));
                    d.set_checked(&code, true)?;
                    d.set_methods(&code, &[Method::OnSite])?;
                    d.set_finding(&code, "经核查，未发现问题。")?;
                }
                d.set_result_categories(&[ResultCategory::NoProblem])?;
                for p in 0..PHOTOS_PER_RECORD {
                    let fake = |kind: &str| BlobHash::of(format!("{n}/{p}/{kind}").as_bytes());
                    d.attach_photo(&PhotoMeta {
                        sha256: fake("original"),
                        size: 4_200_000,
                        mime: "image/jpeg".into(),
                        width: 4000,
                        height: 3000,
                        captured_at: Some("2025-05-02T10:31:07".into()),
                        gps: None,
                        item: ItemCode::new(format!("A0{}", 1 + p % 5)),
                        caption: format!("现场照片{p}"),
                        taken_by: me.clone(),
                        imported_at: Utc::now(),
                        thumbnail_sha256: fake("thumbnail"),
                        upload_sha256: Some(fake("upload")),
                    })?;
                }
                d.add_note(
                    &me,
                    &ItemCode::new("A01"),
                    "现场检查笔记",
                    &[],
                    NoteKind::Note,
                )?;
                Ok(())
            })
            .expect("edit");
    }
}

fn import_12mp(dir: &Path) {
    let jpeg = fixtures::with_exif(
        &fixtures::jpeg(4000, 3000),
        "2025:05:02 10:31:07",
        31.2304,
        121.4737,
    );
    println!(
        "12-megapixel JPEG: 4000x3000, {:.1} MB",
        jpeg.len() as f64 / 1e6
    );
    let limits = PhotoLimits::default();
    let t = Instant::now();
    let processed = process_photo(&jpeg, &limits).expect("process");
    println!(
        "process (hash, EXIF, decode, thumbnail, downscale to {} px budget): {:.0} ms",
        limits.pixel_budget,
        t.elapsed().as_secs_f64() * 1e3
    );
    assert!(processed.upload.is_some() && processed.gps.is_some());

    let store = Store::open(dir, StoreOptions::new(InspectorId::new("insp-1"))).expect("open");
    let id = RecordId::new("task-0/t-0");
    store.read(&id, |_| Ok(())).expect("load the record first");
    let t = Instant::now();
    store
        .import_photo(&id, &ItemCode::new("A01"), &jpeg, "门头")
        .expect("import");
    println!(
        "import into the store (process + blobs fsynced + document and index saved): {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
}
