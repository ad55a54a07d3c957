-- Trust: a phone's session is bound to its device, and inspectors' signing keys are
-- registered under their own login. Shipped migrations are never edited.

-- The phone store's device id (hex) a session was opened for; NULL for sessions of the web
-- console and API clients, which may not sync. Every change a phone syncs must carry the
-- actor `i<inspector>.<device_id>` of its session.
ALTER TABLE sessions ADD COLUMN device_id TEXT;

-- Ed25519 public keys (hex) inspectors sign records with, each registered by the inspector's
-- own authenticated call from the device that holds the private key. Kept for good, so that
-- every signature ever made can still be checked: never changed, never deleted.
CREATE TABLE signing_keys (
    id            INTEGER PRIMARY KEY,
    inspector_id  INTEGER NOT NULL REFERENCES inspectors(id),
    public_key    TEXT NOT NULL UNIQUE CHECK (length(public_key) = 64),
    device_id     TEXT NOT NULL,
    -- The session that registered it; NULL only for keys the demo seeding registers.
    session_id    INTEGER REFERENCES sessions(id),
    registered_at TEXT NOT NULL
) STRICT;
CREATE INDEX signing_keys_inspector ON signing_keys(inspector_id);

CREATE TRIGGER signing_keys_unchangeable BEFORE UPDATE ON signing_keys
BEGIN
    SELECT RAISE(ABORT, 'a registered signing key is never changed');
END;
CREATE TRIGGER signing_keys_undeletable BEFORE DELETE ON signing_keys
BEGIN
    SELECT RAISE(ABORT, 'a registered signing key is never deleted');
END;
