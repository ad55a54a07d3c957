//! The draw over HTTP: commit, ceremony, confidentiality, publication,
//! records, redraws and the errors a planner can run into.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use suiji_server::draw::{DrawRecord, verify};
use suiji_tests::{Client, TestServer, seed_agency, server_record};

async fn task(planner: &Client, plan_id: i64, number: &str, body: Value) -> i64 {
    let mut task = json!({
        "number": number,
        "name": "餐饮服务食品安全定向抽查",
        "directed": true,
        "conditions": {"industries": ["餐饮业"]},
        "ratio": 0.1,
        "items": [{"code": "SCJG-SP-002"}],
        "window_start": "2026-09-01",
        "window_end": "2026-11-20",
    });
    for (k, v) in body.as_object().unwrap() {
        task[k] = v.clone();
    }
    let (status, created) = planner
        .post(&format!("/api/v1/plans/{plan_id}/tasks"), &task)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].as_i64().unwrap()
}

fn observers() -> Value {
    json!([{"observer": "人大代表 李华", "value": "1122"}, {"observer": "记者 周敏", "value": "熊猫"}])
}

async fn commit_and_draw(planner: &Client, task_id: i64) -> Value {
    let (status, commitment) = planner
        .post(&format!("/api/v1/tasks/{task_id}/draw/commit"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{commitment}");
    let (status, draw) = planner
        .post(
            &format!("/api/v1/tasks/{task_id}/draw"),
            &json!({"commitment_id": commitment["id"], "entropy": observers()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{draw}");
    draw
}

#[tokio::test]
async fn commit_then_draw_creates_records_and_stays_confidential_until_published() {
    let server = TestServer::start().await;
    let agency = seed_agency(&server, 6, 200).await;
    let planner = server.login("planner").await;
    let task_id = task(&planner, agency.plan_id, "T-D-1", json!({})).await;

    // Drawing without a commitment is refused.
    let (status, err) = planner
        .post(
            &format!("/api/v1/tasks/{task_id}/draw"),
            &json!({"commitment_id": 1, "entropy": []}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("commit"));

    let (status, commitment) = planner
        .post(&format!("/api/v1/tasks/{task_id}/draw/commit"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{commitment}");
    assert_eq!(commitment["target_count"], 200);
    assert_eq!(
        commitment["inspector_count"], 6,
        "only SCJG inspectors qualified for 食品安全"
    );
    assert_eq!(commitment["secret_sha256"].as_str().unwrap().len(), 64);
    let (_, state) = planner.get(&format!("/api/v1/tasks/{task_id}/draw")).await;
    assert_eq!(state["commitment"]["id"], commitment["id"]);

    let (status, draw) = planner
        .post(
            &format!("/api/v1/tasks/{task_id}/draw"),
            &json!({"commitment_id": commitment["id"], "entropy": observers()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{draw}");
    let drawn = draw["targets"].as_u64().unwrap();
    // ceil(10% of 200) = 20, plus any must-include (every 10th target is 严重违法失信).
    assert!(drawn >= 20, "{draw}");
    let draw_id = draw["id"].as_i64().unwrap();

    // Drawing twice, or committing after the draw: 409.
    let (status, _) = planner
        .post(
            &format!("/api/v1/tasks/{task_id}/draw"),
            &json!({"commitment_id": commitment["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        planner
            .post(&format!("/api/v1/tasks/{task_id}/draw/commit"), &json!({}))
            .await
            .0,
        StatusCode::CONFLICT
    );

    // The record verifies and lists every must-include.
    let (status, record) = planner.get(&format!("/api/v1/draws/{draw_id}")).await;
    assert_eq!(status, StatusCode::OK);
    let record: DrawRecord = serde_json::from_value(record).unwrap();
    assert_eq!(verify(&record), Ok(()));
    assert_eq!(record.entropy.len(), 2);
    let must: Vec<_> = record
        .target_pool
        .iter()
        .filter(|t| t.must_include)
        .collect();
    assert_eq!(must.len(), 20);
    let picked: HashSet<_> = record
        .result
        .targets
        .iter()
        .map(|t| t.uscc.clone())
        .collect();
    assert!(must.iter().all(|t| picked.contains(&t.uscc)));

    // One record document per drawn target, its assignment naming the group.
    let (_, list) = planner
        .get(&format!("/api/v1/tasks/{task_id}/records"))
        .await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len() as u64, drawn);
    for r in list {
        let id = r["id"].as_str().unwrap().to_owned();
        let doc = server_record(&server, &id);
        let assignment = doc.assignment().unwrap();
        let group: Vec<i64> = assignment
            .inspectors
            .iter()
            .map(|i| i.inspector_id.as_str().parse().unwrap())
            .collect();
        assert_eq!(json!(group), r["group"]);
        assert!(assignment.inspectors[0].lead);
        assert_eq!(
            assignment.items[0].legal_basis,
            "《中华人民共和国食品安全法》第一百一十条"
        );
        assert_eq!(assignment.window_end.to_string(), "2026-11-20");
        // 20 working days after Friday 20 Nov 2026.
        assert_eq!(assignment.publication_deadline.to_string(), "2026-12-18");
    }

    // Confidential until published: supervisors and the public see nothing,
    // an inspector sees only their own targets.
    let supervisor = server.login("supervisor").await;
    assert_eq!(
        supervisor.get(&format!("/api/v1/draws/{draw_id}")).await.0,
        StatusCode::FORBIDDEN
    );
    let anon = Client::anonymous(&server.base);
    assert_eq!(anon.get("/api/v1/public/draws").await.1, json!([]));
    assert_eq!(
        anon.get(&format!("/api/v1/public/draws/{draw_id}")).await.0,
        StatusCode::NOT_FOUND
    );
    let inspector = server.login(&agency.inspector_users[0]).await;
    assert_eq!(
        inspector.get(&format!("/api/v1/draws/{draw_id}")).await.0,
        StatusCode::FORBIDDEN
    );
    let (_, mine) = inspector.get("/api/v1/my/records").await;
    let my_id = agency.inspectors[0].0;
    let expected = list
        .iter()
        .filter(|r| r["group"].as_array().unwrap().contains(&json!(my_id)))
        .count();
    assert!(expected > 0);
    assert_eq!(mine.as_array().unwrap().len(), expected);
    assert!(
        mine.as_array()
            .unwrap()
            .iter()
            .all(|r| r["group"].as_array().unwrap().contains(&json!(my_id)))
    );

    // Publication (公示) makes the draw record public, byte for byte.
    let (status, _) = planner
        .post(&format!("/api/v1/tasks/{task_id}/draw/publish"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, public) = anon.get("/api/v1/public/draws").await;
    assert_eq!(public[0]["id"], draw_id);
    assert_eq!(public[0]["task_number"], "T-D-1");
    let text = reqwest::get(format!("{}/api/v1/public/draws/{draw_id}", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        suiji_server::draw::algorithm::sha256_hex(text.as_bytes()),
        public[0]["record_sha256"]
    );
    assert_eq!(verify(&serde_json::from_str(&text).unwrap()), Ok(()));
}

#[tokio::test]
async fn redraws_keep_the_old_record_and_update_the_assignment() {
    let server = TestServer::start().await;
    let agency = seed_agency(&server, 6, 100).await;
    let planner = server.login("planner").await;
    let task_id = task(&planner, agency.plan_id, "T-R-1", json!({"ratio": 0.2})).await;
    let first = commit_and_draw(&planner, task_id).await;
    let first_id = first["id"].as_i64().unwrap();
    let (_, before) = planner.get(&format!("/api/v1/draws/{first_id}")).await;
    let (_, list) = planner
        .get(&format!("/api/v1/tasks/{task_id}/records"))
        .await;
    let victim = list[0].clone();
    let recused = victim["group"][0].as_i64().unwrap();
    let target_id = victim["target_id"].as_i64().unwrap();

    // Recusal: a new draw naming the old one; the group no longer has the inspector.
    let (status, redraw) = planner
        .post(
            &format!("/api/v1/tasks/{task_id}/redraw"),
            &json!({"target_id": target_id, "reason": "recusal", "inspector_id": recused,
                    "explanation": "配偶在该企业任职"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{redraw}");
    assert_eq!(redraw["parent_id"], first_id);
    assert_eq!(redraw["kind"], "redraw");
    let (_, record) = planner
        .get(&format!("/api/v1/draws/{}", redraw["id"]))
        .await;
    let record: DrawRecord = serde_json::from_value(record).unwrap();
    assert_eq!(verify(&record), Ok(()));
    let group = &record.result.targets[0].group;
    assert!(!group.contains(&recused));
    let (_, after) = planner.get(&format!("/api/v1/draws/{first_id}")).await;
    assert_eq!(before, after, "the old draw record is unchanged");
    let (_, list) = planner
        .get(&format!("/api/v1/tasks/{task_id}/records"))
        .await;
    let now = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == victim["id"])
        .unwrap();
    assert_eq!(&now["group"], &json!(group));
    let id = victim["id"].as_str().unwrap().to_owned();
    let doc = server_record(&server, &id);
    let ids: Vec<String> = doc
        .assignment()
        .unwrap()
        .inspectors
        .iter()
        .map(|i| i.inspector_id.as_str().to_owned())
        .collect();
    assert_eq!(ids, group.iter().map(i64::to_string).collect::<Vec<_>>());

    // Out of scope: the record is withdrawn and another target of the same stratum drawn.
    let other = list[1].clone();
    let (status, replaced) = planner
        .post(
            &format!("/api/v1/tasks/{task_id}/redraw"),
            &json!({"target_id": other["target_id"], "reason": "out_of_scope", "explanation": "已迁出本辖区"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{replaced}");
    let (_, list) = planner
        .get(&format!("/api/v1/tasks/{task_id}/records"))
        .await;
    let list = list.as_array().unwrap();
    assert!(
        list.iter().find(|r| r["id"] == other["id"]).unwrap()["withdrawn"]
            .as_bool()
            .unwrap()
    );
    assert_eq!(
        list.iter()
            .filter(|r| !r["withdrawn"].as_bool().unwrap())
            .count() as u64,
        first["targets"].as_u64().unwrap()
    );

    // Every draw of the task stays listed; the audit log has them all.
    let (_, state) = planner.get(&format!("/api/v1/tasks/{task_id}/draw")).await;
    assert_eq!(state["draws"].as_array().unwrap().len(), 3);
    let entries = server
        .state
        .db
        .read_blocking(move |c| {
            suiji_server::audit::recent(c, Some(&format!("task:{task_id}")), 50)
        })
        .unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "draw.redraw").count(), 2);
    assert!(actions.contains(&"draw.execute") && actions.contains(&"draw.commit"));

    // A recusal of someone not in the group is refused.
    let (status, _) = planner
        .post(
            &format!("/api/v1/tasks/{task_id}/redraw"),
            &json!({"target_id": target_id, "reason": "recusal", "inspector_id": 999_999, "explanation": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn joint_task_groups_take_one_inspector_of_each_department() {
    let server = TestServer::start().await;
    let agency = seed_agency(&server, 4, 60).await;
    let planner = server.login("planner").await;
    let task_id = task(
        &planner,
        agency.plan_id,
        "T-J-1",
        json!({"joint": true, "items": [{"code": "SCJG-SP-002"}, {"code": "YJGL-WH-001"}], "count": 10, "ratio": null}),
    )
    .await;
    let draw = commit_and_draw(&planner, task_id).await;
    let (_, record) = planner.get(&format!("/api/v1/draws/{}", draw["id"])).await;
    let record: DrawRecord = serde_json::from_value(record).unwrap();
    let dept = |id: &i64| {
        agency
            .inspectors
            .iter()
            .find(|(i, _)| i == id)
            .unwrap()
            .1
            .clone()
    };
    for t in &record.result.targets {
        let departments: HashSet<String> = t.group.iter().map(dept).collect();
        assert_eq!(departments.len(), 2, "{t:?}");
        assert_eq!(dept(&t.group[0]), "SCJG", "the initiating department leads");
    }
}

#[tokio::test]
async fn draw_errors_name_their_reason() {
    let server = TestServer::start().await;
    let agency = seed_agency(&server, 1, 30).await;
    let planner = server.login("planner").await;
    // Empty pool: nothing matches the conditions.
    let empty = task(
        &planner,
        agency.plan_id,
        "T-E-1",
        json!({"conditions": {"industries": ["采矿业"]}}),
    )
    .await;
    let (status, err) = planner
        .post(&format!("/api/v1/tasks/{empty}/draw/commit"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        err["error"]["message"].as_str().unwrap().contains("empty"),
        "{err}"
    );
    // One qualified inspector cannot make a group of two.
    let short = task(&planner, agency.plan_id, "T-E-2", json!({})).await;
    let (status, err) = planner
        .post(&format!("/api/v1/tasks/{short}/draw/commit"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "inspectors", "{err}");
    // A ratio out of bounds for general items.
    let mut general = suiji_tests::item_body("SCJG-GS-001", "SCJG", "食品安全");
    general["class"] = json!("general");
    general["default_ratio"] = json!(0.03);
    assert_eq!(
        planner.post("/api/v1/items", &general).await.0,
        StatusCode::CREATED
    );
    let body = json!({"number": "T-E-3", "name": "公示信息抽查", "directed": false, "ratio": 0.5,
                      "items": [{"code": "SCJG-GS-001"}], "window_start": "2026-09-01", "window_end": "2026-11-20"});
    let (status, err) = planner
        .post(&format!("/api/v1/plans/{}/tasks", agency.plan_id), &body)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "ratio");
    assert!(
        err["error"]["reason"].as_str().unwrap().contains("general"),
        "{err}"
    );
    // Observer entries must say who typed them.
    let (status, err) = planner
        .post(
            &format!("/api/v1/tasks/{short}/draw"),
            &json!({"commitment_id": 1, "entropy": [{"observer": " ", "value": "7"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "entropy[0].observer");
}
