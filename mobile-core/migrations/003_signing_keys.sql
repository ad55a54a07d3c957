-- suiji phone store, schema 3: inspectors' signing keys. Shipped migrations are never edited.

-- One Ed25519 key for each inspector who signs on this phone: the store's own inspector, and
-- any partner who logged in here to sign. The private key (its 32-byte seed) never leaves
-- this file; the public key is registered with the server through that inspector's own
-- login, bound to this device.
CREATE TABLE signing_keys (
    inspector_id  TEXT PRIMARY KEY,
    seed          BLOB NOT NULL CHECK (length(seed) = 32),
    public_key    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    -- When the server took the key under the inspector's login; NULL until then.
    registered_at TEXT
) STRICT;
