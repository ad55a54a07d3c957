//! The inspector directory (执法检查人员名录库): certified inspectors linked to
//! user accounts, with expertise, region, active and expert flags, and their
//! declared conflicts of interest (回避).

use crate::store::sql::{Conn, OptionalExtension, Tx, params};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{check_name, check_text, departments, require_reader, require_writer, targets};
use crate::AppState;
use crate::accounts;
use crate::audit;
use crate::auth::{AuthUser, Role};
use crate::db::now;
use crate::error::{Error, Result};
use crate::extract::{ApiJson, ApiPath, ApiQuery};

/// An inspector's attributes as clients send them.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InspectorInput {
    /// The user account the inspector logs in with; it must hold the inspector role.
    pub user_id: i64,
    /// Full name.
    pub name: String,
    /// 执法证号 (enforcement certificate number). Required.
    pub cert_no: String,
    /// Code of the inspector's department.
    pub department: String,
    /// Fields of expertise / qualifications, matched against items' qualification.
    #[serde(default)]
    pub expertise: Vec<String>,
    /// Region the inspector works in.
    pub region: String,
    /// Whether the inspector can be drawn.
    #[serde(default = "yes")]
    pub active: bool,
    /// Listed as an expert (专家).
    #[serde(default)]
    pub expert: bool,
}

fn yes() -> bool {
    true
}

/// A declared conflict of interest.
#[derive(Debug, Clone, Serialize)]
pub struct Conflict {
    /// The target the inspector must not inspect.
    pub target_id: i64,
    /// The target's name, for display.
    pub target_name: String,
    /// Why.
    pub reason: String,
    /// When it was declared.
    pub declared_at: String,
}

/// A stored inspector.
#[derive(Debug, Clone, Serialize)]
pub struct Inspector {
    /// Database id.
    pub id: i64,
    /// The attributes.
    #[serde(flatten)]
    pub input: InspectorInput,
    /// Declared conflicts.
    pub conflicts: Vec<Conflict>,
}

const COLUMNS: &str = "i.id, i.user_id, i.name, i.cert_no, d.code, i.expertise, i.region,
    i.active, i.expert";

fn from_row(r: &crate::store::sql::Row<'_>) -> Result<Inspector> {
    let expertise: String = r.get(5)?;
    Ok(Inspector {
        id: r.get(0)?,
        input: InspectorInput {
            user_id: r.get(1)?,
            name: r.get(2)?,
            cert_no: r.get(3)?,
            department: r.get(4)?,
            expertise: serde_json::from_str(&expertise).unwrap_or_default(),
            region: r.get(6)?,
            active: r.get(7)?,
            expert: r.get(8)?,
        },
        conflicts: Vec::new(),
    })
}

fn conflicts_of(conn: &Conn, id: i64) -> Result<Vec<Conflict>> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.target_id, t.name, c.reason, c.declared_at
         FROM inspector_conflicts c JOIN targets t ON t.id = c.target_id
         WHERE c.inspector_id = ?1 ORDER BY c.target_id",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok(Conflict {
            target_id: r.get(0)?,
            target_name: r.get(1)?,
            reason: r.get(2)?,
            declared_at: r.get(3)?,
        })
    })?;
    rows.collect::<Result<_, _>>()
}

/// Loads one inspector with their conflicts.
pub fn get(conn: &Conn, id: i64) -> Result<Inspector> {
    let mut inspector = conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM inspectors i JOIN departments d ON d.id = i.department_id
                 WHERE i.id = ?1"
            ),
            [id],
            from_row,
        )
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("inspector {id}")))?;
    inspector.conflicts = conflicts_of(conn, id)?;
    Ok(inspector)
}

fn validate(conn: &Conn, input: &InspectorInput) -> Result<i64> {
    check_name("name", &input.name, 100)?;
    check_name("cert_no", &input.cert_no, 40)?;
    check_name("region", &input.region, 100)?;
    for (i, e) in input.expertise.iter().enumerate() {
        check_name(&format!("expertise[{i}]"), e, 100)?;
    }
    let user = accounts::get_user_by_id(conn, input.user_id)
        .map_err(|_| Error::invalid("user_id", format!("no user {}", input.user_id)))?;
    if !user.roles.contains(&Role::Inspector) {
        return Err(Error::invalid(
            "user_id",
            format!("user `{}` does not hold the inspector role", user.username),
        ));
    }
    departments::id_by_code(conn, "department", &input.department)
}

fn check_unique(tx: &Tx<'_>, input: &InspectorInput, except: Option<i64>) -> Result<()> {
    let clash: Option<(i64, bool)> = tx
        .query_row(
            "SELECT id, cert_no = ?1 FROM inspectors
             WHERE (cert_no = ?1 OR user_id = ?2) AND id IS DISTINCT FROM ?3",
            params![input.cert_no.trim(), input.user_id, except],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match clash {
        Some((id, cert)) => {
            let field = if cert { "cert_no" } else { "user_id" };
            Err(Error::Duplicate {
                field,
                message: format!("inspector {id} already has this {field}"),
            })
        }
        None => Ok(()),
    }
}

/// Inserts an inspector.
pub fn insert(tx: &Tx<'_>, actor: &str, input: &InspectorInput) -> Result<Inspector> {
    let department_id = validate(tx, input)?;
    check_unique(tx, input, None)?;
    let at = now();
    let created_id: i64 = tx.query_row(
        "INSERT INTO inspectors (user_id, name, cert_no, department_id, expertise, region,
            active, expert, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9) RETURNING id",
        params![
            input.user_id,
            input.name.trim(),
            input.cert_no.trim(),
            department_id,
            serde_json::to_string(&input.expertise)?,
            input.region.trim(),
            input.active,
            input.expert,
            at
        ],
        |r| r.get(0),
    )?;
    let created = get(tx, created_id)?;
    audit::append(
        tx,
        actor,
        "inspector.create",
        &format!("inspector:{}", created.id),
        None,
        Some(&json!(created)),
    )?;
    Ok(created)
}

/// Replaces every attribute of inspector `id` with `input` (deactivating or
/// reactivating is `active`), with the same checks as [`insert`]; 404 when
/// there is no such inspector.
pub fn update(tx: &Tx<'_>, actor: &str, id: i64, input: &InspectorInput) -> Result<Inspector> {
    let before = get(tx, id)?;
    let department_id = validate(tx, input)?;
    check_unique(tx, input, Some(id))?;
    tx.execute(
        "UPDATE inspectors SET user_id = ?2, name = ?3, cert_no = ?4, department_id = ?5,
            expertise = ?6, region = ?7, active = ?8, expert = ?9, updated_at = ?10
         WHERE id = ?1",
        params![
            id,
            input.user_id,
            input.name.trim(),
            input.cert_no.trim(),
            department_id,
            serde_json::to_string(&input.expertise)?,
            input.region.trim(),
            input.active,
            input.expert,
            now()
        ],
    )?;
    let after = get(tx, id)?;
    audit::append(
        tx,
        actor,
        "inspector.update",
        &format!("inspector:{id}"),
        Some(&json!(before)),
        Some(&json!(after)),
    )?;
    Ok(after)
}

/// Records a declared conflict between an inspector and a target.
pub fn insert_conflict(
    tx: &Tx<'_>,
    actor: &str,
    inspector_id: i64,
    target_id: i64,
    reason: &str,
) -> Result<()> {
    check_text("reason", reason, 500)?;
    get(tx, inspector_id)?;
    targets::get(tx, target_id)
        .map_err(|_| Error::invalid("target_id", format!("no target {target_id}")))?;
    let n = tx.execute(
        "INSERT INTO inspector_conflicts (inspector_id, target_id, reason, declared_at)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        params![inspector_id, target_id, reason.trim(), now()],
    )?;
    if n == 0 {
        return Err(Error::Conflict(format!(
            "inspector {inspector_id} already declared a conflict with target {target_id}"
        )));
    }
    audit::append(
        tx,
        actor,
        "inspector.conflict.declare",
        &format!("inspector:{inspector_id}"),
        None,
        Some(&json!({"target_id": target_id, "reason": reason.trim()})),
    )
}

/// Withdraws a declared conflict between an inspector and a target; 404
/// when there is none.
pub fn delete_conflict(tx: &Tx<'_>, actor: &str, inspector_id: i64, target_id: i64) -> Result<()> {
    let n = tx.execute(
        "DELETE FROM inspector_conflicts WHERE inspector_id = ?1 AND target_id = ?2",
        params![inspector_id, target_id],
    )?;
    if n == 0 {
        return Err(Error::NotFound(format!(
            "no conflict of inspector {inspector_id} with target {target_id}"
        )));
    }
    audit::append(
        tx,
        actor,
        "inspector.conflict.withdraw",
        &format!("inspector:{inspector_id}"),
        Some(&json!({"target_id": target_id})),
        None,
    )
}

/// Filters for the inspector list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectorFilter {
    /// Department code.
    pub department: Option<String>,
    /// Only active (or inactive) inspectors.
    pub active: Option<bool>,
    /// Only inspectors with this expertise.
    pub expertise: Option<String>,
}

pub(super) async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(filter): ApiQuery<InspectorFilter>,
) -> Result<Json<Vec<Inspector>>> {
    require_reader(&user)?;
    Ok(Json(state.db.read(move |c| search(c, &filter)).await?))
}

/// Inspectors matching `filter`, with their declared conflicts.
pub fn search(c: &Conn, filter: &InspectorFilter) -> Result<Vec<Inspector>> {
    let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM inspectors i JOIN departments d ON d.id = i.department_id
                 WHERE (CAST(?1 AS TEXT) IS NULL OR d.code = ?1) AND (CAST(?2 AS BIGINT) IS NULL OR i.active = ?2)
                   AND (CAST(?3 AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM json_each(i.expertise) WHERE value = ?3))
                 ORDER BY i.id"
            ))?;
    let rows = stmt.query_map(
        params![filter.department, filter.active, filter.expertise],
        from_row,
    )?;
    let mut list = Vec::new();
    for row in rows {
        let mut inspector = row?;
        inspector.conflicts = conflicts_of(c, inspector.id)?;
        list.push(inspector);
    }
    Ok(list)
}

pub(super) async fn get_one(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Inspector>> {
    require_reader(&user)?;
    Ok(Json(state.db.read(move |c| get(c, id)).await?))
}

pub(super) async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(input): ApiJson<InspectorInput>,
) -> Result<(StatusCode, Json<Inspector>)> {
    require_writer(&user)?;
    let created = state
        .db
        .write(move |tx| insert(tx, &user.username, &input))
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub(super) async fn update_handler(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<InspectorInput>,
) -> Result<Json<Inspector>> {
    require_writer(&user)?;
    let updated = state
        .db
        .write(move |tx| update(tx, &user.username, id, &input))
        .await?;
    Ok(Json(updated))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConflictInput {
    target_id: i64,
    reason: String,
}

pub(super) async fn declare_conflict(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<ConflictInput>,
) -> Result<(StatusCode, Json<Inspector>)> {
    require_writer(&user)?;
    let inspector = state
        .db
        .write(move |tx| {
            insert_conflict(tx, &user.username, id, input.target_id, &input.reason)?;
            get(tx, id)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(inspector)))
}

pub(super) async fn withdraw_conflict(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath((id, target_id)): ApiPath<(i64, i64)>,
) -> Result<Json<Inspector>> {
    require_writer(&user)?;
    let inspector = state
        .db
        .write(move |tx| {
            delete_conflict(tx, &user.username, id, target_id)?;
            get(tx, id)
        })
        .await?;
    Ok(Json(inspector))
}
