//! Benchmark (not a test) of the PDF documents: each document of the demo's published
//! records rendered 100 times over HTTP from a real server, and a large record (30 items,
//! 20 photos with 256-pixel thumbnails, 20 evidence notes) rendered 20 times in process.
//! Reports the time per document (p50, p99, max), its size and its pages. Run with
//! `cargo run --release -p suiji-tests --example bench_documents`.

use std::time::{Duration, Instant};

use suiji_mobile_core::record::{EvidenceNote, NoteKind, PhotoMeta};
use suiji_mobile_core::{BlobHash, NoteId};
use suiji_server::demo::DEMO_PASSWORD;
use suiji_server::documents::{self, Kind, Picture};
use suiji_tests::{TestServer, machine, pdf_pages};

const HTTP_RUNS: usize = 100;
const LARGE_RUNS: usize = 20;

fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(times[times.len() - 1])
    )
}

fn thumbnail(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(256, 192, |x, y| {
        image::Rgb([(x as u8).wrapping_mul(seed), (y as u8) ^ seed, 120])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

#[tokio::main]
async fn main() {
    println!("machine: {}", machine());
    let server = TestServer::start_demo().await;
    let supervisor = server.login_with("supervisor", DEMO_PASSWORD).await;
    let published: Vec<String> = server
        .state
        .db
        .read_blocking(|c| {
            let mut stmt = c.prepare("SELECT id FROM records WHERE review_state = 'published'")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()
        })
        .unwrap();
    for id in &published {
        for kind in Kind::ALL {
            let path = format!("/api/v1/records/{id}/{}.pdf", kind.stem());
            let mut times = Vec::new();
            let mut last = Vec::new();
            for _ in 0..HTTP_RUNS {
                let started = Instant::now();
                let response = supervisor
                    .raw(reqwest::Method::GET, &path)
                    .send()
                    .await
                    .unwrap();
                if response.status() != reqwest::StatusCode::OK {
                    break;
                }
                last = response.bytes().await.unwrap().to_vec();
                times.push(started.elapsed());
            }
            if times.is_empty() {
                println!(
                    "{id} {}: none (this record orders no correction)",
                    kind.title()
                );
                continue;
            }
            println!(
                "{id} {} over HTTP, {} runs: {}; {} bytes, {} pages",
                kind.title(),
                times.len(),
                summary(times),
                last.len(),
                pdf_pages(&last)
            );
        }
    }

    // A large record: the first published record's papers, grown.
    let id = published[0].clone();
    let blobs = server.state.blobs.clone();
    let mut papers = server
        .state
        .db
        .read_blocking(move |c| documents::papers_of(c, &*blobs, &id))
        .unwrap();
    let (item, answer) = papers.items[0].clone();
    papers.items = (0..30)
        .map(|n| {
            let mut item = item.clone();
            item.name = format!("{}（第{n}项）", item.name);
            let mut answer = answer.clone();
            answer.finding =
                Some("现场检查发现部分台账记录不完整，已要求补全并拍照留存。".repeat(2));
            (item, answer)
        })
        .collect();
    let inspector = papers.assignment.inspectors[0].inspector_id.clone();
    papers.photos = (0..20u8)
        .map(|n| {
            let hash = BlobHash::parse(&format!("{n:064x}")).unwrap();
            let meta = PhotoMeta {
                sha256: hash.clone(),
                size: 1_000_000,
                mime: "image/jpeg".into(),
                width: 4000,
                height: 3000,
                captured_at: Some("2026-10-20T10:00:00+08:00".into()),
                gps: None,
                item: item.code.clone(),
                caption: format!("现场照片 {n}"),
                taken_by: inspector.clone(),
                imported_at: chrono::Utc::now(),
                thumbnail_sha256: hash,
                upload_sha256: None,
            };
            (meta, Picture::Held(thumbnail(n + 1)))
        })
        .collect();
    papers.notes = (0..20)
        .map(|n| EvidenceNote {
            id: NoteId::new(format!("note-{n}")),
            item: item.code.clone(),
            text: "询问当事人并制作询问笔录一份，当事人确认属实。".into(),
            photos: Vec::new(),
            kind: NoteKind::Note,
            author: inspector.clone(),
            created_at: chrono::Utc::now(),
        })
        .collect();
    let mut times = Vec::new();
    let mut last = Vec::new();
    for _ in 0..LARGE_RUNS {
        let started = Instant::now();
        last = documents::render(&papers, Kind::Record, "https://example.gov.cn").unwrap();
        times.push(started.elapsed());
    }
    println!(
        "large 检查记录表 (30 items, 20 photos, 20 notes) in process, {LARGE_RUNS} runs: {}; {} bytes, {} pages",
        summary(times),
        last.len(),
        pdf_pages(&last)
    );
}
