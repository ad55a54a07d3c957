-- suiji phone store, schema 1. Shipped migrations are never edited; add 002_*.sql instead.

-- Who this store belongs to and the random device part of its automerge actor id.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- What the task list screen shows, kept in step with each record document on every save,
-- so that listing never loads a document.
CREATE TABLE records (
    record_id            TEXT PRIMARY KEY,
    task_name            TEXT NOT NULL,
    target_name          TEXT NOT NULL,
    target_address       TEXT NOT NULL,
    window_end           TEXT NOT NULL,
    publication_deadline TEXT NOT NULL,
    status               TEXT NOT NULL,
    items_total          INTEGER NOT NULL,
    items_answered       INTEGER NOT NULL,
    photo_count          INTEGER NOT NULL,
    conflict_count       INTEGER NOT NULL,
    updated_at           TEXT NOT NULL
) STRICT;
CREATE INDEX records_by_window_end ON records (window_end, record_id);

-- Each record document as automerge chunks: a snapshot followed by incremental saves.
-- Loading concatenates them in seq order. Compaction replaces them with one snapshot.
CREATE TABLE record_chunks (
    record_id TEXT NOT NULL REFERENCES records (record_id) ON DELETE CASCADE,
    seq       INTEGER NOT NULL,
    bytes     BLOB NOT NULL,
    PRIMARY KEY (record_id, seq)
) STRICT;

-- Photos attached to records, for photo lists without loading documents.
CREATE TABLE photos (
    record_id        TEXT NOT NULL REFERENCES records (record_id) ON DELETE CASCADE,
    sha256           TEXT NOT NULL,
    item_code        TEXT NOT NULL,
    caption          TEXT NOT NULL,
    thumbnail_sha256 TEXT NOT NULL,
    upload_sha256    TEXT,
    imported_at      TEXT NOT NULL,
    PRIMARY KEY (record_id, sha256)
) STRICT;

-- Blobs in the content-addressed directory beside this file.
CREATE TABLE blobs (
    sha256     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    mime       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('original', 'thumbnail', 'upload')),
    created_at TEXT NOT NULL
) STRICT;

-- What still has to go to the server. One row per record or blob; a record changed again
-- while queued bumps its generation so that an upload of an older state does not dequeue it.
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL CHECK (kind IN ('record', 'blob')),
    key        TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 1,
    queued_at  TEXT NOT NULL,
    UNIQUE (kind, key)
) STRICT;
