-- Chunked uploads staged for a blob store that cannot append to an object (S3-compatible
-- storage): each chunk as it arrived, in order, until its upload is committed (then the
-- object is written and the rows deleted) or found not to match its name (then the rows
-- are deleted). Kept in the database so that every server behind one address sees the same
-- staged bytes and a phone may resume through any of them. The file-system store stages in
-- its own directory and leaves this table empty.
CREATE TABLE blob_staging (
    sha256       TEXT NOT NULL,
    chunk_offset INTEGER NOT NULL CHECK (chunk_offset >= 0),
    bytes        BLOB NOT NULL,
    total        INTEGER NOT NULL CHECK (total >= 0),
    staged_at    TEXT NOT NULL,
    PRIMARY KEY (sha256, chunk_offset)
) STRICT;
