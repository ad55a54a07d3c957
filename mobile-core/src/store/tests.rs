//! Store tests against real SQLite files in temporary directories and real image bytes.

use super::*;
use crate::photo::fixtures;
use crate::record::tests::{answer_everything, insp, sample_assignment};
use crate::record::{Missing, NoteKind};
use crate::vocab::{Method, ResultCategory};
use std::io::BufRead;

/// The store's own inspector signs, then inspector 2, as after they logged in on this phone
/// (`sync::client::add_signer` registers their key; here it is marked registered directly).
fn sign_both(store: &Store) {
    store.sign(&rid(), &insp(1), None).unwrap();
    let key = store.signing_public_key(&insp(2)).unwrap();
    store.mark_signer_registered(&insp(2), &key).unwrap();
    store.sign(&rid(), &insp(2), None).unwrap();
}

fn rid() -> RecordId {
    RecordId::new("task-1/t-1")
}

fn a01() -> ItemCode {
    ItemCode::new("A01")
}

fn server_record() -> RecordDoc {
    RecordDoc::create(&rid(), &sample_assignment()).unwrap()
}

fn open(dir: &Path, inspector: u8) -> Store {
    Store::open(dir, StoreOptions::new(insp(inspector))).unwrap()
}

fn store_with_record(dir: &Path) -> Store {
    let store = open(dir, 1);
    assert_eq!(store.put_assigned_doc(&mut server_record()).unwrap(), rid());
    store
}

#[test]
fn reopened_store_brings_back_records_answers_photos_and_notes() {
    let dir = tempfile::tempdir().unwrap();
    let photo_bytes = fixtures::jpeg(320, 240);
    {
        let store = store_with_record(dir.path());
        store
            .edit(&rid(), |doc| {
                doc.set_checked(&a01(), true)?;
                doc.set_finding(&a01(), "年报信息属实")
            })
            .unwrap();
        let photo = store
            .import_photo(&rid(), &a01(), &photo_bytes, "门头照片")
            .unwrap();
        store
            .edit(&rid(), |doc| {
                doc.add_note(
                    &insp(1),
                    &a01(),
                    "经营场所照片",
                    std::slice::from_ref(&photo.sha256),
                    NoteKind::Note,
                )
            })
            .unwrap();
        // Dropped without any close call, as an app killed by the OS would be.
    }
    let store = open(dir.path(), 1);
    let tasks = store.list_tasks().unwrap();
    assert_eq!(tasks.len(), 1);
    let t = &tasks[0];
    assert_eq!(t.record_id, rid());
    assert_eq!(t.target_name, "上海某某贸易有限公司");
    assert_eq!(t.task_name, "企业公示信息抽查");
    assert_eq!(t.window_end, NaiveDate::from_ymd_opt(2025, 6, 30).unwrap());
    assert_eq!(t.status, ReviewState::Open);
    assert_eq!((t.items_total, t.items_answered, t.photo_count), (2, 1, 1));

    let doc = store.record(&rid()).unwrap();
    assert_eq!(
        doc.item(&a01()).unwrap().finding.as_deref(),
        Some("年报信息属实")
    );
    let photos = doc.photos().unwrap();
    assert_eq!(photos[0].caption, "门头照片");
    assert_eq!(store.blob(&photos[0].sha256).unwrap(), photo_bytes);
    assert_eq!(
        doc.notes().unwrap()[0].photos,
        vec![photos[0].sha256.clone()]
    );
    let listed = store.list_photos(&rid()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].thumbnail_sha256, photos[0].thumbnail_sha256);
    assert!(store.blob(&listed[0].thumbnail_sha256).is_ok());
}

#[test]
fn reopened_store_keeps_its_actor_and_refuses_another_inspector() {
    let dir = tempfile::tempdir().unwrap();
    let actor = open(dir.path(), 1).actor().clone();
    assert_eq!(
        crate::record::actor_inspector(&actor),
        Some(insp(1)),
        "the actor names the inspector"
    );
    assert_eq!(open(dir.path(), 1).actor(), &actor);
    assert!(matches!(
        Store::open(dir.path(), StoreOptions::new(insp(2))),
        Err(Error::WrongInspector { .. })
    ));
}

#[test]
fn migrations_set_user_version_and_are_not_rerun_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_record(dir.path()));
    let store = open(dir.path(), 1);
    let w = store.lock_writer();
    let version: i64 = w
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version as usize, MIGRATIONS.len());
    let mode: String = w
        .conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(w);
    assert_eq!(store.list_tasks().unwrap().len(), 1);
}

/// The schema as SQLite reports it, for comparing databases.
fn schema(conn: &Connection) -> Vec<(String, String)> {
    let mut stmt = conn
        .prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn database_upgraded_from_every_older_version_equals_a_fresh_one() {
    let fresh_dir = tempfile::tempdir().unwrap();
    drop(open(fresh_dir.path(), 1));
    let fresh = schema(&Connection::open(fresh_dir.path().join(DB_FILE)).unwrap());
    assert!(fresh.iter().any(|(name, _)| name == "records"));
    for applied in 0..MIGRATIONS.len() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            for sql in &MIGRATIONS[..applied] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", applied as i64)
                .unwrap();
        }
        drop(open(dir.path(), 1));
        let upgraded = Connection::open(dir.path().join(DB_FILE)).unwrap();
        assert_eq!(schema(&upgraded), fresh, "upgrade from version {applied}");
    }
}

#[test]
fn edits_are_saved_as_incremental_chunks_and_compacted_periodically() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = StoreOptions::new(insp(1));
    options.compact_after_chunks = 4;
    let store = Store::open(dir.path(), options.clone()).unwrap();
    store.put_assigned_record(&server_record().save()).unwrap();
    assert_eq!(store.chunk_count(&rid()).unwrap(), 1);
    store.edit(&rid(), |d| d.set_finding(&a01(), "1")).unwrap();
    store.edit(&rid(), |d| d.set_finding(&a01(), "2")).unwrap();
    assert_eq!(store.chunk_count(&rid()).unwrap(), 3);
    store.edit(&rid(), |d| d.set_finding(&a01(), "3")).unwrap();
    store.edit(&rid(), |d| d.set_finding(&a01(), "4")).unwrap();
    assert_eq!(
        store.chunk_count(&rid()).unwrap(),
        1,
        "compacted at 4 chunks"
    );
    store.edit(&rid(), |d| d.set_finding(&a01(), "5")).unwrap();
    assert_eq!(store.chunk_count(&rid()).unwrap(), 2);
    // An edit that changes nothing writes nothing.
    store.edit(&rid(), |d| d.item(&a01())).unwrap();
    assert_eq!(store.chunk_count(&rid()).unwrap(), 2);
    drop(store);
    let store = Store::open(dir.path(), options).unwrap();
    let finding = store.read(&rid(), |d| d.item(&a01())).unwrap().finding;
    assert_eq!(finding.as_deref(), Some("5"));
}

#[test]
fn failed_edit_saves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_record(dir.path());
    let before = store.outbox().unwrap();
    let err = store
        .edit(&rid(), |d| {
            d.set_finding(&a01(), "half done")?;
            d.set_finding(&ItemCode::new("Z99"), "no such item")
        })
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)));
    assert_eq!(
        store.read(&rid(), |d| d.item(&a01())).unwrap().finding,
        None
    );
    assert_eq!(store.outbox().unwrap(), before);
    assert_eq!(store.chunk_count(&rid()).unwrap(), 1);
}

/// Environment variable telling [`crash_child_writer`] where the store is.
const CRASH_DIR_ENV: &str = "SUIJI_CRASH_TEST_DIR";

/// Run as a child process by the crash test: edits the record as fast as it can, printing
/// each committed edit, until it is killed. Does nothing when run normally.
#[test]
#[ignore = "helper process for store_survives_being_killed_mid_write"]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let mut options = StoreOptions::new(insp(1));
    options.compact_after_chunks = 7; // compactions happen inside the kill window too
    let store = Store::open(&dir, options).unwrap();
    let photo = fixtures::jpeg(64, 48);
    for i in 0.. {
        store
            .edit(&rid(), |d| d.set_finding(&a01(), &format!("finding {i}")))
            .unwrap();
        if i % 5 == 0 {
            // Photo imports write blob files and several tables.
            let caption = format!("photo {i}");
            store
                .import_photo(&rid(), &a01(), &photo, &caption)
                .unwrap();
        }
        println!("committed {i}");
    }
}

#[test]
fn store_survives_being_killed_mid_write() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_record(dir.path()));
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "store::tests::crash_child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut last = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("committed ") {
            let n: u64 = n.parse().unwrap();
            last = Some(n);
            if n >= 40 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructors, no flushing, mid-transaction
    child.wait().unwrap();
    let last = last.expect("the child committed edits before being killed");

    let store = open(dir.path(), 1);
    let finding = store
        .read(&rid(), |d| d.item(&a01()))
        .unwrap()
        .finding
        .unwrap();
    let n: u64 = finding.strip_prefix("finding ").unwrap().parse().unwrap();
    assert!(n >= last, "committed edit {last} lost; found {n}");
    let doc = store.record(&rid()).unwrap();
    assert!(doc.check_shape().is_empty());
    for photo in store.list_photos(&rid()).unwrap() {
        // Every photo the index names has intact blobs.
        store.blob(&photo.sha256).unwrap();
        store.blob(&photo.thumbnail_sha256).unwrap();
    }
    // And the store keeps working.
    store
        .edit(&rid(), |d| d.set_finding(&a01(), "after the crash"))
        .unwrap();
    drop(store);
    let store = open(dir.path(), 1);
    let finding = store.read(&rid(), |d| d.item(&a01())).unwrap().finding;
    assert_eq!(finding.as_deref(), Some("after the crash"));
}

#[test]
fn photo_import_stores_original_thumbnail_and_upload_copy_and_queues_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = StoreOptions::new(insp(1));
    options.photos.pixel_budget = 100_000;
    let store = Store::open(dir.path(), options).unwrap();
    store.put_assigned_record(&server_record().save()).unwrap();
    let bytes = fixtures::with_exif(
        &fixtures::jpeg(800, 600),
        "2025:05:02 09:00:00",
        39.9,
        116.4,
    );
    let photo = store
        .import_photo(&rid(), &a01(), &bytes, "营业执照")
        .unwrap();
    assert_eq!(photo.sha256, BlobHash::of(&bytes));
    assert_eq!(photo.captured_at.as_deref(), Some("2025-05-02T09:00:00"));
    assert!(photo.gps.is_some());
    assert_eq!(photo.taken_by, insp(1));
    let upload = photo.upload_sha256.clone().expect("over the budget");
    assert_eq!(store.blob(&photo.sha256).unwrap(), bytes, "original kept");
    let small = image::load_from_memory(&store.blob(&upload).unwrap()).unwrap();
    assert!(u64::from(small.width()) * u64::from(small.height()) <= 100_000);
    assert!(store.blob_path(&photo.thumbnail_sha256).unwrap().exists());

    let queued: Vec<OutboxItem> = store
        .outbox()
        .unwrap()
        .into_iter()
        .map(|e| e.item)
        .collect();
    assert!(queued.contains(&OutboxItem::Record(rid())));
    assert!(queued.contains(&OutboxItem::Blob(upload)));
    assert!(queued.contains(&OutboxItem::Blob(photo.thumbnail_sha256.clone())));

    store
        .edit(&rid(), |d| {
            d.set_photo_caption(&photo.sha256, "营业执照正本")
        })
        .unwrap();
    assert_eq!(
        store.list_photos(&rid()).unwrap()[0].caption,
        "营业执照正本"
    );
}

#[test]
fn bad_photo_bytes_or_unknown_item_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = StoreOptions::new(insp(1));
    options.photos.max_bytes = 50_000;
    let store = Store::open(dir.path(), options).unwrap();
    store.put_assigned_record(&server_record().save()).unwrap();
    let heads = store.record(&rid()).unwrap().heads();
    let outbox = store.outbox().unwrap();

    let mut corrupt = fixtures::jpeg(100, 100);
    corrupt.truncate(corrupt.len() / 3);
    assert!(matches!(
        store.import_photo(&rid(), &a01(), &corrupt, "x"),
        Err(Error::BadImage(_))
    ));
    assert!(matches!(
        store.import_photo(&rid(), &a01(), b"%PDF-1.7 not a photo", "x"),
        Err(Error::UnsupportedImage(_))
    ));
    assert!(matches!(
        store.import_photo(&rid(), &a01(), &vec![0xff; 60_000], "x"),
        Err(Error::PhotoTooLarge { .. })
    ));
    let good = fixtures::jpeg(64, 64);
    assert!(matches!(
        store.import_photo(&rid(), &ItemCode::new("Z99"), &good, "x"),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.blob(&BlobHash::of(&good)),
        Err(Error::NotFound(_))
    ));
    assert_eq!(store.record(&rid()).unwrap().heads(), heads);
    assert_eq!(store.outbox().unwrap(), outbox);
    assert!(store.list_photos(&rid()).unwrap().is_empty());
}

#[test]
fn outbox_ack_of_an_older_generation_keeps_the_record_queued() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_record(dir.path());
    assert!(
        store.outbox().unwrap().is_empty(),
        "the server's copy needs no upload"
    );
    store.edit(&rid(), |d| d.set_finding(&a01(), "a")).unwrap();
    let seen = store.outbox().unwrap();
    assert_eq!(seen.len(), 1);
    // Edited again while the upload of `seen` was in flight.
    store.edit(&rid(), |d| d.set_finding(&a01(), "b")).unwrap();
    assert!(!store.ack_outbox(&seen[0]).unwrap());
    let now = store.outbox().unwrap();
    assert_eq!(now.len(), 1);
    assert!(store.ack_outbox(&now[0]).unwrap());
    drop(store);
    assert!(
        open(dir.path(), 1).outbox().unwrap().is_empty(),
        "ack is durable"
    );
}

#[test]
fn acknowledging_many_entries_at_once_keeps_those_queued_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_record(dir.path());
    store
        .import_photo(&rid(), &a01(), &fixtures::jpeg(64, 48), "门头照片")
        .unwrap();
    let seen = store.outbox().unwrap();
    assert!(
        seen.len() >= 2,
        "the record and its photo's blobs: {seen:?}"
    );
    // The record was edited again while the uploads were in flight.
    store.edit(&rid(), |d| d.set_finding(&a01(), "b")).unwrap();
    assert_eq!(store.ack_outbox_all(&seen).unwrap(), seen.len() - 1);
    let left = store.outbox().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].item, OutboxItem::Record(rid()));
    drop(store);
    assert_eq!(
        open(dir.path(), 1).outbox().unwrap(),
        left,
        "acks are durable"
    );
}

#[test]
fn two_phones_conflict_shows_in_the_task_list_until_settled() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let server = server_record().save();
    let one = open(d1.path(), 1);
    let two = open(d2.path(), 2);
    one.put_assigned_record(&server).unwrap();
    two.put_assigned_record(&server).unwrap();

    one.edit(&rid(), |d| d.set_finding(&a01(), "账实相符"))
        .unwrap();
    two.edit(&rid(), |d| d.set_finding(&a01(), "账实不符"))
        .unwrap();
    one.edit(&rid(), |d| d.set_method(&a01(), Method::OnSite, true))
        .unwrap();
    two.edit(&rid(), |d| d.set_method(&a01(), Method::Documentary, true))
        .unwrap();

    // Exchange (the sync issue will do this over HTTP).
    one.put_assigned_record(&two.export_record(&rid()).unwrap())
        .unwrap();
    two.put_assigned_record(&one.export_record(&rid()).unwrap())
        .unwrap();
    for store in [&one, &two] {
        assert_eq!(store.list_tasks().unwrap()[0].conflict_count, 1);
        let conflicts = store.read(&rid(), |d| d.conflicts()).unwrap();
        assert_eq!(conflicts[0].field, "items/A01/finding");
        let methods = store.read(&rid(), |d| d.item(&a01())).unwrap().methods;
        assert_eq!(methods.len(), 2, "method picks merged");
    }

    two.edit(&rid(), |d| d.set_finding(&a01(), "账实不符，已责令改正"))
        .unwrap();
    one.put_assigned_record(&two.export_record(&rid()).unwrap())
        .unwrap();
    assert_eq!(one.list_tasks().unwrap()[0].conflict_count, 0);
    drop(one);
    let one = open(d1.path(), 1);
    let finding = one.read(&rid(), |d| d.item(&a01())).unwrap().finding;
    assert_eq!(finding.as_deref(), Some("账实不符，已责令改正"));
}

#[test]
fn submit_through_the_store_reports_missing_then_submits_and_locks_until_returned() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_record(dir.path());
    let outcome = store.submit(&rid()).unwrap();
    let SubmitOutcome::Incomplete { missing } = outcome else {
        panic!("an empty record was submitted");
    };
    assert!(missing.contains(&Missing::NoResultCategory));

    store
        .edit(&rid(), |d| {
            answer_everything(d);
            Ok(())
        })
        .unwrap();
    sign_both(&store);
    assert_eq!(
        store.submit(&rid()).unwrap(),
        SubmitOutcome::Submitted { round: 1 }
    );
    assert_eq!(
        store.list_tasks().unwrap()[0].status,
        ReviewState::Submitted
    );
    assert!(matches!(
        store.edit(&rid(), |d| d.set_party_statement("late")),
        Err(Error::NotEditable { .. })
    ));
    assert!(matches!(
        store.import_photo(&rid(), &a01(), &fixtures::jpeg(32, 32), "late"),
        Err(Error::NotEditable { .. })
    ));

    // The server returns it; the phone gets the change and may edit again.
    let mut server = RecordDoc::load(&store.export_record(&rid()).unwrap()).unwrap();
    server.set_actor(crate::record::server_actor());
    server.accept_submission("server").unwrap();
    server.return_for_revision("sup-1", "照片不清晰").unwrap();
    store.put_assigned_record(&server.save()).unwrap();
    assert_eq!(store.list_tasks().unwrap()[0].status, ReviewState::Returned);
    store
        .edit(&rid(), |d| {
            d.set_result_categories(&[ResultCategory::NoProblem])?;
            d.set_party_statement("无异议")
        })
        .unwrap();
    sign_both(&store);
    assert_eq!(
        store.submit(&rid()).unwrap(),
        SubmitOutcome::Submitted { round: 2 }
    );
}

#[test]
fn removed_record_leaves_the_list_and_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_record(dir.path());
    store.edit(&rid(), |d| d.set_finding(&a01(), "x")).unwrap();
    store.remove_record(&rid()).unwrap();
    assert!(store.list_tasks().unwrap().is_empty());
    assert!(store.outbox().unwrap().is_empty());
    assert!(matches!(store.record(&rid()), Err(Error::NotFound(_))));
    assert!(matches!(
        store.remove_record(&rid()),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn malformed_or_foreign_documents_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    assert!(store.put_assigned_record(b"not automerge").is_err());
    let mut empty = automerge::AutoCommit::new();
    assert!(matches!(
        store.put_assigned_record(&empty.save()),
        Err(Error::Malformed(_))
    ));
    assert!(store.list_tasks().unwrap().is_empty());
}

#[test]
fn pending_counts_queued_records_blobs_and_their_bytes_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_record(dir.path());
    assert!(
        store.pending().unwrap().is_empty(),
        "a record handed over is not pending"
    );
    store
        .edit(&rid(), |doc| doc.set_finding(&a01(), "待同步"))
        .unwrap();
    let photo = store
        .import_photo(&rid(), &a01(), &fixtures::jpeg(320, 240), "门头")
        .unwrap();
    let thumbnail = store.blob(&photo.thumbnail_sha256).unwrap().len() as u64;
    // Under the pixel budget: the original and its thumbnail go up.
    assert_eq!(
        store.pending().unwrap(),
        Pending {
            records: 1,
            blobs: 2,
            blob_bytes: photo.size + thumbnail,
        }
    );
    let outbox = store.outbox().unwrap();
    store.ack_outbox_all(&outbox).unwrap();
    assert!(store.pending().unwrap().is_empty());
}

#[test]
fn a_photo_imported_from_a_file_is_the_same_as_from_its_bytes_and_limits_still_hold() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_record(dir.path());
    let bytes = fixtures::jpeg(320, 240);
    let path = dir.path().join("camera.jpg");
    std::fs::write(&path, &bytes).unwrap();
    let photo = store
        .import_photo_file(&rid(), &a01(), &path, "门头")
        .unwrap();
    assert_eq!(photo.sha256, BlobHash::of(&bytes));
    assert_eq!(store.blob(&photo.sha256).unwrap(), bytes);
    assert_eq!(store.record(&rid()).unwrap().photos().unwrap(), vec![photo]);

    let missing = dir.path().join("gone.jpg");
    assert!(matches!(
        store.import_photo_file(&rid(), &a01(), &missing, "x"),
        Err(Error::NotFound(_))
    ));
    let not_a_photo = dir.path().join("notes.txt");
    std::fs::write(&not_a_photo, b"not a photo").unwrap();
    assert!(matches!(
        store.import_photo_file(&rid(), &a01(), &not_a_photo, "x"),
        Err(Error::UnsupportedImage(_))
    ));
    drop(store);
    let mut options = StoreOptions::new(insp(1));
    options.photos.max_bytes = 100;
    let small = Store::open(dir.path(), options).unwrap();
    assert!(matches!(
        small.import_photo_file(&rid(), &a01(), &path, "x"),
        Err(Error::PhotoTooLarge { limit: 100, .. })
    ));
    assert_eq!(small.record(&rid()).unwrap().photos().unwrap().len(), 1);
}

#[test]
fn a_removed_photo_leaves_the_record_outbox_and_disk_but_blobs_another_record_uses_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_record(dir.path());
    let other = RecordId::new("task-1/t-2");
    let mut doc = RecordDoc::create(&other, &sample_assignment()).unwrap();
    store.put_assigned_doc(&mut doc).unwrap();
    let mut options = store.options().clone();
    options.photos.pixel_budget = 100_000;
    drop(store);
    let store = Store::open(dir.path(), options).unwrap();

    let shared = fixtures::jpeg(160, 120);
    let big = fixtures::jpeg(800, 600);
    let kept = store.import_photo(&rid(), &a01(), &shared, "共用").unwrap();
    store.import_photo(&other, &a01(), &shared, "共用").unwrap();
    let gone = store.import_photo(&rid(), &a01(), &big, "全景").unwrap();
    let upload = gone.upload_sha256.clone().expect("over the budget");
    let blobs_queued = |store: &Store| -> Vec<BlobHash> {
        let mut hashes: Vec<BlobHash> = store
            .outbox()
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.item {
                OutboxItem::Blob(h) => Some(h),
                OutboxItem::Record(_) => None,
            })
            .collect();
        hashes.sort();
        hashes
    };

    store.remove_photo(&rid(), &gone.sha256).unwrap();
    store.remove_photo(&rid(), &kept.sha256).unwrap();
    let photos = |id: &RecordId| store.record(id).unwrap().photos().unwrap();
    assert!(photos(&rid()).is_empty());
    assert_eq!(photos(&other).len(), 1);
    for hash in [&gone.sha256, &gone.thumbnail_sha256, &upload] {
        assert!(store.blob_path(hash).is_err(), "file of {hash} removed");
    }
    let mut expected = vec![kept.sha256.clone(), kept.thumbnail_sha256.clone()];
    expected.sort();
    assert_eq!(
        blobs_queued(&store),
        expected,
        "the other record's photo still goes up"
    );
    assert_eq!(store.blob(&kept.sha256).unwrap(), shared);
    assert_eq!(store.list_tasks().unwrap()[0].photo_count, 0);
    assert!(matches!(
        store.remove_photo(&rid(), &gone.sha256),
        Err(Error::NotFound(_))
    ));
    // Reopened, the photo stays removed.
    drop(store);
    let store = open(dir.path(), 1);
    assert!(store.record(&rid()).unwrap().photos().unwrap().is_empty());
}

#[test]
fn a_kept_session_survives_reopening_takes_refreshed_tokens_and_is_forgotten() {
    use crate::sync::client::Credentials;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    assert_eq!(store.session().unwrap(), None);
    let tokens = |a: &str, r: &str| Credentials {
        access_token: a.into(),
        refresh_token: r.into(),
    };
    // Tokens refreshed without a kept session (a logout while a sync ran) are not kept.
    store.keep_credentials(&tokens("a0", "r0")).unwrap();
    assert_eq!(store.session().unwrap(), None);
    let session = Session {
        server_url: "https://suiji.example".into(),
        credentials: tokens("a1", "r1"),
    };
    store.keep_session(&session).unwrap();
    store.keep_credentials(&tokens("a2", "r2")).unwrap();
    drop(store);
    let store = open(dir.path(), 1);
    assert_eq!(
        store.session().unwrap(),
        Some(Session {
            credentials: tokens("a2", "r2"),
            ..session
        })
    );
    store.forget_session().unwrap();
    assert_eq!(store.session().unwrap(), None);
}
