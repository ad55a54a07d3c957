//! Recusal (回避) in the web console over plain HTTP: declaring and
//! withdrawing a conflict of interest on the inspector directory, and
//! redrawing a target of a task from the task page, with the CSRF and role
//! rules of every console form.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION};
use serde_json::Value;
use suiji_server::draw::records::RecordSummary;
use suiji_tests::{
    TestServer, console_page, console_post, console_session, csrf_in, csrf_of, http,
};

/// Declared conflicts of an inspector, through the API.
async fn api_conflicts(server: &TestServer, inspector: i64) -> Vec<Value> {
    let planner = server.login("planner").await;
    let (status, body) = planner
        .get(&format!("/api/v1/inspectors/{inspector}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["conflicts"].as_array().unwrap().clone()
}

/// Ids of a task's draws, oldest first.
async fn draw_ids(server: &TestServer, task_id: i64) -> Vec<i64> {
    server
        .state
        .db
        .read(move |c| {
            Ok(suiji_server::draw::draws_of_task(c, task_id)?
                .into_iter()
                .map(|d| d.id)
                .collect())
        })
        .await
        .unwrap()
}

/// The task's records as they are now.
async fn records_of(server: &TestServer, task_id: i64) -> Vec<RecordSummary> {
    server
        .state
        .db
        .read(move |c| suiji_server::draw::records::list(c, Some(task_id), None))
        .await
        .unwrap()
}

/// A draw record as the planner downloads it.
async fn download(server: &TestServer, jar: &str, draw_id: i64) -> Vec<u8> {
    let response = http()
        .get(format!("{}/draws/{draw_id}/record.json", server.base))
        .header(COOKIE, jar)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn a_planner_declares_a_conflict_through_the_form_and_the_api_lists_it() {
    let server = TestServer::start().await;
    let agency = suiji_tests::seed_agency(&server, 2, 10).await;
    let (inspector, _) = agency.inspectors[0];
    let inspector_text = inspector.to_string();
    let uscc = suiji_server::uscc::generate('9', '1', "330106", 1003);
    let target_id = {
        let uscc = uscc.clone();
        server
            .state
            .db
            .read(move |c| suiji_server::registry::targets::id_by_uscc(c, &uscc))
            .await
            .unwrap()
            .expect("an imported target")
    };
    let jar = console_session(&server, "planner").await;
    let (status, html) = console_page(&server, &jar, "/inspectors").await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_in(&html, "conflict-form");

    // An empty reason is refused next to its field; nothing is written.
    let refused = console_post(
        &server,
        &jar,
        "/inspectors/conflicts",
        &[
            ("csrf", &csrf),
            ("inspector_id", &inspector_text),
            ("target_id", &uscc),
            ("reason", "  "),
        ],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.unwrap();
    assert!(html.contains("id=\"reason-error\""), "{html}");
    assert!(html.contains("请填写回避原因"));
    assert!(api_conflicts(&server, inspector).await.is_empty());

    // An unknown 统一社会信用代码 is refused next to the target field.
    let unknown = console_post(
        &server,
        &jar,
        "/inspectors/conflicts",
        &[
            ("csrf", &csrf),
            ("inspector_id", &inspector_text),
            ("target_id", "913301060000000000"),
            ("reason", "配偶在该企业任职"),
        ],
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = unknown.text().await.unwrap();
    let at = html
        .find("id=\"target_id-error\"")
        .expect("an error by the target");
    assert!(html[at..].contains("未找到"));
    assert!(api_conflicts(&server, inspector).await.is_empty());

    // Declared by 统一社会信用代码: the API lists it.
    let declared = console_post(
        &server,
        &jar,
        "/inspectors/conflicts",
        &[
            ("csrf", &csrf),
            ("inspector_id", &inspector_text),
            ("target_id", &uscc),
            ("reason", "配偶在该企业任职"),
        ],
    )
    .await;
    assert_eq!(declared.status(), StatusCode::SEE_OTHER);
    assert_eq!(declared.headers()[LOCATION], "/inspectors");
    let conflicts = api_conflicts(&server, inspector).await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0]["target_id"], target_id);
    assert_eq!(conflicts[0]["reason"], "配偶在该企业任职");

    // The same conflict again, by target id: refused next to the target field.
    let again = console_post(
        &server,
        &jar,
        "/inspectors/conflicts",
        &[
            ("csrf", &csrf),
            ("inspector_id", &inspector_text),
            ("target_id", &target_id.to_string()),
            ("reason", "另一理由"),
        ],
    )
    .await;
    assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = again.text().await.unwrap();
    let at = html
        .find("id=\"target_id-error\"")
        .expect("an error by the target");
    assert!(html[at..].contains("无需重复声明"));
    assert_eq!(api_conflicts(&server, inspector).await.len(), 1);

    // The directory shows it with a button that withdraws it.
    let (_, html) = console_page(&server, &jar, "/inspectors").await;
    assert!(html.contains("配偶在该企业任职"));
    let remove = format!("/inspectors/{inspector}/conflicts/{target_id}/delete");
    assert!(html.contains(&remove), "a withdraw button");
    let removed = console_post(&server, &jar, &remove, &[("csrf", &csrf)]).await;
    assert_eq!(removed.status(), StatusCode::SEE_OTHER);
    assert!(api_conflicts(&server, inspector).await.is_empty());
}

#[tokio::test]
async fn a_planner_redraws_an_inspector_out_of_a_record_for_recusal_through_the_form() {
    let server = TestServer::start().await;
    let (_, records) = suiji_tests::drawn_task(&server, 4, 2).await;
    let record = &records[0];
    let task_id = record.task_id;
    let recused = record.group[0];
    let planner = server.login("planner").await;
    let (_, inspector) = planner.get(&format!("/api/v1/inspectors/{recused}")).await;
    let recused_name = inspector["name"].as_str().unwrap().to_owned();
    let old = draw_ids(&server, task_id).await;
    assert_eq!(old.len(), 1);
    let old = old[0];
    let jar = console_session(&server, "planner").await;
    let before = download(&server, &jar, old).await;

    let (status, html) = console_page(&server, &jar, &format!("/tasks/{task_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("重新抽取"));
    let csrf = csrf_in(&html, "redraw-form");
    let done = console_post(
        &server,
        &jar,
        &format!("/tasks/{task_id}/redraw"),
        &[
            ("csrf", &csrf),
            ("target_id", &record.target_id.to_string()),
            ("reason", "recusal"),
            ("inspector_id", &recused.to_string()),
            ("explanation", "该检查员与企业负责人系近亲属"),
            ("observer0", "媒体记者 王五"),
            ("entropy0", "4711"),
        ],
    )
    .await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let location = done.headers()[LOCATION].to_str().unwrap().to_owned();
    let new: i64 = location
        .strip_prefix("/draws/")
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("a draw page: {location}"));
    assert_ne!(new, old);
    assert_eq!(draw_ids(&server, task_id).await, vec![old, new]);

    // The new record's page says what it replaces and why.
    let (status, html) = console_page(&server, &jar, &location).await;
    assert_eq!(status, StatusCode::OK);
    let replaces = &html[html.find("id=\"replaces\"").expect("a redraw section")..];
    assert!(replaces.contains(&format!("href=\"/draws/{old}\"")));
    assert!(replaces.contains("回避"));
    assert!(replaces.contains(&recused_name), "{replaces}");
    assert!(replaces.contains("该检查员与企业负责人系近亲属"));

    // The record itself names its parent and the reason, with the observer.
    let (status, drawn) = planner.get(&format!("/api/v1/draws/{new}")).await;
    assert_eq!(status, StatusCode::OK, "{drawn}");
    assert_eq!(drawn["kind"], "redraw");
    assert_eq!(drawn["parent_draw_id"], old);
    assert_eq!(drawn["reason"], "recusal: 该检查员与企业负责人系近亲属");
    assert_eq!(drawn["redraw"]["recused_inspector"], recused);
    assert_eq!(drawn["entropy"][0]["observer"], "媒体记者 王五");

    // The recused inspector left the group; the group is full again.
    let now = records_of(&server, task_id).await;
    let regrouped = now.iter().find(|r| r.id == record.id).unwrap();
    assert!(!regrouped.group.contains(&recused), "{:?}", regrouped.group);
    assert_eq!(regrouped.group.len(), record.group.len());

    // The old draw record is byte for byte what it was.
    assert_eq!(download(&server, &jar, old).await, before);
}

#[tokio::test]
async fn recusal_forms_without_the_csrf_token_or_an_explanation_change_nothing() {
    let server = TestServer::start().await;
    let (agency, records) = suiji_tests::drawn_task(&server, 4, 2).await;
    let record = &records[0];
    let task_id = record.task_id;
    let jar = console_session(&server, "planner").await;
    let target = record.target_id.to_string();
    let recused = record.group[0].to_string();
    let redraw = |csrf: &'static str, explanation: &'static str| {
        [
            ("csrf", csrf),
            ("target_id", target.as_str()),
            ("reason", "recusal"),
            ("inspector_id", recused.as_str()),
            ("explanation", explanation),
        ]
    };

    // Without the token: 403, nothing drawn.
    let pairs: Vec<(&str, &str)> = redraw("", "该检查员须回避")
        .into_iter()
        .filter(|(k, _)| *k != "csrf")
        .collect();
    let forged = console_post(&server, &jar, &format!("/tasks/{task_id}/redraw"), &pairs).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.text().await.unwrap().contains("CSRF"));
    assert_eq!(draw_ids(&server, task_id).await.len(), 1);
    assert_eq!(records_of(&server, task_id).await[0].group, record.group);

    // The conflict form without the token: 403, nothing declared.
    let (inspector, _) = agency.inspectors[0];
    let forged = console_post(
        &server,
        &jar,
        "/inspectors/conflicts",
        &[
            ("inspector_id", &inspector.to_string()),
            ("target_id", &record.target_id.to_string()),
            ("reason", "配偶在该企业任职"),
        ],
    )
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(api_conflicts(&server, inspector).await.is_empty());

    // With the token but no explanation: refused on the page, nothing drawn.
    let (_, html) = console_page(&server, &jar, &format!("/tasks/{task_id}")).await;
    let csrf = csrf_in(&html, "redraw-form");
    let mut pairs = redraw("", "   ");
    pairs[0].1 = &csrf;
    let refused = console_post(&server, &jar, &format!("/tasks/{task_id}/redraw"), &pairs).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.unwrap();
    let at = html
        .find("id=\"explanation-error\"")
        .expect("an error by the explanation");
    assert!(html[at..].contains("请填写情况说明"));
    assert!(
        html.contains("id=\"redraw-form\""),
        "the form is shown again"
    );
    assert_eq!(draw_ids(&server, task_id).await.len(), 1);
    assert_eq!(records_of(&server, task_id).await[0].group, record.group);
}

#[tokio::test]
async fn an_inspector_cannot_declare_conflicts_or_redraw() {
    let server = TestServer::start().await;
    let (agency, records) = suiji_tests::drawn_task(&server, 4, 2).await;
    let record = &records[0];
    let task_id = record.task_id;
    let me = record.group[0];
    let jar = console_session(&server, agency.username_of(me)).await;
    // An inspector's session has a valid token (the logout form carries it).
    let (status, home) = console_page(&server, &jar, "/").await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_of(&home);

    let (status, _) = console_page(&server, &jar, "/inspectors").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let refused = console_post(
        &server,
        &jar,
        &format!("/tasks/{task_id}/redraw"),
        &[
            ("csrf", &csrf),
            ("target_id", &record.target_id.to_string()),
            ("reason", "recusal"),
            ("inspector_id", &me.to_string()),
            ("explanation", "本人须回避"),
        ],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("403 无权访问"));
    assert_eq!(draw_ids(&server, task_id).await.len(), 1);
    assert_eq!(records_of(&server, task_id).await[0].group, record.group);

    let refused = console_post(
        &server,
        &jar,
        "/inspectors/conflicts",
        &[
            ("csrf", &csrf),
            ("inspector_id", &me.to_string()),
            ("target_id", &record.target_id.to_string()),
            ("reason", "本人须回避"),
        ],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(api_conflicts(&server, me).await.is_empty());
}
