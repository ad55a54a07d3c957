//! Login, tokens, revocation and role checks.

use reqwest::StatusCode;
use serde_json::json;
use suiji_tests::{Client, PASSWORD, TestServer};

#[tokio::test]
async fn login_returns_tokens_and_roles() {
    let server = TestServer::start().await;
    let anon = Client::anonymous(&server.base);
    let (status, body) = anon
        .post(
            "/api/v1/auth/login",
            &json!({"username": "planner", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().unwrap() <= 15 * 60);
    assert_eq!(body["user"]["roles"], json!(["planner"]));
    let planner = server.login("planner").await;
    let (status, me) = planner.get("/api/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["username"], "planner");
    server.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401() {
    let server = TestServer::start().await;
    let anon = Client::anonymous(&server.base);
    let (s1, b1) = anon
        .post(
            "/api/v1/auth/login",
            &json!({"username": "planner", "password": "nope-nope-nope"}),
        )
        .await;
    let (s2, b2) = anon
        .post(
            "/api/v1/auth/login",
            &json!({"username": "ghost", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert_eq!(s2, StatusCode::UNAUTHORIZED);
    assert_eq!(b1["error"]["message"], b2["error"]["message"]);
}

#[tokio::test]
async fn missing_garbage_and_revoked_tokens_are_401() {
    let server = TestServer::start().await;
    let (status, _) = Client::anonymous(&server.base).get("/api/v1/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut garbage = Client::anonymous(&server.base);
    garbage.token = Some("not.a.jwt".into());
    assert_eq!(garbage.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);

    let planner = server.login("planner").await;
    let (status, _) = planner.post("/api/v1/auth/logout", &json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = planner.get("/api/v1/me").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "token of a logged-out session: {body}"
    );
}

#[tokio::test]
async fn refresh_rotates_and_old_refresh_token_is_refused() {
    let server = TestServer::start().await;
    let client = server.login("supervisor").await;
    let old = client.refresh_token.clone().unwrap();
    let anon = Client::anonymous(&server.base);
    let (status, pair) = anon
        .post("/api/v1/auth/refresh", &json!({"refresh_token": old}))
        .await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    assert_ne!(pair["refresh_token"].as_str().unwrap(), old);
    let mut refreshed = Client::anonymous(&server.base);
    refreshed.token = pair["access_token"].as_str().map(str::to_owned);
    assert_eq!(refreshed.get("/api/v1/me").await.0, StatusCode::OK);
    let (status, _) = anon
        .post("/api/v1/auth/refresh", &json!({"refresh_token": old}))
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a used refresh token must not work twice"
    );
}

#[tokio::test]
async fn revoking_a_users_sessions_cuts_off_every_device() {
    let server = TestServer::start().await;
    let admin = server.login("admin").await;
    let phone = server.login("inspector").await;
    let tablet = server.login("inspector").await;
    assert_eq!(phone.get("/api/v1/me").await.0, StatusCode::OK);
    let (_, me) = phone.get("/api/v1/me").await;
    let id = me["id"].as_i64().unwrap();
    let (status, body) = admin
        .post(&format!("/api/v1/users/{id}/revoke-sessions"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sessions_revoked"], 2);
    assert_eq!(phone.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(tablet.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    let anon = Client::anonymous(&server.base);
    let (status, _) = anon
        .post(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": phone.refresh_token.unwrap()}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "revoked session cannot refresh"
    );
    // Logging in again works.
    server.login("inspector").await;
}

#[tokio::test]
async fn deactivated_user_is_cut_off_at_next_request() {
    let server = TestServer::start().await;
    let admin = server.login("admin").await;
    let inspector = server.login("inspector").await;
    let (_, me) = inspector.get("/api/v1/me").await;
    let id = me["id"].as_i64().unwrap();
    let (status, _) = admin
        .raw(reqwest::Method::PATCH, &format!("/api/v1/users/{id}"))
        .json(&json!({"active": false}))
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        inspector.get("/api/v1/me").await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn every_endpoint_checks_its_role() {
    let server = TestServer::start().await;
    let inspector = server.login("inspector").await;
    let supervisor = server.login("supervisor").await;
    let planner = server.login("planner").await;
    let admin = server.login("admin").await;
    let dept = json!({"code": "SCJG", "name": "市场监督管理局"});
    let (status, body) = inspector.post("/api/v1/departments", &dept).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(
        supervisor.post("/api/v1/departments", &dept).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        planner.post("/api/v1/departments", &dept).await.0,
        StatusCode::CREATED
    );
    // Reading the registry: staff yes, inspectors no.
    assert_eq!(supervisor.get("/api/v1/targets").await.0, StatusCode::OK);
    assert_eq!(
        inspector.get("/api/v1/targets").await.0,
        StatusCode::FORBIDDEN
    );
    // Users: admin only.
    assert_eq!(planner.get("/api/v1/users").await.0, StatusCode::FORBIDDEN);
    let (status, users) = admin.get("/api/v1/users").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(users.as_array().unwrap().len(), 4);
    assert!(
        users.to_string().find("argon2").is_none(),
        "hashes never leave the server"
    );
    // Public endpoints need nothing.
    let anon = Client::anonymous(&server.base);
    assert_eq!(anon.get("/api/v1/public/items").await.0, StatusCode::OK);
    assert_eq!(anon.get("/api/v1/public/plans").await.0, StatusCode::OK);
    assert_eq!(anon.get("/health").await.0, StatusCode::OK);
}

#[tokio::test]
async fn weak_passwords_are_refused_outside_demo_mode() {
    let server = TestServer::start().await;
    let admin = server.login("admin").await;
    let (status, body) = admin
        .post(
            "/api/v1/users",
            &json!({"username": "weak", "display_name": "W", "password": "demo", "roles": ["inspector"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "password");
    let (status, body) = admin
        .post(
            "/api/v1/users",
            &json!({"username": "strong", "display_name": "S", "password": "lantern-river-2026", "roles": ["inspector", "supervisor"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["roles"], json!(["supervisor", "inspector"]));
    let (status, _) = admin
        .post(
            "/api/v1/users",
            &json!({"username": "strong", "display_name": "S", "password": "lantern-river-2026", "roles": ["inspector"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}
