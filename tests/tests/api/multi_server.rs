//! Several server processes on one PostgreSQL database (docs/deploy.md). On SQLite, whose file
//! one server owns, there is nothing to test and these return at once; the suite's PostgreSQL
//! run (scripts/with-postgres) runs them.

use reqwest::StatusCode;
use serde_json::json;
use suiji_tests::{Client, TestServer};

#[tokio::test]
async fn a_second_server_with_a_seal_key_of_its_own_refuses_to_start_and_starts_with_the_shared_one()
 {
    let first = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    if TestServer::share_database(&first, dir.path(), false).is_none() {
        return;
    }
    let config = || suiji_server::Config {
        database: suiji_tests::test_database(dir.path()),
        data_dir: dir.path().to_owned(),
        demo: false,
        transport: Default::default(),
        public_url: None,
    };
    // A key of its own would seal commitments the first could not draw, and the reverse.
    let refused = suiji_server::open(config())
        .err()
        .expect("a key of its own is refused");
    let message = refused.to_string();
    assert!(
        message.contains(suiji_server::draw::seal::KEY_FILE),
        "the error names the key file: {message}"
    );

    // With the first server's key copied over it, it starts and serves the same data.
    std::fs::copy(
        first.dir.path().join(suiji_server::draw::seal::KEY_FILE),
        dir.path().join(suiji_server::draw::seal::KEY_FILE),
    )
    .unwrap();
    let state = suiji_server::open(config()).expect("the shared key is accepted");
    assert_eq!(state.seal.id(), first.state.seal.id());
    drop(state);

    let second = TestServer::start_beside(&first).await.unwrap();
    let planner = second.login("planner").await;
    let (status, body) = planner
        .post(
            "/api/v1/departments",
            &json!({"code": "MS", "name": "多服务器测试局"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The session made through the second server is good on the first: one signing secret.
    let mut on_first = Client::anonymous(&first.base);
    on_first.token = planner.token.clone();
    let (status, list) = on_first.get("/api/v1/departments").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert!(
        list.to_string().contains("多服务器测试局"),
        "a write through one server is read through the other: {list}"
    );
}
