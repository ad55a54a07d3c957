//! Authorship and signatures against a real server: a phone writes only as its own inspector
//! on its own device, every signature verifies against a key its inspector registered, and a
//! downloaded record is checked offline. The forged changes are real automerge changes made
//! in the test and slipped into a real phone store, as a tampered app would.

use automerge::ActorId;
use reqwest::StatusCode;
use serde_json::{Value, json};
use suiji_mobile_core::record::{SigningKey, inspector_actor, server_actor};
use suiji_mobile_core::sync::client;
use suiji_mobile_core::sync::wire::rules;
use suiji_mobile_core::{InspectorId, RecordDoc, RecordId};
use suiji_server::signing::{SignedRecordFile, VerifyFailure};
use suiji_tests::{PASSWORD, Phone, TestServer, drawn_task, publish_drawn_list, sign_and_submit};

/// Every stored chunk of a record on the server, in order: what "nothing was stored" compares.
fn stored_chunks(server: &TestServer, id: &str) -> Vec<Vec<u8>> {
    let id = id.to_owned();
    server
        .state
        .db
        .read_blocking(move |c| {
            let mut stmt =
                c.prepare("SELECT bytes FROM record_chunks WHERE record_id = ?1 ORDER BY seq")?;
            let rows = stmt
                .query_map([id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .unwrap()
}

/// The phone's copy of record `id` with `edit` made under `actor`, merged back into the phone
/// store so that its next sync carries it, as a tampered app's would.
fn slip_in(phone: &Phone, id: &RecordId, actor: ActorId, edit: impl FnOnce(&mut RecordDoc)) {
    let mut doc = RecordDoc::load(&phone.store.export_record(id).unwrap()).unwrap();
    doc.set_actor(actor);
    edit(&mut doc);
    phone.store.put_assigned_record(&doc.save()).unwrap();
}

fn first_item(doc: &RecordDoc) -> suiji_mobile_core::ItemCode {
    doc.assignment().unwrap().items[0].code.clone()
}

/// The phone's sync refuses the record under `rule`, and the server's copy is byte for byte
/// what it was.
async fn refused_whole(server: &TestServer, phone: &mut Phone, id: &RecordId, rule: &str) {
    let before = stored_chunks(server, id.as_str());
    let report = phone.sync(&server.base).await.unwrap();
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert_eq!(report.refused[0].record_id, *id);
    assert_eq!(report.refused[0].rule, rule, "{report:?}");
    assert!(report.sent.is_empty(), "{report:?}");
    assert_eq!(
        stored_chunks(server, id.as_str()),
        before,
        "nothing of the message was stored"
    );
}

#[tokio::test]
async fn changes_under_the_server_a_partner_another_device_or_a_stranger_are_refused_whole() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 2).await;
    let record = &records[0];
    let (me, partner) = (record.group[0], record.group[1]);
    let stranger = agency
        .inspectors
        .iter()
        .map(|(id, _)| *id)
        .find(|i| !record.group.contains(i))
        .unwrap();
    let id = RecordId::new(record.id.as_str());
    let mut partner_phone = Phone::open(&server, agency.username_of(partner), partner).await;
    partner_phone.sync(&server.base).await.unwrap();
    let partner_actor = partner_phone.store.actor().clone();

    let forged: [(&str, ActorId); 4] = [
        ("the server", server_actor()),
        ("the partner", partner_actor),
        (
            "my other device",
            inspector_actor(&InspectorId::new(me.to_string()), &[0xde, 0xad]),
        ),
        (
            "a stranger",
            inspector_actor(&InspectorId::new(stranger.to_string()), &[1, 2]),
        ),
    ];
    for (who, actor) in forged {
        // A fresh phone of the record's own inspector each time: its own edit is honest, the
        // slipped-in one is not, and the whole message goes.
        let mut phone = Phone::open(&server, agency.username_of(me), me).await;
        phone.sync(&server.base).await.unwrap();
        let item = first_item(&phone.store.record(&id).unwrap());
        phone
            .store
            .edit(&id, |d| d.set_finding(&item, "本人的真实记录"))
            .unwrap();
        slip_in(&phone, &id, actor, |d| {
            d.set_disposition(&item, &format!("以{who}名义写入"))
                .unwrap();
        });
        refused_whole(&server, &mut phone, &id, rules::WRITER).await;
        let on_server = suiji_tests::server_record(&server, id.as_str());
        assert!(
            on_server.item(&item).unwrap().disposition.is_none(),
            "{who}"
        );
    }
}

#[tokio::test]
async fn an_inspector_cannot_approve_their_own_record_by_writing_as_the_server() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 2).await;
    let record = &records[0];
    let id = RecordId::new(record.id.as_str());
    let (m1, m2) = (record.group[0], record.group[1]);
    let mut a = Phone::open(&server, agency.username_of(m1), m1).await;
    let mut b = Phone::open(&server, agency.username_of(m2), m2).await;
    a.sync(&server.base).await.unwrap();
    b.sync(&server.base).await.unwrap();
    let item = first_item(&a.store.record(&id).unwrap());
    a.store
        .edit(&id, |d| {
            suiji_tests::answer_all(d)?;
            d.set_finding(&item, "未发现问题")
        })
        .unwrap();
    sign_and_submit(&server, &mut a, &mut b, &id).await;
    a.sync(&server.base).await.unwrap();
    assert_eq!(
        suiji_tests::server_record(&server, id.as_str())
            .review()
            .unwrap()
            .state
            .code(),
        "submitted"
    );

    // The forged approval of the issue: review history `by: "supervisor"`, the attacker's
    // comment, and a rewritten group, all under the server's actor.
    slip_in(&a, &id, server_actor(), |d| {
        d.approve("supervisor", Some("同意（伪造）")).unwrap();
    });
    refused_whole(&server, &mut a, &id, rules::WRITER).await;
    let on_server = suiji_tests::server_record(&server, id.as_str());
    assert_eq!(on_server.review().unwrap().state.code(), "submitted");

    // The supervisor's ordinary publish finds nothing approved to publish.
    let supervisor = server.login("supervisor").await;
    publish_drawn_list(&server.login("planner").await, record.task_id).await;
    let (status, body) = supervisor
        .post(&format!("/api/v1/records/{}/publish", id), &json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (_, results) = suiji_tests::Client::anonymous(&server.base)
        .get("/api/v1/public/results")
        .await;
    assert!(!results.to_string().contains(id.as_str()), "{results}");
}

/// The record view's signatures, as an admin (who may see a record before it is submitted)
/// reads them: (inspector id, verification status).
async fn verifications(server: &TestServer, id: &RecordId) -> Vec<(String, String)> {
    let admin = server.login("admin").await;
    let (status, view) = admin.get(&format!("/api/v1/records/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let mut out: Vec<(String, String)> = view["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["inspector_id"].as_str().unwrap().to_owned(),
                s["verification"]["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The record as `client` downloads it for `record verify`.
async fn signed_copy(client: &suiji_tests::Client, id: &RecordId) -> SignedRecordFile {
    let (status, body) = client
        .get(&format!("/api/v1/records/{id}/signed-copy"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_value(body).unwrap()
}

#[tokio::test]
async fn two_inspectors_sign_on_their_own_phones_and_a_downloaded_copy_verifies_until_tampered() {
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
    let expected = {
        let mut v = vec![
            (m1.to_string(), "valid".to_owned()),
            (m2.to_string(), "valid".to_owned()),
        ];
        v.sort();
        v
    };
    assert_eq!(verifications(&server, &id).await, expected);

    // Each key is bound to the device that signed with it.
    let copy = signed_copy(&server.login("supervisor").await, &id).await;
    for (phone, inspector) in [(&a, m1), (&b, m2)] {
        let key = copy
            .signing_keys
            .iter()
            .find(|k| k.inspector_id.as_str() == inspector.to_string())
            .unwrap();
        assert_eq!(key.device_id, phone.store.device_id());
    }
    let checks = copy.verify().unwrap();
    assert_eq!(checks.len(), 2);

    // Nobody else downloads it: anonymous is 401, an inspector outside the group gets the
    // same 404 as for an unknown record.
    let path = format!("/api/v1/records/{id}/signed-copy");
    let (status, _) = suiji_tests::Client::anonymous(&server.base)
        .get(&path)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let stranger = agency
        .inspectors
        .iter()
        .map(|(i, _)| *i)
        .find(|i| !record.group.contains(i))
        .unwrap();
    let outsider = server.login(agency.username_of(stranger)).await;
    let (status, hidden) = outsider.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{hidden}");
    let (status, unknown) = outsider.get("/api/v1/records/r999-999/signed-copy").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        hidden["error"]["message"]
            .as_str()
            .map(|m| m.replace(id.as_str(), "")),
        unknown["error"]["message"]
            .as_str()
            .map(|m| m.replace("r999-999", ""))
    );

    // A copy edited after signing (a finding changed by one of the inspectors) fails, and
    // says whose signature no longer covers it.
    let mut tampered = copy.clone();
    let mut doc = RecordDoc::load(
        &base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &copy.document)
            .unwrap(),
    )
    .unwrap();
    doc.set_actor(a.store.actor().clone());
    let item = first_item(&doc);
    force_finding(&mut doc, &item, "改写后的检查情况");
    tampered.document =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, doc.save());
    match tampered.verify() {
        Err(VerifyFailure::Signature { reason, .. }) => {
            assert!(reason.contains("changed after"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // A key swapped for another: the signature names a key the file does not vouch for.
    let mut swapped = copy.clone();
    swapped.signing_keys[0].public_key = suiji_mobile_core::record::public_key_hex(
        &SigningKey::from_bytes(&[7; 32]).verifying_key(),
    );
    assert!(matches!(
        swapped.verify(),
        Err(VerifyFailure::Signature { .. })
    ));
}

/// Sets a finding even on a submitted record, bypassing the typed API's editability check, as
/// someone rewriting a downloaded file would.
fn force_finding(doc: &mut RecordDoc, item: &suiji_mobile_core::ItemCode, text: &str) {
    use automerge::ReadDoc;
    use automerge::transaction::Transactable;
    let am = doc.automerge_mut();
    let (_, items) = am.get(automerge::ROOT, "items").unwrap().unwrap();
    let (_, entry) = am.get(&items, item.as_str()).unwrap().unwrap();
    am.put(&entry, "finding", text).unwrap();
    am.commit();
}

#[tokio::test]
async fn a_partner_logs_in_on_the_first_phone_and_signs_there_with_a_handwritten_image() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 2).await;
    let record = &records[0];
    let id = RecordId::new(record.id.as_str());
    let (m1, m2) = (record.group[0], record.group[1]);
    let mut a = Phone::open(&server, agency.username_of(m1), m1).await;
    a.sync(&server.base).await.unwrap();
    a.store.edit(&id, suiji_tests::answer_all).unwrap();
    let partner = InspectorId::new(m2.to_string());

    // Without logging in here, the partner cannot sign on this phone.
    assert!(matches!(
        a.store.sign(&id, &partner, None),
        Err(suiji_mobile_core::Error::SignerNotLoggedIn { .. })
    ));
    // A wrong password registers nothing.
    let (store, url) = (a.store.clone(), server.base.clone());
    let username = agency.username_of(m2).to_owned();
    let wrong = {
        let (store, url, username) = (store.clone(), url.clone(), username.clone());
        tokio::task::spawn_blocking(move || client::add_signer(&store, &url, &username, "nope"))
            .await
            .unwrap()
    };
    assert!(
        matches!(wrong, Err(suiji_mobile_core::Error::Unauthorized(_))),
        "{wrong:?}"
    );
    let added =
        tokio::task::spawn_blocking(move || client::add_signer(&store, &url, &username, PASSWORD))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(added, partner);

    let png = suiji_mobile_core::photo::fixtures::png(300, 100);
    let signed = a.store.sign(&id, &partner, Some(&png)).unwrap();
    assert!(signed.image_sha256.is_some());
    a.sign(&id).unwrap();
    a.store.party_sign(&id, "张三", "法定代表人", &png).unwrap();
    assert!(matches!(
        a.store.submit(&id).unwrap(),
        suiji_mobile_core::record::SubmitOutcome::Submitted { .. }
    ));
    let report = a.sync(&server.base).await.unwrap();
    assert!(report.refused.is_empty(), "{report:?}");
    assert_eq!(report.sent, vec![id.clone()]);
    assert!(
        report
            .blobs_uploaded
            .contains(signed.image_sha256.as_ref().unwrap())
    );

    let mut expected = vec![
        (m1.to_string(), "valid".to_owned()),
        (m2.to_string(), "valid".to_owned()),
    ];
    expected.sort();
    assert_eq!(verifications(&server, &id).await, expected);
    // Both keys sit on the first phone's device; the partner's session there was closed.
    let copy = signed_copy(&server.login("supervisor").await, &id).await;
    assert!(
        copy.signing_keys
            .iter()
            .all(|k| k.device_id == a.store.device_id())
    );
    copy.verify().unwrap();
    // The handwritten image reached the server and the supervisor may open it.
    let supervisor = server.login("supervisor").await;
    let image = signed.image_sha256.unwrap();
    let response = supervisor
        .raw(reqwest::Method::GET, &format!("/api/v1/blobs/{image}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().as_ref(), png.as_slice());
}

#[tokio::test]
async fn signatures_by_unregistered_keys_over_other_heads_or_without_an_image_are_refused_and_a_later_edit_shows()
 {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 2).await;
    let record = &records[0];
    let id = RecordId::new(record.id.as_str());
    let (m1, m2) = (record.group[0], record.group[1]);
    let me = InspectorId::new(m1.to_string());

    // A key nobody registered, used under the phone's own (honest) actor.
    let mut a = Phone::open(&server, agency.username_of(m1), m1).await;
    a.sync(&server.base).await.unwrap();
    let rogue = SigningKey::from_bytes(&[42; 32]);
    slip_in(&a, &id, a.store.actor().clone(), |d| {
        d.sign(&me, &rogue, None).unwrap();
    });
    refused_whole(&server, &mut a, &id, rules::SIGNATURE).await;

    // A real signature of the phone's registered key, moved onto other heads.
    let mut a = Phone::open(&server, agency.username_of(m1), m1).await;
    a.sync(&server.base).await.unwrap();
    let earlier = a.heads(id.as_str());
    let item = first_item(&a.store.record(&id).unwrap());
    a.store
        .edit(&id, |d| d.set_finding(&item, "已核查"))
        .unwrap();
    let honest = a.store.sign(&id, &me, None).unwrap();
    let mut moved = honest.clone();
    moved.heads = earlier;
    slip_in(&a, &id, a.store.actor().clone(), |d| {
        use automerge::ReadDoc;
        use automerge::transaction::Transactable;
        let am = d.automerge_mut();
        let (_, signatures) = am.get(automerge::ROOT, "signatures").unwrap().unwrap();
        am.put(
            &signatures,
            me.as_str(),
            serde_json::to_string(&moved).unwrap(),
        )
        .unwrap();
        am.commit();
    });
    refused_whole(&server, &mut a, &id, rules::SIGNATURE).await;

    // The party "signing" with no handwritten image.
    let mut a = Phone::open(&server, agency.username_of(m1), m1).await;
    a.sync(&server.base).await.unwrap();
    slip_in(&a, &id, a.store.actor().clone(), |d| {
        d.party_sign("张三", "法定代表人", None).unwrap();
    });
    refused_whole(&server, &mut a, &id, rules::SIGNATURE).await;

    // Honest signatures on two phones, then an edit after signing: shown as stale, and the
    // downloaded copy fails to verify.
    let mut a = Phone::open(&server, agency.username_of(m1), m1).await;
    let mut b = Phone::open(&server, agency.username_of(m2), m2).await;
    for phone in [&mut a, &mut b] {
        phone.sync(&server.base).await.unwrap();
        phone.sign(&id).unwrap();
        phone.sync(&server.base).await.unwrap();
    }
    a.sync(&server.base).await.unwrap();
    let mut expected = vec![
        (m1.to_string(), "valid".to_owned()),
        (m2.to_string(), "valid".to_owned()),
    ];
    expected.sort();
    assert_eq!(verifications(&server, &id).await, expected);
    a.store
        .edit(&id, |d| d.set_finding(&item, "签字后改写"))
        .unwrap();
    a.sync(&server.base).await.unwrap();
    assert!(
        verifications(&server, &id)
            .await
            .iter()
            .all(|(_, status)| status == "stale")
    );
    let copy = signed_copy(&server.login("admin").await, &id).await;
    assert!(matches!(
        copy.verify(),
        Err(VerifyFailure::Signature { .. })
    ));
    let view: Value = server
        .login("admin")
        .await
        .get(&format!("/api/v1/records/{id}"))
        .await
        .1;
    assert!(
        view["missing_for_submit"]
            .to_string()
            .contains("must sign again"),
        "{view}"
    );
}

#[tokio::test]
async fn only_a_phone_session_syncs_or_registers_keys_and_keys_stay_with_their_owner() {
    let server = TestServer::start().await;
    let (agency, records) = drawn_task(&server, 3, 2).await;
    let m1 = records[0].group[0];
    let username = agency.username_of(m1);

    // A session opened without the phone's device id (the console's, a script's) cannot sync.
    let plain = server.login(username).await;
    let response = plain
        .raw(reqwest::Method::POST, "/api/v1/sync")
        .header("content-type", "application/cbor")
        .body(vec![0xa0])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let key = suiji_mobile_core::record::public_key_hex(
        &SigningKey::from_bytes(&[5; 32]).verifying_key(),
    );
    let (status, body) = plain
        .post("/api/v1/signing-keys", &json!({"public_key": key}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // A device id that is not hex, or too long, is refused at login.
    let anon = suiji_tests::Client::anonymous(&server.base);
    for bad in ["not hex", "abc", &"ab".repeat(40), "AB12"] {
        let (status, body) = anon
            .post(
                "/api/v1/auth/login",
                &json!({"username": username, "password": PASSWORD, "device_id": bad}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["error"]["field"], "device_id", "{body}");
    }

    // A phone session registers; the same key again is the same entry; another inspector
    // cannot take it over; a planner registers nothing.
    let (_, login) = anon
        .post(
            "/api/v1/auth/login",
            &json!({"username": username, "password": PASSWORD, "device_id": "0a0b"}),
        )
        .await;
    assert_eq!(login["inspector_id"], m1);
    let mut phone = suiji_tests::Client::anonymous(&server.base);
    phone.token = login["access_token"].as_str().map(str::to_owned);
    let (status, entry) = phone
        .post("/api/v1/signing-keys", &json!({"public_key": key}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    assert_eq!(entry["device_id"], "0a0b");
    let (status, _) = phone
        .post("/api/v1/signing-keys", &json!({"public_key": key}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = phone
        .post("/api/v1/signing-keys", &json!({"public_key": "00"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let m2 = records[0].group[1];
    let (_, other) = anon
        .post(
            "/api/v1/auth/login",
            &json!({"username": agency.username_of(m2), "password": PASSWORD, "device_id": "0a0b"}),
        )
        .await;
    let mut other_phone = suiji_tests::Client::anonymous(&server.base);
    other_phone.token = other["access_token"].as_str().map(str::to_owned);
    let (status, body) = other_phone
        .post("/api/v1/signing-keys", &json!({"public_key": key}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = server
        .login("planner")
        .await
        .post("/api/v1/signing-keys", &json!({"public_key": key}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Registered keys are kept for good: the database refuses to drop or change one.
    let refused = server
        .state
        .db
        .write_blocking(|tx| tx.execute("DELETE FROM signing_keys", []));
    assert!(refused.is_err());
}
