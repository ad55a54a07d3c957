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
    let config = || suiji_server::Config {
        database: suiji_tests::test_database(dir.path()),
        data_dir: dir.path().to_owned(),
        demo: false,
        transport: Default::default(),
        public_url: None,
    };
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

/// Phone A syncs with one server, phone B with another, both on one database: offline edits
/// from both converge everywhere with their conflict shown, a return made through the second
/// server reaches the phone on the first, and a server stopped in the middle of a phone's sync
/// loses nothing of it: the phone finishes with the other.
#[tokio::test(flavor = "multi_thread")]
async fn phones_on_two_servers_converge_see_a_return_and_lose_nothing_when_one_stops() {
    use suiji_mobile_core::RecordId;
    use suiji_mobile_core::vocab::ReviewState;
    use suiji_tests::proxy::{Direction, FaultProxy};
    use suiji_tests::{
        Phone, assert_merged_apart, drawn_task, edit_apart_offline, server_heads, server_record,
        sign_and_submit_through,
    };

    let one = TestServer::start().await;
    let Some(two) = TestServer::start_beside(&one).await else {
        return;
    };
    let (agency, records) = drawn_task(&one, 3, 4).await;
    let record = &records[0];
    let (a, b) = (record.group[0], record.group[1]);
    let id = record.id.clone();
    let rid = RecordId::new(id.as_str());
    // Phone A reaches server one through a proxy that can cut its connection.
    let proxy = FaultProxy::start(one.addr).await;
    let mut phone_a = Phone::open(&one, agency.username_of(a), a).await;
    let mut phone_b = Phone::open(&two, agency.username_of(b), b).await;
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

    // Offline on both: different fields, and one field answered differently.
    edit_apart_offline(&phone_a, &phone_b, &rid, &item);
    for _ in 0..2 {
        phone_a.sync(&proxy.url()).await.unwrap();
        phone_b.sync(&two.base).await.unwrap();
    }
    let heads = server_heads(&one, &id);
    assert_eq!(server_heads(&two, &id), heads, "both servers read one copy");
    assert_eq!(phone_a.heads(&id), heads);
    assert_eq!(phone_b.heads(&id), heads);
    for doc in [
        phone_a.store.record(&rid).unwrap(),
        phone_b.store.record(&rid).unwrap(),
        server_record(&one, &id),
        server_record(&two, &id),
    ] {
        assert_merged_apart(&doc, &item);
    }

    // Settled, signed and submitted, then returned through server two.
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
        "the return reached server one's phone"
    );
    assert_eq!(
        review.history.last().unwrap().comment.as_deref(),
        Some(comment)
    );

    // Server one goes away in the middle of phone A's next sync; A finishes with server two.
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
    one.stop().await;
    let report = phone_a.sync(&two.base).await.unwrap();
    assert!(report.complete, "{report:?}");
    assert!(
        phone_a.store.outbox().unwrap().is_empty(),
        "nothing left unsent"
    );
    let mut on_two = server_record(&two, &id);
    assert_eq!(
        on_two.item(&item).unwrap().finding.as_deref(),
        Some("已补充整改期限：十五日内")
    );
    assert_eq!(phone_a.heads(&id), on_two.heads_hex());
    phone_b.sync(&two.base).await.unwrap();
    assert_eq!(phone_b.heads(&id), on_two.heads_hex());
    let review = phone_b.store.record(&rid).unwrap().review().unwrap();
    assert_eq!(review.state, ReviewState::Returned);
}
