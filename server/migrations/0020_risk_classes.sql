-- Risk classes follow outcomes (#20). The rules say how: problems found make a target one
-- class riskier, a run of clean inspections one class lower, a 严重违法失信 listing D.
ALTER TABLE rules ADD COLUMN risk_raise_on_problems INTEGER NOT NULL DEFAULT 1
    CHECK (risk_raise_on_problems IN (0, 1));
ALTER TABLE rules ADD COLUMN risk_lower_after_clean INTEGER NOT NULL DEFAULT 3
    CHECK (risk_lower_after_clean BETWEEN 0 AND 20);
ALTER TABLE rules ADD COLUMN risk_serious_to_d INTEGER NOT NULL DEFAULT 1
    CHECK (risk_serious_to_d IN (0, 1));

-- A target's class is its anchor class with the outcomes of its results published after
-- `risk_anchor_after` (a published_results id) applied in order (server/src/review/risk.rs).
-- The anchor is set at the first outcome and reset whenever the registry sets the class by
-- hand (trigger below), so a class set by hand is where counting starts again.
ALTER TABLE targets ADD COLUMN risk_anchor_class TEXT
    CHECK (risk_anchor_class IN ('A', 'B', 'C', 'D'));
ALTER TABLE targets ADD COLUMN risk_anchor_after INTEGER;
-- Bumped by every change the outcomes make, so the trigger tells them from the registry's.
ALTER TABLE targets ADD COLUMN risk_auto_seq INTEGER NOT NULL DEFAULT 0;

-- Every change of a target's class, never edited or deleted.
CREATE TABLE risk_class_history (
    id         INTEGER PRIMARY KEY,
    target_id  INTEGER NOT NULL REFERENCES targets(id),
    from_class TEXT NOT NULL CHECK (from_class IN ('A', 'B', 'C', 'D')),
    to_class   TEXT NOT NULL CHECK (to_class IN ('A', 'B', 'C', 'D')),
    -- published: a result was published; corrected: a result was corrected;
    -- registry: set by hand (edit or import).
    reason     TEXT NOT NULL CHECK (reason IN ('published', 'corrected', 'registry')),
    -- What moved it: the outcome rule applied (problems, clean_run, serious) for outcomes.
    rule       TEXT,
    result_id  INTEGER REFERENCES published_results(id),
    record_id  TEXT REFERENCES records(id),
    at         TEXT NOT NULL
) STRICT;
CREATE INDEX risk_class_history_target ON risk_class_history(target_id);
CREATE TRIGGER risk_class_history_no_update BEFORE UPDATE ON risk_class_history
BEGIN SELECT RAISE(ABORT, 'risk class history is never edited'); END;
CREATE TRIGGER risk_class_history_no_delete BEFORE DELETE ON risk_class_history
BEGIN SELECT RAISE(ABORT, 'risk class history is never deleted'); END;

CREATE TRIGGER targets_risk_set_by_registry AFTER UPDATE OF risk_class ON targets
WHEN NEW.risk_class IS NOT OLD.risk_class AND NEW.risk_auto_seq = OLD.risk_auto_seq
BEGIN
    UPDATE targets SET risk_anchor_class = NULL, risk_anchor_after = NULL WHERE id = NEW.id;
    INSERT INTO risk_class_history (target_id, from_class, to_class, reason, at)
    VALUES (NEW.id, OLD.risk_class, NEW.risk_class, 'registry',
            strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;
