//! A target import from an Excel workbook (`.xlsx`): the first sheet, its first row with a
//! value as the header (the same names as the CSV's), each later row a target, named by its
//! row number as Excel and WPS show it.
//!
//! An XLSX file is a ZIP archive of XML parts, so a small upload can unpack to gigabytes (a
//! ZIP bomb). Before anything is parsed, the archive's central directory is read and the file
//! is refused when it has more than [`MAX_PARTS`] parts (counted from the end of central
//! directory record, before the directory itself is read), when their declared sizes add up to
//! more than [`MAX_UNPACKED_BYTES`], when the shared strings (which calamine holds in memory)
//! declare more than [`MAX_SHARED_STRINGS_BYTES`], or when a part is encrypted. A part that
//! unpacks past its declared size fails as it is read (the `zip` crate stops at the declared
//! size). The sheet is then streamed cell by cell (never a whole range in memory, which for a
//! sheet whose last cell is at row 1,000,000 would be a million rows of empty cells), and a
//! sheet that declares or holds a cell below row [`MAX_ROWS`] is refused.
//!
//! Numbers are written the way the spreadsheet shows them in a 常规 (General) cell: `123`,
//! not `123.0`; `4008123123`, not `4.008123123e9`. A 统一社会信用代码 stored as a number has
//! already lost digits inside Excel (it keeps 15 significant digits, a code has 18), so such a
//! row is refused with a reason that says how to fix the column.

use std::io::{Read, Seek};

use calamine::{DataRef, Reader, Xlsx, XlsxError};

use super::{At, Checker, CsvEncoding, FileFormat, Parsed, RowError};
use crate::error::{Error, Result};

/// Parts (files inside the ZIP archive) an imported workbook may have.
pub const MAX_PARTS: usize = 1_000;
/// Declared unpacked size of all parts together, in bytes: a sheet of 200,000 targets with
/// its shared strings is about 120 MB.
pub const MAX_UNPACKED_BYTES: u64 = 256 * 1024 * 1024;
/// Declared unpacked size of the shared strings part, held in memory while the sheet is read.
pub const MAX_SHARED_STRINGS_BYTES: u64 = 64 * 1024 * 1024;
/// The last spreadsheet row an import reads: the header and 200,000 rows below it.
pub const MAX_ROWS: u32 = 200_001;
/// Columns of the header row an import reads.
pub const MAX_COLUMNS: u32 = 1_024;

fn refused(reason: impl Into<String>) -> Error {
    Error::invalid("body", reason)
}

fn not_a_workbook(e: impl std::fmt::Display) -> Error {
    refused(format!("not a readable XLSX workbook: {e}"))
}

const PASSWORD: &str = "the workbook is password-protected (encrypted): open it in Excel or \
                        WPS and save it without a password, or as CSV";

/// Largest central directory read, in bytes: [`MAX_PARTS`] entries with names of up to a
/// kilobyte.
const MAX_DIRECTORY_BYTES: u64 = MAX_PARTS as u64 * (46 + 1024);

/// Reads the end of central directory record and refuses an archive whose directory would
/// be large to hold in memory (the `zip` crate reads every entry of it before anything can
/// be asked): more than [`MAX_PARTS`] entries, a directory over [`MAX_DIRECTORY_BYTES`], or
/// ZIP64 (no workbook within the upload limit needs it). The record is the last one whose
/// comment runs exactly to the end of the file, as ZIP readers find it.
fn check_directory(file: &mut (impl Read + Seek)) -> Result<()> {
    const FIXED: usize = 22;
    let len = file.seek(std::io::SeekFrom::End(0))?;
    let tail_len = len.min((FIXED + u16::MAX as usize + 20) as u64);
    file.seek(std::io::SeekFrom::Start(len - tail_len))?;
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact(&mut tail)?;
    let u16_at = |i: usize| u16::from_le_bytes([tail[i], tail[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([tail[i], tail[i + 1], tail[i + 2], tail[i + 3]]);
    let Some(at) = (0..=tail.len().saturating_sub(FIXED)).rev().find(|&i| {
        tail[i..i + 4] == *b"PK\x05\x06" && i + FIXED + usize::from(u16_at(i + 20)) == tail.len()
    }) else {
        return Err(not_a_workbook(
            "no end of central directory (not a ZIP archive)",
        ));
    };
    let entries = u16_at(at + 10);
    let size = u32_at(at + 12);
    let zip64 = at >= 20 && tail[at - 20..at - 16] == *b"PK\x06\x07";
    if zip64 || entries == u16::MAX || size == u32::MAX {
        return Err(refused(
            "the workbook is a ZIP64 archive, which no workbook an import reads needs",
        ));
    }
    if usize::from(entries) > MAX_PARTS {
        return Err(refused(format!(
            "the workbook's directory lists {entries} parts; an import reads workbooks of \
             at most {MAX_PARTS}"
        )));
    }
    if u64::from(size) > MAX_DIRECTORY_BYTES {
        return Err(refused(format!(
            "the workbook's central directory is {size} bytes; an import reads at most \
             {MAX_DIRECTORY_BYTES}"
        )));
    }
    file.rewind()?;
    Ok(())
}

/// Reads the central directory and refuses an archive whose declared contents are too large
/// to unpack, before any part is decompressed.
fn check_archive(file: &mut (impl Read + Seek)) -> Result<()> {
    check_directory(file)?;
    let mut zip = zip::ZipArchive::new(&mut *file).map_err(not_a_workbook)?;
    if zip.len() > MAX_PARTS {
        return Err(refused(format!(
            "the workbook has {} parts; an import reads workbooks of at most {MAX_PARTS}",
            zip.len()
        )));
    }
    let mut total = 0u64;
    for i in 0..zip.len() {
        let part = zip.by_index_raw(i).map_err(not_a_workbook)?;
        if part.encrypted() {
            return Err(refused(PASSWORD));
        }
        let shared_strings = part
            .name()
            .is_ok_and(|name| name.to_lowercase().ends_with("sharedstrings.xml"));
        if shared_strings && part.size() > MAX_SHARED_STRINGS_BYTES {
            return Err(refused(format!(
                "the workbook's shared strings unpack to {} MiB, more than the {} MiB an \
                 import reads",
                part.size() >> 20,
                MAX_SHARED_STRINGS_BYTES >> 20
            )));
        }
        total = total.saturating_add(part.size());
    }
    if total > MAX_UNPACKED_BYTES {
        return Err(refused(format!(
            "the workbook unpacks to {} MiB, more than the {} MiB an import reads (save a \
             large directory as CSV, or split it)",
            total >> 20,
            MAX_UNPACKED_BYTES >> 20
        )));
    }
    Ok(())
}

fn unreadable_sheet(e: XlsxError) -> Error {
    match e {
        XlsxError::Password => refused(PASSWORD),
        e => refused(format!("the sheet cannot be read: {e}")),
    }
}

fn past_last_row(row: u64) -> Error {
    refused(format!(
        "the sheet reaches row {row}; an import reads rows 1 to {MAX_ROWS} (the header and \
         {} rows): delete the empty rows below the data, or split the file",
        MAX_ROWS - 1
    ))
}

/// A cell's value as the text a General cell shows, or why the row is refused.
fn cell_text(value: &DataRef<'_>, field: Option<&str>) -> std::result::Result<String, String> {
    let number = |shown: String| {
        if field == Some("uscc") {
            Err(format!(
                "stored as a number ({shown}), so Excel kept only its first 15 digits: format \
                 the column as 文本 (text) and enter the codes again"
            ))
        } else {
            Ok(shown)
        }
    };
    match value {
        DataRef::String(s) => Ok(s.trim().to_owned()),
        DataRef::SharedString(s) => Ok(s.trim().to_owned()),
        DataRef::Int(i) => number(i.to_string()),
        // Integral values as integers, as a General cell shows them; others in the shortest
        // form that reads back as the same number.
        DataRef::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => number(format!("{}", *f as i64)),
        DataRef::Float(f) => number(format!("{f}")),
        DataRef::Bool(b) => Ok(if *b { "TRUE" } else { "FALSE" }.to_owned()),
        DataRef::DateTime(_) | DataRef::DateTimeIso(_) | DataRef::DurationIso(_) => {
            Err("holds a date or time; enter the value as text".to_owned())
        }
        DataRef::Error(e) => Err(format!("holds the Excel error {e}")),
        DataRef::Empty => Ok(String::new()),
    }
}

/// The row being gathered: its cells' text, and the first cell that could not be read.
struct Gathering {
    row: u32,
    cells: Vec<String>,
    fault: Option<RowError>,
}

/// Parses and checks the first sheet of the workbook in `file`. Blocking.
pub(super) fn parse(mut file: impl Read + Seek) -> Result<Parsed> {
    check_archive(&mut file)?;
    file.rewind()?;
    let mut workbook = Xlsx::new(file).map_err(|e| match e {
        XlsxError::Password => refused(PASSWORD),
        e => not_a_workbook(e),
    })?;
    let Some(first) = workbook.sheet_names().into_iter().next() else {
        return Err(refused("the workbook has no sheet"));
    };
    let mut cells = workbook
        .worksheet_cells_reader(&first)
        .map_err(unreadable_sheet)?;
    let declared_end = cells.dimensions().end.0;
    if declared_end >= MAX_ROWS {
        return Err(past_last_row(u64::from(declared_end) + 1));
    }

    let mut header: Option<(u32, Vec<String>)> = None;
    let mut checker: Option<Checker> = None;
    let mut gathering: Option<Gathering> = None;
    // Hands a finished data row to the checker.
    let flush = |checker: &mut Checker, done: Gathering| -> Result<()> {
        let at = At {
            row: u64::from(done.row) + 1,
            line: None,
        };
        match done.fault {
            Some(fault) => {
                checker.unreadable(fault);
                Ok(())
            }
            None => checker.check(at, &done.cells),
        }
    };
    while let Some(cell) = cells.next_cell().map_err(unreadable_sheet)? {
        let (row, column) = cell.get_position();
        if row >= MAX_ROWS {
            return Err(past_last_row(u64::from(row) + 1));
        }
        let value = cell.get_value();
        if *value == DataRef::Empty {
            continue;
        }
        // The header: the first row that holds a value.
        if checker.is_none() {
            match &mut header {
                None => header = Some((row, Vec::new())),
                Some((header_row, _)) if *header_row < row => {
                    let (_, names) = header.take().expect("matched");
                    checker = Some(Checker::new(&names, true)?);
                }
                Some((header_row, _)) if *header_row > row => {
                    return Err(refused("the sheet's rows are out of order"));
                }
                Some(_) => {}
            }
            if let Some((header_row, names)) = &mut header {
                if column >= MAX_COLUMNS {
                    return Err(refused(format!(
                        "the header (row {}) has a value in column {}; an import reads the \
                         first {MAX_COLUMNS} columns",
                        *header_row + 1,
                        column + 1
                    )));
                }
                let text = cell_text(value, None).map_err(|reason| {
                    Error::invalid(
                        "header",
                        format!("column {} of the header: {reason}", column + 1),
                    )
                })?;
                let column = column as usize;
                if names.len() <= column {
                    names.resize(column + 1, String::new());
                }
                names[column] = text;
                continue;
            }
        }
        let checker = checker.as_mut().expect("the header was read");
        match &gathering {
            Some(current) if current.row > row => {
                return Err(refused("the sheet's rows are out of order"));
            }
            Some(current) if current.row < row => {
                let done = gathering.take().expect("matched");
                flush(checker, done)?;
            }
            _ => {}
        }
        let width = checker.width();
        let current = gathering.get_or_insert_with(|| Gathering {
            row,
            cells: vec![String::new(); width],
            fault: None,
        });
        let column = column as usize;
        if column >= width {
            // Right of the header: no field is read from there.
            continue;
        }
        let field = checker.field_at(column);
        match cell_text(value, field) {
            Ok(text) => current.cells[column] = text,
            Err(reason) => {
                current.fault.get_or_insert(RowError {
                    row: u64::from(row) + 1,
                    line: None,
                    field: field.map(str::to_owned),
                    reason,
                });
            }
        }
    }
    let mut checker = match (checker, header) {
        (Some(checker), _) => checker,
        // A sheet of one row: the header alone.
        (None, Some((_, names))) => Checker::new(&names, true)?,
        (None, None) => return Err(Error::invalid("header", "the first sheet is empty")),
    };
    if let Some(done) = gathering {
        flush(&mut checker, done)?;
    }
    Ok(checker.finish(FileFormat::Xlsx, CsvEncoding::Utf8))
}
