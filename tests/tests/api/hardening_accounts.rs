//! Accounts under attack: sign-in limits on the API and the console, the bound on password
//! hashing, refresh-token reuse, deactivation, and input a name or a login must refuse.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, RETRY_AFTER};
use serde_json::{Value, json};
use suiji_server::auth::{Role, hash_password};
use suiji_server::throttle::{Limits, Throttle};
use suiji_server::{AppState, accounts, audit};
use suiji_tests::{
    Client, FormBody, PASSWORD, TestServer, cookie_value, http, seed_registry, set_cookies,
    target_body,
};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// A server like [`TestServer`]'s, with sign-in limits of the test's choosing.
struct LimitedServer {
    base: String,
    state: AppState,
    _dir: TempDir,
    _shutdown: oneshot::Sender<()>,
}

impl LimitedServer {
    /// Accounts `admin` and `planner` (password [`PASSWORD`]) under `limits`.
    async fn start(limits: Limits) -> LimitedServer {
        let dir = tempfile::tempdir().unwrap();
        let mut state = suiji_server::open(suiji_tests::test_config(dir.path())).unwrap();
        state.throttle = Arc::new(Throttle::new(limits));
        let hash = hash_password(PASSWORD).unwrap();
        state
            .db
            .write_blocking(|tx| {
                accounts::insert_user(tx, "test", "admin", "admin", &hash, &[Role::Admin])?;
                accounts::insert_user(tx, "test", "planner", "planner", &hash, &[Role::Planner])?;
                Ok(())
            })
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        tokio::spawn(suiji_server::serve(listener, state.clone(), async {
            let _ = rx.await;
        }));
        LimitedServer {
            base,
            state,
            _dir: dir,
            _shutdown: tx,
        }
    }

    /// `POST /api/v1/auth/login`: status, `Retry-After` and body.
    async fn login(&self, username: &str, password: &str) -> (StatusCode, Option<u64>, Value) {
        self.login_with(&http(), username, password).await
    }

    /// [`LimitedServer::login`] from the loopback address `from`.
    async fn login_from(
        &self,
        from: IpAddr,
        username: &str,
        password: &str,
    ) -> (StatusCode, Option<u64>, Value) {
        suiji_server::blobs::s3::install_tls_provider();
        let client = reqwest::Client::builder()
            .local_address(from)
            .build()
            .unwrap();
        self.login_with(&client, username, password).await
    }

    async fn login_with(
        &self,
        client: &reqwest::Client,
        username: &str,
        password: &str,
    ) -> (StatusCode, Option<u64>, Value) {
        let response = client
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let body = response.json().await.unwrap_or(Value::Null);
        (status, retry_after, body)
    }

    /// Posts the console's login form: status, `Retry-After` and page.
    async fn form_login(
        &self,
        username: &str,
        password: &str,
    ) -> (StatusCode, Option<u64>, String) {
        let client = http();
        let page = client
            .get(format!("{}/login", self.base))
            .send()
            .await
            .unwrap();
        let token = cookie_value(&set_cookies(&page), "suiji_login");
        let response = client
            .post(format!("{}/login", self.base))
            .header(COOKIE, format!("suiji_login={token}"))
            .form_pairs(&[
                ("csrf", token.as_str()),
                ("next", "/"),
                ("username", username),
                ("password", password),
            ])
            .send()
            .await
            .unwrap();
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .map(|v| v.to_str().unwrap().parse().unwrap());
        (status, retry_after, response.text().await.unwrap())
    }

    /// The audit entries of `action`, oldest first.
    fn audited(&self, action: &str) -> Vec<audit::Entry> {
        audited(&self.state, action)
    }
}

fn audited(state: &AppState, action: &str) -> Vec<audit::Entry> {
    let mut entries = state
        .db
        .read_blocking(|c| audit::recent(c, None, 10_000))
        .unwrap();
    entries.retain(|e| e.action == action);
    entries.reverse();
    entries
}

fn limits(account_attempts: u32, address_attempts: u32, window: Duration) -> Limits {
    Limits {
        account_attempts,
        address_attempts,
        window,
        tracked: NonZeroUsize::new(1_000).unwrap(),
        ..Limits::default()
    }
}

#[tokio::test]
async fn fifty_wrong_passwords_lock_the_account_the_right_one_included_until_the_window_passes() {
    let window = Duration::from_millis(1_500);
    let server = LimitedServer::start(limits(10, 1_000, window)).await;
    let mut statuses = Vec::new();
    for _ in 0..50 {
        let (status, retry_after, body) = server.login("planner", "wrong-password-1").await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"]["code"], "too_many_attempts", "{body}");
            let secs = retry_after.expect("a 429 says when to retry");
            assert!((1..=2).contains(&secs), "Retry-After {secs}");
        }
        statuses.push(status);
    }
    assert!(
        statuses[..10]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED)
    );
    assert!(
        statuses[10..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // The lock holds against the right password too: otherwise it would tell a guesser when
    // they had won. Other accounts are not touched.
    let (status, _, _) = server.login("planner", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(server.login("admin", PASSWORD).await.0, StatusCode::OK);
    // One audit entry for the lock, not one per refused attempt.
    let locks = server.audited("auth.throttle");
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(locks[0].entity, "login:planner");
    // The lock decays: the owner gets in once the window has passed.
    tokio::time::sleep(window + Duration::from_millis(100)).await;
    let (status, _, body) = server.login("planner", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn one_address_guessing_many_usernames_is_locked_out() {
    let server = LimitedServer::start(limits(10, 20, Duration::from_secs(600))).await;
    let mut statuses = Vec::new();
    for i in 0..25 {
        statuses.push(
            server
                .login(&format!("guess-{i}"), "wrong-password-1")
                .await
                .0,
        );
    }
    assert!(
        statuses[..20]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED)
    );
    assert!(
        statuses[20..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let (status, retry_after, _) = server.login("admin", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after.is_some_and(|s| s > 500), "{retry_after:?}");
    let locks = server.audited("auth.throttle");
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(locks[0].entity, "address:127.0.0.1");
}

#[tokio::test]
async fn the_console_login_form_is_locked_the_same_way() {
    let server = LimitedServer::start(limits(3, 1_000, Duration::from_secs(600))).await;
    for _ in 0..3 {
        let (status, _, _) = server.form_login("planner", "wrong-password-1").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, retry_after, page) = server.form_login("planner", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after.is_some_and(|s| s > 500), "{retry_after:?}");
    assert!(page.contains("登录失败次数过多"), "{page}");
    assert!(page.contains("<form"), "the page offers the form again");
    // The console and the API count together.
    assert_eq!(
        server.login("planner", PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(server.audited("auth.throttle").len(), 1);
}

#[tokio::test]
async fn logins_beyond_the_hashing_queue_are_turned_away_with_503() {
    let server = LimitedServer::start(Limits {
        hashing_permits: 1,
        hashing_queue: 0,
        ..limits(10, 1_000, Duration::from_secs(600))
    })
    .await;
    // The test holds the one place there is, as a login being hashed would.
    let permit = server.state.throttle.login_permit(None).await.unwrap();
    let (status, retry_after, body) = server.login("planner", PASSWORD).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "busy");
    assert_eq!(retry_after, Some(1));
    drop(permit);
    assert_eq!(server.login("planner", PASSWORD).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_login_flood_from_one_address_leaves_the_hashing_queue_to_everyone_else() {
    let server = LimitedServer::start(Limits {
        hashing_permits: 1,
        hashing_queue: 2,
        hashing_per_address: 1,
        ..limits(10, 1_000, Duration::from_secs(600))
    })
    .await;
    let flood = IpAddr::from([127, 0, 0, 2]);
    let user = IpAddr::from([127, 0, 0, 1]);
    // The test holds the flooding address's one place, as one of its logins waiting to be
    // hashed would; the queue itself still has room.
    let place = server.state.throttle.admit(Some(flood)).unwrap();
    let (status, retry_after, body) = server.login_from(flood, "planner", PASSWORD).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "busy");
    assert_eq!(retry_after, Some(1));
    let (status, _, body) = server.login_from(user, "planner", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "another address signs in: {body}");
    drop(place);
    let (status, _, body) = server.login_from(flood, "planner", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "the place was given back: {body}");
}

#[tokio::test]
async fn a_replayed_refresh_token_revokes_the_session_for_thief_and_victim() {
    let server = LimitedServer::start(Limits {
        refresh_reuse_grace: Duration::ZERO,
        ..Limits::default()
    })
    .await;
    let (status, _, first) = server.login("planner", PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    let stolen = first["refresh_token"].as_str().unwrap().to_owned();
    // The thief refreshes first and now holds a working pair.
    let anonymous = Client::anonymous(&server.base);
    let (status, thief) = anonymous
        .post("/api/v1/auth/refresh", &json!({"refresh_token": stolen}))
        .await;
    assert_eq!(status, StatusCode::OK, "{thief}");
    let mut thief_client = Client::anonymous(&server.base);
    thief_client.token = thief["access_token"].as_str().map(str::to_owned);
    assert_eq!(thief_client.get("/api/v1/me").await.0, StatusCode::OK);
    // The victim's copy of the same token comes in: reuse.
    let (status, _) = anonymous
        .post("/api/v1/auth/refresh", &json!({"refresh_token": stolen}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Everything of that session is dead now.
    assert_eq!(
        thief_client.get("/api/v1/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = anonymous
        .post(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": thief["refresh_token"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut victim = Client::anonymous(&server.base);
    victim.token = first["access_token"].as_str().map(str::to_owned);
    assert_eq!(victim.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    let reuses = server.audited("auth.refresh_reuse");
    assert_eq!(reuses.len(), 1, "{reuses:?}");
    assert_eq!(reuses[0].actor, "planner");
}

#[tokio::test]
async fn deactivation_revokes_sessions_and_reactivation_does_not_revive_them() {
    let server = TestServer::start().await;
    let admin = server.login("admin").await;
    let inspector = server.login("inspector").await;
    let (_, me) = inspector.get("/api/v1/me").await;
    let id = me["id"].as_i64().unwrap();
    let path = format!("/api/v1/users/{id}");
    let (status, body) = admin.raw_patch(&path, &json!({"active": false})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        inspector.get("/api/v1/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = admin.raw_patch(&path, &json!({"active": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        inspector.get("/api/v1/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = Client::anonymous(&server.base)
        .post(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": inspector.refresh_token}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The account itself works again.
    let again = server.login("inspector").await;
    assert_eq!(again.get("/api/v1/me").await.0, StatusCode::OK);
}

/// PATCH, which the shared client does not offer.
trait Patch {
    async fn raw_patch(&self, path: &str, body: &Value) -> (StatusCode, Value);
}

impl Patch for Client {
    async fn raw_patch(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.raw(reqwest::Method::PATCH, path).json(body))
            .await
    }
}

#[tokio::test]
async fn names_with_control_or_bidi_characters_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let admin = server.login("admin").await;
    seed_registry(&planner).await;
    let mut item = suiji_tests::item_body("SCJG-X-1", "SCJG", "食品安全");
    item["name"] = json!("检查\u{85}事项");
    let inspector = json!({"user_id": 1, "name": "王\u{202E}磊", "cert_no": "浙00001",
        "department": "SCJG", "expertise": [], "region": "西湖区"});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/api/v1/departments",
            json!({"code": "ZZ", "name": "市场\u{0}监管"}),
            "name",
        ),
        (
            "/api/v1/targets",
            target_body(7, "杭州\u{7}餐饮有限公司"),
            "name",
        ),
        ("/api/v1/items", item, "name"),
        (
            "/api/v1/plans",
            json!({"number": "P-1", "name": "计划\n第二行", "year": 2026, "department": "SCJG"}),
            "name",
        ),
        ("/api/v1/inspectors", inspector, "name"),
    ];
    for (path, body, field) in cases {
        let (status, err) = planner.post(path, &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {err}");
        assert_eq!(err["error"]["field"], field, "{path}: {err}");
    }
    let (status, err) = admin
        .post(
            "/api/v1/users",
            &json!({"username": "zhao", "display_name": "赵\u{1b}[31m", "password": "river-lantern-42",
                    "roles": ["inspector"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["field"], "display_name");
    let (_, users) = admin.get("/api/v1/users").await;
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["username"] != "zhao")
    );
}

#[tokio::test]
async fn oversized_passwords_and_device_names_are_refused() {
    let server = TestServer::start().await;
    let admin = server.login("admin").await;
    let huge = "x".repeat(1_500_000);
    let anonymous = Client::anonymous(&server.base);
    let (status, err) = anonymous
        .post(
            "/api/v1/auth/login",
            &json!({"username": "planner", "password": huge}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["field"], "password");
    let (status, err) = admin
        .post(
            "/api/v1/users",
            &json!({"username": "zhao", "display_name": "赵", "password": huge, "roles": ["inspector"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["field"], "password");
    for device in ["d".repeat(1_500_000), "phone\u{0}".to_owned()] {
        let (status, err) = anonymous
            .post(
                "/api/v1/auth/login",
                &json!({"username": "planner", "password": PASSWORD, "device": device}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        assert_eq!(err["error"]["field"], "device");
    }
    // Nothing of it was stored: the only sessions are the fixtures' logins.
    let stored: i64 = server
        .state
        .db
        .read_blocking(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM sessions WHERE length(device) > 100",
                [],
                |r| r.get(0),
            )
        })
        .unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn rules_check_the_role_before_the_body_and_take_partial_changes() {
    let server = TestServer::start().await;
    let bad = json!({"group_size": "three", "no_such_rule": true});
    for who in ["supervisor", "inspector"] {
        let client = server.login(who).await;
        let (status, err) = client.put("/api/v1/rules", &bad).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {err}");
    }
    let planner = server.login("planner").await;
    let (_, before) = planner.get("/api/v1/rules").await;
    let (status, after) = planner
        .put(
            "/api/v1/rules",
            &json!({"group_size": 3, "ratios": {"D": 0.5}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after["group_size"], 3);
    assert_eq!(after["ratios"]["D"], 0.5);
    assert_eq!(after["ratios"]["A"], before["ratios"]["A"]);
    assert_eq!(after["frequency_cap"], before["frequency_cap"]);
    // Unknown fields are still refused, naming them.
    let (status, err) = planner.put("/api/v1/rules", &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        ["group_size", "no_such_rule"].contains(&err["error"]["field"].as_str().unwrap()),
        "{err}"
    );
}
