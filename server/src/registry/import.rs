//! Bulk import of targets from CSV (UTF-8 or GBK). Every row is checked before
//! anything is written; the answer lists the bad rows by line number and
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

use axum::Json;
use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use rusqlite::{OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    /// Good rows with their line numbers.
    pub good: Vec<(u64, TargetInput)>,
    /// The first [`MAX_LISTED_ERRORS`] bad rows.
    pub bad: Vec<RowError>,
    /// Bad rows after those in `bad`.
    pub more_bad: usize,
    /// Data rows in the file (blank lines not counted).
    pub rows: usize,
    /// The encoding the file was read as.
    pub encoding: CsvEncoding,
}

/// Parses and checks every row of a file held in memory; see [`parse_file`].
pub fn parse(bytes: &[u8], encoding: CsvEncoding) -> Result<Parsed> {
    parse_file(std::io::Cursor::new(bytes), encoding)
}

/// Parses and checks every row, reading `file` record by record (an `auto` file that turns
/// out not to be UTF-8 is read again from the start as GBK); fails only if the file as a whole
/// is unreadable (encoding, header). Blocking.
pub fn parse_file(mut file: impl Read + Seek, encoding: CsvEncoding) -> Result<Parsed> {
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
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, header) in headers.iter().enumerate() {
        let header = header.as_str();
        let Some((field, _)) = COLUMNS
            .iter()
            .find(|(field, aliases)| *field == header || aliases.contains(&header))
        else {
            return Err(fatal(Error::invalid(
                "header",
                format!("unknown column `{header}` (column {})", i + 1),
            )));
        };
        if index.insert(field, i).is_some() {
            return Err(fatal(Error::invalid(
                "header",
                format!("column `{field}` appears twice"),
            )));
        }
    }
    if let Some((missing, aliases)) = COLUMNS
        .iter()
        .find(|(f, _)| !OPTIONAL.contains(f) && !index.contains_key(f))
    {
        return Err(fatal(Error::invalid(
            "header",
            format!("missing column `{missing}` ({})", aliases.join(" / ")),
        )));
    }

    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut more_bad = 0;
    let mut refuse = |e: RowError| {
        if bad.len() < MAX_LISTED_ERRORS {
            bad.push(e);
        } else {
            more_bad += 1;
        }
    };
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut rows = 0;
    let mut raw = csv::ByteRecord::new();
    loop {
        rows += 1;
        match reader.read_byte_record(&mut raw) {
            Ok(true) => {}
            Ok(false) => {
                rows -= 1;
                break;
            }
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                refuse(RowError {
                    line,
                    field: None,
                    reason: format!("unreadable row: {e}"),
                });
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
                continue;
            }
        }
        let line = raw.position().map(|p| p.line()).unwrap_or(0);
        let mut record = Vec::with_capacity(raw.len());
        for field in &raw {
            record.push(reading.decode(field, line)?);
        }
        if record.iter().all(|f| f.is_empty()) {
            rows -= 1;
            continue;
        }
        let cell = |field: &str| {
            index
                .get(field)
                .and_then(|&i| record.get(i))
                .cloned()
                .unwrap_or_default()
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
            refuse(e);
            continue;
        }
        let complaints_text = cell("complaints");
        let complaints = if complaints_text.is_empty() {
            0
        } else {
            match complaints_text.parse::<u32>() {
                Ok(n) => n,
                Err(_) => {
                    refuse(fail(
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
            Err(Error::Invalid { field, reason }) => refuse(fail(&field, reason)),
            Err(other) => return Err(fatal(other)),
            Ok(target) => match seen.get(&target.uscc) {
                Some(first) => refuse(fail(
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
        more_bad,
        rows,
        encoding: reading.encoding(),
    })
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
    tx: &Transaction<'_>,
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
            "refused_lines": report.errors.iter().map(|e| e.line).collect::<Vec<_>>(),
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

/// Parses the received `file` off the async runtime, then, as `params` says, writes its good
/// rows in one transaction under the write lock, and logs how long each part took.
pub async fn run(
    state: &AppState,
    actor: String,
    file: std::fs::File,
    digest: ImportedFile,
    params: ImportParams,
) -> Result<ImportReport> {
    let started = std::time::Instant::now();
    let encoding = params.encoding;
    let parsed = tokio::task::spawn_blocking(move || parse_file(file, encoding)).await??;
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

async fn import_handler(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(params): ApiQuery<ImportParams>,
    request: Request,
) -> Result<Response> {
    require_writer(&user)?;
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
            "send the CSV file as the request body",
        ));
    }
    let report = run(&state, user.username.clone(), file, digest, params).await?;
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
