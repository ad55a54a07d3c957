//! The generated Swift bindings compile, with the inspection an iOS app runs
//! (`tests/swift/main.swift`), wherever a Swift compiler exists. Debian has none (nor do these
//! CI machines): there the test says that it skipped, and the bindings are still generated
//! and checked by `bindings.rs`.

mod support;

use std::process::Command;

#[test]
fn swift_bindings_compile_where_swiftc_exists() {
    let found = Command::new("swiftc").arg("--version").output();
    if !found.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "skipped: no swiftc on this machine; the Swift bindings are generated but not compiled"
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let swift = work.path().join("swift");
    support::generate("swift", &swift);
    let lib = support::library();
    let lib_dir = lib.parent().unwrap();
    let program = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/swift/main.swift");
    let output = Command::new("swiftc")
        .args(["-module-name", "inspection", "-o"])
        .arg(work.path().join("inspection"))
        .arg("-Xcc")
        .arg(format!(
            "-fmodule-map-file={}",
            swift.join("suiji_uniffiFFI.modulemap").display()
        ))
        .arg("-I")
        .arg(&swift)
        .arg("-L")
        .arg(lib_dir)
        .arg("-lsuiji_uniffi")
        .arg(swift.join("suiji_uniffi.swift"))
        .arg(program)
        .output()
        .expect("run swiftc");
    assert!(
        output.status.success(),
        "swiftc failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
