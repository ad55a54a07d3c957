//! Authentication and authorisation: roles, password hashing (argon2id), JWT
//! access tokens, refresh tokens held as revocable sessions, and the
//! [`AuthUser`] extractor every protected handler takes.
//!
//! An access token lives [`ACCESS_TTL_SECS`] and names its session. Each request
//! re-reads the session and the user, so revoking a user's sessions or
//! deactivating the user cuts their devices off at the next request, not when
//! the token expires.

use std::fmt;
use std::str::FromStr;

use crate::store::sql::{OptionalExtension, Tx, params};
use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::actor::Actor;
use crate::db::now;
use crate::error::{Error, Result};

/// Lifetime of an access token, in seconds.
pub const ACCESS_TTL_SECS: i64 = 15 * 60;
/// Lifetime of a refresh token, in days. Each use rotates it.
pub const REFRESH_TTL_DAYS: i64 = 30;

/// What a user may do. One user may hold several roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages accounts, the registry and the rules.
    Admin,
    /// Keeps the registry, makes plans and tasks, runs draws.
    Planner,
    /// Reviews records and publishes results.
    Supervisor,
    /// Inspects on site with a phone.
    Inspector,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 4] = [
        Role::Admin,
        Role::Planner,
        Role::Supervisor,
        Role::Inspector,
    ];

    /// The role's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Planner => "planner",
            Role::Supervisor => "supervisor",
            Role::Inspector => "inspector",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::invalid("roles", format!("unknown role `{s}`")))
    }
}

/// Hashes a password with argon2id and a fresh random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("password hashing failed: {e}")))
}

/// Checks `password` against a stored PHC hash. A damaged hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Passwords refused outside demo mode whatever their length.
const WEAK_PASSWORDS: &[&str] = &[
    "demo",
    "password",
    "12345678",
    "123456789",
    "1234567890",
    "qwertyui",
    "11111111",
    "00000000",
    "88888888",
    "abc12345",
    "admin123",
    "password1",
    "iloveyou",
];

/// Minimum password length outside demo mode.
pub const MIN_PASSWORD_LEN: usize = 10;

/// Longest password accepted anywhere, in bytes: enough for any passphrase, and a login
/// with a longer one is refused before it is hashed.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Fails unless `password` is at most [`MAX_PASSWORD_BYTES`] long.
pub fn check_password_size(password: &str) -> Result<()> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::invalid(
            "password",
            format!("at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Why `password` is too weak for `username`, or `None` if it is acceptable.
pub fn password_weakness(username: &str, password: &str) -> Option<String> {
    let lower = password.to_lowercase();
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Some(format!("must be at least {MIN_PASSWORD_LEN} characters"));
    }
    if WEAK_PASSWORDS.contains(&lower.as_str()) {
        return Some("is a well-known password".into());
    }
    if lower.contains(&username.to_lowercase()) {
        return Some("must not contain the username".into());
    }
    None
}

/// What an access token says.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// User id.
    sub: i64,
    /// Session id: the refresh token this access token was issued under.
    sid: i64,
    /// Username, for logs.
    name: String,
    iat: i64,
    exp: i64,
}

/// The HMAC key pair used to sign and check access tokens.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl JwtKeys {
    /// Keys from a shared secret.
    pub fn from_secret(secret: &[u8]) -> JwtKeys {
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    fn sign(&self, claims: &Claims) -> Result<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("signing token: {e}")))
    }

    fn check(&self, token: &str) -> Result<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    Error::Unauthorized("access token expired; refresh it".into())
                }
                _ => Error::Unauthorized("invalid access token".into()),
            })
    }
}

/// Fresh random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    Ok(buf)
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// What login and refresh answer.
#[derive(Debug, Serialize)]
pub struct TokenPair {
    /// Bearer token for API calls.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// One-use token that obtains the next pair.
    pub refresh_token: String,
}

/// Creates a session for `user_id` and issues its first token pair. `device` is a free-text
/// name for session lists; `device_id` the phone store's device id the session is bound to
/// (checked by [`check_device_id`]), if it is a phone's.
pub fn open_session(
    tx: &Tx<'_>,
    keys: &JwtKeys,
    user_id: i64,
    username: &str,
    device: Option<&str>,
    device_id: Option<&str>,
) -> Result<TokenPair> {
    let refresh = hex::encode(random_bytes::<32>()?);
    let expires = chrono::Utc::now() + chrono::Duration::days(REFRESH_TTL_DAYS);
    let sid: i64 = tx.query_row(
        "INSERT INTO sessions (user_id, token_hash, device, device_id, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
        params![
            user_id,
            token_hash(&refresh),
            device,
            device_id,
            now(),
            expires.to_rfc3339()
        ],
        |r| r.get(0),
    )?;
    access_pair(keys, user_id, sid, username, refresh)
}

/// Checks a phone's device id as a login names it: the lowercase hex the phone store's actor
/// ends in (see `suiji_mobile_core::record::inspector_actor`), 2 to 64 digits, even length.
pub fn check_device_id(device_id: &str) -> Result<()> {
    let ok = (2..=64).contains(&device_id.len())
        && device_id.len().is_multiple_of(2)
        && device_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "device_id",
            "a device id is 2 to 64 lowercase hex digits, an even number of them",
        ))
    }
}

fn access_pair(
    keys: &JwtKeys,
    user_id: i64,
    sid: i64,
    username: &str,
    refresh: String,
) -> Result<TokenPair> {
    let iat = chrono::Utc::now().timestamp();
    let access = keys.sign(&Claims {
        sub: user_id,
        sid,
        name: username.to_owned(),
        iat,
        exp: iat + ACCESS_TTL_SECS,
    })?;
    Ok(TokenPair {
        access_token: access,
        token_type: "Bearer",
        expires_in: ACCESS_TTL_SECS,
        refresh_token: refresh,
    })
}

/// What a refresh came to. A refusal is an outcome, not an error, so that the write that
/// revokes a session on token reuse commits.
#[derive(Debug)]
pub enum Refreshed {
    /// The token was current: here is the next pair.
    Rotated(TokenPair),
    /// The token was refused, for this reason (an [`Error::Unauthorized`]).
    Refused(Error),
}

impl Refreshed {
    /// The new pair, or the refusal as an error.
    pub fn into_result(self) -> Result<TokenPair> {
        match self {
            Refreshed::Rotated(pair) => Ok(pair),
            Refreshed::Refused(e) => Err(e),
        }
    }
}

/// RFC 3339 text of `ago` before now, in the form timestamps are stored.
fn stamp_before(ago: chrono::Duration) -> String {
    (chrono::Utc::now() - ago).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Exchanges a refresh token for a new pair, rotating the refresh token and keeping the
/// old one's hash as retired.
///
/// A retired token used again means two parties hold the session's tokens: unless it was
/// retired less than `grace` ago (two console tabs refreshing at once), the whole session is
/// revoked, the one who rotated it included, and the reuse is audited.
pub fn refresh_session(
    tx: &Tx<'_>,
    keys: &JwtKeys,
    refresh: &str,
    grace: std::time::Duration,
) -> Result<Refreshed> {
    let hash = token_hash(refresh);
    let row: Option<(i64, i64, String, Option<String>, String, bool)> = tx
        .query_row(
            "SELECT s.id, s.user_id, s.expires_at, s.revoked_at, u.username, u.active
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?1",
            [&hash],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .optional()?;
    let Some((sid, user_id, expires_at, revoked_at, username, active)) = row else {
        return retired_token_used(tx, &hash, grace);
    };
    let refused = |why: &str| Ok(Refreshed::Refused(Error::Unauthorized(why.into())));
    if revoked_at.is_some() || !active {
        return refused("session revoked");
    }
    if expires_at < chrono::Utc::now().to_rfc3339() {
        return refused("refresh token expired; log in again");
    }
    let next = hex::encode(random_bytes::<32>()?);
    let expires = chrono::Utc::now() + chrono::Duration::days(REFRESH_TTL_DAYS);
    tx.execute(
        "UPDATE sessions SET token_hash = ?1, expires_at = ?2 WHERE id = ?3",
        params![token_hash(&next), expires.to_rfc3339(), sid],
    )?;
    // A token retired longer ago than a refresh token lives would be refused as expired
    // anyway; keeping the rest bounds the table by the refreshes of one token lifetime.
    tx.execute(
        "DELETE FROM retired_refresh_tokens WHERE session_id = ?1 AND retired_at < ?2",
        params![sid, stamp_before(chrono::Duration::days(REFRESH_TTL_DAYS))],
    )?;
    tx.execute(
        "INSERT INTO retired_refresh_tokens (token_hash, session_id, retired_at)
         VALUES (?1, ?2, ?3)",
        params![hash, sid, now()],
    )?;
    access_pair(keys, user_id, sid, &username, next).map(Refreshed::Rotated)
}

/// The refresh token with this hash is not current: if it is a retired one, its session is
/// revoked (outside the grace period) and the reuse audited.
fn retired_token_used(tx: &Tx<'_>, hash: &str, grace: std::time::Duration) -> Result<Refreshed> {
    let retired: Option<(i64, String, Option<String>, String)> = tx
        .query_row(
            "SELECT r.session_id, r.retired_at, s.revoked_at, u.username
             FROM retired_refresh_tokens r
             JOIN sessions s ON s.id = r.session_id JOIN users u ON u.id = s.user_id
             WHERE r.token_hash = ?1",
            [hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let refused = |why: &str| Ok(Refreshed::Refused(Error::Unauthorized(why.into())));
    let Some((sid, retired_at, revoked_at, username)) = retired else {
        return refused("unknown refresh token");
    };
    if revoked_at.is_some() {
        return refused("session revoked");
    }
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    if retired_at > stamp_before(grace) {
        return refused("refresh token already used");
    }
    revoke_session(tx, sid)?;
    crate::audit::append(
        tx,
        &username,
        "auth.refresh_reuse",
        &format!("session:{sid}"),
        None,
        Some(&serde_json::json!({ "session_revoked": true, "token_retired_at": retired_at })),
    )?;
    tracing::warn!(session = sid, %username, "refresh token reused; session revoked");
    refused("refresh token already used; the session is revoked, log in again")
}

/// Revokes one session. Returns whether it was live.
pub fn revoke_session(tx: &Tx<'_>, sid: i64) -> Result<bool> {
    let n = tx.execute(
        "UPDATE sessions SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
        params![now(), sid],
    )?;
    Ok(n > 0)
}

/// Revokes every live session of a user. Returns how many there were.
pub fn revoke_user_sessions(tx: &Tx<'_>, user_id: i64) -> Result<usize> {
    tx.execute(
        "UPDATE sessions SET revoked_at = ?1 WHERE user_id = ?2 AND revoked_at IS NULL",
        params![now(), user_id],
    )
}

/// The caller of a protected endpoint, as checked against the database on
/// this very request.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user and their roles, which domain functions take (`AuthUser` derefs to it).
    pub actor: Actor,
    /// The session the token was issued under.
    pub session_id: i64,
    /// The phone device the session is bound to (`None` for the web console and API
    /// clients): a phone's changes must carry this device's actor.
    pub device_id: Option<String>,
}

impl std::ops::Deref for AuthUser {
    type Target = Actor;

    fn deref(&self) -> &Actor {
        &self.actor
    }
}

/// Parses a JSON role list as stored in `users.roles`.
pub fn parse_roles(json: &str) -> Result<Vec<Role>> {
    Ok(serde_json::from_str(json)?)
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| Error::Unauthorized("missing bearer token".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Error::Unauthorized("authorization header must be `Bearer <token>`".into())
            })?;
        authenticate(state, token).await
    }
}

/// Checks an access token and re-reads its session and user, as every
/// protected request does: the bearer extractor and the web console's cookie
/// session both come through here.
pub async fn authenticate(state: &AppState, token: &str) -> Result<AuthUser> {
    let claims = state.keys.check(token.trim())?;
    let (sid, uid) = (claims.sid, claims.sub);
    state
        .db
        .read(move |conn| {
            type Row = (Option<String>, bool, String, String, Option<String>);
            let row: Option<Row> = conn
                .prepare_cached(
                    "SELECT s.revoked_at, u.active, u.username, u.roles, s.device_id
                         FROM sessions s JOIN users u ON u.id = s.user_id
                         WHERE s.id = ?1 AND u.id = ?2",
                )?
                .query_row(params![sid, uid], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .optional()?;
            match row {
                None => Err(Error::Unauthorized("unknown session".into())),
                Some((Some(_), ..)) => Err(Error::Unauthorized("session revoked".into())),
                Some((None, false, ..)) => Err(Error::Unauthorized("account deactivated".into())),
                Some((None, true, username, roles, device_id)) => Ok(AuthUser {
                    actor: Actor {
                        user_id: uid,
                        username,
                        roles: parse_roles(&roles)?,
                    },
                    session_id: sid,
                    device_id,
                }),
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterx", &hash));
        assert!(!verify_password("anything", "not a phc string"));
    }

    #[test]
    fn weak_passwords_are_named() {
        assert!(password_weakness("bob", "demo").is_some());
        assert!(password_weakness("bob", "password1").is_some());
        assert!(password_weakness("wanglei", "wanglei-2026!").is_some());
        assert!(password_weakness("bob", "river-lantern-42").is_none());
    }

    #[test]
    fn tampered_token_is_refused() {
        let keys = JwtKeys::from_secret(b"0123456789abcdef0123456789abcdef");
        let claims = Claims {
            sub: 1,
            sid: 1,
            name: "a".into(),
            iat: 0,
            exp: i64::MAX / 2,
        };
        let token = keys.sign(&claims).unwrap();
        assert_eq!(keys.check(&token).unwrap().sub, 1);
        let other = JwtKeys::from_secret(b"another secret another secret!!");
        assert!(matches!(other.check(&token), Err(Error::Unauthorized(_))));
    }

    #[test]
    fn expired_token_is_refused() {
        let keys = JwtKeys::from_secret(b"0123456789abcdef0123456789abcdef");
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: 1,
            sid: 1,
            name: "a".into(),
            iat: now - 3600,
            exp: now - 600,
        };
        let token = keys.sign(&claims).unwrap();
        let err = keys.check(&token).unwrap_err();
        assert!(err.to_string().contains("expired"));
    }
}
