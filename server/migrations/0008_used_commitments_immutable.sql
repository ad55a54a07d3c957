-- An initial draw record is stored without its pools: it refers to those of
-- the commitment it used, spliced in whenever the record is read. So a used
-- commitment (one a draw names; older ones also have used_at set) is as
-- immutable as the draw record itself.

CREATE TRIGGER draw_commitments_immutable_once_used BEFORE UPDATE ON draw_commitments
WHEN OLD.used_at IS NOT NULL
    OR EXISTS (SELECT 1 FROM draws WHERE draws.commitment_id = OLD.id)
BEGIN
    SELECT RAISE(ABORT, 'a used draw commitment is immutable');
END;
CREATE TRIGGER draw_commitments_undeletable_once_used BEFORE DELETE ON draw_commitments
WHEN OLD.used_at IS NOT NULL
    OR EXISTS (SELECT 1 FROM draws WHERE draws.commitment_id = OLD.id)
BEGIN
    SELECT RAISE(ABORT, 'a used draw commitment is immutable');
END;
