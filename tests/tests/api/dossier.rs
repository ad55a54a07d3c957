//! A task's dossier (`GET /api/v1/tasks/{id}/dossier.zip`) of a task walked by two real
//! phones with real photos: who may have it, what it holds, and that `dossier verify`
//! (the function the CLI runs) passes it and names the one file whose one byte changed.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};

use reqwest::StatusCode;
use serde_json::{Value, json};
use suiji_mobile_core::RecordId;
use suiji_server::dossier::verify::verify;
use suiji_tests::{Client, Phone, TestServer, drawn_task, publish_drawn_list, sign_and_submit};

/// A small real JPEG, distinct per seed.
fn jpeg(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 ^ seed, y as u8, seed]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// A 12-megapixel JPEG, over the phone's pixel budget: the server gets its upload copy only.
fn camera_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(4000, 3000, |x, y| {
        image::Rgb([(x / 16) as u8, (y / 12) as u8, ((x + y) / 28) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// The dossier as `client` downloads it: the status and the body's bytes.
async fn download(client: &Client, task_id: i64) -> (StatusCode, Vec<u8>) {
    let response = client
        .raw(
            reqwest::Method::GET,
            &format!("/api/v1/tasks/{task_id}/dossier.zip"),
        )
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.bytes().await.unwrap().to_vec())
}

/// Every file of a ZIP, by name, in ZIP order kept apart.
fn files_of(zip: &[u8]) -> (Vec<String>, BTreeMap<String, Vec<u8>>) {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    let mut order = Vec::new();
    let mut files = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().unwrap().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        order.push(name.clone());
        files.insert(name, bytes);
    }
    (order, files)
}

/// The ZIP written again with `name`'s content replaced by `content` (a forger's rewrite:
/// every CRC and size in the ZIP is right).
fn rewritten(zip: &[u8], name: &str, content: &[u8]) -> Vec<u8> {
    let (order, files) = files_of(zip);
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for file in &order {
        out.start_file(file.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        let bytes = if file == name { content } else { &files[file] };
        out.write_all(bytes).unwrap();
    }
    out.finish().unwrap().into_inner()
}

/// `bytes` with the byte in the middle changed.
fn one_byte_changed(bytes: &[u8]) -> Vec<u8> {
    let mut changed = bytes.to_vec();
    let at = changed.len() / 2;
    changed[at] ^= 0x01;
    changed
}

#[tokio::test]
async fn a_walked_task_dossier_holds_its_photos_and_verifies_and_any_changed_byte_names_its_file() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 2).await;
    let task_id = records[0].task_id;
    let admin = server.login("admin").await;
    let planner = server.login("planner").await;
    let supervisor = server.login("supervisor").await;

    // Refusals before anything is walked: anonymous 401, an inspector of the task 403
    // (roles first, so an unknown task is 403 for them too), an unknown task 404, a
    // supervisor before the drawn list is public 403.
    let (status, _) = download(&Client::anonymous(&server.base), task_id).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let member = records[0].group[0];
    let inspector = server.login(agency.username_of(member)).await;
    for task in [task_id, 99_999] {
        let (status, body) = download(&inspector, task).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    let (status, _) = download(&admin, 99_999).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = download(&supervisor, task_id).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        String::from_utf8_lossy(&body).contains("drawn list is published"),
        "{}",
        String::from_utf8_lossy(&body)
    );

    // Both records are walked by their two phones; the first gets a small photo (the
    // original goes up) and a camera photo (only its upload copy goes up).
    let mut originals = Vec::new();
    let mut upload_copies = Vec::new();
    for (n, record) in records.iter().enumerate() {
        let id = RecordId::new(record.id.as_str());
        let (m1, m2) = (record.group[0], record.group[1]);
        let mut a = Phone::open(&server, agency.username_of(m1), m1).await;
        let mut b = Phone::open(&server, agency.username_of(m2), m2).await;
        a.sync(&server.base).await.unwrap();
        b.sync(&server.base).await.unwrap();
        a.store.edit(&id, suiji_tests::answer_all).unwrap();
        if n == 0 {
            let item = a.store.record(&id).unwrap().assignment().unwrap().items[0]
                .code
                .clone();
            let small = a
                .store
                .import_photo(&id, &item, &jpeg(7), "门头照片")
                .unwrap();
            originals.push(small.sha256.to_string());
            let large = a
                .store
                .import_photo(&id, &item, &camera_jpeg(), "现场全景")
                .unwrap();
            upload_copies.push(large.upload_sha256.clone().unwrap().to_string());
            originals.push(large.sha256.to_string());
        }
        sign_and_submit(&server, &mut a, &mut b, &id).await;
    }

    // Submitted but the list still confidential: the supervisor still waits.
    let (status, _) = download(&supervisor, task_id).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    publish_drawn_list(&planner, task_id).await;
    let (status, by_supervisor) = download(&supervisor, task_id).await;
    assert_eq!(status, StatusCode::OK);
    let (status, zip) = download(&admin, task_id).await;
    assert_eq!(status, StatusCode::OK);

    let verified = verify(Cursor::new(&zip)).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(verified.draws, 1);
    assert_eq!(verified.records, records.len());
    assert_eq!(
        verified.signatures,
        2 * records.len(),
        "two inspectors signed each record"
    );
    assert_eq!(verified.unsigned_records, 0);
    assert!(verify(Cursor::new(&by_supervisor)).is_ok());

    let (order, files) = files_of(&zip);
    assert_eq!(order.last().map(String::as_str), Some("manifest.json"));
    for record in &records {
        for file in ["document.automerge", "record.json"] {
            assert!(files.contains_key(&format!("records/{}/{file}", record.id)));
        }
        let view: Value =
            serde_json::from_slice(&files[&format!("records/{}/record.json", record.id)]).unwrap();
        assert_eq!(view["id"], json!(record.id));
        assert_eq!(view["review"]["state"], json!("submitted"));
    }
    // The small photo's original; the camera photo's upload copy, its original being on
    // the phone only (and so not listed as missing: the copy stands for it).
    let small = &originals[0];
    assert!(
        files.contains_key(&format!("photos/{small}.jpg")),
        "{order:?}"
    );
    let copy = &upload_copies[0];
    assert!(
        files.contains_key(&format!("photos/{copy}.jpg")),
        "{order:?}"
    );
    assert!(!files.contains_key(&format!("photos/{}.jpg", originals[1])));
    assert!(verified.manifest.missing_blobs.is_empty());
    assert_eq!(
        files[&format!("photos/{small}.jpg")],
        jpeg(7),
        "the photo's bytes as taken"
    );

    // The draw record byte for byte as the public route serves it.
    let draw_name = order.iter().find(|n| n.starts_with("draws/")).unwrap();
    let draw_id = draw_name
        .trim_start_matches("draws/")
        .trim_end_matches(".json");
    let public = Client::anonymous(&server.base)
        .raw(
            reqwest::Method::GET,
            &format!("/api/v1/public/draws/{draw_id}"),
        )
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(files[draw_name], public.to_vec());
    // The audit entries of the task: its creation, commitment, draw and publication at least.
    let audit: Vec<Value> = serde_json::from_slice(&files["audit.json"]).unwrap();
    for action in ["task.create", "draw.execute", "draw.publish"] {
        assert!(
            audit.iter().any(|e| e["action"] == json!(action)),
            "{action} in {audit:?}"
        );
    }

    // One byte changed in any one file (the ZIP written again around it) fails, naming it.
    for name in &order {
        let tampered = rewritten(&zip, name, &one_byte_changed(&files[name]));
        let failure = verify(Cursor::new(&tampered)).expect_err(name);
        assert_eq!(&failure.file, name, "{failure}");
    }
    // A file added, or one taken away, is named too.
    let mut extra = zip::ZipWriter::new_append(Cursor::new(zip.clone())).unwrap();
    extra
        .start_file("notes.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    extra.write_all(b"added later").unwrap();
    let extra = extra.finish().unwrap().into_inner();
    assert_eq!(verify(Cursor::new(&extra)).unwrap_err().file, "notes.txt");
}

#[tokio::test]
async fn a_forger_who_rewrites_the_manifest_is_caught_by_the_signatures_and_the_draw() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 2).await;
    let record = &records[0];
    let id = RecordId::new(record.id.as_str());
    let (m1, m2) = (record.group[0], record.group[1]);
    let mut a = Phone::open(&server, agency.username_of(m1), m1).await;
    let mut b = Phone::open(&server, agency.username_of(m2), m2).await;
    a.sync(&server.base).await.unwrap();
    b.sync(&server.base).await.unwrap();
    a.store.edit(&id, suiji_tests::answer_all).unwrap();
    sign_and_submit(&server, &mut a, &mut b, &id).await;
    let (status, zip) = download(&server.login("planner").await, record.task_id).await;
    assert_eq!(status, StatusCode::OK);
    let (_, files) = files_of(&zip);

    // Rewrites `name` and then the manifest to match, digest and all.
    let forge = |name: &str, content: Vec<u8>| {
        let manifest_bytes = &files["manifest.json"];
        let mut manifest: suiji_server::dossier::Manifest =
            serde_json::from_slice(manifest_bytes).unwrap();
        let entry = manifest.files.iter_mut().find(|e| e.name == name).unwrap();
        entry.sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&content));
        entry.size = content.len() as u64;
        manifest.digest = manifest.compute_digest().unwrap();
        let once = rewritten(&zip, name, &content);
        rewritten(&once, "manifest.json", &manifest.to_bytes().unwrap())
    };

    // A finding changed after both signed.
    let document = format!("records/{}/document.automerge", record.id);
    let mut doc = suiji_mobile_core::RecordDoc::load(&files[&document]).unwrap();
    doc.set_actor(a.store.actor().clone());
    {
        use automerge::ReadDoc;
        use automerge::transaction::Transactable;
        let am = doc.automerge_mut();
        let (_, items) = am.get(automerge::ROOT, "items").unwrap().unwrap();
        let item = am.keys(&items).next().unwrap();
        let (_, entry) = am.get(&items, &item).unwrap().unwrap();
        am.put(&entry, "finding", "改写后的检查情况").unwrap();
        am.commit();
    }
    let failure = verify(Cursor::new(forge(&document, doc.save()))).unwrap_err();
    assert_eq!(failure.file, document);
    assert!(failure.reason.contains("changed after"), "{failure}");

    // A drawn group swapped in the draw record.
    let draw_name = files.keys().find(|n| n.starts_with("draws/")).unwrap();
    let mut draw: Value = serde_json::from_slice(&files[draw_name]).unwrap();
    let group = draw["result"]["targets"][0]["group"].clone();
    draw["result"]["targets"][0]["group"] = json!([group[1], group[0]]);
    let failure = verify(Cursor::new(forge(draw_name, draw.to_string().into_bytes()))).unwrap_err();
    assert_eq!(&failure.file, draw_name, "{failure}");

    // Another key in place of an inspector's.
    let mut keys: Vec<Value> = serde_json::from_slice(&files["signing-keys.json"]).unwrap();
    keys[0]["public_key"] =
        json!("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    let failure = verify(Cursor::new(forge(
        "signing-keys.json",
        serde_json::to_vec(&keys).unwrap(),
    )))
    .unwrap_err();
    assert!(failure.file.starts_with("records/"), "{failure}");
    assert!(failure.reason.contains("inspector"), "{failure}");
}

/// A noisy JPEG of most of a megabyte, distinct per seed.
fn large_jpeg(seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let img = image::RgbImage::from_fn(1200, 900, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        image::Rgb([
            (x / 7) as u8 ^ state as u8,
            (y / 5) as u8,
            (state >> 8) as u8,
        ])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// Whether a reader's snapshot is held open: on SQLite it holds back a full checkpoint of the
/// server's WAL; on PostgreSQL one of the server's connections (each test server's carry an
/// application name of their own) sits idle inside a transaction.
fn snapshot_held(server: &TestServer) -> bool {
    if server.state.db.is_postgres() {
        return server
            .state
            .db
            .read_blocking(|c| {
                c.query_row(
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                     WHERE application_name = current_setting('application_name')
                       AND pid <> pg_backend_pid() AND state = 'idle in transaction')",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap();
    }
    let conn = rusqlite::Connection::open(server.state.config.database_path()).unwrap();
    let (busy, _, _): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    busy != 0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_mid_download_stops_the_build_and_its_snapshot_is_released() {
    use suiji_mobile_core::record::{PhotoMeta, inspector_actor};
    use suiji_mobile_core::sync::wire::WholeBlob;
    use suiji_mobile_core::{BlobHash, InspectorId};
    let server = TestServer::start().await;
    let (_agency, records) = drawn_task(&server, 3, 2).await;
    let record = records[0].clone();
    // Thirty photos of most of a megabyte each: far more than the channel and the socket buffers
    // hold, so the build waits on the client.
    let photos: Vec<Vec<u8>> = (0..30).map(large_jpeg).collect();
    let whole: Vec<WholeBlob> = photos
        .iter()
        .map(|bytes| WholeBlob {
            sha256: BlobHash::of(bytes).as_str().to_owned(),
            bytes: bytes.clone(),
        })
        .collect();
    let stored = server.state.blobs.put_many(&whole, usize::MAX).unwrap();
    assert!(stored.iter().all(|s| s.is_ok()));
    server
        .state
        .db
        .write_blocking(|tx| {
            let lead = InspectorId::new(record.group[0].to_string());
            let mut doc = suiji_server::draw::records::load_document(tx, &record.id)?;
            doc.set_actor(inspector_actor(&lead, &[0xab]));
            let item = doc.assignment().unwrap().items[0].code.clone();
            for bytes in &photos {
                doc.attach_photo(&PhotoMeta {
                    sha256: BlobHash::of(bytes),
                    size: bytes.len() as u64,
                    mime: "image/jpeg".into(),
                    width: 1200,
                    height: 900,
                    captured_at: None,
                    gps: None,
                    item: item.clone(),
                    caption: "现场".into(),
                    taken_by: lead.clone(),
                    imported_at: chrono::Utc::now(),
                    thumbnail_sha256: BlobHash::of(b"thumbnail"),
                    upload_sha256: None,
                })
                .unwrap();
            }
            suiji_server::draw::records::append_changes(tx, &record.id, &mut doc)
        })
        .unwrap();

    let planner = server.login("planner").await;
    let mut response = planner
        .raw(
            reqwest::Method::GET,
            &format!("/api/v1/tasks/{}/dossier.zip", record.task_id),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.chunk().await.unwrap().is_some());
    // A write after the build's snapshot began: the snapshot holds the checkpoint back.
    let (status, body) = planner
        .post(
            "/api/v1/departments",
            &json!({"code": "WJW", "name": "卫生健康委员会"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        snapshot_held(&server),
        "the build reads one snapshot while it waits on the client"
    );
    drop(response);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while snapshot_held(&server) {
        assert!(
            std::time::Instant::now() < deadline,
            "the build still holds its snapshot after the client left"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_redraw_in_the_dossier_is_checked_against_the_initial_draw() {
    let server = TestServer::start().await;
    let (_agency, records) = drawn_task(&server, 4, 2).await;
    let record = &records[0];
    let planner = server.login("planner").await;
    let (status, redraw) = planner
        .post(
            &format!("/api/v1/tasks/{}/redraw", record.task_id),
            &json!({"target_id": record.target_id, "reason": "recusal",
                    "inspector_id": record.group[0], "explanation": "配偶在该企业任职"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{redraw}");
    let (status, zip) = download(&planner, record.task_id).await;
    assert_eq!(status, StatusCode::OK);
    let verified = verify(Cursor::new(&zip)).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(verified.draws, 2);
    assert_eq!(verified.unsigned_records, records.len());

    // Without the initial draw (both files and the manifest rewritten to match), the redraw
    // cannot be checked and is named.
    let (order, files) = files_of(&zip);
    let initial = format!("draws/{}.json", redraw["parent_id"]);
    let redrawn = format!("draws/{}.json", redraw["id"]);
    let mut manifest: suiji_server::dossier::Manifest =
        serde_json::from_slice(&files["manifest.json"]).unwrap();
    manifest.files.retain(|e| e.name != initial);
    manifest.digest = manifest.compute_digest().unwrap();
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for name in order.iter().filter(|n| **n != initial) {
        out.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        if name == "manifest.json" {
            out.write_all(&manifest.to_bytes().unwrap()).unwrap();
        } else {
            out.write_all(&files[name]).unwrap();
        }
    }
    let without = out.finish().unwrap().into_inner();
    let failure = verify(Cursor::new(&without)).unwrap_err();
    assert_eq!(failure.file, redrawn, "{failure}");
}

#[tokio::test]
async fn the_console_task_page_links_the_dossier_and_downloads_it_for_who_may_export_it() {
    let server = TestServer::start().await;
    let (_, records) = drawn_task(&server, 3, 2).await;
    let task_id = records[0].task_id;
    let get = |jar: String| {
        let url = format!("{}/tasks/{task_id}/dossier.zip", server.base);
        async move {
            suiji_tests::http()
                .get(url)
                .header(reqwest::header::COOKIE, jar)
                .send()
                .await
                .unwrap()
        }
    };
    let admin = suiji_tests::console_session(&server, "admin").await;
    let (_, page) = suiji_tests::console_page(&server, &admin, &format!("/tasks/{task_id}")).await;
    assert!(
        page.contains(&format!("href=\"/tasks/{task_id}/dossier.zip\"")),
        "{page}"
    );
    let response = get(admin).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/zip");
    let zip = response.bytes().await.unwrap().to_vec();
    let verified = verify(Cursor::new(&zip)).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(verified.records, records.len());
    // A supervisor before any record is submitted, and an inspector, are refused.
    for who in ["supervisor", "inspector"] {
        let jar = suiji_tests::console_session(&server, who).await;
        let response = get(jar).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{who}");
    }
}
