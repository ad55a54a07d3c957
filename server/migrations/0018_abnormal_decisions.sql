-- Decisions on 经营异常名录 candidates (#20): a supervisor lists a candidate's target or
-- decides not to, and later removes a listed target once the party has corrected. A
-- candidate's `status` follows: pending → listed | not_listed, listed → removed. Every
-- decision is kept here (and in the audit log); none is edited or deleted.
CREATE TABLE abnormal_decisions (
    id           INTEGER PRIMARY KEY,
    candidate_id INTEGER NOT NULL REFERENCES abnormal_candidates(id),
    target_id    INTEGER NOT NULL REFERENCES targets(id),
    decision     TEXT NOT NULL CHECK (decision IN ('list', 'not_list', 'remove')),
    reason       TEXT NOT NULL CHECK (length(reason) BETWEEN 1 AND 2000),
    -- China date of the decision, and whether it came after the candidate's deadline
    -- (abnormal_list_days working days after verification).
    decided_on   TEXT NOT NULL,
    late         INTEGER NOT NULL CHECK (late IN (0, 1)),
    decided_by   INTEGER NOT NULL REFERENCES users(id),
    created_at   TEXT NOT NULL
) STRICT;
CREATE INDEX abnormal_decisions_target ON abnormal_decisions(target_id);

CREATE TRIGGER abnormal_decisions_no_update BEFORE UPDATE ON abnormal_decisions
BEGIN SELECT RAISE(ABORT, 'abnormal decisions are never edited'); END;
CREATE TRIGGER abnormal_decisions_no_delete BEFORE DELETE ON abnormal_decisions
BEGIN SELECT RAISE(ABORT, 'abnormal decisions are never deleted'); END;

-- Since when a target is on the 经营异常名录 by a decision here, and the record it came from.
-- Both NULL while it is not listed, or when the flag came from the registry's own import.
ALTER TABLE targets ADD COLUMN abnormal_listed_on TEXT;
ALTER TABLE targets ADD COLUMN abnormal_source_record TEXT REFERENCES records(id);
