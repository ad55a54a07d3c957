//! Retention (`retention_years`) and the purge of a task's records after it: refused before,
//! allowed after, what goes and what stays, on a real server with real phones and photos.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::{Value, json};
use suiji_mobile_core::RecordId;
use suiji_tests::{Client, Phone, TestServer, answer_all, drawn_task, sign_and_submit};

fn jpeg(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 ^ seed, y as u8, seed]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

async fn download(server: &TestServer, client: &Client, hash: &str) -> StatusCode {
    suiji_tests::http_following_redirects()
        .get(format!("{}/api/v1/blobs/{hash}", server.base))
        .bearer_auth(client.token.clone().unwrap())
        .send()
        .await
        .unwrap()
        .status()
}

/// Moves the publication of every result of `task_id` to `day` (noon, China time), as if it
/// had happened then: the versions are immutable through the server, so the test lifts
/// their guard in the real database, writes the date and puts the guard back.
async fn published_on(server: &TestServer, task_id: i64, day: &str) {
    let at = format!("{day}T04:00:00Z");
    server
        .state
        .db
        .write(move |tx| {
            let guard: String = if tx.is_postgres() {
                tx.execute_batch(
                    "ALTER TABLE result_versions DISABLE TRIGGER result_versions_immutable",
                )?;
                "ALTER TABLE result_versions ENABLE TRIGGER result_versions_immutable".into()
            } else {
                let guard = tx.query_row(
                    "SELECT sql FROM sqlite_master WHERE name = 'result_versions_immutable'",
                    [],
                    |r| r.get(0),
                )?;
                tx.execute_batch("DROP TRIGGER result_versions_immutable")?;
                guard
            };
            tx.execute(
                "UPDATE result_versions SET published_at = ?1 WHERE result_id IN
                    (SELECT id FROM published_results WHERE task_id = ?2)",
                suiji_server::params![at, task_id],
            )?;
            tx.execute(
                "UPDATE published_results SET first_published_at = ?1, first_published_on = ?2
                 WHERE task_id = ?3",
                suiji_server::params![at, &at[..10], task_id],
            )?;
            tx.execute_batch(&guard)?;
            Ok(())
        })
        .await
        .unwrap();
}

fn audit_of(server: &TestServer, task_id: i64) -> Vec<suiji_server::audit::Entry> {
    server
        .state
        .db
        .read_blocking(move |c| {
            suiji_server::audit::recent(c, Some(&format!("task:{task_id}")), 50)
        })
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "task.purge")
        .collect()
}

#[tokio::test]
async fn a_purge_waits_for_retention_then_empties_the_records_and_keeps_the_publication_record() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 6, 1).await;
    let record = records[0].clone();
    let task_id = record.task_id;
    let rid = RecordId::new(record.id.as_str());
    let planner = server.login("planner").await;
    let supervisor = server.login("supervisor").await;
    let admin = server.login("admin").await;
    suiji_tests::publish_drawn_list(&planner, task_id).await;

    // Every record inspected and submitted (the draw may add must-include targets to the one
    // asked for), the first with a photo.
    let mut phones: HashMap<i64, Phone> = HashMap::new();
    for r in &records {
        for &i in &r.group {
            if let std::collections::hash_map::Entry::Vacant(slot) = phones.entry(i) {
                slot.insert(Phone::open(&server, agency.username_of(i), i).await);
            }
        }
    }
    for phone in phones.values_mut() {
        phone.sync(&server.base).await.unwrap();
    }
    let mut hash = String::new();
    let mut thumbnail = String::new();
    for r in &records {
        let id = RecordId::new(r.id.as_str());
        let mut a = phones.remove(&r.group[0]).unwrap();
        let mut b = phones.remove(&r.group[1]).unwrap();
        a.sync(&server.base).await.unwrap();
        b.sync(&server.base).await.unwrap();
        a.store.edit(&id, answer_all).unwrap();
        if id == rid {
            let item = a.store.record(&id).unwrap().assignment().unwrap().items[0]
                .code
                .clone();
            let photo = a.store.import_photo(&id, &item, &jpeg(9), "后厨").unwrap();
            hash = photo.sha256.as_str().to_owned();
            thumbnail = photo.thumbnail_sha256.as_str().to_owned();
        }
        sign_and_submit(&server, &mut a, &mut b, &id).await;
        phones.insert(r.group[0], a);
        phones.insert(r.group[1], b);
    }
    let purge = |reason: &str| json!({ "reason": reason });
    let url = format!("/api/v1/tasks/{task_id}/purge");

    // Unfinished: refused whatever the dates.
    let (s, body) = admin.post(&url, &purge("到期销毁")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not published"),
        "{body}"
    );
    for r in &records {
        let (s, body) = supervisor
            .post(&format!("/api/v1/records/{}/approve", r.id), &json!({}))
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let (s, body) = supervisor
        .post(
            &format!("/api/v1/tasks/{task_id}/publish-results"),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let result_id = body["published"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["record_id"] == record.id.as_str())
        .unwrap()["result_id"]
        .as_i64()
        .unwrap();

    // Published today: kept two years (the default), the day named.
    let (_, rules) = admin.get("/api/v1/rules").await;
    assert_eq!(rules["retention_years"], 2);
    let (s, body) = admin.post(&url, &purge("到期销毁")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "retained", "{body}");
    let today = suiji_server::review::china_today();
    let allowed = suiji_server::review::retention::allowed_on(today, 2);
    assert_eq!(body["error"]["purge_allowed_on"], allowed.to_string());
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("may be purged from {allowed}")),
        "{body}"
    );

    // Published two years less a day ago: still kept. Two years ago to the day: allowed.
    let day_before = allowed_back(today, 2).succ_opt().unwrap();
    published_on(&server, task_id, &day_before.to_string()).await;
    let (s, body) = admin.post(&url, &purge("到期销毁")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["error"]["purge_allowed_on"],
        today.succ_opt().unwrap().to_string()
    );
    // Only an admin, and a reason is needed.
    let (s, _) = supervisor.post(&url, &purge("到期销毁")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = planner.post(&url, &purge("到期销毁")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    published_on(&server, task_id, &allowed_back(today, 2).to_string()).await;
    let (s, body) = admin.post(&url, &json!({"reason": "  "})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "reason");
    assert!(audit_of(&server, task_id).is_empty(), "nothing purged yet");
    assert_eq!(download(&server, &supervisor, &hash).await, StatusCode::OK);
    let (s, _) = supervisor
        .get(&format!("/api/v1/records/{}", record.id))
        .await;
    assert_eq!(s, StatusCode::OK);

    // The sync endpoint holds the record's parsed document in memory from the phones' syncs.
    let lead = phones.get_mut(&record.group[0]).unwrap();
    lead.sync(&server.base).await.unwrap();
    let version = server
        .state
        .db
        .read_blocking({
            let id = record.id.clone();
            move |c| suiji_server::draw::doc_cache::doc_version(c, &id)
        })
        .unwrap();
    assert!(
        server.state.sync.docs.get(&record.id, version).is_some(),
        "kept in memory before the purge"
    );
    // A record of another task holds the same thumbnail (identical bytes from a partner's
    // photo): that blob must outlive this purge.
    let (s, other_task) = planner
        .post(
            &format!("/api/v1/plans/{}/tasks", agency.plan_id),
            &json!({"number": "T-KEEP", "name": "另一任务", "directed": true,
                    "conditions": {"industries": ["餐饮业"]}, "count": 1,
                    "items": [{"code": "SCJG-SP-002"}],
                    "window_start": "2026-09-01", "window_end": "2026-11-20"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{other_task}");
    let other_task = other_task["id"].as_i64().unwrap();
    let (_, commitment) = planner
        .post(
            &format!("/api/v1/tasks/{other_task}/draw/commit"),
            &json!({}),
        )
        .await;
    let (s, drawn) = planner
        .post(
            &format!("/api/v1/tasks/{other_task}/draw"),
            &json!({"commitment_id": commitment["id"], "entropy": suiji_tests::observers()}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{drawn}");
    let keeper = server
        .state
        .db
        .write({
            let thumbnail = thumbnail.clone();
            move |tx| {
                let (id, inspector): (String, i64) = tx.query_row(
                    "SELECT r.id, ri.inspector_id FROM records r
                     JOIN record_inspectors ri ON ri.record_id = r.id
                     WHERE r.task_id = ?1 LIMIT 1",
                    [other_task],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                tx.execute(
                    "INSERT INTO record_blobs (record_id, sha256, inspector_id, expected)
                     VALUES (?1, ?2, ?3, 1)",
                    suiji_server::params![id, thumbnail, inspector],
                )?;
                Ok(id)
            }
        })
        .await
        .unwrap();

    let (s, report) = admin
        .post(&url, &purge("保存期限届满，经局务会批准销毁"))
        .await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(report["records"], records.len());
    assert_eq!(report["already_purged"], false);
    assert!(report["chunks"].as_i64().unwrap() >= 1, "{report}");
    assert!(report["sync_states"].as_i64().unwrap() >= 2, "{report}");
    assert!(
        report["blob_references"].as_i64().unwrap() >= 2,
        "the photo and its thumbnail at least: {report}"
    );
    assert_eq!(
        report["blobs"].as_i64().unwrap(),
        report["blob_references"].as_i64().unwrap() - 1,
        "all but the shared thumbnail: {report}"
    );

    // Gone: from memory, the record view, its document, its photo (row and file).
    assert!(server.state.sync.docs.get(&record.id, version).is_none());
    assert!(
        server
            .state
            .sync
            .docs
            .get(&record.id, version + 1)
            .is_none(),
        "nor under the raised version"
    );
    let (s, body) = supervisor
        .get(&format!("/api/v1/records/{}", record.id))
        .await;
    assert_eq!(s, StatusCode::GONE, "{body}");
    assert_eq!(body["error"]["code"], "gone");
    assert_ne!(download(&server, &supervisor, &hash).await, StatusCode::OK);
    assert_ne!(download(&server, &admin, &hash).await, StatusCode::OK);
    assert!(
        server.state.blobs.stat(&hash).unwrap().is_none(),
        "the file is deleted"
    );
    assert!(
        server.state.blobs.stat(&thumbnail).unwrap().is_some(),
        "the thumbnail {keeper} still references is kept"
    );
    let kept: i64 = server
        .state
        .db
        .read_blocking({
            let thumbnail = thumbnail.clone();
            move |c| {
                c.query_row(
                    "SELECT COUNT(*) FROM blobs WHERE sha256 = ?1",
                    [thumbnail],
                    |r| r.get(0),
                )
            }
        })
        .unwrap();
    assert_eq!(kept, 1, "its row too");
    let chunks: i64 = server
        .state
        .db
        .read_blocking({
            let id = record.id.clone();
            move |c| {
                c.query_row(
                    "SELECT COUNT(*) FROM record_chunks WHERE record_id = ?1",
                    [id],
                    |r| r.get(0),
                )
            }
        })
        .unwrap();
    assert_eq!(chunks, 0);
    let console = suiji_tests::console_session(&server, "supervisor").await;
    let (s, page) =
        suiji_tests::console_page(&server, &console, &format!("/records/{}", record.id)).await;
    assert_eq!(s, StatusCode::GONE);
    assert!(page.contains("已超过保存期限"), "{page}");

    // A phone that still holds it is told it is withdrawn, and drops it; nothing fails.
    let (ia, ib) = (record.group[0], record.group[1]);
    let a = phones.get_mut(&ia).unwrap();
    let synced = a.sync(&server.base).await.unwrap();
    assert!(synced.withdrawn.contains(&rid), "{synced:?}");
    assert!(synced.refused.is_empty(), "{synced:?}");
    assert!(a.store.record(&rid).is_err(), "the phone dropped it");
    let b = &phones[&ib];
    let mut inspector = Client::anonymous(&server.base);
    inspector.token = Some(b.credentials().access_token);
    let (s, mine) = inspector.get("/api/v1/my/records").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        mine.as_array()
            .unwrap()
            .iter()
            .all(|r| r["task_id"] != task_id),
        "only the other task's records: {mine}"
    );

    // The task's dossier still exports and verifies: draws, results and audit entries, with
    // the purged records named in the manifest and none of their documents or photos.
    let response = admin
        .raw(
            reqwest::Method::GET,
            &format!("/api/v1/tasks/{task_id}/dossier.zip"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let zip = response.bytes().await.unwrap().to_vec();
    let verified = suiji_server::dossier::verify::verify(std::io::Cursor::new(&zip))
        .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(verified.records, 0);
    assert_eq!(verified.draws, 1);
    let purged: Vec<&str> = verified
        .manifest
        .purged_records
        .iter()
        .map(|p| p.record_id.as_str())
        .collect();
    assert_eq!(
        purged,
        records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>()
    );
    assert!(
        verified
            .manifest
            .files
            .iter()
            .all(|f| !f.name.starts_with("records/")),
        "no document of a purged record"
    );

    // Kept: the public result with its versions, the draw record, the audit chain.
    let anonymous = Client::anonymous(&server.base);
    let (s, public) = anonymous
        .get(&format!("/api/v1/public/results/{result_id}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{public}");
    assert_eq!(public["uscc"].as_str().map(str::len), Some(18));
    let (s, listed) = anonymous
        .get(&format!("/api/v1/public/tasks/{task_id}/results.json"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(listed["results"].as_array().unwrap().len(), records.len());
    let draw_id = server
        .state
        .db
        .read(move |c| Ok(suiji_server::draw::draws_of_task(c, task_id)?[0].id))
        .await
        .unwrap();
    let draw = reqwest::get(format!("{}/api/v1/public/draws/{draw_id}", server.base))
        .await
        .unwrap();
    assert_eq!(draw.status(), StatusCode::OK);
    let draw: suiji_server::draw::DrawRecord =
        serde_json::from_slice(&draw.bytes().await.unwrap()).unwrap();
    assert_eq!(suiji_server::draw::verify(&draw), Ok(()));
    let (s, lines) = planner
        .get(&format!("/api/v1/tasks/{task_id}/records"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        lines.to_string().contains(&record.id),
        "the line stays: {lines}"
    );
    let entries = audit_of(&server, task_id);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].actor, "admin");
    let after: Value = serde_json::from_str(entries[0].after.as_deref().unwrap()).unwrap();
    assert_eq!(after["reason"], "保存期限届满，经局务会批准销毁");
    let mut ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    assert_eq!(after["records"], json!(ids));
    assert_eq!(after["chunks"], report["chunks"]);
    assert_eq!(
        after["blobs"].as_array().unwrap().len() as i64,
        report["blobs"].as_i64().unwrap()
    );
    let verdict = server
        .state
        .db
        .read_blocking(suiji_server::audit::verify)
        .unwrap();
    assert!(
        matches!(verdict, suiji_server::audit::Verification::Intact { .. }),
        "{verdict:?}"
    );

    // Again: nothing left, nothing changed, not audited again.
    let (s, again) = admin.post(&url, &purge("重复提交")).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["already_purged"], true);
    assert_eq!(again["records"], 0);
    assert_eq!(audit_of(&server, task_id).len(), 1);
    let (s, _) = admin.post("/api/v1/tasks/999999/purge", &purge("x")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// The day `years` years before `day`: what [`allowed_on`] counts forward from.
fn allowed_back(day: chrono::NaiveDate, years: u32) -> chrono::NaiveDate {
    day.checked_sub_months(chrono::Months::new(years * 12))
        .unwrap()
}

#[tokio::test]
async fn retention_years_is_two_by_default_at_least_two_and_longer_retention_moves_the_day() {
    let server = TestServer::start().await;
    let admin = server.login("admin").await;
    let (_, rules) = admin.get("/api/v1/rules").await;
    assert_eq!(rules["retention_years"], 2);
    for bad in [json!(1), json!(0), json!(101), json!("3"), json!(2.5)] {
        let (s, body) = admin
            .put("/api/v1/rules", &json!({"retention_years": bad}))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["error"]["field"], "retention_years", "{body}");
    }
    let (s, rules) = admin
        .put("/api/v1/rules", &json!({"retention_years": 5}))
        .await;
    assert_eq!(s, StatusCode::OK, "{rules}");
    assert_eq!(rules["retention_years"], 5);
    let (_, rules) = admin.get("/api/v1/rules").await;
    assert_eq!(rules["retention_years"], 5);
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    assert_eq!(
        suiji_server::review::retention::allowed_on(day, 5).to_string(),
        "2031-11-20"
    );
    let leap = chrono::NaiveDate::from_ymd_opt(2028, 2, 29).unwrap();
    assert_eq!(
        suiji_server::review::retention::allowed_on(leap, 2).to_string(),
        "2030-02-28"
    );
}
