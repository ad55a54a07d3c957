//! The target import from XLSX workbooks: real files written with rust_xlsxwriter (and, for
//! hostile ones, ZIP archives written part by part), sent to a real server.

use std::io::Write;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rust_xlsxwriter::{Format, Workbook};
use serde_json::Value;
use suiji_server::uscc;
use suiji_tests::TestServer;

const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// A cell of a test sheet.
enum Cell {
    Text(String),
    Number(f64),
}

fn text(s: &str) -> Cell {
    Cell::Text(s.to_owned())
}

/// A workbook of one sheet with these rows (row 1 first); `None` rows stay empty.
fn workbook(rows: &[Option<Vec<Cell>>]) -> Vec<u8> {
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("检查对象").unwrap();
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().flatten().enumerate() {
            match cell {
                Cell::Text(s) => sheet.write_string(r as u32, c as u16, s).unwrap(),
                Cell::Number(n) => sheet.write_number(r as u32, c as u16, *n).unwrap(),
            };
        }
    }
    book.save_to_buffer().unwrap()
}

const HEADER: [&str; 12] = [
    "统一社会信用代码",
    "名称",
    "类型",
    "行业",
    "区域",
    "地址",
    "法定代表人",
    "登记状态",
    "风险等级",
    "经营异常名录",
    "严重违法失信",
    "投诉",
];

fn header() -> Option<Vec<Cell>> {
    Some(HEADER.iter().map(|h| text(h)).collect())
}

fn code(serial: u32) -> String {
    uscc::generate('9', '1', "330106", serial)
}

/// A good row as text cells.
fn good_row(serial: u32, name: &str) -> Vec<Cell> {
    [
        code(serial).as_str(),
        name,
        "企业",
        "餐饮业",
        "西湖区",
        "文三路1号",
        "张三",
        "存续",
        "B",
        "否",
        "否",
        "0",
    ]
    .iter()
    .map(|s| text(s))
    .collect()
}

fn errors(report: &Value) -> Vec<(i64, String)> {
    report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["row"].as_i64().unwrap(),
                e["field"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn xlsx_import_reads_chinese_headers_and_numbers_as_the_sheet_shows_them() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    // Cells Excel stores as numbers: a name of digits (a hotline), a house number as the
    // address, the complaints count, a flag typed as 1.
    let mut numeric = good_row(2, "");
    numeric[1] = Cell::Number(4008123123.0);
    numeric[5] = Cell::Number(123.0);
    numeric[10] = Cell::Number(1.0);
    numeric[11] = Cell::Number(3.0);
    let file = workbook(&[
        header(),
        Some(good_row(1, "杭州味道餐饮有限公司")),
        Some(numeric),
    ]);
    assert_eq!(&file[..4], b"PK\x03\x04", "a real XLSX file");

    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", XLSX, file.clone())
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["format"], "xlsx");
    assert_eq!(report["rows"], 2);
    assert_eq!(report["created"], 2);

    let (_, page) = planner.get(&format!("/api/v1/targets?q={}", code(2))).await;
    let target = &page["items"][0];
    assert_eq!(target["name"], "4008123123", "not 4008123123.0 or 4.008e9");
    assert_eq!(target["address"], "123", "not 123.0");
    assert_eq!(target["complaints"], 3);
    assert_eq!(target["flag_serious"], true);
    assert_eq!(target["target_type"], "enterprise", "企业 read as its code");
    let (_, page) = planner.get("/api/v1/targets?q=味道").await;
    assert_eq!(page["items"][0]["uscc"], code(1));

    // The content decides, not the name it is sent under: the same bytes as octet-stream.
    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", "application/octet-stream", file)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["updated"], 2);
}

#[tokio::test]
async fn xlsx_import_names_bad_rows_as_excel_numbers_them() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let mut bad_risk = good_row(3, "坏风险");
    bad_risk[8] = text("X");
    // A code typed into a General cell: Excel keeps 15 of its 18 digits.
    let mut numeric_code = good_row(4, "数字代码");
    numeric_code[0] = Cell::Number(913_301_060_000_000_017.0);
    let file = workbook(&[
        header(),
        Some(good_row(1, "好一")),
        None,
        Some(bad_risk),
        Some(numeric_code),
        None,
        None,
        Some(good_row(1, "好一重复")),
    ]);
    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", XLSX, file.clone())
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
    assert_eq!(
        errors(&report),
        vec![
            (4, "risk_class".to_owned()),
            (5, "uscc".to_owned()),
            (8, "uscc".to_owned())
        ],
        "{report}"
    );
    let listed = report["errors"].as_array().unwrap();
    assert!(
        listed[1]["reason"].as_str().unwrap().contains("文本"),
        "{report}"
    );
    assert!(
        listed[2]["reason"].as_str().unwrap().contains("row 2"),
        "{report}"
    );
    assert!(listed[0].get("line").is_none(), "a workbook has no lines");
    assert_eq!(report["rows"], 4, "empty rows are not data rows");
    let (_, page) = planner.get("/api/v1/targets").await;
    assert_eq!(page["total"], 0, "all or nothing");

    let (status, report) = planner
        .post_bytes("/api/v1/targets/import?mode=valid_rows", XLSX, file)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["created"], 1);
}

/// The parts every workbook needs, around a sheet whose XML `sheet` writes.
fn raw_xlsx(sheet: impl FnOnce(&mut dyn Write)) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    let parts = [
        (
            "[Content_Types].xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#,
        ),
        (
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#,
        ),
        (
            "xl/workbook.xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
        ),
        (
            "xl/_rels/workbook.xml.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#,
        ),
    ];
    for (name, xml) in parts {
        zip.start_file(name, deflated).unwrap();
        zip.write_all(xml.as_bytes()).unwrap();
    }
    zip.start_file("xl/worksheets/sheet1.xml", deflated)
        .unwrap();
    sheet(&mut zip);
    zip.finish().unwrap().into_inner()
}

const SHEET_START: &str = r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#;
const SHEET_END: &str = "</sheetData></worksheet>";

/// The header row and one good row, as inline strings.
fn header_and_one_row(out: &mut dyn Write) {
    let cells = |row: u32, values: &[String]| {
        let mut xml = format!(r#"<row r="{row}">"#);
        for (i, v) in values.iter().enumerate() {
            let column = (b'A' + i as u8) as char;
            xml += &format!(r#"<c r="{column}{row}" t="inlineStr"><is><t>{v}</t></is></c>"#);
        }
        xml + "</row>"
    };
    let header: Vec<String> = HEADER.iter().map(|h| h.to_string()).collect();
    let row: Vec<String> = [
        code(1).as_str(),
        "手写工作簿",
        "企业",
        "餐饮业",
        "西湖区",
        "文三路1号",
        "张三",
        "存续",
        "B",
        "否",
        "否",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    write!(out, "{}{}", cells(1, &header), cells(2, &row)).unwrap();
}

#[tokio::test]
async fn a_hand_written_workbook_without_styles_or_shared_strings_is_read() {
    // The baseline for the hostile files below: the same parts, well formed.
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let file = raw_xlsx(|out| {
        out.write_all(SHEET_START.as_bytes()).unwrap();
        header_and_one_row(out);
        out.write_all(SHEET_END.as_bytes()).unwrap();
    });
    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", XLSX, file)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["created"], 1);
}

#[tokio::test]
async fn a_zip_bomb_is_refused_from_its_central_directory_before_it_is_unpacked() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    // 300 MiB of sheet XML (blank space between rows) that deflates to well under 1 MiB.
    let file = raw_xlsx(|out| {
        out.write_all(SHEET_START.as_bytes()).unwrap();
        header_and_one_row(out);
        let blank = vec![b' '; 1 << 20];
        for _ in 0..300 {
            out.write_all(&blank).unwrap();
        }
        out.write_all(SHEET_END.as_bytes()).unwrap();
    });
    assert!(file.len() < 1 << 20, "a small upload: {} bytes", file.len());
    let started = Instant::now();
    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", XLSX, file)
        .await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(message.contains("unpacks to 300 MiB"), "{message}");
    assert!(
        took < Duration::from_secs(2),
        "refused without unpacking: {took:?}"
    );
    let (_, page) = planner.get("/api/v1/targets").await;
    assert_eq!(page["total"], 0);
}

/// Sets the uncompressed size that the local header and the central directory record of
/// the part `name` declare.
fn declare_size(zip: &mut [u8], name: &str, size: u32) {
    let mut patched = 0;
    for (signature, size_at, name_at) in [(b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)] {
        let mut i = 0;
        while i + name_at + name.len() <= zip.len() {
            if &zip[i..i + 4] == signature
                && &zip[i + name_at..i + name_at + name.len()] == name.as_bytes()
            {
                zip[i + size_at..i + size_at + 4].copy_from_slice(&size.to_le_bytes());
                patched += 1;
            }
            i += 1;
        }
    }
    assert_eq!(patched, 2, "both headers of {name}");
}

#[tokio::test]
async fn a_part_that_unpacks_past_its_declared_size_is_refused_at_that_size() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    // A 64 MiB sheet whose headers claim 4 KiB: the central directory check passes, the
    // reader stops at the 4 KiB it was told of.
    let mut file = raw_xlsx(|out| {
        out.write_all(SHEET_START.as_bytes()).unwrap();
        header_and_one_row(out);
        let blank = vec![b' '; 1 << 20];
        for _ in 0..64 {
            out.write_all(&blank).unwrap();
        }
        out.write_all(SHEET_END.as_bytes()).unwrap();
    });
    declare_size(&mut file, "xl/worksheets/sheet1.xml", 4096);
    let started = Instant::now();
    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", XLSX, file)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(message.contains("sheet cannot be read"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_sheet_reaching_a_million_rows_is_refused() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    // rust_xlsxwriter: one formatted blank cell a million rows down, as a user who formatted
    // a whole column leaves it; the sheet declares its extent.
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    for (c, h) in HEADER.iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for (c, cell) in good_row(1, "好一").iter().enumerate() {
        if let Cell::Text(s) = cell {
            sheet.write_string(1, c as u16, s).unwrap();
        }
    }
    sheet
        .write_blank(999_999, 0, &Format::new().set_bold())
        .unwrap();
    let file = book.save_to_buffer().unwrap();
    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", XLSX, file)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(message.contains("reaches row 1000000"), "{message}");

    // By hand, without a declared extent: a million rows of empty text cells.
    let file = raw_xlsx(|out| {
        out.write_all(SHEET_START.as_bytes()).unwrap();
        header_and_one_row(out);
        for row in 3..=1_000_002u32 {
            write!(
                out,
                r#"<row r="{row}"><c r="A{row}" t="inlineStr"><is><t></t></is></c></row>"#
            )
            .unwrap();
        }
        out.write_all(SHEET_END.as_bytes()).unwrap();
    });
    let started = Instant::now();
    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", XLSX, file)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(message.contains("reaches row 200002"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let (_, page) = planner.get("/api/v1/targets").await;
    assert_eq!(page["total"], 0);
}

#[tokio::test]
async fn files_that_are_not_workbooks_are_refused_with_what_they_are() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let refused = |status: StatusCode, report: &Value, says: &str| {
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
        let message = report["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{says}: {message}");
    };

    // A ZIP archive holding a CSV file, not a workbook.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("targets.csv", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(b"uscc,name\n").unwrap();
    let archive = zip.finish().unwrap().into_inner();
    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", XLSX, archive)
        .await;
    refused(status, &report, "not a readable XLSX workbook");

    // ZIP magic and then garbage.
    let mut garbage = b"PK\x03\x04".to_vec();
    garbage.extend(std::iter::repeat_n(0x5a, 4096));
    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", "text/csv", garbage)
        .await;
    refused(status, &report, "not a readable XLSX workbook");

    // A password-protected workbook is an OLE compound file (EncryptionInfo and
    // EncryptedPackage streams) rather than a ZIP archive: its header and empty sectors.
    let mut ole = vec![0u8; 512 * 4];
    ole[..8].copy_from_slice(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1");
    ole[24..26].copy_from_slice(&0x3Eu16.to_le_bytes());
    ole[26..28].copy_from_slice(&3u16.to_le_bytes());
    ole[28..30].copy_from_slice(&0xFFFEu16.to_le_bytes());
    ole[30..32].copy_from_slice(&9u16.to_le_bytes());
    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", XLSX, ole)
        .await;
    refused(status, &report, "password-protected");

    // Sent as XLSX but a CSV file.
    let csv = format!("uscc,name\n{},甲\n", code(1)).into_bytes();
    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", XLSX, csv)
        .await;
    refused(status, &report, "not an XLSX workbook");

    // A workbook whose first sheet has an unknown column names it.
    let file = workbook(&[Some(vec![text("统一社会信用代码"), text("电话")])]);
    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", XLSX, file)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
    assert_eq!(report["error"]["field"], "header");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown column `电话`"),
        "{report}"
    );

    // An inspector may not import at all, XLSX or not.
    let inspector = server.login("inspector").await;
    let file = workbook(&[header(), Some(good_row(1, "甲"))]);
    let (status, _) = inspector
        .post_bytes("/api/v1/targets/import", XLSX, file)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, page) = planner.get("/api/v1/targets").await;
    assert_eq!(page["total"], 0);
}

#[tokio::test]
async fn the_console_imports_an_xlsx_file_and_lists_bad_rows_by_their_excel_row() {
    let server = TestServer::start().await;
    let jar = suiji_tests::console_session(&server, "planner").await;
    let page = suiji_tests::http()
        .get(format!("{}/targets", server.base))
        .header(reqwest::header::COOKIE, &jar)
        .send()
        .await
        .unwrap();
    let csrf = suiji_tests::csrf_in(&page.text().await.unwrap(), "import");
    let mut bad = good_row(2, "坏风险");
    bad[8] = text("E");
    let file = workbook(&[header(), Some(good_row(1, "好一")), None, Some(bad)]);
    let boundary = "suiji-xlsx-boundary";
    let mut body = Vec::new();
    for (name, value) in [("csrf", csrf.as_str()), ("mode", "all_or_nothing")] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    // Browsers send an .xlsx as octet-stream at times: the name and the bytes decide.
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"名录.xlsx\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let answer = suiji_tests::http()
        .post(format!("{}/targets/import", server.base))
        .header(reqwest::header::COOKIE, &jar)
        .header(
            reqwest::header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = answer.text().await.unwrap();
    assert!(page.contains("有 1 行有误"), "{page}");
    assert!(page.contains("<th class=\"num\">行号</th>"), "{page}");
    assert!(
        page.contains("<tr><td class=\"num\">4</td><td>风险等级</td>"),
        "row 4 as Excel shows it: {page}"
    );
    assert!(
        page.contains("Excel"),
        "the report says the file kind: {page}"
    );
}

#[tokio::test]
async fn hundred_thousand_rows_of_xlsx_import_in_one_call() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    for (c, h) in HEADER.iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for i in 0..100_000u32 {
        let r = i + 1;
        for (c, cell) in good_row(i, &format!("批量企业{i}")).iter().enumerate() {
            if let Cell::Text(s) = cell {
                sheet.write_string(r, c as u16, s).unwrap();
            }
        }
        // The complaints count as a number, as Excel stores a typed 0.
        sheet.write_number(r, 11, 0.0).unwrap();
    }
    let file = book.save_to_buffer().unwrap();
    let started = Instant::now();
    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", XLSX, file.clone())
        .await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["created"], 100_000);
    let (_, page) = planner.get("/api/v1/targets?per_page=1").await;
    assert_eq!(page["total"], 100_000);
    println!(
        "XLSX import: 100,000 rows, {:.1} MiB file, {took:?} on {}",
        file.len() as f64 / 1048576.0,
        suiji_tests::machine()
    );
}

#[tokio::test]
async fn an_archive_of_thousands_of_parts_is_refused_from_its_end_record() {
    let server = TestServer::start().await;
    let planner = server.login("planner").await;
    // A real workbook with 2,000 more (empty) parts: counted before the directory is read.
    let file = workbook(&[header(), Some(good_row(1, "好一"))]);
    let mut zip = zip::ZipWriter::new_append(std::io::Cursor::new(file)).unwrap();
    for i in 0..2_000 {
        zip.start_file(
            format!("xl/media/pad{i}.bin"),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
    }
    let file = zip.finish().unwrap().into_inner();
    let (status, report) = planner
        .post_bytes("/api/v1/targets/import", XLSX, file)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(message.contains("directory lists 20"), "{message}");
    assert!(message.contains("at most 1000"), "{message}");
}
