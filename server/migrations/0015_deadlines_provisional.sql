-- Whether a record's publication deadline (`records.deadline`, also written into its
-- document's assignment) is provisional: it runs into a year the working-day calendar had no
-- holiday schedule for, and was counted Monday to Friday there. Loading that year's schedule
-- makes it final (server/src/draw/records.rs, `finalise_deadlines`). Records drawn before this
-- migration were refused unless their deadline was final, so 0 is right for all of them.
ALTER TABLE records ADD COLUMN deadline_provisional INTEGER NOT NULL DEFAULT 0
    CHECK (deadline_provisional IN (0, 1));
