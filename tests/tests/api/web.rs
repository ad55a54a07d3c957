//! The web console's session and CSRF rules over plain HTTP (the browser
//! tests in `tests/browser/` drive the pages themselves): cookies over the
//! API's sessions, refresh of an expired access token, CSRF on every form,
//! HTML versus JSON answers for unknown paths, and the public commitment list.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION};
use suiji_tests::{
    FormBody, PASSWORD, TestServer, console_session, cookie_value, csrf_of, form_login, http,
    set_cookies,
};

#[tokio::test]
async fn login_sets_http_only_cookies_over_an_api_session_and_logout_revokes_it() {
    let server = TestServer::start().await;
    let response = form_login(&server, "supervisor", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/review");
    let cookies = set_cookies(&response);
    for (name, _, attributes) in &cookies {
        assert!(attributes.contains("HttpOnly"), "{name}: {attributes}");
        assert!(attributes.contains("SameSite=Lax"), "{name}: {attributes}");
    }
    let access = cookie_value(&cookies, "suiji_access");
    let refresh = cookie_value(&cookies, "suiji_refresh");
    // The cookie holds a real API access token.
    let mut api = suiji_tests::Client::anonymous(&server.base);
    api.token = Some(access.clone());
    let (status, me) = api.get("/api/v1/me").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["username"], "supervisor");

    let jar = format!("suiji_access={access}; suiji_refresh={refresh}");
    let page = http()
        .get(format!("{}/review", server.base))
        .header(COOKIE, &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("审核队列"));
    let csrf = csrf_of(&html);

    // Logging out without the token is refused; with it, the session ends.
    let refused = http()
        .post(format!("{}/logout", server.base))
        .header(COOKIE, &jar)
        .form_pairs(&[("csrf", &"0".repeat(64))])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("CSRF"));
    let out = http()
        .post(format!("{}/logout", server.base))
        .header(COOKIE, &jar)
        .form_pairs(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let (status, _) = api.get("/api/v1/me").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the API session is revoked"
    );
    let after = http()
        .get(format!("{}/review", server.base))
        .header(COOKIE, &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    assert_eq!(after.headers()[LOCATION], "/login?next=/review");
}

#[tokio::test]
async fn an_expired_access_cookie_is_refreshed_with_the_refresh_cookie() {
    let server = TestServer::start().await;
    let response = form_login(&server, "planner", PASSWORD).await;
    let cookies = set_cookies(&response);
    let refresh = cookie_value(&cookies, "suiji_refresh");
    // A garbage access token stands in for an expired one: both fail the check.
    let page = http()
        .get(format!("{}/plans", server.base))
        .header(
            COOKIE,
            format!("suiji_access=expired.token.here; suiji_refresh={refresh}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let renewed = set_cookies(&page);
    assert_ne!(cookie_value(&renewed, "suiji_refresh"), refresh, "rotated");
    assert!(!cookie_value(&renewed, "suiji_access").is_empty());
    assert!(page.text().await.unwrap().contains("抽查计划"));
    // The old refresh token was used up.
    let again = http()
        .get(format!("{}/plans", server.base))
        .header(COOKIE, format!("suiji_refresh={refresh}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn wrong_password_is_a_login_page_with_a_message_and_no_cookie() {
    let server = TestServer::start().await;
    let response = form_login(&server, "planner", "wrong-password-here").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        set_cookies(&response)
            .iter()
            .all(|(n, _, _)| n == "suiji_login")
    );
    assert!(response.text().await.unwrap().contains("用户名或密码错误"));
    // A login form posted without its double-submit token is refused.
    let forged = http()
        .post(format!("{}/login", server.base))
        .form_pairs(&[("username", "planner"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn unknown_paths_are_json_under_the_api_and_a_page_elsewhere() {
    let server = TestServer::start().await;
    let api = http()
        .get(format!("{}/api/v1/nothing", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = api.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let page = http()
        .get(format!("{}/nothing", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("404 页面不存在"));
    // Public pages need no login; the style sheet is served.
    for path in [
        "/public/results?q=杭州",
        "/public/draws",
        "/static/console.css",
    ] {
        let r = http()
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn the_record_page_highlights_a_conflict_between_two_phones() {
    let server = TestServer::start().await;
    let (agency, records) = suiji_tests::drawn_task(&server, 3, 2).await;
    let record = &records[0];
    let (a, b) = (record.group[0], record.group[1]);
    let mut phone_a = suiji_tests::Phone::open(&server, agency.username_of(a), a).await;
    let mut phone_b = suiji_tests::Phone::open(&server, agency.username_of(b), b).await;
    phone_a.sync(&server.base).await.unwrap();
    phone_b.sync(&server.base).await.unwrap();
    let rid = suiji_mobile_core::RecordId::new(record.id.as_str());
    let item = phone_a
        .store
        .record(&rid)
        .unwrap()
        .assignment()
        .unwrap()
        .items[0]
        .code
        .clone();
    // Offline, the two inspectors write different findings for the same item.
    phone_a
        .store
        .edit(&rid, |doc| doc.set_finding(&item, "证照齐全"))
        .unwrap();
    phone_b
        .store
        .edit(&rid, |doc| doc.set_finding(&item, "健康证过期"))
        .unwrap();
    for _ in 0..2 {
        phone_a.sync(&server.base).await.unwrap();
        phone_b.sync(&server.base).await.unwrap();
    }

    // Not submitted yet, so only admins and planners open it (docs/draw.md).
    let admin = console_session(&server, "admin").await;
    let page = http()
        .get(format!("{}/records/{}", server.base, record.id))
        .header(COOKIE, &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let conflicts = &html[html.find("id=\"conflicts\"").expect("a conflict section")..];
    assert!(conflicts.contains("证照齐全") && conflicts.contains("健康证过期"));
    assert!(
        html.contains("class=\"conflicted\""),
        "the item's row is marked"
    );

    // Publishing the task's approved results: none yet, every record still
    // open. Once the drawn list is published the supervisor sees its lines.
    suiji_tests::publish_drawn_list(&server.login("planner").await, record.task_id).await;
    let jar = console_session(&server, "supervisor").await;
    let task = http()
        .get(format!("{}/tasks/{}", server.base, record.task_id))
        .header(COOKIE, &jar)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(task.contains("公示本任务全部已审核结果"));
    let csrf = csrf_of(&task[task.find("publish-results").unwrap()..]);
    let done = http()
        .post(format!(
            "{}/tasks/{}/publish-results",
            server.base, record.task_id
        ))
        .header(COOKIE, &jar)
        .form_pairs(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let location = done.headers()[LOCATION].to_str().unwrap();
    let expected = format!("published=0&skipped=0&waiting={}", records.len());
    assert!(location.ends_with(&expected), "{location}");
}

#[tokio::test]
async fn the_draw_record_downloaded_from_the_ceremony_page_verifies() {
    let server = TestServer::start().await;
    let (_, records) = suiji_tests::drawn_task(&server, 3, 2).await;
    let draw_id = server
        .state
        .db
        .read({
            let task = records[0].task_id;
            move |c| Ok(suiji_server::draw::draws_of_task(c, task)?[0].id)
        })
        .await
        .unwrap();
    let jar = console_session(&server, "planner").await;
    let page = http()
        .get(format!("{}/draws/{draw_id}", server.base))
        .header(COOKIE, &jar)
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!("/draws/{draw_id}/record.json")));
    assert!(html.contains("suiji-server draw verify"));
    let download = http()
        .get(format!("{}/draws/{draw_id}/record.json", server.base))
        .header(COOKIE, &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert!(
        download.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let record: suiji_server::draw::DrawRecord =
        serde_json::from_slice(&download.bytes().await.unwrap()).unwrap();
    assert_eq!(suiji_server::draw::verify(&record), Ok(()));
}

#[tokio::test]
async fn cookies_are_secure_behind_an_https_proxy_and_only_there() {
    let server = TestServer::start().await;
    let login = format!("{}/login", server.base);
    let cases = [
        (None, false),
        (Some(("x-forwarded-proto", "https")), true),
        (Some(("forwarded", "for=192.0.2.60;proto=https")), true),
        (Some(("x-forwarded-proto", "http")), false),
    ];
    for (proxy, secure) in cases {
        let through = |request: reqwest::RequestBuilder| match proxy {
            Some((name, value)) => request.header(name, value),
            None => request,
        };
        let page = through(http().get(&login)).send().await.unwrap();
        let cookies = set_cookies(&page);
        let token = cookie_value(&cookies, "suiji_login");
        let response = through(http().post(&login))
            .header(COOKIE, format!("suiji_login={token}"))
            .form_pairs(&[
                ("csrf", token.as_str()),
                ("next", "/"),
                ("username", "planner"),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{proxy:?}");
        let session = set_cookies(&response);
        assert_eq!(session.len(), 2, "{session:?}");
        for (name, _, attributes) in cookies.iter().chain(&session) {
            assert_eq!(
                attributes.contains("; Secure"),
                secure,
                "{proxy:?}: {name}: {attributes}"
            );
            assert!(attributes.contains("HttpOnly"), "{name}: {attributes}");
        }
    }
}

#[tokio::test]
async fn the_public_commitments_page_renders_without_login_and_escapes_text() {
    let server = TestServer::start().await;
    let agency = suiji_tests::seed_agency(&server, 3, 20).await;
    let planner = server.login("planner").await;
    let (status, task) = planner
        .post(
            &format!("/api/v1/plans/{}/tasks", agency.plan_id),
            &serde_json::json!({"number": "T-<i>PUB</i>", "name": "<script>alert(1)</script>餐饮检查",
                    "directed": true, "conditions": {"industries": ["餐饮业"]}, "count": 1,
                    "items": [{"code": "SCJG-SP-002"}],
                    "window_start": "2026-09-01", "window_end": "2026-11-20"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    let task_id = task["id"].as_i64().unwrap();
    let mut hashes = Vec::new();
    for _ in 0..2 {
        let (status, c) = planner
            .post(
                &format!("/api/v1/tasks/{task_id}/draw/commit"),
                &serde_json::json!({"beacon": {"name": "<b>福彩3D</b>", "due_at": "2099-01-01T00:00:00Z"}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{c}");
        hashes.push(c["secret_sha256"].as_str().unwrap().to_owned());
    }
    let page = http()
        .get(format!("{}/public/commitments?task=%3Cx%3E", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK, "no login needed");
    let html = page.text().await.unwrap();
    assert!(html.contains("摇号承诺公示"));
    assert!(
        html.contains("&lt;x&gt;") && !html.contains("<x>"),
        "the filter is escaped"
    );
    assert!(html.contains("暂无承诺"), "no task is numbered <x>");

    let html = http()
        .get(format!("{}/public/commitments", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for hash in &hashes {
        assert!(html.contains(hash.as_str()), "both commitments are listed");
    }
    assert!(
        html.contains("已被替代") && html.contains("待摇号"),
        "their states"
    );
    assert!(
        !html.contains("<script>alert(1)</script>"),
        "task names are escaped"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;餐饮检查"));
    assert!(html.contains("T-&lt;i&gt;PUB&lt;/i&gt;"));
    assert!(html.contains("&lt;b&gt;福彩3D&lt;/b&gt;") && !html.contains("<b>福彩3D"));
    // Linked from the public pages.
    let home = http()
        .get(format!("{}/public/draws", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(home.contains("href=\"/public/commitments\""));
}
