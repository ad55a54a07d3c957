//! The web console in a real browser: headless Debian Chromium over
//! WebDriver against a real server on 127.0.0.1:0, with phones filling the
//! drawn records in between. Each step leaves a screenshot under
//! `target/tmp/browser/<test>/`.

mod driver;

use driver::Browser;
use reqwest::StatusCode;
use serde_json::json;
use suiji_mobile_core::RecordId;
use suiji_mobile_core::vocab::{FollowUpMeasure, Method, ResultCategory};
use suiji_tests::{PASSWORD, Phone, TestServer, seed_agency, sign_and_submit};

fn jpeg(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(320, 240, |x, y| {
        image::Rgb([(x / 2) as u8 ^ seed, (y / 2) as u8, 160])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planner_draws_with_observers_supervisor_returns_then_approves_and_the_public_finds_the_result()
 {
    let server = TestServer::start().await;
    let agency = seed_agency(&server, 3, 30).await;
    let planner_api = server.login("planner").await;
    let (s, task) = planner_api
        .post(
            &format!("/api/v1/plans/{}/tasks", agency.plan_id),
            &json!({"number": "T-WEB-1", "name": "餐饮服务食品安全定向抽查", "directed": true,
                    "conditions": {"industries": ["餐饮业"], "risk_classes": ["A"]}, "count": 1,
                    "items": [{"code": "SCJG-SP-002"}],
                    "window_start": "2026-09-01", "window_end": "2026-11-20"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{task}");
    let task_id = task["id"].as_i64().unwrap();
    let browser = Browser::start(&server.base, "flow").await;

    // The planner logs in and opens the ceremony.
    browser.log_in("planner", PASSWORD).await;
    assert!(browser.text("header").await.contains("planner（计划员）"));
    browser.open(&format!("/tasks/{task_id}")).await;
    assert!(browser.page_text().await.contains("T-WEB-1"));
    browser.screenshot("01-planner-task").await;
    browser.open(&format!("/tasks/{task_id}/draw")).await;
    browser
        .click("form[action$='/draw/commit'] button[type=submit]")
        .await;
    // The commitment is on the page before anyone types entropy.
    let commitment = browser.text("#commitment").await;
    assert!(commitment.contains("候选检查对象"), "{commitment}");
    assert!(commitment.contains("服务器密钥哈希"), "{commitment}");
    browser.screenshot("02-commitment").await;

    // One observer alone is not enough: the error sits next to the field.
    browser.fill("#observer0", "张代表（人大代表）").await;
    browser.fill("#entropy0", "20261102").await;
    browser.click("#ceremony button[type=submit]").await;
    let error = browser.text("#observer1-error").await;
    assert!(error.contains("至少 2 位观察员"), "{error}");
    browser.screenshot("03-one-observer-refused").await;
    browser.fill("#observer1", "李记者（日报）").await;
    browser.fill("#entropy1", "771").await;
    browser.click("#ceremony button[type=submit]").await;
    assert!(browser.text("#draw-done").await.contains("共抽中 1 户"));
    let seed = browser.text("#seed-inputs").await;
    assert!(
        seed.contains("张代表（人大代表）") && seed.contains("20261102"),
        "{seed}"
    );
    assert!(
        seed.contains("李记者（日报）") && seed.contains("771"),
        "{seed}"
    );
    let drawn = browser.text("#drawn").await;
    assert!(drawn.contains("杭州测试"), "{drawn}");
    assert!(drawn.contains("SCJG检查员"), "the group is named: {drawn}");
    assert!(
        browser
            .text("#verify")
            .await
            .contains("suiji-server draw verify")
    );
    let download = browser
        .find("#verify a[download]")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(download.ends_with("/record.json"), "{download}");
    browser.screenshot("04-draw-result").await;
    browser
        .click("form[action$='/draw/publish'] button[type=submit]")
        .await;
    assert!(browser.page_text().await.contains("已公示"));
    browser.log_out().await;

    // Phones fill in the drawn record, with a photo, sign and submit.
    let records = server
        .state
        .db
        .read(move |c| suiji_server::draw::records::list(c, Some(task_id), None))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    let record = records[0].clone();
    let rid = RecordId::new(record.id.as_str());
    let (ia, ib) = (record.group[0], record.group[1]);
    let mut a = Phone::open(&server, agency.username_of(ia), ia).await;
    let mut b = Phone::open(&server, agency.username_of(ib), ib).await;
    a.sync(&server.base).await.unwrap();
    b.sync(&server.base).await.unwrap();
    let item = a
        .store
        .edit(&rid, |doc| {
            let items = doc.assignment()?.items;
            for item in &items {
                doc.set_checked(&item.code, true)?;
                doc.set_methods(&item.code, &[Method::OnSite])?;
                doc.set_finding(&item.code, "后厨卫生良好")?;
            }
            doc.set_result_categories(&[ResultCategory::NoProblem])?;
            doc.set_follow_up(Some(FollowUpMeasure::None), None, None)?;
            Ok(items[0].code.clone())
        })
        .unwrap();
    a.store
        .import_photo(&rid, &item, &jpeg(7), "后厨操作间")
        .unwrap();
    b.store
        .edit(&rid, |doc| doc.set_party_statement("无异议"))
        .unwrap();
    sign_and_submit(&server, &mut a, &mut b, &rid).await;

    // The supervisor finds it in the queue and returns it with a comment.
    browser.log_in("supervisor", PASSWORD).await;
    browser.open("/review").await;
    let queue = browser.text("#queue").await;
    assert!(queue.contains(&record.target_name), "{queue}");
    assert!(queue.contains("剩"), "working days left: {queue}");
    browser.screenshot("05-review-queue").await;
    browser
        .click(&format!("#queue a[href='/records/{}']", record.id))
        .await;
    let items = browser.text("#items").await;
    assert!(items.contains("后厨卫生良好"), "{items}");
    assert!(
        items.contains("《中华人民共和国食品安全法》第一百一十条"),
        "{items}"
    );
    assert!(browser.text("#signatures").await.contains("已签字"));
    assert!(browser.text("#results").await.contains("未发现问题"));
    let thumbnail = browser.find("#photos img").await;
    let loaded = browser
        .client
        .execute(
            "return arguments[0].complete && arguments[0].naturalWidth",
            vec![serde_json::to_value(&thumbnail).unwrap()],
        )
        .await
        .unwrap();
    assert!(
        loaded.as_u64().unwrap_or(0) > 0,
        "thumbnail shows: {loaded}"
    );
    assert!(browser.text("#deadline").await.contains("个工作日"));
    browser.screenshot("06-record").await;

    // The record's 检查记录表 downloads from its page, as a PDF naming the target, the
    // finding and the photo's caption.
    // A download leaves the page in place, so no new page is waited for.
    browser
        .find("#record-pdf")
        .await
        .click()
        .await
        .expect("click");
    let pdf = browser
        .downloaded(&format!("record-{}.pdf", record.id))
        .await;
    let text = suiji_tests::pdf_text_joined(&pdf);
    for needle in [
        record.target_name.as_str(),
        "检查记录表",
        "后厨卫生良好",
        "后厨操作间",
    ] {
        assert!(
            text.contains(needle),
            "{needle} in the downloaded PDF: {text}"
        );
    }
    browser.click("#return-form button[type=submit]").await;
    let error = browser.text("#comment-error").await;
    assert!(error.contains("请写明"), "{error}");
    browser.screenshot("07-return-needs-comment").await;
    browser
        .fill("#return-comment", "请补充后厨检查的具体情况")
        .await;
    browser.click("#return-form button[type=submit]").await;
    assert!(browser.text("#notice").await.contains("已退回"));
    assert!(browser.text("#state").await.contains("已退回"));
    browser.screenshot("08-returned").await;

    // The inspectors correct it and submit again.
    a.sync(&server.base).await.unwrap();
    b.sync(&server.base).await.unwrap();
    a.store
        .edit(&rid, |doc| {
            doc.set_finding(&item, "后厨卫生良好，从业人员健康证明齐全")
        })
        .unwrap();
    sign_and_submit(&server, &mut a, &mut b, &rid).await;

    // Approved, then published.
    browser.client.refresh().await.unwrap();
    assert!(browser.text("#items").await.contains("健康证明齐全"));
    browser.fill("#approve-comment", "同意").await;
    browser.click("#approve-form button[type=submit]").await;
    assert!(browser.text("#state").await.contains("已审核"));
    assert!(browser.text("#history").await.contains("已退回"));
    browser.screenshot("09-approved").await;
    browser.click("#publish-form button[type=submit]").await;
    assert!(browser.text("#notice").await.contains("已公示"));
    browser.screenshot("10-published").await;
    browser.open("/stats?year=2026").await;
    let chart = browser.text("#result-chart").await;
    assert!(chart.contains("未发现问题"), "{chart}");
    assert!(browser.text("#stats").await.contains("全部"));
    browser.screenshot("11-stats").await;
    browser.open("/deadlines").await;
    let deadlines = browser.page_text().await;
    assert!(
        deadlines.contains("已超期（0）") && deadlines.contains("即将到期（0）"),
        "nothing is left open once published: {deadlines}"
    );
    browser.screenshot("12-deadlines").await;
    browser.log_out().await;

    // Anyone finds it by 统一社会信用代码, on a phone-sized screen.
    let uscc = server
        .state
        .db
        .read({
            let target = record.target_id;
            move |c| Ok(suiji_server::registry::targets::get(c, target)?.input.uscc)
        })
        .await
        .unwrap();
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.open("/public/results").await;
    browser.fill("#q", &uscc).await;
    browser.click("form[role=search] button[type=submit]").await;
    let results = browser.text("#results").await;
    assert!(results.contains(&record.target_name), "{results}");
    assert!(results.contains("未发现问题"), "{results}");
    assert!(results.contains("已公示"), "{results}");
    assert!(
        !results.contains("后厨卫生良好"),
        "no finding text is public"
    );
    assert!(
        browser.text("header").await.contains("登录"),
        "not logged in"
    );
    browser.screenshot("13-public-result-phone").await;
    browser.open("/public/draws").await;
    browser.click("#public-draws a").await;
    assert!(
        browser
            .text("#verify")
            .await
            .contains("suiji-server draw verify")
    );
    browser.screenshot("14-public-draw-phone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planner_searches_targets_and_a_csv_import_reports_its_bad_rows() {
    let server = TestServer::start().await;
    seed_agency(&server, 1, 12).await;
    let browser = Browser::start(&server.base, "registry").await;
    browser.log_in("planner", PASSWORD).await;

    browser.open("/targets").await;
    browser.fill("#q", "测试11").await;
    browser.click("form.filters button[type=submit]").await;
    let found = browser.text("#targets").await;
    assert!(found.contains("杭州测试11餐饮有限公司"), "{found}");
    assert!(!found.contains("杭州测试10餐饮"), "{found}");
    browser.screenshot("01-target-search").await;

    // The import form names a missing file next to the field.
    browser.click("#import button[type=submit]").await;
    assert!(browser.text("#file-error").await.contains("请选择"));

    // Two good rows and one bad: nothing is written, the bad line is named.
    let good = |serial: u32, name: &str| {
        format!(
            "{},{name},企业,餐饮业,西湖区,文三路{serial}号,王五,存续,C,否\n",
            suiji_server::uscc::generate('9', '1', "330106", serial)
        )
    };
    let csv = format!(
        "统一社会信用代码,名称,类型,行业,区域,地址,法定代表人,登记状态,风险等级,严重违法失信\n{}{}91330106MA2XXXXXX1,坏代码公司,企业,餐饮业,西湖区,文三路9号,王五,存续,C,否\n",
        good(5001, "杭州新导入甲餐饮有限公司"),
        good(5002, "杭州新导入乙餐饮有限公司"),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.csv");
    std::fs::write(&file, csv).unwrap();
    browser
        .find("#file")
        .await
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    browser.click("#import button[type=submit]").await;
    let report = browser.text("#import-report").await;
    assert!(report.contains("未写入任何内容"), "{report}");
    let errors = browser.text("#import-errors").await;
    assert!(
        errors.contains('4') && errors.contains("统一社会信用代码"),
        "{errors}"
    );
    browser.screenshot("02-import-refused").await;

    // Importing the good rows only.
    browser.open("/targets").await;
    browser
        .find("#mode")
        .await
        .select_by_value("valid_rows")
        .await
        .unwrap();
    browser
        .find("#file")
        .await
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    browser.click("#import button[type=submit]").await;
    assert!(browser.text("#import-report").await.contains("新增 2 个"));
    browser.screenshot("03-import-valid-rows").await;
    browser.open("/targets?q=新导入").await;
    assert!(
        browser
            .text("#targets")
            .await
            .contains("杭州新导入乙餐饮有限公司")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_missing_role_forged_form_and_unknown_page_get_clear_pages() {
    let server = TestServer::start().await;
    let browser = Browser::start(&server.base, "refusals").await;

    browser.log_in("planner", "not-the-password").await;
    let message = browser.text("#login-error").await;
    assert!(message.contains("用户名或密码错误"), "{message}");
    browser.screenshot("01-wrong-password").await;

    // An inspector has no business in the review queue.
    browser.log_in("inspector", PASSWORD).await;
    browser.open("/review").await;
    let page = browser.page_text().await;
    assert!(page.contains("403 无权访问"), "{page}");
    assert!(page.contains("审核员"), "names the role needed: {page}");
    assert!(
        !page.contains("panicked") && !page.contains("forbidden:"),
        "{page}"
    );
    browser.screenshot("02-forbidden").await;
    browser.log_out().await;

    // A form posted without its CSRF token is refused and changes nothing.
    browser.log_in("planner", PASSWORD).await;
    browser.open("/plans").await;
    browser.fill("#number", "P-FORGED").await;
    browser.fill("#name", "伪造的计划").await;
    browser.fill("#year", "2026").await;
    let old = browser.find("html").await;
    browser
        .client
        .execute(
            "const f = document.querySelector(\"form[action='/plans']\");
             f.querySelector(\"input[name=csrf]\").remove(); f.submit();",
            vec![],
        )
        .await
        .unwrap();
    browser.wait_for_new_page(old).await;
    let page = browser.page_text().await;
    assert!(page.contains("CSRF"), "{page}");
    browser.screenshot("03-csrf-refused").await;
    browser.open("/plans").await;
    assert!(!browser.text("#plans").await.contains("P-FORGED"));

    browser.open("/no/such/page").await;
    assert!(browser.page_text().await.contains("404 页面不存在"));
    browser.screenshot("04-not-found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_lists_a_candidate_and_a_planner_starts_a_recheck_from_the_outcomes_page() {
    let server = TestServer::start_demo().await;
    let password = suiji_server::demo::DEMO_PASSWORD;
    let browser = Browser::start(&server.base, "outcomes").await;

    // The demo's 无法联系 result left a pending candidate: the supervisor lists it.
    browser.log_in("supervisor", password).await;
    browser.open("/outcomes").await;
    let card = browser.text("section.candidate").await;
    assert!(card.contains("待决定"), "{card}");
    browser.screenshot("01-pending-candidate").await;
    browser
        .find("section.candidate input[name=decision][value=list]")
        .await
        .click()
        .await
        .unwrap();
    browser
        .fill(
            "section.candidate textarea[name=reason]",
            "两次上门及电话均无法联系",
        )
        .await;
    browser
        .click("section.candidate form.decision button[type=submit]")
        .await;
    assert!(browser.text("#notice").await.contains("已列入经营异常名录"));
    assert!(browser.text("section.candidate").await.contains("已列入"));
    browser.screenshot("02-listed").await;
    let listed: Vec<i64> = server
        .state
        .db
        .read(|c| {
            let mut stmt = c.prepare(
                "SELECT id FROM targets WHERE flag_abnormal = 1 AND abnormal_source_record IS NOT NULL",
            )?;
            let ids = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            Ok(ids)
        })
        .await
        .unwrap();
    assert_eq!(
        listed.len(),
        1,
        "the target is on the list, from its record"
    );
    // The target's page shows the listing and the decision, from the candidate's link.
    browser.click("section.candidate h3 a").await;
    assert!(browser.text("#abnormal-listing").await.contains("已列入"));
    let decisions = browser.text("#abnormal-decisions").await;
    assert!(
        decisions.contains("列入经营异常名录") && decisions.contains("两次上门及电话均无法联系"),
        "{decisions}"
    );
    let url = browser.client.current_url().await.unwrap();
    assert!(
        url.path().ends_with(&format!("/targets/{}", listed[0])),
        "{url}"
    );
    browser.screenshot("02b-target-page").await;
    browser.open("/outcomes").await;
    // The supervisor sees the open order to correct but may not start its 复查.
    assert!(browser.text("#follow-ups").await.contains("责令改正"));
    assert!(
        browser
            .client
            .find_all(fantoccini::Locator::Css("form.recheck"))
            .await
            .unwrap()
            .is_empty()
    );
    browser.log_out().await;

    // The party's deadline passes (the stored date is set back, as time would), and the
    // planner starts the 复查 with one click.
    let original: String = server
        .state
        .db
        .write_blocking(|tx| {
            tx.execute("UPDATE follow_ups SET deadline = '2026-11-01'", [])?;
            tx.query_row("SELECT record_id FROM follow_ups", [], |r| r.get(0))
        })
        .unwrap();
    browser.log_in("planner", password).await;
    browser.open("/outcomes").await;
    let row = browser.text("#follow-ups").await;
    assert!(row.contains("已到期"), "{row}");
    browser.screenshot("03-recheck-due").await;
    browser.click("form.recheck button[type=submit]").await;
    assert!(browser.text("#notice").await.contains("已发起复查"));
    let of = browser.text("#recheck-of").await;
    assert!(of.contains(&original), "{of}");
    let page = browser.page_text().await;
    assert!(
        page.contains("复查："),
        "the task is named as a 复查: {page}"
    );
    assert!(!page.contains("摇号现场"), "a 复查 is not drawn: {page}");
    browser.screenshot("04-recheck-task").await;

    // Back on the outcomes page the follow-up is under way, linked to its task.
    browser.open("/outcomes").await;
    let row = browser.text("#follow-ups").await;
    assert!(row.contains("复查中"), "{row}");
    assert!(
        browser
            .find("a.recheck-task")
            .await
            .attr("href")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        browser
            .client
            .find_all(fantoccini::Locator::Css("form.recheck"))
            .await
            .unwrap()
            .is_empty(),
        "no second 复查"
    );
    browser.screenshot("05-rechecking").await;
}
