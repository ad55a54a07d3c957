//! Deadlines in a year without a holiday schedule, end to end across the year
//! boundary: the server ships schedules up to 2026, and agencies plan (and
//! draw) next year's tasks in December. Such a deadline is provisional (2027
//! counted Monday to Friday), warned about when the task is created, never a
//! reason to refuse the draw, marked wherever it is shown (API, console, the
//! record document on the phones), and final, moved where the schedule says
//! so, the moment an admin loads 2027.

use reqwest::StatusCode;
use serde_json::{Value, json};
use suiji_mobile_core::RecordId;
use suiji_server::draw::records::{self, RecordSummary};
use suiji_tests::{Client, Phone, TestServer, console_page, console_session, seed_agency};

/// The console's mark beside a provisional deadline.
const MARK: &str = "（暂定，节假日安排未公布）";

/// A 2027 schedule in holiday-cn's format. The State Council had not published 2027's when
/// this was written (and ../shared/reference has none), so the dates are synthetic but shaped
/// like a real year: New Year's Day off, and a nine-day Spring Festival block (除夕 Friday
/// 5 February to Saturday 13 February) with make-up working days on Sunday 31 January and
/// Saturday 20 February, as 2026 had around its own. `make_up` false leaves the make-up days
/// out, as a corrected notice might.
fn year_2027(make_up: bool) -> Value {
    let mut days = vec![json!({"name": "元旦", "date": "2027-01-01", "isOffDay": true})];
    for d in 5..=13 {
        days.push(json!({"name": "春节", "date": format!("2027-02-{d:02}"), "isOffDay": true}));
    }
    if make_up {
        days.push(json!({"name": "春节", "date": "2027-01-31", "isOffDay": false}));
        days.push(json!({"name": "春节", "date": "2027-02-20", "isOffDay": false}));
    }
    for d in ["2027-04-03", "2027-04-04", "2027-04-05"] {
        days.push(json!({"name": "清明节", "date": d, "isOffDay": true}));
    }
    json!({"year": 2027, "papers": [], "days": days})
}

/// Creates a food-safety task drawing one target in `plan_id`; returns the 201 answer.
async fn create_task(planner: &Client, plan_id: i64, number: &str, window: (&str, &str)) -> Value {
    let (s, task) = planner
        .post(
            &format!("/api/v1/plans/{plan_id}/tasks"),
            &json!({
                "number": number, "name": "餐饮服务食品安全定向抽查", "directed": true,
                "conditions": {"industries": ["餐饮业"], "risk_classes": ["A"]}, "count": 1,
                "items": [{"code": "SCJG-SP-002"}],
                "window_start": window.0, "window_end": window.1,
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{task}");
    task
}

/// Commits and draws `task_id`; returns its records. Today's code refused this draw (422
/// `window_end`) whenever the deadline fell in 2027.
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
    assert_eq!(
        s,
        StatusCode::CREATED,
        "a provisional deadline never refuses a draw: {d}"
    );
    server
        .state
        .db
        .read(move |c| records::list(c, Some(task_id), None))
        .await
        .unwrap()
}

/// The record's entry in `/api/v1/deadlines` as `client` sees it on `as_of`.
async fn deadline_entry(client: &Client, record: &str, as_of: &str) -> Value {
    let (s, due) = client
        .get(&format!("/api/v1/deadlines?within_days=60&as_of={as_of}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{due}");
    due["due_soon"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["record_id"] == record)
        .unwrap_or_else(|| panic!("no entry for {record}: {due}"))
        .clone()
}

/// `/api/v1/deadlines` on `as_of` as an XLSX, read back: every row's cells as text.
async fn deadline_rows(client: &Client, as_of: &str) -> Vec<Vec<String>> {
    use calamine::Reader;
    let answer = client
        .raw(
            reqwest::Method::GET,
            &format!("/api/v1/deadlines?within_days=60&as_of={as_of}&format=xlsx"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let bytes = answer.bytes().await.unwrap().to_vec();
    let mut book: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(bytes)).unwrap();
    let range = book.worksheet_range("公示期限").unwrap();
    range
        .rows()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect()
}

/// (deadline, provisional) as the server's copy of the record document holds them.
fn server_document_deadline(server: &TestServer, record: &str) -> (String, bool) {
    let a = suiji_tests::server_record(server, record)
        .assignment()
        .unwrap();
    (
        a.publication_deadline.to_string(),
        a.publication_deadline_provisional,
    )
}

/// (deadline, provisional) as a phone's copy of the record document holds them.
fn phone_document_deadline(phone: &Phone, record: &str) -> (String, bool) {
    let a = phone
        .store
        .record(&RecordId::new(record))
        .unwrap()
        .assignment()
        .unwrap();
    // The task list (from the phone's index) says the same as the document.
    let task = phone
        .store
        .list_tasks()
        .unwrap()
        .into_iter()
        .find(|t| t.record_id.as_str() == record)
        .expect("the record is in the task list");
    assert_eq!(
        (
            task.publication_deadline,
            task.publication_deadline_provisional
        ),
        (a.publication_deadline, a.publication_deadline_provisional),
        "the task list follows the document"
    );
    (
        a.publication_deadline.to_string(),
        a.publication_deadline_provisional,
    )
}

#[tokio::test]
async fn a_december_window_is_warned_drawn_and_provisional_until_2027_is_loaded_then_final_a_day_later()
 {
    let server = TestServer::start().await;
    let agency = seed_agency(&server, 3, 30).await;
    let planner = server.login("planner").await;

    // A task within 2026 warns of nothing.
    let autumn = create_task(
        &planner,
        agency.plan_id,
        "T-PD-0",
        ("2026-09-01", "2026-11-20"),
    )
    .await;
    assert_eq!(autumn["warnings"], json!([]), "{autumn}");

    // The window ends on Monday 21 December: 20 working days reach 18 January 2027, 2027
    // counted Monday to Friday (22–25, 28–31 December, 1, 4–8, 11–15, 18 January). Created,
    // with a warning.
    let task = create_task(
        &planner,
        agency.plan_id,
        "T-PD-1",
        ("2026-12-01", "2026-12-21"),
    )
    .await;
    let task_id = task["id"].as_i64().unwrap();
    let warnings = task["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{task}");
    assert_eq!(warnings[0]["code"], "provisional_deadline");
    assert_eq!(warnings[0]["field"], "window_end");
    assert_eq!(warnings[0]["deadline"], "2027-01-18");
    assert_eq!(warnings[0]["unscheduled_years"], json!([2027]));
    let planner_jar = console_session(&server, "planner").await;
    let (s, page) = console_page(&server, &planner_jar, &format!("/tasks/{task_id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("id=\"provisional-deadline\"") && page.contains("2027-01-18 为暂定"),
        "the task page carries the notice: {page}"
    );

    // The draw goes ahead; the deadline it writes is provisional, in the row and the document.
    let drawn = draw(&server, &planner, task_id).await;
    let record = drawn[0].id.clone();
    assert_eq!(drawn[0].deadline, "2027-01-18");
    assert!(drawn[0].deadline_provisional);
    assert_eq!(
        server_document_deadline(&server, &record),
        ("2027-01-18".into(), true)
    );
    let (s, page) = console_page(&server, &planner_jar, &format!("/tasks/{task_id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains(MARK), "the records table marks it: {page}");
    suiji_tests::publish_drawn_list(&planner, task_id).await;
    let inspector = drawn[0].group[0];
    let mut phone = Phone::open(&server, agency.username_of(inspector), inspector).await;
    phone.sync(&server.base).await.unwrap();
    assert_eq!(
        phone_document_deadline(&phone, &record),
        ("2027-01-18".into(), true),
        "the phone is told it is provisional"
    );

    // The API, wherever the deadline is served: the deadlines list and the record view.
    let supervisor = server.login("supervisor").await;
    let entry = deadline_entry(&supervisor, &record, "2026-12-22").await;
    assert_eq!(entry["deadline"], "2027-01-18", "{entry}");
    assert_eq!(entry["provisional"], true, "{entry}");
    assert_eq!(entry["unscheduled_years"], json!([2027]), "{entry}");
    assert_eq!(entry["working_days_left"], 19, "{entry}");
    // And in the deadlines list as a spreadsheet, marked provisional there too.
    let rows = deadline_rows(&supervisor, "2026-12-22").await;
    assert_eq!(
        rows[0],
        [
            "状态",
            "类型",
            "任务编号",
            "检查对象或任务",
            "起算日",
            "期限",
            "剩余工作日",
            "暂定"
        ]
    );
    let target = entry["target_name"].as_str().unwrap();
    let row = rows
        .iter()
        .find(|r| r[3] == target && r[1] == "检查结果公示")
        .unwrap_or_else(|| panic!("no row for {target}: {rows:?}"));
    assert_eq!(
        (
            row[0].as_str(),
            row[5].as_str(),
            row[6].as_str(),
            row[7].as_str()
        ),
        ("即将到期", "2027-01-18", "19", "是（节假日安排未公布）"),
        "{row:?}"
    );
    let admin = server.login("admin").await;
    let (s, view) = admin.get(&format!("/api/v1/records/{record}")).await;
    assert_eq!(s, StatusCode::OK, "{view}");
    assert_eq!(view["publication"]["deadline"], "2027-01-18", "{view}");
    assert_eq!(view["publication"]["provisional"], true, "{view}");
    // The console: the deadlines page and the record page.
    let (s, page) = console_page(&server, &planner_jar, "/deadlines?within=60").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("2027-01-18") && page.contains(MARK), "{page}");
    let admin_jar = console_session(&server, "admin").await;
    let (s, page) = console_page(&server, &admin_jar, &format!("/records/{record}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("2027-01-18") && page.contains(MARK), "{page}");

    // The admin loads 2027: New Year's Day is a rest day, so the final deadline is a working
    // day later, 19 January, everywhere at once.
    let (s, loaded) = admin.post("/api/v1/admin/calendar", &year_2027(true)).await;
    assert_eq!(s, StatusCode::CREATED, "{loaded}");
    assert_eq!(loaded["deadlines_updated"], 1, "{loaded}");
    let entry = deadline_entry(&supervisor, &record, "2026-12-22").await;
    assert_eq!(entry["deadline"], "2027-01-19", "{entry}");
    assert_eq!(entry["provisional"], false, "{entry}");
    assert_eq!(entry["unscheduled_years"], json!([]), "{entry}");
    let (_, view) = admin.get(&format!("/api/v1/records/{record}")).await;
    assert_eq!(view["publication"]["deadline"], "2027-01-19", "{view}");
    assert_eq!(view["publication"]["provisional"], false, "{view}");
    let rows = server
        .state
        .db
        .read(move |c| records::list(c, Some(task_id), None))
        .await
        .unwrap();
    assert_eq!(
        (rows[0].deadline.as_str(), rows[0].deadline_provisional),
        ("2027-01-19", false)
    );
    assert_eq!(
        server_document_deadline(&server, &record),
        ("2027-01-19".into(), false)
    );
    phone.sync(&server.base).await.unwrap();
    assert_eq!(
        phone_document_deadline(&phone, &record),
        ("2027-01-19".into(), false),
        "the phone gets the final date at its next sync"
    );
    let (_, page) = console_page(&server, &planner_jar, &format!("/tasks/{task_id}")).await;
    assert!(
        !page.contains("暂定") && page.contains("2027-01-19"),
        "{page}"
    );
    let (_, page) = console_page(&server, &admin_jar, &format!("/records/{record}")).await;
    assert!(
        !page.contains("暂定") && page.contains("2027-01-19"),
        "{page}"
    );
    // A task created now is not warned.
    let later = create_task(
        &planner,
        agency.plan_id,
        "T-PD-2",
        ("2026-12-01", "2026-12-21"),
    )
    .await;
    assert_eq!(later["warnings"], json!([]), "{later}");
}

#[tokio::test]
async fn a_next_year_task_moves_past_the_spring_festival_when_2027_is_loaded_and_again_when_corrected()
 {
    let server = TestServer::start().await;
    seed_agency(&server, 3, 30).await;
    let planner = server.login("planner").await;
    let (s, plan) = planner
        .post(
            "/api/v1/plans",
            &json!({"number": "P-2027-DRAW", "name": "2027年度抽查计划", "year": 2027, "department": "SCJG"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{plan}");
    // January 2027, planned in December 2026. From Friday 29 January, Monday to Friday:
    // 1–5, 8–12, 15–19, 22–26 February.
    let task = create_task(
        &planner,
        plan["id"].as_i64().unwrap(),
        "T-PD-2027",
        ("2027-01-04", "2027-01-29"),
    )
    .await;
    assert_eq!(task["warnings"][0]["deadline"], "2027-02-26", "{task}");
    let task_id = task["id"].as_i64().unwrap();
    let drawn = draw(&server, &planner, task_id).await;
    let record = drawn[0].id.clone();
    assert_eq!(
        (drawn[0].deadline.as_str(), drawn[0].deadline_provisional),
        ("2027-02-26", true)
    );
    let entry = deadline_entry(&planner, &record, "2027-01-29").await;
    assert_eq!(
        (&entry["deadline"], &entry["provisional"]),
        (&json!("2027-02-26"), &json!(true)),
        "{entry}"
    );

    // With the schedule: Sunday 31 January (make-up), 1–4 February, the holiday 5–13,
    // 15–19, Saturday 20 (make-up), 22–26 February, 1–4 March.
    let admin = server.login("admin").await;
    let (s, loaded) = admin.post("/api/v1/admin/calendar", &year_2027(true)).await;
    assert_eq!(s, StatusCode::CREATED, "{loaded}");
    let entry = deadline_entry(&planner, &record, "2027-01-29").await;
    assert_eq!(
        (&entry["deadline"], &entry["provisional"]),
        (&json!("2027-03-04"), &json!(false)),
        "{entry}"
    );
    assert_eq!(
        server_document_deadline(&server, &record),
        ("2027-03-04".into(), false)
    );

    // A corrected notice without the make-up days replaces the year: the final deadline,
    // already final, is counted again (1–4, 15–19, 22–26 February, 1–5, 8 March).
    let (s, loaded) = admin
        .post("/api/v1/admin/calendar", &year_2027(false))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{loaded}");
    assert_eq!(
        (&loaded["replaced"], &loaded["deadlines_updated"]),
        (&json!(true), &json!(1)),
        "{loaded}"
    );
    let entry = deadline_entry(&planner, &record, "2027-01-29").await;
    assert_eq!(entry["deadline"], "2027-03-08", "{entry}");
    let rows = server
        .state
        .db
        .read(move |c| records::list(c, Some(task_id), None))
        .await
        .unwrap();
    assert_eq!(
        (rows[0].deadline.as_str(), rows[0].deadline_provisional),
        ("2027-03-08", false)
    );
    assert_eq!(
        server_document_deadline(&server, &record),
        ("2027-03-08".into(), false)
    );
}
