//! Generates the Python, Kotlin and Swift bindings with this crate's `uniffi-bindgen` from the
//! built library, then runs a whole inspection from Python against it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use suiji_mobile_core::record::{
    AssignedInspector, AssignedItem, Assignment, PlanRef, TargetSnapshot, TaskRef,
};
use suiji_mobile_core::vocab::Method;
use suiji_mobile_core::{InspectorId, ItemCode, RecordDoc, RecordId};
use support::{files_under, generate, library};

fn assignment() -> Assignment {
    let date = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
    Assignment {
        plan: PlanRef {
            id: "plan-1".into(),
            number: "SJ-2025-001".into(),
            name: "2025年度双随机抽查计划".into(),
        },
        task: TaskRef {
            id: "task-1".into(),
            number: "SJ-2025-001-01".into(),
            name: "企业公示信息抽查".into(),
            directed: false,
        },
        agency: "某某区市场监督管理局".into(),
        target: TargetSnapshot {
            id: "t-1".into(),
            uscc: Some("91310000MA1FL0000X".into()),
            name: "上海某某贸易有限公司".into(),
            address: "上海市某某区某某路1号".into(),
            legal_representative: Some("张三".into()),
            kind: "enterprise".into(),
            industry: None,
            region: None,
            risk_class: Some("B".into()),
        },
        items: vec![
            AssignedItem {
                code: ItemCode::new("A01"),
                version: 1,
                name: "年度报告公示情况".into(),
                legal_basis: "《企业信息公示暂行条例》第八条".into(),
                content: "年报信息是否真实".into(),
                methods: vec![Method::Documentary],
            },
            AssignedItem {
                code: ItemCode::new("A02"),
                version: 1,
                name: "登记事项".into(),
                legal_basis: "《市场主体登记管理条例》".into(),
                content: "住所与登记是否一致".into(),
                methods: vec![Method::OnSite],
            },
        ],
        inspectors: ["insp-1", "insp-2"]
            .iter()
            .enumerate()
            .map(|(i, id)| AssignedInspector {
                inspector_id: InspectorId::new(*id),
                name: format!("检查员{i}"),
                cert_no: format!("3100000000{i}"),
                lead: i == 0,
            })
            .collect(),
        window_start: date(2025, 5, 1),
        window_end: date(2025, 6, 30),
        publication_deadline: date(2025, 7, 29),
        publication_deadline_provisional: false,
        recheck_of: None,
    }
}

#[test]
fn python_bindings_run_a_whole_inspection_and_find_it_after_reopening() {
    let work = tempfile::tempdir().unwrap();
    let bindings = work.path().join("bindings");
    generate("python", &bindings);
    let lib = library();
    std::fs::copy(&lib, bindings.join(lib.file_name().unwrap())).unwrap();

    let mut record = RecordDoc::create(&RecordId::new("task-1/t-1"), &assignment()).unwrap();
    let record_file = work.path().join("record.automerge");
    std::fs::write(&record_file, record.save()).unwrap();
    let jpeg = suiji_mobile_core::photo::fixtures::with_exif(
        &suiji_mobile_core::photo::fixtures::jpeg(1024, 768),
        "2025:05:02 10:31:07",
        31.2304,
        121.4737,
    );
    let jpeg_file = work.path().join("photo.jpg");
    std::fs::write(&jpeg_file, jpeg).unwrap();
    let png_file = work.path().join("signature.png");
    std::fs::write(&png_file, suiji_mobile_core::photo::fixtures::png(320, 120)).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/inspection.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(&bindings)
        .arg(&record_file)
        .arg(&jpeg_file)
        .arg(work.path().join("store"))
        .arg(&png_file)
        .arg(work.path().join("partner-store"))
        .output()
        .expect("python3 must be installed to test the Python bindings");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python inspection failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("python inspection: ok"), "{stdout}");
}

#[test]
fn kotlin_and_swift_bindings_generate() {
    let work = tempfile::tempdir().unwrap();
    let kotlin = work.path().join("kotlin");
    generate("kotlin", &kotlin);
    let kt: Vec<PathBuf> = files_under(&kotlin)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "kt"))
        .collect();
    assert_eq!(kt.len(), 1, "{kt:?}");
    let source = std::fs::read_to_string(&kt[0]).unwrap();
    assert!(source.contains("class MobileStore"));
    assert!(source.contains("sealed class SuijiException"));
    assert!(
        source.contains("enum class Method"),
        "vocabularies cross as enums"
    );

    let swift = work.path().join("swift");
    generate("swift", &swift);
    let swift_source = std::fs::read_to_string(swift.join("suiji_uniffi.swift")).unwrap();
    assert!(swift_source.contains("class MobileStore"));
    assert!(
        !swift_source.contains("case none"),
        "no enum case shadows Optional.none"
    );
    assert!(swift.join("suiji_uniffiFFI.h").exists());
    assert!(swift.join("suiji_uniffiFFI.modulemap").exists());
}
