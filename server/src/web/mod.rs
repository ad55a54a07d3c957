//! The web console: server-rendered pages in Chinese for planners (registry,
//! plans, the draw ceremony), supervisors (review, deadlines, statistics)
//! and the public (published results and draw records), under `/` of the
//! same server as the JSON API.
//!
//! Pages call the same domain functions as the API handlers; nothing here
//! decides anything the API would decide differently. Sessions are the API's
//! own sessions carried in cookies ([`session`]); every form posts a CSRF
//! token bound to the session.

use axum::Router;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};

use crate::AppState;
use crate::auth::Role;
use crate::error::Error;

mod draw;
mod form;
mod inspectors;
mod items;
mod layout;
mod outcomes;
mod public;
mod recusal;
mod registry;
mod reports;
mod review;
pub mod session;
mod target;

pub use session::CsrfKey;

/// The console's style sheet, embedded in the binary.
const STYLE_CSS: &str = include_str!("../../static/console.css");
/// The console's few scripts (progress of long operations), embedded.
const CONSOLE_JS: &str = include_str!("../../static/console.js");

/// Routes of the web console. `state` is needed to build the session layer.
pub fn routes(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(home))
        .route("/login", get(session::login_page).post(session::login))
        .route(
            "/logout",
            post(session::logout).get(|| async { see_other("/") }),
        )
        .merge(registry::routes())
        .merge(items::routes())
        .merge(inspectors::routes())
        .merge(draw::routes())
        .merge(recusal::routes())
        .merge(review::routes())
        .merge(reports::routes())
        .merge(outcomes::routes())
        .merge(target::routes())
        .merge(public::routes())
        .layer(axum::middleware::from_fn_with_state(
            state,
            session::resolve,
        ));
    Router::new()
        .route("/static/console.css", get(style))
        .route("/static/console.js", get(script))
        .merge(pages)
}

async fn style() -> Response {
    static_file("text/css; charset=utf-8", STYLE_CSS)
}

async fn script() -> Response {
    static_file("text/javascript; charset=utf-8", CONSOLE_JS)
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

async fn home(session: session::Session) -> Markup {
    let user = session.user.as_ref();
    layout::page(
        "首页",
        user,
        html! {
            h1 { "随机抽查工作台" }
            p.lead { "“双随机、一公开”监管：随机抽取检查对象，随机选派执法检查人员，抽查情况及查处结果及时向社会公开。" }
            div.cards {
                @if let Some(user) = user {
                    @if user.has_any(registry::READERS) {
                        a.card href="/plans" { h2 { "抽查计划与任务" } p { "制定计划、创建任务、组织摇号" } }
                        a.card href="/targets" { h2 { "检查对象名录库" } p { "查询、筛选、批量导入检查对象" } }
                        a.card href="/inspectors" { h2 { "执法检查人员名录库" } p { "人员、资格与回避" } }
                        a.card href="/items" { h2 { "抽查事项清单" } p { "事项、法律依据、检查方式" } }
                    }
                    @if user.has_any(&[Role::Supervisor, Role::Admin]) {
                        a.card href="/review" { h2 { "审核队列" } p { "审核检查记录、退回或通过、公示结果" } }
                    }
                    @if user.has_any(reports::READERS) {
                        a.card href="/deadlines" { h2 { "公示期限" } p { "即将到期与已超期事项" } }
                        a.card href="/stats" { h2 { "统计" } p { "按月统计与检查结果分类" } }
                        a.card href="/outcomes" { h2 { "处置" } p { "经营异常名录决定与后续处置" } }
                    }
                }
                a.card href="/public/results" { h2 { "抽查结果公示" } p { "按名称或统一社会信用代码查询（无需登录）" } }
                a.card href="/public/draws" { h2 { "摇号记录公示" } p { "下载摇号记录并自行验证" } }
                a.card href="/public/commitments" { h2 { "摇号承诺公示" } p { "每次摇号前公布的承诺，含被替代的承诺" } }
                @if user.is_some_and(|u| !u.has_any(&[Role::Admin, Role::Planner, Role::Supervisor])) {
                    p.hint { "检查员请在手机应用中查看和填写检查任务。" }
                }
                @if user.is_none() {
                    a.card href="/login" { h2 { "工作人员登录" } p { "计划员、审核员、管理员" } }
                }
            }
        },
    )
}

/// Whether a path belongs to the JSON API (answered in JSON, never HTML).
pub fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/") || path == "/health"
}

/// The answer for a path no route serves: the API's JSON 404 under `/api/`,
/// a 404 page everywhere else.
pub async fn not_found(uri: Uri) -> Response {
    if is_api_path(uri.path()) {
        return Error::NotFound("no such endpoint".into()).into_response();
    }
    WebError::from(Error::NotFound(uri.path().to_owned())).into_response()
}

/// A failure of a page, answered with an HTML page in Chinese: 401 sends
/// the browser to the login page, 403 and 404 get their own pages, other
/// client mistakes say what was wrong, internal failures are logged and
/// answered with a bare 500 page (never a stack trace).
#[derive(Debug)]
pub struct WebError {
    /// What went wrong.
    pub error: Error,
    /// Who was refused, when known, so the page keeps their navigation.
    pub user: Option<Box<session::WebUser>>,
}

impl From<Error> for WebError {
    fn from(error: Error) -> Self {
        WebError { error, user: None }
    }
}

impl WebError {
    /// The error as `user` sees it.
    pub fn for_user(error: Error, user: &session::WebUser) -> WebError {
        WebError {
            error,
            user: Some(Box::new(user.clone())),
        }
    }
}

/// Result of a page handler.
pub type WebResult<T> = Result<T, WebError>;

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.error.status();
        let (title, body) = match &self.error {
            Error::Unauthorized(_) => return Redirect::to("/login").into_response(),
            Error::Csrf => (
                "403 表单校验失败",
                html! {
                    h1 { "403 表单校验失败" }
                    p.lead { (form::CSRF_REFUSED) }
                    p { "未做任何更改。" a href="/" { "返回首页" } }
                },
            ),
            e @ (Error::Forbidden(_) | Error::RoleNeeded(_) | Error::OwnRecord(_)) => (
                "403 无权访问",
                html! {
                    h1 { "403 无权访问" }
                    p.lead { "您的账号没有执行此操作所需的角色或权限。" }
                    p.detail { (forbidden_reason(e)) }
                    p { "如需此权限，请联系系统管理员。" a href="/" { "返回首页" } }
                },
            ),
            Error::NotFound(_) => (
                "404 页面不存在",
                html! {
                    h1 { "404 页面不存在" }
                    p.lead { "您访问的页面或记录不存在，可能已被删除或地址有误。" }
                    p { a href="/" { "返回首页" } }
                },
            ),
            Error::Gone(_) => (
                "410 记录已清除",
                html! {
                    h1 { "410 记录已清除" }
                    p.lead { "该检查记录已超过保存期限并由管理员清除；公示结果、摇号记录和审计日志仍保留。" }
                    p { a href="/" { "返回首页" } }
                },
            ),
            e if status.is_server_error() => {
                tracing::error!(error = ?e, "internal error on a page");
                (
                    "500 服务器内部错误",
                    html! {
                        h1 { "500 服务器内部错误" }
                        p.lead { "服务器处理请求时出错，错误已记录。请稍后重试。" }
                        p { a href="/" { "返回首页" } }
                    },
                )
            }
            e => (
                "请求未能完成",
                html! {
                    h1 { "请求未能完成" }
                    p.lead.error-text { (form::reason_text(e)) }
                    p { a href="/" data-back { "返回上一页" } " · " a href="/" { "首页" } }
                },
            ),
        };
        (status, layout::page(title, self.user.as_deref(), body)).into_response()
    }
}

/// The Chinese reason shown on the 403 page.
fn forbidden_reason(e: &Error) -> String {
    match e {
        Error::RoleNeeded(roles) => {
            let names: Vec<&str> = roles.iter().map(|r| layout::role_name(*r)).collect();
            format!("此页面需要以下角色之一：{}。", names.join("、"))
        }
        Error::OwnRecord(record) => {
            format!("您曾参与检查记录 {record} 的检查，按职责分离原则不能审核或公示它。")
        }
        Error::Forbidden(why) => format!("原因：{why}"),
        e => format!("原因：{e}"),
    }
}

/// A redirect after a successful POST (303: the browser follows with GET).
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}
