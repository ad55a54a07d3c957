-- SQLite migration 0023: chunked uploads staged for an S3-compatible blob store.
CREATE TABLE blob_staging (
    sha256       TEXT NOT NULL,
    chunk_offset BIGINT NOT NULL CHECK (chunk_offset >= 0),
    bytes        BYTEA NOT NULL,
    total        BIGINT NOT NULL CHECK (total >= 0),
    staged_at    TEXT NOT NULL,
    PRIMARY KEY (sha256, chunk_offset)
);
