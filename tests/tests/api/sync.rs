//! Phones and the server over the real sync protocol: offline edits merge,
//! conflicts show everywhere, rules are enforced, withdrawn records vanish,
//! and cut connections or a restarted server lose nothing.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::json;
use suiji_mobile_core::sync::wire;
use suiji_mobile_core::{ItemCode, RecordId};
use suiji_tests::proxy::{Direction, FaultProxy};
use suiji_tests::{Phone, TestServer, drawn_task, server_heads, server_record};

/// A small real JPEG.
fn jpeg(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 ^ seed, y as u8, seed]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

fn item_of(phone: &Phone, id: &str) -> ItemCode {
    phone
        .store
        .record(&RecordId::new(id))
        .unwrap()
        .assignment()
        .unwrap()
        .items[0]
        .code
        .clone()
}

#[tokio::test]
async fn two_phones_merge_offline_edits_and_a_same_field_conflict_shows_everywhere() {
    merge_offline_edits(false).await;
    merge_offline_edits(true).await;
}

/// The scenario, with phone B syncing first or phone A first.
async fn merge_offline_edits(a_first: bool) {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 4).await;
    let record = &records[0];
    let (a, b) = (record.group[0], record.group[1]);
    let mut phone_a = Phone::open(&server, agency.username_of(a), a).await;
    let mut phone_b = Phone::open(&server, agency.username_of(b), b).await;
    phone_a.sync(&server.base).await.unwrap();
    phone_b.sync(&server.base).await.unwrap();
    let id = record.id.clone();
    assert!(phone_a.record_ids().contains(&id) && phone_b.record_ids().contains(&id));

    // Offline: different fields, and the same field with different answers.
    let item = item_of(&phone_a, &id);
    let rid = RecordId::new(id.as_str());
    suiji_tests::edit_apart_offline(&phone_a, &phone_b, &rid, &item);

    // One phone, then the other, then a second round for both.
    let (first, second) = if a_first {
        (&mut phone_a, &mut phone_b)
    } else {
        (&mut phone_b, &mut phone_a)
    };
    let report = first.sync(&server.base).await.unwrap();
    assert!(report.complete);
    assert!(report.sent.iter().any(|r| r.as_str() == id), "{report:?}");
    let report = second.sync(&server.base).await.unwrap();
    assert!(report.rounds <= 4, "{} rounds", report.rounds);
    first.sync(&server.base).await.unwrap();
    second.sync(&server.base).await.unwrap();

    let server_now = server_heads(&server, &id);
    assert_eq!(phone_a.heads(&id), server_now);
    assert_eq!(phone_b.heads(&id), server_now);

    for doc in [
        phone_a.store.record(&rid).unwrap(),
        phone_b.store.record(&rid).unwrap(),
        server_record(&server, &id),
    ] {
        suiji_tests::assert_merged_apart(&doc, &item);
    }

    // Answering again settles it everywhere.
    phone_a
        .store
        .edit(&rid, |doc| doc.set_finding(&item, "健康证过期，已责令改正"))
        .unwrap();
    phone_a.sync(&server.base).await.unwrap();
    phone_b.sync(&server.base).await.unwrap();
    assert!(
        phone_b
            .store
            .record(&rid)
            .unwrap()
            .conflicts()
            .unwrap()
            .is_empty()
    );
    assert_eq!(phone_b.heads(&id), server_heads(&server, &id));
}

#[tokio::test]
async fn an_unassigned_phone_cannot_fetch_write_or_download() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 2).await;
    let record = &records[0];
    let member = record.group[0];
    let stranger = agency
        .inspectors
        .iter()
        .map(|(id, _)| *id)
        .find(|id| !records.iter().any(|r| r.group.contains(id)))
        .expect("an inspector with no record");
    let mut phone = Phone::open(&server, agency.username_of(member), member).await;
    phone.sync(&server.base).await.unwrap();
    let rid = RecordId::new(record.id.as_str());
    let item = item_of(&phone, &record.id);
    let photo = phone
        .store
        .import_photo(&rid, &item, &jpeg(7), "门头照片")
        .unwrap();
    let report = phone.sync(&server.base).await.unwrap();
    assert_eq!(report.blobs_uploaded.len(), 2, "{report:?}");
    assert_eq!(
        report.http_requests,
        report.rounds + 1,
        "the photo and its thumbnail go up in one request: {report:?}"
    );

    let mut other = Phone::open(&server, agency.username_of(stranger), stranger).await;
    other.sync(&server.base).await.unwrap();
    assert!(other.record_ids().is_empty(), "nothing fetched");

    // Writing: a sync message for the record is refused with 403.
    let message = {
        let mut doc = phone.store.record(&rid).unwrap();
        let mut state = automerge::sync::State::new();
        use automerge::sync::SyncDoc;
        doc.automerge_mut()
            .sync()
            .generate_sync_message(&mut state)
            .unwrap()
            .encode()
    };
    let body = wire::encode(&wire::SyncRequest {
        protocol: wire::PROTOCOL_VERSION,
        device: other.store.device_id().to_owned(),
        round: 1,
        held: vec![],
        messages: vec![wire::DocMessage {
            record_id: record.id.clone(),
            message,
        }],
    });
    let http = suiji_tests::http_following_redirects();
    let response = http
        .post(format!("{}{}", server.base, wire::SYNC_PATH))
        .bearer_auth(&other.credentials().access_token)
        .header("content-type", wire::CONTENT_TYPE)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"]["rule"], "not_assigned");

    // Downloading its photo: 403 for the stranger, the bytes for the partner.
    let url = format!(
        "{}/api/v1/blobs/{}",
        server.base,
        photo.thumbnail_sha256.as_str()
    );
    let denied = http
        .get(&url)
        .bearer_auth(&other.credentials().access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let partner = record.group[1];
    let mut partner_phone = Phone::open(&server, agency.username_of(partner), partner).await;
    partner_phone.sync(&server.base).await.unwrap();
    let allowed = http
        .get(&url)
        .bearer_auth(&partner_phone.credentials().access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.headers()["content-type"], "image/jpeg");
}

#[tokio::test]
async fn a_phone_that_changes_the_assignment_is_refused_and_the_server_copy_is_unchanged() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 2).await;
    let record = &records[0];
    let member = record.group[0];
    let mut phone = Phone::open(&server, agency.username_of(member), member).await;
    phone.sync(&server.base).await.unwrap();
    let before = server_heads(&server, &record.id);
    let rid = RecordId::new(record.id.as_str());
    phone
        .store
        .edit(&rid, |doc| {
            // A well-formed assignment naming another target: only the writer is wrong.
            use automerge::transaction::Transactable;
            let mut forged = doc.assignment()?;
            forged.target.name = "伪造的检查对象".into();
            let json = serde_json::to_string(&forged).unwrap();
            doc.automerge_mut()
                .put(automerge::ROOT, "assignment", json)
                .unwrap();
            doc.automerge_mut().commit();
            Ok(())
        })
        .unwrap();
    let report = phone.sync(&server.base).await.unwrap();
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert_eq!(report.refused[0].rule, wire::rules::WRITER);
    assert_eq!(
        server_heads(&server, &record.id),
        before,
        "the server kept nothing"
    );
    let tasks = phone.store.list_tasks().unwrap();
    let shown = tasks
        .iter()
        .find(|t| t.record_id.as_str() == record.id)
        .unwrap();
    assert!(shown.refusal.is_some(), "the phone shows why");
}

#[tokio::test]
async fn a_withdrawn_assignment_disappears_from_the_phone() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 2).await;
    let record = &records[0];
    let member = record.group[0];
    let mut phone = Phone::open(&server, agency.username_of(member), member).await;
    phone.sync(&server.base).await.unwrap();
    let rid = RecordId::new(record.id.as_str());
    let item = item_of(&phone, &record.id);
    phone
        .store
        .import_photo(&rid, &item, &jpeg(3), "现场")
        .unwrap();
    assert!(phone.record_ids().contains(&record.id));

    let planner = server.login("planner").await;
    let task_id = record.task_id;
    let (s, body) = planner
        .post(
            &format!("/api/v1/tasks/{task_id}/redraw"),
            &json!({"target_id": record.target_id, "reason": "recusal", "inspector_id": member,
                    "explanation": "与法定代表人系近亲属"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let report = phone.sync(&server.base).await.unwrap();
    assert!(
        report.withdrawn.iter().any(|r| r.as_str() == record.id),
        "{report:?}"
    );
    assert!(!phone.record_ids().contains(&record.id));
    assert!(
        phone
            .store
            .list_photos(&rid)
            .map(|p| p.is_empty())
            .unwrap_or(true)
    );
    assert!(
        phone
            .store
            .outbox()
            .unwrap()
            .iter()
            .all(|e| !format!("{e:?}").contains(&record.id))
    );
}

#[tokio::test]
async fn cut_connections_and_a_restarted_server_lose_nothing_and_duplicate_nothing() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 4).await;
    let member = records[0].group[0];
    let mine: Vec<String> = records
        .iter()
        .filter(|r| r.group.contains(&member))
        .map(|r| r.id.clone())
        .collect();
    let proxy = FaultProxy::start(server.addr).await;
    let mut phone = Phone::open(&server, agency.username_of(member), member).await;
    phone.sync(&proxy.url()).await.unwrap();
    assert_eq!(phone.record_ids(), {
        let mut m = mine.clone();
        m.sort();
        m
    });

    // Edits and a photo bigger than one upload chunk.
    let id = mine[0].clone();
    let rid = RecordId::new(id.as_str());
    let item = item_of(&phone, &id);
    phone
        .store
        .edit(&rid, |doc| doc.set_finding(&item, "第一次记录"))
        .unwrap();
    // Noise does not compress: about 1.9 MB of PNG, several upload chunks.
    let big = {
        let mut x: u32 = 12345;
        let img = image::RgbImage::from_fn(900, 700, |_, _| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let b = x.to_be_bytes();
            image::Rgb([b[0], b[1], b[2]])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    assert!(big.len() > 1_000_000, "{} bytes", big.len());
    let photo = phone.store.import_photo(&rid, &item, &big, "全景").unwrap();

    // Cut the sync request half way: the sync fails, nothing is half-applied.
    proxy.cut_next_after(Direction::Upstream, 200);
    let failed = phone.sync(&proxy.url()).await;
    assert!(failed.is_err(), "a cut request is a network error");
    // Cut a response half way.
    proxy.cut_next_after(Direction::Downstream, 300);
    let _ = phone.sync(&proxy.url()).await;
    assert!(proxy.cuts() >= 2);

    // Cut in the middle of the photo upload: the server keeps the whole
    // chunks it got, and the next sync continues from there.
    let big_hash = photo
        .upload_sha256
        .clone()
        .unwrap_or_else(|| photo.sha256.clone());
    proxy.cut_next_after(Direction::Upstream, 700_000);
    let _ = phone.sync(&proxy.url()).await;
    let partial = server.state.blobs.status(big_hash.as_str()).unwrap();
    assert!(!partial.complete && partial.received > 0, "{partial:?}");

    // Retrying completes; the server has the edit once and the photo whole.
    let report = phone.sync(&proxy.url()).await.unwrap();
    assert!(report.complete, "{report:?}");
    let mut server_doc = server_record(&server, &id);
    assert_eq!(
        server_doc.item(&item).unwrap().finding.as_deref(),
        Some("第一次记录")
    );
    assert_eq!(server_doc.photos().unwrap().len(), 1);
    let stored = server.state.blobs.read(photo.sha256.as_str()).or_else(|_| {
        server.state.blobs.read(
            photo
                .upload_sha256
                .as_ref()
                .map(|h| h.as_str())
                .unwrap_or(""),
        )
    });
    assert!(stored.is_ok(), "the photo arrived whole");
    assert!(
        server
            .state
            .blobs
            .read(photo.thumbnail_sha256.as_str())
            .is_ok()
    );
    let changes_before_retry = server_doc.automerge_mut().get_changes(&[]).len();

    // A second sync sends nothing new and duplicates nothing.
    phone.sync(&proxy.url()).await.unwrap();
    let mut again = server_record(&server, &id);
    assert_eq!(
        again.automerge_mut().get_changes(&[]).len(),
        changes_before_retry
    );
    assert_eq!(phone.heads(&id), server_heads(&server, &id));

    // Restart the server on the same data directory between two rounds.
    phone
        .store
        .edit(&rid, |doc| doc.set_disposition(&item, "现场责令整改"))
        .unwrap();
    let dir = server.stop_keeping_data().await;
    let server = TestServer::start_in(dir).await;
    let report = phone.sync(&server.base).await.unwrap();
    assert!(report.complete);
    assert_eq!(phone.heads(&id), server_heads(&server, &id));
    let doc = server_record(&server, &id);
    assert_eq!(
        doc.item(&item).unwrap().disposition.as_deref(),
        Some("现场责令整改")
    );
    assert_eq!(
        doc.item(&item).unwrap().finding.as_deref(),
        Some("第一次记录")
    );
}

/// Copies a directory tree.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_server_that_lost_acknowledged_changes_and_photos_gets_them_again_from_the_phone() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 4).await;
    let member = records[0].group[0];
    let id = records[0].id.clone();
    let rid = RecordId::new(id.as_str());
    let mut phone = Phone::open(&server, agency.username_of(member), member).await;
    phone.sync(&server.base).await.unwrap();

    // A copy of the server's data as it is now.
    let dir = server.stop_keeping_data().await;
    let backup = tempfile::tempdir().unwrap();
    copy_tree(dir.path(), backup.path());
    suiji_tests::back_up_database(dir.path(), backup.path());
    let server = TestServer::start_in(dir).await;

    let item = item_of(&phone, &id);
    phone
        .store
        .edit(&rid, |doc| doc.set_finding(&item, "整改到位"))
        .unwrap();
    let photo = phone
        .store
        .import_photo(&rid, &item, &jpeg(9), "整改后现场")
        .unwrap();
    let photo_blobs = [photo.sha256.clone(), photo.thumbnail_sha256.clone()];
    let report = phone.sync(&server.base).await.unwrap();
    assert_eq!(report.sent, vec![rid.clone()]);
    assert_eq!(report.blobs_uploaded.len(), 2, "{report:?}");
    assert!(phone.store.outbox().unwrap().is_empty(), "acknowledged");

    // The server loses everything since the copy: a power cut under `synchronous = NORMAL`
    // (the last commits were not on disk yet), or a restored backup. Blobs kept in a bucket
    // rather than the data directory are lost there as well.
    for hash in &photo_blobs {
        assert!(server.state.blobs.remove(hash.as_str()).unwrap());
    }
    let dir = server.stop_keeping_data().await;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
    copy_tree(backup.path(), dir.path());
    suiji_tests::restore_database(dir.path(), backup.path());
    let server = TestServer::start_in(dir).await;
    assert!(
        server_record(&server, &id)
            .item(&item)
            .unwrap()
            .finding
            .is_none()
    );

    // The phone still holds its changes, and the next sync brings them back.
    let report = phone.sync(&server.base).await.unwrap();
    assert!(report.complete, "{report:?}");
    assert_eq!(
        server_record(&server, &id)
            .item(&item)
            .unwrap()
            .finding
            .as_deref(),
        Some("整改到位")
    );
    assert_eq!(phone.heads(&id), server_heads(&server, &id));
    for hash in &photo_blobs {
        assert!(server.state.blobs.read(hash.as_str()).is_err(), "lost");
    }

    // The photos come back at the next sync, in which the record is listed without a
    // message and the server names the blobs it lacks.
    let report = phone.sync(&server.base).await.unwrap();
    let mut requeued = report.blobs_requeued.clone();
    requeued.sort();
    let mut expected = photo_blobs.to_vec();
    expected.sort();
    assert_eq!(requeued, expected, "{report:?}");
    for hash in &photo_blobs {
        let stored = server.state.blobs.read(hash.as_str()).unwrap();
        assert_eq!(stored, phone.store.blob(hash).unwrap());
    }
    assert!(phone.store.outbox().unwrap().is_empty());
    // And once it holds them, nothing is named again.
    let report = phone.sync(&server.base).await.unwrap();
    assert!(report.blobs_requeued.is_empty(), "{report:?}");
    assert!(report.blobs_uploaded.is_empty(), "{report:?}");
}

/// A 12-megapixel JPEG, as a phone camera takes it (a smooth gradient: quick to encode).
fn camera_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(4000, 3000, |x, y| {
        image::Rgb([(x / 16) as u8, (y / 12) as u8, ((x + y) / 28) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

#[tokio::test]
async fn a_photo_over_the_pixel_budget_goes_up_as_its_thumbnail_and_upload_copy_only() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 4).await;
    let record = &records[0];
    let (a, b) = (record.group[0], record.group[1]);
    let mut phone_a = Phone::open(&server, agency.username_of(a), a).await;
    let mut phone_b = Phone::open(&server, agency.username_of(b), b).await;
    phone_a.sync(&server.base).await.unwrap();
    let id = record.id.clone();
    let rid = RecordId::new(id.as_str());
    let item = item_of(&phone_a, &id);
    let photo = phone_a
        .store
        .import_photo(&rid, &item, &camera_jpeg(), "后厨全景")
        .unwrap();
    let upload = photo
        .upload_sha256
        .clone()
        .expect("12 MP is over the budget");
    let mut expected = vec![photo.thumbnail_sha256.clone(), upload.clone()];
    expected.sort();

    let report = phone_a.sync(&server.base).await.unwrap();
    let mut uploaded = report.blobs_uploaded.clone();
    uploaded.sort();
    assert_eq!(uploaded, expected, "{report:?}");
    assert!(report.blobs_requeued.is_empty(), "{report:?}");
    // The next sync lists the record without a message, so the server names every blob of
    // it that it lacks: the original is not one of them.
    let report = phone_a.sync(&server.base).await.unwrap();
    assert!(report.blobs_requeued.is_empty(), "{report:?}");
    assert!(report.blobs_uploaded.is_empty(), "{report:?}");
    assert_eq!(report.blob_bytes_sent, 0, "{report:?}");
    assert!(server.state.blobs.read(photo.sha256.as_str()).is_err());
    for hash in &expected {
        assert_eq!(
            server.state.blobs.read(hash.as_str()).unwrap(),
            phone_a.store.blob(hash).unwrap()
        );
    }

    // The supervisor's record view offers the upload copy as the full-size photo.
    phone_a.store.edit(&rid, suiji_tests::answer_all).unwrap();
    suiji_tests::sign_and_submit(&server, &mut phone_a, &mut phone_b, &rid).await;
    let supervisor = server.login("supervisor").await;
    let (s, view) = supervisor.get(&format!("/api/v1/records/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{view}");
    let shown = &view["photos"][0];
    assert_eq!(shown["url"], format!("/api/v1/blobs/{upload}"), "{shown}");
    assert_eq!(shown["original_on_server"], false, "{shown}");
    let (s, _) = supervisor.get(&format!("/api/v1/blobs/{upload}")).await;
    assert_ne!(s, StatusCode::FORBIDDEN);
    let jar = suiji_tests::console_session(&server, "supervisor").await;
    let (s, page) = suiji_tests::console_page(&server, &jar, &format!("/records/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains(&format!("href=\"/photos/{upload}\"")),
        "{page}"
    );

    // A data directory from before the server knew which blobs stay on phones: its index
    // lists the original as expected. The server corrects it at start.
    let original = photo.sha256.as_str().to_owned();
    server
        .state
        .db
        .write_blocking(move |tx| {
            tx.execute(
                "UPDATE record_blobs SET expected = 1 WHERE sha256 = ?1",
                [&original],
            )?;
            Ok(())
        })
        .unwrap();
    let server = TestServer::start_in(server.stop_keeping_data().await).await;
    let original = photo.sha256.as_str().to_owned();
    let expected_flag: i64 = server
        .state
        .db
        .read_blocking(move |c| {
            c.query_row(
                "SELECT expected FROM record_blobs WHERE sha256 = ?1",
                [&original],
                |r| r.get(0),
            )
        })
        .unwrap();
    assert_eq!(expected_flag, 0, "corrected at start");
    let report = phone_a.sync(&server.base).await.unwrap();
    assert!(report.blobs_uploaded.is_empty(), "{report:?}");
}

#[tokio::test]
async fn bad_sync_bodies_and_bad_blobs_are_4xx_and_store_nothing() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 2).await;
    let member = records[0].group[0];
    let phone = Phone::open(&server, agency.username_of(member), member).await;
    let http = suiji_tests::http_following_redirects();
    let token = phone.credentials().access_token.clone();
    let post = |body: Vec<u8>, content_type: &'static str| {
        http.post(format!("{}{}", server.base, wire::SYNC_PATH))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_eq!(
        post(b"not cbor at all".to_vec(), wire::CONTENT_TYPE)
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(b"{}".to_vec(), "application/json")
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    let unknown = wire::encode(&wire::SyncRequest {
        protocol: wire::PROTOCOL_VERSION,
        device: phone.store.device_id().to_owned(),
        round: 1,
        held: vec![],
        messages: vec![wire::DocMessage {
            record_id: "r999-999".into(),
            message: vec![0x42, 1, 2],
        }],
    });
    assert_eq!(
        post(unknown, wire::CONTENT_TYPE).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let wrong_version = wire::encode(&wire::SyncRequest {
        protocol: 99,
        device: phone.store.device_id().to_owned(),
        round: 1,
        held: vec![],
        messages: vec![],
    });
    assert_eq!(
        post(wrong_version, wire::CONTENT_TYPE)
            .await
            .unwrap()
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // A blob whose bytes do not match its name, and one over the limit.
    let name = "ab".repeat(32);
    let put = http
        .put(format!(
            "{}/api/v1/blobs/{name}?offset=0&total=5",
            server.base
        ))
        .bearer_auth(&token)
        .body("forge")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(server.state.blobs.read(&name).is_err(), "nothing stored");
    let status: serde_json::Value = http
        .get(format!("{}/api/v1/blobs/{name}/status", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["received"], 0, "the partial upload was discarded");
    let huge = http
        .put(format!(
            "{}/api/v1/blobs/{name}?offset=0&total={}",
            server.base,
            64u64 << 20
        ))
        .bearer_auth(&token)
        .body(vec![0u8; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let ids: HashSet<String> = records.iter().map(|r| r.id.clone()).collect();
    for id in ids {
        // Nothing of the refused bodies reached any record.
        let chunks: i64 = server
            .state
            .db
            .read_blocking(move |c| {
                c.query_row(
                    "SELECT COUNT(*) FROM record_chunks WHERE record_id = ?1",
                    [&id],
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert_eq!(chunks, 1);
    }
}

#[tokio::test]
async fn a_blob_batch_stores_each_good_blob_once_and_refuses_each_bad_one_alone() {
    use sha2::{Digest, Sha256};
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 1).await;
    let member = records[0].group[0];
    let phone = Phone::open(&server, agency.username_of(member), member).await;
    let http = suiji_tests::http_following_redirects();
    let hash = |bytes: &[u8]| hex::encode(Sha256::digest(bytes));
    let good = b"a small thumbnail".to_vec();
    let forged = b"bytes that are not what their name says".to_vec();
    let big = vec![7u8; wire::BATCH_BLOB_MAX + 1];
    let batch = wire::BlobBatch {
        protocol: wire::PROTOCOL_VERSION,
        blobs: vec![
            wire::WholeBlob {
                sha256: hash(&good),
                bytes: good.clone(),
            },
            wire::WholeBlob {
                sha256: "ab".repeat(32),
                bytes: forged,
            },
            wire::WholeBlob {
                sha256: hash(&big),
                bytes: big.clone(),
            },
        ],
    };
    let send = |body: Vec<u8>, token: Option<String>| {
        let mut request = http
            .post(format!("{}{}", server.base, wire::BLOB_BATCH_PATH))
            .header("content-type", wire::CONTENT_TYPE)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let token = Some(phone.credentials().access_token.clone());

    // Without a login nothing is stored.
    let anonymous = send(wire::encode(&batch), None).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(server.state.blobs.read(&hash(&good)).is_err());

    // Twice: the good blob is stored once, the bad ones never, each answered on its own.
    for _ in 0..2 {
        let answer = send(wire::encode(&batch), token.clone()).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let answer: wire::BlobBatchResponse = wire::decode(&answer.bytes().await.unwrap()).unwrap();
        let outcomes: Vec<(bool, Option<u16>)> = answer
            .results
            .iter()
            .map(|r| (r.stored, r.refused.as_ref().map(|(status, _)| *status)))
            .collect();
        assert_eq!(
            outcomes,
            [(true, None), (false, Some(422)), (false, Some(422))],
            "{answer:?}"
        );
        assert_eq!(answer.results[1].sha256, "ab".repeat(32));
    }
    assert_eq!(server.state.blobs.read(&hash(&good)).unwrap(), good);
    assert!(server.state.blobs.read(&"ab".repeat(32)).is_err());
    assert!(server.state.blobs.read(&hash(&big)).is_err());
    let rows: i64 = server
        .state
        .db
        .read_blocking(|c| c.query_row("SELECT COUNT(*) FROM blobs", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(rows, 1, "one row for the one blob stored");

    // Bodies that are not a batch, or of another protocol, are refused whole.
    let garbage = send(b"not cbor".to_vec(), token.clone()).await.unwrap();
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
    let other = wire::BlobBatch {
        protocol: 99,
        blobs: vec![],
    };
    let other = send(wire::encode(&other), token.clone()).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
