-- Content-addressed blobs (photos, thumbnails, upload copies), which records
-- reference which blob, and the automerge sync state kept per (record, device).

CREATE TABLE blobs (
    sha256      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    uploaded_by INTEGER REFERENCES users(id),
    created_at  TEXT NOT NULL
) STRICT;

-- Filled from the photo metadata of record documents as they are stored.
CREATE TABLE record_blobs (
    record_id TEXT NOT NULL REFERENCES records(id),
    sha256    TEXT NOT NULL,
    PRIMARY KEY (record_id, sha256)
) STRICT;
CREATE INDEX record_blobs_sha ON record_blobs(sha256);

CREATE TABLE sync_states (
    record_id TEXT NOT NULL REFERENCES records(id),
    device    TEXT NOT NULL,
    state     BLOB NOT NULL,
    PRIMARY KEY (record_id, device)
) STRICT;

-- Every inspector ever in a record's group: a phone whose inspector was
-- regrouped out is told to drop the record, not refused as a stranger.
CREATE TABLE record_assignment_history (
    record_id    TEXT NOT NULL REFERENCES records(id),
    inspector_id INTEGER NOT NULL REFERENCES inspectors(id),
    PRIMARY KEY (record_id, inspector_id)
) STRICT;
CREATE INDEX record_assignment_history_inspector ON record_assignment_history(inspector_id);
