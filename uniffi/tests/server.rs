//! The generated bindings against a real server on 127.0.0.1: Python with two phones, and
//! Kotlin compiled with a real Kotlin compiler and run on the JVM through JNA, as an Android
//! app runs them.
//!
//! The tools come from the test command (`scripts/test` installs JetBrains' compiler from
//! npm and Debian's JNA, and sets `SUIJI_KOTLINC` and `SUIJI_JNA_JAR`); run alone without
//! them, the test says it skips.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use suiji_mobile_core::RecordId;
use suiji_tests::{PASSWORD, Phone, TestServer, drawn_task};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// Bounds on the compiler and the program: never a pass condition.
const COMPILE_BOUND: Duration = Duration::from_secs(600);
const RUN_BOUND: Duration = Duration::from_secs(180);

/// Where the test command installs the Kotlin compiler (`scripts/test`).
fn default_kotlinc() -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    format!("{home}/.cache/suiji-tools/kotlin-2.4.20/node_modules/kotlin-compiler/bin/kotlinc")
}

/// Compiles the generated Kotlin bindings with `program` into one runnable jar.
async fn compile_kotlin(kotlinc: &Path, jna: &Path, work: &Path, program: &Path) -> PathBuf {
    let bindings = work.join("kotlin");
    support::generate("kotlin", &bindings);
    let mut sources: Vec<PathBuf> = support::files_under(&bindings)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "kt"))
        .collect();
    sources.push(program.to_owned());
    let jar = work.join("app.jar");
    let compiled = tokio::time::timeout(
        COMPILE_BOUND,
        Command::new(kotlinc)
            .arg("-cp")
            .arg(jna)
            .args(&sources)
            .args(["-include-runtime", "-nowarn", "-d"])
            .arg(&jar)
            .output(),
    )
    .await
    .expect("kotlinc finished in time")
    .expect("run kotlinc");
    assert!(
        compiled.status.success(),
        "kotlinc failed:\n{}\n{}",
        String::from_utf8_lossy(&compiled.stdout),
        String::from_utf8_lossy(&compiled.stderr)
    );
    jar
}

/// A JPEG as a phone camera saves it, with capture time and place.
fn photo(dir: &Path) -> PathBuf {
    use suiji_mobile_core::photo::fixtures;
    let path = dir.join("photo.jpg");
    let bytes = fixtures::with_exif(
        &fixtures::jpeg(1600, 1200),
        "2026:11:02 10:31:07",
        30.2741,
        120.1551,
    );
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A program of the binding tests run step by step: it prints `STEP <name>` and waits for
/// `go` on stdin while the test does the other side's part.
struct Driver {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stdout: Vec<String>,
}

impl Driver {
    fn new(mut child: tokio::process::Child) -> Driver {
        let stdin = child.stdin.take().expect("stdin piped");
        let lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
        Driver {
            child,
            stdin,
            lines,
            stdout: Vec::new(),
        }
    }

    /// The next step the program waits at, or `None` once its output ends.
    async fn next_step(&mut self) -> Option<String> {
        while let Some(line) = self.lines.next_line().await.unwrap() {
            self.stdout.push(line.clone());
            if let Some(step) = line.strip_prefix("STEP ") {
                return Some(step.to_owned());
            }
        }
        None
    }

    /// Lets the program go on past its step.
    async fn go(&mut self) {
        self.stdin.write_all(b"go\n").await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Waits for the program to end: its exit and stderr, and all it printed.
    async fn finish(self) -> (std::process::Output, String) {
        (
            self.child.wait_with_output().await.unwrap(),
            self.stdout.join("\n"),
        )
    }
}

/// The supervisor sends record `id` back to its inspectors with `comment`.
async fn return_record(server: &TestServer, id: &RecordId, comment: &str) {
    let supervisor = server.login("supervisor").await;
    let (s, body) = supervisor
        .post(
            &format!("/api/v1/records/{}/return", id.as_str()),
            &json!({ "comment": comment }),
        )
        .await;
    assert!(s.is_success(), "return: {s} {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kotlin_on_the_jvm_drives_an_inspection_against_a_real_server() {
    let Some(kotlinc) = support::tool("SUIJI_KOTLINC", &default_kotlinc()) else {
        eprintln!("skipped: no Kotlin compiler (run scripts/test, which installs it)");
        return;
    };
    let Some(jna) = support::tool("SUIJI_JNA_JAR", "/usr/share/java/jna.jar") else {
        eprintln!("skipped: no JNA (run scripts/test, which installs libjna-java)");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kotlin/Inspection.kt");
    let jar = compile_kotlin(&kotlinc, &jna, work.path(), &program).await;
    let native = work.path().join("native");
    std::fs::create_dir_all(&native).unwrap();
    let lib = support::library();
    std::fs::copy(&lib, native.join(lib.file_name().unwrap())).unwrap();

    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 4).await;
    let record = &records[0];
    let (a, b) = (record.group[0], record.group[1]);
    let id = RecordId::new(record.id.as_str());
    let mut partner = Phone::open(&server, agency.username_of(b), b).await;
    partner.sync(&server.base).await.unwrap();

    let app = Command::new("java")
        .arg(format!("-Djna.library.path={}", native.display()))
        .arg("-cp")
        .arg(format!("{}:{}", jar.display(), jna.display()))
        .arg("InspectionKt")
        .arg(&server.base)
        .arg(agency.username_of(a))
        .arg(PASSWORD)
        .arg(a.to_string())
        .arg(id.as_str())
        .arg(work.path().join("store"))
        .arg(photo(work.path()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("java runs");
    let mut app = Driver::new(app);
    let comment = "现场照片不清晰，请补拍门头照片";
    let run = async {
        while let Some(step) = app.next_step().await {
            match step.as_str() {
                "signed" => {
                    // The partner signs on their own phone.
                    partner.sync(&server.base).await.unwrap();
                    partner.sign(&id).unwrap();
                    let report = partner.sync(&server.base).await.unwrap();
                    assert_eq!(report.sent, vec![id.clone()], "{report:?}");
                }
                "submitted" => return_record(&server, &id, comment).await,
                other => panic!("unknown step {other}"),
            }
            app.go().await;
        }
        app.finish().await
    };
    let (output, stdout) = tokio::time::timeout(RUN_BOUND, run)
        .await
        .expect("the Kotlin program finished in time");
    assert!(
        output.status.success(),
        "the Kotlin program failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(&format!("RETURNED {comment}")), "{stdout}");
    assert!(stdout.contains("kotlin inspection: ok"), "{stdout}");
    // The server holds what the Kotlin phone sent: both signatures and its answers.
    let doc = suiji_tests::server_record(&server, id.as_str());
    assert_eq!(doc.signatures().unwrap().len(), 2);
    assert_eq!(doc.photos().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_two_phones_conflict_settle_sign_submit_return_and_resubmit_against_a_real_server() {
    let work = tempfile::tempdir().unwrap();
    let bindings = work.path().join("bindings");
    support::generate("python", &bindings);
    let lib = support::library();
    std::fs::copy(&lib, bindings.join(lib.file_name().unwrap())).unwrap();

    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 4).await;
    let record = &records[0];
    let (a, b) = (record.group[0], record.group[1]);
    let id = RecordId::new(record.id.as_str());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/two_phones.py");
    let python = Command::new("python3")
        .arg(script)
        .arg(&bindings)
        .arg(&server.base)
        .arg(PASSWORD)
        .arg(id.as_str())
        .arg(agency.username_of(a))
        .arg(a.to_string())
        .arg(work.path().join("phone-a"))
        .arg(agency.username_of(b))
        .arg(b.to_string())
        .arg(work.path().join("phone-b"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut python = Driver::new(python);
    let comment = "执法证号与检查人员不符，请核对后重新提交";
    let supervisor = server.login("supervisor").await;
    let run = async {
        while let Some(step) = python.next_step().await {
            match step.as_str() {
                "submitted" => return_record(&server, &id, comment).await,
                "resubmitted" => {
                    let (s, view) = supervisor
                        .get(&format!("/api/v1/records/{}", id.as_str()))
                        .await;
                    assert!(s.is_success(), "{s} {view}");
                    assert_eq!(view["review"]["state"], "submitted", "{view}");
                    assert_eq!(view["review"]["round"], 2, "{view}");
                }
                other => panic!("unknown step {other}"),
            }
            python.go().await;
        }
        python.finish().await
    };
    let (output, stdout) = tokio::time::timeout(RUN_BOUND, run)
        .await
        .expect("the Python program finished in time");
    assert!(
        output.status.success(),
        "the Python program failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.matches(&format!("RETURNED {comment}")).count(),
        2,
        "both phones saw the return: {stdout}"
    );
    assert!(stdout.contains("python two phones: ok"), "{stdout}");
    let doc = suiji_tests::server_record(&server, id.as_str());
    assert!(doc.conflicts().unwrap().is_empty());
}
