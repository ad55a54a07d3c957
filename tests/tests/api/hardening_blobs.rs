//! Blobs and imports under load (issue 16): blob read rights follow what the server recorded
//! (who uploaded the bytes, whose phone sent the reference), downloads carry `nosniff` and a
//! `Content-Disposition`, a blob file left without its row by a crash is repaired instead of
//! re-queued forever, and CSV imports are bounded (concurrency, error list) yet still land whole.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use suiji_mobile_core::RecordId;
use suiji_tests::{
    Phone, TestServer, answer_all, console_session, csrf_in, drawn_task, http, sign_and_submit,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn jpeg(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 ^ seed, y as u8, seed]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// A PNG of noise, which does not compress: over a megabyte, uploaded in chunks.
fn noise_png() -> Vec<u8> {
    let mut x: u32 = 4242;
    let img = image::RgbImage::from_fn(900, 700, |_, _| {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let b = x.to_be_bytes();
        image::Rgb([b[0], b[1], b[2]])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `GET /api/v1/blobs/{hash}` with a bearer token.
async fn download(server: &TestServer, token: &str, hash: &str) -> reqwest::Response {
    suiji_tests::http_following_redirects()
        .get(format!("{}/api/v1/blobs/{hash}", server.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_photo_hash_copied_into_another_groups_record_gets_403_while_partner_and_supervisor_read_it()
 {
    let server = TestServer::start().await;
    // Four food-safety inspectors, two records: load spread evenly gives two groups apart.
    let (agency, records) = drawn_task(&server, 4, 2).await;
    // The draw may give more records than asked for and pairs that share an inspector:
    // take the first two records whose groups are apart.
    let (own, other) = records
        .iter()
        .flat_map(|a| records.iter().map(move |b| (a, b)))
        .find(|(a, b)| a.group.iter().all(|i| !b.group.contains(i)))
        .unwrap_or_else(|| panic!("two groups apart: {records:?}"));
    let rid = RecordId::new(own.id.as_str());
    let (ia, ib) = (own.group[0], own.group[1]);
    let mut a = Phone::open(&server, agency.username_of(ia), ia).await;
    let mut b = Phone::open(&server, agency.username_of(ib), ib).await;
    a.sync(&server.base).await.unwrap();
    b.sync(&server.base).await.unwrap();
    a.store.edit(&rid, answer_all).unwrap();
    let item = a.store.record(&rid).unwrap().assignment().unwrap().items[0]
        .code
        .clone();
    let photo = a
        .store
        .import_photo(&rid, &item, &jpeg(11), "门头照片")
        .unwrap();
    let report = a.sync(&server.base).await.unwrap();
    assert!(report.blobs_uploaded.contains(&photo.sha256), "{report:?}");
    let hash = photo.sha256.as_str().to_owned();

    // An inspector of the other group: refused, then the hash copied into their own record.
    let ix = other.group[0];
    let mut x = Phone::open(&server, agency.username_of(ix), ix).await;
    x.sync(&server.base).await.unwrap();
    let denied = download(&server, &x.credentials().access_token, &hash).await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let xid = RecordId::new(other.id.as_str());
    let mut borrowed = photo.clone();
    borrowed.taken_by = x.store.inspector_id().clone();
    borrowed.caption = "借用的照片".into();
    x.store
        .edit(&xid, |doc| doc.attach_photo(&borrowed))
        .unwrap();
    let report = x.sync(&server.base).await.unwrap();
    assert!(
        report.sent.contains(&xid),
        "the server took the reference: {report:?}"
    );
    let borrowing = download(&server, &x.credentials().access_token, &hash).await;
    assert_eq!(
        borrowing.status(),
        StatusCode::FORBIDDEN,
        "a copied hash grants nothing"
    );

    // The partner reads it at once; the supervisor once the record is submitted.
    let partner = download(&server, &b.credentials().access_token, &hash).await;
    assert_eq!(partner.status(), StatusCode::OK);
    assert_eq!(
        partner.bytes().await.unwrap(),
        a.store.blob(&photo.sha256).unwrap()
    );
    let supervisor = server.login("supervisor").await;
    let token = supervisor.token.clone().unwrap();
    assert_eq!(
        download(&server, &token, &hash).await.status(),
        StatusCode::FORBIDDEN,
        "not submitted yet"
    );
    sign_and_submit(&server, &mut a, &mut b, &rid).await;
    assert_eq!(
        download(&server, &token, &hash).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn blob_downloads_say_nosniff_and_offer_images_inline_and_anything_else_as_an_attachment() {
    let server = TestServer::start().await;
    let admin = server.login("admin").await;
    let token = admin.token.clone().unwrap();
    let cookies = console_session(&server, "admin").await;
    let photo = jpeg(3);
    let page = b"<html><script>alert(1)</script></html>".to_vec();
    for bytes in [&photo, &page] {
        let (s, body) = admin
            .send(
                admin
                    .raw(
                        reqwest::Method::PUT,
                        &format!(
                            "/api/v1/blobs/{}?offset=0&total={}",
                            sha(bytes),
                            bytes.len()
                        ),
                    )
                    .body(bytes.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    for (bytes, kind, disposition) in [
        (
            &photo,
            "image/jpeg",
            format!("inline; filename=\"{}.jpg\"", sha(&photo)),
        ),
        (
            &page,
            "application/octet-stream",
            format!("attachment; filename=\"{}.bin\"", sha(&page)),
        ),
    ] {
        let api = download(&server, &token, &sha(bytes)).await;
        // The console's photo links answer the same bytes the same way.
        let console = http()
            .get(format!("{}/photos/{}", server.base, sha(bytes)))
            .header(reqwest::header::COOKIE, &cookies)
            .send()
            .await
            .unwrap();
        for (answer, path) in [(api, "api"), (console, "console")] {
            assert_eq!(
                answer.status(),
                StatusCode::OK,
                "{path}: the uploader reads its blob"
            );
            let headers = answer.headers();
            assert_eq!(headers["content-type"], kind, "{path}");
            assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(
                headers["content-disposition"],
                disposition.as_str(),
                "{path}"
            );
            assert_eq!(answer.bytes().await.unwrap(), bytes.as_slice(), "{path}");
        }
    }
}

/// Removes blob `hash`'s row, as a crash between moving its file into place and writing the
/// row leaves it.
fn drop_row(server: &TestServer, hash: &str) {
    let hash = hash.to_owned();
    server
        .state
        .db
        .write_blocking(move |tx| {
            tx.execute("DELETE FROM blobs WHERE sha256 = ?1", [&hash])?;
            Ok(())
        })
        .unwrap();
}

fn row_size(server: &TestServer, hash: &str) -> Option<i64> {
    let hash = hash.to_owned();
    server
        .state
        .db
        .read_blocking(move |c| {
            use suiji_server::store::sql::OptionalExtension;
            c.query_row("SELECT size FROM blobs WHERE sha256 = ?1", [&hash], |r| {
                r.get(0)
            })
            .optional()
        })
        .unwrap()
}

#[tokio::test]
async fn a_blob_file_left_without_its_row_is_repaired_and_nothing_is_uploaded_again() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 1).await;
    let record = &records[0];
    let member = record.group[0];
    let mut phone = Phone::open(&server, agency.username_of(member), member).await;
    phone.sync(&server.base).await.unwrap();
    let rid = RecordId::new(record.id.as_str());
    let item = phone
        .store
        .record(&rid)
        .unwrap()
        .assignment()
        .unwrap()
        .items[0]
        .code
        .clone();
    let photo = phone
        .store
        .import_photo(&rid, &item, &noise_png(), "全景")
        .unwrap();
    let report = phone.sync(&server.base).await.unwrap();
    assert!(
        report.complete && report.blobs_failed.is_empty(),
        "{report:?}"
    );
    // The blob that went up in chunks (over the batch limit).
    let chunked = [Some(&photo.sha256), photo.upload_sha256.as_ref()]
        .into_iter()
        .flatten()
        .map(|h| h.as_str().to_owned())
        .find(|h| {
            server.state.blobs.status(h).unwrap().received
                > suiji_mobile_core::sync::wire::BATCH_BLOB_MAX as u64
        })
        .expect("a chunked blob");
    let size = row_size(&server, &chunked).expect("its row");

    // The crash window, found by a status query: the phone is told the blob is missing once,
    // finds it complete, sends no byte, and the next sync has nothing to do.
    drop_row(&server, &chunked);
    let first = phone.sync(&server.base).await.unwrap();
    assert_eq!(first.blob_bytes_sent, 0, "{first:?}");
    assert_eq!(row_size(&server, &chunked), Some(size), "the row is back");
    let second = phone.sync(&server.base).await.unwrap();
    assert!(second.blobs_requeued.is_empty(), "{second:?}");
    assert!(second.blobs_uploaded.is_empty(), "{second:?}");

    // The crash window across a restart: repaired at start, before any phone asks.
    drop_row(&server, &chunked);
    let dir = server.stop_keeping_data().await;
    let server = TestServer::start_in(dir).await;
    assert_eq!(
        row_size(&server, &chunked),
        Some(size),
        "reconciled at start"
    );
    let after = phone.sync(&server.base).await.unwrap();
    assert!(after.complete, "{after:?}");
    assert!(after.blobs_requeued.is_empty(), "{after:?}");
    assert!(after.blobs_uploaded.is_empty(), "{after:?}");
    assert_eq!(after.blob_bytes_sent, 0, "{after:?}");
    // The partner still reads it: the uploader was recorded before the file was in place.
    let partner = record.group[1];
    let other = Phone::open(&server, agency.username_of(partner), partner).await;
    let answer = download(&server, &other.credentials().access_token, &chunked).await;
    assert_eq!(answer.status(), StatusCode::OK);
}

const HEADER: &str =
    "uscc,name,target_type,industry,region,address,legal_rep,reg_status,risk_class\n";

/// A CSV file of `rows` targets from serial `first`, each of risk class `risk`.
fn targets_csv(first: u32, rows: u32, risk: &str) -> String {
    let mut csv = String::from(HEADER);
    for i in first..first + rows {
        let code = suiji_server::uscc::generate('9', '1', "330106", i);
        csv += &format!(
            "{code},杭州导入{i}有限公司,enterprise,餐饮业,西湖区,文三路{i}号,张三,存续,{risk}\n"
        );
    }
    csv
}

#[tokio::test]
async fn an_import_of_many_bad_rows_lists_the_first_hundred_and_counts_the_rest() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let (s, body) = planner
        .post_bytes(
            "/api/v1/targets/import",
            "text/csv",
            targets_csv(1, 1_000, "E").into_bytes(),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["rows"], 1_000);
    assert_eq!(body["committed"], false);
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 100);
    assert_eq!(errors[0]["line"], 2);
    assert_eq!(errors[99]["line"], 101);
    assert_eq!(body["more_errors"], 900);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("1000 of 1000 rows are bad"),
        "{message}"
    );
}

/// An import sent by hand with `Expect: 100-continue`: the server answers `100 Continue` only
/// once the handler reads the body, that is once the import holds its permit.
struct HeldImport {
    stream: TcpStream,
    body: Vec<u8>,
}

impl HeldImport {
    async fn start(server: &TestServer, token: &str, body: Vec<u8>) -> HeldImport {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST /api/v1/targets/import HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: text/csv\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\
             Connection: close\r\n\r\n",
            server.addr,
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
                .await
                .expect("the server answers the expectation")
                .unwrap();
            assert_eq!(
                read,
                1,
                "connection closed: {}",
                String::from_utf8_lossy(&answer)
            );
            answer.push(byte[0]);
        }
        assert!(
            answer.starts_with(b"HTTP/1.1 100"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        HeldImport { stream, body }
    }

    /// Imports of 3 targets each (rows 1–3, 101–103, …) holding every place there is.
    async fn every_place(server: &TestServer, token: &str) -> Vec<HeldImport> {
        let mut held = Vec::new();
        for n in 0..suiji_server::registry::import::MAX_CONCURRENT_IMPORTS as u32 {
            let body = targets_csv(100 * n + 1, 3, "B").into_bytes();
            held.push(HeldImport::start(server, token, body).await);
        }
        held
    }

    /// Sends the body and reads the whole answer.
    async fn finish(mut self) -> String {
        self.stream.write_all(&self.body).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(10),
            self.stream.read_to_end(&mut answer),
        )
        .await
        .expect("the import is answered")
        .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }
}

#[tokio::test]
async fn imports_beyond_the_bound_are_answered_503_with_retry_after_and_store_nothing() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let token = planner.token.clone().unwrap();
    let bound = suiji_server::registry::import::MAX_CONCURRENT_IMPORTS as u32;
    let mut held = HeldImport::every_place(&server, &token).await;

    let refused = planner
        .raw(reqwest::Method::POST, "/api/v1/targets/import")
        .header("content-type", "text/csv")
        .body(targets_csv(9_001, 3, "B"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "busy", "{body}");

    // One held import ends (its permit with it): the next one is taken, and every import that
    // was let in landed.
    let answer = held.pop().unwrap().finish().await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (s, body) = planner
        .post_bytes(
            "/api/v1/targets/import",
            "text/csv",
            targets_csv(9_001, 3, "B").into_bytes(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    for import in held {
        let answer = import.finish().await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let (s, list) = planner.get("/api/v1/targets?per_page=1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["total"], 3 * (bound + 1));
}

#[tokio::test]
async fn a_refused_import_is_answered_whole_whether_or_not_its_body_is_sent() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let token = planner.token.clone().unwrap();
    let bound = suiji_server::registry::import::MAX_CONCURRENT_IMPORTS as u32;
    let held = HeldImport::every_place(&server, &token).await;
    // A client that waits for `100 Continue` is refused before it sends anything.
    let mut waiting = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/targets/import HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: text/csv\r\nContent-Length: 50000000\r\nExpect: 100-continue\r\n\r\n",
        server.addr
    );
    waiting.write_all(head.as_bytes()).await.unwrap();
    let mut status = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), waiting.read_exact(&mut status))
        .await
        .expect("answered without the body")
        .unwrap();
    assert_eq!(&status, b"HTTP/1.1 503");
    // One that sends 24 MiB regardless gets its 503 too, after the server has read and
    // dropped the body, not a reset connection under the answer.
    let large = [HEADER.as_bytes(), &vec![b'x'; 24 << 20]].concat();
    let refused = planner
        .raw(reqwest::Method::POST, "/api/v1/targets/import")
        .header("content-type", "text/csv")
        .body(large)
        .send()
        .await
        .expect("an answer, not a reset");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "busy", "{body}");
    for import in held {
        let answer = import.finish().await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // Nothing of the refused file was taken.
    let (_, list) = planner.get("/api/v1/targets?per_page=1").await;
    assert_eq!(list["total"], 3 * bound);
}

/// Posts `csv` through the console's import form as the holder of the session cookies `jar`.
async fn console_import(server: &TestServer, jar: &str, csv: &[u8]) -> reqwest::Response {
    console_import_at(&server.base, jar, csv).await
}

/// [`console_import`] to the server at `base`.
async fn console_import_at(base: &str, jar: &str, csv: &[u8]) -> reqwest::Response {
    let page = http()
        .get(format!("{base}/targets"))
        .header(reqwest::header::COOKIE, jar)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csrf = csrf_in(&page.text().await.unwrap(), "import");
    let boundary = "suiji-test-boundary";
    let mut body = Vec::new();
    for (name, value) in [("csrf", csrf.as_str()), ("mode", "all_or_nothing")] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"targets.csv\"\r\nContent-Type: text/csv\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(csv);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    http()
        .post(format!("{base}/targets/import"))
        .header(reqwest::header::COOKIE, jar)
        .header(
            reqwest::header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_console_import_counts_every_bad_row_and_shares_the_bound_on_imports() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let token = planner.token.clone().unwrap();
    let jar = console_session(&server, "planner").await;

    let refused = console_import(&server, &jar, targets_csv(1, 150, "E").as_bytes()).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = refused.text().await.unwrap();
    assert!(page.contains("有 150 行有误"), "{page}");
    assert!(page.contains("另有 50 行有误未列出"), "{page}");
    assert_eq!(
        page.matches("<tr><td class=\"num\">").count(),
        100,
        "rows listed"
    );

    // While the API's imports hold every place, the console's waits its turn too.
    let bound = suiji_server::registry::import::MAX_CONCURRENT_IMPORTS as u32;
    let held = HeldImport::every_place(&server, &token).await;
    let busy = console_import(&server, &jar, targets_csv(9_001, 3, "B").as_bytes()).await;
    assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(busy.headers().contains_key(reqwest::header::RETRY_AFTER));
    let page = busy.text().await.unwrap();
    assert!(page.contains("秒后重新上传"), "{page}");
    for import in held {
        let answer = import.finish().await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let done = console_import(&server, &jar, targets_csv(9_001, 3, "B").as_bytes()).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert!(done.text().await.unwrap().contains("新增 3 个"));
    let (_, list) = planner.get("/api/v1/targets?per_page=1").await;
    assert_eq!(list["total"], 3 * (bound + 1));
}

#[tokio::test]
async fn a_large_import_is_parsed_outside_the_write_lock_from_the_api_and_the_console() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let jar = console_session(&server, "planner").await;
    // About 16 MiB of rows that each fail validation: seconds of parsing, nothing to write.
    let mut csv = String::from(HEADER);
    let row = "91330106BAD0000000,坏行有限公司,enterprise,餐饮业,西湖区,文三路1号,张三,存续,B\n";
    while csv.len() < 16 << 20 {
        csv.push_str(row);
    }
    let csv = csv.into_bytes();
    for (n, via) in ["api", "console"].into_iter().enumerate() {
        let import = {
            let (server_base, token, jar, csv) = (
                server.base.clone(),
                planner.token.clone().unwrap(),
                jar.clone(),
                csv.clone(),
            );
            tokio::spawn(async move {
                if via == "api" {
                    http()
                        .post(format!("{server_base}/api/v1/targets/import"))
                        .bearer_auth(token)
                        .header("content-type", "text/csv")
                        .body(csv)
                        .send()
                        .await
                        .unwrap()
                        .status()
                } else {
                    console_import_at(&server_base, &jar, &csv).await.status()
                }
            })
        };
        // Once the file has arrived and is being parsed, another write goes through at once
        // (with the parse inside the write lock it waited for the whole parse).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (s, body) = planner
            .post(
                "/api/v1/departments",
                &serde_json::json!({"code": format!("D{n}"), "name": format!("部门{n}")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        assert!(
            !import.is_finished(),
            "{via}: the import was answered before a write it should not hold up"
        );
        assert_eq!(
            import.await.unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{via}"
        );
    }
}

#[tokio::test]
async fn a_valid_import_of_20000_gbk_rows_lands_whole() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    // As Excel on Chinese Windows saves it: GBK, which an `auto` import finds out is not
    // UTF-8 and reads again from the start.
    let mut csv = targets_csv(1, 19_999, "C");
    let last = suiji_server::uscc::generate('9', '1', "330106", 20_000);
    csv += &format!("{last},杭州最后一家有限公司,企业,餐饮业,西湖区,文三路末号,李四,存续,A\n");
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(&csv);
    assert!(!unmappable);
    let (s, body) = planner
        .post_bytes("/api/v1/targets/import", "text/csv", gbk.into_owned())
        .await;
    assert_eq!(s, StatusCode::OK, "{}", body["error"]);
    assert_eq!(body["encoding"], "gbk");
    assert_eq!(body["rows"], 20_000);
    assert_eq!(body["created"], 20_000);
    assert_eq!(body["committed"], true);
    assert_eq!(body["more_errors"], 0);
    let (_, list) = planner.get(&format!("/api/v1/targets?q={last}")).await;
    assert_eq!(list["items"][0]["name"], "杭州最后一家有限公司");
    let (_, all) = planner.get("/api/v1/targets?per_page=1").await;
    assert_eq!(all["total"], 20_000);
}
