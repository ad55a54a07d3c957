//! 复查 (#20), end to end on a real server: an order to correct (责令改正) whose
//! deadline has passed is rechecked by a task of its own, inspected on phones
//! by the original group, and its published result closes the follow-up.

use reqwest::StatusCode;
use serde_json::{Value, json};
use suiji_mobile_core::vocab::{FollowUpMeasure, ResultCategory};
use suiji_server::audit::{self, Verification};
use suiji_server::draw::records::RecordSummary;
use suiji_tests::{Client, TestServer};

use crate::review::{
    approve_and_publish, fill, make_task, phones, scenario, sign_and_submit, sync,
};

/// Walks `record` on its group's phones with these results and follow-up, then
/// approves and publishes it.
pub(crate) async fn walk(
    server: &TestServer,
    record: &RecordSummary,
    results: &[ResultCategory],
    follow_up: Option<(FollowUpMeasure, Option<&str>)>,
) {
    let supervisor = server.login("supervisor").await;
    let (mut a, mut b) = phones(server, record).await;
    fill(a.doc(&record.id).unwrap(), "现场核查", results, follow_up);
    sign_and_submit(server, &mut a, &mut b, &record.id).await;
    approve_and_publish(&supervisor, &record.id).await;
}

fn follow_up_of(list: &Value, record: &str) -> Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|f| f["record_id"] == record)
        .unwrap_or_else(|| panic!("a follow-up of {record}: {list}"))
        .clone()
}

async fn recheck(client: &Client, follow_up: &Value, body: Value) -> (StatusCode, Value) {
    client
        .post(
            &format!("/api/v1/follow-ups/{}/recheck", follow_up["id"]),
            &body,
        )
        .await
}

#[tokio::test]
async fn a_due_order_to_correct_is_rechecked_by_the_original_group_and_its_result_closes_the_follow_up()
 {
    let server = TestServer::start().await;
    let sc = scenario(&server, 3).await;
    let planner = server.login("planner").await;
    let supervisor = server.login("supervisor").await;
    // Due (its deadline passed), not yet due, and a referral (never rechecked).
    walk(
        &server,
        &sc.records[0],
        &[ResultCategory::Rectified],
        Some((FollowUpMeasure::OrderRectification, Some("2026-11-01"))),
    )
    .await;
    walk(
        &server,
        &sc.records[1],
        &[ResultCategory::Rectified],
        Some((FollowUpMeasure::OrderRectification, Some("2099-12-31"))),
    )
    .await;
    walk(
        &server,
        &sc.records[2],
        &[ResultCategory::PendingFollowup],
        Some((FollowUpMeasure::ReferCaseUnit, None)),
    )
    .await;
    let original = &sc.records[0];

    // Only the due one is overdue, and only it may be rechecked now.
    let (s, overdue) = supervisor.get("/api/v1/follow-ups?overdue=true").await;
    assert_eq!(s, StatusCode::OK, "{overdue}");
    assert_eq!(overdue.as_array().unwrap().len(), 1, "{overdue}");
    let due = follow_up_of(&overdue, &original.id);
    assert_eq!(due["recheck_due"], true);
    assert_eq!(due["status"], "open");
    let (_, all) = supervisor.get("/api/v1/follow-ups").await;
    let later = follow_up_of(&all, &sc.records[1].id);
    let referral = follow_up_of(&all, &sc.records[2].id);
    assert_eq!(later["recheck_due"], false);
    assert_eq!(referral["recheck_due"], false);

    // Follow-ups are not an inspector's to read; an unknown filter is refused.
    let inspector = server.login("inspector").await;
    let (s, body) = inspector.get("/api/v1/follow-ups").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let (s, body) = supervisor.get("/api/v1/follow-ups?owner=me").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Only a planner starts a 复查, and only of a due order to correct.
    for who in ["supervisor", "admin", "inspector"] {
        let client = server.login(who).await;
        let (s, body) = recheck(&client, &due, json!({})).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{who}: {body}");
    }
    let (s, body) = recheck(&planner, &later, json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert!(body.to_string().contains("2099-12-31"), "{body}");
    let (s, body) = recheck(&planner, &referral, json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let (s, body) = recheck(&planner, &json!({"id": 999_999}), json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let (s, body) = recheck(&planner, &due, json!({"group": [1, 2]})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "unknown field: {body}");

    let (s, started) = recheck(&planner, &due, json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{started}");
    let task_id = started["task_id"].as_i64().unwrap();
    let record_id = started["record_id"].as_str().unwrap().to_owned();
    assert_eq!(
        started["inspectors"],
        json!(original.group),
        "the original group"
    );
    assert_eq!(started["original_record_id"], original.id);
    let (s, body) = recheck(&planner, &due, json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "a second 复查: {body}");
    assert!(body.to_string().contains(&record_id), "{body}");

    // A directed task of one record, never drawn.
    let (s, task) = planner.get(&format!("/api/v1/tasks/{task_id}")).await;
    assert_eq!(s, StatusCode::OK, "{task}");
    assert_eq!(task["recheck_of"], original.id);
    assert_eq!(task["directed"], true);
    assert_eq!(task["count"], 1);
    let (_, first) = planner.get(&format!("/api/v1/tasks/{}", sc.task_id)).await;
    assert_eq!(
        task["items"], first["items"],
        "the same items, same versions"
    );
    let (s, body) = planner
        .post(&format!("/api/v1/tasks/{task_id}/draw/commit"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let (_, list) = supervisor.get("/api/v1/follow-ups").await;
    let rechecking = follow_up_of(&list, &original.id);
    assert_eq!(rechecking["status"], "rechecking");
    assert_eq!(rechecking["recheck"]["record_id"], record_id);
    assert_eq!(rechecking["recheck_due"], false);

    // The original group's phones receive it, naming what it rechecks.
    let summary = RecordSummary {
        id: record_id.clone(),
        ..original.clone()
    };
    let (mut a, mut b) = phones(&server, &summary).await;
    let assignment = a
        .doc(&record_id)
        .expect("the 复查 reached the lead's phone")
        .assignment()
        .unwrap();
    let of = assignment
        .recheck_of
        .expect("the assignment names what it rechecks");
    assert_eq!(of.record_id, original.id);
    assert_eq!(of.deadline.to_string(), "2026-11-01");
    assert_eq!(of.detail.as_deref(), Some("限期整改"));
    assert_eq!(
        assignment
            .inspectors
            .iter()
            .map(|i| i.inspector_id.as_str().parse::<i64>().unwrap())
            .collect::<Vec<_>>(),
        original.group
    );
    assert!(b.doc(&record_id).is_ok(), "and the partner's");

    // Found corrected: published without a drawn list to wait for, the follow-up closes.
    fill(
        a.doc(&record_id).unwrap(),
        "已按要求整改",
        &[ResultCategory::NoProblem],
        None,
    );
    sign_and_submit(&server, &mut a, &mut b, &record_id).await;
    approve_and_publish(&supervisor, &record_id).await;
    let (_, list) = supervisor.get("/api/v1/follow-ups").await;
    let closed = follow_up_of(&list, &original.id);
    assert_eq!(closed["status"], "corrected", "{closed}");
    assert_eq!(closed["status_label"], "已改正");
    assert!(closed["recheck"]["closed_at"].is_string());
    let (_, unfinished) = supervisor.get("/api/v1/follow-ups?unfinished=true").await;
    assert!(
        unfinished
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["record_id"] != original.id),
        "{unfinished}"
    );

    // Its result corrected to problems found: not corrected after all.
    let (_, outcome) = supervisor
        .get(&format!("/api/v1/targets/{}/outcome", original.target_id))
        .await;
    let result_id = outcome["published_results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["task_number"] == started["task_number"])
        .unwrap_or_else(|| panic!("the 复查's result: {outcome}"))["id"]
        .as_i64()
        .unwrap();
    let (s, body) = supervisor
        .post(
            &format!("/api/v1/results/{result_id}/corrections"),
            &json!({"reason": "复查记录误选", "results": ["rectified"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (_, outcome) = supervisor
        .get(&format!("/api/v1/targets/{}/outcome", original.target_id))
        .await;
    let closed = follow_up_of(&outcome["follow_ups"], &original.id);
    assert_eq!(closed["status"], "not_corrected", "{outcome}");

    // A 复查 is not drawn, so it does not count towards the frequency cap: with two draws
    // a year allowed, the target is still in the next task's pool.
    server
        .state
        .db
        .write_blocking(|tx| tx.execute("UPDATE rules SET frequency_cap = 2", []))
        .unwrap();
    let next = make_task(
        &planner,
        first["plan_id"].as_i64().unwrap(),
        "T-REV-2",
        json!({"conditions": {"industries": ["餐饮业"]}, "count": 1}),
    )
    .await;
    let (s, commitment) = planner
        .post(&format!("/api/v1/tasks/{next}/draw/commit"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{commitment}");
    let (pool, uscc): (String, String) = server
        .state
        .db
        .read_blocking(|c| {
            c.query_row(
                "SELECT d.target_pool, t.uscc FROM draw_commitments d, targets t
                 WHERE d.task_id = ?1 AND t.id = ?2",
                suiji_server::params![next, original.target_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .unwrap();
    assert!(pool.contains(&uscc), "{uscc} not in {pool}");

    // Its dossier exports and verifies, for the supervisor too.
    let response = supervisor
        .raw(
            reqwest::Method::GET,
            &format!("/api/v1/tasks/{task_id}/dossier.zip"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let zip = response.bytes().await.unwrap().to_vec();
    let verified = suiji_server::dossier::verify::verify(std::io::Cursor::new(&zip));
    assert!(verified.is_ok(), "{:?}", verified.err());

    // Audited, and the chain holds; a recheck's origin cannot be rewritten.
    let (entries, verification) = server
        .state
        .db
        .read_blocking(|c| {
            Ok((
                audit::recent(c, Some("follow_up:"), 100)?,
                audit::verify(c)?,
            ))
        })
        .unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "follow_up.recheck")
            .count(),
        1,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| **a == "follow_up.close").count(),
        2,
        "{actions:?}"
    );
    assert!(
        matches!(verification, Verification::Intact { .. }),
        "{verification:?}"
    );
    let rewritten = server.state.db.write_blocking(|tx| {
        tx.execute(
            "UPDATE rechecks SET original_record_id = ?1",
            [&sc.records[1].id],
        )
    });
    assert!(rewritten.is_err(), "{rewritten:?}");
}

#[tokio::test]
async fn a_recheck_leaves_out_an_inspector_with_a_conflict_and_takes_the_group_a_planner_names() {
    let server = TestServer::start().await;
    let sc = scenario(&server, 1).await;
    let planner = server.login("planner").await;
    let admin = server.login("admin").await;
    let original = &sc.records[0];
    walk(
        &server,
        original,
        &[ResultCategory::Rectified],
        Some((FollowUpMeasure::OrderRectification, Some("2026-10-15"))),
    )
    .await;
    let (_, list) = planner.get("/api/v1/follow-ups?overdue=true").await;
    let due = follow_up_of(&list, &original.id);

    // The partner has since declared a conflict with the target: the group is short.
    let partner = original.group[1];
    let (s, body) = admin
        .post(
            &format!("/api/v1/inspectors/{partner}/conflicts"),
            &json!({"target_id": original.target_id, "reason": "近亲属任该企业负责人"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, body) = recheck(&planner, &due, json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let text = body.to_string();
    assert!(
        text.contains(&partner.to_string()) && text.contains("inspectors"),
        "{body}"
    );

    // Naming the conflicted one, one twice, one unknown, or one alone is refused.
    let other = server
        .state
        .db
        .read_blocking(|c| {
            c.query_row(
                "SELECT i.id FROM inspectors i WHERE i.active = 1 AND i.department_id =
                    (SELECT department_id FROM inspectors WHERE id = ?1)
                 AND i.id NOT IN (?1, ?2) ORDER BY i.id LIMIT 1",
                [original.group[0], partner],
                |r| r.get::<_, i64>(0),
            )
        })
        .unwrap();
    let lead = original.group[0];
    for bad in [
        json!([lead, partner]),
        json!([lead, lead]),
        json!([lead, 987_654]),
        json!([lead]),
    ] {
        let (s, body) = recheck(&planner, &due, json!({ "inspectors": bad })).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let (s, started) = recheck(&planner, &due, json!({"inspectors": [other, lead]})).await;
    assert_eq!(s, StatusCode::CREATED, "{started}");
    assert_eq!(
        started["inspectors"],
        json!([other, lead]),
        "the named lead first"
    );
    let records = server
        .state
        .db
        .read_blocking(|c| suiji_server::draw::records::list(c, started["task_id"].as_i64(), None))
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].group, vec![other, lead]);
    assert_eq!(records[0].target_id, original.target_id);

    // The partner's phone never hears of it.
    let mut partner_phone = suiji_server::memory_phone::MemoryPhone::new(partner, "c3").unwrap();
    server
        .state
        .db
        .write_blocking(|tx| partner_phone.register_key(tx))
        .unwrap();
    sync(&mut partner_phone, &server);
    assert!(partner_phone.doc(&records[0].id).is_err());
}

#[tokio::test]
async fn the_console_starts_a_recheck_only_for_a_planner_with_its_token_and_only_once() {
    use suiji_tests::{console_page, console_post, console_session, csrf_of};
    let server = TestServer::start().await;
    let sc = scenario(&server, 2).await;
    walk(
        &server,
        &sc.records[0],
        &[ResultCategory::Rectified],
        Some((FollowUpMeasure::OrderRectification, Some("2026-11-01"))),
    )
    .await;
    walk(
        &server,
        &sc.records[1],
        &[ResultCategory::Rectified],
        Some((FollowUpMeasure::OrderRectification, Some("2099-12-31"))),
    )
    .await;
    let planner_api = server.login("planner").await;
    let (_, list) = planner_api.get("/api/v1/follow-ups").await;
    let (due, later) = (
        follow_up_of(&list, &sc.records[0].id)["id"]
            .as_i64()
            .unwrap(),
        follow_up_of(&list, &sc.records[1].id)["id"]
            .as_i64()
            .unwrap(),
    );

    // Only the due one offers the button, and only to a planner.
    let supervisor = console_session(&server, "supervisor").await;
    let (_, html) = console_page(&server, &supervisor, "/outcomes").await;
    assert!(
        !html.contains("class=\"recheck\""),
        "no button for a supervisor: {html}"
    );
    let planner = console_session(&server, "planner").await;
    let (s, html) = console_page(&server, &planner, "/outcomes").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains(&format!("action=\"/follow-ups/{due}/recheck\"")),
        "{html}"
    );
    assert!(
        !html.contains(&format!("action=\"/follow-ups/{later}/recheck\"")),
        "{html}"
    );
    let csrf = csrf_of(&html);
    let (_, supervisor_html) = console_page(&server, &supervisor, "/outcomes").await;
    let refused = console_post(
        &server,
        &supervisor,
        &format!("/follow-ups/{due}/recheck"),
        &[("csrf", &csrf_of(&supervisor_html))],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let forged = console_post(
        &server,
        &planner,
        &format!("/follow-ups/{due}/recheck"),
        &[("csrf", "forged")],
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN, "CSRF");
    let early = console_post(
        &server,
        &planner,
        &format!("/follow-ups/{later}/recheck"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(early.status(), StatusCode::CONFLICT);
    assert!(early.text().await.unwrap().contains("2099-12-31"));
    let (_, list) = planner_api
        .get("/api/v1/follow-ups?status=rechecking")
        .await;
    assert_eq!(list, json!([]), "nothing started by the refusals");

    let started = console_post(
        &server,
        &planner,
        &format!("/follow-ups/{due}/recheck"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let to = started.headers()["location"].to_str().unwrap().to_owned();
    assert!(to.ends_with("?done=recheck"), "{to}");
    let (s, html) = console_page(&server, &planner, &to).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains("已发起复查") && html.contains(&sc.records[0].id),
        "{html}"
    );
    let again = console_post(
        &server,
        &planner,
        &format!("/follow-ups/{due}/recheck"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(again.status(), StatusCode::CONFLICT, "only once");

    // The target's page shows the follow-up under way; an inspector may not see it and an
    // unknown target is not found.
    let target = sc.records[0].target_id;
    let (s, html) = console_page(&server, &planner, &format!("/targets/{target}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("复查中") && html.contains("-FC"), "{html}");
    let inspector = console_session(&server, "inspector").await;
    let (s, _) = console_page(&server, &inspector, &format!("/targets/{target}")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = console_page(&server, &planner, "/targets/987654").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
