//! The `suiji-server` binary as a newcomer runs it: `serve --demo`, a clean
//! shutdown on Ctrl-C (SIGINT), the demo password refused outside demo mode,
//! `user create`, `audit verify` catching an entry edited in SQLite, one server per data
//! directory, and a task's dossier exported and checked (`dossier export`, `dossier verify`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_suiji-server");
/// The public address the servers here print on documents (`SUIJI_PUBLIC_URL`).
const PUBLIC_URL: &str = "https://spotcheck.example.gov.cn";

struct Running {
    child: Child,
    base: String,
}

fn start(data: &Path, demo: bool) -> Running {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .env("SUIJI_PUBLIC_URL", PUBLIC_URL)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if demo {
        cmd.arg("--demo");
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start suiji-server");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = Vec::new();
    let base = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .expect("read stdout");
        if let Some(url) = line.strip_prefix("suiji is listening on ") {
            break url.to_owned();
        }
        printed.push(line);
    };
    if demo {
        let all = printed.join("\n");
        assert!(
            all.contains("admin") && all.contains("inspector60"),
            "demo accounts printed: {all}"
        );
    }
    eprintln!("server (demo={demo}) ready after {:?}", started.elapsed());
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Running { child, base }
}

fn interrupt_and_wait(mut running: Running) {
    let pid = running.child.id().to_string();
    let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            assert!(status.success(), "clean exit on Ctrl-C, got {status}");
            return;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn login(base: &str, username: &str, password: &str) -> (u16, Value) {
    let response = http_client()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn draw_verify(file: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["draw", "verify"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn audit_verify(data: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["audit", "verify", "--data"])
        .arg(data)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_server_runs_stops_cleanly_and_its_audit_log_catches_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let server = start(&data, true);
    let health: Value = reqwest::get(format!("{}/health", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let (status, body) = login(&server.base, "planner", "demo").await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let targets: Value = http_client()
        .get(format!("{}/api/v1/targets?per_page=1", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(targets["total"], 10_000);
    let (status, body) = login(&server.base, "inspector60", "demo").await;
    assert_eq!(status, 200, "{body}");

    // The demo has a published draw that anyone can fetch and verify.
    let draws: Value = reqwest::get(format!("{}/api/v1/public/draws", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = draws[0]["id"].as_i64().expect("a published demo draw");
    let record = reqwest::get(format!("{}/api/v1/public/draws/{id}", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let file = dir.path().join("draw.json");
    std::fs::write(&file, &record).unwrap();
    let (ok, out) = draw_verify(&file);
    assert!(ok && out.starts_with("verified"), "{out}");
    let mut tampered: Value = serde_json::from_str(&record).unwrap();
    tampered["result"]["targets"][3]["group"][0] = json!(999_999);
    std::fs::write(&file, tampered.to_string()).unwrap();
    let (ok, out) = draw_verify(&file);
    assert!(!ok, "a changed group must fail: {out}");
    assert!(
        out.contains("result.targets[3]"),
        "names the first difference: {out}"
    );
    // --initial is for redraws only.
    std::fs::write(&file, &record).unwrap();
    let out = Command::new(BIN)
        .args(["draw", "verify"])
        .arg(&file)
        .arg("--initial")
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("for redraws"),
        "{text}"
    );
    // A commitment dated after the draw it claims to precede fails.
    let mut late: Value = serde_json::from_str(&record).unwrap();
    late["commitment"]["committed_at"] = json!("2099-01-01T00:00:00.000Z");
    std::fs::write(&file, late.to_string()).unwrap();
    let (ok, out) = draw_verify(&file);
    assert!(!ok, "a commitment after the draw must fail: {out}");
    assert!(out.contains("must precede the draw"), "{out}");
    interrupt_and_wait(server);

    // The same directory without --demo: the demo password no longer works.
    let server = start(&data, false);
    let (status, body) = login(&server.base, "admin", "demo").await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("demo mode"),
        "{body}"
    );
    interrupt_and_wait(server);

    // An account made on the command line can log in outside demo mode.
    let out = Command::new(BIN)
        .args([
            "user",
            "create",
            "--username",
            "chief",
            "--display-name",
            "局长",
            "--role",
            "admin",
            "--role",
            "supervisor",
            "--data",
        ])
        .arg(&data)
        .env("SUIJI_PASSWORD", "plum-blossom-lantern")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let weak = Command::new(BIN)
        .args([
            "user",
            "create",
            "--username",
            "weak",
            "--display-name",
            "W",
            "--role",
            "admin",
            "--data",
        ])
        .arg(&data)
        .env("SUIJI_PASSWORD", "demo")
        .output()
        .unwrap();
    assert!(
        !weak.status.success(),
        "a weak password is refused on the command line"
    );
    let server = start(&data, false);
    let (status, body) = login(&server.base, "chief", "plum-blossom-lantern").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["roles"], json!(["admin", "supervisor"]));
    interrupt_and_wait(server);

    let (ok, out) = audit_verify(&data);
    assert!(ok, "{out}");
    assert!(out.contains("intact"), "{out}");

    let conn = rusqlite_connection(&data);
    conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 5", [])
        .unwrap();
    drop(conn);
    let (ok, out) = audit_verify(&data);
    assert!(!ok, "tampered log must fail: {out}");
    assert!(out.contains("entry 5"), "names the first bad entry: {out}");
}

#[test]
fn one_server_per_data_directory_and_a_restart_sweeps_cut_short_batch_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = start(&data, false);

    // A second server on the same directory stops at once and names the one running.
    let second = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second server must not start");
    assert!(
        stderr.contains("in use by another suiji server")
            && stderr.contains(&first.child.id().to_string()),
        "{stderr}"
    );
    // Command-line tools still work beside the running server.
    let (ok, out) = audit_verify(&data);
    assert!(ok, "{out}");
    interrupt_and_wait(first);

    // What a crash in the middle of a batch upload leaves, beside a stored blob and a
    // resumable chunked upload that must both survive the restart. The stored blob is real
    // (named by the hash of its bytes): the start hashes a file without its row again.
    let blobs = data.join("blobs");
    let name = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"bytes"));
    let fan_out = blobs.join(&name[..2]);
    std::fs::create_dir_all(&fan_out).unwrap();
    let stored = fan_out.join(&name[2..]);
    let staged = fan_out.join(".tmpXyZ12.whole");
    let partial = blobs.join("tmp").join(format!("ab{}.part", "c".repeat(62)));
    for file in [&stored, &staged, &partial] {
        std::fs::write(file, b"bytes").unwrap();
    }
    let again = start(&data, false);
    assert!(!staged.exists(), "the cut-short staging file is removed");
    assert!(
        stored.exists() && partial.exists(),
        "blobs and partial uploads stay"
    );
    interrupt_and_wait(again);
}

fn rusqlite_connection(data: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(data.join("suiji.db")).unwrap()
}

fn record_verify(file: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["record", "verify"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_downloaded_record_verifies_offline_and_a_tampered_copy_names_the_failing_signature() {
    use automerge::ReadDoc;
    use automerge::transaction::Transactable;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, true);
    let id: String = rusqlite_connection(&data)
        .query_row(
            "SELECT id FROM records WHERE review_state = 'published' ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("the demo has a published record");
    let (status, body) = login(&server.base, "supervisor", "demo").await;
    assert_eq!(status, 200, "{body}");
    let copy = http_client()
        .get(format!("{}/api/v1/records/{id}/signed-copy", server.base))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    interrupt_and_wait(server);

    let file = dir.path().join("record.json");
    std::fs::write(&file, &copy).unwrap();
    let (ok, out) = record_verify(&file);
    assert!(ok && out.starts_with("verified"), "{out}");

    // Another key in place of an inspector's: their signature no longer checks.
    let mut swapped: Value = serde_json::from_str(&copy).unwrap();
    let whose = swapped["signing_keys"][0]["inspector_id"]
        .as_str()
        .unwrap()
        .to_owned();
    swapped["signing_keys"][0]["public_key"] =
        json!("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    std::fs::write(&file, swapped.to_string()).unwrap();
    let (ok, out) = record_verify(&file);
    assert!(!ok && out.contains(&format!("inspector {whose}")), "{out}");

    // A finding rewritten after signing (a change appended to the real document).
    let mut edited: Value = serde_json::from_str(&copy).unwrap();
    let bytes = b64.decode(edited["document"].as_str().unwrap()).unwrap();
    let mut doc = automerge::AutoCommit::load(&bytes).unwrap();
    let (_, items) = doc.get(automerge::ROOT, "items").unwrap().unwrap();
    let item = doc.keys(&items).next().unwrap();
    let (_, entry) = doc.get(&items, &item).unwrap().unwrap();
    doc.put(&entry, "finding", "改写后的检查情况").unwrap();
    edited["document"] = json!(b64.encode(doc.save()));
    std::fs::write(&file, edited.to_string()).unwrap();
    let (ok, out) = record_verify(&file);
    assert!(!ok && out.contains("changed after it was signed"), "{out}");

    // Not a record at all.
    std::fs::write(&file, "{}").unwrap();
    let (ok, out) = record_verify(&file);
    assert!(!ok && out.contains("not a signed record"), "{out}");
}

fn dossier_verify(file: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["dossier", "verify"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Every file of a ZIP, in ZIP order.
fn zip_files(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut entry = archive.by_index(i).unwrap();
            let name = entry.name().unwrap().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            (name, bytes)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_demo_dossier_from_the_api_and_the_cli_holds_the_same_files_and_verify_names_a_changed_file()
 {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, true);
    let task: i64 = rusqlite_connection(&data)
        .query_row(
            "SELECT task_id FROM records WHERE review_state = 'published' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("the demo has a walked task");
    let (status, body) = login(&server.base, "admin", "demo").await;
    assert_eq!(status, 200, "{body}");
    let from_api = http_client()
        .get(format!("{}/api/v1/tasks/{task}/dossier.zip", server.base))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    // The CLI exports beside the running server.
    let cli_file = dir.path().join("cli.zip");
    let out = Command::new(BIN)
        .args(["dossier", "export", &task.to_string(), "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&cli_file)
        .env("SUIJI_PUBLIC_URL", PUBLIC_URL)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    interrupt_and_wait(server);

    let api_file = dir.path().join("api.zip");
    std::fs::write(&api_file, &from_api).unwrap();
    for file in [&api_file, &cli_file] {
        let (ok, out) = dossier_verify(file);
        assert!(ok && out.starts_with("verified"), "{out}");
        assert!(out.contains("signatures"), "{out}");
    }
    // The same files with the same bytes; the manifests differ only in the export time.
    let (api, cli) = (
        zip_files(&from_api),
        zip_files(&std::fs::read(&cli_file).unwrap()),
    );
    let names = |files: &[(String, Vec<u8>)]| files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&api), names(&cli));
    for ((name, a), (_, c)) in api.iter().zip(&cli) {
        if name != "manifest.json" {
            assert!(a == c, "{name} differs between the API and the CLI");
        }
    }
    let manifest = |files: &[(String, Vec<u8>)]| -> Value {
        let mut m: Value = serde_json::from_slice(&files.last().unwrap().1).unwrap();
        m["exported_at"] = json!(null);
        m["digest"] = json!(null);
        m
    };
    assert_eq!(manifest(&api), manifest(&cli));
    assert!(api.iter().any(|(n, _)| n.starts_with("draws/")));
    assert!(api.iter().any(|(n, _)| n.ends_with("/document.automerge")));
    // Every record has its notice and record form as PDFs, and the demo's 责令改正 its order.
    let count = |suffix: &str| api.iter().filter(|(n, _)| n.ends_with(suffix)).count();
    let records = count("/document.automerge");
    assert_eq!(count("/notice.pdf"), records);
    assert_eq!(count("/record.pdf"), records);
    assert_eq!(count("/rectification.pdf"), 1);
    assert!(
        api.iter()
            .filter(|(n, _)| n.ends_with(".pdf"))
            .all(|(_, b)| b.starts_with(b"%PDF-"))
    );

    // One byte changed in one file, the ZIP written again around it: named, exit 1.
    let tampered = dir.path().join("tampered.zip");
    for (target, _) in &api {
        let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, bytes) in &api {
            out.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
                .unwrap();
            let mut bytes = bytes.clone();
            if name == target {
                let at = bytes.len() / 2;
                bytes[at] ^= 0x20;
            }
            out.write_all(&bytes).unwrap();
        }
        std::fs::write(&tampered, out.finish().unwrap().into_inner()).unwrap();
        let (ok, out) = dossier_verify(&tampered);
        assert!(
            !ok && out.starts_with(&format!("NOT verified: {target}: ")),
            "{target}: {out}"
        );
    }
    std::fs::write(&tampered, b"not a zip").unwrap();
    let (ok, out) = dossier_verify(&tampered);
    assert!(!ok && out.contains("not a ZIP"), "{out}");
}

/// A reqwest client, once the TLS provider every client in a process linking the server needs
/// is installed.
fn http_client() -> reqwest::Client {
    suiji_server::blobs::s3::install_tls_provider();
    reqwest::Client::new()
}
