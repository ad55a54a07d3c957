//! Departments (实施部门) of the agency.

use crate::store::sql::{Conn, OptionalExtension, Tx, params};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{check_name, require_reader, require_writer};
use crate::AppState;
use crate::audit;
use crate::auth::AuthUser;
use crate::error::{Error, Result};
use crate::extract::ApiJson;

/// A department.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Department {
    /// Database id (ignored on input).
    #[serde(default)]
    pub id: i64,
    /// Short stable code, e.g. `SCJG`.
    pub code: String,
    /// Full name, e.g. 市场监督管理局.
    pub name: String,
}

/// Looks up a department id by code, failing with a 422 on `field`.
pub fn id_by_code(conn: &Conn, field: &str, code: &str) -> Result<i64> {
    conn.query_row("SELECT id FROM departments WHERE code = ?1", [code], |r| {
        r.get(0)
    })
    .optional()?
    .ok_or_else(|| Error::invalid(field, format!("no department with code `{code}`")))
}

/// The code of a department id.
pub fn code_by_id(conn: &Conn, id: i64) -> Result<String> {
    conn.query_row("SELECT code FROM departments WHERE id = ?1", [id], |r| {
        r.get(0)
    })
}

/// Inserts a department.
pub fn insert(tx: &Tx<'_>, actor: &str, dept: &Department) -> Result<Department> {
    check_name("code", &dept.code, 32)?;
    check_name("name", &dept.name, 100)?;
    let exists: bool = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM departments WHERE code = ?1)",
        [&dept.code],
        |r| r.get(0),
    )?;
    if exists {
        return Err(Error::Conflict(format!(
            "department `{}` exists",
            dept.code
        )));
    }
    let id = tx.query_row(
        "INSERT INTO departments (code, name) VALUES (?1, ?2) RETURNING id",
        params![dept.code.trim(), dept.name.trim()],
        |r| r.get(0),
    )?;
    let created = Department {
        id,
        code: dept.code.trim().to_owned(),
        name: dept.name.trim().to_owned(),
    };
    audit::append(
        tx,
        actor,
        "department.create",
        &format!("department:{}", created.id),
        None,
        Some(&json!(created)),
    )?;
    Ok(created)
}

/// Every department.
pub fn all(conn: &Conn) -> Result<Vec<Department>> {
    let mut stmt = conn.prepare("SELECT id, code, name FROM departments ORDER BY code")?;
    let rows = stmt.query_map([], |r| {
        Ok(Department {
            id: r.get(0)?,
            code: r.get(1)?,
            name: r.get(2)?,
        })
    })?;
    rows.collect::<Result<_, _>>()
}

pub(super) async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<Department>>> {
    require_reader(&user)?;
    Ok(Json(state.db.read(all).await?))
}

pub(super) async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(dept): ApiJson<Department>,
) -> Result<(StatusCode, Json<Department>)> {
    require_writer(&user)?;
    let created = state
        .db
        .write(move |tx| insert(tx, &user.username, &dept))
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}
