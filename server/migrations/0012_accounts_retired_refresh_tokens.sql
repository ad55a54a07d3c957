-- Refresh tokens already exchanged for a new pair, by session. A second use of one means
-- the token was copied: the server then revokes the whole session (every token rotated from
-- that one login), so that the thief's tokens and the victim's stop working together.
-- Rows older than a refresh token's lifetime are pruned as the session refreshes.
CREATE TABLE retired_refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    session_id  INTEGER NOT NULL REFERENCES sessions(id),
    retired_at  TEXT NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX retired_refresh_tokens_session ON retired_refresh_tokens(session_id, retired_at);
