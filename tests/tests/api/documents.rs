//! The printable documents (检查通知书, 检查记录表, 责令改正通知书) end to end: rendered by
//! a real server from real record documents, read back with poppler's pdftotext, pdfinfo,
//! pdfimages and pdftoppm; who may download them; and the public check their footer and QR
//! code point at.

use reqwest::StatusCode;
use serde_json::json;
use suiji_mobile_core::RecordId;
use suiji_mobile_core::record::Assignment;
use suiji_mobile_core::vocab::{FollowUpMeasure, Method, ResultCategory};
use suiji_server::demo::DEMO_PASSWORD;
use suiji_tests::{
    Client, Phone, TestServer, drawn_task, pdf_images, pdf_page_png, pdf_pages, pdf_text,
    pdf_text_joined, publish_drawn_list, server_record,
};

/// Downloads a document; asserts it is a PDF served as one and never cached.
async fn pdf(client: &Client, path: &str) -> Vec<u8> {
    let response = client.raw(reqwest::Method::GET, path).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/pdf", "{path}");
    assert_eq!(headers["cache-control"], "no-store", "{path}");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename="),
        "{path}"
    );
    let bytes = response.bytes().await.unwrap().to_vec();
    assert!(bytes.starts_with(b"%PDF-"), "{path} is a PDF");
    // Kept for a person to look at: target/tmp/documents/<record>-<document>.pdf.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("documents");
    std::fs::create_dir_all(&dir).unwrap();
    let name = path
        .trim_start_matches("/api/v1/records/")
        .replace('/', "-");
    std::fs::write(dir.join(name), &bytes).unwrap();
    bytes
}

/// Records of the demo in `state`, with whether each orders a correction.
fn published_demo_records(server: &TestServer) -> Vec<(String, bool)> {
    let ids: Vec<String> = server
        .state
        .db
        .read_blocking(|c| {
            let mut stmt =
                c.prepare("SELECT id FROM records WHERE review_state = 'published' ORDER BY id")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()
        })
        .unwrap();
    ids.into_iter()
        .map(|id| {
            let doc = server_record(server, &id);
            let orders =
                doc.follow_up().unwrap().measure == Some(FollowUpMeasure::OrderRectification);
            (id, orders)
        })
        .collect()
}

/// The digest after `label` on the footer line of a document's text.
fn footer_digest(text: &str, label: &str) -> String {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("{label} in the footer: {text}"));
    text[at + label.len()..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect()
}

fn assert_has(text: &str, needle: &str, what: &str) {
    let needle: String = needle.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(
        text.contains(&needle),
        "{what}: {needle:?} missing from {text}"
    );
}

fn assert_names_the_assignment(text: &str, a: &Assignment, what: &str) {
    assert_has(text, &a.target.name, what);
    assert_has(text, a.target.uscc.as_deref().unwrap(), what);
    assert_has(text, &a.agency, what);
    assert_has(text, &a.task.number, what);
    for item in &a.items {
        assert_has(text, &item.legal_basis, what);
    }
    assert_eq!(a.inspectors.len(), 2);
    for inspector in &a.inspectors {
        assert_has(text, &inspector.name, what);
        assert_has(text, &inspector.cert_no, what);
    }
}

#[tokio::test]
async fn the_demo_records_documents_carry_the_statutory_wording_every_id_and_a_digest_that_checks()
{
    let server = TestServer::start_demo().await;
    let supervisor = server.login_with("supervisor", DEMO_PASSWORD).await;
    let records = published_demo_records(&server);
    let (clean, _) = records
        .iter()
        .find(|(_, orders)| !orders)
        .expect("a clean record");
    let (ordered, _) = records
        .iter()
        .find(|(_, orders)| *orders)
        .expect("an ordered one");

    // 检查通知书: the target, the items with their legal basis, the inspectors with their
    // 执法证号, the window and the party's rights.
    let doc = server_record(&server, ordered);
    let assignment = doc.assignment().unwrap();
    let notice = pdf(
        &supervisor,
        &format!("/api/v1/records/{ordered}/notice.pdf"),
    )
    .await;
    let text = pdf_text_joined(&notice);
    assert_names_the_assignment(&text, &assignment, "notice");
    assert_has(&text, "检查通知书", "notice");
    assert_has(&text, "陈述和申辩", "the right to state and defend");
    assert_has(&text, "申请其回避", "the right to ask for recusal");
    let window = assignment.window_start.format("%Y年%-m月%-d日").to_string();
    assert_has(&text, &window, "the window");
    let notice_digest = footer_digest(&pdf_text(&notice), "通知书摘要 SHA-256");
    assert_eq!(
        notice_digest,
        suiji_server::documents::notice_digest(ordered, &assignment).unwrap()
    );

    // 检查记录表: every statutory result category printed, the chosen one marked, the
    // follow-up with its deadline, the party's statement and both signatures checked.
    let record = pdf(
        &supervisor,
        &format!("/api/v1/records/{ordered}/record.pdf"),
    )
    .await;
    let text = pdf_text_joined(&record);
    assert_names_the_assignment(&text, &assignment, "record");
    for category in ResultCategory::ALL {
        assert_has(&text, category.label(), "every statutory result category");
    }
    assert_has(&text, "■发现问题已责令改正", "the chosen result is marked");
    assert_has(&text, "□未发现问题", "the others are not");
    let deadline = doc.follow_up().unwrap().deadline.unwrap();
    assert_has(
        &text,
        &deadline.format("%Y年%-m月%-d日").to_string(),
        "the deadline",
    );
    assert_has(
        &text,
        &doc.party_statement().unwrap().unwrap(),
        "the party's statement",
    );
    assert_eq!(
        text.matches("电子签名有效，签名后记录未改动").count(),
        2,
        "both inspectors' signatures verify: {text}"
    );
    let content_digest = footer_digest(&pdf_text(&record), "记录内容摘要 SHA-256");
    assert_eq!(content_digest, doc.content_digest().unwrap());
    let pages = pdf_pages(&record);
    assert_has(&text, &format!("第1页共{pages}页"), "page numbers");
    assert_has(
        &text,
        &format!("第{pages}页共{pages}页"),
        "the last page's number",
    );

    // 责令改正通知书 for the record that ordered one; a record that did not has none.
    let order = pdf(
        &supervisor,
        &format!("/api/v1/records/{ordered}/rectification.pdf"),
    )
    .await;
    let text = pdf_text_joined(&order);
    assert_has(&text, "责令改正通知书", "rectification");
    assert_has(&text, &assignment.target.name, "rectification");
    assert_has(
        &text,
        assignment.target.uscc.as_deref().unwrap(),
        "rectification",
    );
    assert_has(
        &text,
        &format!("责令你单位于{}前改正", deadline.format("%Y年%-m月%-d日")),
        "the order",
    );
    assert_has(&text, "六十日内依法申请行政复议", "the party's remedies");
    assert_has(&text, &assignment.items[0].legal_basis, "the basis");
    let (s, body) = supervisor
        .get(&format!("/api/v1/records/{clean}/rectification.pdf"))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");

    // Sixteen downloads at once all come back, byte for byte the same document: rendering
    // queues one per core and depends on nothing but the record.
    let downloads: Vec<_> = (0..16)
        .map(|_| {
            let (client, path) = (
                supervisor.clone(),
                format!("/api/v1/records/{ordered}/record.pdf"),
            );
            tokio::spawn(async move { pdf(&client, &path).await })
        })
        .collect();
    for download in downloads {
        assert!(
            download.await.unwrap() == record,
            "the same bytes every time"
        );
    }

    // One page drawn to PNG: A4 at 50 dpi, white paper with dark text on it.
    let png = pdf_page_png(&record, 1, 50);
    let page = image::load_from_memory(&png)
        .expect("pdftoppm drew a PNG")
        .to_luma8();
    // A4 is 210 × 297 mm: 413.4 × 584.6 pixels at 50 dpi, rounded either way.
    assert!(
        (413..=414).contains(&page.width()) && (584..=585).contains(&page.height()),
        "A4 at 50 dpi: {}×{}",
        page.width(),
        page.height()
    );
    let dark = page.pixels().filter(|p| p.0[0] < 128).count();
    let share = dark as f64 / (page.width() * page.height()) as f64;
    assert!(
        (0.01..0.5).contains(&share),
        "ink covers {share} of the page"
    );

    // The public check, with no login: each digest matches what it was printed from; a
    // wrong digest and an unknown record get the same answer; a malformed digest is 422.
    let public = Client::anonymous(&server.base);
    let check = |record: &str, digest: &str| {
        format!("/api/v1/public/check?record={record}&digest={digest}")
    };
    let (s, answer) = public.get(&check(ordered, &notice_digest)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(answer["matched"], "notice", "{answer}");
    assert_eq!(
        answer["record"]["target_name"],
        json!(assignment.target.name)
    );
    let (_, answer) = public.get(&check(ordered, &content_digest)).await;
    assert_eq!(answer["matched"], "current", "{answer}");
    assert!(
        answer["record"]["result_id"].is_i64(),
        "published: {answer}"
    );
    let mut forged = content_digest.clone().into_bytes();
    forged[10] = if forged[10] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    let (_, wrong) = public.get(&check(ordered, &forged)).await;
    let (_, unknown) = public.get(&check("r999-1", &content_digest)).await;
    let (_, other) = public.get(&check(clean, &content_digest)).await;
    assert_eq!(wrong, json!({"matches": false}));
    assert_eq!(
        unknown, wrong,
        "an unknown record answers as a wrong digest"
    );
    assert_eq!(other, wrong, "a digest checks only with its own record");
    let (s, _) = public.get(&check(ordered, "abc")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // The QR code's address is the check page, which says so in words.
    let response = public
        .raw(
            reqwest::Method::GET,
            &format!("/public/check?record={ordered}&digest={content_digest}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("一致：这份文书与系统中该记录的当前内容一致"),
        "{html}"
    );
    let html = public
        .raw(
            reqwest::Method::GET,
            &format!("/public/check?record={ordered}&digest={forged}"),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("不一致"), "{html}");
}

fn png(seed: u8) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(300, 100, |x, y| {
        let ink = (x + y * 3 + u32::from(seed)) % 17 == 0;
        image::Rgba(if ink {
            [0, 0, 0, 255]
        } else {
            [255, 255, 255, 0]
        })
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn jpeg(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x / 3) as u8 ^ seed, (y / 2) as u8, 90])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

#[tokio::test]
async fn a_record_printed_from_phones_shows_its_photos_and_signature_images_to_those_who_may_see_it()
 {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 2).await;
    let planner = server.login("planner").await;
    let task_id = server
        .state
        .db
        .read_blocking(|c| {
            c.query_row("SELECT id FROM tasks WHERE number = 'T-SYNC'", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .unwrap();
    publish_drawn_list(&planner, task_id).await;
    let record = records[0].clone();
    let (ia, ib) = (record.group[0], record.group[1]);
    let rid = RecordId::new(record.id.as_str());
    let mut a = Phone::open(&server, agency.username_of(ia), ia).await;
    let mut b = Phone::open(&server, agency.username_of(ib), ib).await;
    a.sync(&server.base).await.unwrap();
    b.sync(&server.base).await.unwrap();

    // Before anything is recorded, an inspector of the group prints the notice to take on
    // site; an inspector of another group and the supervisor (nothing submitted) cannot.
    let lead = server.login(agency.username_of(ia)).await;
    let notice = pdf(&lead, &format!("/api/v1/records/{}/notice.pdf", record.id)).await;
    assert_has(
        &pdf_text_joined(&notice),
        &record.target_name,
        "the lead's notice",
    );
    let outsider = agency
        .inspectors
        .iter()
        .map(|(id, _)| *id)
        .find(|id| !record.group.contains(id) && !records[1].group.contains(id))
        .map(|id| agency.username_of(id).to_owned());
    let supervisor = server.login("supervisor").await;
    let mut refused: Vec<(&str, Client)> = vec![("supervisor", supervisor.clone())];
    if let Some(name) = &outsider {
        refused.push(("an inspector of no group", server.login(name).await));
    }
    for (who, client) in &refused {
        for kind in ["notice", "record", "rectification"] {
            let (s, body) = client
                .get(&format!("/api/v1/records/{}/{kind}.pdf", record.id))
                .await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{who} {kind}: {body}");
            let (s, unknown) = client
                .get(&format!("/api/v1/records/r999-9/{kind}.pdf"))
                .await;
            assert_eq!(
                (s, &unknown["code"]),
                (StatusCode::NOT_FOUND, &body["code"])
            );
        }
    }
    let (s, _) = Client::anonymous(&server.base)
        .get(&format!("/api/v1/records/{}/notice.pdf", record.id))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // The inspection: a finding, a correction ordered, a photo, the party's and both
    // inspectors' handwritten signatures.
    let item = a
        .store
        .edit(&rid, |doc| {
            let items = doc.assignment()?.items;
            for item in &items {
                doc.set_checked(&item.code, true)?;
                doc.set_methods(&item.code, &[Method::OnSite, Method::Documentary])?;
                doc.set_finding(&item.code, "冷藏柜温度记录缺失")?;
                doc.set_disposition(&item.code, "当场要求补记")?;
            }
            doc.set_result_categories(&[ResultCategory::Rectified])?;
            doc.set_follow_up(
                Some(FollowUpMeasure::OrderRectification),
                Some("2027-01-15".parse().unwrap()),
                Some("建立温度记录制度"),
            )?;
            Ok(items[0].code.clone())
        })
        .unwrap();
    a.store
        .import_photo(&rid, &item, &jpeg(3), "冷藏柜温度计")
        .unwrap();
    b.store
        .edit(&rid, |doc| doc.set_party_statement("情况属实，立即整改"))
        .unwrap();
    a.sync(&server.base).await.unwrap();
    b.sync(&server.base).await.unwrap();
    b.store
        .party_sign(&rid, "张经理", "负责人", &png(1))
        .unwrap();
    b.sync(&server.base).await.unwrap();
    a.sync(&server.base).await.unwrap();
    let (ida, idb) = (
        a.store.inspector_id().clone(),
        b.store.inspector_id().clone(),
    );
    a.store.sign(&rid, &ida, Some(&png(2))).unwrap();
    a.sync(&server.base).await.unwrap();
    b.sync(&server.base).await.unwrap();
    b.store.sign(&rid, &idb, Some(&png(3))).unwrap();
    b.sync(&server.base).await.unwrap();
    a.sync(&server.base).await.unwrap();
    let outcome = a.store.submit(&rid).unwrap();
    assert!(
        matches!(
            outcome,
            suiji_mobile_core::record::SubmitOutcome::Submitted { .. }
        ),
        "{outcome:?}"
    );
    a.sync(&server.base).await.unwrap();

    let record_pdf = pdf(
        &supervisor,
        &format!("/api/v1/records/{}/record.pdf", record.id),
    )
    .await;
    let text = pdf_text_joined(&record_pdf);
    for needle in [
        "冷藏柜温度记录缺失",
        "当场要求补记",
        "实地检查、书面检查",
        "冷藏柜温度计",
        "张经理（负责人）",
        "情况属实，立即整改",
        "2027年1月15日",
    ] {
        assert_has(&text, needle, "the record");
    }
    let photo = server_record(&server, &record.id)
        .photos()
        .unwrap()
        .remove(0);
    assert_has(&text, photo.sha256.as_str(), "the photo's hash");
    // The thumbnail and three signature images are drawn (pdfimages lists PNGs with alpha
    // twice: the image and its mask).
    let images = pdf_images(&record_pdf);
    assert!(
        images.iter().any(|(_, w, h)| (*w, *h) == (256, 192)),
        "the 640×480 photo's 256×192 thumbnail is in the PDF: {images:?}"
    );
    assert!(
        images
            .iter()
            .filter(|(_, w, h)| (*w, *h) == (300, 100))
            .count()
            >= 3,
        "three signature images: {images:?}"
    );
    let order = pdf(
        &supervisor,
        &format!("/api/v1/records/{}/rectification.pdf", record.id),
    )
    .await;
    assert_has(
        &pdf_text_joined(&order),
        "建立温度记录制度",
        "the order's detail",
    );
}

#[tokio::test]
async fn a_record_swollen_by_its_phone_prints_within_bounds_and_says_what_it_left_out() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 1).await;
    let record = records[0].clone();
    let (ia, _) = (record.group[0], record.group[1]);
    let rid = RecordId::new(record.id.as_str());
    let mut a = Phone::open(&server, agency.username_of(ia), ia).await;
    a.sync(&server.base).await.unwrap();
    // A finding of 200,000 characters with a mark at its very end, and 4,000 notes: far more
    // than any inspection writes, as a hostile or broken phone might send.
    let me = a.store.inspector_id().clone();
    a.store
        .edit(&rid, |doc| {
            let code = doc.assignment()?.items[0].code.clone();
            doc.set_finding(&code, &format!("{}末尾标记", "检".repeat(200_000)))?;
            for n in 0..4_000 {
                doc.add_note(
                    &me,
                    &code,
                    &format!("第{n}条记录"),
                    &[],
                    suiji_mobile_core::record::NoteKind::Note,
                )?;
            }
            Ok(())
        })
        .unwrap();
    a.sync(&server.base).await.unwrap();
    let lead = server.login(agency.username_of(ia)).await;
    let record_pdf = pdf(&lead, &format!("/api/v1/records/{}/record.pdf", record.id)).await;
    let pages = pdf_pages(&record_pdf);
    assert_eq!(
        pages,
        suiji_server::documents::layout::MAX_PAGES,
        "printed up to the page limit"
    );
    let text = pdf_text_joined(&record_pdf);
    assert_has(
        &text,
        "以下197004字未印出，以电子记录为准",
        "the clipped finding says so",
    );
    assert!(
        !text.contains("末尾标记"),
        "the rest of the finding is not printed"
    );
    assert_has(
        &text,
        "其后内容未印出，以电子记录为准",
        "the last page says it stops",
    );
    assert_has(
        &text,
        &format!("第{pages}页共{pages}页"),
        "page numbers stay right",
    );
}
