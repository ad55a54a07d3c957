-- The draw (commitments, immutable draw records) and the inspection records it
-- creates: one automerge document per drawn (task, target), stored as chunks.

CREATE TABLE draw_commitments (
    id                    INTEGER PRIMARY KEY,
    task_id               INTEGER NOT NULL REFERENCES tasks(id),
    algorithm             TEXT NOT NULL,
    secret                TEXT NOT NULL,   -- hex; revealed in the draw record
    secret_sha256         TEXT NOT NULL,
    params                TEXT NOT NULL,   -- JSON
    params_sha256         TEXT NOT NULL,
    target_pool           TEXT NOT NULL,   -- JSON array, sorted by uscc
    target_pool_sha256    TEXT NOT NULL,
    target_count          INTEGER NOT NULL,
    inspector_pool        TEXT NOT NULL,   -- JSON array, sorted by id
    inspector_pool_sha256 TEXT NOT NULL,
    inspector_count       INTEGER NOT NULL,
    committed_at          TEXT NOT NULL,
    committed_by          TEXT NOT NULL,
    superseded_at         TEXT,
    used_at               TEXT
) STRICT;
CREATE INDEX draw_commitments_task ON draw_commitments(task_id);

CREATE TABLE draws (
    id            INTEGER PRIMARY KEY,
    task_id       INTEGER NOT NULL REFERENCES tasks(id),
    commitment_id INTEGER REFERENCES draw_commitments(id),
    parent_id     INTEGER REFERENCES draws(id),
    kind          TEXT NOT NULL CHECK (kind IN ('initial', 'redraw')),
    reason        TEXT,
    seed          TEXT NOT NULL,
    record        TEXT NOT NULL,  -- the full draw record, JSON
    record_sha256 TEXT NOT NULL,
    drawn_at      TEXT NOT NULL,
    drawn_by      TEXT NOT NULL,
    published_at  TEXT
) STRICT;
CREATE UNIQUE INDEX draws_one_initial_per_task ON draws(task_id) WHERE kind = 'initial';

-- A draw record is never edited or removed; only its publication time is set.
CREATE TRIGGER draws_immutable BEFORE UPDATE OF task_id, commitment_id, parent_id, kind,
    reason, seed, record, record_sha256, drawn_at, drawn_by ON draws
BEGIN
    SELECT RAISE(ABORT, 'draw records are immutable');
END;
CREATE TRIGGER draws_undeletable BEFORE DELETE ON draws
BEGIN
    SELECT RAISE(ABORT, 'draw records are immutable');
END;

CREATE TABLE records (
    id               TEXT PRIMARY KEY,
    task_id          INTEGER NOT NULL REFERENCES tasks(id),
    target_id        INTEGER NOT NULL REFERENCES targets(id),
    draw_id          INTEGER NOT NULL REFERENCES draws(id),
    target_name      TEXT NOT NULL,
    deadline         TEXT NOT NULL,  -- publication deadline (YYYY-MM-DD)
    created_at       TEXT NOT NULL,
    withdrawn_at     TEXT,
    withdrawn_reason TEXT
) STRICT;
CREATE INDEX records_task ON records(task_id);
CREATE INDEX records_target ON records(target_id);

-- The current inspector group of each record.
CREATE TABLE record_inspectors (
    record_id    TEXT NOT NULL REFERENCES records(id),
    inspector_id INTEGER NOT NULL REFERENCES inspectors(id),
    lead         INTEGER NOT NULL,
    PRIMARY KEY (record_id, inspector_id)
) STRICT;
CREATE INDEX record_inspectors_inspector ON record_inspectors(inspector_id);

-- A record document: a snapshot followed by incremental automerge chunks.
CREATE TABLE record_chunks (
    record_id TEXT NOT NULL REFERENCES records(id),
    seq       INTEGER NOT NULL,
    bytes     BLOB NOT NULL,
    PRIMARY KEY (record_id, seq)
) STRICT;
