//! Bulk import of targets from CSV (UTF-8 or GBK). Every row is checked before
//! anything is written; the answer lists each bad row by line number and
//! reason, and the caller chooses whether good rows are committed when some
//! rows are bad (`mode=valid_rows`) or nothing is (`mode=all_or_nothing`, the
//! default). Rows whose 统一社会信用代码 is already registered update that target.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rusqlite::{OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::TARGET_TYPES;
use super::require_writer;
use super::targets::{self, TargetInput};
use crate::AppState;
use crate::audit;
use crate::auth::AuthUser;
use crate::db::now;
use crate::error::{Error, Result};
use crate::extract::{ApiQuery, body_bytes};

/// Largest CSV file accepted, in bytes (100,000 rows take about 20 MB).
pub const IMPORT_BODY_LIMIT: usize = 128 * 1024 * 1024;

/// What to do when some rows are bad.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportMode {
    /// Commit nothing if any row is bad.
    #[default]
    AllOrNothing,
    /// Commit every good row and report the bad ones.
    ValidRows,
}

/// Text encoding of the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CsvEncoding {
    /// UTF-8 if the bytes are valid UTF-8, GBK otherwise.
    #[default]
    Auto,
    /// UTF-8, with or without a byte-order mark.
    #[serde(rename = "utf-8")]
    Utf8,
    /// GBK (GB 18030 superset), as Excel on Chinese Windows saves CSV.
    Gbk,
}

/// Query parameters of the import endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// What to do with good rows when some are bad.
    #[serde(default)]
    pub mode: ImportMode,
    /// Encoding of the file.
    #[serde(default)]
    pub encoding: CsvEncoding,
}

/// One refused row.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RowError {
    /// Line number in the file (the header is line 1).
    pub line: u64,
    /// Column at fault, when one is.
    pub field: Option<String>,
    /// Why the row was refused.
    pub reason: String,
}

/// The outcome of an import.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// Mode used.
    pub mode: ImportMode,
    /// Encoding the file was read as.
    pub encoding: CsvEncoding,
    /// Data rows in the file.
    pub rows: usize,
    /// Rows that passed every check.
    pub valid: usize,
    /// New targets written.
    pub created: usize,
    /// Existing targets updated.
    pub updated: usize,
    /// Whether anything was written.
    pub committed: bool,
    /// Every bad row, in file order.
    pub errors: Vec<RowError>,
}

/// Column names understood in the header: our field name, then its aliases.
const COLUMNS: &[(&str, &[&str])] = &[
    ("uscc", &["统一社会信用代码", "信用代码"]),
    ("name", &["名称", "企业名称", "单位名称"]),
    ("target_type", &["类型", "主体类型", "对象类型"]),
    ("industry", &["行业"]),
    ("region", &["区域", "所属区域", "辖区"]),
    ("address", &["地址", "住所"]),
    ("legal_rep", &["法定代表人", "负责人"]),
    ("reg_status", &["登记状态"]),
    ("risk_class", &["风险等级", "信用风险分类"]),
    ("flag_abnormal", &["经营异常名录", "经营异常"]),
    ("flag_serious", &["严重违法失信", "严重违法失信名单"]),
    ("complaints", &["投诉", "投诉举报"]),
];
const OPTIONAL: &[&str] = &["flag_abnormal", "flag_serious", "complaints"];

fn decode(bytes: &[u8], encoding: CsvEncoding) -> Result<(String, CsvEncoding)> {
    let utf8 = |b: &[u8]| {
        let b = b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b);
        std::str::from_utf8(b).map(str::to_owned)
    };
    let gbk = |b: &[u8]| {
        let (text, had_errors) = encoding_rs::GBK.decode_without_bom_handling(b);
        if had_errors {
            Err(Error::invalid(
                "body",
                "the file is neither valid UTF-8 nor valid GBK",
            ))
        } else {
            Ok(text.into_owned())
        }
    };
    match encoding {
        CsvEncoding::Utf8 => utf8(bytes)
            .map(|s| (s, CsvEncoding::Utf8))
            .map_err(|e| Error::invalid("body", format!("not valid UTF-8: {e}; try encoding=gbk"))),
        CsvEncoding::Gbk => gbk(bytes).map(|s| (s, CsvEncoding::Gbk)),
        CsvEncoding::Auto => match utf8(bytes) {
            Ok(s) => Ok((s, CsvEncoding::Utf8)),
            Err(_) => gbk(bytes).map(|s| (s, CsvEncoding::Gbk)),
        },
    }
}

fn parse_flag(value: &str) -> std::result::Result<bool, String> {
    match value.trim().to_lowercase().as_str() {
        "" | "0" | "false" | "n" | "no" | "否" => Ok(false),
        "1" | "true" | "y" | "yes" | "是" => Ok(true),
        other => Err(format!("`{other}` is not yes/no (是/否, 1/0, true/false)")),
    }
}

fn target_type_code(value: &str) -> String {
    let v = value.trim();
    TARGET_TYPES
        .iter()
        .find(|(_, label)| *label == v)
        .map(|(code, _)| (*code).to_owned())
        .unwrap_or_else(|| v.to_owned())
}

/// A parsed and checked file.
#[derive(Debug)]
pub struct Parsed {
    /// Good rows with their line numbers.
    pub good: Vec<(u64, TargetInput)>,
    /// Bad rows.
    pub bad: Vec<RowError>,
    /// Data rows in the file (blank lines not counted).
    pub rows: usize,
    /// The encoding the file was read as.
    pub encoding: CsvEncoding,
}

/// Parses and checks every row; fails only if the file as a whole is
/// unreadable (encoding, header).
pub fn parse(bytes: &[u8], encoding: CsvEncoding) -> Result<Parsed> {
    let (text, used) = decode(bytes, encoding)?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| Error::invalid("header", format!("cannot read the header line: {e}")))?
        .clone();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, header) in headers.iter().enumerate() {
        let header = header.trim();
        let Some((field, _)) = COLUMNS
            .iter()
            .find(|(field, aliases)| *field == header || aliases.contains(&header))
        else {
            return Err(Error::invalid(
                "header",
                format!("unknown column `{header}` (column {})", i + 1),
            ));
        };
        if index.insert(field, i).is_some() {
            return Err(Error::invalid(
                "header",
                format!("column `{field}` appears twice"),
            ));
        }
    }
    if let Some((missing, aliases)) = COLUMNS
        .iter()
        .find(|(f, _)| !OPTIONAL.contains(f) && !index.contains_key(f))
    {
        return Err(Error::invalid(
            "header",
            format!("missing column `{missing}` ({})", aliases.join(" / ")),
        ));
    }

    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut rows = 0;
    for record in reader.records() {
        rows += 1;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                bad.push(RowError {
                    line,
                    field: None,
                    reason: format!("unreadable row: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.iter().all(|f| f.is_empty()) {
            rows -= 1;
            continue;
        }
        let cell = |field: &str| {
            index
                .get(field)
                .and_then(|&i| record.get(i))
                .unwrap_or("")
                .to_owned()
        };
        let fail = |field: &str, reason: String| RowError {
            line,
            field: Some(field.to_owned()),
            reason,
        };
        let mut flags = [false; 2];
        let mut flag_error = None;
        for (slot, field) in flags.iter_mut().zip(["flag_abnormal", "flag_serious"]) {
            match parse_flag(&cell(field)) {
                Ok(v) => *slot = v,
                Err(reason) => flag_error = flag_error.or(Some(fail(field, reason))),
            }
        }
        if let Some(e) = flag_error {
            bad.push(e);
            continue;
        }
        let complaints_text = cell("complaints");
        let complaints = if complaints_text.is_empty() {
            0
        } else {
            match complaints_text.parse::<u32>() {
                Ok(n) => n,
                Err(_) => {
                    bad.push(fail(
                        "complaints",
                        format!("`{complaints_text}` is not a count"),
                    ));
                    continue;
                }
            }
        };
        let input = TargetInput {
            uscc: cell("uscc"),
            name: cell("name"),
            target_type: target_type_code(&cell("target_type")),
            industry: cell("industry"),
            region: cell("region"),
            address: cell("address"),
            legal_rep: cell("legal_rep"),
            reg_status: cell("reg_status"),
            risk_class: cell("risk_class"),
            flag_abnormal: flags[0],
            flag_serious: flags[1],
            complaints,
        };
        match input.normalise() {
            Err(Error::Invalid { field, reason }) => bad.push(fail(&field, reason)),
            Err(other) => return Err(other),
            Ok(target) => match seen.get(&target.uscc) {
                Some(first) => bad.push(fail(
                    "uscc",
                    format!(
                        "统一社会信用代码 {} already appears on line {first}",
                        target.uscc
                    ),
                )),
                None => {
                    seen.insert(target.uscc.clone(), line);
                    good.push((line, target));
                }
            },
        }
    }
    Ok(Parsed {
        good,
        bad,
        rows,
        encoding: used,
    })
}

/// Parses `bytes` and, as `params` says, writes the good rows in `tx`.
pub fn import(
    tx: &Transaction<'_>,
    actor: &str,
    bytes: &[u8],
    params: &ImportParams,
) -> Result<ImportReport> {
    let Parsed {
        good,
        bad: errors,
        rows,
        encoding,
    } = parse(bytes, params.encoding)?;
    let mut report = ImportReport {
        mode: params.mode,
        encoding,
        rows,
        valid: good.len(),
        created: 0,
        updated: 0,
        committed: false,
        errors,
    };
    if good.is_empty() || (params.mode == ImportMode::AllOrNothing && !report.errors.is_empty()) {
        return Ok(report);
    }
    let at = now();
    let mut lookup = tx.prepare_cached("SELECT id FROM targets WHERE uscc = ?1")?;
    for (_, target) in &good {
        let existing: Option<i64> = lookup.query_row([&target.uscc], |r| r.get(0)).optional()?;
        match existing {
            Some(id) => {
                targets::update_unaudited(tx, id, target, &at)?;
                report.updated += 1;
            }
            None => {
                targets::insert_unaudited(tx, target, &at)?;
                report.created += 1;
            }
        }
    }
    report.committed = true;
    audit::append(
        tx,
        actor,
        "target.import",
        "targets",
        None,
        Some(&json!({
            "sha256": hex::encode(Sha256::digest(bytes)),
            "bytes": bytes.len(),
            "rows": report.rows,
            "created": report.created,
            "updated": report.updated,
            "refused_lines": report.errors.iter().map(|e| e.line).collect::<Vec<_>>(),
        })),
    )?;
    Ok(report)
}

pub(super) async fn import_handler(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(params): ApiQuery<ImportParams>,
    request: Request,
) -> Result<Response> {
    require_writer(&user)?;
    let bytes = body_bytes(request, &state, IMPORT_BODY_LIMIT).await?;
    if bytes.is_empty() {
        return Err(Error::invalid(
            "body",
            "send the CSV file as the request body",
        ));
    }
    let started = std::time::Instant::now();
    let report = state
        .db
        .write(move |tx| import(tx, &user.username, &bytes, &params))
        .await?;
    tracing::info!(
        rows = report.rows,
        created = report.created,
        updated = report.updated,
        refused = report.errors.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "target import"
    );
    if report.committed || report.errors.is_empty() {
        return Ok(Json(report).into_response());
    }
    let message = format!(
        "{} of {} rows are bad; nothing was imported (mode=valid_rows imports the good rows)",
        report.errors.len(),
        report.rows
    );
    let mut body = serde_json::to_value(&report)?;
    body["error"] = json!({"code": "invalid", "message": message});
    Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uscc;

    const HEADER: &str = "uscc,name,target_type,industry,region,address,legal_rep,reg_status,risk_class,flag_abnormal";

    fn row(serial: u32, name: &str, risk: &str) -> String {
        let code = uscc::generate('9', '1', "330106", serial);
        format!("{code},{name},enterprise,餐饮业,西湖区,文三路{serial}号,张三,存续,{risk},否")
    }

    #[test]
    fn bad_rows_are_named_by_line() {
        let csv = format!(
            "{HEADER}\n{}\n{}\n{}\n{}\n",
            row(1, "甲公司", "A"),
            "91350100M000100Y44,乙公司,enterprise,餐饮业,西湖区,地址,李四,存续,B,否",
            row(3, "丙公司", "E"),
            row(1, "甲公司重复", "A"),
        );
        let Parsed {
            good,
            bad,
            rows,
            encoding: enc,
        } = parse(csv.as_bytes(), CsvEncoding::Auto).unwrap();
        assert_eq!(rows, 4);
        assert_eq!(enc, CsvEncoding::Utf8);
        assert_eq!(good.len(), 1);
        let lines: Vec<_> = bad
            .iter()
            .map(|e| (e.line, e.field.clone().unwrap()))
            .collect();
        assert_eq!(
            lines,
            vec![
                (3, "uscc".into()),
                (4, "risk_class".into()),
                (5, "uscc".into())
            ]
        );
        assert!(bad[2].reason.contains("line 2"));
    }

    #[test]
    fn gbk_file_with_chinese_headers_is_read() {
        let text = format!(
            "统一社会信用代码,名称,类型,行业,区域,地址,法定代表人,登记状态,风险等级,严重违法失信\n{},杭州味道餐饮有限公司,企业,餐饮业,西湖区,文三路1号,王五,存续,C,是\n",
            uscc::generate('9', '1', "330106", 77)
        );
        let (bytes, _, _) = encoding_rs::GBK.encode(&text);
        assert!(std::str::from_utf8(&bytes).is_err(), "really GBK bytes");
        let Parsed {
            good,
            bad,
            encoding: enc,
            ..
        } = parse(&bytes, CsvEncoding::Auto).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(enc, CsvEncoding::Gbk);
        assert_eq!(good[0].1.name, "杭州味道餐饮有限公司");
        assert_eq!(good[0].1.target_type, "enterprise");
        assert!(good[0].1.flag_serious);
    }

    #[test]
    fn missing_column_fails_whole_file() {
        let err = parse(b"uscc,name\n", CsvEncoding::Auto).unwrap_err();
        assert!(
            matches!(err, Error::Invalid { ref field, .. } if field == "header"),
            "{err}"
        );
    }
}
