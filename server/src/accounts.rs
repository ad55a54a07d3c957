//! Accounts and sessions over HTTP: login, refresh, logout, the caller's own
//! profile, and user administration (admin only).

use std::net::IpAddr;

use crate::store::sql::{Conn, OptionalExtension, Tx, params};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::AppState;
use crate::audit;
use crate::auth::{self, AuthUser, Role, TokenPair};
use crate::db::now;
use crate::error::{Error, Result};
use crate::extract::{ApiJson, ApiPath};
use crate::registry;
use crate::throttle::{Lock, PeerAddr, Refusal};

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/users/{id}", patch(update_user).get(get_user))
        .route("/api/v1/users/{id}/revoke-sessions", post(revoke_sessions))
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// User id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// Name shown to people.
    pub display_name: String,
    /// Roles held.
    pub roles: Vec<Role>,
    /// Whether the user may log in.
    pub active: bool,
    /// The inspector record linked to this user, if any.
    pub inspector_id: Option<i64>,
}

const USER_COLUMNS: &str = "u.id, u.username, u.display_name, u.roles, u.active,
     (SELECT i.id FROM inspectors i WHERE i.user_id = u.id)";

fn user_from_row(row: &crate::store::sql::Row<'_>) -> Result<(User, String)> {
    let roles: String = row.get(3)?;
    Ok((
        User {
            id: row.get(0)?,
            username: row.get(1)?,
            display_name: row.get(2)?,
            roles: Vec::new(),
            active: row.get(4)?,
            inspector_id: row.get(5)?,
        },
        roles,
    ))
}

/// Loads a user by id.
pub fn get_user_by_id(conn: &Conn, id: i64) -> Result<User> {
    let found = conn
        .query_row(
            &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?1"),
            [id],
            user_from_row,
        )
        .optional()?;
    let (mut user, roles) = found.ok_or_else(|| Error::NotFound(format!("user {id}")))?;
    user.roles = auth::parse_roles(&roles)?;
    Ok(user)
}

/// Every user, by id.
pub fn all_users(conn: &Conn) -> Result<Vec<User>> {
    let mut stmt = conn.prepare(&format!("SELECT {USER_COLUMNS} FROM users u ORDER BY u.id"))?;
    let rows = stmt.query_map([], user_from_row)?;
    let mut users = Vec::new();
    for row in rows {
        let (mut user, roles) = row?;
        user.roles = auth::parse_roles(&roles)?;
        users.push(user);
    }
    Ok(users)
}

/// Longest username, in bytes (usernames are ASCII).
pub const MAX_USERNAME_BYTES: usize = 64;

/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 100;

fn validate_username(username: &str) -> Result<()> {
    let ok = !username.is_empty()
        && username.len() <= MAX_USERNAME_BYTES
        && username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "username",
            "1 to 64 characters: lowercase letters, digits, `.`, `_` or `-`",
        ))
    }
}

fn validate_roles(roles: &[Role]) -> Result<()> {
    if roles.is_empty() {
        return Err(Error::invalid("roles", "a user needs at least one role"));
    }
    Ok(())
}

fn roles_json(roles: &[Role]) -> String {
    let mut sorted: Vec<Role> = Role::ALL
        .into_iter()
        .filter(|r| roles.contains(r))
        .collect();
    sorted.dedup();
    serde_json::to_string(&sorted).expect("roles serialise")
}

/// Inserts a user with an already hashed password and audits it. Checks the
/// username and roles; the caller has checked the password.
pub fn insert_user(
    tx: &Tx<'_>,
    actor: &str,
    username: &str,
    display_name: &str,
    password_hash: &str,
    roles: &[Role],
) -> Result<User> {
    validate_username(username)?;
    validate_roles(roles)?;
    registry::check_name("display_name", display_name, MAX_DISPLAY_NAME)?;
    let taken: bool = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM users WHERE username = ?1)",
        [username],
        |r| r.get(0),
    )?;
    if taken {
        return Err(Error::Conflict(format!("username `{username}` is taken")));
    }
    let user_id: i64 = tx.query_row(
        "INSERT INTO users (username, display_name, password_hash, roles, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
        params![
            username,
            display_name,
            password_hash,
            roles_json(roles),
            now()
        ],
        |r| r.get(0),
    )?;
    let user = get_user_by_id(tx, user_id)?;
    audit::append(
        tx,
        actor,
        "user.create",
        &format!("user:{}", user.id),
        None,
        Some(&json!(user)),
    )?;
    Ok(user)
}

/// Body of `POST /api/v1/auth/login`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Free-text device name, shown in session lists.
    #[serde(default)]
    pub device: Option<String>,
    /// The phone store's device id (hex), for a phone's login: the session is bound to it and
    /// may sync only changes by that device's actor. Absent for the console and API clients.
    #[serde(default)]
    pub device_id: Option<String>,
}

/// The answer to a login: tokens plus who logged in.
#[derive(Serialize)]
pub struct LoginResponse {
    /// The new session's tokens.
    #[serde(flatten)]
    pub tokens: TokenPair,
    /// Who logged in.
    pub user: User,
    /// The inspector the account is linked to, if any: the id record documents name them by.
    pub inspector_id: Option<i64>,
}

/// A real argon2 hash of a throwaway password, verified against when the
/// username is unknown so that a wrong username takes as long as a wrong password.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    auth::hash_password("no such user, no such password").unwrap_or_default()
});

/// Longest device name a login may give, in characters.
pub const MAX_DEVICE_NAME: usize = 100;

/// Why a login failed: refused by the sign-in limits before any password was checked,
/// credentials refused (each answered 401, told apart so that the console can say which
/// without reading a message), or any other error.
#[derive(Debug)]
pub enum LoginError {
    /// Too many attempts, or too many logins at once: 429 or 503 with `Retry-After`.
    Refused(Refusal),
    /// Unknown username or wrong password (which of the two is not told).
    WrongCredentials,
    /// The password is right but the account is deactivated.
    Deactivated,
    /// The password is right but too weak outside demo mode; says why.
    WeakPassword(String),
    /// Everything else, answered as the server's errors are.
    Failed(Error),
}

impl LoginError {
    /// The error a refused credential is answered with (401 with the API's message).
    fn credentials_error(why: &str) -> Error {
        Error::Unauthorized(why.to_owned())
    }
}

impl From<Error> for LoginError {
    fn from(e: Error) -> Self {
        LoginError::Failed(e)
    }
}

impl From<Refusal> for LoginError {
    fn from(r: Refusal) -> Self {
        LoginError::Refused(r)
    }
}

impl From<tokio::task::JoinError> for LoginError {
    fn from(e: tokio::task::JoinError) -> Self {
        LoginError::Failed(e.into())
    }
}

impl IntoResponse for LoginError {
    fn into_response(self) -> Response {
        match self {
            LoginError::Refused(refusal) => refusal.into_response(),
            LoginError::Failed(e) => e.into_response(),
            LoginError::WrongCredentials => {
                Self::credentials_error("wrong username or password").into_response()
            }
            LoginError::Deactivated => Self::credentials_error("account deactivated").into_response(),
            LoginError::WeakPassword(why) => Self::credentials_error(&format!(
                "this password {why}; it is accepted only in demo mode. Ask an admin to set a new one"
            ))
            .into_response(),
        }
    }
}

async fn login(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> std::result::Result<Json<LoginResponse>, LoginError> {
    Ok(Json(log_in(&state, req, peer).await?))
}

/// Checks what a login names before anything is counted or hashed: bounded sizes, no
/// control characters in the device name, a well-formed device id.
fn check_login_request(req: &LoginRequest) -> Result<()> {
    if req.username.len() > MAX_USERNAME_BYTES {
        return Err(Error::invalid(
            "username",
            format!("at most {MAX_USERNAME_BYTES} characters"),
        ));
    }
    auth::check_password_size(&req.password)?;
    if let Some(device) = &req.device {
        if device.chars().count() > MAX_DEVICE_NAME {
            return Err(Error::invalid(
                "device",
                format!("at most {MAX_DEVICE_NAME} characters"),
            ));
        }
        registry::check_chars("device", device, registry::Lines::One)?;
    }
    if let Some(device_id) = &req.device_id {
        auth::check_device_id(device_id)?;
    }
    Ok(())
}

/// Checks a username and password and opens a session: the API's login and the web
/// console's login form both come through here, `peer` being the client's address if
/// known. A wrong username or password is [`LoginError::WrongCredentials`];
/// the sign-in limits ([`crate::throttle`]) refuse an attempt before its password is hashed.
pub async fn log_in(
    state: &AppState,
    req: LoginRequest,
    peer: Option<IpAddr>,
) -> std::result::Result<LoginResponse, LoginError> {
    check_login_request(&req)?;
    if let Err(throttled) = state.throttle.attempt(&req.username, peer) {
        if let Some(lock) = throttled.started {
            audit_lock(state, &req.username, peer, lock).await?;
        }
        tracing::info!(username = %req.username, ?peer, "login throttled");
        return Err(throttled.refusal.into());
    }
    let permit = match state.throttle.login_permit(peer).await {
        Ok(permit) => permit,
        Err(busy) => {
            // Turned away unchecked: the attempt does not count.
            state.throttle.not_checked(&req.username, peer);
            return Err(busy.into());
        }
    };
    let username = req.username.clone();
    let found: Option<(i64, String, bool)> = state
        .db
        .read(move |c| {
            c.query_row(
                "SELECT id, password_hash, active FROM users WHERE username = ?1",
                [username],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })
        .await?;
    let (user_id, hash, active) = match found {
        Some((id, hash, active)) => (id, Some(hash), active),
        None => (0, None, false),
    };
    let password = req.password.clone();
    let matches = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let hash = hash.as_deref().unwrap_or(&DUMMY_HASH);
        auth::verify_password(&password, hash)
    })
    .await?;
    if !matches || user_id == 0 {
        tracing::info!(username = %req.username, "failed login");
        return Err(LoginError::WrongCredentials);
    }
    state.throttle.succeeded(&req.username, peer);
    if !active {
        return Err(LoginError::Deactivated);
    }
    if !state.config.demo
        && let Some(why) = auth::password_weakness(&req.username, &req.password)
    {
        return Err(LoginError::WeakPassword(why.to_string()));
    }
    let keys = state.keys.clone();
    let device = req.device.clone();
    let device_id = req.device_id.clone();
    let response = state
        .db
        .write(move |tx| {
            let user = get_user_by_id(tx, user_id)?;
            let tokens = auth::open_session(
                tx,
                &keys,
                user_id,
                &user.username,
                device.as_deref(),
                device_id.as_deref(),
            )?;
            let inspector_id = tx
                .prepare_cached("SELECT id FROM inspectors WHERE user_id = ?1")?
                .query_row([user_id], |r| r.get(0))
                .optional()?;
            audit::append(
                tx,
                &user.username,
                "auth.login",
                &format!("user:{user_id}"),
                None,
                Some(&json!({ "device": device, "device_id": device_id })),
            )?;
            Ok(LoginResponse {
                tokens,
                user,
                inspector_id,
            })
        })
        .await?;
    Ok(response)
}

/// Records in the audit log that a lock of the sign-in limits has started: once per lock,
/// however many attempts it then turns away.
async fn audit_lock(
    state: &AppState,
    username: &str,
    peer: Option<IpAddr>,
    lock: Lock,
) -> Result<()> {
    let entity = match &lock {
        Lock::Account(name) => format!("login:{name}"),
        Lock::Address(ip) => format!("address:{ip}"),
    };
    let limits = state.throttle.limits();
    let (kind, attempts) = match lock {
        Lock::Account(_) => ("account", limits.account_attempts),
        Lock::Address(_) => ("address", limits.address_attempts),
    };
    let after = json!({
        "locked": kind,
        "username": username,
        "address": peer.map(|ip| ip.to_string()),
        "failed_attempts": attempts,
        "locked_for_secs": limits.window.as_secs(),
    });
    state
        .db
        .write(move |tx| audit::append(tx, "system", "auth.throttle", &entity, None, Some(&after)))
        .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

async fn refresh(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<TokenPair>> {
    let keys = state.keys.clone();
    let grace = state.throttle.limits().refresh_reuse_grace;
    let outcome = state
        .db
        .write(move |tx| auth::refresh_session(tx, &keys, &req.refresh_token, grace))
        .await?;
    Ok(Json(outcome.into_result()?))
}

/// Revokes the caller's session and records the logout in the audit log (the API's and the
/// web console's logout).
pub fn log_out(tx: &Tx<'_>, user: &AuthUser) -> Result<()> {
    auth::revoke_session(tx, user.session_id)?;
    audit::append(
        tx,
        &user.username,
        "auth.logout",
        &format!("session:{}", user.session_id),
        None,
        None,
    )
}

async fn logout(State(state): State<AppState>, user: AuthUser) -> Result<Json<serde_json::Value>> {
    state.db.write(move |tx| log_out(tx, &user)).await?;
    Ok(Json(json!({ "logged_out": true })))
}

async fn me(State(state): State<AppState>, user: AuthUser) -> Result<Json<User>> {
    Ok(Json(
        state
            .db
            .read(move |c| get_user_by_id(c, user.user_id))
            .await?,
    ))
}

async fn list_users(State(state): State<AppState>, user: AuthUser) -> Result<Json<Vec<User>>> {
    user.require(&[Role::Admin])?;
    let users = state.db.read(all_users).await?;
    Ok(Json(users))
}

async fn get_user(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<User>> {
    if user.user_id != id {
        user.require(&[Role::Admin])?;
    }
    Ok(Json(state.db.read(move |c| get_user_by_id(c, id)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    display_name: String,
    password: String,
    roles: Vec<Role>,
}

fn check_password(state: &AppState, username: &str, password: &str) -> Result<()> {
    auth::check_password_size(password)?;
    if !state.config.demo
        && let Some(why) = auth::password_weakness(username, password)
    {
        return Err(Error::invalid("password", why));
    }
    if password.is_empty() {
        return Err(Error::invalid("password", "must not be empty"));
    }
    Ok(())
}

async fn create_user(
    State(state): State<AppState>,
    actor: AuthUser,
    ApiJson(req): ApiJson<NewUser>,
) -> Result<(axum::http::StatusCode, Json<User>)> {
    actor.require(&[Role::Admin])?;
    validate_username(&req.username)?;
    validate_roles(&req.roles)?;
    check_password(&state, &req.username, &req.password)?;
    let password = req.password.clone();
    let permit = state.throttle.hashing_permit().await;
    let hash = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        auth::hash_password(&password)
    })
    .await??;
    let user = state
        .db
        .write(move |tx| {
            insert_user(
                tx,
                &actor.username,
                &req.username,
                &req.display_name,
                &hash,
                &req.roles,
            )
        })
        .await?;
    Ok((axum::http::StatusCode::CREATED, Json(user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserUpdate {
    display_name: Option<String>,
    roles: Option<Vec<Role>>,
    active: Option<bool>,
    password: Option<String>,
}

async fn update_user(
    State(state): State<AppState>,
    actor: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<UserUpdate>,
) -> Result<Json<User>> {
    actor.require(&[Role::Admin])?;
    if let Some(roles) = &req.roles {
        validate_roles(roles)?;
    }
    if let Some(name) = &req.display_name {
        registry::check_name("display_name", name, MAX_DISPLAY_NAME)?;
    }
    let new_hash = match &req.password {
        Some(password) => {
            let username = state
                .db
                .read(move |c| get_user_by_id(c, id))
                .await?
                .username;
            check_password(&state, &username, password)?;
            let password = password.clone();
            let permit = state.throttle.hashing_permit().await;
            Some(
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    auth::hash_password(&password)
                })
                .await??,
            )
        }
        None => None,
    };
    let user = state
        .db
        .write(move |tx| {
            let before = get_user_by_id(tx, id)?;
            if let Some(name) = &req.display_name {
                tx.execute(
                    "UPDATE users SET display_name = ?1 WHERE id = ?2",
                    params![name, id],
                )?;
            }
            if let Some(roles) = &req.roles {
                tx.execute(
                    "UPDATE users SET roles = ?1 WHERE id = ?2",
                    params![roles_json(roles), id],
                )?;
            }
            let mut sessions_revoked = 0;
            if let Some(active) = req.active {
                tx.execute(
                    "UPDATE users SET active = ?1 WHERE id = ?2",
                    params![active, id],
                )?;
                // Deactivation ends every session for good: reactivating the account later
                // must not bring old tokens back to life.
                if !active {
                    sessions_revoked += auth::revoke_user_sessions(tx, id)?;
                }
            }
            if let Some(hash) = &new_hash {
                tx.execute(
                    "UPDATE users SET password_hash = ?1 WHERE id = ?2",
                    params![hash, id],
                )?;
                // A new password ends every session opened with the old one.
                sessions_revoked += auth::revoke_user_sessions(tx, id)?;
            }
            let after = get_user_by_id(tx, id)?;
            let mut after_json = json!(after);
            if new_hash.is_some() {
                after_json["password_changed"] = json!(true);
            }
            if sessions_revoked > 0 {
                after_json["sessions_revoked"] = json!(sessions_revoked);
            }
            audit::append(
                tx,
                &actor.username,
                "user.update",
                &format!("user:{id}"),
                Some(&json!(before)),
                Some(&after_json),
            )?;
            Ok(after)
        })
        .await?;
    Ok(Json(user))
}

async fn revoke_sessions(
    State(state): State<AppState>,
    actor: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<serde_json::Value>> {
    if actor.user_id != id {
        actor.require(&[Role::Admin])?;
    }
    let revoked = state
        .db
        .write(move |tx| {
            get_user_by_id(tx, id)?;
            let n = auth::revoke_user_sessions(tx, id)?;
            audit::append(
                tx,
                &actor.username,
                "user.revoke_sessions",
                &format!("user:{id}"),
                None,
                Some(&json!({ "sessions_revoked": n })),
            )?;
            Ok(n)
        })
        .await?;
    Ok(Json(json!({ "sessions_revoked": revoked })))
}
