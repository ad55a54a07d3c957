-- Which of a record's blobs its phones upload. A photo over the phone's pixel budget goes up as
-- its thumbnail and a downscaled upload copy; the original stays on the phone, and the server
-- must not list it among the blobs it lacks (`missing_blobs` of a sync answer), or the phone
-- sends the original after all. `expected = 0` marks such originals; they still grant nothing
-- and cost nothing, and their rows keep the reference for read rights should the bytes ever
-- arrive. Rows from before this migration start as expected; the server corrects them at start
-- (`sync::mark_originals_kept_on_phones`) for the records whose blobs it lacks.
ALTER TABLE record_blobs ADD COLUMN expected INTEGER NOT NULL DEFAULT 1 CHECK (expected IN (0, 1));
