//! The console's cookie session over the API's own sessions, and CSRF.
//!
//! Logging in opens the same kind of session as `POST /api/v1/auth/login`;
//! the access token and refresh token travel in two `HttpOnly`,
//! `SameSite=Lax` cookies instead of a header. [`resolve`] runs before every
//! page: it checks the access token exactly as the bearer extractor does
//! ([`auth::authenticate`]), and when it has expired it rotates the refresh
//! token ([`auth::refresh_session`]) and sets the new cookies on the answer.
//! Logging out revokes the session, so the API and the console agree on who
//! is logged in.
//!
//! CSRF: every form carries a token that is the HMAC-SHA256 of the session id
//! under a key derived from the server's secret, and every POST checks it
//! ([`super::form::CsrfForm`]). The login form, which has no session yet,
//! uses a double-submit token: a random value in a cookie and in the form.

use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use maud::{Markup, html};
use serde::Deserialize;
use sha2::Sha256;

use super::form::{CsrfForm, FormData};
use super::{WebError, WebResult, layout, see_other};
use crate::AppState;
use crate::accounts::{self, LoginError, LoginRequest};
use crate::auth::{self, AuthUser, Role, TokenPair};
use crate::error::Error;
use crate::throttle::{PeerAddr, Refusal};

/// Cookie holding the access token.
pub const ACCESS_COOKIE: &str = "suiji_access";
/// Cookie holding the refresh token.
pub const REFRESH_COOKIE: &str = "suiji_refresh";
/// Cookie holding the login form's double-submit token.
pub const LOGIN_COOKIE: &str = "suiji_login";

/// Key of the console's CSRF tokens, derived from the server's secret.
#[derive(Clone)]
pub struct CsrfKey([u8; 32]);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl CsrfKey {
    /// Derives the key from the server's token secret, so that it survives
    /// restarts without a second secret to keep.
    pub fn derive(secret: &[u8]) -> CsrfKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(&Self::mac(secret, b"suiji web console csrf v1"));
        CsrfKey(key)
    }

    fn mac(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }

    /// The CSRF token of session `session_id`.
    pub fn token(&self, session_id: i64) -> String {
        hex::encode(Self::mac(
            &self.0,
            format!("session:{session_id}").as_bytes(),
        ))
    }

    /// Whether `token` is the CSRF token of `session_id` (compared in constant time).
    pub fn check(&self, session_id: i64, token: &str) -> bool {
        let Ok(bytes) = hex::decode(token.trim()) else {
            return false;
        };
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(format!("session:{session_id}").as_bytes());
        mac.verify_slice(&bytes).is_ok()
    }
}

/// Who is looking at a page, if anyone is logged in.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// The logged-in user.
    pub user: Option<WebUser>,
}

/// A logged-in user of the console with the CSRF token of their session.
#[derive(Debug, Clone)]
pub struct WebUser {
    /// The user, checked against the database on this request.
    pub auth: AuthUser,
    /// CSRF token to put in forms.
    pub csrf: String,
}

impl WebUser {
    /// Whether the user holds one of `roles`.
    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.auth.has(*r))
    }

    /// A 403 unless the user holds one of `roles`.
    pub fn require(&self, roles: &[Role]) -> WebResult<()> {
        self.auth
            .require(roles)
            .map_err(|e| WebError::for_user(e, self))
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Session>()
            .cloned()
            .unwrap_or_default())
    }
}

/// A page that needs a login sends anonymous visitors to the login page,
/// and back here afterwards.
pub struct LoginRequired(String);

impl IntoResponse for LoginRequired {
    fn into_response(self) -> Response {
        let next = form_urlencode(&self.0);
        see_other(&format!("/login?next={next}"))
    }
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = LoginRequired;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Ok(session) = Session::from_request_parts(parts, state).await;
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        session.user.ok_or(LoginRequired(path))
    }
}

/// Percent-encodes a query value.
pub fn form_urlencode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(name: &str, value: &str, max_age: i64) -> HeaderValue {
    // Tokens are hex or JWT (base64url and dots): no character needs quoting.
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}"
    ))
    .expect("cookie text is ASCII")
}

fn session_cookies(pair: &TokenPair) -> [HeaderValue; 2] {
    [
        set_cookie(
            ACCESS_COOKIE,
            &pair.access_token,
            auth::REFRESH_TTL_DAYS * 86_400,
        ),
        set_cookie(
            REFRESH_COOKIE,
            &pair.refresh_token,
            auth::REFRESH_TTL_DAYS * 86_400,
        ),
    ]
}

fn clear_cookies() -> [HeaderValue; 2] {
    [
        set_cookie(ACCESS_COOKIE, "", 0),
        set_cookie(REFRESH_COOKIE, "", 0),
    ]
}

/// Middleware before every page: finds the session from the cookies,
/// refreshing an expired access token, and hands it on as a [`Session`].
pub async fn resolve(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let mut user = None;
    let mut refreshed = None;
    if let Some(token) = cookie(req.headers(), ACCESS_COOKIE).filter(|t| !t.is_empty()) {
        user = auth::authenticate(&state, token).await.ok();
    }
    if user.is_none()
        && let Some(refresh) = cookie(req.headers(), REFRESH_COOKIE).filter(|t| !t.is_empty())
    {
        let keys = state.keys.clone();
        let refresh = refresh.to_owned();
        // A failed refresh (revoked, expired, or a parallel request rotated
        // it first) leaves the cookies alone: the visitor is anonymous on
        // this request only.
        let grace = state.throttle.limits().refresh_reuse_grace;
        if let Ok(auth::Refreshed::Rotated(pair)) = state
            .db
            .write(move |tx| auth::refresh_session(tx, &keys, &refresh, grace))
            .await
        {
            user = auth::authenticate(&state, &pair.access_token).await.ok();
            refreshed = Some(pair);
        }
    }
    let session = Session {
        user: user.map(|auth| WebUser {
            csrf: state.csrf.token(auth.session_id),
            auth,
        }),
    };
    let https = behind_https(req.headers());
    req.extensions_mut().insert(session);
    let mut response = next.run(req).await;
    if let Some(pair) = refreshed {
        for c in session_cookies(&pair) {
            response.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    if https {
        mark_cookies_secure(response.headers_mut());
    }
    response
}

/// Whether a reverse proxy says the visitor came over HTTPS (`X-Forwarded-Proto: https`,
/// or `Forwarded: proto=https`). Taken at its word: a forged header can only make that
/// visitor's own cookies `Secure`, which a browser on plain HTTP then does not send back.
fn behind_https(headers: &HeaderMap) -> bool {
    let says_https = |name: header::HeaderName, key: Option<&str>| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([',', ';']))
            .map(str::trim)
            .any(|part| match key {
                None => part.eq_ignore_ascii_case("https"),
                Some(key) => part.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case(key)
                        && v.trim().trim_matches('"').eq_ignore_ascii_case("https")
                }),
            })
    };
    says_https(header::HeaderName::from_static("x-forwarded-proto"), None)
        || says_https(header::FORWARDED, Some("proto"))
}

/// Adds `Secure` to every cookie the response sets.
fn mark_cookies_secure(headers: &mut HeaderMap) {
    let cookies: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    if cookies.is_empty() {
        return;
    }
    headers.remove(header::SET_COOKIE);
    for cookie in cookies {
        let secure = match cookie.to_str() {
            Ok(text) if !text.contains("; Secure") => {
                HeaderValue::from_str(&format!("{text}; Secure")).unwrap_or(cookie)
            }
            _ => cookie,
        };
        headers.append(header::SET_COOKIE, secure);
    }
}

/// Query of the login page.
#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Where to go after logging in: only paths of this site.
fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\");
    if local && !next.chars().any(char::is_control) {
        next
    } else {
        "/"
    }
}

fn login_form(token: &str, next: &str, username: &str, message: Option<&str>) -> Markup {
    layout::page(
        "登录",
        None,
        html! {
            h1 { "工作人员登录" }
            form.narrow method="post" action="/login" {
                @if let Some(message) = message {
                    p.alert.error-text #login-error role="alert" { (message) }
                }
                input type="hidden" name="csrf" value=(token);
                input type="hidden" name="next" value=(next);
                div.field {
                    label for="username" { "用户名" }
                    input #username name="username" type="text" autocomplete="username" required value=(username);
                }
                div.field {
                    label for="password" { "密码" }
                    input #password name="password" type="password" autocomplete="current-password" required;
                }
                button.primary type="submit" { "登录" }
            }
            p.hint { "公众查询抽查结果无需登录：" a href="/public/results" { "抽查结果公示" } }
        },
    )
}

fn with_login_cookie(token: &str, status: StatusCode, page: Markup) -> Response {
    let mut response = (status, page).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Lax; Max-Age=3600"
        ))
        .expect("hex is ASCII"),
    );
    response
}

/// `GET /login`.
pub async fn login_page(session: Session, Query(q): Query<LoginQuery>) -> WebResult<Response> {
    let next = safe_next(q.next.as_deref().unwrap_or("/")).to_owned();
    if session.user.is_some() {
        return Ok(see_other(&next));
    }
    let token = hex::encode(auth::random_bytes::<16>()?);
    Ok(with_login_cookie(
        &token,
        StatusCode::OK,
        login_form(&token, &next, "", None),
    ))
}

/// `POST /login`: checks the double-submit token, then the password through
/// the API's own login.
pub async fn login(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    axum::Form(pairs): axum::Form<Vec<(String, String)>>,
) -> WebResult<Response> {
    let form = FormData::new(pairs);
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || expected != form.get("csrf") {
        return Err(WebError::from(Error::Forbidden(
            "表单校验失败（CSRF）：登录表单已过期或不是从本站提交的，请刷新登录页后重试。".into(),
        )));
    }
    let next = safe_next(form.get("next")).to_owned();
    let username = form.get("username").to_owned();
    let retry = |message: &str| -> WebResult<Response> {
        let token = hex::encode(auth::random_bytes::<16>()?);
        Ok(with_login_cookie(
            &token,
            StatusCode::UNAUTHORIZED,
            login_form(&token, &next, &username, Some(message)),
        ))
    };
    if username.is_empty() || form.get("password").is_empty() {
        return retry("请输入用户名和密码。");
    }
    let request = LoginRequest {
        username: username.clone(),
        password: form.get_raw("password").to_owned(),
        device: Some("web".into()),
        device_id: None,
    };
    match accounts::log_in(&state, request, peer).await {
        Ok(login) => {
            let mut response = see_other(&next);
            for c in session_cookies(&login.tokens) {
                response.headers_mut().append(header::SET_COOKIE, c);
            }
            Ok(response)
        }
        Err(LoginError::Refused(refusal)) => {
            let secs = refusal.retry_after_secs();
            let message = match refusal {
                Refusal::Throttled { .. } => {
                    format!("登录失败次数过多，请 {secs} 秒后再试。")
                }
                Refusal::Busy { .. } => format!("登录的人太多，请 {secs} 秒后再试。"),
            };
            let mut response = retry(&message)?;
            *response.status_mut() = refusal.status();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, refusal.retry_after_header());
            Ok(response)
        }
        Err(LoginError::WrongCredentials) => retry("用户名或密码错误，请重新输入。"),
        Err(LoginError::Deactivated) => retry("该账号已停用，请联系管理员。"),
        Err(LoginError::WeakPassword(_)) => {
            retry("该密码过于简单，只在演示模式下可用。请联系管理员设置新密码。")
        }
        Err(LoginError::Failed(Error::Invalid { reason, .. })) => {
            let mut response = retry(&format!("输入有误：{reason}"))?;
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(response)
        }
        Err(LoginError::Failed(e)) => Err(e.into()),
    }
}

/// `POST /logout`: revokes the session and clears the cookies.
pub async fn logout(State(state): State<AppState>, form: CsrfForm) -> WebResult<Response> {
    let user = form.user.auth;
    state
        .db
        .write(move |tx| accounts::log_out(tx, &user))
        .await?;
    let mut response = see_other("/login");
    for c in clear_cookies() {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(response)
}
