//! Benchmark (not a test) of the server under abuse: a release `suiji-server` on its demo
//! data, started with at most 1,024 file descriptors, takes at once
//!
//! - 200 concurrent logins (the right demo password, from 127.0.0.2),
//! - 1,000 connections that open and then send nothing (from 127.0.0.3),
//! - 10 large CSV imports (nine of 120 MiB whose rows all fail validation, one valid file
//!   of 200,000 targets), from 127.0.0.4,
//!
//! while a real user on 127.0.0.1 asks `/health` every 20 ms and logs in and reads
//! `/api/v1/me` every 250 ms. It reports `/health` p50/p99, the real user's answers, how the
//! flood was answered and the server's peak RSS. Run with
//! `cargo build --release -p suiji-server && cargo run --release -p suiji-tests --example bench_abuse`.
//!
//! `SUIJI_BENCH_IMPORT_MB` sets the size of the bad imports, `SUIJI_BENCH_NOFILE` the
//! server's descriptor limit.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use suiji_tests::{machine, peak_mb};

use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;

const LOGINS: usize = 200;
const IDLE_CONNECTIONS: usize = 1_000;
const BAD_IMPORTS: usize = 9;
const VALID_IMPORT_ROWS: u32 = 200_000;
/// How often one import is sent in all when it is answered 503 (busy).
const IMPORT_TRIES: u32 = 20;
/// How long the idle connections are held, at most, waiting for the server to close them.
const IDLE_HOLD: Duration = Duration::from_secs(30);
/// The flood's whole run is bounded by this.
const FLOOD_LIMIT: Duration = Duration::from_secs(240);
const REAL_USER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const LOGIN_FLOOD: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const IDLE_FLOOD: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const IMPORT_FLOOD: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
const CSV_HEADER: &str = "统一社会信用代码,名称,类型,行业,区域,地址,法定代表人,登记状态,风险等级,经营异常名录,严重违法失信,投诉\n";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A client whose connections leave from `from`.
fn client(from: IpAddr) -> anyhow::Result<reqwest::Client> {
    suiji_server::blobs::s3::install_tls_provider();
    Ok(reqwest::Client::builder()
        .local_address(from)
        .timeout(Duration::from_secs(180))
        .build()?)
}

/// Tallies answers by status (or by the error, for requests that got none).
#[derive(Default)]
struct Tally {
    answers: BTreeMap<String, usize>,
    times: Vec<Duration>,
}

impl Tally {
    fn add(&mut self, outcome: Result<reqwest::StatusCode, String>, took: Duration) {
        let key = match outcome {
            Ok(status) => status.as_u16().to_string(),
            Err(e) => format!("no answer ({e})"),
        };
        *self.answers.entry(key).or_default() += 1;
        self.times.push(took);
    }

    fn unanswered(&self) -> usize {
        self.answers
            .iter()
            .filter(|(k, _)| k.starts_with("no answer"))
            .map(|(_, n)| n)
            .sum()
    }

    fn summary(&mut self) -> String {
        self.times.sort();
        format!(
            "{} requests, answers {:?}, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.times.len(),
            self.answers,
            millis(percentile(&self.times, 0.5)),
            millis(percentile(&self.times, 0.99)),
            millis(self.times.last().copied().unwrap_or_default()),
        )
    }
}

fn outcome(result: reqwest::Result<reqwest::Response>) -> Result<reqwest::StatusCode, String> {
    result.map(|r| r.status()).map_err(|e| {
        if e.is_timeout() {
            "timeout".to_owned()
        } else if e.is_connect() {
            "connect".to_owned()
        } else {
            "closed".to_owned()
        }
    })
}

fn bad_csv(megabytes: u64) -> Vec<u8> {
    let mut csv = String::from(CSV_HEADER);
    let mut i = 0u64;
    while (csv.len() as u64) < megabytes << 20 {
        // A code that fails its check: every row is an error.
        csv += &format!(
            "BAD{i:015},杭州坏行{i}餐饮管理有限公司,企业,餐饮业,西湖区,浙江省杭州市西湖区文三路{i}号,张三,存续,B,否,否,0\n"
        );
        i += 1;
    }
    csv.into_bytes()
}

fn valid_csv(rows: u32) -> Vec<u8> {
    let mut csv = String::from(CSV_HEADER);
    for i in 0..rows {
        let code = suiji_server::uscc::generate('9', '1', "330110", i);
        csv += &format!(
            "{code},杭州洪水{i}餐饮管理有限公司,企业,餐饮业,余杭区,浙江省杭州市余杭区文一西路{i}号,李四,存续,C,否,否,0\n"
        );
    }
    csv.into_bytes()
}

async fn login(http: &reqwest::Client, base: &str, username: &str) -> reqwest::Result<String> {
    let answer: serde_json::Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": username, "password": suiji_server::demo::DEMO_PASSWORD}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(answer["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// Opens a connection from `from` that sends nothing, and waits until the server closes it
/// or `IDLE_HOLD` passes. Returns whether it connected and how long until the server closed
/// it, if it did.
async fn idle_connection(address: SocketAddr) -> (bool, Option<Duration>) {
    let Ok(socket) = TcpSocket::new_v4() else {
        return (false, None);
    };
    if socket.bind(SocketAddr::new(IDLE_FLOOD, 0)).is_err() {
        return (false, None);
    }
    let Ok(mut stream) = socket.connect(address).await else {
        return (false, None);
    };
    let opened = Instant::now();
    let mut buf = [0u8; 256];
    match tokio::time::timeout(IDLE_HOLD, stream.read(&mut buf)).await {
        Ok(_) => (true, Some(opened.elapsed())),
        Err(_) => (true, None),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("machine: {}", machine());
    let bad_mb = env_number("SUIJI_BENCH_IMPORT_MB", 120);
    let nofile = env_number("SUIJI_BENCH_NOFILE", 1024);
    let root = tempfile::tempdir()?;
    let binary = std::env::current_exe()?
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("suiji-server"))
        .filter(|p| p.exists())
        .ok_or_else(|| {
            anyhow::anyhow!("build the server first: cargo build --release -p suiji-server")
        })?;
    // The shell sets the descriptor limit the issue measured against, then becomes the server.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n {nofile} && exec \"$0\" serve --demo --listen 127.0.0.1:0 --data \"$1\""
        ))
        .arg(&binary)
        .arg(root.path().join("data"))
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let port = loop {
        let line = lines
            .next()
            .ok_or_else(|| anyhow::anyhow!("server exited"))??;
        if let Some(url) = line.strip_prefix("suiji is listening on ") {
            break url.rsplit(':').next().unwrap_or_default().parse::<u16>()?;
        }
    };
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("server: {line}");
        }
    });
    let address = SocketAddr::new(REAL_USER, port);
    let base = format!("http://{address}");
    println!(
        "server: pid {pid}, descriptor limit {nofile}, demo data, resident {:.0} MB after start",
        peak_mb(pid)
    );

    let bad = bytes_of(bad_csv(bad_mb));
    let valid = bytes_of(valid_csv(VALID_IMPORT_ROWS));
    println!(
        "imports: {BAD_IMPORTS} x {:.0} MiB of bad rows, 1 x {:.1} MiB valid ({VALID_IMPORT_ROWS} rows)",
        bad.len() as f64 / 1048576.0,
        valid.len() as f64 / 1048576.0
    );

    let real = client(REAL_USER)?;
    let planner = login(&client(IMPORT_FLOOD)?, &base, "planner").await?;
    let done = Arc::new(AtomicBool::new(false));

    // The real user: /health every 20 ms on one kept-alive connection.
    let health = tokio::spawn({
        let (real, base, done) = (real.clone(), base.clone(), done.clone());
        async move {
            let mut tally = Tally::default();
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let answer = real.get(format!("{base}/health")).send().await;
                tally.add(outcome(answer), t.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tally
        }
    });
    // The real user: a fresh login and a read every 250 ms, each on a new connection.
    let sessions = tokio::spawn({
        let (base, done) = (base.clone(), done.clone());
        async move {
            let mut tally = Tally::default();
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let fresh = client(REAL_USER).expect("client");
                let result = match login(&fresh, &base, "supervisor").await {
                    Ok(token) => outcome(
                        fresh
                            .get(format!("{base}/api/v1/me"))
                            .bearer_auth(token)
                            .send()
                            .await,
                    ),
                    Err(e) => match e.status() {
                        Some(status) => Ok(status),
                        None => outcome(Err(e)),
                    },
                };
                tally.add(result, t.elapsed());
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            tally
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let flood = async {
        let idle = async {
            let all: Vec<_> = (0..IDLE_CONNECTIONS)
                .map(|_| tokio::spawn(idle_connection(address)))
                .collect();
            let mut results = Vec::new();
            for handle in all {
                results.push(handle.await.unwrap_or((false, None)));
            }
            results
        };
        let logins = async {
            let http = client(LOGIN_FLOOD).expect("client");
            let all: Vec<_> = (0..LOGINS)
                .map(|n| {
                    let (http, base) = (http.clone(), base.clone());
                    tokio::spawn(async move {
                        let t = Instant::now();
                        let username = format!("inspector{}", n % 60 + 1);
                        let answer = http
                            .post(format!("{base}/api/v1/auth/login"))
                            .json(&json!({
                                "username": username,
                                "password": suiji_server::demo::DEMO_PASSWORD,
                            }))
                            .send()
                            .await;
                        (outcome(answer), t.elapsed())
                    })
                })
                .collect();
            let mut tally = Tally::default();
            for handle in all {
                if let Ok((answer, took)) = handle.await {
                    tally.add(answer, took);
                }
            }
            tally
        };
        let imports = async {
            let http = client(IMPORT_FLOOD).expect("client");
            let bodies = (0..BAD_IMPORTS).map(|_| bad).chain(std::iter::once(valid));
            let all: Vec<_> = bodies
                .map(|body| {
                    let (http, base, token) = (http.clone(), base.clone(), planner.clone());
                    tokio::spawn(async move {
                        let t = Instant::now();
                        // As a real client does: a 503 is sent again after its Retry-After,
                        // a bounded number of times.
                        let mut tries = 0;
                        loop {
                            tries += 1;
                            let answer = http
                                .post(format!("{base}/api/v1/targets/import"))
                                .bearer_auth(&token)
                                .header("content-type", "text/csv")
                                .body(body)
                                .send()
                                .await;
                            let wait = match &answer {
                                Ok(r) if r.status() == 503 && tries < IMPORT_TRIES => r
                                    .headers()
                                    .get("retry-after")
                                    .and_then(|v| v.to_str().ok()?.parse().ok())
                                    .map(Duration::from_secs),
                                _ => None,
                            };
                            if let Some(wait) = wait {
                                tokio::time::sleep(wait).await;
                                continue;
                            }
                            let size = match &answer {
                                Ok(r) => r.content_length().unwrap_or(0),
                                Err(_) => 0,
                            };
                            break (outcome(answer), t.elapsed(), size, tries);
                        }
                    })
                })
                .collect();
            let mut tally = Tally::default();
            let mut largest_answer = 0;
            let mut sent = 0;
            for handle in all {
                if let Ok((answer, took, size, tries)) = handle.await {
                    tally.add(answer, took);
                    largest_answer = largest_answer.max(size);
                    sent += tries;
                }
            }
            (tally, largest_answer, sent)
        };
        tokio::join!(idle, logins, imports)
    };
    let (idle, mut logins, (mut imports, largest_answer, import_sends)) =
        tokio::time::timeout(FLOOD_LIMIT, flood).await?;
    let flood_time = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let mut health = health.await?;
    let mut sessions = sessions.await?;

    let connected = idle.iter().filter(|(c, _)| *c).count();
    let mut closed: Vec<Duration> = idle.iter().filter_map(|(_, d)| *d).collect();
    closed.sort();
    println!("flood over in {:.1} s", flood_time.as_secs_f64());
    println!(
        "idle connections: {connected} of {IDLE_CONNECTIONS} connected, {} closed by the server \
         within {} s (median after {:.1} s)",
        closed.len(),
        IDLE_HOLD.as_secs(),
        percentile(&closed, 0.5).as_secs_f64()
    );
    println!("flood logins: {}", logins.summary());
    println!(
        "imports: {}; {import_sends} sends in all (503s sent again after Retry-After); \
         largest answer {largest_answer} bytes",
        imports.summary()
    );
    println!("real user /health: {}", health.summary());
    println!("real user login + /me: {}", sessions.summary());
    let peak = peak_mb(pid);
    println!("server peak RSS: {peak:.0} MB");
    let still = real.get(format!("{base}/health")).send().await?.status();
    println!("after the flood /health answers {still}");

    let _ = child.kill();
    let _ = child.wait();
    let real_failures = health.unanswered()
        + sessions.unanswered()
        + sessions
            .answers
            .iter()
            .filter(|(k, _)| k.as_str() != "200" && !k.starts_with("no answer"))
            .map(|(_, n)| n)
            .sum::<usize>();
    let p99 = percentile(&health.times, 0.99);
    println!(
        "aims: /health p99 {:.1} ms (aim < 100), peak RSS {peak:.0} MB (aim < 1024), \
         real requests not answered 200: {real_failures} (aim 0)",
        millis(p99)
    );
    Ok(())
}

/// Bodies shared by every request that sends them, without copying: the benchmark's
/// process ends soon after, so leaking them costs nothing.
fn bytes_of(bytes: Vec<u8>) -> &'static [u8] {
    bytes.leak()
}
