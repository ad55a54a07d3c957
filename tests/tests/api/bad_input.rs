//! Client mistakes get a 4xx with a JSON body naming the field and reason.

use reqwest::StatusCode;
use serde_json::json;
use suiji_tests::{TestServer, target_body};

#[tokio::test]
async fn unknown_fields_wrong_types_and_malformed_json() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let mut body = target_body(1, "杭州甲有限公司");
    body["colour"] = json!("red");
    let (status, err) = planner.post("/api/v1/targets", &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "colour");
    let mut body = target_body(1, "杭州甲有限公司");
    body["complaints"] = json!("three");
    let (status, err) = planner.post("/api/v1/targets", &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "complaints");

    let (status, err) = planner
        .send(
            planner
                .raw(reqwest::Method::POST, "/api/v1/targets")
                .header("content-type", "application/json")
                .body("{\"uscc\": "),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["code"], "malformed");
    let (status, _) = planner
        .send(
            planner
                .raw(reqwest::Method::POST, "/api/v1/targets")
                .body("uscc=1"),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "a body without Content-Type: application/json"
    );
}

#[tokio::test]
async fn oversized_body_is_413() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(3 * 1024 * 1024));
    let (status, err) = planner
        .send(
            planner
                .raw(reqwest::Method::POST, "/api/v1/targets")
                .header("content-type", "application/json")
                .body(huge),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(err["error"]["code"], "too_large");
}

#[tokio::test]
async fn unknown_routes_and_ids_are_json_404() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let (status, err) = planner.get("/api/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["code"], "not_found");
    assert_eq!(
        planner.get("/api/v1/targets/999").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        planner.get("/api/v1/targets/abc").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn every_change_is_in_the_audit_log_and_the_chain_verifies() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let (status, created) = planner
        .post("/api/v1/targets", &target_body(7, "杭州审计有限公司"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_i64().unwrap();
    let entries = server
        .state
        .db
        .read_blocking(|c| suiji_server::audit::recent(c, Some("target:"), 10))
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].actor, "planner");
    assert_eq!(entries[0].entity, format!("target:{id}"));
    let verdict = server
        .state
        .db
        .read_blocking(suiji_server::audit::verify)
        .unwrap();
    assert!(
        matches!(verdict, suiji_server::audit::Verification::Intact { .. }),
        "{verdict:?}"
    );
}
