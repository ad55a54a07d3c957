-- Blob read rights from what the server itself recorded, not from what phones wrote.
--
-- `blob_uploaders`: every account that proved it holds a blob's bytes, by uploading bytes
-- that hash to its name (a chunked upload it completed, or a batch upload). An upload of a
-- blob the server already holds whole proves nothing and is not recorded.
--
-- `record_blobs.inspector_id`: the inspector whose phone first sent the record's reference to
-- the blob. A reference binds the blob to its record (its readers may download the blob) only
-- when that inspector's account is among the blob's uploaders.
CREATE TABLE blob_uploaders (
    sha256      TEXT NOT NULL,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    uploaded_at TEXT NOT NULL,
    PRIMARY KEY (sha256, user_id)
) STRICT;

INSERT INTO blob_uploaders (sha256, user_id, uploaded_at)
    SELECT sha256, uploaded_by, created_at FROM blobs WHERE uploaded_by IS NOT NULL;

ALTER TABLE record_blobs ADD COLUMN inspector_id INTEGER REFERENCES inspectors(id);

-- Who wrote the references made so far was not recorded. One counts as the uploader's own
-- when the uploader's inspector was ever in that record's group: the photo's own record.
-- References in records of other groups (a borrowed hash) stay unbound.
UPDATE record_blobs SET inspector_id = (
    SELECT i.id FROM blobs b
    JOIN inspectors i ON i.user_id = b.uploaded_by
    JOIN record_assignment_history h ON h.inspector_id = i.id AND h.record_id = record_blobs.record_id
    WHERE b.sha256 = record_blobs.sha256
);
