//! Public pages, no login: published results searchable by name or
//! 统一社会信用代码 with corrections marked, every draw commitment from the
//! moment it is made (superseded ones too), and published draw records with
//! the instructions to verify them.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::WebResult;
use super::form::{FieldErrors, input};
use super::layout::{page, pager, text, time};
use super::session::Session;
use crate::AppState;
use crate::draw::routes::published_draws;
use crate::draw::{CommitmentState, public_commitments};
use crate::extract::Paging;
use crate::review::publication::search_public;

/// Routes of the public pages.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/public/results", get(results))
        .route("/public/commitments", get(commitments))
        .route("/public/draws", get(draws))
        .route("/public/draws/{id}", get(draw))
        .route("/public/check", get(check))
}

#[derive(Debug, Default, Deserialize)]
struct CheckParams {
    #[serde(default)]
    record: String,
    #[serde(default)]
    digest: String,
}

/// `GET /public/check`: whether a printed document (its record id and digest,
/// as its footer and QR code carry them) matches what the server holds.
async fn check(
    State(state): State<AppState>,
    session: Session,
    Query(p): Query<CheckParams>,
) -> WebResult<Markup> {
    let asked = !p.record.trim().is_empty() || !p.digest.trim().is_empty();
    let query = crate::documents::CheckQuery {
        record: p.record.trim().to_owned(),
        digest: p.digest.trim().to_owned(),
    };
    let mut errors = FieldErrors::new();
    let answer = if asked {
        match state
            .db
            .read(move |c| crate::documents::check(c, &query))
            .await
        {
            Ok(answer) => Some(answer),
            Err(crate::error::Error::Invalid { .. }) => {
                errors.add("digest", "摘要是 64 位十六进制字符，见文书页脚。");
                None
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    Ok(page(
        "文书核对",
        session.user.as_ref(),
        html! {
            h1 { "文书核对" }
            p.lead { "检查通知书、检查记录表和责令改正通知书的页脚印有记录编号和摘要，首页二维码指向本页。核对结果说明纸质文书是否与系统中的记录一致。" }
            form.filters.box method="get" action="/public/check" {
                (input("记录编号", "record", "text", &p.record, &FieldErrors::new()))
                (input("摘要（SHA-256）", "digest", "text", &p.digest, &errors))
                div.field { button.primary type="submit" { "核对" } }
            }
            @if let Some(answer) = answer {
                @match (&answer.record, answer.matched) {
                    (Some(r), Some(matched)) => {
                        section.box #check-result {
                            p.notice #check-verdict { @match matched {
                                "notice" => "一致：这份检查通知书与系统中的检查安排一致。",
                                "current" => "一致：这份文书与系统中该记录的当前内容一致。",
                                _ => "曾经一致：这份文书与签名时的记录内容一致，此后记录有修改，请以最新文书为准。",
                            } }
                            dl.facts {
                                dt { "记录编号" } dd { code { (r.id) } }
                                dt { "检查实施机关" } dd { (r.agency) }
                                dt { "抽查任务" } dd { (r.task_number) }
                                dt { "检查对象" } dd { (r.target_name) }
                                dt { "记录状态" } dd { (super::layout::state_label(&r.state)) }
                            }
                            @if r.result_id.is_some() {
                                p { a href=(format!("/public/results?q={}", super::session::form_urlencode(&r.target_name))) { "查看公示的抽查结果" } }
                            }
                        }
                    }
                    _ => {
                        p.alert #check-verdict { "不一致：没有与该记录编号和摘要相符的文书。请核对输入，或向检查实施机关咨询。" }
                    }
                }
            }
        },
    ))
}

#[derive(Debug, Default, Deserialize)]
struct ResultParams {
    #[serde(default)]
    q: String,
    page: Option<u32>,
}

async fn results(
    State(state): State<AppState>,
    session: Session,
    Query(p): Query<ResultParams>,
) -> WebResult<Markup> {
    let paging = Paging {
        page: p.page.unwrap_or(1).max(1),
        per_page: 20,
    };
    let q = p.q.trim().to_owned();
    let query = q.clone();
    let found = state
        .db
        .read(move |c| search_public(c, Some(&query), paging))
        .await?;
    let base = format!("/public/results?q={}", super::session::form_urlencode(&q));
    Ok(page(
        "抽查结果公示",
        session.user.as_ref(),
        html! {
            h1 { "抽查结果公示" }
            p.lead { "依法公示的“双随机、一公开”抽查检查结果。可按检查对象名称、统一社会信用代码或任务编号查询。" }
            form.filters.box method="get" action="/public/results" role="search" {
                (input("名称或统一社会信用代码", "q", "search", &q, &FieldErrors::new()))
                div.field { button.primary type="submit" { "查询" } }
            }
            @if found.items.is_empty() {
                p #no-results { @if q.is_empty() { "暂无公示结果。" } @else { "没有找到与“" (q) "”相关的公示结果。" } }
            }
            div #results { @for r in &found.items { (result_card(r)) } }
            (pager(&base, found.page, found.per_page, found.total))
        },
    ))
}

fn result_card(r: &Value) -> Markup {
    let corrected = r["corrected"] == Value::Bool(true);
    html! {
        article.result-card.corrected[corrected] {
            h2 { (text(&r["target_name"])) " "
                @if corrected { span.badge.warn { "已更正" } } @else { span.badge.ok { "已公示" } } }
            (content_facts(r))
            @if corrected {
                p.alert { "更正说明：" (text(&r["correction_reason"])) }
            }
            @for old in r["previous_versions"].as_array().into_iter().flatten() {
                div.old-version {
                    p { span.badge.warn { "已更正" } " 第 " (text(&old["version"])) " 版（公示于 " (old["published_at"].as_str().map(time).unwrap_or_default())
                        "，更正于 " (old["corrected_at"].as_str().map(time).unwrap_or_default()) "）：" (text(&old["result"])) }
                }
            }
        }
    }
}

fn content_facts(r: &Value) -> Markup {
    html! {
        dl.facts {
            dt { "统一社会信用代码" } dd { code { (text(&r["uscc"])) } }
            dt { "抽查计划" } dd { (text(&r["plan_number"])) " " (text(&r["plan_name"])) }
            dt { "抽查任务" } dd { (text(&r["task_number"])) " " (text(&r["task_name"])) }
            dt { "抽查类型" } dd { (text(&r["inspection_type"])) }
            dt { "检查实施机关" } dd { (text(&r["agency"])) }
            dt { "检查完成日期" } dd { (text(&r["completed_on"])) }
            dt { "检查结果" } dd.result { strong { (text(&r["result"])) } }
            dt { "检查事项" } dd {
                @for item in r["items"].as_array().into_iter().flatten() {
                    div { (text(&item["name"])) "（" (text(&item["department"])) "）：" (text(&item["result"])) }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct CommitmentParams {
    #[serde(default)]
    task: String,
    page: Option<u32>,
}

async fn commitments(
    State(state): State<AppState>,
    session: Session,
    Query(p): Query<CommitmentParams>,
) -> WebResult<Markup> {
    let paging = Paging {
        page: p.page.unwrap_or(1).max(1),
        per_page: 50,
    };
    let task = p.task.trim().to_owned();
    let filter = task.clone();
    let found = state
        .db
        .read(move |c| {
            public_commitments(c, Some(filter.as_str()).filter(|t| !t.is_empty()), paging)
        })
        .await?;
    let base = format!(
        "/public/commitments?task={}",
        super::session::form_urlencode(&task)
    );
    Ok(page(
        "摇号承诺公示",
        session.user.as_ref(),
        html! {
            h1 { "摇号承诺公示" }
            p.lead { "每次摇号前，系统固定候选检查对象、检查人员和参数，并在此公布它们的哈希和服务器密钥的哈希（承诺）。承诺一经作出即公开，被新承诺替代的也永久保留：如果有人反复重新承诺以挑选结果，这里一目了然。" }
            form.filters.box method="get" action="/public/commitments" role="search" {
                (input("抽查任务编号", "task", "search", &task, &FieldErrors::new()))
                div.field { button.primary type="submit" { "查询" } }
            }
            div.table-wrap { table #public-commitments {
                thead { tr { th.num { "编号" } th { "任务" } th { "状态" } th { "承诺时间" } th { "算法" } th { "哈希" } th { "公开随机源" } } }
                tbody {
                    @for c in &found.items {
                        tr {
                            td.num { (c.commitment.id) }
                            td { (c.task_number) " " (c.task_name) }
                            td { @match c.state {
                                CommitmentState::Open => span.badge.warn { "待摇号" },
                                CommitmentState::Used => span.badge.ok { "已用于摇号" },
                                CommitmentState::Superseded => span.badge.danger { "已被替代" },
                            }
                            @if let Some(at) = &c.superseded_at { br; span.muted { "替代于 " (time(at)) } } }
                            td { (time(&c.commitment.committed_at)) }
                            td { code { (c.commitment.algorithm) } }
                            td { dl.facts {
                                dt { "服务器密钥" } dd { code.hash { (c.commitment.secret_sha256) } }
                                dt { "参数" } dd { code.hash { (c.commitment.params_sha256) } }
                                dt { "候选检查对象（" (c.commitment.target_count) " 户）" } dd { code.hash { (c.commitment.target_pool_sha256) } }
                                dt { "候选检查人员（" (c.commitment.inspector_count) " 人）" } dd { code.hash { (c.commitment.inspector_pool_sha256) } }
                            } }
                            td { @if let Some(b) = &c.commitment.beacon { (b.name) br; span.muted { (time(&b.due_at)) " 公布" } } @else { "—" } }
                        }
                    }
                    @if found.items.is_empty() { tr { td colspan="7" { "暂无承诺。" } } }
                }
            } }
            (pager(&base, found.page, found.per_page, found.total))
            section.verify {
                h2 { "如何核对" }
                ol {
                    li { "摇号前记下承诺的各项哈希（也可通过 " code { "GET /api/v1/public/commitments" } " 获取）。" }
                    li { "摇号记录公示后，下载记录并运行 " code { "suiji-server draw verify" } "：它核对记录中的密钥、候选池和参数与承诺的哈希一致，承诺早于摇号，并重算结果。" }
                    li { "同一任务若有多次承诺，只有一次可被使用；其余标为“已被替代”。" }
                }
            }
        },
    ))
}

async fn draws(State(state): State<AppState>, session: Session) -> WebResult<Markup> {
    let list = state.db.read(published_draws).await?;
    Ok(page(
        "摇号记录公示",
        session.user.as_ref(),
        html! {
            h1 { "摇号记录公示" }
            p.lead { "每次摇号都留有完整记录：候选池、参数、服务器密钥、观察员随机数、种子和抽取结果。任何人都可以下载记录并独立验证。" }
            div.table-wrap { table #public-draws {
                thead { tr { th { "任务" } th { "计划" } th { "类型" } th.num { "抽中" } th { "摇号时间" } th { "公示时间" } th { "" } } }
                tbody {
                    @for d in &list {
                        tr {
                            td { (d.task_number) " " (d.task_name) }
                            td { (d.plan_number) " " (d.plan_name) }
                            td { @if d.kind == "initial" { "首次摇号" } @else { "重新抽取" } }
                            td.num { (d.targets) }
                            td { (time(&d.drawn_at)) }
                            td { (time(&d.published_at)) }
                            td { a href=(format!("/public/draws/{}", d.id)) { "查看与验证" } }
                        }
                    }
                    @if list.is_empty() { tr { td colspan="7" { "暂无公示的摇号记录。" } } }
                }
            } }
        },
    ))
}

async fn draw(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
) -> WebResult<Markup> {
    let found = state
        .db
        .read(move |c| {
            let list = published_draws(c)?;
            list.into_iter()
                .find(|d| d.id == id)
                .ok_or_else(|| crate::Error::NotFound(format!("no published draw {id}")))
        })
        .await?;
    let url = format!("/api/v1/public/draws/{id}");
    Ok(page(
        "摇号记录",
        session.user.as_ref(),
        html! {
            p.muted { a href="/public/draws" { "摇号记录公示" } " › " (found.task_number) }
            h1 { "摇号记录：" (found.task_name) }
            dl.facts {
                dt { "抽查计划" } dd { (found.plan_number) " " (found.plan_name) }
                dt { "抽查任务" } dd { (found.task_number) " " (found.task_name) }
                dt { "类型" } dd { @if found.kind == "initial" { "首次摇号" } @else { "重新抽取" } @if let Some(r) = &found.reason { "（" (r) "）" } }
                dt { "抽中检查对象" } dd { (found.targets) " 户" }
                dt { "摇号时间" } dd { (time(&found.drawn_at)) }
                dt { "公示时间" } dd { (time(&found.published_at)) }
                dt { "记录 SHA-256" } dd { code.hash #record-sha { (found.record_sha256) } }
            }
            p.exports {
                "本任务已公示的检查结果："
                a.button href=(format!("/api/v1/public/tasks/{}/results.xlsx", found.task_id)) download { "Excel（XLSX）" }
                " "
                a.button href=(format!("/api/v1/public/tasks/{}/results.csv", found.task_id)) download { "CSV" }
            }
            section.verify #verify {
                h2 { "如何验证" }
                ol {
                    li { a.button href=(url) download=(format!("draw-{id}.json")) { "下载摇号记录（JSON）" } }
                    li { "核对文件的 SHA-256 与上面的值一致（如 " code { "sha256sum draw-" (id) ".json" } "）。" }
                    li { "运行 " code { "suiji-server draw verify draw-" (id) ".json" } "：程序用记录中的候选池、参数、服务器密钥和观察员随机数重新计算种子和抽取结果，一致则输出 verified，否则指出第一处不一致。" }
                }
                p.muted { "服务器密钥在摇号前只公布了哈希，摇号后才揭示；观察员的随机数在现场输入。因此任何一方都无法事先决定结果。" }
            }
        },
    ))
}
