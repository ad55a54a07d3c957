//! The target directory (检查对象名录库): enterprises and other targets keyed by
//! 统一社会信用代码, with the attributes the draw stratifies and filters on.

use crate::store::sql::Value as SqlValue;
use crate::store::sql::{Conn, OptionalExtension, Tx, params};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{REG_STATUSES, RISK_CLASSES, TARGET_TYPES, check_code, check_name, check_one_of};
use super::{require_reader, require_writer};
use crate::AppState;
use crate::audit;
use crate::auth::AuthUser;
use crate::db::now;
use crate::error::{Error, Result};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Page, Paging};
use crate::uscc;

/// A target's attributes as clients send them.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetInput {
    /// 统一社会信用代码, checked against GB 32100-2015.
    pub uscc: String,
    /// Registered name.
    pub name: String,
    /// Target type code.
    pub target_type: String,
    /// Industry (行业).
    pub industry: String,
    /// Region (区域), e.g. a district name.
    pub region: String,
    /// Registered address.
    pub address: String,
    /// Legal representative (法定代表人).
    pub legal_rep: String,
    /// Registration status (登记状态), e.g. 存续.
    pub reg_status: String,
    /// Credit risk class A–D.
    pub risk_class: String,
    /// Listed in 经营异常名录.
    #[serde(default)]
    pub flag_abnormal: bool,
    /// Listed as 严重违法失信.
    #[serde(default)]
    pub flag_serious: bool,
    /// Number of open complaints.
    #[serde(default)]
    pub complaints: u32,
}

/// A stored target.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// Database id.
    pub id: i64,
    /// The attributes.
    #[serde(flatten)]
    pub input: TargetInput,
    /// When it was first registered here.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
}

impl TargetInput {
    /// Trims text fields and checks every field, naming the first bad one.
    pub fn normalise(mut self) -> Result<TargetInput> {
        for field in [
            &mut self.uscc,
            &mut self.name,
            &mut self.target_type,
            &mut self.industry,
            &mut self.region,
            &mut self.address,
            &mut self.legal_rep,
            &mut self.reg_status,
            &mut self.risk_class,
        ] {
            *field = field.trim().to_owned();
        }
        self.uscc = self.uscc.to_ascii_uppercase();
        self.risk_class = self.risk_class.to_ascii_uppercase();
        uscc::validate(&self.uscc).map_err(|why| Error::invalid("uscc", why))?;
        check_name("name", &self.name, 200)?;
        check_code("target_type", &self.target_type, TARGET_TYPES)?;
        check_name("industry", &self.industry, 100)?;
        check_name("region", &self.region, 100)?;
        check_name("address", &self.address, 300)?;
        check_name("legal_rep", &self.legal_rep, 100)?;
        check_one_of("reg_status", &self.reg_status, REG_STATUSES)?;
        check_one_of("risk_class", &self.risk_class, RISK_CLASSES)?;
        Ok(self)
    }
}

const COLUMNS: &str = "id, uscc, name, target_type, industry, region, address, legal_rep,
    reg_status, risk_class, flag_abnormal, flag_serious, complaints, created_at, updated_at";

fn from_row(r: &crate::store::sql::Row<'_>) -> Result<Target> {
    Ok(Target {
        id: r.get(0)?,
        input: TargetInput {
            uscc: r.get(1)?,
            name: r.get(2)?,
            target_type: r.get(3)?,
            industry: r.get(4)?,
            region: r.get(5)?,
            address: r.get(6)?,
            legal_rep: r.get(7)?,
            reg_status: r.get(8)?,
            risk_class: r.get(9)?,
            flag_abnormal: r.get(10)?,
            flag_serious: r.get(11)?,
            complaints: r.get(12)?,
        },
        created_at: r.get(13)?,
        updated_at: r.get(14)?,
    })
}

/// Loads one target.
pub fn get(conn: &Conn, id: i64) -> Result<Target> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM targets WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()?
    .ok_or_else(|| Error::NotFound(format!("target {id}")))
}

/// The id of the target with `uscc`, if registered.
pub fn id_by_uscc(conn: &Conn, code: &str) -> Result<Option<i64>> {
    conn.query_row("SELECT id FROM targets WHERE uscc = ?1", [code], |r| {
        r.get(0)
    })
    .optional()
}

/// Inserts a normalised target without auditing (bulk paths audit once).
pub fn insert_unaudited(tx: &Tx<'_>, t: &TargetInput, at: &str) -> Result<i64> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO targets (uscc, name, target_type, industry, region, address, legal_rep,
            reg_status, risk_class, flag_abnormal, flag_serious, complaints, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)
         RETURNING id",
    )?;
    stmt.query_row(
        params![
            t.uscc,
            t.name,
            t.target_type,
            t.industry,
            t.region,
            t.address,
            t.legal_rep,
            t.reg_status,
            t.risk_class,
            t.flag_abnormal,
            t.flag_serious,
            t.complaints,
            at
        ],
        |r| r.get(0),
    )
}

/// Overwrites a target's attributes without auditing.
pub fn update_unaudited(tx: &Tx<'_>, id: i64, t: &TargetInput, at: &str) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "UPDATE targets SET uscc = ?2, name = ?3, target_type = ?4, industry = ?5, region = ?6,
            address = ?7, legal_rep = ?8, reg_status = ?9, risk_class = ?10, flag_abnormal = ?11,
            flag_serious = ?12, complaints = ?13, updated_at = ?14
         WHERE id = ?1",
    )?;
    stmt.execute(params![
        id,
        t.uscc,
        t.name,
        t.target_type,
        t.industry,
        t.region,
        t.address,
        t.legal_rep,
        t.reg_status,
        t.risk_class,
        t.flag_abnormal,
        t.flag_serious,
        t.complaints,
        at
    ])?;
    Ok(())
}

/// Filters for the target list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFilter {
    /// Substring of the name, or a prefix of the 统一社会信用代码.
    pub q: Option<String>,
    /// Exact region.
    pub region: Option<String>,
    /// Exact industry.
    pub industry: Option<String>,
    /// Target type code.
    pub target_type: Option<String>,
    /// Risk class A–D.
    pub risk_class: Option<String>,
    /// Only targets on the 经营异常名录.
    pub flag_abnormal: Option<bool>,
    /// Only targets listed as 严重违法失信.
    pub flag_serious: Option<bool>,
    /// Page number.
    pub page: Option<u32>,
    /// Page size.
    pub per_page: Option<u32>,
}

/// One page of targets matching `filter`.
pub fn search(conn: &Conn, filter: &TargetFilter) -> Result<Page<Target>> {
    let paging = Paging {
        page: filter.page.unwrap_or(1),
        per_page: filter.per_page.unwrap_or(50),
    }
    .validate()?;
    let mut clauses: Vec<&str> = Vec::new();
    let mut args: Vec<SqlValue> = Vec::new();
    if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        clauses.push("(name LIKE ? ESCAPE '\\' OR uscc LIKE ? ESCAPE '\\')");
        let escaped = q
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        args.push(SqlValue::Text(format!("%{escaped}%")));
        args.push(SqlValue::Text(format!("{}%", escaped.to_ascii_uppercase())));
    }
    for (column, value) in [
        ("region = ?", &filter.region),
        ("industry = ?", &filter.industry),
        ("target_type = ?", &filter.target_type),
        ("risk_class = ?", &filter.risk_class),
    ] {
        if let Some(v) = value {
            clauses.push(column);
            args.push(SqlValue::Text(v.clone()));
        }
    }
    if let Some(flag) = filter.flag_abnormal {
        clauses.push("flag_abnormal = ?");
        args.push(SqlValue::Integer(flag.into()));
    }
    if let Some(flag) = filter.flag_serious {
        clauses.push("flag_serious = ?");
        args.push(SqlValue::Integer(flag.into()));
    }
    let filter_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM targets {filter_sql}"),
        &args,
        |r| r.get(0),
    )?;
    args.push(SqlValue::Integer(paging.limit()));
    args.push(SqlValue::Integer(paging.offset()));
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM targets {filter_sql} ORDER BY id LIMIT ? OFFSET ?"
    ))?;
    let items = stmt.query_map(&args, from_row)?.collect::<Result<_, _>>()?;
    Ok(Page {
        items,
        total,
        page: paging.page,
        per_page: paging.per_page,
    })
}

pub(super) async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(filter): ApiQuery<TargetFilter>,
) -> Result<Json<Page<Target>>> {
    require_reader(&user)?;
    Ok(Json(state.db.read(move |c| search(c, &filter)).await?))
}

/// A target with how its risk class came to be.
#[derive(Debug, Clone, Serialize)]
pub struct TargetView {
    /// The target.
    #[serde(flatten)]
    pub target: Target,
    /// Every change of its risk class, oldest first (review::risk).
    pub risk_class_history: Vec<crate::review::risk::ClassChange>,
}

pub(super) async fn get_one(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<TargetView>> {
    require_reader(&user)?;
    Ok(Json(
        state
            .db
            .read(move |c| {
                Ok(TargetView {
                    target: get(c, id)?,
                    risk_class_history: crate::review::risk::history(c, id)?,
                })
            })
            .await?,
    ))
}

pub(super) async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(input): ApiJson<TargetInput>,
) -> Result<(StatusCode, Json<Target>)> {
    require_writer(&user)?;
    let input = input.normalise()?;
    let created = state
        .db
        .write(move |tx| {
            if id_by_uscc(tx, &input.uscc)?.is_some() {
                return Err(Error::Conflict(format!(
                    "a target with 统一社会信用代码 {} exists",
                    input.uscc
                )));
            }
            let id = insert_unaudited(tx, &input, &now())?;
            let created = get(tx, id)?;
            audit::append(
                tx,
                &user.username,
                "target.create",
                &format!("target:{id}"),
                None,
                Some(&json!(created)),
            )?;
            Ok(created)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub(super) async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<TargetInput>,
) -> Result<Json<Target>> {
    require_writer(&user)?;
    let input = input.normalise()?;
    let updated = state
        .db
        .write(move |tx| {
            let before = get(tx, id)?;
            if let Some(other) = id_by_uscc(tx, &input.uscc)?
                && other != id
            {
                return Err(Error::Conflict(format!(
                    "统一社会信用代码 {} belongs to target {other}",
                    input.uscc
                )));
            }
            update_unaudited(tx, id, &input, &now())?;
            let after = get(tx, id)?;
            audit::append(
                tx,
                &user.username,
                "target.update",
                &format!("target:{id}"),
                Some(&json!(before)),
                Some(&json!(after)),
            )?;
            Ok(after)
        })
        .await?;
    Ok(Json(updated))
}
