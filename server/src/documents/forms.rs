//! The wording and order of the three documents, laid out on a [`Sheet`].

use chrono::{DateTime, FixedOffset, Utc};
use krilla::Data;
use krilla::image::Image;
use suiji_mobile_core::record::{NoteKind, PartySignature, SignatureStatus};
use suiji_mobile_core::vocab::{ResultCategory, ReviewState};

use super::layout::{Align, Column, Sheet, Weight};
use super::{Kind, Papers, Picture};

/// Body text size.
const BODY: f32 = 10.5;
/// Table text size.
const SMALL: f32 = 9.5;
/// Side of the QR code, in points.
const QR_SIDE: f32 = 62.0;

/// Lays out and renders document `kind`; `url` is the public check.
pub fn render(papers: &Papers, kind: Kind, url: &str) -> Result<Vec<u8>, String> {
    let mut sheet = Sheet::new(&format!("{} {}", kind.title(), papers.record_id));
    heading(&mut sheet, papers, kind);
    match kind {
        Kind::Notice => notice(&mut sheet, papers),
        Kind::Record => record(&mut sheet, papers),
        Kind::Rectification => rectification(&mut sheet, papers),
    }
    qr(&mut sheet, url)?;
    let digest_label = match kind {
        Kind::Notice => "通知书摘要",
        Kind::Record | Kind::Rectification => "记录内容摘要",
    };
    let id = &papers.record_id;
    let digest = papers.digest(kind);
    let check_page = url.split('?').next().unwrap_or(url);
    sheet.render(&|page, pages| {
        vec![
            format!("记录编号 {id} · {digest_label} SHA-256 {digest}"),
            format!(
                "核对本文书：扫描首页二维码，或在 {check_page} 输入记录编号和摘要 · 第 {page} 页 共 {pages} 页"
            ),
        ]
    })
}

fn heading(sheet: &mut Sheet, papers: &Papers, kind: Kind) {
    sheet.line(&papers.assignment.agency, 15.0, Weight::Bold, Align::Center);
    sheet.line(kind.title(), 20.0, Weight::Bold, Align::Center);
    let task = &papers.assignment.task;
    sheet.line(
        &format!("任务编号：{} 记录编号：{}", task.number, papers.record_id),
        SMALL,
        Weight::Regular,
        Align::Right,
    );
    sheet.gap(6.0);
}

fn qr(sheet: &mut Sheet, url: &str) -> Result<(), String> {
    let code = qrcode::QrCode::with_error_correction_level(url.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| format!("QR code: {e}"))?;
    let width = code.width() as u32;
    let dark = code
        .to_colors()
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == qrcode::Color::Dark)
        .map(|(i, _)| (i as u32 % width, i as u32 / width))
        .collect();
    sheet.qr_first_page(width, dark, QR_SIDE);
    Ok(())
}

fn target_fields(papers: &Papers) -> Vec<(&'static str, String)> {
    let t = &papers.assignment.target;
    vec![
        ("被检查对象", t.name.clone()),
        (
            "统一社会信用代码",
            t.uscc.clone().unwrap_or_else(|| "（无）".into()),
        ),
        ("住所（经营场所）", t.address.clone()),
        (
            "法定代表人（负责人）",
            t.legal_representative.clone().unwrap_or_default(),
        ),
    ]
}

fn inspector_rows(papers: &Papers) -> Vec<Vec<String>> {
    papers
        .assignment
        .inspectors
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.cert_no.clone(),
                if i.lead { "主办" } else { "协办" }.to_owned(),
            ]
        })
        .collect()
}

fn inspector_columns() -> [Column; 3] {
    [
        column("检查人员", 2.0),
        column("执法证号", 3.0),
        column("分工", 1.0),
    ]
}

fn column(header: &str, share: f32) -> Column {
    Column {
        header: header.to_owned(),
        share,
    }
}

fn subheading(sheet: &mut Sheet, text: &str) {
    sheet.gap(6.0);
    sheet.ensure(40.0);
    sheet.line(text, 11.5, Weight::Bold, Align::Left);
}

/// Numbers the sections of a document in Chinese (一、二、…), skipping none
/// when a section is left out.
struct Sections(usize);

impl Sections {
    fn next(&mut self, sheet: &mut Sheet, title: &str) {
        const NUMERALS: [&str; 10] = ["一", "二", "三", "四", "五", "六", "七", "八", "九", "十"];
        let numeral = NUMERALS.get(self.0).copied().unwrap_or("十");
        self.0 += 1;
        subheading(sheet, &format!("{numeral}、{title}"));
    }
}

fn notice(sheet: &mut Sheet, p: &Papers) {
    let a = &p.assignment;
    sheet.line(
        &format!("{}：", a.target.name),
        BODY,
        Weight::Regular,
        Align::Left,
    );
    sheet.paragraph(
        &format!(
            "根据《{}》（{}）和抽查任务“{}”的安排，经随机抽取，本机关定于{}至{}期间，\
             由下列执法人员对你单位进行{}检查。检查事项、依据及人员如下。",
            a.plan.name,
            a.plan.number,
            a.task.name,
            chinese_date(&a.window_start.to_string()),
            chinese_date(&a.window_end.to_string()),
            if a.task.directed {
                "定向抽查"
            } else {
                "随机抽查"
            },
        ),
        BODY,
        BODY * 2.0,
    );
    subheading(sheet, "一、被检查对象");
    sheet.fields(&target_fields(p), SMALL);
    subheading(sheet, "二、检查事项及依据");
    let rows: Vec<Vec<String>> = a
        .items
        .iter()
        .enumerate()
        .map(|(n, item)| {
            vec![
                (n + 1).to_string(),
                format!("{}\n（{}）", item.name, item.code.as_str()),
                item.content.clone(),
                item.legal_basis.clone(),
            ]
        })
        .collect();
    sheet.table(
        &[
            column("序号", 0.6),
            column("检查事项", 2.2),
            column("检查内容", 2.6),
            column("检查依据", 3.0),
        ],
        &rows,
        SMALL,
    );
    subheading(sheet, "三、检查人员");
    sheet.table(&inspector_columns(), &inspector_rows(p), SMALL);
    sheet.paragraph("执法人员不少于两人，检查时主动出示执法证件。", SMALL, 0.0);
    subheading(sheet, "四、你单位的权利和义务");
    for line in [
        "（一）你单位对检查中认定的事实和结果，有权进行陈述和申辩。",
        "（二）检查人员与你单位有直接利害关系或者有其他关系可能影响公正检查的，你单位有权申请其回避。",
        "（三）你单位应当配合检查，如实提供有关材料和情况，不得拒绝、阻碍；不配合检查情节严重的，\
         将依法记入检查结果并公示。",
        "（四）本次抽查结果将依照“双随机、一公开”的规定，通过国家企业信用信息公示系统向社会公示。",
    ] {
        sheet.paragraph(line, BODY, BODY * 2.0);
    }
    sheet.gap(18.0);
    sheet.line(
        &format!("{}（印章）", a.agency),
        BODY,
        Weight::Regular,
        Align::Right,
    );
    sheet.line("年    月    日", BODY, Weight::Regular, Align::Right);
    sheet.gap(12.0);
    sheet.line(
        "被检查对象签收：                      签收日期：        年    月    日",
        BODY,
        Weight::Regular,
        Align::Left,
    );
}

fn record(sheet: &mut Sheet, p: &Papers) {
    let a = &p.assignment;
    if matches!(p.state, ReviewState::Open | ReviewState::Returned) {
        sheet.line(
            "本记录尚未提交（或已退回修改），内容可能变化，仅供核对。",
            SMALL,
            Weight::Bold,
            Align::Left,
        );
    }
    let mut sections = Sections(0);
    let mut fields = target_fields(p);
    fields.extend([
        ("抽查计划", format!("{}（{}）", a.plan.name, a.plan.number)),
        ("抽查任务", format!("{}（{}）", a.task.name, a.task.number)),
        (
            "检查期间",
            format!(
                "{}至{}",
                chinese_date(&a.window_start.to_string()),
                chinese_date(&a.window_end.to_string())
            ),
        ),
        (
            "检查结束日期",
            p.inspection_ended_on
                .as_deref()
                .map(chinese_date)
                .unwrap_or_else(|| "（尚未结束）".into()),
        ),
    ]);
    sections.next(sheet, "基本情况");
    sheet.fields(&fields, SMALL);
    sheet.table(&inspector_columns(), &inspector_rows(p), SMALL);

    sections.next(sheet, "检查事项及检查情况");
    let rows: Vec<Vec<String>> = p
        .items
        .iter()
        .enumerate()
        .map(|(n, (item, answer))| {
            let checked = match answer.checked {
                Some(true) => "已检查",
                Some(false) => "未检查",
                None => "未填写",
            };
            let methods: Vec<&str> = answer.methods.iter().map(|m| m.label()).collect();
            vec![
                (n + 1).to_string(),
                format!(
                    "{}（{}）\n依据：{}",
                    item.name,
                    item.code.as_str(),
                    item.legal_basis
                ),
                checked.to_owned(),
                methods.join("、"),
                clip(answer.finding.as_deref().unwrap_or_default()),
                clip(answer.disposition.as_deref().unwrap_or_default()),
            ]
        })
        .collect();
    sheet.table(
        &[
            column("序号", 0.5),
            column("检查事项及依据", 3.4),
            column("是否检查", 0.9),
            column("检查方式", 1.2),
            column("检查情况", 2.4),
            column("现场处置", 1.6),
        ],
        &rows,
        SMALL,
    );

    sections.next(sheet, "检查结果");
    let mark = |c: &ResultCategory| {
        let box_ = if p.results.contains(c) { "■" } else { "□" };
        format!("{box_} {}", c.label())
    };
    let rows: Vec<Vec<String>> = ResultCategory::ALL
        .chunks(2)
        .map(|pair| pair.iter().map(mark).collect())
        .collect();
    let chosen: Vec<&str> = p.results.iter().map(|c| c.label()).collect();
    sheet.paragraph(
        &format!(
            "检查结果：{}",
            if chosen.is_empty() {
                "（未选择）".to_owned()
            } else {
                chosen.join("；")
            }
        ),
        BODY,
        0.0,
    );
    sheet.table(&[column("", 1.0), column("", 1.0)], &rows, SMALL);

    sections.next(sheet, "后续处置");
    let measure = p
        .follow_up
        .measure
        .map_or("（未选择）", |m| m.label())
        .to_owned();
    let mut follow = vec![("处置措施", measure)];
    if let Some(deadline) = p.follow_up.deadline {
        follow.push(("改正期限", chinese_date(&deadline.to_string())));
    }
    if let Some(detail) = &p.follow_up.detail {
        follow.push(("说明", clip(detail)));
    }
    sheet.fields(&follow, SMALL);

    sections.next(sheet, "当事人意见");
    sheet.paragraph(
        &clip(p.party_statement.as_deref().unwrap_or("（无）")),
        BODY,
        0.0,
    );

    if !p.notes.is_empty() {
        sections.next(sheet, "证据记录");
        let rows: Vec<Vec<String>> = p
            .notes
            .iter()
            .map(|n| {
                let kind = match &n.kind {
                    NoteKind::Note => "记录".to_owned(),
                    NoteKind::DocumentCopy { witness } => match witness {
                        Some(w) => format!("复印件（{w}确认与原件一致）"),
                        None => "复印件".to_owned(),
                    },
                };
                vec![
                    n.item.as_str().to_owned(),
                    kind,
                    clip(&n.text),
                    china_time(&n.created_at),
                ]
            })
            .collect();
        sheet.table(
            &[
                column("事项", 1.4),
                column("类别", 1.4),
                column("内容", 4.0),
                column("时间", 1.6),
            ],
            &rows,
            SMALL,
        );
    }

    if !p.photos.is_empty() {
        sections.next(sheet, "现场照片");
        for (photo, thumbnail) in &p.photos {
            let name_of = |id: &str| {
                a.inspectors
                    .iter()
                    .find(|i| i.inspector_id.as_str() == id)
                    .map_or(id.to_owned(), |i| i.name.clone())
            };
            let mut lines = vec![
                if photo.caption.is_empty() {
                    "（无说明）".to_owned()
                } else {
                    clip(&photo.caption)
                },
                format!("事项：{}", photo.item.as_str()),
                format!(
                    "拍摄时间：{}",
                    photo
                        .captured_at
                        .clone()
                        .unwrap_or_else(|| "（未记录）".into())
                ),
                match &photo.gps {
                    Some(g) => format!("位置：北纬 {:.6}，东经 {:.6}", g.latitude, g.longitude),
                    None => "位置：（未记录）".to_owned(),
                },
                format!("拍摄人：{}", name_of(photo.taken_by.as_str())),
                format!("SHA-256 {}", photo.sha256.as_str()),
            ];
            match image_of(thumbnail) {
                Some(image) => sheet.figure(image, 110.0, &lines, SMALL),
                None => {
                    lines.insert(0, "（照片尚未上传到服务器）".to_owned());
                    sheet.table(&[column("", 1.0)], &[vec![lines.join("\n")]], SMALL);
                }
            }
        }
    }

    sections.next(sheet, "签名");
    for (check, image) in &p.signatures {
        let inspector = a.inspector(&check.signature.inspector_id);
        let status = match &check.status {
            SignatureStatus::Valid => "电子签名有效，签名后记录未改动".to_owned(),
            SignatureStatus::Stale => "电子签名有效，但签名后记录有改动".to_owned(),
            SignatureStatus::Invalid(why) => format!("电子签名无效：{why}"),
        };
        let lines = vec![
            format!(
                "检查人员：{}（执法证号 {}）",
                inspector.map_or("", |i| i.name.as_str()),
                inspector.map_or("", |i| i.cert_no.as_str())
            ),
            format!("签名时间：{}", china_time(&check.signature.signed_at)),
            status,
        ];
        signature_block(sheet, image.as_ref(), &lines);
    }
    let signed: Vec<&str> = p
        .signatures
        .iter()
        .map(|(c, _)| c.signature.inspector_id.as_str())
        .collect();
    for i in &a.inspectors {
        if !signed.contains(&i.inspector_id.as_str()) {
            sheet.paragraph(
                &format!("检查人员：{}（执法证号 {}）　尚未签名", i.name, i.cert_no),
                BODY,
                0.0,
            );
        }
    }
    match &p.party_signature {
        Some((
            PartySignature::Signed {
                name,
                role,
                signed_at,
                ..
            },
            image,
        )) => {
            let lines = vec![
                format!("当事人：{name}（{role}）"),
                format!("签名时间：{}", china_time(signed_at)),
            ];
            signature_block(sheet, image.as_ref(), &lines);
        }
        Some((
            PartySignature::Refused {
                reason,
                recorded_at,
                recorded_by,
            },
            _,
        )) => {
            let by = a
                .inspector(recorded_by)
                .map_or(recorded_by.as_str(), |i| i.name.as_str());
            sheet.paragraph(
                &format!(
                    "当事人拒绝签字。情况：{}（{by}记录于{}）",
                    clip(reason),
                    china_time(recorded_at)
                ),
                BODY,
                0.0,
            );
        }
        None => sheet.paragraph("当事人：尚未签名", BODY, 0.0),
    }
}

fn signature_block(sheet: &mut Sheet, image: Option<&Picture>, lines: &[String]) {
    match image.and_then(image_of) {
        Some(image) => sheet.figure(image, 90.0, lines, SMALL),
        None => {
            for line in lines {
                sheet.paragraph(line, SMALL, 0.0);
            }
            sheet.gap(4.0);
        }
    }
}

fn rectification(sheet: &mut Sheet, p: &Papers) {
    let a = &p.assignment;
    let problems: Vec<_> = p
        .items
        .iter()
        .filter(|(_, answer)| {
            answer
                .finding
                .as_deref()
                .is_some_and(|f| !f.trim().is_empty())
        })
        .collect();
    sheet.line(
        &format!("{}：", a.target.name),
        BODY,
        Weight::Regular,
        Align::Left,
    );
    let ended = p
        .inspection_ended_on
        .as_deref()
        .map(chinese_date)
        .unwrap_or_else(|| "检查中".into());
    sheet.paragraph(
        &format!(
            "本机关执法人员于{ended}依照抽查任务“{}”（{}）对你单位（统一社会信用代码：{}）进行检查，\
             发现你单位存在下列问题：",
            a.task.name,
            a.task.number,
            a.target.uscc.as_deref().unwrap_or("无"),
        ),
        BODY,
        BODY * 2.0,
    );
    let rows: Vec<Vec<String>> = problems
        .iter()
        .enumerate()
        .map(|(n, (item, answer))| {
            vec![
                (n + 1).to_string(),
                item.name.clone(),
                clip(answer.finding.as_deref().unwrap_or_default()),
                item.legal_basis.clone(),
            ]
        })
        .collect();
    sheet.table(
        &[
            column("序号", 0.6),
            column("检查事项", 2.0),
            column("发现的问题", 3.0),
            column("依据", 2.6),
        ],
        &rows,
        SMALL,
    );
    let deadline = p
        .follow_up
        .deadline
        .map(|d| chinese_date(&d.to_string()))
        .unwrap_or_else(|| "（未定）".into());
    sheet.gap(6.0);
    sheet.paragraph(
        &format!(
            "依据上述规定，现责令你单位于{deadline}前改正上述问题，并将改正情况书面报告本机关。\
             逾期不改正的，本机关将依法处理。"
        ),
        BODY,
        BODY * 2.0,
    );
    if let Some(detail) = &p.follow_up.detail {
        sheet.paragraph(&format!("改正要求：{}", clip(detail)), BODY, BODY * 2.0);
    }
    sheet.paragraph(
        "你单位对本通知有异议的，可以向本机关陈述、申辩；不服本通知的，可以自收到本通知书之日起六十日内\
         依法申请行政复议，或者在六个月内依法提起行政诉讼。",
        BODY,
        BODY * 2.0,
    );
    sheet.gap(10.0);
    sheet.table(&inspector_columns(), &inspector_rows(p), SMALL);
    sheet.gap(18.0);
    sheet.line(
        &format!("{}（印章）", a.agency),
        BODY,
        Weight::Regular,
        Align::Right,
    );
    sheet.line("年    月    日", BODY, Weight::Regular, Align::Right);
    sheet.gap(12.0);
    sheet.line(
        "当事人签收：                      签收日期：        年    月    日",
        BODY,
        Weight::Regular,
        Align::Left,
    );
}

/// Most characters of one field a document prints; the phones may send far
/// more, and the electronic record keeps it all.
const MAX_FIELD_CHARS: usize = 3_000;

/// `text`, cut after [`MAX_FIELD_CHARS`] characters with a note of how many
/// were left out.
fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_FIELD_CHARS) {
        None => text.to_owned(),
        Some((at, _)) => {
            let left = text[at..].chars().count();
            format!("{}……（以下 {left} 字未印出，以电子记录为准）", &text[..at])
        }
    }
}

/// An image a PDF can carry, if the bytes are a JPEG or PNG that parses.
fn image_of(picture: &Picture) -> Option<Image> {
    let Picture::Held(bytes) = picture else {
        return None;
    };
    let data: Data = bytes.clone().into();
    match crate::blobs::content_type(bytes) {
        "image/jpeg" => Image::from_jpeg(data, true).ok(),
        "image/png" => Image::from_png(data, true).ok(),
        _ => None,
    }
}

/// `2026-03-01` as `2026年3月1日`; other text as it is.
fn chinese_date(date: &str) -> String {
    match chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d") {
        Ok(d) => d.format("%Y年%-m月%-d日").to_string(),
        Err(_) => date.to_owned(),
    }
}

/// A time in China's zone, to the minute.
fn china_time(at: &DateTime<Utc>) -> String {
    let china = FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    at.with_timezone(&china)
        .format("%Y年%-m月%-d日 %H:%M")
        .to_string()
}
