//! The loop over two years (#20), end to end on a real server: year one is
//! drawn, inspected on phones and published with mixed outcomes (clean,
//! problems with a 责令改正 rechecked and found uncorrected, 无法联系 listed on the
//! 经营异常名录, 弄虚作假 not listed, a neutral result); year two's commitment
//! and draw start from what year one left: the new risk classes as strata, the
//! listed target drawn whatever the chance, clean targets cooled down, problem
//! targets weighted. Both years' draw records verify.

use reqwest::StatusCode;
use serde_json::{Value, json};
use suiji_mobile_core::vocab::{FollowUpMeasure, ResultCategory};
use suiji_server::draw::algorithm::CLASSES;
use suiji_server::draw::records::{self, RecordSummary};
use suiji_server::draw::{DrawRecord, verify};
use suiji_tests::{Client, TestServer, observers, seed_agency};

use crate::rechecks::walk;

async fn task(
    planner: &Client,
    plan_id: i64,
    number: &str,
    window: (&str, &str),
    count: u32,
) -> i64 {
    let (s, created) = planner
        .post(
            &format!("/api/v1/plans/{plan_id}/tasks"),
            &json!({
                "number": number, "name": "餐饮服务食品安全抽查", "directed": true,
                // Targets on the 严重违法失信 list are D and drawn whatever the
                // outcomes; leave them out to watch the outcomes alone.
                "conditions": {"industries": ["餐饮业"], "flag_serious": false}, "count": count,
                "items": [{"code": "SCJG-SP-002"}],
                "window_start": window.0, "window_end": window.1,
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    created["id"].as_i64().unwrap()
}

/// Commits and draws `task_id`; the draw record as served.
async fn commit_and_draw(planner: &Client, task_id: i64) -> Value {
    let (s, c) = planner
        .post(&format!("/api/v1/tasks/{task_id}/draw/commit"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let (s, d) = planner
        .post(
            &format!("/api/v1/tasks/{task_id}/draw"),
            &json!({"commitment_id": c["id"], "entropy": observers()}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let (s, record) = planner.get(&format!("/api/v1/draws/{}", d["id"])).await;
    assert_eq!(s, StatusCode::OK, "{record}");
    record
}

/// Where `uscc` sits in a committed pool: (stratum, list name).
fn place(record: &Value, uscc: &str) -> Option<(usize, &'static str)> {
    for (c, stratum) in record["target_pool"].as_array().unwrap().iter().enumerate() {
        for list in ["must_include", "weighted", "others"] {
            let found = stratum[list]
                .as_array()
                .is_some_and(|l| l.iter().any(|u| u == uscc));
            if found {
                return Some((c, list));
            }
        }
    }
    None
}

fn class_index(class: &Value) -> usize {
    CLASSES
        .iter()
        .position(|c| *c == class.as_str().unwrap())
        .unwrap()
}

async fn records_of(server: &TestServer, task_id: i64) -> Vec<RecordSummary> {
    server
        .state
        .db
        .read(move |c| records::list(c, Some(task_id), None))
        .await
        .unwrap()
}

#[tokio::test]
async fn year_two_draws_from_the_classes_flags_and_cooldowns_year_one_left_and_both_years_verify() {
    let server = TestServer::start().await;
    // Six inspectors a department, so that last year's groups can sit this year out.
    let agency = seed_agency(&server, 6, 30).await;
    let planner = server.login("planner").await;
    let supervisor = server.login("supervisor").await;
    let (s, body) = planner
        .put(
            "/api/v1/rules",
            &json!({"clean_cooldown_days": 365, "problem_weight": 3,
                    "must_include_abnormal": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");

    // Year one.
    let first = task(
        &planner,
        agency.plan_id,
        "T-2026-1",
        ("2026-09-01", "2026-11-20"),
        6,
    )
    .await;
    let year_one = commit_and_draw(&planner, first).await;
    suiji_tests::publish_drawn_list(&planner, first).await;
    let drawn = records_of(&server, first).await;
    assert_eq!(drawn.len(), 6);
    let rectify = Some((FollowUpMeasure::OrderRectification, Some("2026-11-01")));
    let outcomes: [(&[ResultCategory], _); 6] = [
        (&[ResultCategory::NoProblem], None),
        (&[ResultCategory::Rectified], rectify),
        (&[ResultCategory::Unreachable], None),
        (&[ResultCategory::NoActivity], None),
        (&[ResultCategory::FalsePublicity], None),
        (&[ResultCategory::NoProblem], None),
    ];
    for (record, (results, follow_up)) in drawn.iter().zip(outcomes) {
        walk(&server, record, results, follow_up).await;
    }
    // The 无法联系 target is listed; the 弄虚作假 one is not.
    let (_, candidates) = supervisor
        .get("/api/v1/abnormal-candidates?status=pending")
        .await;
    for c in candidates.as_array().unwrap() {
        let (decision, reason) = if c["target_id"] == drawn[2].target_id {
            ("list", "两次上门均无法联系")
        } else {
            ("not_list", "经核实公示信息已更正")
        };
        let (s, body) = supervisor
            .post(
                &format!("/api/v1/abnormal-candidates/{}/decision", c["id"]),
                &json!({"decision": decision, "reason": reason}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    // The 责令改正 is rechecked after its deadline, found not corrected and referred on.
    let (_, due) = planner.get("/api/v1/follow-ups?overdue=true").await;
    assert_eq!(due.as_array().unwrap().len(), 1, "{due}");
    let (s, started) = planner
        .post(
            &format!("/api/v1/follow-ups/{}/recheck", due[0]["id"]),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{started}");
    let recheck = records_of(&server, started["task_id"].as_i64().unwrap()).await;
    walk(
        &server,
        &recheck[0],
        &[ResultCategory::PendingFollowup],
        Some((FollowUpMeasure::ReferCaseUnit, None)),
    )
    .await;
    let (_, closed) = planner
        .get(&format!(
            "/api/v1/follow-ups?target_id={}",
            drawn[1].target_id
        ))
        .await;
    assert_eq!(closed[0]["status"], "not_corrected", "{closed}");
    assert_eq!(closed[1]["measure"], "refer_case_unit", "{closed}");

    // What year one left, target by target: classes moved by problems found (the
    // rechecked one twice), the neutral and clean ones unmoved.
    let mut now = Vec::new();
    for record in &drawn {
        let (s, t) = planner
            .get(&format!("/api/v1/targets/{}", record.target_id))
            .await;
        assert_eq!(s, StatusCode::OK, "{t}");
        now.push(t);
    }
    let uscc = |i: usize| now[i]["uscc"].as_str().unwrap().to_owned();
    let was = |i: usize| place(&year_one, &uscc(i)).expect("drawn from the pool").0;
    let raised = |i: usize, steps: usize| (was(i) + steps).min(CLASSES.len() - 1);
    let expected = [
        was(0),
        raised(1, 2),
        raised(2, 1),
        was(3),
        raised(4, 1),
        was(5),
    ];
    for (i, class) in expected.iter().enumerate() {
        assert_eq!(
            class_index(&now[i]["risk_class"]),
            *class,
            "target {i}: {}",
            now[i]
        );
    }
    assert_eq!(now[2]["flag_abnormal"], true);
    assert_eq!(now[4]["flag_abnormal"], false);

    // Year two, in the next year's plan.
    let (s, plan) = planner
        .post(
            "/api/v1/plans",
            &json!({"number": "P-2027", "name": "2027年度抽查计划", "year": 2027,
                    "department": "SCJG"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{plan}");
    let second = task(
        &planner,
        plan["id"].as_i64().unwrap(),
        "T-2027-1",
        ("2027-03-01", "2027-05-31"),
        8,
    )
    .await;
    let year_two = commit_and_draw(&planner, second).await;
    assert_eq!(year_two["params"]["problem_weight"], 3);
    assert_eq!(year_two["params"]["clean_cooldown_days"], 365);
    // Clean targets cooled down; problem targets weighted in their new stratum; the listed
    // one a must-include there; the neutral one as it was.
    assert_eq!(place(&year_two, &uscc(0)), None, "clean: cooled down");
    assert_eq!(place(&year_two, &uscc(5)), None, "clean: cooled down");
    assert_eq!(place(&year_two, &uscc(1)), Some((expected[1], "weighted")));
    assert_eq!(
        place(&year_two, &uscc(2)),
        Some((expected[2], "must_include"))
    );
    assert_eq!(place(&year_two, &uscc(3)), Some((expected[3], "others")));
    assert_eq!(place(&year_two, &uscc(4)), Some((expected[4], "weighted")));
    let drawn_two: Vec<&str> = year_two["result"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["uscc"].as_str().unwrap())
        .collect();
    assert!(
        drawn_two.contains(&uscc(2).as_str()),
        "the listed target is drawn"
    );
    assert_eq!(drawn_two.len(), 8);
    let year_two_records = records_of(&server, second).await;
    assert_eq!(year_two_records.len(), 8);

    // `draw verify` holds for both years, each from its own record.
    for record in [year_one, year_two] {
        let record: DrawRecord = serde_json::from_value(record).unwrap();
        assert_eq!(verify(&record), Ok(()), "draw {}", record.draw_id);
    }
}
