//! Frequency by outcome (#20), end to end on a real server: a target found
//! clean is left out of the next pool for the same item within the rules'
//! `clean_cooldown_days`, a target found with problems is committed as
//! weighted with the rules' `problem_weight`, and the draw made from that
//! commitment (algorithm v3) verifies while a tampered weighted list does not.

use chrono::{Datelike, Days, NaiveDate};
use reqwest::StatusCode;
use serde_json::{Value, json};
use suiji_mobile_core::vocab::ResultCategory;
use suiji_server::draw::algorithm::{ALGORITHM, CLASSES};
use suiji_server::draw::records;
use suiji_server::draw::{DrawRecord, verify};
use suiji_tests::{Client, TestServer, observers, seed_agency};

use crate::rechecks::walk;

async fn task(planner: &Client, plan_id: i64, number: &str, body: Value) -> i64 {
    let mut task = json!({
        "number": number, "name": "餐饮服务食品安全定向抽查", "directed": true,
        "conditions": {"industries": ["餐饮业"]},
        "items": [{"code": "SCJG-SP-002"}],
        "window_start": "2026-09-01", "window_end": "2026-11-20",
    });
    for (k, v) in body.as_object().unwrap() {
        task[k] = v.clone();
    }
    let (s, created) = planner
        .post(&format!("/api/v1/plans/{plan_id}/tasks"), &task)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    created["id"].as_i64().unwrap()
}

async fn commit(planner: &Client, task_id: i64) -> Value {
    let (s, c) = planner
        .post(&format!("/api/v1/tasks/{task_id}/draw/commit"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    c
}

async fn draw(planner: &Client, task_id: i64, commitment: &Value) -> i64 {
    let (s, d) = planner
        .post(
            &format!("/api/v1/tasks/{task_id}/draw"),
            &json!({"commitment_id": commitment["id"], "entropy": observers()}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    d["id"].as_i64().unwrap()
}

#[tokio::test]
async fn a_clean_target_cools_down_and_a_problem_target_is_weighted_in_a_v3_draw_that_verifies() {
    let server = TestServer::start().await;
    // Six inspectors a department, so that a target's last group can sit out the next draw.
    let agency = seed_agency(&server, 6, 30).await;
    let planner = server.login("planner").await;

    // The first task draws two class-A targets; one is found clean, the other with problems.
    let first = task(
        &planner,
        agency.plan_id,
        "T-FREQ-1",
        json!({"conditions": {"industries": ["餐饮业"], "risk_classes": ["A"]}, "count": 2}),
    )
    .await;
    let c = commit(&planner, first).await;
    draw(&planner, first, &c).await;
    suiji_tests::publish_drawn_list(&planner, first).await;
    let drawn = server
        .state
        .db
        .read(move |c| records::list(c, Some(first), None))
        .await
        .unwrap();
    assert_eq!(drawn.len(), 2);
    walk(&server, &drawn[0], &[ResultCategory::NoProblem], None).await;
    walk(&server, &drawn[1], &[ResultCategory::NotPublicized], None).await;
    let target = |id: i64| {
        let planner = &planner;
        async move {
            let (s, t) = planner.get(&format!("/api/v1/targets/{id}")).await;
            assert_eq!(s, StatusCode::OK, "{t}");
            t
        }
    };
    let (clean, problem) = (
        target(drawn[0].target_id).await,
        target(drawn[1].target_id).await,
    );
    let clean_uscc = clean["uscc"].as_str().unwrap().to_owned();
    let problem_uscc = problem["uscc"].as_str().unwrap().to_owned();
    let problem_class = CLASSES
        .iter()
        .position(|c| *c == problem["risk_class"].as_str().unwrap())
        .unwrap();
    let (_, outcome) = planner
        .get(&format!("/api/v1/targets/{}/outcome", drawn[0].target_id))
        .await;
    let completed: NaiveDate = outcome["published_results"][0]["completed_on"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // The rules take both numbers within their bounds only.
    for bad in [
        json!({"clean_cooldown_days": 1096}),
        json!({"problem_weight": 0}),
        json!({"problem_weight": 11}),
    ] {
        let (s, body) = planner.put("/api/v1/rules", &bad).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let (_, rules) = planner.get("/api/v1/rules").await;
    assert_eq!(
        (&rules["clean_cooldown_days"], &rules["problem_weight"]),
        (&json!(0), &json!(1)),
        "both off by default: {rules}"
    );

    // A second task for the same item, its window starting 40 days after the clean result,
    // in a plan of that year.
    let start = completed + Days::new(40);
    let (s, plan) = planner
        .post(
            "/api/v1/plans",
            &json!({"number": "P-FREQ-2", "name": "下一轮抽查计划", "year": start.year(),
                    "department": "SCJG"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{plan}");
    let second = task(
        &planner,
        plan["id"].as_i64().unwrap(),
        "T-FREQ-2",
        json!({"count": 6, "window_start": start.to_string(),
               "window_end": (start + Days::new(30)).to_string()}),
    )
    .await;

    // A cooldown of 40 days has run out by the window's start; 41 has not.
    let set = |change: Value| {
        let planner = &planner;
        async move {
            let (s, body) = planner.put("/api/v1/rules", &change).await;
            assert_eq!(s, StatusCode::OK, "{body}");
        }
    };
    // (No frequency cap in the way, whichever year the window falls in.)
    set(json!({"clean_cooldown_days": 40, "problem_weight": 3, "frequency_cap": 52})).await;
    let all = commit(&planner, second).await;
    assert_eq!(all["target_count"], 30, "{all}");
    set(json!({"clean_cooldown_days": 41})).await;
    let committed = commit(&planner, second).await;
    assert_eq!(
        committed["target_count"], 29,
        "the clean target is left out: {committed}"
    );
    assert_eq!(committed["algorithm"], ALGORITHM);
    // Only results for the same item count: a task of another item keeps the clean target.
    let (s, other_plan) = planner
        .post(
            "/api/v1/plans",
            &json!({"number": "P-FREQ-3", "name": "危化品抽查计划", "year": start.year(),
                    "department": "YJGL"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{other_plan}");
    let other_item = task(
        &planner,
        other_plan["id"].as_i64().unwrap(),
        "T-FREQ-3",
        json!({"count": 6, "items": [{"code": "YJGL-WH-001"}],
               "window_start": start.to_string(),
               "window_end": (start + Days::new(30)).to_string()}),
    )
    .await;
    let unrelated = commit(&planner, other_item).await;
    assert_eq!(unrelated["target_count"], 30, "{unrelated}");
    let draw_id = draw(&planner, second, &committed).await;

    let (s, record) = planner.get(&format!("/api/v1/draws/{draw_id}")).await;
    assert_eq!(s, StatusCode::OK, "{record}");
    assert_eq!(record["algorithm"], "suiji-draw-v3");
    assert_eq!(record["params"]["problem_weight"], 3);
    assert_eq!(record["params"]["clean_cooldown_days"], 41);
    let pool = record["target_pool"].to_string();
    assert!(
        !pool.contains(&clean_uscc),
        "the clean target is in no list: {pool}"
    );
    assert_eq!(
        record["target_pool"][problem_class]["weighted"],
        json!([problem_uscc]),
        "the problem target is weighted in its stratum, and only there"
    );
    assert_eq!(pool.matches(&problem_uscc).count(), 1, "{pool}");
    assert_eq!(
        record["result"]["strata"][problem_class]["weighted"], 1,
        "{record}"
    );

    // The record verifies as `suiji-server draw verify` checks it; a tampered weighted
    // list does not.
    let honest: DrawRecord = serde_json::from_value(record).unwrap();
    assert_eq!(verify(&honest), Ok(()));
    let mut tampered = honest.clone();
    let stratum = &mut tampered.target_pool.strata[problem_class];
    stratum.weighted.clear();
    stratum.others.push(problem_uscc.clone());
    stratum.others.sort();
    let err = verify(&tampered).unwrap_err();
    assert!(err.contains("target_pool"), "{err}");
    let mut tampered = honest.clone();
    let stratum = &mut tampered.target_pool.strata[problem_class];
    let promoted = stratum.others.remove(0);
    stratum.weighted.push(promoted);
    stratum.weighted.sort();
    let err = verify(&tampered).unwrap_err();
    assert!(err.contains("target_pool"), "{err}");
    // Labelled v2, the weighted list alone is refused.
    let mut relabelled = honest.clone();
    relabelled.algorithm = "suiji-draw-v2".into();
    let err = verify(&relabelled).unwrap_err();
    assert!(err.contains("weighted"), "{err}");

    // An out-of-scope replacement in the problem target's class keeps its weight.
    let replaced = honest
        .result
        .targets
        .iter()
        .find(|t| t.risk_class == CLASSES[problem_class] && t.uscc != problem_uscc)
        .expect("the class has another drawn target")
        .uscc
        .clone();
    let target_id: i64 = server
        .state
        .db
        .read_blocking(move |c| {
            c.query_row("SELECT id FROM targets WHERE uscc = ?1", [replaced], |r| {
                r.get(0)
            })
        })
        .unwrap();
    let (s, redraw) = planner
        .post(
            &format!("/api/v1/tasks/{second}/redraw"),
            &json!({"target_id": target_id, "reason": "out_of_scope", "explanation": "已迁出本辖区"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{redraw}");
    let (_, redrawn) = planner
        .get(&format!("/api/v1/draws/{}", redraw["id"]))
        .await;
    let redrawn: DrawRecord = serde_json::from_value(redrawn).unwrap();
    assert_eq!(redrawn.algorithm, ALGORITHM);
    let problem_drawn = honest.result.targets.iter().any(|t| t.uscc == problem_uscc);
    assert_eq!(
        redrawn.target_pool.strata[problem_class].weighted,
        if problem_drawn {
            vec![]
        } else {
            vec![problem_uscc.clone()]
        }
    );
    assert_eq!(redrawn.params.problem_weight, 3);
    assert_eq!(verify(&redrawn), Ok(()));
    assert_eq!(
        suiji_server::draw::verify_redraw_pools(&redrawn, &honest),
        Ok(())
    );
}

#[tokio::test]
async fn a_commitment_made_before_the_upgrade_is_drawn_and_redrawn_as_v2() {
    let server = TestServer::start().await;
    let agency = seed_agency(&server, 6, 30).await;
    let planner = server.login("planner").await;
    let task_id = task(&planner, agency.plan_id, "T-FREQ-V2", json!({"count": 4})).await;
    let fresh = commit(&planner, task_id).await;
    // What a v2 server committed: the same pools, parameters and sealed secret under the
    // old version (with both rules off, v3 writes them exactly as v2 did). The v3
    // commitment is superseded, as a new commitment would do.
    let old_id: i64 = server
        .state
        .db
        .write_blocking(move |tx| {
            let id = fresh["id"].as_i64().unwrap();
            tx.execute(
                "UPDATE draw_commitments SET superseded_at = committed_at WHERE id = ?1",
                [id],
            )?;
            tx.query_row(
                "INSERT INTO draw_commitments (task_id, algorithm, secret, secret_sha256, params,
                    params_sha256, target_pool, target_pool_sha256, target_count, inspector_pool,
                    inspector_pool_sha256, inspector_count, committed_at, committed_by, sealed_secret)
                 SELECT task_id, 'suiji-draw-v2', secret, secret_sha256, params, params_sha256,
                    target_pool, target_pool_sha256, target_count, inspector_pool,
                    inspector_pool_sha256, inspector_count, committed_at, committed_by, sealed_secret
                 FROM draw_commitments WHERE id = ?1 RETURNING id",
                [id],
                |r| r.get(0),
            )
        })
        .unwrap();
    let draw_id = draw(&planner, task_id, &json!({"id": old_id})).await;
    let (_, record) = planner.get(&format!("/api/v1/draws/{draw_id}")).await;
    assert_eq!(record["algorithm"], "suiji-draw-v2", "{record}");
    assert!(record["params"].get("problem_weight").is_none(), "{record}");
    let initial: DrawRecord = serde_json::from_value(record).unwrap();
    assert_eq!(verify(&initial), Ok(()));
    // Its redraws follow it.
    let (_, list) = planner
        .get(&format!("/api/v1/tasks/{task_id}/records"))
        .await;
    let victim = &list[0];
    let (s, redraw) = planner
        .post(
            &format!("/api/v1/tasks/{task_id}/redraw"),
            &json!({"target_id": victim["target_id"], "reason": "recusal",
                    "inspector_id": victim["group"][0], "explanation": "近亲属在该企业任职"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{redraw}");
    let (_, redrawn) = planner
        .get(&format!("/api/v1/draws/{}", redraw["id"]))
        .await;
    let redrawn: DrawRecord = serde_json::from_value(redrawn).unwrap();
    assert_eq!(redrawn.algorithm, "suiji-draw-v2");
    assert_eq!(verify(&redrawn), Ok(()));
    assert_eq!(
        suiji_server::draw::verify_redraw_pools(&redrawn, &initial),
        Ok(())
    );
}
