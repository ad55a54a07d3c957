//! Benchmark (not a test): how long `serve --demo` takes to fill an empty data
//! directory and start, and how long a 100,000-row CSV import takes through
//! the real HTTP endpoint. Run with
//! `cargo run --release -p suiji-server --example bench_registry`.

use std::time::Instant;

use serde_json::{Value, json};
use suiji_server::{Config, auth, demo, uscc};

const ROWS: u32 = 100_000;

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

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("machine: {}", machine());
    let dir = tempfile::tempdir()?;

    // 1. Demo start: open an empty directory, seed it, bind a listener.
    let started = Instant::now();
    let state = suiji_server::open(Config {
        database: None,
        blobs: None,
        data_dir: dir.path().join("demo"),
        demo: true,
        transport: Default::default(),
        public_url: None,
    })?;
    let opened = started.elapsed();
    let summary = tokio::task::spawn_blocking({
        let db = state.db.clone();
        let calendar = state.calendar();
        let seal = state.seal.clone();
        move || demo::seed(&db, &calendar, &seal)
    })
    .await??;
    let seeded = started.elapsed();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!(
        "demo start: {:.0} ms to listening (open {:.0} ms, seed {} targets / {} inspectors {:.0} ms)",
        started.elapsed().as_secs_f64() * 1e3,
        opened.as_secs_f64() * 1e3,
        summary.targets,
        summary.inspectors,
        (seeded - opened).as_secs_f64() * 1e3
    );
    drop(listener);

    // 2. A 100,000-row import through HTTP on a fresh, non-demo server.
    let state = suiji_server::open(Config {
        database: None,
        blobs: None,
        data_dir: dir.path().join("import"),
        demo: false,
        transport: Default::default(),
        public_url: None,
    })?;
    let hash = auth::hash_password("benchmark-password-1")?;
    state.db.write_blocking(|tx| {
        suiji_server::accounts::insert_user(
            tx,
            "bench",
            "planner",
            "P",
            &hash,
            &[auth::Role::Planner],
        )
        .map(|_| ())
    })?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(suiji_server::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));
    let http = http_client();
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "planner", "password": "benchmark-password-1"}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let mut csv = String::from(
        "统一社会信用代码,名称,类型,行业,区域,地址,法定代表人,登记状态,风险等级,经营异常名录,严重违法失信,投诉\n",
    );
    for i in 0..ROWS {
        let code = uscc::generate('9', '1', "330106", i);
        let risk = ["A", "B", "C", "D"][i as usize % 4];
        csv += &format!(
            "{code},杭州批量{i}餐饮管理有限公司,企业,餐饮业,西湖区,浙江省杭州市西湖区文三路{i}号,张三,存续,{risk},否,否,0\n"
        );
    }
    let bytes = csv.into_bytes();
    let size_mb = bytes.len() as f64 / 1e6;
    let started = Instant::now();
    let response = http
        .post(format!("{base}/api/v1/targets/import"))
        .bearer_auth(&token)
        .header("content-type", "text/csv")
        .body(bytes)
        .send()
        .await?;
    let status = response.status();
    let report: Value = response.json().await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(status.is_success(), "import failed: {status} {report}");
    println!(
        "import: {} rows ({size_mb:.1} MB CSV) created={} in {:.0} ms ({:.0} rows/s)",
        ROWS,
        report["created"],
        elapsed.as_secs_f64() * 1e3,
        f64::from(ROWS) / elapsed.as_secs_f64()
    );
    println!("peak RSS of this process: {:.0} MB", peak_rss_mb());
    Ok(())
}

/// A reqwest client, once the TLS provider every client in a process linking the server needs
/// is installed.
fn http_client() -> reqwest::Client {
    suiji_server::blobs::s3::install_tls_provider();
    reqwest::Client::new()
}
