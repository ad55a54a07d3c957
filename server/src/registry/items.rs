//! The inspection item list (抽查事项清单, 一单). Every change makes a new
//! version; old versions stay readable because tasks and records pin the
//! version they used.

use crate::store::sql::{Conn, OptionalExtension, Tx, params};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    Lines, TARGET_TYPES, check_chars, check_code, check_method, check_name, check_ratio,
    check_text, departments,
};
use super::{require_reader, require_writer};
use crate::AppState;
use crate::audit;
use crate::auth::AuthUser;
use crate::db::now;
use crate::error::{Error, Result};
use crate::extract::{ApiJson, ApiPath};

/// Class of an item: key items (重点) have no ratio ceiling; general items (一般) do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemClass {
    /// 重点检查事项.
    Key,
    /// 一般检查事项.
    General,
}

impl ItemClass {
    /// The stored and JSON code: `key` or `general`.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemClass::Key => "key",
            ItemClass::General => "general",
        }
    }
}

/// What a client sends to create an item or make a new version of it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    /// Name (事项名称).
    pub name: String,
    /// Legal basis (法律依据). Required: an item without one may not exist.
    pub legal_basis: String,
    /// Code of the implementing department.
    pub department: String,
    /// Kind of target it applies to (a target type code).
    pub target_type: String,
    /// Inspection methods (method codes), at least one.
    pub methods: Vec<String>,
    /// What is checked (检查内容).
    #[serde(default)]
    pub content: String,
    /// 重点 or 一般.
    pub class: ItemClass,
    /// Default share of targets drawn, in (0, 1].
    pub default_ratio: f64,
    /// How many times a year the item is run (抽查频次).
    pub frequency: u32,
    /// Expertise an inspector needs for this item, if any.
    #[serde(default)]
    pub qualification: Option<String>,
}

/// Body of `POST /api/v1/items`: the code plus the first version.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    /// Stable item code, e.g. `SCJG-SP-001`.
    pub code: String,
    /// The first version.
    #[serde(flatten)]
    pub input: ItemInput,
}

/// One version of an item as stored.
#[derive(Debug, Clone, Serialize)]
pub struct ItemVersion {
    /// Database id of the item (all versions share it).
    pub item_id: i64,
    /// Item code.
    pub code: String,
    /// Version number, from 1.
    pub version: i64,
    /// Whether this is the version in force.
    pub current: bool,
    /// The content of this version.
    #[serde(flatten)]
    pub input: ItemInput,
    /// When this version was made.
    pub created_at: String,
    /// Who made it.
    pub created_by: String,
}

fn validate(input: &ItemInput) -> Result<()> {
    check_name("name", &input.name, 200)?;
    check_text("legal_basis", &input.legal_basis, 2000)?;
    check_chars("content", &input.content, Lines::Many)?;
    check_code("target_type", &input.target_type, TARGET_TYPES)?;
    if input.methods.is_empty() {
        return Err(Error::invalid(
            "methods",
            "name at least one inspection method",
        ));
    }
    for (i, m) in input.methods.iter().enumerate() {
        check_method(&format!("methods[{i}]"), m)?;
    }
    check_ratio("default_ratio", input.default_ratio)?;
    if !(1..=52).contains(&input.frequency) {
        return Err(Error::invalid("frequency", "between 1 and 52 times a year"));
    }
    if let Some(q) = &input.qualification {
        check_name("qualification", q, 100)?;
    }
    Ok(())
}

fn validate_code(code: &str) -> Result<()> {
    let ok = !code.is_empty()
        && code.len() <= 40
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "code",
            "1 to 40 characters: letters, digits, `-`, `_` or `.`",
        ))
    }
}

const VERSION_COLUMNS: &str = "i.id, i.code, v.version, v.version = i.current_version, v.name,
    v.legal_basis, d.code, v.target_type, v.methods, v.content, v.class, v.default_ratio,
    v.frequency, v.qualification, v.created_at, v.created_by";
const VERSION_FROM: &str = "FROM item_versions v JOIN items i ON i.id = v.item_id
    JOIN departments d ON d.id = v.department_id";

fn version_from_row(r: &crate::store::sql::Row<'_>) -> Result<ItemVersion> {
    let methods: String = r.get(8)?;
    let class: String = r.get(10)?;
    Ok(ItemVersion {
        item_id: r.get(0)?,
        code: r.get(1)?,
        version: r.get(2)?,
        current: r.get(3)?,
        input: ItemInput {
            name: r.get(4)?,
            legal_basis: r.get(5)?,
            department: r.get(6)?,
            target_type: r.get(7)?,
            methods: serde_json::from_str(&methods).unwrap_or_default(),
            content: r.get(9)?,
            class: if class == "key" {
                ItemClass::Key
            } else {
                ItemClass::General
            },
            default_ratio: r.get(11)?,
            frequency: r.get(12)?,
            qualification: r.get(13)?,
        },
        created_at: r.get(14)?,
        created_by: r.get(15)?,
    })
}

/// One version of the item with `code`; the current one when `version` is `None`.
pub fn get(conn: &Conn, code: &str, version: Option<i64>) -> Result<ItemVersion> {
    let found = match version {
        None => conn
            .query_row(
                &format!(
                    "SELECT {VERSION_COLUMNS} {VERSION_FROM}
                     WHERE i.code = ?1 AND v.version = i.current_version"
                ),
                [code],
                version_from_row,
            )
            .optional()?,
        Some(v) => conn
            .query_row(
                &format!(
                    "SELECT {VERSION_COLUMNS} {VERSION_FROM} WHERE i.code = ?1 AND v.version = ?2"
                ),
                params![code, v],
                version_from_row,
            )
            .optional()?,
    };
    found.ok_or_else(|| match version {
        None => Error::NotFound(format!("item `{code}`")),
        Some(v) => Error::NotFound(format!("item `{code}` version {v}")),
    })
}

/// The current version of every item.
pub fn current_all(conn: &Conn) -> Result<Vec<ItemVersion>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {VERSION_COLUMNS} {VERSION_FROM} WHERE v.version = i.current_version ORDER BY i.code"
    ))?;
    let rows = stmt.query_map([], version_from_row)?;
    rows.collect::<Result<_, _>>()
}

/// Every version of the item with `code`, oldest first; 404 when there is
/// no such item.
pub fn versions_of(conn: &Conn, code: &str) -> Result<Vec<ItemVersion>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {VERSION_COLUMNS} {VERSION_FROM} WHERE i.code = ?1 ORDER BY v.version"
    ))?;
    let rows: Vec<ItemVersion> = stmt
        .query_map([code], version_from_row)?
        .collect::<Result<_, _>>()?;
    if rows.is_empty() {
        return Err(Error::NotFound(format!("item `{code}`")));
    }
    Ok(rows)
}

fn insert_version(
    tx: &Tx<'_>,
    actor: &str,
    item_id: i64,
    version: i64,
    input: &ItemInput,
) -> Result<()> {
    let department_id = departments::id_by_code(tx, "department", &input.department)?;
    tx.execute(
        "INSERT INTO item_versions (item_id, version, name, legal_basis, department_id,
            target_type, methods, content, class, default_ratio, frequency, qualification,
            created_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            item_id,
            version,
            input.name.trim(),
            input.legal_basis.trim(),
            department_id,
            input.target_type,
            serde_json::to_string(&input.methods)?,
            input.content.trim(),
            input.class.as_str(),
            input.default_ratio,
            input.frequency,
            input.qualification.as_deref().map(str::trim),
            now(),
            actor,
        ],
    )?;
    tx.execute(
        "UPDATE items SET current_version = ?1 WHERE id = ?2",
        params![version, item_id],
    )?;
    Ok(())
}

/// Creates an item with its first version.
pub fn insert(tx: &Tx<'_>, actor: &str, item: &NewItem) -> Result<ItemVersion> {
    validate_code(&item.code)?;
    validate(&item.input)?;
    let exists: bool = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM items WHERE code = ?1)",
        [&item.code],
        |r| r.get(0),
    )?;
    if exists {
        return Err(Error::Conflict(format!(
            "item `{}` exists; PUT /api/v1/items/{} makes a new version",
            item.code, item.code
        )));
    }
    let item_id: i64 = tx.query_row(
        "INSERT INTO items (code, current_version) VALUES (?1, 1) RETURNING id",
        [&item.code],
        |r| r.get(0),
    )?;
    insert_version(tx, actor, item_id, 1, &item.input)?;
    let created = get(tx, &item.code, None)?;
    audit::append(
        tx,
        actor,
        "item.create",
        &format!("item:{}", item.code),
        None,
        Some(&json!(created)),
    )?;
    Ok(created)
}

/// Whether two versions say the same: equal fields, methods in any order.
fn same_content(a: &ItemInput, b: &ItemInput) -> bool {
    let methods = |input: &ItemInput| {
        let mut methods = input.methods.clone();
        methods.sort();
        methods.dedup();
        methods
    };
    methods(a) == methods(b)
        && ItemInput {
            methods: Vec::new(),
            ..a.clone()
        } == ItemInput {
            methods: Vec::new(),
            ..b.clone()
        }
}

/// Makes a new version of an item, unless `input` says the same as the current one
/// (methods in another order included).
pub fn new_version(tx: &Tx<'_>, actor: &str, code: &str, input: &ItemInput) -> Result<ItemVersion> {
    validate(input)?;
    let current = get(tx, code, None)?;
    if same_content(&current.input, input) {
        return Ok(current);
    }
    insert_version(tx, actor, current.item_id, current.version + 1, input)?;
    let updated = get(tx, code, None)?;
    audit::append(
        tx,
        actor,
        "item.new_version",
        &format!("item:{code}"),
        Some(&json!(current)),
        Some(&json!(updated)),
    )?;
    Ok(updated)
}

pub(super) async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<ItemVersion>>> {
    require_reader(&user)?;
    Ok(Json(state.db.read(current_all).await?))
}

/// The item list is public (一单 is published), so this needs no login.
pub(super) async fn public_list(State(state): State<AppState>) -> Result<Json<Vec<ItemVersion>>> {
    Ok(Json(state.db.read(current_all).await?))
}

pub(super) async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(item): ApiJson<NewItem>,
) -> Result<(StatusCode, Json<ItemVersion>)> {
    require_writer(&user)?;
    let created = state
        .db
        .write(move |tx| insert(tx, &user.username, &item))
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub(super) async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(code): ApiPath<String>,
    ApiJson(input): ApiJson<ItemInput>,
) -> Result<Json<ItemVersion>> {
    require_writer(&user)?;
    let updated = state
        .db
        .write(move |tx| new_version(tx, &user.username, &code, &input))
        .await?;
    Ok(Json(updated))
}

pub(super) async fn get_current(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(code): ApiPath<String>,
) -> Result<Json<ItemVersion>> {
    require_reader(&user)?;
    Ok(Json(state.db.read(move |c| get(c, &code, None)).await?))
}

pub(super) async fn get_version(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath((code, version)): ApiPath<(String, i64)>,
) -> Result<Json<ItemVersion>> {
    require_reader(&user)?;
    Ok(Json(
        state.db.read(move |c| get(c, &code, Some(version))).await?,
    ))
}

pub(super) async fn versions(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(code): ApiPath<String>,
) -> Result<Json<Vec<ItemVersion>>> {
    require_reader(&user)?;
    Ok(Json(state.db.read(move |c| versions_of(c, &code)).await?))
}
