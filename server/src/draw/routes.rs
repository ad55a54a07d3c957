//! HTTP endpoints of the draw: commitment, ceremony, publication, redraws,
//! the records it made, the public list of commitments and the public draw
//! records.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::records::{self, RecordSummary};
use super::{
    Ceremony, CommitRequest, CommitmentInfo, DrawSummary, PublicCommitment, RedrawRequest,
};
use crate::AppState;
use crate::auth::{AuthUser, Role};
use crate::error::{Error, Result};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Page, Paging};

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tasks/{id}/draw", get(draw_state).post(execute))
        .route("/api/v1/tasks/{id}/draw/commit", post(commit))
        .route("/api/v1/tasks/{id}/draw/publish", post(publish))
        .route("/api/v1/tasks/{id}/redraw", post(redraw))
        .route("/api/v1/tasks/{id}/records", get(task_records))
        .route("/api/v1/draws/{id}", get(get_draw))
        .route("/api/v1/my/records", get(my_records))
        .route("/api/v1/public/commitments", get(public_commitments))
        .route("/api/v1/public/draws", get(public_draws))
        .route("/api/v1/public/draws/{id}", get(public_draw))
}

/// Who runs draws and sees drawn lists before publication.
const DRAWERS: &[Role] = &[Role::Admin, Role::Planner];

async fn commit(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(task_id): ApiPath<i64>,
    ApiJson(request): ApiJson<CommitRequest>,
) -> Result<(StatusCode, Json<CommitmentInfo>)> {
    user.require(DRAWERS)?;
    let seal = state.seal.clone();
    let info = state
        .db
        .write(move |tx| super::commit(tx, &user.username, task_id, &request, &seal))
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

#[derive(Serialize)]
struct DrawState {
    commitment: Option<CommitmentInfo>,
    draws: Vec<DrawSummary>,
}

async fn draw_state(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(task_id): ApiPath<i64>,
) -> Result<Json<DrawState>> {
    user.require(DRAWERS)?;
    let found = state
        .db
        .read(move |c| {
            crate::plans::get_task_by_id(c, task_id)?;
            Ok(DrawState {
                commitment: super::open_commitment(c, task_id)?,
                draws: super::draws_of_task(c, task_id)?,
            })
        })
        .await?;
    Ok(Json(found))
}

async fn execute(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(task_id): ApiPath<i64>,
    ApiJson(ceremony): ApiJson<Ceremony>,
) -> Result<(StatusCode, Json<DrawSummary>)> {
    user.require(DRAWERS)?;
    // Read under the writer lock, as a schedule is loaded: a deadline counted
    // provisionally here is finalised by any later load.
    let current = state.clone();
    let seal = state.seal.clone();
    let summary = state
        .db
        .write(move |tx| {
            let calendar = current.calendar();
            super::execute(tx, &user.username, task_id, ceremony, &seal, &calendar)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(summary)))
}

async fn publish(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(task_id): ApiPath<i64>,
) -> Result<Json<Vec<DrawSummary>>> {
    user.require(DRAWERS)?;
    Ok(Json(
        state
            .db
            .write(move |tx| super::publish(tx, &user.username, task_id))
            .await?,
    ))
}

async fn redraw(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(task_id): ApiPath<i64>,
    ApiJson(req): ApiJson<RedrawRequest>,
) -> Result<(StatusCode, Json<DrawSummary>)> {
    user.require(DRAWERS)?;
    // Read under the writer lock, as a schedule is loaded: a deadline counted
    // provisionally here is finalised by any later load.
    let current = state.clone();
    let summary = state
        .db
        .write(move |tx| super::redraw(tx, &user.username, task_id, req, &current.calendar()))
        .await?;
    Ok((StatusCode::CREATED, Json(summary)))
}

async fn task_records(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(task_id): ApiPath<i64>,
) -> Result<Json<Vec<RecordSummary>>> {
    user.require(&[Role::Admin, Role::Planner, Role::Supervisor])?;
    // Only the records the caller may see (docs/draw.md, "Who sees a drawn list").
    let visible = state
        .db
        .write(move |tx| {
            crate::review::refresh_stale(tx)?;
            crate::visibility::visible_records(tx, &user, Some(task_id))
        })
        .await?;
    Ok(Json(visible.into_iter().map(|(r, _)| r).collect()))
}

async fn my_records(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<RecordSummary>>> {
    user.require(&[Role::Inspector])?;
    let user_id = user.user_id;
    let list = state
        .db
        .read(move |c| {
            let inspector: Option<i64> =
                crate::store::sql::OptionalExtension::optional(c.query_row(
                    "SELECT id FROM inspectors WHERE user_id = ?1",
                    [user_id],
                    |r| r.get(0),
                ))?;
            let sights = crate::visibility::sights(c, &user, None)?;
            match inspector {
                Some(id) => Ok(records::list(c, None, Some(id))?
                    .into_iter()
                    .filter(|r| sights.get(&r.id) == Some(&crate::visibility::Sight::Full))
                    .collect()),
                None => Ok(Vec::new()),
            }
        })
        .await?;
    Ok(Json(list))
}

async fn get_draw(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>> {
    user.require(DRAWERS)?;
    let text = state.db.read(move |c| stored_record(c, id, false)).await?;
    Ok(Json(serde_json::from_str(&text)?))
}

/// A draw record byte for byte as published: the stored record with its
/// commitment's pools spliced back in, so its SHA-256 is `record_sha256`.
/// With `published_only`, only if its drawn list is published.
pub fn stored_record(c: &crate::store::sql::Conn, id: i64, published_only: bool) -> Result<String> {
    match super::record_text(c, id)? {
        Some((text, published)) if !published_only || published.is_some() => Ok(text),
        _ if published_only => Err(Error::NotFound(format!("no published draw {id}"))),
        _ => Err(Error::NotFound(format!("draw {id}"))),
    }
}

/// A published draw as the public list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PublicDraw {
    /// Draw id.
    pub id: i64,
    /// The task drawn (its published results: `/api/v1/public/tasks/{task_id}/results.*`).
    pub task_id: i64,
    /// `initial` or `redraw`.
    pub kind: String,
    /// The draw replaced, for redraws.
    pub parent_id: Option<i64>,
    /// Why, for redraws.
    pub reason: Option<String>,
    /// 抽查计划编号.
    pub plan_number: String,
    /// 抽查计划名称.
    pub plan_name: String,
    /// 抽查任务编号.
    pub task_number: String,
    /// 抽查任务名称.
    pub task_name: String,
    /// Targets drawn.
    pub targets: i64,
    /// SHA-256 of the stored record, as served.
    pub record_sha256: String,
    /// When drawn.
    pub drawn_at: String,
    /// When published.
    pub published_at: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitmentQuery {
    task: Option<String>,
    page: Option<u32>,
    per_page: Option<u32>,
}

async fn public_commitments(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<CommitmentQuery>,
) -> Result<Json<Page<PublicCommitment>>> {
    let paging = Paging {
        page: query.page.unwrap_or(1),
        per_page: query.per_page.unwrap_or(50),
    };
    let task = query.task.filter(|t| !t.trim().is_empty());
    Ok(Json(
        state
            .db
            .read(move |c| super::public_commitments(c, task.as_deref().map(str::trim), paging))
            .await?,
    ))
}

async fn public_draws(State(state): State<AppState>) -> Result<Json<Vec<PublicDraw>>> {
    Ok(Json(state.db.read(published_draws).await?))
}

/// Every published draw, the latest first.
pub fn published_draws(c: &crate::store::sql::Conn) -> Result<Vec<PublicDraw>> {
    let mut stmt = c.prepare(
                "SELECT d.id, d.kind, d.parent_id, d.reason, p.number, p.name, t.number, t.name,
                    json_array_length(d.record, '$.result.targets'), d.record_sha256, d.drawn_at, d.published_at,
                    t.id
                 FROM draws d JOIN tasks t ON t.id = d.task_id JOIN plans p ON p.id = t.plan_id
                 WHERE d.published_at IS NOT NULL ORDER BY d.id DESC",
            )?;
    let rows = stmt.query_map([], |r| {
        Ok(PublicDraw {
            id: r.get(0)?,
            kind: r.get(1)?,
            parent_id: r.get(2)?,
            reason: r.get(3)?,
            plan_number: r.get(4)?,
            plan_name: r.get(5)?,
            task_number: r.get(6)?,
            task_name: r.get(7)?,
            targets: r.get(8)?,
            record_sha256: r.get(9)?,
            drawn_at: r.get(10)?,
            published_at: r.get(11)?,
            task_id: r.get(12)?,
        })
    })?;
    rows.collect::<Result<_, _>>()
}

async fn public_draw(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<axum::response::Response> {
    // Served byte for byte as published, so its SHA-256 matches record_sha256.
    let text = state.db.read(move |c| stored_record(c, id, true)).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response())
}

use axum::response::IntoResponse;
