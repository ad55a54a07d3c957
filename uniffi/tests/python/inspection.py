"""A whole inspection driven from Python through the generated uniffi bindings.

Run by uniffi/tests/bindings.rs as:
    python3 inspection.py <bindings dir> <record file> <jpeg file> <store dir> <png file> <partner store dir>
The bindings dir holds the generated suiji_uniffi.py and the built library beside it.
The two inspectors sign on their own stores; the record travels between them as saved bytes,
as the server would relay it.
"""

import gc
import socket
import sys

bindings_dir, record_path, jpeg_path, store_dir, png_path, partner_dir = sys.argv[1:7]
sys.path.insert(0, bindings_dir)

import suiji_uniffi as suiji  # noqa: E402


def expect_error(kind, fn, *args):
    try:
        fn(*args)
    except kind:
        return
    raise AssertionError(f"expected {kind.__name__} from {fn.__name__}{args!r}")


def inspect():
    with open(record_path, "rb") as f:
        record_bytes = f.read()
    with open(jpeg_path, "rb") as f:
        jpeg = f.read()

    store = suiji.MobileStore.open(store_dir, "insp-1")
    record_id = store.put_assigned_record(record_bytes)
    tasks = store.list_tasks()
    assert [t.record_id for t in tasks] == [record_id], tasks
    assert tasks[0].status == suiji.ReviewState.OPEN
    assert tasks[0].target_name == "上海某某贸易有限公司"

    record = store.record(record_id)
    assignment = record.assignment()
    assert assignment.target_uscc == "91310000MA1FL0000X"
    assert [i.inspector_id for i in assignment.inspectors] == ["insp-1", "insp-2"]

    # Answer every item; the vocabularies cross as enums.
    items = record.items()
    assert [i.code for i in items] == ["A01", "A02"]
    assert [i.foreseen_methods for i in items] == [
        [suiji.Method.DOCUMENTARY], [suiji.Method.ON_SITE]
    ], items
    assert [m.method for m in suiji.methods()][:2] == [suiji.Method.ON_SITE, suiji.Method.DOCUMENTARY]
    assert {s.state: s.label for s in suiji.review_states()}[suiji.ReviewState.RETURNED] == "已退回"
    for item in items:
        record.set_checked(item.code, True)
        record.set_methods(item.code, [suiji.Method.ON_SITE, suiji.Method.DOCUMENTARY])
        record.set_finding(item.code, f"{item.name}：未发现问题")
    record.set_disposition("A01", "当场指出年报填报错误")
    record.set_result_categories([suiji.ResultCategory.RECTIFIED])
    record.set_follow_up(suiji.FollowUpMeasure.ORDER_RECTIFICATION, "2025-08-01", "限期三十日改正")

    # Errors cross as the flat enum.
    expect_error(suiji.SuijiError.InvalidInput, record.set_follow_up, suiji.FollowUpMeasure.NO_FOLLOW_UP, "soon", None)
    expect_error(suiji.SuijiError.NotFound, record.set_finding, "Z99", "x")
    expect_error(suiji.SuijiError.NotFound, store.record, "no-such-record")
    expect_error(suiji.SuijiError.InvalidInput, record.import_photo, "A01", b"not a photo", "x")

    # A real JPEG with EXIF, imported from its file, and a note about a witnessed document copy.
    expect_error(suiji.SuijiError.NotFound, record.import_photo_file, "A01", jpeg_path + ".gone", "x")
    photo = record.import_photo_file("A01", jpeg_path, "经营场所门头")
    assert photo.mime == "image/jpeg"
    assert photo.captured_at == "2025-05-02T10:31:07", photo.captured_at
    assert abs(photo.latitude - 31.2304) < 1e-4 and abs(photo.longitude - 121.4737) < 1e-4
    assert photo.taken_by == "insp-1"
    note = record.add_note("A01", "营业执照复印件一份，当事人签字确认", [photo.sha256], True, "赵六")
    assert note.witness == "赵六" and note.document_copy
    # A photo taken by mistake is removed again, with its queued uploads.
    queued = store.pending()
    with open(png_path, "rb") as f:
        mistake = record.import_photo("A02", f.read(), "误拍")
    assert store.pending().blobs > queued.blobs
    record.remove_photo(mistake.sha256)
    assert [p.sha256 for p in record.photos()] == [photo.sha256]
    assert store.pending() == queued, (store.pending(), queued)
    expect_error(suiji.SuijiError.NotFound, store.blob_path, mistake.sha256)

    # Not complete yet: submit says why and changes nothing.
    result = record.submit()
    assert not result.submitted
    assert {m.code for m in result.missing} == {"inspector_signatures"}, result.missing
    assert record.status() == suiji.ReviewState.OPEN

    with open(png_path, "rb") as f:
        png = f.read()
    record.set_party_statement("对检查结果无异议")
    expect_error(suiji.SuijiError.InvalidInput, record.party_sign, "张三", "法定代表人", jpeg)
    record.party_sign("张三", "法定代表人", png)
    record.sign(None)
    # The partner has not logged in on this phone: they cannot sign here.
    expect_error(suiji.SuijiError.Unauthorized, record.sign_for, "insp-2", None)

    # The partner signs on their own store, with a handwritten image, and the copies merge.
    partner = suiji.MobileStore.open(partner_dir, "insp-2")
    partner.put_assigned_record(record.export())
    partner_record = partner.record(record_id)
    partner_record.sign(png)
    store.put_assigned_record(partner_record.export())
    assert sorted(record.signed_by()) == ["insp-1", "insp-2"]
    assert record.missing() == []

    keys = store.signers() + partner.signers()
    assert [k.inspector_id for k in keys] == ["insp-1", "insp-2"], keys
    checks = {c.inspector_id: c for c in record.check_signatures(keys)}
    assert {i: c.status for i, c in checks.items()} == {"insp-1": "valid", "insp-2": "valid"}
    assert checks["insp-2"].image_sha256 is not None and checks["insp-1"].image_sha256 is None
    assert partner.blob(checks["insp-2"].image_sha256) == png
    # Without the partner's key, their signature does not check.
    only_mine = {c.inspector_id: c for c in record.check_signatures(store.signers())}
    assert only_mine["insp-2"].status == "invalid" and "not registered" in only_mine["insp-2"].reason
    result = record.submit()
    assert result.submitted and result.round == 1, result
    assert record.status() == suiji.ReviewState.SUBMITTED
    expect_error(suiji.SuijiError.Conflict, record.set_finding, "A01", "too late")

    kinds = sorted({row.kind for row in store.outbox()})
    assert kinds == ["blob", "record"], kinds
    assert not hasattr(store, "ack_outbox"), "an app cannot drop queued uploads"
    pending = store.pending()
    assert pending.records == 1 and pending.blobs >= 2 and pending.blob_bytes > len(jpeg), pending
    return record_id, photo, note, jpeg


def reopen_and_check(record_id, photo, note, jpeg):
    store = suiji.MobileStore.open(store_dir, "insp-1")
    [task] = store.list_tasks()
    assert task.record_id == record_id
    assert task.status == suiji.ReviewState.SUBMITTED
    assert (task.items_total, task.items_answered, task.photo_count) == (2, 2, 1)
    record = store.record(record_id)
    items = {i.code: i for i in record.items()}
    assert items["A01"].checked is True
    assert items["A01"].methods == [suiji.Method.ON_SITE, suiji.Method.DOCUMENTARY]
    assert items["A01"].disposition == "当场指出年报填报错误"
    assert items["A02"].finding.endswith("未发现问题")
    assert record.result_categories() == [suiji.ResultCategory.RECTIFIED]
    follow_up = record.follow_up()
    assert (follow_up.measure, follow_up.deadline) == (
        suiji.FollowUpMeasure.ORDER_RECTIFICATION, "2025-08-01"
    )
    assert record.party_statement() == "对检查结果无异议"
    assert record.party_signature_kind() == "signed"
    [stored_photo] = record.photos()
    assert stored_photo.sha256 == photo.sha256 and stored_photo.caption == "经营场所门头"
    assert store.blob(photo.sha256) == jpeg
    [stored_note] = record.notes()
    assert stored_note.id == note.id and stored_note.photos == [photo.sha256]
    assert sorted(record.signed_by()) == ["insp-1", "insp-2"]
    assert [c.status for c in record.check_signatures(store.signers() + [
        suiji.SignerKey(inspector_id="insp-2", public_key=k.public_key, registered=True)
        for k in suiji.MobileStore.open(partner_dir, "insp-2").signers()
    ])] == ["valid", "valid"]
    assert record.review().state == suiji.ReviewState.OPEN  # the server has not acknowledged yet
    assert record.conflicts() == []
    assert task.refused_rule is None and task.refused_message is None
    expect_error(suiji.SuijiError.Conflict, suiji.MobileStore.open, store_dir, "insp-9")
    sync_with_no_server(store)


class Listener(suiji.SyncListener):
    def __init__(self):
        self.progress = []

    def on_progress(self, progress):
        self.progress.append(progress)

    def is_cancelled(self):
        return False


def sync_with_no_server(store):
    outbox = store.outbox()
    listener = Listener()
    # Not logged in: nothing to sync with, and logging out has nothing to revoke.
    assert store.logged_in_server() is None
    expect_error(suiji.SuijiError.Unauthorized, store.sync, listener)
    expect_error(suiji.SuijiError.Unauthorized, store.sync)
    assert store.logout() is False

    # A port nobody listens on: the login fails as a network error and keeps nothing.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    expect_error(suiji.SuijiError.Network, store.login, f"http://127.0.0.1:{port}", "insp", "pw")
    expect_error(suiji.SuijiError.InvalidInput, store.login, "ftp://example.invalid", "insp", "pw")
    # A server that takes the connection and never answers: the read timeout ends the login.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = "http://127.0.0.1:%d" % silent.getsockname()[1]
        quick = suiji.SyncOptions(connect_timeout_ms=1000, io_timeout_ms=300)
        expect_error(suiji.SuijiError.Network, store.login, url, "insp", "pw", quick)
    assert store.logged_in_server() is None
    assert store.outbox() == outbox and listener.progress == []


ids = inspect()
gc.collect()  # drop the first store's objects before reopening
reopen_and_check(*ids)
print("python inspection: ok")
