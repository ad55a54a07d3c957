//! Fixtures for end-to-end tests: a real suiji server on 127.0.0.1:0 with a
//! temporary data directory, and a small JSON client that logs in as a user.

pub mod proxy;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};
use suiji_server::auth::{Role, hash_password};
use suiji_server::{AppState, Config, accounts};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A name no other test server of any test process running now has (`test_PID_N`), for its
/// PostgreSQL schema or bucket prefix.
fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The database of a test server whose data directory is `dir`: `None` (the SQLite file in
/// `dir`) unless `SUIJI_TEST_DATABASE` names a PostgreSQL database, and then a fresh schema of
/// its own in that database, its URL kept in `dir` so that a restart finds it again.
pub fn test_database(dir: &Path) -> Option<String> {
    let kept = dir.join(DATABASE_URL_FILE);
    if let Ok(url) = std::fs::read_to_string(&kept) {
        return Some(url);
    }
    let base = std::env::var("SUIJI_TEST_DATABASE")
        .ok()
        .filter(|url| url.starts_with("postgres"))?;
    let schema = unique_name();
    // The synchronous client blocks on a runtime of its own: not on a test's async thread.
    let create = base.clone();
    let made = std::thread::spawn(move || -> suiji_server::Result<String> {
        let conn = suiji_server::store::sql::Conn::postgres(&create)?;
        conn.execute_batch(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))?;
        Ok(schema)
    })
    .join()
    .expect("schema thread");
    let schema = made.expect("a schema for the test server");
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}&application_name={schema}");
    std::fs::write(&kept, &url).expect("keep the test database's URL");
    Some(url)
}

/// The blob store of a test server whose data directory is `dir`: `None` (a directory in
/// `dir`) unless `SUIJI_TEST_BLOBS` names an S3 bucket (`s3://bucket`), and then a prefix of
/// its own in that bucket, kept in `dir` so that a restart finds it again. The endpoint and
/// keys come from the `AWS_*` variables, as for the server.
pub fn test_blobs(dir: &Path) -> Option<String> {
    let kept = dir.join(BLOBS_URL_FILE);
    if let Ok(url) = std::fs::read_to_string(&kept) {
        return Some(url);
    }
    let base = std::env::var("SUIJI_TEST_BLOBS")
        .ok()
        .filter(|url| url.starts_with("s3://"))?;
    let url = format!("{}/{}", base.trim_end_matches('/'), unique_name());
    std::fs::write(&kept, &url).expect("keep the test blob store's URL");
    Some(url)
}

/// The configuration of a test server on the data directory `dir`: its database and blob
/// store as [`test_database`] and [`test_blobs`] give them, not in demo mode, default limits.
pub fn test_config(dir: &Path) -> Config {
    Config {
        database: test_database(dir),
        blobs: test_blobs(dir),
        data_dir: dir.to_owned(),
        demo: false,
        transport: Default::default(),
        public_url: None,
    }
}

/// The file in a test server's data directory that names its S3 blob store.
const BLOBS_URL_FILE: &str = "test-blobs-url";

/// The file in a test server's data directory that names its PostgreSQL database.
const DATABASE_URL_FILE: &str = "test-database-url";

/// The file in a backup of a data directory that holds its PostgreSQL schema's dump.
const DATABASE_DUMP: &str = "database.sql";

/// Completes a copy `backup` of the data directory `dir` (whose files the caller copied) with
/// the test server's database when that is PostgreSQL: its schema, dumped by `pg_dump`.
pub fn back_up_database(dir: &Path, backup: &Path) {
    let Ok(url) = std::fs::read_to_string(dir.join(DATABASE_URL_FILE)) else {
        return;
    };
    let out = std::process::Command::new("pg_dump")
        .args(["--no-owner", "--schema", &schema_of(&url), "--file"])
        .arg(backup.join(DATABASE_DUMP))
        .arg(&url)
        .output()
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Puts back the database [`back_up_database`] saved in `backup` (the caller copies the files).
pub fn restore_database(dir: &Path, backup: &Path) {
    let Ok(url) = std::fs::read_to_string(dir.join(DATABASE_URL_FILE)) else {
        return;
    };
    let schema = schema_of(&url);
    let out = std::process::Command::new("psql")
        .args(["--quiet", "--set", "ON_ERROR_STOP=1", "--command"])
        .arg(format!("DROP SCHEMA {schema} CASCADE"))
        .arg("--file")
        .arg(backup.join(DATABASE_DUMP))
        .arg(&url)
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The schema a test database URL names.
fn schema_of(url: &str) -> String {
    let (_, rest) = url
        .split_once("search_path%3D")
        .expect("a test database URL");
    rest.split('&').next().unwrap_or(rest).to_owned()
}

/// Password given to every account the fixtures create.
pub const PASSWORD: &str = "correct-horse-battery-staple";

/// A running server; stops and deletes its data directory when dropped.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The server's state, for inspecting the database directly.
    pub state: AppState,
    /// The data directory.
    pub dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

/// Sends the servers' log (errors only, unless `RUST_LOG` says otherwise) to the output of the
/// test that runs them, so a failing test shows why its server answered 500.
fn log_to_test_output() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

impl TestServer {
    /// Starts a server (not in demo mode) with one account per role:
    /// `admin`, `planner`, `supervisor` and `inspector`, password [`PASSWORD`].
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// [`TestServer::start`] with the configuration changed by `tweak` first (small
    /// transport limits, say).
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let state = suiji_server::open(config).expect("open server state");
        let hash = hash_password(PASSWORD).expect("hash");
        Self::create_accounts(&state, &hash);
        Self::serve(dir, state).await
    }

    /// A server on the demo agency, as `suiji-server serve --demo` starts it: demo accounts
    /// (password [`suiji_server::demo::DEMO_PASSWORD`]), registry, draws and the walked
    /// records, some published.
    pub async fn start_demo() -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = suiji_server::open(Config {
            demo: true,
            ..test_config(dir.path())
        })
        .expect("open server state");
        suiji_server::demo::seed(&state.db, &state.calendar(), &state.seal).expect("seed the demo");
        Self::serve(dir, state).await
    }

    /// Starts a server on an existing data directory (a restart).
    pub async fn start_in(dir: TempDir) -> TestServer {
        let state = suiji_server::open(test_config(dir.path())).expect("reopen server state");
        Self::serve(dir, state).await
    }

    /// A second server process on the same PostgreSQL database as `first`, with a data
    /// directory of its own holding a copy of `first`'s draw seal key, as docs/deploy.md sets
    /// up several servers; `None` when the tests run on SQLite, whose file one server owns.
    pub async fn start_beside(first: &TestServer) -> Option<TestServer> {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::share_database(first, dir.path(), true)?;
        Some(Self::start_in(dir).await)
    }

    /// Points the data directory `dir` at `first`'s PostgreSQL database (`None` on SQLite) and
    /// its S3 blob store if it has one, copying `first`'s draw seal key there when `with_seal_key`.
    pub fn share_database(first: &TestServer, dir: &Path, with_seal_key: bool) -> Option<()> {
        let url = std::fs::read_to_string(first.dir.path().join(DATABASE_URL_FILE)).ok()?;
        std::fs::write(dir.join(DATABASE_URL_FILE), url).expect("write the database URL");
        // One bucket prefix too, when blobs are in S3: the blobs the database lists.
        if let Ok(blobs) = std::fs::read_to_string(first.dir.path().join(BLOBS_URL_FILE)) {
            std::fs::write(dir.join(BLOBS_URL_FILE), blobs).expect("write the blob store URL");
        }
        if with_seal_key {
            let key = suiji_server::draw::seal::KEY_FILE;
            std::fs::copy(first.dir.path().join(key), dir.join(key)).expect("copy the seal key");
        }
        Some(())
    }

    /// Stops the server and hands back its data directory, for a restart.
    pub async fn stop_keeping_data(mut self) -> TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task").expect("server io");
        }
        let placeholder = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, placeholder)
    }

    fn create_accounts(state: &AppState, hash: &str) {
        state
            .db
            .write_blocking(|tx| {
                for (name, role) in [
                    ("admin", Role::Admin),
                    ("planner", Role::Planner),
                    ("supervisor", Role::Supervisor),
                    ("inspector", Role::Inspector),
                ] {
                    accounts::insert_user(tx, "test", name, name, hash, &[role])?;
                }
                Ok(())
            })
            .expect("create accounts");
    }

    async fn serve(dir: TempDir, state: AppState) -> TestServer {
        log_to_test_output();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr: SocketAddr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(suiji_server::serve(listener, state.clone(), async {
            let _ = rx.await;
        }));
        TestServer {
            base: format!("http://{addr}"),
            addr,
            state,
            dir,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// A client logged in as `username` with [`PASSWORD`].
    pub async fn login(&self, username: &str) -> Client {
        self.login_with(username, PASSWORD).await
    }

    /// A client logged in as `username` with `password`.
    pub async fn login_with(&self, username: &str, password: &str) -> Client {
        Client::logged_in(&self.base, username, password).await
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task").expect("server io");
        }
    }
}

/// A server in a process of its own (`suiji-test-server`) on the database, blob store and
/// seal key of another server: for tests of several servers behind one address, whose memory
/// is truly apart and one of which may die at any instruction. Killed when dropped.
pub struct ServerProcess {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The address it listens on.
    pub addr: SocketAddr,
    child: std::process::Child,
    _dir: TempDir,
}

impl ServerProcess {
    /// Starts a process of `program` (`env!("CARGO_BIN_EXE_suiji-test-server")`, which only
    /// integration tests see) serving `first`'s PostgreSQL database (and S3 bucket, if it has
    /// one) with its seal key; `None` when `first` is on SQLite, whose file one server owns.
    pub fn start_beside(program: &str, first: &TestServer) -> Option<ServerProcess> {
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("temp dir");
        TestServer::share_database(first, dir.path(), true)?;
        let mut child = std::process::Command::new(program)
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start suiji-test-server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("its stdout"))
            .read_line(&mut line)
            .expect("read its address");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the server process did not start: {line:?}"))
            .to_owned();
        let addr = base
            .trim_start_matches("http://")
            .parse()
            .expect("an address");
        Some(ServerProcess {
            base,
            addr,
            child,
            _dir: dir,
        })
    }

    /// A client logged in as `username` with [`PASSWORD`].
    pub async fn login(&self, username: &str) -> Client {
        Client::logged_in(&self.base, username, PASSWORD).await
    }

    /// Kills the process at once (SIGKILL): no shutdown, nothing flushed.
    pub fn kill(mut self) {
        self.child.kill().expect("kill the server process");
        self.child.wait().expect("reap it");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A JSON client, optionally holding a bearer token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// The access token sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// The refresh token from login.
    pub refresh_token: Option<String>,
}

impl Client {
    /// A client without credentials.
    pub fn anonymous(base: &str) -> Client {
        Client {
            http: http_following_redirects(),
            base: base.to_owned(),
            token: None,
            refresh_token: None,
        }
    }

    /// A client of the server at `base`, logged in as `username` with `password`.
    pub async fn logged_in(base: &str, username: &str, password: &str) -> Client {
        let mut client = Client::anonymous(base);
        let (status, body) = client
            .post(
                "/api/v1/auth/login",
                &json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login as {username}: {body}");
        client.token = Some(body["access_token"].as_str().expect("token").to_owned());
        client.refresh_token = body["refresh_token"].as_str().map(str::to_owned);
        client
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// Sends a prepared request and returns the status and JSON body
    /// (`Value::Null` when the body is not JSON).
    pub async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = req.send().await.expect("request reaches the server");
        let status = response.status();
        let bytes = response.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    /// POST JSON to `path`.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    /// PUT JSON to `path`.
    pub async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.request(reqwest::Method::PUT, path).json(body))
            .await
    }

    /// POST raw bytes with a content type to `path`.
    pub async fn post_bytes(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        self.send(
            self.request(reqwest::Method::POST, path)
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    /// A prepared request, for tests that need to shape it themselves.
    pub fn raw(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request(method, path)
    }
}

/// A department, an item and a few targets most registry tests need.
pub async fn seed_registry(planner: &Client) {
    let (s, b) = planner
        .post(
            "/api/v1/departments",
            &json!({"code": "SCJG", "name": "市场监督管理局"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = planner
        .post(
            "/api/v1/departments",
            &json!({"code": "YJGL", "name": "应急管理局"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    for (code, dept, qualification) in [
        ("SCJG-SP-002", "SCJG", "食品安全"),
        ("YJGL-WH-001", "YJGL", "危险化学品"),
    ] {
        let (s, b) = planner
            .post("/api/v1/items", &item_body(code, dept, qualification))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
}

/// A valid body for `POST /api/v1/items`.
pub fn item_body(code: &str, department: &str, qualification: &str) -> Value {
    json!({
        "code": code,
        "name": "餐饮服务提供者经营活动的检查",
        "legal_basis": "《中华人民共和国食品安全法》第一百一十条",
        "department": department,
        "target_type": "enterprise",
        "methods": ["on_site"],
        "content": "许可证、从业人员健康证明",
        "class": "key",
        "default_ratio": 0.1,
        "frequency": 1,
        "qualification": qualification,
    })
}

/// A valid body for `POST /api/v1/targets` with a generated valid code.
pub fn target_body(serial: u32, name: &str) -> Value {
    json!({
        "uscc": suiji_server::uscc::generate('9', '1', "330106", serial),
        "name": name,
        "target_type": "enterprise",
        "industry": "餐饮业",
        "region": "西湖区",
        "address": "浙江省杭州市西湖区文三路1号",
        "legal_rep": "张三",
        "reg_status": "存续",
        "risk_class": "B",
    })
}

/// What [`seed_agency`] made.
pub struct Agency {
    /// Inspector ids by department code.
    pub inspectors: Vec<(i64, String)>,
    /// Usernames of the inspectors, in the same order.
    pub inspector_users: Vec<String>,
    /// The plan id.
    pub plan_id: i64,
    /// Ids of the imported targets.
    pub targets: usize,
}

/// A small agency for draw tests: departments SCJG and YJGL with one item
/// each, `per_department` inspectors in each (users `insp-<dept>-<n>`),
/// `targets` 餐饮业 targets spread over risk classes A–D (every 10th on the
/// 严重违法失信 list), and a plan for 2026.
pub async fn seed_agency(server: &TestServer, per_department: usize, targets: u32) -> Agency {
    let admin = server.login("admin").await;
    let planner = server.login("planner").await;
    seed_registry(&planner).await;
    let mut inspectors = Vec::new();
    let mut inspector_users = Vec::new();
    for (dept, qualification) in [("SCJG", "食品安全"), ("YJGL", "危险化学品")] {
        for n in 1..=per_department {
            let username = format!("insp-{}-{n}", dept.to_lowercase());
            let (s, user) = admin
                .post(
                    "/api/v1/users",
                    &json!({"username": username, "display_name": format!("{dept}检查员{n}"),
                            "password": PASSWORD, "roles": ["inspector"]}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{user}");
            let (s, inspector) = planner
                .post(
                    "/api/v1/inspectors",
                    &json!({"user_id": user["id"], "name": format!("{dept}检查员{n}"),
                            "cert_no": format!("浙{dept}{n:05}"), "department": dept,
                            "expertise": [qualification], "region": "西湖区"}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{inspector}");
            inspectors.push((inspector["id"].as_i64().unwrap(), dept.to_owned()));
            inspector_users.push(username);
        }
    }
    let mut csv = String::from(
        "uscc,name,target_type,industry,region,address,legal_rep,reg_status,risk_class,flag_serious\n",
    );
    for i in 0..targets {
        let code = suiji_server::uscc::generate('9', '1', "330106", 1000 + i);
        let risk = ["A", "A", "B", "B", "B", "C", "C", "D", "A", "B"][i as usize % 10];
        let serious = if i % 10 == 9 { "是" } else { "否" };
        csv += &format!(
            "{code},杭州测试{i}餐饮有限公司,enterprise,餐饮业,西湖区,文三路{i}号,张三,存续,{risk},{serious}\n"
        );
    }
    let (s, report) = planner
        .post_bytes("/api/v1/targets/import", "text/csv", csv.into_bytes())
        .await;
    assert_eq!(s, StatusCode::OK, "{report}");
    let (s, plan) = planner
        .post(
            "/api/v1/plans",
            &json!({"number": "P-2026-DRAW", "name": "2026年度抽查计划", "year": 2026, "department": "SCJG"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{plan}");
    Agency {
        inspectors,
        inspector_users,
        plan_id: plan["id"].as_i64().unwrap(),
        targets: targets as usize,
    }
}

/// A simulated phone: a real mobile-core store in a temporary directory,
/// logged in as one inspector with the session kept in the store, as an app is.
pub struct Phone {
    /// The phone's store.
    pub store: std::sync::Arc<suiji_mobile_core::Store>,
    /// Inspector id.
    pub inspector_id: i64,
    /// Login name.
    pub username: String,
    _dir: TempDir,
}

impl Phone {
    /// Opens an empty store for `inspector_id` and logs `username` in on it, as an app does
    /// (`sync::session::login`): the session is bound to the store's device, the inspector's
    /// signing key registered, and the session kept in the store.
    pub async fn open(server: &TestServer, username: &str, inspector_id: i64) -> Phone {
        let dir = tempfile::tempdir().expect("phone dir");
        let options = suiji_mobile_core::StoreOptions::new(suiji_mobile_core::InspectorId::new(
            inspector_id.to_string(),
        ));
        let store = suiji_mobile_core::Store::open(dir.path(), options).expect("open phone store");
        let store = std::sync::Arc::new(store);
        {
            let (store, url, name) = (store.clone(), server.base.clone(), username.to_owned());
            tokio::task::spawn_blocking(move || {
                suiji_mobile_core::sync::session::login(
                    &store,
                    &url,
                    &name,
                    PASSWORD,
                    &suiji_mobile_core::sync::SyncOptions::default(),
                )
            })
            .await
            .expect("login thread")
            .unwrap_or_else(|e| panic!("log {username} in on a phone: {e}"));
        }
        Phone {
            store,
            inspector_id,
            username: username.to_owned(),
            _dir: dir,
        }
    }

    /// The tokens the store keeps now (they change when a sync refreshes them).
    pub fn credentials(&self) -> suiji_mobile_core::sync::client::Credentials {
        self.store
            .session()
            .expect("read the session")
            .expect("the phone is logged in")
            .credentials
    }

    /// Signs record `id` as the phone's own inspector, without a handwritten image.
    pub fn sign(&self, id: &suiji_mobile_core::RecordId) -> suiji_mobile_core::Result<()> {
        self.store
            .sign(id, self.store.inspector_id(), None)
            .map(drop)
    }

    /// Syncs (the client blocks, so off the runtime): with the kept session when `url` is the
    /// server it logged in on, else with the kept tokens through `url` (a proxy in front of
    /// the server), keeping any tokens refreshed on the way.
    pub async fn sync(
        &mut self,
        url: &str,
    ) -> suiji_mobile_core::Result<suiji_mobile_core::sync::client::SyncReport> {
        use suiji_mobile_core::sync::{SyncOptions, client, session};
        let store = self.store.clone();
        let url = url.trim_end_matches('/').to_owned();
        tokio::task::spawn_blocking(move || {
            let kept = store.session()?.expect("the phone is logged in");
            if kept.server_url == url {
                return session::sync(&store, &SyncOptions::default(), &());
            }
            let mut credentials = kept.credentials;
            let result = client::sync(&store, &url, &mut credentials, &());
            store.keep_credentials(&credentials)?;
            result
        })
        .await
        .expect("sync thread")
    }

    /// Ids of the records on the phone.
    pub fn record_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .store
            .list_tasks()
            .expect("list tasks")
            .into_iter()
            .map(|t| t.record_id.as_str().to_owned())
            .collect();
        ids.sort();
        ids
    }

    /// Heads of a record on the phone.
    pub fn heads(&self, id: &str) -> Vec<String> {
        self.store
            .record(&suiji_mobile_core::RecordId::new(id))
            .expect("record on phone")
            .heads_hex()
    }
}

/// The server's copy of a record document.
pub fn server_record(server: &TestServer, id: &str) -> suiji_mobile_core::RecordDoc {
    let id = id.to_owned();
    server
        .state
        .db
        .read_blocking(move |c| suiji_server::draw::records::load_document(c, &id))
        .expect("record on server")
}

/// Heads of a record on the server.
pub fn server_heads(server: &TestServer, id: &str) -> Vec<String> {
    server_record(server, id).heads_hex()
}

/// Entries of two observers, as many as the default rules ask a draw for.
pub fn observers() -> Value {
    json!([{"observer": "人大代表 李华", "value": "1122"}, {"observer": "记者 周敏", "value": "熊猫"}])
}

/// A drawn task for sync tests: `seed_agency` with `per_department`
/// inspectors, a food-safety task drawing `count` targets, committed and
/// drawn. Returns the agency and the task's records.
pub async fn drawn_task(
    server: &TestServer,
    per_department: usize,
    count: u32,
) -> (Agency, Vec<suiji_server::draw::records::RecordSummary>) {
    let agency = seed_agency(server, per_department, 60).await;
    let planner = server.login("planner").await;
    let (s, task) = planner
        .post(
            &format!("/api/v1/plans/{}/tasks", agency.plan_id),
            &json!({"number": "T-SYNC", "name": "餐饮服务食品安全检查", "directed": true,
                    "conditions": {"industries": ["餐饮业"]}, "count": count,
                    "items": [{"code": "SCJG-SP-002"}],
                    "window_start": "2026-09-01", "window_end": "2026-11-20"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{task}");
    let task_id = task["id"].as_i64().unwrap();
    let (s, commitment) = planner
        .post(&format!("/api/v1/tasks/{task_id}/draw/commit"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{commitment}");
    let (s, draw) = planner
        .post(
            &format!("/api/v1/tasks/{task_id}/draw"),
            &json!({"commitment_id": commitment["id"], "entropy": observers()}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{draw}");
    let records = server
        .state
        .db
        .read_blocking(move |c| suiji_server::draw::records::list(c, Some(task_id), None))
        .expect("records");
    (agency, records)
}

impl Agency {
    /// The login name of inspector `id`.
    pub fn username_of(&self, id: i64) -> &str {
        let index = self
            .inspectors
            .iter()
            .position(|(i, _)| *i == id)
            .expect("known inspector");
        &self.inspector_users[index]
    }
}

/// Answers every item of a record as checked on site with nothing found, and the result and
/// follow-up to match, so that only signatures stand between it and submission.
pub fn answer_all(doc: &mut suiji_mobile_core::RecordDoc) -> suiji_mobile_core::Result<()> {
    use suiji_mobile_core::vocab::{FollowUpMeasure, Method, ResultCategory};
    for item in doc.assignment()?.items {
        doc.set_checked(&item.code, true)?;
        doc.set_methods(&item.code, &[Method::OnSite])?;
        doc.set_finding(&item.code, "现场核查，未发现问题")?;
    }
    doc.set_result_categories(&[ResultCategory::NoProblem])?;
    doc.set_follow_up(Some(FollowUpMeasure::None), None, None)
}

/// Two partners edit record `id` offline, the way the merge tests have them: `a` answers item
/// `item`'s finding and checks it, `b` answers the same finding differently and records the
/// party's statement.
pub fn edit_apart_offline(
    a: &Phone,
    b: &Phone,
    id: &suiji_mobile_core::RecordId,
    item: &suiji_mobile_core::ItemCode,
) {
    a.store
        .edit(id, |doc| doc.set_finding(item, "证照齐全"))
        .unwrap();
    a.store.edit(id, |doc| doc.set_checked(item, true)).unwrap();
    b.store
        .edit(id, |doc| doc.set_finding(item, "健康证过期"))
        .unwrap();
    b.store
        .edit(id, |doc| doc.set_party_statement("对检查结果无异议"))
        .unwrap();
}

/// Asserts that `doc` holds both partners' edits of [`edit_apart_offline`], with the one
/// conflict between their findings shown.
pub fn assert_merged_apart(doc: &suiji_mobile_core::RecordDoc, item: &suiji_mobile_core::ItemCode) {
    let conflicts = doc.conflicts().unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(
        doc.party_statement().unwrap().as_deref(),
        Some("对检查结果无异议")
    );
    assert_eq!(doc.item(item).unwrap().checked, Some(true));
}

/// Both inspectors of a record converge, sign, and the first submits.
pub async fn sign_and_submit(
    server: &TestServer,
    a: &mut Phone,
    b: &mut Phone,
    id: &suiji_mobile_core::RecordId,
) {
    sign_and_submit_through(&server.base, &server.base, a, b, id).await;
}

/// [`sign_and_submit`] with phone `a` syncing through `url_a` and `b` through `url_b` (two
/// servers on one database, or a proxy in front of one).
pub async fn sign_and_submit_through(
    url_a: &str,
    url_b: &str,
    a: &mut Phone,
    b: &mut Phone,
    id: &suiji_mobile_core::RecordId,
) {
    a.sync(url_a).await.unwrap();
    b.sync(url_b).await.unwrap();
    a.sync(url_a).await.unwrap();
    a.sign(id).unwrap();
    a.sync(url_a).await.unwrap();
    b.sync(url_b).await.unwrap();
    b.sign(id).unwrap();
    b.sync(url_b).await.unwrap();
    a.sync(url_a).await.unwrap();
    let outcome = a.store.submit(id).unwrap();
    assert!(
        matches!(
            outcome,
            suiji_mobile_core::record::SubmitOutcome::Submitted { .. }
        ),
        "{outcome:?}"
    );
    a.sync(url_a).await.unwrap();
}

// The web console over plain HTTP: cookies, forms and their CSRF tokens.

/// A plain HTTP client (redirects followed). Every reqwest client of the tests is built here
/// or in [`http`]: a process that links the server needs a TLS provider installed first
/// (`suiji_server::blobs::s3::install_tls_provider`).
pub fn http_following_redirects() -> reqwest::Client {
    suiji_server::blobs::s3::install_tls_provider();
    reqwest::Client::new()
}

/// A client that follows no redirects, so that each answer can be checked.
pub fn http() -> reqwest::Client {
    suiji_server::blobs::s3::install_tls_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `(name, value, attributes)` of the `Set-Cookie` headers of an answer.
pub fn set_cookies(response: &reqwest::Response) -> Vec<(String, String, String)> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (pair, attributes) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=')?;
            Some((name.to_owned(), value.to_owned(), attributes.to_owned()))
        })
        .collect()
}

/// Extension of a request builder: a urlencoded form body (reqwest's `form`
/// feature is not enabled in the workspace).
pub trait FormBody {
    /// Sends `pairs` as an `application/x-www-form-urlencoded` body.
    fn form_pairs(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_pairs(self, pairs: &[(&str, &str)]) -> Self {
        use suiji_server::web::session::form_urlencode;
        let body = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", form_urlencode(k), form_urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
    }
}

/// The value of cookie `name` among `cookies`; panics if it is not there.
pub fn cookie_value(cookies: &[(String, String, String)], name: &str) -> String {
    cookies
        .iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, v, _)| v.clone())
        .unwrap_or_else(|| panic!("no cookie {name}: {cookies:?}"))
}

/// Logs in through the login form; the answer carries the session's two cookies.
pub async fn form_login(server: &TestServer, username: &str, password: &str) -> reqwest::Response {
    let client = http();
    let page = client
        .get(format!("{}/login", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let token = cookie_value(&set_cookies(&page), "suiji_login");
    client
        .post(format!("{}/login", server.base))
        .header(reqwest::header::COOKIE, format!("suiji_login={token}"))
        .form_pairs(&[
            ("csrf", token.as_str()),
            ("next", "/review"),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

/// Logs `username` in through the login form with [`PASSWORD`]; returns the
/// `Cookie` header of the console session.
pub async fn console_session(server: &TestServer, username: &str) -> String {
    let cookies = set_cookies(&form_login(server, username, PASSWORD).await);
    format!(
        "suiji_access={}; suiji_refresh={}",
        cookie_value(&cookies, "suiji_access"),
        cookie_value(&cookies, "suiji_refresh")
    )
}

/// The first CSRF token in a page (every form of a session carries the same one).
pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + 64].to_owned()
}

/// The CSRF token of the form with id `form_id` on a page.
pub fn csrf_in(html: &str, form_id: &str) -> String {
    let at = html
        .find(&format!("id=\"{form_id}\""))
        .unwrap_or_else(|| panic!("no form {form_id}"));
    csrf_of(&html[at..])
}

/// A console page as the holder of the session cookies `jar` sees it.
pub async fn console_page(server: &TestServer, jar: &str, path: &str) -> (StatusCode, String) {
    let response = http()
        .get(format!("{}{path}", server.base))
        .header(reqwest::header::COOKIE, jar)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// Posts a console form as the holder of the session cookies `jar`.
pub async fn console_post(
    server: &TestServer,
    jar: &str,
    path: &str,
    pairs: &[(&str, &str)],
) -> reqwest::Response {
    http()
        .post(format!("{}{path}", server.base))
        .header(reqwest::header::COOKIE, jar)
        .form_pairs(pairs)
        .send()
        .await
        .unwrap()
}

/// Publishes the drawn list of `task_id` (公示) as `planner`, which the
/// results of a task wait for (docs/draw.md, "Who sees a drawn list").
pub async fn publish_drawn_list(planner: &Client, task_id: i64) {
    let (s, body) = planner
        .post(&format!("/api/v1/tasks/{task_id}/draw/publish"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

/// The machine a benchmark ran on, for its report: core count and CPU model.
pub fn machine() -> String {
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

/// The peak resident set of process `pid` so far, in MB (0 if it cannot be read).
pub fn peak_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

// PDF documents, read back with poppler's tools (Debian's poppler-utils, installed by
// ./scripts/test).

/// Runs a poppler tool on `pdf` (written to a temporary file) with `args` before the file
/// name and `after` behind it; its standard output.
fn poppler(tool: &str, args: &[&str], pdf: &[u8], after: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("document.pdf");
    std::fs::write(&file, pdf).expect("write the PDF");
    let output = std::process::Command::new(tool)
        .args(args)
        .arg(&file)
        .args(after)
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{tool} (poppler-utils) runs: {e}"));
    assert!(
        output.status.success(),
        "{tool} read the PDF: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The text of a PDF as `pdftotext` extracts it, in reading order.
pub fn pdf_text(pdf: &[u8]) -> String {
    String::from_utf8(poppler("pdftotext", &["-enc", "UTF-8"], pdf, &["-"])).expect("UTF-8 text")
}

/// [`pdf_text`] with every white space removed, so that words a table cell wrapped over two
/// lines are found whole.
pub fn pdf_text_joined(pdf: &[u8]) -> String {
    pdf_text(pdf)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// The number of pages `pdfinfo` counts.
pub fn pdf_pages(pdf: &[u8]) -> usize {
    let info = String::from_utf8(poppler("pdfinfo", &[], pdf, &[])).expect("UTF-8 info");
    info.lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("pdfinfo names the page count")
}

/// The images embedded in a PDF, as `pdfimages -list` lists them: (page, width, height).
pub fn pdf_images(pdf: &[u8]) -> Vec<(usize, u32, u32)> {
    let list = String::from_utf8(poppler("pdfimages", &["-list"], pdf, &[])).expect("UTF-8");
    list.lines()
        .skip(2)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            Some((
                cols.first()?.parse().ok()?,
                cols.get(3)?.parse().ok()?,
                cols.get(4)?.parse().ok()?,
            ))
        })
        .collect()
}

/// Page `page` (from 1) drawn by `pdftoppm` at `dpi`, as PNG bytes.
pub fn pdf_page_png(pdf: &[u8], page: usize, dpi: u32) -> Vec<u8> {
    let (p, r) = (page.to_string(), dpi.to_string());
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("page");
    let root = root.to_str().expect("a UTF-8 path");
    poppler(
        "pdftoppm",
        &["-png", "-r", &r, "-f", &p, "-l", &p, "-singlefile"],
        pdf,
        &[root],
    );
    std::fs::read(dir.path().join("page.png")).expect("pdftoppm wrote page.png")
}
