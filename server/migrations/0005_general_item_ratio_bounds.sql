-- Bounds on the ratio of tasks with general items (一般检查事项): a floor (the
-- share every agency must at least check) and a ceiling (general items are
-- capped; key items are not).
ALTER TABLE rules ADD COLUMN general_ratio_min REAL NOT NULL DEFAULT 0.03;
ALTER TABLE rules ADD COLUMN general_ratio_max REAL NOT NULL DEFAULT 0.20;
