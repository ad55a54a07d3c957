//! Correcting a published result on the record page of the web console, over
//! plain HTTP: the form's correction reaches the public results with the old
//! version marked 已更正, and a form without its CSRF token, without a
//! reason, or from a supervisor who inspected the record changes nothing.

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::{Value, json};
use suiji_mobile_core::RecordId;
use suiji_mobile_core::vocab::{FollowUpMeasure, Method, ResultCategory};
use suiji_server::draw::records::RecordSummary;
use suiji_tests::{
    Agency, Client, Phone, TestServer, console_page, console_post, console_session, csrf_of,
    drawn_task, http, sign_and_submit,
};

/// The corrected result's statutory wording.
const NOT_PUBLICIZED: &str = "未按规定公示应当公示的信息";
const REASON: &str = "经复核，该企业未按规定公示年度报告";

/// A drawn record, filled as 未发现问题 on the phones, submitted, approved and
/// published by `supervisor` through the API.
struct Published {
    agency: Agency,
    record: RecordSummary,
    result_id: i64,
    /// The code of the record's one inspection item.
    item: String,
}

async fn published_record(server: &TestServer) -> Published {
    let (agency, records) = drawn_task(server, 3, 1).await;
    let record = records[0].clone();
    let rid = RecordId::new(record.id.as_str());
    let (ia, ib) = (record.group[0], record.group[1]);
    let mut a = Phone::open(server, agency.username_of(ia), ia).await;
    let mut b = Phone::open(server, agency.username_of(ib), ib).await;
    a.sync(&server.base).await.unwrap();
    b.sync(&server.base).await.unwrap();
    let item = a
        .store
        .edit(&rid, |doc| {
            let items = doc.assignment()?.items;
            for item in &items {
                doc.set_checked(&item.code, true)?;
                doc.set_methods(&item.code, &[Method::OnSite])?;
                doc.set_finding(&item.code, "证照齐全")?;
            }
            doc.set_result_categories(&[ResultCategory::NoProblem])?;
            doc.set_follow_up(Some(FollowUpMeasure::None), None, None)?;
            Ok(items[0].code.to_string())
        })
        .unwrap();
    sign_and_submit(server, &mut a, &mut b, &rid).await;
    suiji_tests::publish_drawn_list(&server.login("planner").await, record.task_id).await;
    let supervisor = server.login("supervisor").await;
    let (s, body) = supervisor
        .post(
            &format!("/api/v1/records/{}/approve", record.id),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, entry) = supervisor
        .post(
            &format!("/api/v1/records/{}/publish", record.id),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{entry}");
    Published {
        agency,
        record,
        result_id: entry["id"].as_i64().unwrap(),
        item,
    }
}

/// The result as the public API serves it.
async fn public_result(server: &TestServer, result_id: i64) -> Value {
    let (s, entry) = Client::anonymous(&server.base)
        .get(&format!("/api/v1/public/results/{result_id}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{entry}");
    entry
}

/// The record page as the holder of `jar` sees it.
async fn record_page(server: &TestServer, jar: &str, record_id: &str) -> String {
    let (status, html) = console_page(server, jar, &format!("/records/{record_id}")).await;
    assert_eq!(status, StatusCode::OK);
    html
}

/// Posts the correction form of `record_id` with `fields`.
async fn post_correction(
    server: &TestServer,
    jar: &str,
    record_id: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    console_post(
        server,
        jar,
        &format!("/records/{record_id}/correct"),
        fields,
    )
    .await
}

/// The published result is still version 1, 未发现问题, uncorrected.
async fn assert_unchanged(server: &TestServer, result_id: i64) {
    let entry = public_result(server, result_id).await;
    assert_eq!(entry["version"], 1, "{entry}");
    assert_eq!(entry["corrected"], false, "{entry}");
    assert_eq!(entry["result"], "未发现问题", "{entry}");
}

#[tokio::test]
async fn a_supervisor_corrects_a_published_result_and_the_public_sees_both_versions() {
    let server = TestServer::start().await;
    let p = published_record(&server).await;
    let jar = console_session(&server, "supervisor").await;
    let html = record_page(&server, &jar, &p.record.id).await;
    let form = &html[html.find("id=\"correct-form\"").expect("a correction form")..];
    assert!(form.contains("value=\"no_problem\" checked"), "pre-ticked");
    let completed_on = public_result(&server, p.result_id).await["completed_on"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        form.contains(&format!("value=\"{completed_on}\"")),
        "pre-filled"
    );
    let csrf = csrf_of(form);

    let done = post_correction(
        &server,
        &jar,
        &p.record.id,
        &[
            ("csrf", &csrf),
            ("form", "correct"),
            ("reason", REASON),
            ("results", "not_publicized"),
            ("completed_on", &completed_on),
            ("item", &p.item),
            ("checked", &p.item),
        ],
    )
    .await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        done.headers()[LOCATION],
        format!("/records/{}?done=corrected", p.record.id).as_str()
    );

    // The record page shows the new version and the earlier one with its reason.
    let html = record_page(&server, &jar, &p.record.id).await;
    let published = &html[html.find("id=\"published\"").expect("the published result")..];
    assert!(published.contains(NOT_PUBLICIZED), "{published}");
    let versions = &published[published.find("id=\"versions\"").expect("earlier versions")..];
    assert!(versions.contains("第 1 版") && versions.contains(REASON));

    // The public API: version 2 with the new categories, version 1 kept and marked.
    let entry = public_result(&server, p.result_id).await;
    assert_eq!(entry["version"], 2, "{entry}");
    assert_eq!(entry["status"], "已更正");
    assert_eq!(entry["results"][0]["code"], "not_publicized");
    assert_eq!(entry["result"], NOT_PUBLICIZED);
    assert_eq!(entry["correction_reason"], REASON);
    let old = &entry["previous_versions"][0];
    assert_eq!(old["version"], 1);
    assert_eq!(old["status"], "已更正");
    assert_eq!(old["result"], "未发现问题");
    // And the public page, found by the 统一社会信用代码.
    let uscc = entry["uscc"].as_str().unwrap();
    let public = http()
        .get(format!("{}/public/results?q={uscc}", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(public.contains(NOT_PUBLICIZED) && public.contains("已更正"));
    assert!(public.contains(REASON), "{public}");
}

#[tokio::test]
async fn a_correction_without_the_csrf_token_changes_nothing() {
    let server = TestServer::start().await;
    let p = published_record(&server).await;
    let jar = console_session(&server, "supervisor").await;
    let fields = [
        ("form", "correct"),
        ("reason", REASON),
        ("results", "not_publicized"),
    ];
    let refused = post_correction(&server, &jar, &p.record.id, &fields).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("CSRF"));
    let zeros = "0".repeat(64);
    let forged = [&[("csrf", zeros.as_str())][..], &fields].concat();
    let refused = post_correction(&server, &jar, &p.record.id, &forged).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_unchanged(&server, p.result_id).await;
}

#[tokio::test]
async fn an_empty_reason_or_an_unknown_category_is_refused_next_to_the_field() {
    let server = TestServer::start().await;
    let p = published_record(&server).await;
    let jar = console_session(&server, "supervisor").await;
    let csrf = csrf_of(&record_page(&server, &jar, &p.record.id).await);

    let refused = post_correction(
        &server,
        &jar,
        &p.record.id,
        &[
            ("csrf", &csrf),
            ("form", "correct"),
            ("reason", "   "),
            ("results", "not_publicized"),
        ],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.unwrap();
    let error = &html[html
        .find("id=\"reason-error\"")
        .expect("an error on the reason")..];
    assert!(error.contains("请写明更正的原因"), "{error}");
    // What was ticked stays ticked on the re-rendered form.
    assert!(html.contains("value=\"not_publicized\" checked"));
    assert_unchanged(&server, p.result_id).await;

    // The domain's own refusal lands next to the categories.
    let refused = post_correction(
        &server,
        &jar,
        &p.record.id,
        &[
            ("csrf", &csrf),
            ("form", "correct"),
            ("reason", REASON),
            ("results", "fine"),
        ],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.unwrap();
    let error = &html[html
        .find("id=\"results-error\"")
        .expect("an error on the results")..];
    assert!(error.contains("unknown result category"), "{error}");
    assert_unchanged(&server, p.result_id).await;
}

#[tokio::test]
async fn a_supervisor_who_was_in_the_inspection_group_cannot_correct_it() {
    let server = TestServer::start().await;
    let p = published_record(&server).await;
    // The group's second member becomes a supervisor too.
    let member = p.agency.username_of(p.record.group[1]).to_owned();
    let user_id: i64 = server
        .state
        .db
        .read({
            let member = member.clone();
            move |c| {
                c.query_row("SELECT id FROM users WHERE username = ?1", [member], |r| {
                    r.get(0)
                })
            }
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

    let jar = console_session(&server, &member).await;
    let html = record_page(&server, &jar, &p.record.id).await;
    assert!(html.contains("您曾参与该记录的检查"));
    assert!(!html.contains("id=\"correct-form\""), "no form offered");
    let refused = post_correction(
        &server,
        &jar,
        &p.record.id,
        &[
            ("csrf", &csrf_of(&html)),
            ("form", "correct"),
            ("reason", REASON),
            ("results", "not_publicized"),
        ],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("职责分离") && page.contains(&p.record.id),
        "names the rule and the record: {page}"
    );
    assert_unchanged(&server, p.result_id).await;
}
