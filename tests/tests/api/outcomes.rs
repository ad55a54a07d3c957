//! Outcomes feeding back (#20), end to end on a real server: 经营异常名录
//! candidates decided by a supervisor, the target's flag following them, every
//! decision kept, audited and shown in the target's outcome.

use reqwest::StatusCode;
use serde_json::{Value, json};
use suiji_mobile_core::vocab::ResultCategory;
use suiji_server::audit::{self, Verification};
use suiji_tests::{Client, TestServer};

use crate::review::{approve_and_publish, fill, phones, scenario, sign_and_submit};

async fn decide(
    client: &Client,
    candidate: i64,
    decision: &str,
    reason: &str,
) -> (StatusCode, Value) {
    client
        .post(
            &format!("/api/v1/abnormal-candidates/{candidate}/decision"),
            &json!({"decision": decision, "reason": reason}),
        )
        .await
}

fn candidate_of(list: &Value, target: i64, category: &str) -> i64 {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["target_id"] == target && c["category"] == category)
        .unwrap_or_else(|| panic!("a {category} candidate for target {target}: {list}"))["id"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn candidates_are_listed_not_listed_and_removed_with_the_flag_following_and_every_decision_kept()
 {
    let server = TestServer::start().await;
    let sc = scenario(&server, 2).await;
    let supervisor = server.login("supervisor").await;
    // The first target was unreachable and its publicity false (two candidates); the second
    // only unreachable.
    let outcomes = [
        vec![ResultCategory::Unreachable, ResultCategory::FalsePublicity],
        vec![ResultCategory::Unreachable],
    ];
    for (record, results) in sc.records.iter().zip(outcomes) {
        let (mut a, mut b) = phones(&server, record).await;
        fill(a.doc(&record.id).unwrap(), "登记住所无人", &results, None);
        sign_and_submit(&server, &mut a, &mut b, &record.id).await;
        approve_and_publish(&supervisor, &record.id).await;
    }
    let (t0, t1) = (sc.records[0].target_id, sc.records[1].target_id);
    let (_, list) = supervisor
        .get("/api/v1/abnormal-candidates?status=pending")
        .await;
    let c_unreachable = candidate_of(&list, t0, "unreachable");
    let c_false = candidate_of(&list, t0, "false_publicity");
    let c_other = candidate_of(&list, t1, "unreachable");

    // Only a supervisor decides; a reason is required; the decision is one of three.
    for who in ["planner", "admin", "inspector"] {
        let client = server.login(who).await;
        let (s, body) = decide(&client, c_unreachable, "list", "多次无法联系").await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{who}: {body}");
    }
    let (s, body) = decide(&supervisor, c_unreachable, "list", "  ").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (s, body) = decide(&supervisor, c_unreachable, "maybe", "想一想").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (s, body) = decide(&supervisor, c_unreachable, "list", &"长".repeat(2001)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (s, body) = decide(&supervisor, 999_999, "list", "无此候选").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let (s, body) = decide(&supervisor, c_unreachable, "remove", "尚未列入").await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "a pending candidate is not removed: {body}"
    );
    let flag = |server: &TestServer, target: i64| {
        server
            .state
            .db
            .read_blocking(move |c| {
                c.query_row(
                    "SELECT flag_abnormal FROM targets WHERE id = ?1",
                    [target],
                    |r| r.get::<_, bool>(0),
                )
            })
            .unwrap()
    };
    assert!(!flag(&server, t0), "nothing is listed before a decision");

    // Listing sets the flag, with the date and the record it came from.
    let (s, listed) = decide(&supervisor, c_unreachable, "list", "经两次实地核查无法联系").await;
    assert_eq!(s, StatusCode::CREATED, "{listed}");
    assert_eq!(listed["status"], "listed");
    assert_eq!(listed["flag_abnormal"], true);
    assert_eq!(listed["abnormal_source_record"], json!(sc.records[0].id));
    assert!(listed["abnormal_listed_on"].is_string(), "{listed}");
    assert_eq!(listed["decision"]["late"], false);
    assert!(flag(&server, t0));
    let planner = server.login("planner").await;
    let (_, target) = planner.get(&format!("/api/v1/targets/{t0}")).await;
    assert_eq!(
        target["flag_abnormal"], true,
        "the registry shows it: {target}"
    );
    let (s, body) = decide(&supervisor, c_unreachable, "list", "再列一次").await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "a listed candidate is not listed twice: {body}"
    );

    // The second candidate of the same target listed too; removing the first leaves the
    // target on the list through the second, removing both takes it off.
    let (s, body) = decide(&supervisor, c_false, "list", "公示信息弄虚作假").await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, removed) = decide(
        &supervisor,
        c_unreachable,
        "remove",
        "已恢复联系，住所可联系",
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{removed}");
    assert_eq!(removed["status"], "removed");
    assert_eq!(
        removed["flag_abnormal"], true,
        "still listed for the other: {removed}"
    );
    assert!(flag(&server, t0));
    let (_, removed) = decide(&supervisor, c_false, "remove", "已更正公示信息").await;
    assert_eq!(removed["flag_abnormal"], false, "{removed}");
    assert_eq!(removed["abnormal_listed_on"], Value::Null);
    assert!(!flag(&server, t0));

    // Not listing a candidate decided after its deadline: taken, and marked late.
    server
        .state
        .db
        .write_blocking(move |tx| {
            tx.execute(
                "UPDATE abnormal_candidates SET verified_on = '2026-01-05' WHERE id = ?1",
                [c_other],
            )
        })
        .unwrap();
    let (s, late) = decide(&supervisor, c_other, "not_list", "已搬迁至新址并办理变更").await;
    assert_eq!(s, StatusCode::CREATED, "{late}");
    assert_eq!(
        (&late["status"], &late["decision"]["late"]),
        (&json!("not_listed"), &json!(true))
    );
    assert!(!flag(&server, t1));
    let (s, body) = decide(&supervisor, c_other, "list", "改变主意").await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "a decided candidate stays decided: {body}"
    );

    // The outcome shows every decision in order, with who, why and when.
    let (_, outcome) = supervisor
        .get(&format!("/api/v1/targets/{t0}/outcome"))
        .await;
    let decisions: Vec<(String, i64)> = outcome["abnormal_decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["decision"].as_str().unwrap().to_owned(),
                d["candidate_id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("list".to_owned(), c_unreachable),
            ("list".to_owned(), c_false),
            ("remove".to_owned(), c_unreachable),
            ("remove".to_owned(), c_false),
        ]
    );
    let first = &outcome["abnormal_decisions"][0];
    assert_eq!(first["decided_by"], "supervisor");
    assert_eq!(first["reason"], "经两次实地核查无法联系");
    assert_eq!(first["decision_label"], "列入经营异常名录");
    assert_eq!(outcome["abnormal_listing"]["flag_abnormal"], false);
    let statuses: Vec<&str> = outcome["abnormal_candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["removed", "removed"]);

    // Five decisions, five audit entries, and the chain holds; decisions cannot be edited.
    let (entries, verification) = server
        .state
        .db
        .read_blocking(|c| Ok((audit::recent(c, Some("target:"), 100)?, audit::verify(c)?)))
        .unwrap();
    let decided = entries
        .iter()
        .filter(|e| e.action.starts_with("abnormal_candidate."))
        .count();
    assert_eq!(decided, 5);
    assert!(
        matches!(verification, Verification::Intact { .. }),
        "{verification:?}"
    );
    let edited = server
        .state
        .db
        .write_blocking(|tx| tx.execute("UPDATE abnormal_decisions SET reason = 'x'", []));
    assert!(edited.is_err(), "decisions are never edited");
}

#[tokio::test]
async fn the_console_lists_candidates_with_their_deadline_and_decides_them() {
    use suiji_tests::{console_page, console_post, console_session, csrf_of};
    let server = TestServer::start().await;
    let sc = scenario(&server, 1).await;
    let supervisor = server.login("supervisor").await;
    let record = &sc.records[0];
    let (mut a, mut b) = phones(&server, record).await;
    fill(
        a.doc(&record.id).unwrap(),
        "登记住所无人",
        &[ResultCategory::Unreachable],
        None,
    );
    sign_and_submit(&server, &mut a, &mut b, &record.id).await;
    approve_and_publish(&supervisor, &record.id).await;
    let (_, list) = supervisor.get("/api/v1/abnormal-candidates").await;
    let candidate = candidate_of(&list, record.target_id, "unreachable");

    // A planner sees the candidate and its deadline, with no form to decide.
    let planner = console_session(&server, "planner").await;
    let (s, html) = console_page(&server, &planner, "/outcomes").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains(&format!("id=\"candidate-{candidate}\"")),
        "{html}"
    );
    assert!(
        html.contains("决定期限") && html.contains("待决定"),
        "{html}"
    );
    assert!(
        !html.contains("提交决定"),
        "a planner does not decide: {html}"
    );
    let inspector = console_session(&server, "inspector").await;
    let (s, _) = console_page(&server, &inspector, "/outcomes").await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The supervisor's form: a missing reason is refused beside the field, then it lists.
    let jar = console_session(&server, "supervisor").await;
    let (_, html) = console_page(&server, &jar, "/outcomes").await;
    let csrf = csrf_of(&html);
    let action = format!("/abnormal-candidates/{candidate}/decision");
    let refused = console_post(
        &server,
        &jar,
        &action,
        &[("csrf", &csrf), ("decision", "list"), ("reason", "")],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.text().await.unwrap().contains("请写明理由"));
    let forged = console_post(
        &server,
        &jar,
        &action,
        &[("csrf", "forged"), ("decision", "list"), ("reason", "x")],
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN, "CSRF");
    let done = console_post(
        &server,
        &jar,
        &action,
        &[
            ("csrf", &csrf),
            ("decision", "list"),
            ("reason", "实地核查两次无法联系"),
        ],
    )
    .await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let (_, html) = console_page(&server, &jar, "/outcomes?done=list").await;
    assert!(html.contains("已列入经营异常名录。"), "{html}");
    assert!(
        html.contains("移出经营异常名录"),
        "a listed candidate offers removal: {html}"
    );
    let (_, outcome) = supervisor
        .get(&format!("/api/v1/targets/{}/outcome", record.target_id))
        .await;
    assert_eq!(
        outcome["abnormal_listing"]["flag_abnormal"], true,
        "{outcome}"
    );
    // Listing twice from a stale page is refused with the reason shown.
    let again = console_post(
        &server,
        &jar,
        &action,
        &[("csrf", &csrf), ("decision", "list"), ("reason", "再次")],
    )
    .await;
    assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(again.text().await.unwrap().contains("与现有数据冲突"));
}

/// The target's class and the (from, to, reason, rule) of each change of it.
async fn risk_of(client: &Client, target: i64) -> (String, Vec<(String, String, String, Value)>) {
    let (s, t) = client.get(&format!("/api/v1/targets/{target}")).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let history = t["risk_class_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["from"].as_str().unwrap().to_owned(),
                h["to"].as_str().unwrap().to_owned(),
                h["reason"].as_str().unwrap().to_owned(),
                h["rule"].clone(),
            )
        })
        .collect();
    (t["risk_class"].as_str().unwrap().to_owned(), history)
}

fn change(
    from: &str,
    to: &str,
    reason: &str,
    rule: Option<&str>,
) -> (String, String, String, Value) {
    (from.into(), to.into(), reason.into(), json!(rule))
}

#[tokio::test]
async fn risk_classes_follow_published_and_corrected_results_and_a_class_set_by_hand() {
    let server = TestServer::start().await;
    let sc = scenario(&server, 2).await;
    let supervisor = server.login("supervisor").await;
    let planner = server.login("planner").await;
    let (t0, t1) = (sc.records[0].target_id, sc.records[1].target_id);
    assert_eq!(
        risk_of(&planner, t0).await,
        ("A".to_owned(), vec![]),
        "the task draws class A"
    );

    // Problems found: one class riskier, kept in the history with the rule that moved it.
    let record = &sc.records[0];
    let (mut a, mut b) = phones(&server, record).await;
    fill(
        a.doc(&record.id).unwrap(),
        "年报未公示",
        &[ResultCategory::NotPublicized],
        None,
    );
    sign_and_submit(&server, &mut a, &mut b, &record.id).await;
    approve_and_publish(&supervisor, &record.id).await;
    assert_eq!(
        risk_of(&planner, t0).await,
        (
            "B".to_owned(),
            vec![change("A", "B", "published", Some("problems"))]
        )
    );

    // The result is corrected to 未发现问题: what the first version did is taken back.
    let (_, result) = supervisor
        .get(&format!("/api/v1/targets/{t0}/outcome"))
        .await;
    let result_id = result["published_results"][0]["id"].as_i64().unwrap();
    let (s, body) = supervisor
        .post(
            &format!("/api/v1/results/{result_id}/corrections"),
            &json!({"reason": "经复核台账齐全", "results": ["no_problem"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (class, history) = risk_of(&planner, t0).await;
    assert_eq!(class, "A");
    assert_eq!(history.last(), Some(&change("B", "A", "corrected", None)));

    // The registry sets the second target's class by hand (kept as such); with one clean
    // result enough to lower a class, its clean result takes it one lower from there.
    let (_, mut target) = planner.get(&format!("/api/v1/targets/{t1}")).await;
    let fields = target.as_object_mut().unwrap();
    for generated in ["id", "created_at", "updated_at", "risk_class_history"] {
        fields.remove(generated);
    }
    fields.insert("risk_class".into(), json!("C"));
    let (s, body) = planner.put(&format!("/api/v1/targets/{t1}"), &target).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = planner
        .put("/api/v1/rules", &json!({"risk_lower_after_clean": 1}))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = planner
        .put("/api/v1/rules", &json!({"risk_lower_after_clean": 21}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let record = &sc.records[1];
    let (mut a, mut b) = phones(&server, record).await;
    fill(
        a.doc(&record.id).unwrap(),
        "证照齐全",
        &[ResultCategory::NoProblem],
        None,
    );
    sign_and_submit(&server, &mut a, &mut b, &record.id).await;
    approve_and_publish(&supervisor, &record.id).await;
    assert_eq!(
        risk_of(&planner, t1).await,
        (
            "B".to_owned(),
            vec![
                change("A", "C", "registry", None),
                change("C", "B", "published", Some("clean_run")),
            ]
        )
    );
    let edited = server
        .state
        .db
        .write_blocking(|tx| tx.execute("DELETE FROM risk_class_history", []));
    assert!(edited.is_err(), "the history is never deleted");
}
