-- A version number for each record document, raised whenever a chunk of it is
-- written (sync, review, redraw, compaction), so that a parsed copy kept in
-- memory, or a sync answer worked out outside the write lock, can tell
-- whether it still matches what is stored. Versions only ever rise with a
-- committed write; a rolled-back write leaves nothing behind.

ALTER TABLE records ADD COLUMN doc_version INTEGER NOT NULL DEFAULT 0;
UPDATE records SET doc_version = 1;

CREATE TRIGGER record_chunks_raise_doc_version AFTER INSERT ON record_chunks
BEGIN
    UPDATE records SET doc_version = doc_version + 1 WHERE id = NEW.record_id;
END;
