//! The `suiji-server` binary on PostgreSQL: `store copy` moving a demo agency out of its
//! SQLite data directory, and what still verifies afterwards. These need a PostgreSQL
//! database (`SUIJI_TEST_DATABASE`, which scripts/with-postgres sets) and return at once
//! without one; each works in a schema of its own.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use suiji_mobile_core::sync::wire::WholeBlob;
use suiji_server::blobs::BlobStore;
use suiji_server::draw::DrawRecord;
use suiji_server::store::sql::Conn;

const BIN: &str = env!("CARGO_BIN_EXE_suiji-server");

/// A fresh schema in the test database, as a URL that selects it; `None` without one.
fn fresh_database(name: &str) -> Option<String> {
    let base = std::env::var("SUIJI_TEST_DATABASE")
        .ok()
        .filter(|url| url.starts_with("postgres"))?;
    let schema = format!("cli_{name}_{}", std::process::id());
    let create = base.clone();
    let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}");
    std::thread::spawn(move || Conn::postgres(&create)?.execute_batch(&sql))
        .join()
        .unwrap()
        .expect("a schema for the test");
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-csearch_path%3D{schema}"))
}

struct Running {
    child: Child,
    base: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path, database: Option<&str>, blobs: Option<&str>, demo: bool) -> Running {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .env_remove("SUIJI_DATABASE")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(url) = database {
        cmd.args(["--database", url]);
    }
    if let Some(blobs) = blobs {
        cmd.args(["--blobs", blobs]);
    }
    if demo {
        cmd.arg("--demo");
    }
    let mut child = cmd.spawn().expect("start suiji-server");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .expect("read stdout");
        if let Some(url) = line.strip_prefix("suiji is listening on ") {
            break url.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Running { child, base }
}

/// Stops a server as Ctrl-C does and waits for it.
fn stop(mut running: Running) {
    let pid = running.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while running.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "server did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SUIJI_DATABASE")
        .output()
        .unwrap()
}

/// `suiji-server store copy --from SOURCE --to URL [--blobs BLOBS]`.
fn store_copy(source: &Path, url: &str, blobs: Option<&str>) -> Output {
    let mut args = vec![
        "store",
        "copy",
        "--from",
        source.to_str().unwrap(),
        "--to",
        url,
    ];
    if let Some(blobs) = blobs {
        args.extend(["--blobs", blobs]);
    }
    run(&args)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn get_status(base: &str, token: &str, path: &str) -> (u16, Value) {
    let response = http_client()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(base: &str, token: &str, path: &str) -> Value {
    let (status, body) = get_status(base, token, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

async fn token(base: &str, username: &str) -> String {
    let response = http_client()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": username, "password": suiji_server::demo::DEMO_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "log in as {username}");
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// Every draw record of the agency, by id (they count from 1), as the API serves them to a
/// planner.
async fn draws(base: &str, token: &str) -> Vec<(i64, Value)> {
    let mut out = Vec::new();
    for id in 1.. {
        match get_status(base, token, &format!("/api/v1/draws/{id}")).await {
            (200, record) => out.push((id, record)),
            (404, _) => break,
            (status, body) => panic!("draw {id}: {status} {body}"),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn store_copy_moves_a_demo_agency_to_postgres_where_the_audit_chain_and_every_draw_verify() {
    let Some(url) = fresh_database("copy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (source, target) = (dir.path().join("sqlite"), dir.path().join("postgres"));
    std::fs::create_dir_all(&target).unwrap();

    // The agency on SQLite, as `serve --demo` leaves it, and a photo in its blob store.
    let running = serve(&source, None, None, true);
    let photo = b"\xff\xd8\xff\xe0 a photo's bytes".to_vec();
    let store = suiji_server::blobs::FsBlobStore::open(
        &source.join("blobs"),
        suiji_server::blobs::DEFAULT_MAX_BLOB,
    )
    .unwrap();
    let blob = WholeBlob {
        sha256: suiji_server::draw::algorithm::sha256_hex(&photo),
        bytes: photo,
    };
    let stored = store
        .put_many(std::slice::from_ref(&blob), usize::MAX)
        .unwrap();
    assert!(stored[0].as_ref().is_ok_and(|s| s.complete));
    let planner = token(&running.base, "planner").await;
    let before = draws(&running.base, &planner).await;
    assert!(before.len() >= 2, "the demo has draws: {}", before.len());
    let stats_before = get(&running.base, &planner, "/api/v1/stats?year=2026").await;
    stop(running);

    // Copying while the SQLite server runs is refused: its data would move under the copy.
    let running = serve(&source, None, None, false);
    let out = store_copy(&source, &url, None);
    assert!(
        !out.status.success(),
        "copied from a running server: {}",
        text(&out)
    );
    assert!(text(&out).contains("in use"), "{}", text(&out));
    stop(running);

    // Into the S3 bucket of the suite's second pass (scripts/with-s3), else a directory.
    let blobs = match std::env::var("SUIJI_TEST_BLOBS") {
        Ok(bucket) => format!(
            "{}/copy_{}",
            bucket.trim_end_matches('/'),
            std::process::id()
        ),
        Err(_) => target.join("blobs").to_str().unwrap().to_owned(),
    };
    let out = store_copy(&source, &url, Some(&blobs));
    assert!(out.status.success(), "store copy: {}", text(&out));
    let report = text(&out);
    assert!(report.contains("audit log intact"), "{report}");

    // The copy verifies on its own, as `audit verify` checks it.
    let out = run(&["audit", "verify", "--database", &url]);
    assert!(out.status.success(), "audit verify: {}", text(&out));
    // A second copy into the same database is refused; the first stays whole.
    let out = store_copy(&source, &url, None);
    assert!(!out.status.success(), "copied twice: {}", text(&out));
    assert!(text(&out).contains("already holds data"), "{}", text(&out));

    // Blobs: every file of the source is in the target store, byte for byte.
    let max = suiji_server::blobs::DEFAULT_MAX_BLOB;
    let copied: Box<dyn BlobStore> = if suiji_server::blobs::s3::is_s3_url(&blobs) {
        // Staging in the target database, as the servers on the copy do.
        let db = suiji_server::db::Db::open_postgres(&url).unwrap();
        Box::new(suiji_server::blobs::S3BlobStore::open(&blobs, db, max).unwrap())
    } else {
        Box::new(suiji_server::blobs::FsBlobStore::open(Path::new(&blobs), max).unwrap())
    };
    let mut source_blobs = Vec::new();
    collect_files(&source.join("blobs"), &mut source_blobs);
    assert!(
        source_blobs
            .iter()
            .any(|(name, _)| name.replace('/', "") == blob.sha256)
    );
    for (name, bytes) in &source_blobs {
        let copied = copied.read(&name.replace('/', "")).unwrap_or_default();
        assert!(copied == *bytes, "blob {name} was copied");
    }
    let mut listed = copied.list().unwrap();
    listed.sort();
    let mut expected: Vec<String> = source_blobs
        .iter()
        .map(|(n, _)| n.replace('/', ""))
        .collect();
    expected.sort();
    assert_eq!(listed, expected, "nothing else is in the target store");

    // A server on the copy, holding the key that sealed its open commitments, serves the same
    // agency: the same draw records, each verifying, the same statistics.
    std::fs::copy(
        source.join(suiji_server::draw::seal::KEY_FILE),
        target.join(suiji_server::draw::seal::KEY_FILE),
    )
    .unwrap();
    // In demo mode, whose accounts' public password the server otherwise refuses.
    let on_s3 = suiji_server::blobs::s3::is_s3_url(&blobs).then_some(blobs.as_str());
    let running = serve(&target, Some(&url), on_s3, true);
    let planner = token(&running.base, "planner").await;
    let after = draws(&running.base, &planner).await;
    assert_eq!(after, before, "the draw records are the same");
    for (id, record) in &after {
        let record: DrawRecord = serde_json::from_value(record.clone()).unwrap();
        assert_eq!(suiji_server::draw::verify(&record), Ok(()), "draw {id}");
    }
    let stats_after = get(&running.base, &planner, "/api/v1/stats?year=2026").await;
    assert_eq!(stats_after, stats_before);

    // New rows continue after the copied ids rather than colliding with them.
    let response = http_client()
        .post(format!("{}/api/v1/departments", running.base))
        .bearer_auth(&planner)
        .json(&json!({"code": "COPY", "name": "迁移后新建的部门"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        201,
        "{:?}",
        response.text().await
    );
    stop(running);
}

/// Every file under `dir`, by its path relative to `dir`, with its bytes.
fn collect_files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let name = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    if dir.exists() {
        walk(dir, dir, out);
    }
}

/// A reqwest client, once the TLS provider every client in a process linking the server needs
/// is installed.
fn http_client() -> reqwest::Client {
    suiji_server::blobs::s3::install_tls_provider();
    reqwest::Client::new()
}
