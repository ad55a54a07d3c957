//! The registry, 一单两库一细则: departments, inspection items (versioned), the
//! target directory, the inspector directory and the agency's rules.

use axum::Router;
use axum::routing::{delete, get, post};

use crate::AppState;
use crate::actor::Actor;
use crate::auth::Role;
use crate::error::{Error, Result};

pub mod departments;
pub mod import;
pub mod inspectors;
pub mod items;
pub mod rules;
pub mod targets;

/// Routes of the registry.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/departments",
            get(departments::list).post(departments::create),
        )
        .route("/api/v1/items", get(items::list).post(items::create))
        .route(
            "/api/v1/items/{code}",
            get(items::get_current).put(items::update),
        )
        .route("/api/v1/items/{code}/versions", get(items::versions))
        .route(
            "/api/v1/items/{code}/versions/{version}",
            get(items::get_version),
        )
        .route("/api/v1/public/items", get(items::public_list))
        .route("/api/v1/targets", get(targets::list).post(targets::create))
        .route("/api/v1/targets/import", import::route())
        .route(
            "/api/v1/targets/{id}",
            get(targets::get_one).put(targets::update),
        )
        .route(
            "/api/v1/inspectors",
            get(inspectors::list).post(inspectors::create),
        )
        .route(
            "/api/v1/inspectors/{id}",
            get(inspectors::get_one).put(inspectors::update_handler),
        )
        .route(
            "/api/v1/inspectors/{id}/conflicts",
            post(inspectors::declare_conflict),
        )
        .route(
            "/api/v1/inspectors/{id}/conflicts/{target_id}",
            delete(inspectors::withdraw_conflict),
        )
        .route("/api/v1/rules", get(rules::get_rules).put(rules::put_rules))
}

/// Roles that may change the registry.
pub const WRITERS: &[Role] = &[Role::Admin, Role::Planner];
/// Roles that may read the registry (inspectors see their assignments instead).
pub const READERS: &[Role] = &[Role::Admin, Role::Planner, Role::Supervisor];

/// Fails unless `user` may change the registry.
pub fn require_writer(user: &Actor) -> Result<()> {
    user.require(WRITERS)
}

/// Fails unless `user` may read the registry.
pub fn require_reader(user: &Actor) -> Result<()> {
    user.require(READERS)
}

/// Fails unless `value` is an inspection method code (核查方式), as the
/// record document defines them.
pub fn check_method(field: &str, value: &str) -> Result<()> {
    use suiji_mobile_core::vocab::Method;
    if Method::from_code(value).is_some() {
        return Ok(());
    }
    let codes: Vec<&str> = Method::ALL.iter().map(|m| m.code()).collect();
    Err(Error::invalid(
        field,
        format!("`{value}` is not one of: {}", codes.join(", ")),
    ))
}

/// Kinds of inspection target in the directory.
pub const TARGET_TYPES: &[(&str, &str)] = &[
    ("enterprise", "企业"),
    ("individual_business", "个体工商户"),
    ("farmer_coop", "农民专业合作社"),
    ("social_org", "社会组织"),
    ("public_institution", "事业单位"),
    ("project", "建设项目"),
    ("product", "产品"),
];

/// Registration statuses (登记状态) a target may have.
pub const REG_STATUSES: &[&str] = &["存续", "在业", "停业", "吊销", "注销", "迁出", "撤销"];

/// Credit risk classes, A (low) to D (high).
pub const RISK_CLASSES: &[&str] = &["A", "B", "C", "D"];

/// Fails with a message listing the allowed codes unless `value` is one of them.
pub fn check_code(field: &str, value: &str, allowed: &[(&str, &str)]) -> Result<()> {
    if allowed.iter().any(|(code, _)| *code == value) {
        return Ok(());
    }
    let codes: Vec<&str> = allowed.iter().map(|(c, _)| *c).collect();
    Err(Error::invalid(
        field,
        format!("`{value}` is not one of: {}", codes.join(", ")),
    ))
}

/// Fails unless `value` is one of `allowed`.
pub fn check_one_of(field: &str, value: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&value) {
        return Ok(());
    }
    Err(Error::invalid(
        field,
        format!("`{value}` is not one of: {}", allowed.join(", ")),
    ))
}

/// Fails unless the trimmed text is non-empty, at most `max` characters, and free of the
/// characters [`check_chars`] refuses; line breaks and tabs are allowed (legal bases,
/// reasons). Names take [`check_name`].
pub fn check_text(field: &str, value: &str, max: usize) -> Result<()> {
    check_length(field, value, max)?;
    check_chars(field, value, Lines::Many)
}

/// Fails unless the trimmed text is non-empty, at most `max` characters, and one line of
/// printable text: what every name, code and short label must be.
pub fn check_name(field: &str, value: &str, max: usize) -> Result<()> {
    check_length(field, value, max)?;
    check_chars(field, value, Lines::One)
}

fn check_length(field: &str, value: &str, max: usize) -> Result<()> {
    let len = value.trim().chars().count();
    if len == 0 {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if len > max {
        return Err(Error::invalid(field, format!("at most {max} characters")));
    }
    Ok(())
}

/// Whether a text may run over several lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// A name or label: no line break, no tab.
    One,
    /// Running text: line feeds, carriage returns and tabs allowed.
    Many,
}

/// Fails if `value` holds a control character (U+0000–U+001F, U+007F–U+009F; in running
/// text line breaks and tabs excepted), a line or paragraph separator in a one-line text,
/// or a bidirectional embedding, override or isolate (U+202A–U+202E, U+2066–U+2069), which
/// would make a name read differently on screen than it is stored (and NUL cuts text short
/// in many a consumer of exports).
pub fn check_chars(field: &str, value: &str, lines: Lines) -> Result<()> {
    let bad = value.chars().find(|&c| {
        let allowed_break = lines == Lines::Many && matches!(c, '\n' | '\r' | '\t');
        (c.is_control() && !allowed_break)
            || (lines == Lines::One && matches!(c, '\u{2028}' | '\u{2029}'))
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    });
    match bad {
        None => Ok(()),
        Some(c) => Err(Error::invalid(
            field,
            format!(
                "must not contain U+{:04X}: control, line-break and bidirectional formatting \
                 characters are refused{}",
                u32::from(c),
                if lines == Lines::One {
                    " (this is one line of text)"
                } else {
                    ""
                }
            ),
        )),
    }
}

/// Fails unless `ratio` is a fraction in (0, 1].
pub fn check_ratio(field: &str, ratio: f64) -> Result<()> {
    if ratio.is_finite() && ratio > 0.0 && ratio <= 1.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("a ratio must be above 0 and at most 1, got {ratio}"),
        ))
    }
}
