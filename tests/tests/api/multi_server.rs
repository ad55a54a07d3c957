//! Several server processes on one PostgreSQL database (docs/deploy.md). On SQLite, whose file
//! one server owns, there is nothing to test and these return at once; the suite's PostgreSQL
//! run (scripts/with-postgres) runs them.

use reqwest::StatusCode;
use serde_json::json;
use suiji_tests::{Client, TestServer};

#[tokio::test]
async fn a_second_server_with_a_seal_key_of_its_own_refuses_to_start_and_starts_with_the_shared_one()
 {
    let first = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    if TestServer::share_database(&first, dir.path(), false).is_none() {
        return;
    }
    let config = || suiji_tests::test_config(dir.path());
    // A key of its own would seal commitments the first could not draw, and the reverse.
    let refused = suiji_server::open(config())
        .err()
        .expect("a key of its own is refused");
    let message = refused.to_string();
    assert!(
        message.contains(suiji_server::draw::seal::KEY_FILE),
        "the error names the key file: {message}"
    );

    // With the first server's key copied over it, it starts and serves the same data.
    std::fs::copy(
        first.dir.path().join(suiji_server::draw::seal::KEY_FILE),
        dir.path().join(suiji_server::draw::seal::KEY_FILE),
    )
    .unwrap();
    let state = suiji_server::open(config()).expect("the shared key is accepted");
    assert_eq!(state.seal.id(), first.state.seal.id());
    drop(state);

    let second = TestServer::start_beside(&first).await.unwrap();
    let planner = second.login("planner").await;
    let (status, body) = planner
        .post(
            "/api/v1/departments",
            &json!({"code": "MS", "name": "多服务器测试局"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The session made through the second server is good on the first: one signing secret.
    let mut on_first = Client::anonymous(&first.base);
    on_first.token = planner.token.clone();
    let (status, list) = on_first.get("/api/v1/departments").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert!(
        list.to_string().contains("多服务器测试局"),
        "a write through one server is read through the other: {list}"
    );
}

/// Phone A syncs with one server process, phone B with another, both on one database and one
/// bucket: offline edits from both converge everywhere with their conflict shown, a photo
/// uploaded through one is read through the other, a return made through the second reaches
/// the phone on the first, and a server killed (SIGKILL) in the middle of a phone's sync loses
/// nothing of it: the phone finishes with the other. A third server, in this process, set the
/// task up and reads the database.
#[tokio::test(flavor = "multi_thread")]
async fn phones_on_two_server_processes_converge_see_a_return_and_lose_nothing_when_one_dies() {
    use suiji_mobile_core::RecordId;
    use suiji_mobile_core::vocab::ReviewState;
    use suiji_tests::proxy::{Direction, FaultProxy};
    use suiji_tests::{
        Phone, ServerProcess, assert_merged_apart, drawn_task, edit_apart_offline, server_heads,
        server_record, sign_and_submit_through,
    };
    const PROGRAM: &str = env!("CARGO_BIN_EXE_suiji-test-server");

    let setup = TestServer::start().await;
    let Some(one) = ServerProcess::start_beside(PROGRAM, &setup) else {
        return;
    };
    let two = ServerProcess::start_beside(PROGRAM, &setup).expect("a second process");
    let (agency, records) = drawn_task(&setup, 3, 4).await;
    let record = &records[0];
    let (a, b) = (record.group[0], record.group[1]);
    let id = record.id.clone();
    let rid = RecordId::new(id.as_str());
    // Phone A reaches process one through a proxy that can cut its connection.
    let proxy = FaultProxy::start(one.addr).await;
    let mut phone_a = Phone::open(&setup, agency.username_of(a), a).await;
    let mut phone_b = Phone::open(&setup, agency.username_of(b), b).await;
    phone_a.sync(&proxy.url()).await.unwrap();
    phone_b.sync(&two.base).await.unwrap();
    let item = phone_a
        .store
        .record(&rid)
        .unwrap()
        .assignment()
        .unwrap()
        .items[0]
        .code
        .clone();

    // Offline on both: different fields, and one field answered differently; A takes a photo.
    edit_apart_offline(&phone_a, &phone_b, &rid, &item);
    let photo = phone_a
        .store
        .import_photo(&rid, &item, &jpeg(), "后厨")
        .unwrap();
    for _ in 0..2 {
        phone_a.sync(&proxy.url()).await.unwrap();
        phone_b.sync(&two.base).await.unwrap();
    }
    let heads = server_heads(&setup, &id);
    assert_eq!(phone_a.heads(&id), heads, "phone A and the database agree");
    assert_eq!(phone_b.heads(&id), heads, "phone B and the database agree");
    for doc in [
        phone_a.store.record(&rid).unwrap(),
        phone_b.store.record(&rid).unwrap(),
        server_record(&setup, &id),
    ] {
        assert_merged_apart(&doc, &item);
    }
    // The photo went to the bucket through process one and comes back through process two.
    let inspector = two.login(agency.username_of(a)).await;
    let response = suiji_tests::http()
        .get(format!(
            "{}/api/v1/blobs/{}",
            two.base,
            photo.sha256.as_str()
        ))
        .bearer_auth(inspector.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.bytes().await.unwrap() == phone_a.store.blob(&photo.sha256).unwrap(),
        "the photo's bytes, through the other server"
    );

    // Settled, signed and submitted, then returned through process two.
    phone_a
        .store
        .edit(&rid, |doc| {
            suiji_tests::answer_all(doc)?;
            doc.set_finding(&item, "健康证过期，已责令改正")
        })
        .unwrap();
    // Each signs on their own phone, each phone syncing with its own server.
    sign_and_submit_through(&proxy.url(), &two.base, &mut phone_a, &mut phone_b, &rid).await;
    let supervisor = two.login("supervisor").await;
    // Both processes show the supervisor the same record, conflict list included.
    let mut through_one = Client::anonymous(&one.base);
    through_one.token = supervisor.token.clone();
    let path = format!("/api/v1/records/{id}");
    let (status, on_one) = through_one.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{on_one}");
    let (status, on_two) = supervisor.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{on_two}");
    assert_eq!(on_one["conflicts"], on_two["conflicts"]);
    assert_eq!(on_one["items"], on_two["items"]);
    assert_eq!(on_one["photos"], on_two["photos"]);
    let comment = "请补充整改期限";
    let (status, body) = supervisor
        .post(
            &format!("/api/v1/records/{id}/return"),
            &json!({"comment": comment}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    phone_a.sync(&proxy.url()).await.unwrap();
    let review = phone_a.store.record(&rid).unwrap().review().unwrap();
    assert_eq!(
        review.state,
        ReviewState::Returned,
        "the return reached process one's phone"
    );
    assert_eq!(
        review.history.last().unwrap().comment.as_deref(),
        Some(comment)
    );

    // Process one dies in the middle of phone A's next sync; A finishes with process two.
    phone_a
        .store
        .edit(&rid, |doc| {
            doc.set_finding(&item, "已补充整改期限：十五日内")
        })
        .unwrap();
    proxy.cut_next_after(Direction::Upstream, 200);
    assert!(
        phone_a.sync(&proxy.url()).await.is_err(),
        "the sync was cut"
    );
    one.kill();
    let report = phone_a.sync(&two.base).await.unwrap();
    assert!(report.complete, "{report:?}");
    assert!(
        phone_a.store.outbox().unwrap().is_empty(),
        "nothing left unsent"
    );
    let mut in_database = server_record(&setup, &id);
    assert_eq!(
        in_database.item(&item).unwrap().finding.as_deref(),
        Some("已补充整改期限：十五日内")
    );
    assert_eq!(phone_a.heads(&id), in_database.heads_hex());
    phone_b.sync(&two.base).await.unwrap();
    assert_eq!(phone_b.heads(&id), in_database.heads_hex());
    let review = phone_b.store.record(&rid).unwrap().review().unwrap();
    assert_eq!(review.state, ReviewState::Returned);
    // The audit chain stayed one chain under the three servers' writes.
    let verified = setup
        .state
        .db
        .read_blocking(suiji_server::audit::verify)
        .unwrap();
    assert!(
        matches!(verified, suiji_server::audit::Verification::Intact { .. }),
        "{verified:?}"
    );
}

/// A small JPEG, as a phone's camera gives.
fn jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8, y as u8, 77]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}
