-- Retention (issue #19): the rules say how many years a task's records are kept after its
-- results were last published (at least 2; existing databases get 2), and a purge, allowed
-- only after that, marks each record it emptied. The record row stays (the published
-- results, the draw records and the audit log name it); its document, sync states and
-- blob references go.
ALTER TABLE rules ADD COLUMN retention_years INTEGER NOT NULL DEFAULT 2
    CHECK (retention_years >= 2);
ALTER TABLE records ADD COLUMN purged_at TEXT;
