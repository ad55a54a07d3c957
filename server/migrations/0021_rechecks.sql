-- 复查 (#20): a follow-up ordering 责令改正 with a deadline is rechecked, once due, by a
-- task of its own: directed, one record, the original group unless recused, never drawn.
-- The recheck's published result closes the follow-up: `follow_ups.status` goes
-- open → rechecking → corrected | not_corrected | ended (the party closed or left the
-- register), and back to `rechecking` only while a correction of the result is pending.
CREATE TABLE rechecks (
    task_id            INTEGER PRIMARY KEY REFERENCES tasks(id),
    follow_up_id       INTEGER NOT NULL UNIQUE REFERENCES follow_ups(id),
    record_id          TEXT NOT NULL UNIQUE REFERENCES records(id),
    original_record_id TEXT NOT NULL REFERENCES records(id),
    created_at         TEXT NOT NULL,
    created_by         TEXT NOT NULL,
    -- Set when the recheck's result is published (and again when it is corrected).
    outcome            TEXT CHECK (outcome IN ('corrected', 'not_corrected', 'ended')),
    closed_at          TEXT
) STRICT;
CREATE INDEX rechecks_original ON rechecks(original_record_id);

CREATE TRIGGER rechecks_fixed BEFORE UPDATE OF task_id, follow_up_id, record_id,
    original_record_id, created_at, created_by ON rechecks
BEGIN SELECT RAISE(ABORT, 'a recheck''s origin is never edited'); END;
CREATE TRIGGER rechecks_no_delete BEFORE DELETE ON rechecks
BEGIN SELECT RAISE(ABORT, 'rechecks are never deleted'); END;
