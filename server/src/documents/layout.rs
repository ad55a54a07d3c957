//! A small flow layout for A4 documents: paragraphs that wrap Chinese and
//! Latin text, bordered tables whose rows grow with their text, images, and
//! page breaks. Layout is done first, into pages of drawing operations, so
//! that each page's footer can say how many pages there are; [`Sheet::render`]
//! then writes the PDF with krilla.

use std::sync::{Arc, OnceLock};

use krilla::Document;
use krilla::geom::{PathBuilder, Point, Rect, Size};
use krilla::image::Image;
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::text::{Font, GlyphId, KrillaGlyph};
use skrifa::MetadataProvider;
use skrifa::instance::{LocationRef, Size as FontSize};

/// A4 in PDF points.
pub const PAGE_WIDTH: f32 = 595.28;
/// A4 in PDF points.
pub const PAGE_HEIGHT: f32 = 841.89;
/// Left and right margin.
pub const MARGIN_X: f32 = 56.0;
/// Top margin.
pub const MARGIN_TOP: f32 = 56.0;
/// Bottom margin; the footer sits inside it.
pub const MARGIN_BOTTOM: f32 = 72.0;
/// Width of the text column.
pub const COLUMN: f32 = PAGE_WIDTH - 2.0 * MARGIN_X;

/// Space between lines, as a share of the font size.
const LEADING: f32 = 1.45;
/// Padding inside table cells.
const CELL_PAD: f32 = 4.0;

/// The document font: WenQuanYi Micro Hei (Apache-2.0), shipped in the
/// project; krilla embeds only the glyphs a document uses.
static FONT_DATA: &[u8] = include_bytes!("../../assets/fonts/wqy-microhei.ttc");

/// The font, measured and ready to draw.
pub struct Typeface {
    font: Font,
    units_per_em: f32,
    ascent: f32,
}

impl Typeface {
    /// The shipped font, loaded once.
    pub fn shipped() -> &'static Typeface {
        static FACE: OnceLock<Typeface> = OnceLock::new();
        FACE.get_or_init(|| {
            let data: Arc<dyn AsRef<[u8]> + Send + Sync> = Arc::new(FONT_DATA);
            let font = Font::new(data.into(), 0).expect("the shipped font parses");
            let skrifa =
                skrifa::FontRef::from_index(FONT_DATA, 0).expect("the shipped font parses");
            let metrics = skrifa.metrics(FontSize::unscaled(), LocationRef::default());
            Typeface {
                font,
                units_per_em: f32::from(metrics.units_per_em),
                ascent: metrics.ascent,
            }
        })
    }

    /// Glyphs of `text` with their advances in em, one per character.
    fn glyphs(&self, text: &str) -> Vec<KrillaGlyph> {
        let face = skrifa::FontRef::from_index(FONT_DATA, 0).expect("the shipped font parses");
        let charmap = face.charmap();
        let metrics = face.glyph_metrics(FontSize::unscaled(), LocationRef::default());
        text.char_indices()
            .map(|(at, c)| {
                let id = charmap.map(c).unwrap_or_default();
                let advance = metrics.advance_width(id).unwrap_or(0.0) / self.units_per_em;
                KrillaGlyph::new(
                    GlyphId::new(id.to_u32()),
                    advance,
                    0.0,
                    0.0,
                    0.0,
                    at..at + c.len_utf8(),
                    None,
                )
            })
            .collect()
    }

    /// Width of `text` at `size` points.
    pub fn width(&self, text: &str, size: f32) -> f32 {
        self.glyphs(text).iter().map(|g| g.x_advance).sum::<f32>() * size
    }

    /// `text` broken into lines no wider than `width` at `size`: Chinese
    /// breaks between any two characters, Latin words and numbers stay whole
    /// where they fit, and closing punctuation never starts a line.
    pub fn wrap(&self, text: &str, size: f32, width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for paragraph in text.split('\n') {
            let mut line = String::new();
            let mut line_width = 0.0;
            for token in tokens(paragraph) {
                let w = self.width(token, size);
                if line_width + w > width && !line.is_empty() && !is_closing(token) {
                    if token.chars().all(|c| c.is_ascii_alphanumeric()) && w > width {
                        // A run wider than the column is broken by characters.
                        for c in token.chars() {
                            let cw = self.width(c.encode_utf8(&mut [0; 4]), size);
                            if line_width + cw > width && !line.is_empty() {
                                lines.push(std::mem::take(&mut line));
                                line_width = 0.0;
                            }
                            line.push(c);
                            line_width += cw;
                        }
                        continue;
                    }
                    lines.push(std::mem::take(&mut line).trim_end().to_owned());
                    line_width = 0.0;
                    if token == " " {
                        continue;
                    }
                }
                line.push_str(token);
                line_width += w;
            }
            lines.push(line);
        }
        lines
    }
}

/// Splits text into what may not be broken: runs of ASCII letters and digits,
/// and single other characters.
fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    for (at, c) in text.char_indices() {
        let word = c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | ':');
        match (word, start) {
            (true, None) => start = Some(at),
            (true, Some(_)) => {}
            (false, s) => {
                if let Some(s) = s {
                    out.push(&text[s..at]);
                    start = None;
                }
                out.push(&text[at..at + c.len_utf8()]);
            }
        }
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

fn is_closing(token: &str) -> bool {
    token.chars().count() == 1 && "，。、；：？！）》」』”’,.;:?!)".contains(token)
}

/// Text weight: the font has one weight, so bold is drawn with an outline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// Body text.
    Regular,
    /// Headings and labels.
    Bold,
}

/// Horizontal placement of a line of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Flush left.
    Left,
    /// Centred.
    Center,
    /// Flush right.
    Right,
}

enum Op {
    Text {
        at: Point,
        size: f32,
        text: String,
        weight: Weight,
    },
    Line {
        from: Point,
        to: Point,
        width: f32,
    },
    Image {
        at: Point,
        size: Size,
        image: Image,
    },
    Squares {
        at: Point,
        module: f32,
        dark: Vec<(u32, u32)>,
    },
}

/// One column of a [`Table`].
#[derive(Debug, Clone)]
pub struct Column {
    /// Header text.
    pub header: String,
    /// Share of the table's width.
    pub share: f32,
}

fn height_of(cells: &[Vec<String>], line: f32) -> f32 {
    cells.iter().map(Vec::len).max().unwrap_or(1).max(1) as f32 * line + 2.0 * CELL_PAD
}

/// What a page footer says, given the page number and the page count.
pub type Footer<'a> = dyn Fn(usize, usize) -> Vec<String> + 'a;

/// A document being laid out.
pub struct Sheet {
    face: &'static Typeface,
    pages: Vec<Vec<Op>>,
    /// Set once the content ran past [`MAX_PAGES`]: what follows is laid out
    /// into `spill` and dropped.
    overflow: bool,
    spill: Vec<Op>,
    y: f32,
    title: String,
}

/// Most pages a document has; a record that would need more (its phones can
/// send a great deal of text) is printed up to here, and the last page says so.
pub const MAX_PAGES: usize = 200;

impl Sheet {
    /// An empty document with its PDF title.
    pub fn new(title: &str) -> Sheet {
        Sheet {
            face: Typeface::shipped(),
            pages: vec![Vec::new()],
            overflow: false,
            spill: Vec::new(),
            y: MARGIN_TOP,
            title: title.to_owned(),
        }
    }

    fn ops(&mut self) -> &mut Vec<Op> {
        if self.overflow {
            return &mut self.spill;
        }
        self.pages.last_mut().expect("a sheet has a page")
    }

    fn new_page(&mut self) {
        if self.pages.len() >= MAX_PAGES {
            self.overflow = true;
            self.spill.clear();
        } else {
            self.pages.push(Vec::new());
        }
        self.y = MARGIN_TOP;
    }

    /// Starts a new page unless `height` still fits on this one.
    pub fn ensure(&mut self, height: f32) {
        if self.y + height > PAGE_HEIGHT - MARGIN_BOTTOM && self.y > MARGIN_TOP {
            self.new_page();
        }
    }

    /// Vertical space.
    pub fn gap(&mut self, height: f32) {
        self.y += height;
    }

    fn text_at(&mut self, x: f32, top: f32, size: f32, text: &str, weight: Weight) {
        let baseline = top + self.face.ascent / self.face.units_per_em * size;
        self.ops().push(Op::Text {
            at: Point::from_xy(x, baseline),
            size,
            text: text.to_owned(),
            weight,
        });
    }

    /// One line, placed within the column.
    pub fn line(&mut self, text: &str, size: f32, weight: Weight, align: Align) {
        self.ensure(size * LEADING);
        let w = self.face.width(text, size);
        let x = match align {
            Align::Left => MARGIN_X,
            Align::Center => MARGIN_X + (COLUMN - w) / 2.0,
            Align::Right => MARGIN_X + COLUMN - w,
        };
        let top = self.y;
        self.text_at(x, top, size, text, weight);
        self.y += size * LEADING;
    }

    /// A wrapped paragraph; `indent` shifts its first line (two characters is
    /// the Chinese custom).
    pub fn paragraph(&mut self, text: &str, size: f32, indent: f32) {
        let lines = self.wrap_indented(text, size, indent);
        for (i, line) in lines.iter().enumerate() {
            self.ensure(size * LEADING);
            let x = MARGIN_X + if i == 0 { indent } else { 0.0 };
            let top = self.y;
            self.text_at(x, top, size, line, Weight::Regular);
            self.y += size * LEADING;
        }
    }

    fn wrap_indented(&self, text: &str, size: f32, indent: f32) -> Vec<String> {
        if indent == 0.0 {
            return self.face.wrap(text, size, COLUMN);
        }
        // Wrap the first line narrower, then the rest at full width.
        let first = self.face.wrap(text, size, COLUMN - indent);
        let Some(head) = first.first() else {
            return first;
        };
        let rest = text[head.len()..].trim_start();
        let mut lines = vec![head.clone()];
        if !rest.is_empty() {
            lines.extend(self.face.wrap(rest, size, COLUMN));
        }
        lines
    }

    /// A bordered table; rows grow with their wrapped text and the header
    /// repeats on each page. A row that fits on a page is never split; a
    /// longer one continues on the next page, line by line.
    pub fn table(&mut self, columns: &[Column], rows: &[Vec<String>], size: f32) {
        let total: f32 = columns.iter().map(|c| c.share).sum();
        let widths: Vec<f32> = columns.iter().map(|c| c.share / total * COLUMN).collect();
        let header = self.wrap_cells(
            &widths,
            &columns.iter().map(|c| c.header.clone()).collect::<Vec<_>>(),
            size,
        );
        let has_header = columns.iter().any(|c| !c.header.is_empty());
        let line = size * LEADING;
        if has_header {
            self.ensure(height_of(&header, line) + 2.0 * line);
            self.row(&widths, &header, None, size, Weight::Bold);
        }
        for row in rows {
            let cells = self.wrap_cells(&widths, row, size);
            let lines = cells.iter().map(Vec::len).max().unwrap_or(1);
            let page = self.pages.len();
            self.ensure(height_of(&cells, line));
            let mut from = 0;
            loop {
                if self.pages.len() != page && has_header && from == 0 {
                    self.row(&widths, &header, None, size, Weight::Bold);
                }
                let room = ((PAGE_HEIGHT - MARGIN_BOTTOM - self.y - 2.0 * CELL_PAD) / line)
                    .floor()
                    .max(1.0) as usize;
                let to = (from + room).min(lines);
                self.row(&widths, &cells, Some(from..to), size, Weight::Regular);
                if to == lines {
                    break;
                }
                from = to;
                self.new_page();
                if has_header {
                    self.row(&widths, &header, None, size, Weight::Bold);
                }
            }
        }
    }

    /// Label and value pairs as a two-column table.
    pub fn fields(&mut self, pairs: &[(&str, String)], size: f32) {
        let columns = [
            Column {
                header: String::new(),
                share: 1.0,
            },
            Column {
                header: String::new(),
                share: 3.0,
            },
        ];
        let rows: Vec<Vec<String>> = pairs
            .iter()
            .map(|(label, value)| vec![(*label).to_owned(), value.clone()])
            .collect();
        self.table(&columns, &rows, size);
    }

    fn wrap_cells(&self, widths: &[f32], cells: &[String], size: f32) -> Vec<Vec<String>> {
        widths
            .iter()
            .zip(cells)
            .map(|(w, cell)| self.face.wrap(cell, size, w - 2.0 * CELL_PAD))
            .collect()
    }

    /// Draws lines `range` (all with `None`) of each wrapped cell as one
    /// bordered row.
    fn row(
        &mut self,
        widths: &[f32],
        cells: &[Vec<String>],
        range: Option<std::ops::Range<usize>>,
        size: f32,
        weight: Weight,
    ) {
        let count = match &range {
            Some(r) => r.len(),
            None => cells.iter().map(Vec::len).max().unwrap_or(1),
        };
        let height = count.max(1) as f32 * size * LEADING + 2.0 * CELL_PAD;
        let top = self.y;
        let mut x = MARGIN_X;
        for (w, cell) in widths.iter().zip(cells) {
            let shown = match &range {
                Some(r) => cell
                    .get(r.start.min(cell.len())..r.end.min(cell.len()))
                    .unwrap_or(&[]),
                None => cell.as_slice(),
            };
            for (i, line) in shown.iter().enumerate() {
                let line_top = top + CELL_PAD + i as f32 * size * LEADING + size * 0.2;
                self.text_at(x + CELL_PAD, line_top, size, line, weight);
            }
            x += w;
        }
        let bottom = top + height;
        let mut edge = MARGIN_X;
        let mut lines = vec![
            (
                Point::from_xy(MARGIN_X, top),
                Point::from_xy(MARGIN_X + COLUMN, top),
            ),
            (
                Point::from_xy(MARGIN_X, bottom),
                Point::from_xy(MARGIN_X + COLUMN, bottom),
            ),
            (Point::from_xy(edge, top), Point::from_xy(edge, bottom)),
        ];
        for w in widths {
            edge += w;
            lines.push((Point::from_xy(edge, top), Point::from_xy(edge, bottom)));
        }
        for (from, to) in lines {
            self.ops().push(Op::Line {
                from,
                to,
                width: 0.6,
            });
        }
        self.y = bottom;
    }

    /// An image scaled to `width`, with lines of text beside it.
    pub fn figure(&mut self, image: Image, width: f32, text: &[String], size: f32) {
        let (w, h) = image.size();
        // A very tall image (a hostile signature, say) is scaled down to a third of a page.
        let max_height = (PAGE_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM) / 3.0;
        let mut drawn = (width, width * h as f32 / w.max(1) as f32);
        if drawn.1 > max_height {
            drawn = (drawn.0 * max_height / drawn.1, max_height);
        }
        let lines: Vec<String> = text
            .iter()
            .flat_map(|line| self.face.wrap(line, size, COLUMN - width - 10.0))
            .collect();
        let text_height = lines.len() as f32 * size * LEADING;
        let height = drawn.1.max(text_height);
        self.ensure(height + 6.0);
        let top = self.y;
        if let Some(image_size) = Size::from_wh(drawn.0, drawn.1) {
            self.ops().push(Op::Image {
                at: Point::from_xy(MARGIN_X, top),
                size: image_size,
                image,
            });
        }
        let x = MARGIN_X + width + 10.0;
        for (i, line) in lines.iter().enumerate() {
            self.text_at(
                x,
                top + i as f32 * size * LEADING,
                size,
                line,
                Weight::Regular,
            );
        }
        self.y = top + height + 6.0;
    }

    /// A QR code of `matrix` (dark modules by column and row, `width`
    /// modules a side) in the top right corner of the first page.
    pub fn qr_first_page(&mut self, width: u32, dark: Vec<(u32, u32)>, side: f32) {
        let module = side / width as f32;
        let at = Point::from_xy(PAGE_WIDTH - MARGIN_X - side, MARGIN_TOP - 36.0);
        self.pages[0].push(Op::Squares { at, module, dark });
    }

    /// The PDF, each page with the lines `footer` gives for it.
    pub fn render(self, footer: &Footer<'_>) -> Result<Vec<u8>, String> {
        let face = self.face;
        let mut document = Document::new();
        document.set_metadata(
            Metadata::new()
                .title(self.title.clone())
                .language("zh-CN".to_owned())
                .creator("suiji".to_owned()),
        );
        let count = self.pages.len();
        for (index, ops) in self.pages.into_iter().enumerate() {
            let settings = PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT).ok_or("page size")?;
            let mut page = document.start_page_with(settings);
            let mut surface = page.surface();
            let mut footer_ops = Vec::new();
            let mut lines = footer(index + 1, count);
            if self.overflow && index + 1 == count {
                lines.push(format!(
                    "本文书超过 {MAX_PAGES} 页，其后内容未印出，以电子记录为准。"
                ));
            }
            for (i, line) in lines.iter().enumerate() {
                let size = 7.5;
                let w = face.width(line, size);
                let top = PAGE_HEIGHT - MARGIN_BOTTOM + 24.0 + i as f32 * size * LEADING;
                footer_ops.push(Op::Text {
                    at: Point::from_xy(
                        (PAGE_WIDTH - w) / 2.0,
                        top + face.ascent / face.units_per_em * size,
                    ),
                    size,
                    text: line.clone(),
                    weight: Weight::Regular,
                });
            }
            for op in ops.into_iter().chain(footer_ops) {
                match op {
                    Op::Text {
                        at,
                        size,
                        text,
                        weight,
                    } => {
                        let glyphs = face.glyphs(&text);
                        surface.set_fill(Some(Fill::default()));
                        surface.set_stroke(match weight {
                            Weight::Regular => None,
                            Weight::Bold => Some(Stroke {
                                width: size * 0.035,
                                ..Stroke::default()
                            }),
                        });
                        surface.draw_glyphs(at, &glyphs, face.font.clone(), &text, size, false);
                        surface.set_stroke(None);
                    }
                    Op::Line { from, to, width } => {
                        let mut path = PathBuilder::new();
                        path.move_to(from.x, from.y);
                        path.line_to(to.x, to.y);
                        if let Some(path) = path.finish() {
                            surface.set_fill(None);
                            surface.set_stroke(Some(Stroke {
                                width,
                                ..Stroke::default()
                            }));
                            surface.draw_path(&path);
                            surface.set_stroke(None);
                        }
                    }
                    Op::Image { at, size, image } => {
                        surface
                            .push_transform(&krilla::geom::Transform::from_translate(at.x, at.y));
                        surface.draw_image(image, size);
                        surface.pop();
                    }
                    Op::Squares { at, module, dark } => {
                        let mut path = PathBuilder::new();
                        for (x, y) in dark {
                            if let Some(rect) = Rect::from_xywh(
                                at.x + x as f32 * module,
                                at.y + y as f32 * module,
                                module,
                                module,
                            ) {
                                path.push_rect(rect);
                            }
                        }
                        if let Some(path) = path.finish() {
                            surface.set_stroke(None);
                            surface.set_fill(Some(Fill::default()));
                            surface.draw_path(&path);
                        }
                    }
                }
            }
            surface.finish();
            page.finish();
        }
        document.finish().map_err(|e| format!("{e:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_wraps_anywhere_but_before_closing_punctuation_and_latin_words_stay_whole() {
        let face = Typeface::shipped();
        let width = face.width("检查检查检查", 10.0);
        let lines = face.wrap("检查检查检查。检查", 10.0, width);
        assert_eq!(
            lines[0], "检查检查检查。",
            "a full stop never starts a line"
        );
        let lines = face.wrap(
            "统一社会信用代码 91330100MA27XXXXXX 有效",
            10.0,
            width * 2.5,
        );
        assert!(
            lines.iter().any(|l| l.contains("91330100MA27XXXXXX")),
            "the code stays on one line: {lines:?}"
        );
        for line in face.wrap(&"很长的一段话".repeat(50), 10.0, width) {
            assert!(face.width(&line, 10.0) <= width + 10.0, "{line}");
        }
    }

    #[test]
    fn a_tall_image_is_scaled_to_a_third_of_a_page_and_a_long_table_row_continues() {
        let mut sheet = Sheet::new("test");
        let tall = Image::from_rgba8(vec![0; 4 * 10 * 10_000], 10, 10_000);
        sheet.figure(tall, 90.0, &["签名".to_owned()], 9.0);
        let third = (PAGE_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM) / 3.0;
        assert!(sheet.y <= MARGIN_TOP + third + 7.0, "y {}", sheet.y);
        assert_eq!(sheet.pages.len(), 1);
        let long = "记录".repeat(5_000);
        sheet.table(
            &[Column {
                header: "内容".into(),
                share: 1.0,
            }],
            &[vec![long]],
            9.0,
        );
        assert!(
            sheet.pages.len() > 3,
            "the row went on over {} pages",
            sheet.pages.len()
        );
        assert!(
            sheet.y <= PAGE_HEIGHT - MARGIN_BOTTOM,
            "nothing below the bottom margin"
        );
        let pdf = sheet.render(&|p, n| vec![format!("{p}/{n}")]).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
    }
}
