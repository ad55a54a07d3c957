-- Whether a task's publication deadline is provisional: it runs into a year whose holiday
-- schedule the server had not loaded, so it was counted Monday to Friday and may move once
-- the schedule is loaded (the assignment's `publication_deadline_provisional`). Rows from
-- before are final: no server drew a task with a provisional deadline then.
ALTER TABLE records ADD COLUMN deadline_provisional INTEGER NOT NULL DEFAULT 0;
