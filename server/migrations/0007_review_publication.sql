-- Review, publication and outcomes (一抽查一公示): the review index of records,
-- published results (versioned; a correction is a new version), what
-- publication feeds back to the target, and admin-loaded holiday schedules.

-- The review index: columns derived from each record's document, kept so
-- that queues and statistics never load documents. `index_stale` is set by
-- the trigger below whenever a record takes a new change, and cleared by
-- `review::refresh_record_index`.
ALTER TABLE records ADD COLUMN review_state TEXT NOT NULL DEFAULT 'open';
ALTER TABLE records ADD COLUMN review_round INTEGER NOT NULL DEFAULT 0;
ALTER TABLE records ADD COLUMN submitted_at TEXT;          -- last accepted submission (RFC 3339)
ALTER TABLE records ADD COLUMN inspection_ended_on TEXT;   -- first accepted submission (YYYY-MM-DD, China time)
ALTER TABLE records ADD COLUMN has_conflicts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE records ADD COLUMN approved_at TEXT;
ALTER TABLE records ADD COLUMN published_at TEXT;
ALTER TABLE records ADD COLUMN index_stale INTEGER NOT NULL DEFAULT 0;
CREATE INDEX records_review_state ON records(review_state);
CREATE INDEX records_index_stale ON records(index_stale) WHERE index_stale = 1;

-- Seq 0 is the creation snapshot (review state open, matching the defaults)
-- or a compaction snapshot written right after an incremental chunk.
CREATE TRIGGER record_chunks_mark_stale AFTER INSERT ON record_chunks WHEN NEW.seq > 0
BEGIN
    UPDATE records SET index_stale = 1 WHERE id = NEW.record_id;
END;

-- One published result per record; its content lives in versions.
CREATE TABLE published_results (
    id                 INTEGER PRIMARY KEY,
    record_id          TEXT NOT NULL UNIQUE REFERENCES records(id),
    task_id            INTEGER NOT NULL REFERENCES tasks(id),
    target_id          INTEGER NOT NULL REFERENCES targets(id),
    target_name        TEXT NOT NULL,
    uscc               TEXT NOT NULL,
    current_version    INTEGER NOT NULL,
    first_published_at TEXT NOT NULL,
    first_published_on TEXT NOT NULL   -- YYYY-MM-DD, China time
) STRICT;
CREATE INDEX published_results_task ON published_results(task_id);
CREATE INDEX published_results_target ON published_results(target_id);

-- Every version of a published result, as the public saw it. Never edited
-- or removed: a correction adds a version and marks the old one corrected.
CREATE TABLE result_versions (
    result_id    INTEGER NOT NULL REFERENCES published_results(id),
    version      INTEGER NOT NULL,
    content      TEXT NOT NULL,      -- JSON: the public fields
    published_at TEXT NOT NULL,
    published_by TEXT NOT NULL,
    reason       TEXT,               -- why this version corrects the previous one
    corrected_at TEXT,               -- when a later version replaced it
    PRIMARY KEY (result_id, version)
) STRICT;
CREATE TRIGGER result_versions_immutable BEFORE UPDATE OF result_id, version, content,
    published_at, published_by, reason ON result_versions
BEGIN
    SELECT RAISE(ABORT, 'published result versions are immutable');
END;
CREATE TRIGGER result_versions_undeletable BEFORE DELETE ON result_versions
BEGIN
    SELECT RAISE(ABORT, 'published result versions are immutable');
END;

-- What the last published inspection says about a target.
ALTER TABLE targets ADD COLUMN last_inspected_on TEXT;
ALTER TABLE targets ADD COLUMN last_result TEXT;          -- statutory wording, joined with '；'
ALTER TABLE targets ADD COLUMN last_result_codes TEXT;    -- JSON array of result codes
ALTER TABLE targets ADD COLUMN last_record_id TEXT;

-- Targets to put on the 经营异常名录: found unreachable at the registered
-- address or to have falsified publicity. The deadline (abnormal_list_days
-- working days after verified_on) is computed when read.
CREATE TABLE abnormal_candidates (
    id          INTEGER PRIMARY KEY,
    target_id   INTEGER NOT NULL REFERENCES targets(id),
    record_id   TEXT NOT NULL REFERENCES records(id),
    result_id   INTEGER NOT NULL REFERENCES published_results(id),
    category    TEXT NOT NULL CHECK (category IN ('unreachable', 'false_publicity')),
    verified_on TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    created_at  TEXT NOT NULL,
    UNIQUE (record_id, category)
) STRICT;

-- Follow-ups ordered by a published result (责令改正 with its deadline, referrals).
CREATE TABLE follow_ups (
    id         INTEGER PRIMARY KEY,
    record_id  TEXT NOT NULL UNIQUE REFERENCES records(id),
    target_id  INTEGER NOT NULL REFERENCES targets(id),
    measure    TEXT NOT NULL,
    deadline   TEXT,
    detail     TEXT,
    status     TEXT NOT NULL DEFAULT 'open',
    created_at TEXT NOT NULL
) STRICT;

-- Holiday schedules loaded by an admin (holiday-cn JSON), applied over the
-- shipped ones at every start.
CREATE TABLE calendar_years (
    year      INTEGER PRIMARY KEY,
    json      TEXT NOT NULL,
    loaded_at TEXT NOT NULL,
    loaded_by TEXT NOT NULL
) STRICT;
