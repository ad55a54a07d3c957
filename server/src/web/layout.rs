//! The base layout every page shares, and small display helpers.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::session::WebUser;
use crate::auth::Role;

/// A whole page: head, navigation for `user`'s roles, then `body`.
pub fn page(title: &str, user: Option<&WebUser>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · 随机抽查" }
                link rel="stylesheet" href="/static/console.css";
                script src="/static/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "随机抽查 " span { "双随机、一公开" } }
                    nav {
                        @if let Some(user) = user {
                            @if user.has_any(&[Role::Admin, Role::Planner, Role::Supervisor]) {
                                a href="/plans" { "计划任务" }
                                a href="/targets" { "检查对象" }
                                a href="/inspectors" { "检查人员" }
                                a href="/items" { "抽查事项" }
                            }
                            @if user.has_any(&[Role::Admin, Role::Supervisor]) {
                                a href="/review" { "审核" }
                            }
                            @if user.has_any(&[Role::Admin, Role::Planner, Role::Supervisor]) {
                                a href="/deadlines" { "期限" }
                                a href="/stats" { "统计" }
                                a href="/outcomes" { "处置" }
                            }
                        }
                        a href="/public/results" { "结果公示" }
                        a href="/public/draws" { "摇号公示" }
                        a href="/public/commitments" { "承诺公示" }
                        @if let Some(user) = user {
                            span.who { (user.auth.username) "（" (roles_text(&user.auth.roles)) "）" }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(user.csrf);
                                button.link type="submit" { "退出" }
                            }
                        } @else {
                            a href="/login" { "登录" }
                        }
                    }
                }
                main { (body) }
                footer { "suiji 随机抽查系统 · 抽查结果依法公示" }
            }
        }
    }
}

/// Role names in Chinese, joined by 、.
pub fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| role_name(*r))
        .collect::<Vec<_>>()
        .join("、")
}

/// A role's name in Chinese.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "管理员",
        Role::Planner => "计划员",
        Role::Supervisor => "审核员",
        Role::Inspector => "检查员",
    }
}

/// A stored UTC timestamp shown in China time (`2026-11-02 14:05`); other
/// text unchanged.
pub fn time(stored: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(stored) {
        Ok(at) => at
            .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8"))
            .format("%Y-%m-%d %H:%M")
            .to_string(),
        Err(_) => stored.to_owned(),
    }
}

/// A JSON value as plain text: strings without quotes, null as "—".
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        Value::Bool(true) => "是".into(),
        Value::Bool(false) => "否".into(),
        other => other.to_string(),
    }
}

/// A review state code in Chinese.
pub fn state_label(code: &str) -> &str {
    suiji_mobile_core::vocab::ReviewState::ALL
        .iter()
        .find(|s| s.code() == code)
        .map(|s| s.label())
        .unwrap_or(code)
}

/// A target type code in Chinese.
pub fn target_type_label(code: &str) -> &str {
    crate::registry::TARGET_TYPES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, label)| *label)
        .unwrap_or(code)
}

/// An inspection method code in Chinese.
pub fn method_label(code: &str) -> &str {
    suiji_mobile_core::vocab::Method::from_code(code)
        .map(|m| m.label())
        .unwrap_or(code)
}

/// The mark beside a provisional deadline: counted Monday to Friday in a year
/// whose holiday schedule the State Council has not published (or an admin
/// has not loaded) yet.
pub fn provisional_mark(years: &[i64]) -> Markup {
    let years: Vec<String> = years.iter().map(|y| format!("{y} 年")).collect();
    let years = if years.is_empty() {
        "该年度".to_owned()
    } else {
        years.join("、")
    };
    html! {
        span.badge.warn.provisional title=(format!("{years}节假日安排未公布，暂按周一至周五计算工作日；载入后自动更正")) {
            "（暂定，节假日安排未公布）"
        }
    }
}

/// A deadline entry's date (`deadline`), marked when it is `provisional`.
pub fn deadline_date(entry: &Value) -> Markup {
    let years: Vec<i64> = entry["unscheduled_years"]
        .as_array()
        .map(|ys| ys.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    html! {
        (text(&entry["deadline"]))
        @if entry["provisional"] == Value::Bool(true) { " " (provisional_mark(&years)) }
    }
}

/// "Working days left" in words, with a class for colour.
pub fn days_left(entry: &Value) -> Markup {
    let overdue = entry["overdue"] == Value::Bool(true);
    let left = entry["working_days_left"].as_i64();
    html! {
        @if overdue {
            span.badge.danger { "已超期" @if let Some(l) = left { " " (-l) " 个工作日" } }
        } @else if let Some(left) = left {
            span.badge.ok[left > 5] .warn[left <= 5] { "剩 " (left) " 个工作日" }
        } @else {
            "—"
        }
    }
}

/// Previous/next page links for a list of `total` items.
pub fn pager(base: &str, page: u32, per_page: u32, total: i64) -> Markup {
    let pages = ((total.max(1) - 1) / i64::from(per_page) + 1) as u32;
    let sep = if base.contains('?') { '&' } else { '?' };
    html! {
        @if pages > 1 {
            nav.pager {
                @if page > 1 { a href=(format!("{base}{sep}page={}", page - 1)) { "上一页" } }
                span { "第 " (page) " / " (pages) " 页，共 " (total) " 条" }
                @if page < pages { a href=(format!("{base}{sep}page={}", page + 1)) { "下一页" } }
            }
        } @else {
            p.muted { "共 " (total) " 条" }
        }
    }
}
