//! Forms: the posted fields, the CSRF check every POST passes through, and
//! validation errors shown next to the field they concern.

use std::collections::BTreeMap;

use axum::extract::{FromRequest, FromRequestParts, Request};
use maud::{Markup, html};

use super::WebError;
use super::session::WebUser;
use crate::AppState;
use crate::error::Error;

/// The fields of a posted form, in order (a name may repeat: checkboxes).
#[derive(Debug, Clone, Default)]
pub struct FormData(Vec<(String, String)>);

impl FormData {
    /// Wraps decoded pairs.
    pub fn new(pairs: Vec<(String, String)>) -> FormData {
        FormData(pairs)
    }

    /// The first value of `name`, trimmed; empty when absent.
    pub fn get(&self, name: &str) -> &str {
        self.get_raw(name).trim()
    }

    /// The first value of `name` as sent (passwords are not trimmed).
    pub fn get_raw(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// Every non-empty value of `name`, trimmed.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }
}

/// A form posted by a logged-in user whose CSRF token matched their session.
/// Anything else is refused before the handler runs: no session sends the
/// browser to the login page, a missing or wrong token is a 403 page.
pub struct CsrfForm {
    /// Who posted it.
    pub user: WebUser,
    /// The fields.
    pub form: FormData,
}

pub use crate::error::CSRF_REFUSED;

impl FromRequest<AppState> for CsrfForm {
    type Rejection = axum::response::Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        let (mut parts, body) = req.into_parts();
        let user = WebUser::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let req = Request::from_parts(parts, body);
        let axum::Form(pairs) = axum::Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map_err(|e| {
                WebError::from(Error::Malformed(format!("表单无法解析：{e}"))).into_response()
            })?;
        let form = FormData::new(pairs);
        check_csrf(state, &user, form.get("csrf")).map_err(IntoResponse::into_response)?;
        Ok(CsrfForm { user, form })
    }
}

/// A 403 unless `token` is the CSRF token of the user's session.
pub fn check_csrf(state: &AppState, user: &WebUser, token: &str) -> Result<(), WebError> {
    if !state.csrf.check(user.auth.session_id, token) {
        return Err(WebError::for_user(Error::Csrf, user));
    }
    Ok(())
}

/// Validation errors by field name, shown next to each field.
#[derive(Debug, Default, Clone)]
pub struct FieldErrors(BTreeMap<String, String>);

impl FieldErrors {
    /// No errors yet.
    pub fn new() -> FieldErrors {
        FieldErrors::default()
    }

    /// Records an error on `field` (the first one stays).
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_owned())
            .or_insert_with(|| message.into());
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The error on `field`.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// Records a domain validation error on the form field it names (the
    /// part before any `.` or `[`); other errors go under `form`. Errors that
    /// are not a client's mistake are handed back.
    pub fn absorb(&mut self, e: Error, fields: &[&str]) -> Result<(), WebError> {
        let (field, message) = match &e {
            Error::Invalid { field, reason } => {
                let base = field.split(['.', '[']).next().unwrap_or(field);
                let base = if fields.contains(&base) { base } else { "form" };
                (base.to_owned(), format!("{field}：{reason}"))
            }
            Error::Conflict(why) => ("form".to_owned(), format!("与现有数据冲突：{why}")),
            Error::Duplicate { field, message } => (
                if fields.contains(field) {
                    *field
                } else {
                    "form"
                }
                .to_owned(),
                format!("与现有数据冲突：{message}"),
            ),
            Error::Malformed(why) => ("form".to_owned(), why.clone()),
            _ => return Err(WebError::from(e)),
        };
        self.add(&field, message);
        Ok(())
    }

    /// The error under a field, if any.
    pub fn show(&self, field: &str) -> Markup {
        html! {
            @if let Some(message) = self.get(field) {
                p.field-error id=(format!("{field}-error")) role="alert" { (message) }
            }
        }
    }
}

/// A labelled text input with its error.
pub fn input(label: &str, name: &str, kind: &str, value: &str, errors: &FieldErrors) -> Markup {
    let invalid = errors.get(name).is_some();
    html! {
        div.field.invalid[invalid] {
            label for=(name) { (label) }
            input id=(name) name=(name) type=(kind) value=(value) aria-invalid=[invalid.then_some("true")];
            (errors.show(name))
        }
    }
}

/// A select with `(value, label)` options.
pub fn select(
    label: &str,
    name: &str,
    options: &[(String, String)],
    selected: &str,
    errors: &FieldErrors,
) -> Markup {
    html! {
        div.field.invalid[errors.get(name).is_some()] {
            label for=(name) { (label) }
            select id=(name) name=(name) {
                @for (value, text) in options {
                    option value=(value) selected[value == selected] { (text) }
                }
            }
            (errors.show(name))
        }
    }
}

/// The hidden CSRF field of a form.
pub fn csrf_field(user: &WebUser) -> Markup {
    html! { input type="hidden" name="csrf" value=(user.csrf); }
}

/// A one-button form that posts to `action`.
pub fn post_button(user: &WebUser, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf_field(user))
            button type="submit" class=(class) { (label) }
        }
    }
}

/// A client mistake in words for a page.
pub fn reason_text(e: &Error) -> String {
    match e {
        Error::Invalid { field, reason } => format!("输入有误（{field}）：{reason}"),
        Error::Conflict(why) | Error::Duplicate { message: why, .. } => {
            format!("操作与当前状态冲突：{why}")
        }
        Error::Malformed(why) => format!("请求格式有误：{why}"),
        Error::TooLarge { limit } => format!("文件过大（上限 {} MB）", limit / 1024 / 1024),
        other => other.to_string(),
    }
}
