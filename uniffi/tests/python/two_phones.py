"""Two inspectors' phones driven from Python through the generated uniffi bindings, against a
real server that uniffi/tests/server.rs starts: offline edits on both, a same-field conflict
shown on both and settled, each inspector signs on their own phone, submit, the supervisor
returns it, both see why, fix, sign again, resubmit.

Run as:
    python3 two_phones.py <bindings dir> <server url> <password> <record id>
        <user a> <inspector a> <store a> <user b> <inspector b> <store b>
Between steps it prints `STEP <name>` and waits for a line `go` on stdin, while the test does
what the supervisor does.
"""

import sys

(bindings_dir, url, password, record_id,
 user_a, inspector_a, store_a, user_b, inspector_b, store_b) = sys.argv[1:11]
sys.path.insert(0, bindings_dir)

import suiji_uniffi as suiji  # noqa: E402


def step(name):
    print(f"STEP {name}", flush=True)
    line = sys.stdin.readline().strip()
    assert line == "go", f"unexpected {line!r} at step {name}"


class Phone:
    def __init__(self, username, inspector_id, store_dir):
        # The store keeps the session: one login, then syncs without tokens.
        self.store = suiji.MobileStore.open(store_dir, inspector_id)
        self.store.login(url, username, password, None)

    def sync(self):
        report = self.store.sync(None, None)
        assert report.complete, report
        return report

    def record(self):
        return self.store.record(record_id)


def both_sync(a, b):
    """A, then B, then A again: both end with everything either had."""
    a.sync()
    b.sync()
    a.sync()


a = Phone(user_a, inspector_a, store_a)
b = Phone(user_b, inspector_b, store_b)
for phone in (a, b):
    report = phone.sync()
    assert record_id in report.new_records, report
ra, rb = a.record(), b.record()
items = ra.items()
first = items[0].code

# Offline on both: different fields, and the same field with different answers.
for item in items:
    ra.set_checked(item.code, True)
    ra.set_methods(item.code, item.foreseen_methods)
    ra.set_finding(item.code, "证照齐全")
rb.set_finding(first, "健康证过期")
rb.set_party_statement("对检查结果无异议")
both_sync(a, b)

# The conflict shows on both phones, with both answers and who wrote them.
for phone, record in ((a, ra), (b, rb)):
    conflicts = [c for c in record.conflicts() if c.item == first]
    assert len(conflicts) == 1, record.conflicts()
    values = sorted(v.value for v in conflicts[0].values)
    assert values == sorted(["证照齐全", "健康证过期"]), values
    assert {v.inspector_id for v in conflicts[0].values} == {inspector_a, inspector_b}
assert rb.party_statement() == "对检查结果无异议" and ra.party_statement() == "对检查结果无异议"

# A settles it by writing the answer again; both see it settled.
ra.set_finding(first, "健康证过期，已当场责令改正")
ra.set_result_categories([suiji.ResultCategory.NO_PROBLEM])
ra.set_follow_up(suiji.FollowUpMeasure.NO_FOLLOW_UP, None, None)
both_sync(a, b)
for record in (ra, rb):
    assert record.conflicts() == [], record.conflicts()
    assert {i.code: i.finding for i in record.items()}[first] == "健康证过期，已当场责令改正"


def sign_and_submit(round_):
    ra.sign(None)
    a.sync()
    b.sync()
    rb.sign(None)
    b.sync()
    a.sync()
    assert sorted(ra.signed_by()) == sorted([inspector_a, inspector_b]), ra.signed_by()
    result = ra.submit()
    assert result.submitted and result.round == round_, result
    a.sync()


# Each inspector signs on their own phone; A submits.
sign_and_submit(1)
step("submitted")  # the supervisor returns it

# Both phones see the return and why.
a.sync()
b.sync()
for record in (ra, rb):
    review = record.review()
    assert review.state == suiji.ReviewState.RETURNED, review
    print(f"RETURNED {review.last_comment}", flush=True)

# B fixes the finding; the record changed, so both sign again; A resubmits.
rb.set_finding(first, "健康证过期，已当场责令改正，复印件存档")
b.sync()
a.sync()
sign_and_submit(2)
step("resubmitted")
b.sync()
assert rb.status() == suiji.ReviewState.SUBMITTED, rb.status()
print("python two phones: ok")
