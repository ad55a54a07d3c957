//! Plans and tasks: validation, pinned item versions, joint tasks, publication.

use reqwest::StatusCode;
use serde_json::{Value, json};
use suiji_tests::{Client, TestServer, item_body, seed_registry};

async fn plan(planner: &Client) -> i64 {
    let (status, plan) = planner
        .post(
            "/api/v1/plans",
            &json!({"number": "P-2026-01", "name": "2026年度抽查计划", "year": 2026, "department": "SCJG"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plan}");
    plan["id"].as_i64().unwrap()
}

fn task(number: &str) -> Value {
    json!({
        "number": number,
        "name": "餐饮服务食品安全定向抽查",
        "directed": true,
        "conditions": {"industries": ["餐饮业"], "risk_classes": ["C", "D"]},
        "ratio": 0.1,
        "items": [{"code": "SCJG-SP-002"}],
        "window_start": "2026-07-01",
        "window_end": "2026-09-30",
    })
}

#[tokio::test]
async fn task_pins_item_version_in_force() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    seed_registry(&planner).await;
    let plan_id = plan(&planner).await;
    let (status, created) = planner
        .post(&format!("/api/v1/plans/{plan_id}/tasks"), &task("T-1"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["items"][0]["version"], 1);
    let mut v2 = item_body("SCJG-SP-002", "SCJG", "食品安全");
    v2.as_object_mut().unwrap().remove("code");
    v2["name"] = json!("餐饮服务食品安全检查（修订）");
    assert_eq!(
        planner.put("/api/v1/items/SCJG-SP-002", &v2).await.0,
        StatusCode::OK
    );
    let (_, reread) = planner
        .get(&format!("/api/v1/tasks/{}", created["id"]))
        .await;
    assert_eq!(
        reread["items"][0]["version"], 1,
        "the task keeps the version it was made with"
    );
    assert_eq!(reread["items"][0]["name"], "餐饮服务提供者经营活动的检查");
    let (_, newer) = planner
        .post(&format!("/api/v1/plans/{plan_id}/tasks"), &task("T-2"))
        .await;
    assert_eq!(newer["items"][0]["version"], 2);
}

#[tokio::test]
async fn bad_tasks_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    seed_registry(&planner).await;
    let plan_id = plan(&planner).await;
    let path = format!("/api/v1/plans/{plan_id}/tasks");
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut t = task("X");
                t["count"] = json!(5);
                t
            },
            "ratio",
        ),
        (
            {
                let mut t = task("X");
                t["ratio"] = json!(1.2);
                t
            },
            "ratio",
        ),
        (
            {
                let mut t = task("X");
                t["window_end"] = json!("2026-06-01");
                t
            },
            "window_end",
        ),
        (
            {
                let mut t = task("X");
                t["window_start"] = json!("2026-13-01");
                t
            },
            "window_start",
        ),
        (
            {
                let mut t = task("X");
                t["directed"] = json!(false);
                t
            },
            "conditions",
        ),
        (
            {
                let mut t = task("X");
                t["conditions"] = json!({});
                t
            },
            "conditions",
        ),
        (
            {
                let mut t = task("X");
                t["conditions"]["risk_classes"] = json!(["E"]);
                t
            },
            "conditions.risk_classes[0]",
        ),
        (
            {
                let mut t = task("X");
                t["items"] = json!([{"code": "NOPE"}]);
                t
            },
            "items[0].code",
        ),
        (
            {
                let mut t = task("X");
                t["items"] = json!([{"code": "SCJG-SP-002", "version": 9}]);
                t
            },
            "items[0].code",
        ),
        (
            {
                let mut t = task("X");
                t["items"] = json!([{"code": "SCJG-SP-002"}, {"code": "YJGL-WH-001"}]);
                t
            },
            "items",
        ),
        (
            {
                let mut t = task("X");
                t["joint"] = json!(true);
                t
            },
            "joint",
        ),
    ];
    for (body, field) in cases {
        let (status, err) = planner.post(&path, &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} -> {err}");
        assert_eq!(err["error"]["field"], field, "{body} -> {err}");
    }
    let (_, plan) = planner.get(&format!("/api/v1/plans/{plan_id}")).await;
    assert_eq!(
        plan["tasks"].as_array().unwrap().len(),
        0,
        "nothing half-written"
    );
}

#[tokio::test]
async fn joint_task_covers_every_department_and_plan_publishes() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    seed_registry(&planner).await;
    let plan_id = plan(&planner).await;
    let mut joint = task("J-1");
    joint["items"] = json!([{"code": "SCJG-SP-002"}, {"code": "YJGL-WH-001"}]);
    joint["joint"] = json!(true);
    let (status, created) = planner
        .post(&format!("/api/v1/plans/{plan_id}/tasks"), &joint)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["departments"], json!(["SCJG", "YJGL"]));
    assert_eq!(
        planner
            .post(&format!("/api/v1/plans/{plan_id}/tasks"), &joint)
            .await
            .0,
        StatusCode::CONFLICT
    );

    let anon = Client::anonymous(&server.base);
    let (_, public) = anon.get("/api/v1/public/plans").await;
    assert_eq!(public, json!([]), "unpublished plans are not public");
    let (status, published) = planner
        .post(&format!("/api/v1/plans/{plan_id}/publish"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{published}");
    assert!(published["published_at"].is_string());
    let (_, public) = anon.get("/api/v1/public/plans").await;
    assert_eq!(public[0]["tasks"][0]["number"], "J-1");
}
