-- Frequency by outcome (#20): a target found clean is not drawn again for the same item within
-- `clean_cooldown_days` (0 = off); a target whose latest result had problems weighs
-- `problem_weight` in its stratum (1 = off). Both enter the draw commitment (algorithm v3).
ALTER TABLE rules ADD COLUMN clean_cooldown_days INTEGER NOT NULL DEFAULT 0
    CHECK (clean_cooldown_days BETWEEN 0 AND 1095);
ALTER TABLE rules ADD COLUMN problem_weight INTEGER NOT NULL DEFAULT 1
    CHECK (problem_weight BETWEEN 1 AND 10);
