//! The draw over HTTP: commit, ceremony, confidentiality, publication,
//! records, redraws, the errors a planner can run into, and what keeps a
//! draw from being steered: the public commitment list, enough observers,
//! beacons and the sealed secret.

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

use suiji_tests::observers;

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
            &json!({"commitment_id": 1, "entropy": observers()}),
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
            &json!({"commitment_id": commitment["id"], "entropy": observers()}),
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
    // Its pools come from the commitment the initial draw used.
    let initial: DrawRecord = serde_json::from_value(before.clone()).unwrap();
    assert_eq!(
        record.redraw.as_ref().unwrap().commitment,
        initial.commitment,
        "the redraw names the committed pools"
    );
    assert_eq!(
        suiji_server::draw::verify_redraw_pools(&record, &initial),
        Ok(())
    );
    let mut forged = record.clone();
    forged.inspector_pool[0].department = "YJGL".into();
    assert!(suiji_server::draw::verify_redraw_pools(&forged, &initial).is_err());
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

/// The commitments the public list shows for the task numbered `number`.
async fn listed(anon: &Client, number: &str) -> Vec<Value> {
    let (status, page) = anon
        .get(&format!("/api/v1/public/commitments?task={number}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().clone()
}

/// Every column of every row of `draw_commitments`, as text (bytes in hex), read from the
/// server's database.
fn commitment_columns(server: &TestServer) -> Vec<String> {
    use suiji_server::store::sql::ValueRef;
    server
        .state
        .db
        .read_blocking(|conn| {
            let mut stmt = conn.prepare("SELECT * FROM draw_commitments")?;
            let n = stmt.column_count();
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                for i in 0..n {
                    out.push(match row.get_ref(i)? {
                        ValueRef::Null => String::new(),
                        ValueRef::Integer(v) => v.to_string(),
                        ValueRef::Real(v) => v.to_string(),
                        ValueRef::Text(t) => t.to_owned(),
                        ValueRef::Blob(b) => hex::encode(b),
                    });
                }
            }
            Ok(out)
        })
        .unwrap()
}

#[tokio::test]
async fn commitments_are_public_from_the_start_and_a_superseded_one_stays_listed() {
    let server = TestServer::start().await;
    let agency = seed_agency(&server, 6, 100).await;
    let planner = server.login("planner").await;
    let anon = Client::anonymous(&server.base);
    let task_id = task(&planner, agency.plan_id, "T-C-1", json!({})).await;
    assert!(listed(&anon, "T-C-1").await.is_empty());

    // Public, without login, the moment it is made.
    let (_, first) = planner
        .post(&format!("/api/v1/tasks/{task_id}/draw/commit"), &json!({}))
        .await;
    let list = listed(&anon, "T-C-1").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["state"], "open");
    assert_eq!(list[0]["task_number"], "T-C-1");
    for field in [
        "id",
        "secret_sha256",
        "params_sha256",
        "target_pool_sha256",
        "inspector_pool_sha256",
        "algorithm",
        "committed_at",
    ] {
        assert_eq!(list[0][field], first[field], "{field}");
    }

    // Committing again supersedes the first, which stays listed.
    let (status, second) = planner
        .post(&format!("/api/v1/tasks/{task_id}/draw/commit"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    let list = listed(&anon, "T-C-1").await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["id"], second["id"], "the latest first");
    assert_eq!(list[0]["state"], "open");
    assert_eq!(list[1]["id"], first["id"]);
    assert_eq!(list[1]["state"], "superseded");
    assert!(list[1]["superseded_at"].is_string());

    // The database itself refuses to forget or alter it.
    let id = first["id"].as_i64().unwrap();
    for sql in [
        "DELETE FROM draw_commitments WHERE id = ?1",
        "UPDATE draw_commitments SET superseded_at = NULL WHERE id = ?1",
        "UPDATE draw_commitments SET secret_sha256 = 'x' WHERE id = ?1",
    ] {
        let result = server.state.db.write(move |tx| tx.execute(sql, [id])).await;
        assert!(result.is_err(), "{sql} was allowed");
    }

    // Drawing uses the open one; the superseded one is still there.
    let (status, draw) = planner
        .post(
            &format!("/api/v1/tasks/{task_id}/draw"),
            &json!({"commitment_id": second["id"], "entropy": observers()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{draw}");
    let list = listed(&anon, "T-C-1").await;
    assert_eq!(
        list.iter().map(|c| c["state"].clone()).collect::<Vec<_>>(),
        [json!("used"), json!("superseded")]
    );
    assert_eq!(list[0]["draw_id"], draw["id"]);

    // The whole list is bounded, page by page.
    let (status, page) = anon.get("/api/v1/public/commitments?per_page=1").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["total"], 2);
    let (status, err) = anon.get("/api/v1/public/commitments?per_page=100000").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");

    // A published record whose commitment is dated after its draw fails.
    planner
        .post(&format!("/api/v1/tasks/{task_id}/draw/publish"), &json!({}))
        .await;
    let text = reqwest::get(format!(
        "{}/api/v1/public/draws/{}",
        server.base, draw["id"]
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let honest: DrawRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(verify(&honest), Ok(()));
    assert_eq!(
        honest.commitment.as_ref().unwrap().id,
        second["id"].as_i64().unwrap()
    );
    let mut late: Value = serde_json::from_str(&text).unwrap();
    late["commitment"]["committed_at"] = json!("2099-01-01T00:00:00.000Z");
    let late: DrawRecord = serde_json::from_value(late).unwrap();
    let err = verify(&late).unwrap_err();
    assert!(err.contains("must precede the draw"), "{err}");
}

#[tokio::test]
async fn a_draw_needs_enough_distinct_non_empty_observer_entries() {
    let server = TestServer::start().await;
    let agency = seed_agency(&server, 6, 60).await;
    let planner = server.login("planner").await;
    let task_id = task(&planner, agency.plan_id, "T-O-1", json!({})).await;
    let (_, commitment) = planner
        .post(&format!("/api/v1/tasks/{task_id}/draw/commit"), &json!({}))
        .await;
    let id = commitment["id"].clone();
    let draw = |entropy: Value| {
        let planner = &planner;
        let body = json!({"commitment_id": id, "entropy": entropy});
        async move {
            planner
                .post(&format!("/api/v1/tasks/{task_id}/draw"), &body)
                .await
        }
    };
    for (entropy, field) in [
        (json!([]), "entropy"),
        (
            json!([{"observer": "人大代表 李华", "value": "1122"}]),
            "entropy",
        ),
        (
            json!([{"observer": "人大代表 李华", "value": "1122"}, {"observer": "记者 周敏", "value": "  "}]),
            "entropy[1].value",
        ),
        (
            json!([{"observer": "人大代表 李华", "value": "1122"}, {"observer": "", "value": "7"}]),
            "entropy[1].observer",
        ),
        (
            json!([{"observer": "人大代表 李华", "value": "1122"}, {"observer": " 人大代表 李华 ", "value": "7"}]),
            "entropy[1].observer",
        ),
        (
            json!([{"observer": "人大代表 李华", "value": "1".repeat(1001)}, {"observer": "记者", "value": "7"}]),
            "entropy[0].value",
        ),
    ] {
        let (status, err) = draw(entropy.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{entropy}: {err}");
        assert_eq!(err["error"]["field"], field, "{entropy}: {err}");
    }
    let (_, err) = draw(json!([{"observer": "人大代表 李华", "value": "1122"}])).await;
    assert!(
        err["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("min_observers"),
        "{err}"
    );

    // The rules set the minimum: 3 makes two entries too few; 0 is refused.
    let (_, mut rules) = planner.get("/api/v1/rules").await;
    assert_eq!(rules["min_observers"], 2);
    rules.as_object_mut().unwrap().remove("updated_at");
    rules["min_observers"] = json!(0);
    let (status, err) = planner.put("/api/v1/rules", &rules).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["field"], "min_observers");
    rules["min_observers"] = json!(3);
    let (status, saved) = planner.put("/api/v1/rules", &rules).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let (status, err) = draw(observers()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["field"], "entropy");
    let mut three = observers();
    three
        .as_array_mut()
        .unwrap()
        .push(json!({"observer": "政协委员 王芳", "value": "三"}));
    let (status, drawn) = draw(three).await;
    assert_eq!(status, StatusCode::CREATED, "{drawn}");
    let (_, record) = planner.get(&format!("/api/v1/draws/{}", drawn["id"])).await;
    let record: DrawRecord = serde_json::from_value(record).unwrap();
    assert_eq!(record.min_observers, Some(3));
    assert_eq!(verify(&record), Ok(()));
}

#[tokio::test]
async fn a_beacon_draw_waits_for_its_beacon_and_its_value_enters_the_seed() {
    let server = TestServer::start().await;
    let agency = seed_agency(&server, 6, 60).await;
    let planner = server.login("planner").await;
    let anon = Client::anonymous(&server.base);
    let task_id = task(&planner, agency.plan_id, "T-B-1", json!({})).await;
    let commit = |body: Value| {
        let planner = &planner;
        async move {
            planner
                .post(&format!("/api/v1/tasks/{task_id}/draw/commit"), &body)
                .await
        }
    };
    let name = "福彩3D 第2026330期开奖号码";
    // A beacon already public when committing could be ground: refused.
    let (status, err) =
        commit(json!({"beacon": {"name": name, "due_at": "2026-01-01T00:00:00Z"}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["field"], "beacon.due_at");
    let (status, err) = commit(json!({"beacon": {"name": name, "due_at": "tomorrow"}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["field"], "beacon.due_at");
    let (status, err) =
        commit(json!({"beacon": {"name": " ", "due_at": "2099-01-01T00:00:00Z"}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["field"], "beacon.name");

    // Due two seconds from now.
    let due = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
    let due_at = rfc3339(due);
    let (status, commitment) = commit(json!({"beacon": {"name": name, "due_at": due_at}})).await;
    assert_eq!(status, StatusCode::CREATED, "{commitment}");
    assert_eq!(commitment["beacon"]["name"], name);
    let listed = listed(&anon, "T-B-1").await;
    assert_eq!(
        listed[0]["beacon"]["name"], name,
        "the beacon is public too"
    );

    let draw = |beacon_value: Option<&str>| {
        let planner = &planner;
        let mut body = json!({"commitment_id": commitment["id"], "entropy": observers()});
        if let Some(v) = beacon_value {
            body["beacon_value"] = json!(v);
        }
        async move {
            planner
                .post(&format!("/api/v1/tasks/{task_id}/draw"), &body)
                .await
        }
    };
    // Before it is due: refused, value or not.
    let (status, err) = draw(Some("372")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["field"], "beacon_value");
    assert!(
        err["error"]["reason"].as_str().unwrap().contains("due"),
        "{err}"
    );

    // Once due it needs the value; with it, it draws and verifies.
    while std::time::SystemTime::now() < due + std::time::Duration::from_millis(50) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, err) = draw(None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["field"], "beacon_value");
    let (status, drawn) = draw(Some("372")).await;
    assert_eq!(status, StatusCode::CREATED, "{drawn}");
    let (_, record) = planner.get(&format!("/api/v1/draws/{}", drawn["id"])).await;
    let record: DrawRecord = serde_json::from_value(record).unwrap();
    assert_eq!(record.beacon_value.as_deref(), Some("372"));
    assert_eq!(verify(&record), Ok(()));
    let mut tampered = record.clone();
    tampered.beacon_value = Some("373".into());
    assert!(verify(&tampered).unwrap_err().contains("seed"));
}

/// RFC 3339 text of a system time, UTC, milliseconds.
fn rfc3339(t: std::time::SystemTime) -> String {
    let ms = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let days = ms.div_euclid(86_400_000);
    let rest = ms.rem_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

#[tokio::test]
async fn the_secret_is_not_in_the_database_before_the_draw_reveals_it() {
    let server = TestServer::start().await;
    let agency = seed_agency(&server, 6, 60).await;
    let planner = server.login("planner").await;
    let task_id = task(&planner, agency.plan_id, "T-S-1", json!({})).await;
    let (_, commitment) = planner
        .post(&format!("/api/v1/tasks/{task_id}/draw/commit"), &json!({}))
        .await;
    let before = commitment_columns(&server);
    assert!(
        before
            .iter()
            .any(|c| c == commitment["secret_sha256"].as_str().unwrap()),
        "the columns were read"
    );
    let (status, drawn) = planner
        .post(
            &format!("/api/v1/tasks/{task_id}/draw"),
            &json!({"commitment_id": commitment["id"], "entropy": observers()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{drawn}");
    let (_, record) = planner.get(&format!("/api/v1/draws/{}", drawn["id"])).await;
    let record: DrawRecord = serde_json::from_value(record).unwrap();
    assert_eq!(verify(&record), Ok(()));
    let secret = record.secret.to_lowercase();
    assert_eq!(secret.len(), 64);
    for column in &before {
        assert!(
            !column.to_lowercase().contains(&secret),
            "the secret was readable before the draw: {column}"
        );
    }
    // The key that sealed it is a file beside the database, only its owner's.
    let key = server.dir.path().join(suiji_server::draw::seal::KEY_FILE);
    assert!(key.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let key_text = std::fs::read_to_string(&key).unwrap();
    assert!(
        commitment_columns(&server)
            .iter()
            .all(|c| !c.contains(key_text.trim())),
        "the key is not in the database"
    );
}
