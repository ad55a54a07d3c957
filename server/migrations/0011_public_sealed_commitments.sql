-- A draw nobody can steer: every commitment stays public for good, its secret
-- is sealed with a key kept outside the database until the draw reveals it,
-- a commitment may name a public beacon, and the rules ask for a minimum of
-- observers' entries.

-- hex(nonce || ChaCha20-Poly1305 ciphertext) of the secret, sealed with the key
-- in draw-seal.key beside the database; `secret` stays '' for such rows.
ALTER TABLE draw_commitments ADD COLUMN sealed_secret TEXT;
-- A public beacon named in advance (e.g. a lottery result) and when it is due.
ALTER TABLE draw_commitments ADD COLUMN beacon_name TEXT;
ALTER TABLE draw_commitments ADD COLUMN beacon_due_at TEXT;

ALTER TABLE rules ADD COLUMN min_observers INTEGER NOT NULL DEFAULT 2 CHECK (min_observers >= 1);

-- An open commitment of an older database kept its secret in plain text, so
-- anyone who read the database may know its outcome: it is superseded (the
-- planner commits again, publicly), and the secrets of commitments that will
-- never be drawn are wiped. Used commitments keep theirs: their draw record
-- reveals it anyway, and they are immutable (migration 0008).
UPDATE draw_commitments
SET superseded_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE superseded_at IS NULL AND used_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM draws d WHERE d.commitment_id = draw_commitments.id);
UPDATE draw_commitments SET secret = ''
WHERE used_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM draws d WHERE d.commitment_id = draw_commitments.id);

CREATE TRIGGER draw_commitments_secret_sealed BEFORE INSERT ON draw_commitments
WHEN NEW.secret != '' OR NEW.sealed_secret IS NULL
BEGIN
    SELECT RAISE(ABORT, 'a draw commitment keeps its secret sealed, never in plain text');
END;

-- Published the moment it is made: nothing of a commitment changes afterwards
-- except that an open one may be superseded, once.
CREATE TRIGGER draw_commitments_published BEFORE UPDATE OF id, task_id, algorithm, secret,
    secret_sha256, sealed_secret, params, params_sha256, target_pool, target_pool_sha256,
    target_count, inspector_pool, inspector_pool_sha256, inspector_count, committed_at,
    committed_by, used_at, beacon_name, beacon_due_at ON draw_commitments
BEGIN
    SELECT RAISE(ABORT, 'a draw commitment is public and never changes');
END;
CREATE TRIGGER draw_commitments_superseded_for_good BEFORE UPDATE OF superseded_at
ON draw_commitments
WHEN OLD.superseded_at IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a superseded draw commitment stays superseded and listed');
END;
CREATE TRIGGER draw_commitments_never_deleted BEFORE DELETE ON draw_commitments
BEGIN
    SELECT RAISE(ABORT, 'draw commitments are public and never deleted');
END;

CREATE INDEX draw_commitments_committed ON draw_commitments(committed_at);
