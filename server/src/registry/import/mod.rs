//! Bulk import of targets from CSV (UTF-8 or GBK) or XLSX ([`xlsx`]). Every row is checked
//! before anything is written; the answer lists the bad rows by their row number as a
//! spreadsheet shows it (the header is row 1) and
//! reason (the first [`MAX_LISTED_ERRORS`], and how many more), and the caller
//! chooses whether good rows are committed when some rows are bad
//! (`mode=valid_rows`) or nothing is (`mode=all_or_nothing`, the default). Rows
//! whose 统一社会信用代码 is already registered update that target.
//!
//! Bounded work: at most [`MAX_CONCURRENT_IMPORTS`] imports run at once, and one
//! more is answered 503 with `Retry-After` without its body being stored or parsed (and,
//! when the client sent `Expect: 100-continue`, before it is sent at all). The body is
//! written to an unnamed temporary file as it arrives (never held whole in
//! memory) and parsed from there, record by record, off the async runtime and
//! outside the write lock; the write lock is taken only to write the rows that
//! passed, in one transaction, so an import stays all or nothing.

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::pin::Pin;
use std::sync::Arc;

use crate::store::sql::{OptionalExtension, Tx};
use axum::Json;
use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

mod xlsx;

use super::TARGET_TYPES;
use super::require_writer;
use super::targets::{self, TargetInput};
use crate::AppState;
use crate::audit;
use crate::auth::AuthUser;
use crate::db::now;
use crate::error::{Error, Result};
use crate::extract::ApiQuery;

/// Largest CSV file accepted, in bytes (100,000 rows take about 20 MB).
pub const IMPORT_BODY_LIMIT: usize = 128 * 1024 * 1024;
/// Imports that run at once; one more is answered 503 with `Retry-After`.
pub const MAX_CONCURRENT_IMPORTS: usize = 2;
/// Bad rows listed in an answer; the rest are counted in `more_errors`.
pub const MAX_LISTED_ERRORS: usize = 100;
/// Seconds a refused import is asked to wait before it is sent again.
pub const IMPORT_RETRY_AFTER_SECONDS: u64 = 5;

/// The route of the import endpoint.
pub fn route() -> MethodRouter<AppState> {
    post(import_handler)
}

/// The imports running now: at most [`MAX_CONCURRENT_IMPORTS`], shared by the API and the
/// console (one set per server).
#[derive(Debug, Clone)]
pub struct ImportPermits(Arc<Semaphore>);

impl Default for ImportPermits {
    fn default() -> Self {
        ImportPermits(Arc::new(Semaphore::new(MAX_CONCURRENT_IMPORTS)))
    }
}

impl ImportPermits {
    /// A place for one more import, held until it is answered; `None` when
    /// [`MAX_CONCURRENT_IMPORTS`] are running.
    pub fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().ok()
    }
}

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
    /// The row as Excel and WPS number it: the header is row 1, the first data row row 2.
    /// In a CSV file a blank line is a row (the spreadsheet shows it empty) and a quoted
    /// field over several lines is still one row.
    pub row: u64,
    /// CSV only: the line of the file the row starts on (the header is line 1), as a text
    /// editor numbers it; the same as `row` unless a field spans lines. Absent for XLSX.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Column at fault, when one is.
    pub field: Option<String>,
    /// Why the row was refused.
    pub reason: String,
}

/// The kind of file an import was read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// Comma-separated text, UTF-8 or GBK.
    #[default]
    Csv,
    /// An Excel workbook (Office Open XML), its first sheet.
    Xlsx,
}

/// The outcome of an import.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// Mode used.
    pub mode: ImportMode,
    /// The kind of file, told by its content.
    pub format: FileFormat,
    /// Encoding the file was read as (`utf-8` for XLSX, whose text is Unicode).
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
    /// The first [`MAX_LISTED_ERRORS`] bad rows, in file order.
    pub errors: Vec<RowError>,
    /// Bad rows after those listed.
    pub more_errors: usize,
}

impl ImportReport {
    /// Bad rows, listed or not.
    pub fn refused(&self) -> usize {
        self.errors.len() + self.more_errors
    }
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

/// How the fields of a file are read as text: the encoding chosen, and whether a field that
/// does not decode fails the file (explicit) or makes an `auto` import try GBK instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Utf8 { explicit: bool },
    Gbk,
}

/// A field that is not text in the encoding being tried.
enum Undecodable {
    /// Fails the whole file with this error.
    Fatal(Error),
    /// Not UTF-8: an `auto` import reads the file again as GBK.
    NotUtf8,
}

impl Reading {
    fn decode(self, field: &[u8], line: u64) -> std::result::Result<String, Undecodable> {
        match self {
            Reading::Utf8 { explicit } => match std::str::from_utf8(field) {
                Ok(text) => Ok(text.trim().to_owned()),
                Err(_) if explicit => Err(Undecodable::Fatal(Error::invalid(
                    "body",
                    format!("not valid UTF-8 (line {line}); try encoding=gbk"),
                ))),
                Err(_) => Err(Undecodable::NotUtf8),
            },
            Reading::Gbk => encoding_rs::GBK
                .decode_without_bom_handling_and_without_replacement(field)
                .map(|text| text.trim().to_owned())
                .ok_or_else(|| {
                    Undecodable::Fatal(Error::invalid(
                        "body",
                        "the file is neither valid UTF-8 nor valid GBK",
                    ))
                }),
        }
    }

    fn encoding(self) -> CsvEncoding {
        match self {
            Reading::Utf8 { .. } => CsvEncoding::Utf8,
            Reading::Gbk => CsvEncoding::Gbk,
        }
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
    /// Good rows with their spreadsheet row numbers.
    pub good: Vec<(u64, TargetInput)>,
    /// The first [`MAX_LISTED_ERRORS`] bad rows.
    pub bad: Vec<RowError>,
    /// Bad rows after those in `bad`.
    pub more_bad: usize,
    /// Data rows in the file (blank rows not counted).
    pub rows: usize,
    /// The kind of file.
    pub format: FileFormat,
    /// The encoding the file was read as.
    pub encoding: CsvEncoding,
}

/// Parses and checks every row of a file held in memory; see [`parse_file`].
pub fn parse(bytes: &[u8], encoding: CsvEncoding) -> Result<Parsed> {
    parse_file(std::io::Cursor::new(bytes), encoding, None)
}

/// The first bytes of a ZIP archive, as every XLSX file begins.
const ZIP_MAGIC: &[u8; 4] = b"PK\x03\x04";
/// The first bytes of an OLE compound file: an old `.xls`, or an XLSX saved with a password
/// (Excel then wraps the encrypted workbook in one).
const OLE_MAGIC: &[u8; 8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";

/// Parses and checks every row; fails only if the file as a whole is unreadable (encoding,
/// header, not a workbook). What the file is comes from its first bytes: a ZIP archive is
/// read as XLSX (see [`xlsx`]), an OLE compound file is refused (a password-protected XLSX or
/// an `.xls`), anything else is CSV, read record by record (an `auto` file that turns out not
/// to be UTF-8 is read again from the start as GBK) — unless `declared` (the content type or
/// file name the client gave) says XLSX, which the bytes then must be. Blocking.
pub fn parse_file(
    mut file: impl Read + Seek,
    encoding: CsvEncoding,
    declared: Option<FileFormat>,
) -> Result<Parsed> {
    let mut magic = [0u8; 8];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..])? {
            0 => break,
            n => got += n,
        }
    }
    file.rewind()?;
    if magic.starts_with(ZIP_MAGIC) {
        return xlsx::parse(file);
    }
    if got == magic.len() && &magic == OLE_MAGIC {
        return Err(Error::invalid(
            "body",
            "this is a password-protected (encrypted) workbook or an old .xls file: open it \
             in Excel or WPS and save it as .xlsx without a password, or as CSV",
        ));
    }
    if declared == Some(FileFormat::Xlsx) {
        return Err(Error::invalid(
            "body",
            "the file is named or sent as XLSX but is not an XLSX workbook (a ZIP archive)",
        ));
    }
    let first = match encoding {
        CsvEncoding::Gbk => Reading::Gbk,
        CsvEncoding::Utf8 => Reading::Utf8 { explicit: true },
        CsvEncoding::Auto => Reading::Utf8 { explicit: false },
    };
    match parse_as(&mut file, first) {
        Ok(parsed) => Ok(parsed),
        Err(Undecodable::Fatal(e)) => Err(e),
        Err(Undecodable::NotUtf8) => {
            file.rewind()?;
            parse_as(&mut file, Reading::Gbk).map_err(|e| match e {
                Undecodable::Fatal(e) => e,
                Undecodable::NotUtf8 => Error::Internal("GBK taken for UTF-8".into()),
            })
        }
    }
}

/// Checks a file's rows one by one against its header, whatever the file is; what CSV and
/// XLSX share.
struct Checker {
    /// Column of each field in a row.
    index: HashMap<&'static str, usize>,
    good: Vec<(u64, TargetInput)>,
    bad: Vec<RowError>,
    more_bad: usize,
    /// Row each code was first seen on.
    seen: HashMap<String, u64>,
    rows: usize,
}

/// Where a row is, as the answer names it.
#[derive(Debug, Clone, Copy)]
struct At {
    row: u64,
    line: Option<u64>,
}

impl At {
    fn error(self, field: Option<&str>, reason: String) -> RowError {
        RowError {
            row: self.row,
            line: self.line,
            field: field.map(str::to_owned),
            reason,
        }
    }
}

impl Checker {
    /// Reads the header; `skip_blank` ignores blank header cells (a spreadsheet's formatted
    /// but empty columns) rather than refusing them as an unknown column.
    fn new(headers: &[String], skip_blank: bool) -> Result<Checker> {
        let mut index: HashMap<&'static str, usize> = HashMap::new();
        for (i, header) in headers.iter().enumerate() {
            let header = header.as_str();
            if skip_blank && header.is_empty() {
                continue;
            }
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
        Ok(Checker {
            index,
            good: Vec::new(),
            bad: Vec::new(),
            more_bad: 0,
            seen: HashMap::new(),
            rows: 0,
        })
    }

    /// Columns up to the last one a field is read from.
    fn width(&self) -> usize {
        self.index.values().max().map_or(0, |last| last + 1)
    }

    /// The field read from a column, if any.
    fn field_at(&self, column: usize) -> Option<&'static str> {
        self.index
            .iter()
            .find(|&(_, &i)| i == column)
            .map(|(&field, _)| field)
    }

    fn refuse(&mut self, e: RowError) {
        if self.bad.len() < MAX_LISTED_ERRORS {
            self.bad.push(e);
        } else {
            self.more_bad += 1;
        }
    }

    /// A data row that could not be read at all: it counts as a row, and as a bad one.
    fn unreadable(&mut self, e: RowError) {
        self.rows += 1;
        self.refuse(e);
    }

    /// Checks one data row; a row of blank cells is skipped and not counted.
    fn check(&mut self, at: At, record: &[String]) -> Result<()> {
        if record.iter().all(|f| f.is_empty()) {
            return Ok(());
        }
        self.rows += 1;
        let cell = |field: &str| {
            self.index
                .get(field)
                .and_then(|&i| record.get(i))
                .cloned()
                .unwrap_or_default()
        };
        let mut flags = [false; 2];
        let mut flag_error = None;
        for (slot, field) in flags.iter_mut().zip(["flag_abnormal", "flag_serious"]) {
            match parse_flag(&cell(field)) {
                Ok(v) => *slot = v,
                Err(reason) => flag_error = flag_error.or(Some(at.error(Some(field), reason))),
            }
        }
        if let Some(e) = flag_error {
            self.refuse(e);
            return Ok(());
        }
        let complaints_text = cell("complaints");
        let complaints = if complaints_text.is_empty() {
            0
        } else {
            match complaints_text.parse::<u32>() {
                Ok(n) => n,
                Err(_) => {
                    self.refuse(at.error(
                        Some("complaints"),
                        format!("`{complaints_text}` is not a count"),
                    ));
                    return Ok(());
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
            Err(Error::Invalid { field, reason }) => self.refuse(at.error(Some(&field), reason)),
            Err(other) => return Err(other),
            Ok(target) => match self.seen.get(&target.uscc) {
                Some(first) => {
                    let reason = format!(
                        "统一社会信用代码 {} already appears on row {first}",
                        target.uscc
                    );
                    self.refuse(at.error(Some("uscc"), reason));
                }
                None => {
                    self.seen.insert(target.uscc.clone(), at.row);
                    self.good.push((at.row, target));
                }
            },
        }
        Ok(())
    }

    fn finish(self, format: FileFormat, encoding: CsvEncoding) -> Parsed {
        Parsed {
            good: self.good,
            bad: self.bad,
            more_bad: self.more_bad,
            rows: self.rows,
            format,
            encoding,
        }
    }
}

fn parse_as(file: impl Read, reading: Reading) -> std::result::Result<Parsed, Undecodable> {
    let fatal = Undecodable::Fatal;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(std::io::BufReader::with_capacity(256 * 1024, file));
    let header_record = reader
        .byte_headers()
        .map_err(|e| {
            fatal(Error::invalid(
                "header",
                format!("cannot read the header line: {e}"),
            ))
        })?
        .clone();
    let mut headers = Vec::with_capacity(header_record.len());
    for (i, field) in header_record.iter().enumerate() {
        let field = if i == 0 {
            field.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(field)
        } else {
            field
        };
        headers.push(reading.decode(field, 1)?);
    }
    let mut checker = Checker::new(&headers, false).map_err(fatal)?;

    // Spreadsheet rows. The csv reader skips blank lines, which a spreadsheet shows as empty
    // rows, and its position after a record counts the blank lines before it and every line
    // of a quoted field that spans lines, which a spreadsheet shows as one row (the position
    // it gives as a record's start is the end of the previous one). So each record moves the
    // row by the lines it consumed less the line breaks inside its fields, and its first line
    // in the file is its row plus the line breaks inside the fields before it.
    let mut row = 1u64;
    let mut inner_breaks = 0u64;
    let mut consumed_to = reader.position().line();
    let mut raw = csv::ByteRecord::new();
    loop {
        let result = reader.read_byte_record(&mut raw);
        let end = reader.position().line();
        let consumed = end.saturating_sub(consumed_to).max(1);
        consumed_to = end;
        match result {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                row += consumed;
                checker.unreadable(RowError {
                    row,
                    line: Some(row + inner_breaks),
                    field: None,
                    reason: format!("unreadable row: {e}"),
                });
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
                continue;
            }
        }
        let breaks: u64 = raw
            .iter()
            .map(|field| field.iter().filter(|&&b| b == b'\n').count() as u64)
            .sum();
        row += consumed.saturating_sub(breaks).max(1);
        let line = row + inner_breaks;
        inner_breaks += breaks;
        let mut record = Vec::with_capacity(raw.len());
        for field in &raw {
            record.push(reading.decode(field, line)?);
        }
        checker
            .check(
                At {
                    row,
                    line: Some(line),
                },
                &record,
            )
            .map_err(fatal)?;
    }
    Ok(checker.finish(FileFormat::Csv, reading.encoding()))
}

/// The file an import was made from, as the audit log names it.
#[derive(Debug, Clone)]
pub struct ImportedFile {
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The answer to a parsed file before anything is written, and the rows to write.
pub fn checked(parsed: Parsed, params: &ImportParams) -> (ImportReport, Vec<(u64, TargetInput)>) {
    let report = ImportReport {
        mode: params.mode,
        format: parsed.format,
        encoding: parsed.encoding,
        rows: parsed.rows,
        valid: parsed.good.len(),
        created: 0,
        updated: 0,
        committed: false,
        errors: parsed.bad,
        more_errors: parsed.more_bad,
    };
    (report, parsed.good)
}

/// Whether an import of this outcome writes anything: good rows, and no bad one unless the
/// mode keeps the good rows.
pub fn writes(report: &ImportReport, good: &[(u64, TargetInput)]) -> bool {
    !good.is_empty() && (report.mode == ImportMode::ValidRows || report.refused() == 0)
}

/// Writes the checked rows `good` of `report` in `tx`, creating or updating each target, and
/// audits the import once.
pub fn write_rows(
    tx: &Tx<'_>,
    actor: &str,
    mut report: ImportReport,
    good: &[(u64, TargetInput)],
    file: &ImportedFile,
) -> Result<ImportReport> {
    let at = now();
    let mut lookup = tx.prepare_cached("SELECT id FROM targets WHERE uscc = ?1")?;
    for (_, target) in good {
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
            "sha256": file.sha256,
            "bytes": file.bytes,
            "rows": report.rows,
            "created": report.created,
            "updated": report.updated,
            "refused": report.refused(),
            "format": report.format,
            "refused_rows": report.errors.iter().map(|e| e.row).collect::<Vec<_>>(),
        })),
    )?;
    Ok(report)
}

/// The answer to an import refused because [`MAX_CONCURRENT_IMPORTS`] are running.
pub fn busy() -> Response {
    let message = format!(
        "{MAX_CONCURRENT_IMPORTS} imports are running; send this one again in \
         {IMPORT_RETRY_AFTER_SECONDS} seconds"
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, IMPORT_RETRY_AFTER_SECONDS.to_string())],
        Json(json!({"error": {"code": "busy", "message": message}})),
    )
        .into_response()
}

/// A file being received: written to an unnamed temporary file as it arrives (never held
/// whole in memory), hashed, and refused past [`IMPORT_BODY_LIMIT`] without reading the rest.
pub struct Spool {
    writer: std::io::BufWriter<std::fs::File>,
    hasher: Sha256,
    size: u64,
}

impl Spool {
    /// An empty file in `dir` (the data directory, so a large import does not fill `/tmp`).
    pub fn new(dir: &std::path::Path) -> Result<Spool> {
        Ok(Spool {
            writer: std::io::BufWriter::with_capacity(256 * 1024, tempfile::tempfile_in(dir)?),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Appends the next bytes of the file.
    pub fn push(&mut self, data: &[u8]) -> Result<()> {
        self.size += data.len() as u64;
        if self.size > IMPORT_BODY_LIMIT as u64 {
            return Err(Error::TooLarge {
                limit: IMPORT_BODY_LIMIT,
            });
        }
        self.hasher.update(data);
        // Small writes into a buffer; a full buffer is one write to the page cache.
        self.writer.write_all(data)?;
        Ok(())
    }

    /// The whole file, read from its start, and what the audit log names it by.
    pub fn finish(self) -> Result<(std::fs::File, ImportedFile)> {
        let mut file = self
            .writer
            .into_inner()
            .map_err(|e| Error::Io(e.into_error()))?;
        file.rewind()?;
        let digest = ImportedFile {
            sha256: hex::encode(self.hasher.finalize()),
            bytes: self.size,
        };
        Ok((file, digest))
    }
}

/// Whether the client waits for `100 Continue` before it sends the body: then an answer
/// given without reading the body spares it the upload.
fn expects_continue(headers: &header::HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Reads a body to its end and drops it, holding none of it, within [`IMPORT_BODY_LIMIT`].
async fn discard(mut body: axum::body::Body) -> Result<()> {
    let mut size = 0u64;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame =
            frame.map_err(|e| Error::Malformed(format!("the body could not be read: {e}")))?;
        if let Ok(data) = frame.into_data() {
            size += data.len() as u64;
            if size > IMPORT_BODY_LIMIT as u64 {
                return Err(Error::TooLarge {
                    limit: IMPORT_BODY_LIMIT,
                });
            }
        }
    }
    Ok(())
}

/// Parses the received `file` off the async runtime (as XLSX or CSV, see [`parse_file`];
/// `declared` is what the client called it), then, as `params` says, writes its good rows in
/// one transaction under the write lock, and logs how long each part took.
pub async fn run(
    state: &AppState,
    actor: String,
    file: std::fs::File,
    digest: ImportedFile,
    params: ImportParams,
    declared: Option<FileFormat>,
) -> Result<ImportReport> {
    let started = std::time::Instant::now();
    let encoding = params.encoding;
    let parsed =
        tokio::task::spawn_blocking(move || parse_file(file, encoding, declared)).await??;
    let parsed_ms = started.elapsed().as_millis() as u64;
    let (report, good) = checked(parsed, &params);
    let report = if writes(&report, &good) {
        state
            .db
            .write(move |tx| write_rows(tx, &actor, report, &good, &digest))
            .await?
    } else {
        report
    };
    tracing::info!(
        format = ?report.format,
        rows = report.rows,
        created = report.created,
        updated = report.updated,
        refused = report.refused(),
        parsed_ms,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "target import"
    );
    Ok(report)
}

/// The XLSX media type, as browsers and Excel name an `.xlsx` file.
pub const XLSX_CONTENT_TYPE: &str =
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// What a content type says the file is: XLSX for the XLSX media type, otherwise nothing
/// (CSV is sent under many names, and the bytes decide).
pub fn declared_format(content_type: &str) -> Option<FileFormat> {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence
        .eq_ignore_ascii_case(XLSX_CONTENT_TYPE)
        .then_some(FileFormat::Xlsx)
}

async fn import_handler(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(params): ApiQuery<ImportParams>,
    request: Request,
) -> Result<Response> {
    require_writer(&user)?;
    let declared = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(declared_format);
    // Taken before the body is read, and held until the answer: a refused import costs no
    // disk and no parsing.
    let Some(_permit) = state.imports.try_take() else {
        if !expects_continue(request.headers()) {
            // The client sends the body regardless. Closing the connection on it unread
            // makes the kernel reset it, and a client still sending may lose the answer to
            // the reset (1 of 27 refused 120 MiB imports in bench_abuse), so it is read and
            // dropped first, bounded by the body limit and the transport's body timeouts.
            discard(request.into_body()).await?;
        }
        return Ok(busy());
    };
    let mut spool = Spool::new(&state.config.data_dir)?;
    let mut body = request.into_body();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame =
            frame.map_err(|e| Error::Malformed(format!("the body could not be read: {e}")))?;
        if let Ok(data) = frame.into_data() {
            spool.push(&data)?;
        }
    }
    let (file, digest) = spool.finish()?;
    if digest.bytes == 0 {
        return Err(Error::invalid(
            "body",
            "send the CSV or XLSX file as the request body",
        ));
    }
    let report = run(
        &state,
        user.username.clone(),
        file,
        digest,
        params,
        declared,
    )
    .await?;
    if report.committed || report.refused() == 0 {
        return Ok(Json(report).into_response());
    }
    let message = format!(
        "{} of {} rows are bad; nothing was imported (mode=valid_rows imports the good rows)",
        report.refused(),
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
            ..
        } = parse(csv.as_bytes(), CsvEncoding::Auto).unwrap();
        assert_eq!(rows, 4);
        assert_eq!(enc, CsvEncoding::Utf8);
        assert_eq!(good.len(), 1);
        let lines: Vec<_> = bad
            .iter()
            .map(|e| (e.row, e.field.clone().unwrap()))
            .collect();
        assert_eq!(
            lines,
            vec![
                (3, "uscc".into()),
                (4, "risk_class".into()),
                (5, "uscc".into())
            ]
        );
        assert!(bad[2].reason.contains("row 2"), "{}", bad[2].reason);
        assert!(bad.iter().all(|e| e.line == Some(e.row)));
    }

    #[test]
    fn csv_rows_are_numbered_as_a_spreadsheet_shows_them() {
        // A quoted address over three lines is one row; blank lines are empty rows; CRLF.
        let csv = format!(
            "{HEADER}\r\n{}\r\n\r\n{}\r\n{}\r\n\r\n\r\n{}\r\n",
            row(1, "甲公司", "A").replace("文三路1号", "\"文三路\r\n1号\r\n东门\""),
            row(2, "乙公司", "E"),
            row(3, "丙公司", "A"),
            row(4, "丁公司", "Z"),
        );
        let parsed = parse(csv.as_bytes(), CsvEncoding::Auto).unwrap();
        assert_eq!(parsed.rows, 4);
        assert_eq!(parsed.good.len(), 1, "{:?}", parsed.bad);
        assert_eq!(parsed.good[0].0, 5);
        let at: Vec<_> = parsed
            .bad
            .iter()
            .map(|e| (e.row, e.line, e.field.as_deref().unwrap()))
            .collect();
        // Rows: header 1, 甲 2 (an address is one line: refused), blank 3, 乙 4, 丙 5,
        // blanks 6 and 7, 丁 8. Lines run two ahead after the address.
        assert_eq!(
            at,
            vec![
                (2, Some(2), "address"),
                (4, Some(6), "risk_class"),
                (8, Some(10), "risk_class")
            ]
        );
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
