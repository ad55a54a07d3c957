//! The registry's forms in the web console over plain HTTP: creating an
//! item and making new versions of it, creating, editing and deactivating
//! an inspector, checked through the JSON API, with the CSRF and role rules
//! of every console form.

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::Value;
use suiji_tests::{
    TestServer, console_page, console_post, console_session, csrf_in, csrf_of, seed_registry,
};

/// The text after the error shown next to `field`; panics when there is none.
fn error_by<'a>(html: &'a str, field: &str) -> &'a str {
    let at = html
        .find(&format!("id=\"{field}-error\""))
        .unwrap_or_else(|| panic!("no error by {field}: {html}"));
    &html[at..]
}

/// A server with departments SCJG and YJGL and two items (`seed_registry`).
async fn seeded() -> TestServer {
    let server = TestServer::start().await;
    seed_registry(&server.login("planner").await).await;
    server
}

/// The fields of a new item `code` as the item form posts them (without the token).
fn item_form(code: &'static str, legal_basis: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("code", code),
        ("name", "特种设备使用单位的检查"),
        ("legal_basis", legal_basis),
        ("department", "SCJG"),
        ("target_type", "enterprise"),
        ("methods", "on_site"),
        ("methods", "documentary"),
        ("content", "使用登记、定期检验"),
        ("class", "general"),
        ("default_ratio", "5"),
        ("frequency", "1"),
        ("qualification", ""),
    ]
}

/// Every version of an item through the API; `None` when there is no such item.
async fn api_versions(server: &TestServer, code: &str) -> Option<Vec<Value>> {
    let planner = server.login("planner").await;
    let (status, body) = planner.get(&format!("/api/v1/items/{code}/versions")).await;
    match status {
        StatusCode::OK => Some(body.as_array().unwrap().clone()),
        StatusCode::NOT_FOUND => None,
        other => panic!("{other}: {body}"),
    }
}

#[tokio::test]
async fn an_admin_creates_an_item_through_the_form_and_the_api_returns_it() {
    let server = seeded().await;
    let jar = console_session(&server, "admin").await;
    let (status, html) = console_page(&server, &jar, "/items").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("新增抽查事项"));
    let csrf = csrf_in(&html, "item-form");
    let mut pairs = item_form("SCJG-TZ-001", "《中华人民共和国特种设备安全法》第五十七条");
    pairs.push(("csrf", &csrf));
    let done = console_post(&server, &jar, "/items", &pairs).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(done.headers()[LOCATION], "/items/SCJG-TZ-001");

    let (status, item) = server
        .login("planner")
        .await
        .get("/api/v1/items/SCJG-TZ-001")
        .await;
    assert_eq!(status, StatusCode::OK, "{item}");
    assert_eq!(item["version"], 1);
    assert_eq!(item["name"], "特种设备使用单位的检查");
    assert_eq!(
        item["legal_basis"],
        "《中华人民共和国特种设备安全法》第五十七条"
    );
    assert_eq!(item["department"], "SCJG");
    assert_eq!(
        item["methods"],
        serde_json::json!(["on_site", "documentary"])
    );
    assert_eq!(item["class"], "general");
    assert_eq!(item["default_ratio"], 0.05);
    assert_eq!(item["qualification"], Value::Null);

    // The list links the item's page, which shows it.
    let (_, html) = console_page(&server, &jar, "/items").await;
    assert!(html.contains("href=\"/items/SCJG-TZ-001\""));
    let (status, html) = console_page(&server, &jar, "/items/SCJG-TZ-001").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("特种设备安全法"));

    // The same code again is refused next to the code, values kept.
    let again = console_post(&server, &jar, "/items", &pairs).await;
    assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = again.text().await.unwrap();
    assert!(error_by(&html, "code").contains("已有抽查事项"));
    assert!(html.contains("value=\"SCJG-TZ-001\""));
    assert_eq!(api_versions(&server, "SCJG-TZ-001").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_new_version_through_the_form_keeps_the_old_one_in_the_history() {
    let server = seeded().await;
    let jar = console_session(&server, "admin").await;
    let (status, html) = console_page(&server, &jar, "/items/SCJG-SP-002").await;
    assert_eq!(status, StatusCode::OK);
    let form = &html[html.find("id=\"version-form\"").expect("a version form")..];
    // Pre-filled with the current version.
    assert!(form.contains("《中华人民共和国食品安全法》第一百一十条"));
    assert!(form.contains("value=\"10\""), "the ratio in percent");
    let csrf = csrf_of(form);
    let post_version = |legal_basis: &'static str, ratio: &'static str| {
        vec![
            ("name", "餐饮服务提供者经营活动的检查"),
            ("legal_basis", legal_basis),
            ("department", "SCJG"),
            ("target_type", "enterprise"),
            ("methods", "on_site"),
            ("content", "许可证、从业人员健康证明"),
            ("class", "key"),
            ("default_ratio", ratio),
            ("frequency", "1"),
            ("qualification", "食品安全"),
        ]
    };

    // A ratio above 100% is refused next to the ratio; no version is made.
    let mut pairs = post_version("《中华人民共和国食品安全法》第一百一十条", "150");
    pairs.push(("csrf", &csrf));
    let refused = console_post(&server, &jar, "/items/SCJG-SP-002/versions", &pairs).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.unwrap();
    assert!(error_by(&html, "default_ratio").contains("ratio"));
    assert!(html.contains("value=\"150\""), "the value is kept");
    assert_eq!(api_versions(&server, "SCJG-SP-002").await.unwrap().len(), 1);

    let amended = "《中华人民共和国食品安全法》第一百一十条、第一百一十四条";
    let mut pairs = post_version(amended, "20");
    pairs.push(("csrf", &csrf));
    let done = console_post(&server, &jar, "/items/SCJG-SP-002/versions", &pairs).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(done.headers()[LOCATION], "/items/SCJG-SP-002");

    let history = api_versions(&server, "SCJG-SP-002").await.unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["version"], 1);
    assert_eq!(history[0]["current"], false);
    assert_eq!(
        history[0]["legal_basis"],
        "《中华人民共和国食品安全法》第一百一十条"
    );
    assert_eq!(history[0]["default_ratio"], 0.1);
    assert_eq!(history[1]["version"], 2);
    assert_eq!(history[1]["current"], true);
    assert_eq!(history[1]["legal_basis"], amended);
    assert_eq!(history[1]["default_ratio"], 0.2);

    // The page shows both versions, the current one marked.
    let (_, html) = console_page(&server, &jar, "/items/SCJG-SP-002").await;
    let versions = &html[html.find("id=\"versions\"").expect("a history")..];
    assert!(versions.contains("v2"));
    assert!(versions.contains("v1"));
    assert!(versions.contains("现行"));
}

#[tokio::test]
async fn an_item_without_legal_basis_is_refused_next_to_the_field_and_nothing_is_created() {
    let server = seeded().await;
    let jar = console_session(&server, "admin").await;
    let (_, html) = console_page(&server, &jar, "/items").await;
    let csrf = csrf_in(&html, "item-form");
    let mut pairs = item_form("SCJG-TZ-002", "   ");
    pairs.push(("csrf", &csrf));
    let refused = console_post(&server, &jar, "/items", &pairs).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.unwrap();
    assert!(error_by(&html, "legal_basis").contains("请填写法律依据"));
    // The other values are kept.
    assert!(html.contains("value=\"SCJG-TZ-002\""));
    assert!(html.contains("使用登记、定期检验"));
    assert_eq!(api_versions(&server, "SCJG-TZ-002").await, None);

    // An unknown department is refused next to the department.
    let mut pairs: Vec<(&str, &str)> = item_form("SCJG-TZ-002", "《特种设备安全法》")
        .into_iter()
        .map(|(k, v)| {
            if k == "department" {
                (k, "NOPE")
            } else {
                (k, v)
            }
        })
        .collect();
    pairs.push(("csrf", &csrf));
    let refused = console_post(&server, &jar, "/items", &pairs).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.unwrap();
    assert!(error_by(&html, "department").contains("NOPE"));
    assert_eq!(api_versions(&server, "SCJG-TZ-002").await, None);
}

#[tokio::test]
async fn item_forms_without_the_csrf_token_or_from_a_supervisor_change_nothing() {
    let server = seeded().await;
    let pairs = item_form("SCJG-TZ-003", "《中华人民共和国特种设备安全法》");

    // An admin's form without its token: 403, nothing created or versioned.
    let jar = console_session(&server, "admin").await;
    let forged = console_post(&server, &jar, "/items", &pairs).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.text().await.unwrap().contains("CSRF"));
    let forged = console_post(&server, &jar, "/items/SCJG-SP-002/versions", &pairs[1..]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(api_versions(&server, "SCJG-TZ-003").await, None);
    assert_eq!(api_versions(&server, "SCJG-SP-002").await.unwrap().len(), 1);

    // A supervisor reads the list (as the API lets them) but has no form,
    // and a posted one is refused like the API refuses them.
    let jar = console_session(&server, "supervisor").await;
    let (status, html) = console_page(&server, &jar, "/items/SCJG-SP-002").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("id=\"version-form\""));
    let csrf = csrf_of(&html);
    let mut with_token = pairs.clone();
    with_token.push(("csrf", &csrf));
    let refused = console_post(&server, &jar, "/items", &with_token).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("403 无权访问"));
    let refused = console_post(
        &server,
        &jar,
        "/items/SCJG-SP-002/versions",
        &with_token[1..],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(api_versions(&server, "SCJG-TZ-003").await, None);
    assert_eq!(api_versions(&server, "SCJG-SP-002").await.unwrap().len(), 1);

    // The API refuses the supervisor too.
    let (status, _) = server
        .login("supervisor")
        .await
        .post(
            "/api/v1/items",
            &suiji_tests::item_body("SCJG-TZ-003", "SCJG", "特种设备"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// The id of account `username`.
async fn user_id(server: &TestServer, username: &'static str) -> i64 {
    server
        .state
        .db
        .read(move |c| {
            Ok(suiji_server::accounts::all_users(c)?
                .into_iter()
                .find(|u| u.username == username)
                .expect("the account")
                .id)
        })
        .await
        .unwrap()
}

/// Every inspector through the API.
async fn api_inspectors(server: &TestServer) -> Vec<Value> {
    let (status, body) = server
        .login("planner")
        .await
        .get("/api/v1/inspectors")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().unwrap().clone()
}

/// The fields of the inspector form for account `user` (without the token).
fn inspector_form(user: &str, active: bool, expert: bool) -> Vec<(&str, &str)> {
    let mut pairs = vec![
        ("user_id", user),
        ("name", "李四"),
        ("cert_no", "33010620260001"),
        ("department", "SCJG"),
        ("region", "西湖区"),
        ("expertise", "食品安全，特种设备"),
    ];
    if active {
        pairs.push(("active", "yes"));
    }
    if expert {
        pairs.push(("expert", "yes"));
    }
    pairs
}

#[tokio::test]
async fn an_inspector_created_then_deactivated_through_the_forms_shows_so_in_the_api() {
    let server = seeded().await;
    let account = user_id(&server, "inspector").await.to_string();
    let jar = console_session(&server, "admin").await;
    let (status, html) = console_page(&server, &jar, "/inspectors").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("新增检查人员"));
    let csrf = csrf_in(&html, "inspector-form");

    // A missing name is refused next to it, the other values kept.
    let mut pairs = inspector_form(&account, true, false);
    pairs[1].1 = " ";
    pairs.push(("csrf", &csrf));
    let refused = console_post(&server, &jar, "/inspectors", &pairs).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.unwrap();
    assert!(error_by(&html, "name").contains("请填写姓名"));
    assert!(html.contains("value=\"33010620260001\""));
    assert!(api_inspectors(&server).await.is_empty());

    // An account without the inspector role is refused next to the account.
    let planner_account = user_id(&server, "planner").await.to_string();
    let mut pairs = inspector_form(&planner_account, true, false);
    pairs.push(("csrf", &csrf));
    let refused = console_post(&server, &jar, "/inspectors", &pairs).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = refused.text().await.unwrap();
    assert!(error_by(&html, "user_id").contains("inspector role"));
    assert!(api_inspectors(&server).await.is_empty());

    let mut pairs = inspector_form(&account, true, false);
    pairs.push(("csrf", &csrf));
    let done = console_post(&server, &jar, "/inspectors", &pairs).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let location = done.headers()[LOCATION].to_str().unwrap().to_owned();
    let list = api_inspectors(&server).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].as_i64().unwrap();
    assert_eq!(location, format!("/inspectors/{id}"));
    assert_eq!(list[0]["name"], "李四");
    assert_eq!(list[0]["cert_no"], "33010620260001");
    assert_eq!(list[0]["department"], "SCJG");
    assert_eq!(
        list[0]["expertise"],
        serde_json::json!(["食品安全", "特种设备"])
    );
    assert_eq!(list[0]["active"], true);
    assert_eq!(list[0]["expert"], false);

    // The same certificate number again is refused next to it.
    let again = console_post(&server, &jar, "/inspectors", &pairs).await;
    assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_by(&again.text().await.unwrap(), "cert_no").contains("执法证号"));
    assert_eq!(api_inspectors(&server).await.len(), 1);

    // The inspector's page has the edit form, pre-filled and active.
    let (status, html) = console_page(&server, &jar, &location).await;
    assert_eq!(status, StatusCode::OK);
    let form = &html[html.find("id=\"edit-form\"").expect("an edit form")..];
    assert!(form.contains("value=\"33010620260001\""));
    assert!(form.contains("name=\"active\" value=\"yes\" checked"));
    let csrf = csrf_of(form);

    // Deactivated and made an expert: the box left unticked.
    let mut pairs = inspector_form(&account, false, true);
    pairs.push(("csrf", &csrf));
    let done = console_post(&server, &jar, &location, &pairs).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let (status, one) = server
        .login("planner")
        .await
        .get(&format!("/api/v1/inspectors/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["active"], false);
    assert_eq!(one["expert"], true);
    let (_, html) = console_page(&server, &jar, "/inspectors?active=no").await;
    assert!(html.contains("李四"));

    // Reactivated.
    let mut pairs = inspector_form(&account, true, true);
    pairs.push(("csrf", &csrf));
    let done = console_post(&server, &jar, &location, &pairs).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let list = api_inspectors(&server).await;
    assert_eq!(list[0]["active"], true);
    assert_eq!(list[0]["expert"], true);
}

#[tokio::test]
async fn inspector_forms_without_the_csrf_token_or_from_a_supervisor_change_nothing() {
    let server = seeded().await;
    let account = user_id(&server, "inspector").await.to_string();
    let admin = server.login("admin").await;
    let (status, created) = admin
        .post(
            "/api/v1/inspectors",
            &serde_json::json!({"user_id": account.parse::<i64>().unwrap(), "name": "李四",
                "cert_no": "33010620260001", "department": "SCJG", "region": "西湖区"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let edit = format!("/inspectors/{}", created["id"]);
    let before = api_inspectors(&server).await;
    let deactivate = inspector_form(&account, false, true);
    let mut second = inspector_form(&account, true, false);
    second[2].1 = "33010620260002";

    // An admin's forms without the token: 403, nothing changes.
    let jar = console_session(&server, "admin").await;
    let forged = console_post(&server, &jar, &edit, &deactivate).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.text().await.unwrap().contains("CSRF"));
    let forged = console_post(&server, &jar, "/inspectors", &second).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(api_inspectors(&server).await, before);

    // A supervisor reads the directory but may not change it, as in the API.
    let jar = console_session(&server, "supervisor").await;
    let (status, html) = console_page(&server, &jar, &edit).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("id=\"edit-form\""));
    let csrf = csrf_of(&html);
    let mut pairs = deactivate.clone();
    pairs.push(("csrf", &csrf));
    let refused = console_post(&server, &jar, &edit, &pairs).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("403 无权访问"));
    let mut pairs = second.clone();
    pairs.push(("csrf", &csrf));
    let refused = console_post(&server, &jar, "/inspectors", &pairs).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(api_inspectors(&server).await, before);
    let (status, _) = server
        .login("supervisor")
        .await
        .put(
            &format!("/api/v1/inspectors/{}", created["id"]),
            &serde_json::json!({"user_id": account.parse::<i64>().unwrap(), "name": "李四",
                "cert_no": "33010620260001", "department": "SCJG", "region": "西湖区",
                "active": false}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
