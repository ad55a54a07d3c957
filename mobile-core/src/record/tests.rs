//! Tests of the record document on its own (no store).

use super::*;
use crate::vocab::Method;

pub(crate) fn sample_assignment() -> Assignment {
    Assignment {
        plan: PlanRef {
            id: "plan-1".into(),
            number: "SJ-2025-001".into(),
            name: "2025年度市场监管双随机抽查计划".into(),
        },
        task: TaskRef {
            id: "task-1".into(),
            number: "SJ-2025-001-01".into(),
            name: "企业公示信息抽查".into(),
            directed: false,
        },
        agency: "某某区市场监督管理局".into(),
        target: TargetSnapshot {
            id: "t-1".into(),
            uscc: Some("91310000MA1FL0000X".into()),
            name: "上海某某贸易有限公司".into(),
            address: "上海市某某区某某路1号".into(),
            legal_representative: Some("张三".into()),
            kind: "enterprise".into(),
            industry: Some("批发业".into()),
            region: Some("310101".into()),
            risk_class: Some("B".into()),
        },
        items: vec![
            AssignedItem {
                code: ItemCode::new("A01"),
                version: 1,
                name: "企业公示年度报告情况的检查".into(),
                legal_basis: "《企业信息公示暂行条例》第八条".into(),
                content: "核查年度报告公示信息是否真实".into(),
                methods: vec![Method::Documentary, Method::OnSite],
            },
            AssignedItem {
                code: ItemCode::new("A02"),
                version: 3,
                name: "登记事项检查".into(),
                legal_basis: "《市场主体登记管理条例》".into(),
                content: "住所、经营范围".into(),
                methods: vec![Method::OnSite],
            },
        ],
        inspectors: vec![
            AssignedInspector {
                inspector_id: InspectorId::new("insp-1"),
                name: "李四".into(),
                cert_no: "31000000001".into(),
                lead: true,
            },
            AssignedInspector {
                inspector_id: InspectorId::new("insp-2"),
                name: "王五".into(),
                cert_no: "31000000002".into(),
                lead: false,
            },
        ],
        window_start: NaiveDate::from_ymd_opt(2025, 5, 1).unwrap(),
        window_end: NaiveDate::from_ymd_opt(2025, 6, 30).unwrap(),
        publication_deadline: NaiveDate::from_ymd_opt(2025, 7, 29).unwrap(),
        publication_deadline_provisional: false,
        recheck_of: None,
    }
}

pub(crate) fn insp(n: u8) -> InspectorId {
    InspectorId::new(format!("insp-{n}"))
}

/// Inspector `n`'s signing key in tests (fixed, so runs are repeatable).
pub(crate) fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

/// Every key of `key(n)` counts as registered for inspector `n`.
pub(crate) fn test_keys(inspector: &InspectorId, public_key: &str) -> bool {
    (0..=9u8)
        .any(|n| insp(n) == *inspector && public_key_hex(&key(n).verifying_key()) == public_key)
}

pub(crate) fn phone_copy(server: &mut RecordDoc, inspector: u8) -> RecordDoc {
    let bytes = server.save();
    let mut doc = RecordDoc::load(&bytes).unwrap();
    doc.set_actor(inspector_actor(&insp(inspector), &[inspector, 0xab]));
    doc
}

/// Fills in everything `submit` needs except signatures.
pub(crate) fn answer_everything(doc: &mut RecordDoc) {
    for code in ["A01", "A02"] {
        let code = ItemCode::new(code);
        doc.set_checked(&code, true).unwrap();
        doc.set_methods(&code, &[Method::OnSite]).unwrap();
        doc.set_finding(&code, "未发现问题").unwrap();
    }
    doc.set_result_categories(&[ResultCategory::NoProblem])
        .unwrap();
    doc.set_follow_up(Some(FollowUpMeasure::None), None, None)
        .unwrap();
}

fn record_id() -> RecordId {
    RecordId::new("task-1/t-1")
}

#[test]
fn create_is_deterministic_and_round_trips_the_assignment() {
    let a = sample_assignment();
    let mut one = RecordDoc::create(&record_id(), &a).unwrap();
    let mut two = RecordDoc::create(&record_id(), &a).unwrap();
    assert_eq!(one.heads(), two.heads());
    assert_eq!(one.save(), two.save());
    assert_eq!(one.assignment().unwrap(), a);
    assert_eq!(one.record_id().unwrap(), record_id());
    assert_eq!(one.schema_version().unwrap(), RECORD_SCHEMA_VERSION);
    assert_eq!(one.status().unwrap(), ReviewState::Open);
    assert!(one.check_shape().is_empty(), "{:?}", one.check_shape());

    let mut other = RecordDoc::create(&RecordId::new("task-1/t-2"), &a).unwrap();
    assert_ne!(one.heads(), other.heads());
    // A different item list gives a different skeleton, and the cache must not leak the old one.
    let mut fewer = a.clone();
    fewer.items.truncate(1);
    let small = RecordDoc::create(&record_id(), &fewer).unwrap();
    assert!(matches!(
        small.item(&ItemCode::new("A02")),
        Err(Error::NotFound(_))
    ));
    let again = RecordDoc::create(&record_id(), &a).unwrap();
    assert!(again.item(&ItemCode::new("A02")).is_ok());
}

#[test]
fn create_refuses_an_item_without_legal_basis_or_a_lone_inspector() {
    let mut a = sample_assignment();
    a.items[0].legal_basis = " ".into();
    assert!(matches!(
        RecordDoc::create(&record_id(), &a),
        Err(Error::InvalidInput(_))
    ));
    let mut a = sample_assignment();
    a.inspectors.truncate(1);
    assert!(matches!(
        RecordDoc::create(&record_id(), &a),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn answers_round_trip_through_save_and_load() {
    let mut server = RecordDoc::create(&record_id(), &sample_assignment()).unwrap();
    let mut doc = phone_copy(&mut server, 1);
    let a01 = ItemCode::new("A01");
    doc.set_checked(&a01, true).unwrap();
    doc.set_method(&a01, Method::OnSite, true).unwrap();
    doc.set_method(&a01, Method::Documentary, true).unwrap();
    doc.set_method(&a01, Method::Documentary, false).unwrap();
    doc.set_finding(&a01, "年报与实际一致").unwrap();
    doc.set_disposition(&a01, "无").unwrap();
    doc.set_result_categories(&[ResultCategory::Rectified])
        .unwrap();
    let deadline = NaiveDate::from_ymd_opt(2025, 7, 1).unwrap();
    doc.set_follow_up(
        Some(FollowUpMeasure::OrderRectification),
        Some(deadline),
        Some("限期30日"),
    )
    .unwrap();
    doc.set_party_statement("无异议").unwrap();

    let reloaded = RecordDoc::load(&doc.save()).unwrap();
    let answer = reloaded.item(&a01).unwrap();
    assert_eq!(answer.checked, Some(true));
    assert_eq!(answer.methods, BTreeSet::from([Method::OnSite]));
    assert_eq!(answer.finding.as_deref(), Some("年报与实际一致"));
    assert_eq!(answer.disposition.as_deref(), Some("无"));
    assert_eq!(
        reloaded.result_categories().unwrap(),
        BTreeSet::from([ResultCategory::Rectified])
    );
    let fu = reloaded.follow_up().unwrap();
    assert_eq!(fu.measure, Some(FollowUpMeasure::OrderRectification));
    assert_eq!(fu.deadline, Some(deadline));
    assert_eq!(
        reloaded.party_statement().unwrap().as_deref(),
        Some("无异议")
    );
    assert!(reloaded.check_shape().is_empty());
}

#[test]
fn unassigned_item_is_refused() {
    let mut server = RecordDoc::create(&record_id(), &sample_assignment()).unwrap();
    let mut doc = phone_copy(&mut server, 1);
    assert!(matches!(
        doc.set_finding(&ItemCode::new("Z99"), "x"),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn concurrent_different_findings_are_kept_as_a_conflict_until_set_again() {
    let mut server = RecordDoc::create(&record_id(), &sample_assignment()).unwrap();
    let mut one = phone_copy(&mut server, 1);
    let mut two = phone_copy(&mut server, 2);
    let a01 = ItemCode::new("A01");

    // Both pick methods (these merge) and write different findings (this conflicts).
    one.set_method(&a01, Method::OnSite, true).unwrap();
    two.set_method(&a01, Method::Documentary, true).unwrap();
    one.set_finding(&a01, "经营场所与登记一致").unwrap();
    two.set_finding(&a01, "经营场所已搬迁").unwrap();
    // The same answer given twice is not a conflict.
    one.set_checked(&a01, true).unwrap();
    two.set_checked(&a01, true).unwrap();

    one.merge(&mut two).unwrap();
    two.merge(&mut one).unwrap();
    assert_eq!(one.heads(), two.heads());

    assert_eq!(
        one.item(&a01).unwrap().methods,
        BTreeSet::from([Method::OnSite, Method::Documentary])
    );
    let conflicts = one.conflicts().unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let c = &conflicts[0];
    assert_eq!(c.field, "items/A01/finding");
    assert_eq!(c.item, Some(a01.clone()));
    let mut values: Vec<(String, Option<InspectorId>)> = c
        .values
        .iter()
        .map(|v| (v.value.clone(), v.inspector_id.clone()))
        .collect();
    values.sort();
    assert_eq!(
        values,
        vec![
            ("经营场所与登记一致".to_owned(), Some(insp(1))),
            ("经营场所已搬迁".to_owned(), Some(insp(2))),
        ]
    );
    // Both replicas see the same conflict, and submission is blocked by it.
    assert_eq!(two.conflicts().unwrap(), conflicts);
    assert!(
        one.missing_for_submit()
            .unwrap()
            .contains(&Missing::UnresolvedConflict {
                field: "items/A01/finding".into()
            })
    );

    // Inspector 1 settles it; once merged, neither replica shows a conflict.
    one.set_finding(&a01, "经营场所已搬迁，已核实新址").unwrap();
    two.merge(&mut one).unwrap();
    assert!(one.conflicts().unwrap().is_empty());
    assert!(two.conflicts().unwrap().is_empty());
    assert_eq!(
        two.item(&a01).unwrap().finding.as_deref(),
        Some("经营场所已搬迁，已核实新址")
    );
}

#[test]
fn concurrent_result_picks_merge_and_different_measures_conflict() {
    let mut server = RecordDoc::create(&record_id(), &sample_assignment()).unwrap();
    let mut one = phone_copy(&mut server, 1);
    let mut two = phone_copy(&mut server, 2);
    one.set_result_category(ResultCategory::Rectified, true)
        .unwrap();
    two.set_result_category(ResultCategory::NotPublicized, true)
        .unwrap();
    one.set_follow_up(Some(FollowUpMeasure::OrderRectification), None, None)
        .unwrap();
    two.set_follow_up(Some(FollowUpMeasure::ReferCaseUnit), None, None)
        .unwrap();
    one.merge(&mut two).unwrap();
    assert_eq!(
        one.result_categories().unwrap(),
        BTreeSet::from([ResultCategory::NotPublicized, ResultCategory::Rectified])
    );
    let fields: Vec<String> = one
        .conflicts()
        .unwrap()
        .into_iter()
        .map(|c| c.field)
        .collect();
    assert_eq!(fields, vec!["follow_up/measure".to_owned()]);
}

#[test]
fn choosing_the_value_that_already_wins_still_settles_the_conflict() {
    let mut server = RecordDoc::create(&record_id(), &sample_assignment()).unwrap();
    let mut one = phone_copy(&mut server, 1);
    let mut two = phone_copy(&mut server, 2);
    let a02 = ItemCode::new("A02");
    one.set_checked(&a02, true).unwrap();
    two.set_checked(&a02, false).unwrap();
    one.merge(&mut two).unwrap();
    let winner = one.item(&a02).unwrap().checked.unwrap();
    assert_eq!(one.conflicts().unwrap().len(), 1);
    one.set_checked(&a02, winner).unwrap();
    two.merge(&mut one).unwrap();
    assert!(two.conflicts().unwrap().is_empty());
    assert_eq!(two.item(&a02).unwrap().checked, Some(winner));
}

#[test]
fn submit_lists_what_is_missing_and_changes_nothing() {
    let mut server = RecordDoc::create(&record_id(), &sample_assignment()).unwrap();
    let mut doc = phone_copy(&mut server, 1);
    let a01 = ItemCode::new("A01");
    doc.set_checked(&a01, true).unwrap();
    doc.set_result_categories(&[ResultCategory::Rectified, ResultCategory::NoProblem])
        .unwrap();
    doc.set_follow_up(Some(FollowUpMeasure::OrderRectification), None, None)
        .unwrap();
    let heads = doc.heads();

    let outcome = doc.submit(&insp(1)).unwrap();
    assert_eq!(doc.heads(), heads, "an incomplete submit must not write");
    let SubmitOutcome::Incomplete { missing } = outcome else {
        panic!("submitted an incomplete record")
    };
    assert_eq!(
        missing,
        vec![
            Missing::ItemWithoutMethod { item: a01.clone() },
            Missing::ItemWithoutFinding { item: a01 },
            Missing::ItemNotAnswered {
                item: ItemCode::new("A02")
            },
            Missing::ContradictoryResults,
            Missing::FollowUpDeadline,
            Missing::InspectorSignatures {
                valid: 0,
                needed: 2
            },
        ]
    );
    assert_eq!(doc.status().unwrap(), ReviewState::Open);
}

#[test]
fn rectified_needs_an_order_to_rectify_and_pending_followup_needs_a_measure() {
    let mut server = RecordDoc::create(&record_id(), &sample_assignment()).unwrap();
    let mut doc = phone_copy(&mut server, 1);
    doc.set_result_categories(&[ResultCategory::Rectified, ResultCategory::PendingFollowup])
        .unwrap();
    doc.set_follow_up(Some(FollowUpMeasure::None), None, None)
        .unwrap();
    let missing = doc.missing_for_submit().unwrap();
    assert!(missing.contains(&Missing::FollowUpRequired {
        result: ResultCategory::Rectified,
        measure: Some(FollowUpMeasure::OrderRectification)
    }));
    assert!(missing.contains(&Missing::FollowUpRequired {
        result: ResultCategory::PendingFollowup,
        measure: None
    }));
    doc.set_follow_up(
        Some(FollowUpMeasure::OrderRectification),
        NaiveDate::from_ymd_opt(2025, 8, 1),
        None,
    )
    .unwrap();
    let missing = doc.missing_for_submit().unwrap();
    assert!(
        !missing.iter().any(|m| matches!(
            m,
            Missing::FollowUpRequired { .. } | Missing::FollowUpDeadline
        )),
        "{missing:?}"
    );
}

#[test]
fn signatures_of_two_inspectors_allow_submission_and_a_later_edit_makes_them_stale() {
    let mut server = RecordDoc::create(&record_id(), &sample_assignment()).unwrap();
    let mut one = phone_copy(&mut server, 1);
    answer_everything(&mut one);
    let sig = one.sign(&insp(1), &key(1), None).unwrap();
    let mut two = phone_copy(&mut one, 2);
    two.sign(&insp(2), &key(2), None).unwrap();
    one.merge(&mut two).unwrap();
    assert!(one.missing_for_submit().unwrap().is_empty());

    // The signature records what the inspector saw, checkable from its heads.
    let heads: Vec<ChangeHash> = sig.heads.iter().map(|h| h.parse().unwrap()).collect();
    assert_eq!(one.content_digest_at(&heads).unwrap(), sig.content_sha256);

    // Someone outside the group cannot sign.
    assert!(matches!(
        one.sign(&InspectorId::new("stranger"), &key(9), None),
        Err(Error::InvalidInput(_))
    ));

    one.set_party_statement("补充陈述").unwrap();
    let missing = one.missing_for_submit().unwrap();
    assert!(missing.contains(&Missing::StaleSignature { inspector: insp(1) }));
    assert!(missing.contains(&Missing::InspectorSignatures {
        valid: 0,
        needed: 2
    }));
}

#[test]
fn returned_record_can_be_edited_and_submitted_as_the_next_round() {
    let mut server = RecordDoc::create(&record_id(), &sample_assignment()).unwrap();
    let mut phone = phone_copy(&mut server, 1);
    answer_everything(&mut phone);
    phone.sign(&insp(1), &key(1), None).unwrap();
    phone.sign(&insp(2), &key(2), None).unwrap();
    assert_eq!(
        phone.submit(&insp(1)).unwrap(),
        SubmitOutcome::Submitted { round: 1 }
    );
    assert_eq!(phone.status().unwrap(), ReviewState::Submitted);
    assert!(matches!(
        phone.set_party_statement("late"),
        Err(Error::NotEditable { .. })
    ));

    // The server acknowledges and returns it.
    server.merge(&mut phone).unwrap();
    assert_eq!(server.accept_submission("server").unwrap(), 1);
    assert!(matches!(
        server.publish("sup-1"),
        Err(Error::WrongState { .. })
    ));
    server
        .return_for_revision("sup-1", "请补充现场照片说明")
        .unwrap();
    phone.merge(&mut server).unwrap();
    assert_eq!(phone.status().unwrap(), ReviewState::Returned);
    let review = phone.review().unwrap();
    assert_eq!(review.history.len(), 2);
    assert_eq!(
        review.history[1].comment.as_deref(),
        Some("请补充现场照片说明")
    );

    // Edit, re-sign, resubmit as round 2.
    phone
        .set_disposition(&ItemCode::new("A01"), "已补充说明")
        .unwrap();
    assert!(matches!(
        phone.submit(&insp(1)).unwrap(),
        SubmitOutcome::Incomplete { .. }
    ));
    phone.sign(&insp(1), &key(1), None).unwrap();
    phone.sign(&insp(2), &key(2), None).unwrap();
    assert_eq!(
        phone.submit(&insp(2)).unwrap(),
        SubmitOutcome::Submitted { round: 2 }
    );
    server.merge(&mut phone).unwrap();
    assert_eq!(server.accept_submission("server").unwrap(), 2);
    server.approve("sup-1", None).unwrap();
    server.publish("sup-1").unwrap();
    phone.merge(&mut server).unwrap();
    assert_eq!(phone.status().unwrap(), ReviewState::Published);
    assert!(!phone.is_editable().unwrap());
}

#[test]
fn notes_carry_item_photos_and_witness_and_refuse_unknown_photos() {
    let mut server = RecordDoc::create(&record_id(), &sample_assignment()).unwrap();
    let mut doc = phone_copy(&mut server, 1);
    let a02 = ItemCode::new("A02");
    let unknown = BlobHash::of(b"nothing");
    assert!(matches!(
        doc.add_note(
            &insp(1),
            &a02,
            "x",
            std::slice::from_ref(&unknown),
            NoteKind::Note
        ),
        Err(Error::NotFound(_))
    ));
    let note = doc
        .add_note(
            &insp(1),
            &a02,
            "营业执照复印件一份",
            &[],
            NoteKind::DocumentCopy {
                witness: Some("赵六".into()),
            },
        )
        .unwrap();
    let plain = doc
        .add_note(&insp(1), &a02, "现场无人", &[], NoteKind::Note)
        .unwrap();
    assert_ne!(note.id, plain.id);
    let notes = RecordDoc::load(&doc.save()).unwrap().notes().unwrap();
    assert_eq!(notes, vec![note.clone(), plain]);
    doc.remove_note(&note.id).unwrap();
    assert_eq!(doc.notes().unwrap().len(), 1);
}

#[test]
fn check_shape_flags_values_written_behind_the_typed_api() {
    let mut server = RecordDoc::create(&record_id(), &sample_assignment()).unwrap();
    let mut doc = phone_copy(&mut server, 1);
    let notes = doc.root_map(keys::NOTES).unwrap();
    doc.automerge_mut().put(&notes, "n1", "not json").unwrap();
    doc.automerge_mut().put(ROOT, "extra", 1u64).unwrap();
    let results = doc.root_map(keys::RESULTS).unwrap();
    doc.automerge_mut().put(&results, "fined", true).unwrap();
    let problems = doc.check_shape();
    assert_eq!(problems.len(), 3, "{problems:?}");
}

#[test]
fn write_violations_accept_phone_answers_and_server_review_but_flag_tampering() {
    let mut server = RecordDoc::create(&record_id(), &sample_assignment()).unwrap();
    let created = server.heads();
    let mut phone = phone_copy(&mut server, 1);
    answer_everything(&mut phone);
    phone
        .add_note(&insp(1), &ItemCode::new("A01"), "note", &[], NoteKind::Note)
        .unwrap();
    phone.sign(&insp(1), &key(1), None).unwrap();
    phone.sign(&insp(2), &key(2), None).unwrap();
    phone.set_party_statement("无异议").unwrap();
    phone.sign(&insp(1), &key(1), None).unwrap();
    phone.sign(&insp(2), &key(2), None).unwrap();
    assert!(matches!(
        phone.submit(&insp(1)).unwrap(),
        SubmitOutcome::Submitted { .. }
    ));
    server.merge(&mut phone).unwrap();
    let writer = phone.automerge_mut().get_actor().clone();
    assert_eq!(
        server.write_violations(&created, &writer).unwrap(),
        Vec::<String>::new()
    );
    // The server's own changes are never a phone's to send.
    let before_review = server.heads();
    server.accept_submission("server").unwrap();
    let problems = server.write_violations(&before_review, &writer).unwrap();
    assert!(
        problems.len() == 1 && problems[0].contains("by the server"),
        "{problems:?}"
    );

    // A phone that writes the server's parts, or makes objects, is caught.
    let mut rogue = phone_copy(&mut server, 2);
    let before = rogue.heads();
    let review = rogue.root_map(keys::REVIEW).unwrap();
    rogue
        .automerge_mut()
        .put(&review, keys::STATE, "approved")
        .unwrap();
    rogue
        .automerge_mut()
        .put(ROOT, keys::ASSIGNMENT, "{}")
        .unwrap();
    let notes = rogue.root_map(keys::NOTES).unwrap();
    rogue
        .automerge_mut()
        .put_object(&notes, "n-obj", ObjType::Map)
        .unwrap();
    rogue.commit("tamper");
    let rogue_actor = rogue.automerge_mut().get_actor().clone();
    let problems = rogue.write_violations(&before, &rogue_actor).unwrap();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("review/state"), "{problems:?}");

    // Someone outside the group writes nothing at all.
    let mut stranger = phone_copy(&mut server, 1);
    stranger.set_actor(inspector_actor(&InspectorId::new("insp-9"), &[9]));
    let before = stranger.heads();
    let party = stranger.root_map(keys::PARTY).unwrap();
    stranger
        .automerge_mut()
        .put(&party, keys::STATEMENT, "x")
        .unwrap();
    stranger.commit("stranger");
    let stranger_actor = stranger.automerge_mut().get_actor().clone();
    let problems = stranger.write_violations(&before, &stranger_actor).unwrap();
    assert!(
        problems.iter().all(|p| p.contains("not assigned")) && !problems.is_empty(),
        "{problems:?}"
    );
}

#[test]
fn a_signature_verifies_against_its_registered_key_and_fails_when_forged_or_outdated() {
    let mut server = RecordDoc::create(&record_id(), &sample_assignment()).unwrap();
    let mut phone = phone_copy(&mut server, 1);
    answer_everything(&mut phone);
    let signature = phone.sign(&insp(1), &key(1), None).unwrap();
    assert_eq!(
        phone.check_signature(&signature, &mut test_keys).unwrap(),
        SignatureStatus::Valid
    );

    // A key nobody registered for the inspector.
    let mut nobody = |_: &InspectorId, _: &str| false;
    assert!(matches!(
        phone.check_signature(&signature, &mut nobody).unwrap(),
        SignatureStatus::Invalid(why) if why.contains("not registered")
    ));

    // Inspector 1's key used to sign as inspector 2: the key is not theirs.
    let as_partner = phone.sign(&insp(2), &key(1), None).unwrap();
    assert!(matches!(
        phone.check_signature(&as_partner, &mut test_keys).unwrap(),
        SignatureStatus::Invalid(why) if why.contains("not registered")
    ));

    // The same signature claiming other heads, or another digest, no longer verifies.
    let mut other_heads = signature.clone();
    other_heads.heads = phone.heads_hex();
    assert!(matches!(
        phone.check_signature(&other_heads, &mut test_keys).unwrap(),
        SignatureStatus::Invalid(why) if why.contains("does not verify")
    ));
    // Re-signed honestly over heads whose content is not the digest it claims.
    let mut wrong_digest = signature.clone();
    wrong_digest.content_sha256 = "0".repeat(64);
    wrong_digest.signature = {
        use ed25519_dalek::Signer;
        hex::encode(
            key(1)
                .sign(&wrong_digest.signed_bytes(&record_id()))
                .to_bytes(),
        )
    };
    assert!(matches!(
        phone.check_signature(&wrong_digest, &mut test_keys).unwrap(),
        SignatureStatus::Invalid(why) if why.contains("content digest")
    ));

    // Copied into another record, it names the wrong record.
    let mut elsewhere = RecordDoc::create(&RecordId::new("other"), &sample_assignment()).unwrap();
    assert!(matches!(
        elsewhere
            .check_signature(&signature, &mut test_keys)
            .unwrap(),
        SignatureStatus::Invalid(_)
    ));

    // Edited after signing: the signature still proves what was signed, but is stale.
    phone.set_party_statement("签字后补充").unwrap();
    assert_eq!(
        phone.check_signature(&signature, &mut test_keys).unwrap(),
        SignatureStatus::Stale
    );
}
