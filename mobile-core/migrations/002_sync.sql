-- suiji phone store, schema 2: syncing with the server. Shipped migrations are never edited.

-- Each record's current heads (sorted hex change hashes, comma-separated), kept in step with
-- the document like the rest of the row, so a sync can list what the phone holds and tell which
-- records have nothing new without loading their documents. NULL for rows written before
-- this migration until their next save.
ALTER TABLE records ADD COLUMN heads TEXT;

-- The persistent part of each record's automerge sync state with the server
-- (`automerge::sync::State::encode`: the heads both sides are known to hold). Written only
-- together with the round that advanced it, so a failed round leaves it as it was.
CREATE TABLE sync_states (
    record_id TEXT PRIMARY KEY REFERENCES records (record_id) ON DELETE CASCADE,
    state     BLOB NOT NULL
) STRICT;

-- Records whose changes the server refused at the last sync, with the rule it named, shown
-- in the task list until a later sync of the record goes through.
CREATE TABLE sync_refusals (
    record_id  TEXT PRIMARY KEY REFERENCES records (record_id) ON DELETE CASCADE,
    rule       TEXT NOT NULL,
    message    TEXT NOT NULL,
    refused_at TEXT NOT NULL
) STRICT;
