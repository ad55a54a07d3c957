//! The inspector's server session as the store keeps it: the server's address and the current
//! pair of tokens, so that an app logs in once and then syncs without handling tokens
//! (`sync::session` logs in, refreshes and logs out through these).
//!
//! The tokens are kept in the database as they are, beside the signing keys: the store's
//! directory must be the app's private storage (see docs/mobile-core.md, "Where the session
//! lives"). Encrypting them with a key from the platform keystore would not protect more than
//! the private signing keys already in the same file, and it would make a background sync
//! depend on the keystore being unlocked. Each token pair is written in one transaction, so a
//! refresh (whose old refresh token the server no longer takes) is never half kept.

use super::Store;
use crate::error::{Error, Result};
use crate::sync::client::Credentials;
use rusqlite::{OptionalExtension, params};

const SERVER_URL: &str = "session.server_url";
const ACCESS_TOKEN: &str = "session.access_token";
const REFRESH_TOKEN: &str = "session.refresh_token";

/// A logged-in session: where the server is and the tokens to talk to it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The server's address (`http://` or `https://`).
    pub server_url: String,
    /// The current tokens.
    pub credentials: Credentials,
}

impl Store {
    /// The session kept by the last login, if the inspector is logged in on this phone.
    pub fn session(&self) -> Result<Option<Session>> {
        let conn = self.lock_reader();
        let get = |key: &str| -> Result<Option<String>> {
            Ok(conn
                .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?)
        };
        match (get(SERVER_URL)?, get(ACCESS_TOKEN)?, get(REFRESH_TOKEN)?) {
            (Some(server_url), Some(access_token), Some(refresh_token)) => Ok(Some(Session {
                server_url,
                credentials: Credentials {
                    access_token,
                    refresh_token,
                },
            })),
            (None, None, None) => Ok(None),
            _ => Err(Error::Malformed("the kept session is incomplete".into())),
        }
    }

    /// Keeps a session, replacing any kept before.
    pub fn keep_session(&self, session: &Session) -> Result<()> {
        let mut w = self.lock_writer();
        let tx = w.conn.transaction()?;
        for (key, value) in [
            (SERVER_URL, &session.server_url),
            (ACCESS_TOKEN, &session.credentials.access_token),
            (REFRESH_TOKEN, &session.credentials.refresh_token),
        ] {
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Replaces the kept session's tokens (after a refresh). Without a kept session (a logout
    /// while a sync ran) nothing is kept: the logout wins.
    pub fn keep_credentials(&self, credentials: &Credentials) -> Result<()> {
        let mut w = self.lock_writer();
        let tx = w.conn.transaction()?;
        for (key, value) in [
            (ACCESS_TOKEN, &credentials.access_token),
            (REFRESH_TOKEN, &credentials.refresh_token),
        ] {
            tx.execute(
                "UPDATE meta SET value = ?2 WHERE key = ?1",
                params![key, value],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets the kept session (its tokens and the server's address).
    pub fn forget_session(&self) -> Result<()> {
        let w = self.lock_writer();
        w.conn.execute(
            "DELETE FROM meta WHERE key IN (?1, ?2, ?3)",
            params![SERVER_URL, ACCESS_TOKEN, REFRESH_TOKEN],
        )?;
        Ok(())
    }
}
