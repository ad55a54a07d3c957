//! Photo import: check and decode the bytes, hash them, read EXIF capture time and GPS, and
//! make a thumbnail and (over the pixel budget) a downscaled copy for upload.

use crate::error::{Error, Result};
use crate::ids::BlobHash;
use crate::record::Gps;
use image::codecs::jpeg::JpegEncoder;
use image::metadata::Orientation;
use image::{
    DynamicImage, ExtendedColorType, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage,
};
use std::io::Cursor;

/// Limits and sizes for photo import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhotoLimits {
    /// Largest original accepted, in bytes.
    pub max_bytes: usize,
    /// Largest width or height accepted, in pixels (guards against decompression bombs).
    pub max_edge: u32,
    /// Originals with more pixels than this get a copy for upload, shrunk by the smallest
    /// whole factor that fits the budget (a 12-megapixel photo becomes 3 megapixels).
    pub pixel_budget: u64,
    /// Longest edge of thumbnails, in pixels.
    pub thumbnail_edge: u32,
    /// JPEG quality of thumbnails and upload copies (1-100).
    pub jpeg_quality: u8,
}

impl Default for PhotoLimits {
    fn default() -> Self {
        PhotoLimits {
            max_bytes: 40 * 1024 * 1024,
            max_edge: 16_384,
            pixel_budget: 4_000_000,
            thumbnail_edge: 256,
            jpeg_quality: 85,
        }
    }
}

/// A photo ready to store: metadata plus the derived JPEGs.
#[derive(Debug, Clone)]
pub struct ProcessedPhoto {
    /// SHA-256 of the original bytes.
    pub sha256: BlobHash,
    /// Size of the original.
    pub size: u64,
    /// MIME type of the original.
    pub mime: &'static str,
    /// Width as stored.
    pub width: u32,
    /// Height as stored.
    pub height: u32,
    /// EXIF capture time (`YYYY-MM-DDTHH:MM:SS`, camera local time, with offset when given).
    pub captured_at: Option<String>,
    /// EXIF GPS position.
    pub gps: Option<Gps>,
    /// JPEG thumbnail, upright.
    pub thumbnail: Vec<u8>,
    /// Downscaled upright JPEG for upload, when the original is over the pixel budget.
    pub upload: Option<Vec<u8>>,
}

/// Checks, decodes and prepares a photo. Pure: touches no store.
pub fn process_photo(bytes: &[u8], limits: &PhotoLimits) -> Result<ProcessedPhoto> {
    if bytes.len() > limits.max_bytes {
        return Err(Error::PhotoTooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let format = image::guess_format(bytes)
        .map_err(|_| Error::UnsupportedImage("the bytes are not a recognisable image".into()))?;
    if !matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP
    ) {
        return Err(Error::UnsupportedImage(format!(
            "{} is not accepted; use JPEG, PNG or WebP",
            format.to_mime_type()
        )));
    }
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        // The JPEG decoder pads a truncated scan with grey rather than failing; an evidence
        // photo cut short in transfer must be refused, not stored half grey.
        return Err(Error::BadImage(image::ImageError::Decoding(
            image::error::DecodingError::new(
                ImageFormat::Jpeg.into(),
                "truncated: no end-of-image marker after the last scan",
            ),
        )));
    }
    // Hash and EXIF on one core while the other decodes: decoding dominates the import.
    let (hashed, decoded) = std::thread::scope(|scope| {
        let side = scope.spawn(|| (BlobHash::of(bytes), read_exif(bytes)));
        let decoded = decode(bytes, format, limits);
        (side.join(), decoded)
    });
    let (sha256, (captured_at, gps)) = hashed.expect("hashing does not panic");
    let (image, orientation) = decoded?;
    let (width, height) = (image.width(), image.height());

    let upload_image = downscale_to_budget(&image, limits.pixel_budget);
    let source = upload_image.as_ref().unwrap_or(&image);
    // The thumbnail (from the smaller image when there is one) and the upload copy's encoding
    // run side by side.
    let (thumbnail, upload) = std::thread::scope(|scope| {
        let thumb = scope.spawn(|| {
            let edge = limits.thumbnail_edge;
            // Never larger than the photo: a small photo is its own thumbnail's size.
            let mut thumb = if source.width() <= edge && source.height() <= edge {
                source.clone()
            } else {
                source.thumbnail(edge, edge)
            };
            thumb.apply_orientation(orientation);
            encode_jpeg(&thumb, limits.jpeg_quality)
        });
        let upload = upload_image.as_ref().map(|small| {
            if matches!(orientation, Orientation::NoTransforms) {
                encode_jpeg(small, limits.jpeg_quality)
            } else {
                let mut upright = small.clone();
                upright.apply_orientation(orientation);
                encode_jpeg(&upright, limits.jpeg_quality)
            }
        });
        (thumb.join().expect("thumbnailing does not panic"), upload)
    });

    Ok(ProcessedPhoto {
        sha256,
        size: bytes.len() as u64,
        mime: format.to_mime_type(),
        width,
        height,
        captured_at,
        gps,
        thumbnail: thumbnail?,
        upload: upload.transpose()?,
    })
}

fn decode(
    bytes: &[u8],
    format: ImageFormat,
    limits: &PhotoLimits,
) -> Result<(DynamicImage, Orientation)> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decode_limits = Limits::default();
    decode_limits.max_image_width = Some(limits.max_edge);
    decode_limits.max_image_height = Some(limits.max_edge);
    reader.limits(decode_limits);
    let mut decoder = reader.into_decoder().map_err(Error::BadImage)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let image = DynamicImage::from_decoder(decoder).map_err(Error::BadImage)?;
    Ok((image, orientation))
}

/// The image shrunk by the smallest whole factor that brings it within `budget` pixels, or
/// `None` if it already is. A whole-factor box filter is exact area averaging and several
/// times faster than a general resampler on a 12-megapixel photo.
fn downscale_to_budget(image: &DynamicImage, budget: u64) -> Option<DynamicImage> {
    let (w, h) = (u64::from(image.width()), u64::from(image.height()));
    if w * h <= budget {
        return None;
    }
    let mut k = ((w * h) as f64 / budget.max(1) as f64)
        .sqrt()
        .ceil()
        .max(2.0) as u64;
    while k > 1 && (w / (k - 1)) * (h / (k - 1)) <= budget {
        k -= 1;
    }
    while (w / k).max(1) * (h / k).max(1) > budget && k < w.max(h) {
        k += 1;
    }
    let rgb;
    let src = match image {
        DynamicImage::ImageRgb8(buf) => buf,
        other => {
            rgb = other.to_rgb8();
            &rgb
        }
    };
    Some(DynamicImage::ImageRgb8(box_downscale(src, k as u32)))
}

fn box_downscale(src: &RgbImage, k: u32) -> RgbImage {
    let (w, h) = ((src.width() / k).max(1), (src.height() / k).max(1));
    let (k, w_us, src_w) = (k as usize, w as usize, src.width() as usize);
    let raw = src.as_raw();
    let area = (k * k) as u32;
    let mut out = vec![0u8; w_us * h as usize * 3];
    let mut acc = vec![0u32; w_us * 3];
    for (y, out_row) in out.chunks_exact_mut(w_us * 3).enumerate() {
        acc.iter_mut().for_each(|a| *a = 0);
        for dy in 0..k {
            let sy = (y * k + dy).min(src.height() as usize - 1);
            let row = &raw[sy * src_w * 3..(sy + 1) * src_w * 3];
            for (x, a) in acc.chunks_exact_mut(3).enumerate() {
                for p in row[x * k * 3..].chunks_exact(3).take(k) {
                    a[0] += u32::from(p[0]);
                    a[1] += u32::from(p[1]);
                    a[2] += u32::from(p[2]);
                }
            }
        }
        for (o, a) in out_row.iter_mut().zip(&acc) {
            *o = ((a + area / 2) / area) as u8;
        }
    }
    RgbImage::from_raw(w, h, out).expect("buffer sized for the image")
}

/// Whether an end-of-image marker follows the last start-of-scan. Entropy-coded data stuffs
/// every 0xFF with 0x00, so neither marker can appear inside scan data.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xff, marker]);
    match (last(0xda), last(0xd9)) {
        (Some(sos), Some(eoi)) => eoi > sos,
        _ => false,
    }
}

fn encode_jpeg(image: &DynamicImage, quality: u8) -> Result<Vec<u8>> {
    let rgb;
    let buf = match image {
        DynamicImage::ImageRgb8(buf) => buf,
        other => {
            rgb = other.to_rgb8();
            &rgb
        }
    };
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode(
            buf.as_raw(),
            buf.width(),
            buf.height(),
            ExtendedColorType::Rgb8,
        )
        .map_err(Error::BadImage)?;
    Ok(out)
}

/// Capture time and GPS from EXIF; absent or unreadable EXIF is normal and gives `None`s.
fn read_exif(bytes: &[u8]) -> (Option<String>, Option<Gps>) {
    use exif::{In, Tag, Value};
    let Ok(exif) = exif::Reader::new().read_from_container(&mut Cursor::new(bytes)) else {
        return (None, None);
    };
    let ascii = |tag| match exif.get_field(tag, In::PRIMARY).map(|f| &f.value) {
        Some(Value::Ascii(parts)) => parts.first().cloned(),
        _ => None,
    };
    let captured_at = ascii(Tag::DateTimeOriginal)
        .or_else(|| ascii(Tag::DateTime))
        .and_then(|raw| {
            let mut dt = exif::DateTime::from_ascii(&raw).ok()?;
            if let Some(offset) = ascii(Tag::OffsetTimeOriginal) {
                dt.parse_offset(&offset).ok();
            }
            let mut text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second
            );
            if let Some(minutes) = dt.offset {
                let sign = if minutes < 0 { '-' } else { '+' };
                let m = minutes.unsigned_abs();
                text.push_str(&format!("{sign}{:02}:{:02}", m / 60, m % 60));
            }
            Some(text)
        });
    let coordinate = |value_tag, ref_tag, negative: u8| -> Option<f64> {
        let Value::Rational(parts) = &exif.get_field(value_tag, In::PRIMARY)?.value else {
            return None;
        };
        if parts.len() < 3 || parts.iter().any(|r| r.denom == 0) {
            return None;
        }
        let degrees = parts[0].to_f64() + parts[1].to_f64() / 60.0 + parts[2].to_f64() / 3600.0;
        let reference = ascii(ref_tag)?;
        Some(if reference.first() == Some(&negative) {
            -degrees
        } else {
            degrees
        })
    };
    let gps = match (
        coordinate(Tag::GPSLatitude, Tag::GPSLatitudeRef, b'S'),
        coordinate(Tag::GPSLongitude, Tag::GPSLongitudeRef, b'W'),
    ) {
        (Some(latitude), Some(longitude))
            if (-90.0..=90.0).contains(&latitude) && (-180.0..=180.0).contains(&longitude) =>
        {
            Some(Gps {
                latitude,
                longitude,
            })
        }
        _ => None,
    };
    (captured_at, gps)
}

/// Test and benchmark helpers: real image bytes made with the `image` crate, and an EXIF
/// segment injected into a JPEG.
pub mod fixtures {
    use image::codecs::jpeg::JpegEncoder;
    use image::{ImageFormat, RgbImage};
    use std::io::Cursor;

    /// A JPEG of the given size with a gradient and some noise (so it compresses like a photo).
    pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let mut seed: u32 = 0x2545_f491;
        let img = RgbImage::from_fn(width, height, |x, y| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let n = (seed & 0x07) as u8;
            image::Rgb([
                ((x * 255 / width.max(1)) as u8).wrapping_add(n),
                ((y * 255 / height.max(1)) as u8).wrapping_add(n),
                (((x + y) * 127 / (width + height).max(1)) as u8).wrapping_add(n),
            ])
        });
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .expect("encoding an in-memory JPEG");
        out
    }

    /// A PNG of the given size.
    pub fn png(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png)
            .expect("encoding an in-memory PNG");
        out.into_inner()
    }

    /// A lossless WebP of the given size.
    pub fn webp(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| image::Rgb([y as u8, x as u8, 99]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::WebP)
            .expect("encoding an in-memory WebP");
        out.into_inner()
    }

    /// Inserts an APP1 EXIF segment right after the JPEG's SOI marker, carrying
    /// DateTimeOriginal and a GPS position (degrees, north/east positive).
    pub fn with_exif(jpeg: &[u8], date_time: &str, latitude: f64, longitude: f64) -> Vec<u8> {
        use exif::experimental::Writer;
        use exif::{Field, In, Rational, Tag, Value};
        fn dms(v: f64) -> Value {
            let v = v.abs();
            let d = v.floor();
            let m = ((v - d) * 60.0).floor();
            let s = ((v - d) * 60.0 - m) * 60.0;
            Value::Rational(vec![
                Rational::from((d as u32, 1)),
                Rational::from((m as u32, 1)),
                Rational::from(((s * 1000.0).round() as u32, 1000)),
            ])
        }
        let field = |tag, value| Field {
            tag,
            ifd_num: In::PRIMARY,
            value,
        };
        let fields = [
            field(
                Tag::DateTimeOriginal,
                Value::Ascii(vec![date_time.as_bytes().to_vec()]),
            ),
            field(
                Tag::GPSLatitudeRef,
                Value::Ascii(vec![if latitude < 0.0 {
                    b"S".to_vec()
                } else {
                    b"N".to_vec()
                }]),
            ),
            field(Tag::GPSLatitude, dms(latitude)),
            field(
                Tag::GPSLongitudeRef,
                Value::Ascii(vec![if longitude < 0.0 {
                    b"W".to_vec()
                } else {
                    b"E".to_vec()
                }]),
            ),
            field(Tag::GPSLongitude, dms(longitude)),
        ];
        let mut writer = Writer::new();
        for f in &fields {
            writer.push_field(f);
        }
        let mut tiff = Cursor::new(Vec::new());
        writer
            .write(&mut tiff, false)
            .expect("writing an in-memory EXIF block");
        let tiff = tiff.into_inner();
        let mut segment = b"Exif\0\0".to_vec();
        segment.extend_from_slice(&tiff);
        let len = u16::try_from(segment.len() + 2).expect("EXIF segment under 64 KiB");
        let mut out = Vec::with_capacity(jpeg.len() + segment.len() + 4);
        out.extend_from_slice(&jpeg[..2]);
        out.extend_from_slice(&[0xff, 0xe1]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&segment);
        out.extend_from_slice(&jpeg[2..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn jpeg_with_exif_yields_hash_capture_time_gps_and_thumbnail() {
        let bytes = with_exif(&jpeg(640, 480), "2025:05:02 10:31:07", 31.2304, -121.4737);
        let photo = process_photo(&bytes, &PhotoLimits::default()).unwrap();
        assert_eq!(photo.sha256, BlobHash::of(&bytes));
        assert_eq!(photo.size, bytes.len() as u64);
        assert_eq!(photo.mime, "image/jpeg");
        assert_eq!((photo.width, photo.height), (640, 480));
        assert_eq!(photo.captured_at.as_deref(), Some("2025-05-02T10:31:07"));
        let gps = photo.gps.unwrap();
        assert!((gps.latitude - 31.2304).abs() < 1e-4, "{gps:?}");
        assert!((gps.longitude + 121.4737).abs() < 1e-4, "{gps:?}");
        let thumb = image::load_from_memory(&photo.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (256, 192));
        assert!(photo.upload.is_none(), "640x480 is under the pixel budget");
    }

    #[test]
    fn a_photo_smaller_than_a_thumbnail_is_not_enlarged() {
        let photo = process_photo(&jpeg(64, 48), &PhotoLimits::default()).unwrap();
        let thumb = image::load_from_memory(&photo.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (64, 48));
        let tall = process_photo(&jpeg(100, 300), &PhotoLimits::default()).unwrap();
        let thumb = image::load_from_memory(&tall.thumbnail).unwrap();
        assert_eq!(
            thumb.height(),
            256,
            "only the edge over the limit is brought down"
        );
    }

    #[test]
    fn box_downscale_averages_whole_blocks() {
        let src = RgbImage::from_fn(4, 2, |x, _| image::Rgb([(x * 10) as u8, 100, 255]));
        let out = box_downscale(&src, 2);
        assert_eq!((out.width(), out.height()), (2, 1));
        assert_eq!(out.get_pixel(0, 0).0, [5, 100, 255]);
        assert_eq!(out.get_pixel(1, 0).0, [25, 100, 255]);
        let twelve = DynamicImage::ImageRgb8(RgbImage::new(4000, 3000));
        let small = downscale_to_budget(&twelve, 4_000_000).unwrap();
        assert_eq!((small.width(), small.height()), (2000, 1500));
        assert!(downscale_to_budget(&twelve, 12_000_000).is_none());
    }

    #[test]
    fn photo_over_the_pixel_budget_gets_a_downscaled_upload_copy() {
        let bytes = jpeg(1600, 1200);
        let limits = PhotoLimits {
            pixel_budget: 480_000,
            ..PhotoLimits::default()
        };
        let photo = process_photo(&bytes, &limits).unwrap();
        assert_eq!(photo.captured_at, None);
        assert_eq!(photo.gps, None);
        let upload = image::load_from_memory(&photo.upload.unwrap()).unwrap();
        assert_eq!((upload.width(), upload.height()), (800, 600));
    }

    #[test]
    fn png_and_webp_are_accepted() {
        for (bytes, mime) in [(png(300, 200), "image/png"), (webp(300, 200), "image/webp")] {
            let photo = process_photo(&bytes, &PhotoLimits::default()).unwrap();
            assert_eq!(photo.mime, mime);
            assert_eq!((photo.width, photo.height), (300, 200));
        }
    }

    #[test]
    fn corrupt_foreign_and_oversized_bytes_are_refused_clearly() {
        let limits = PhotoLimits::default();
        assert!(matches!(
            process_photo(b"definitely not an image", &limits),
            Err(Error::UnsupportedImage(_))
        ));
        let mut truncated = jpeg(200, 200);
        truncated.truncate(truncated.len() * 2 / 3);
        assert!(matches!(
            process_photo(&truncated, &limits),
            Err(Error::BadImage(_))
        ));
        let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
        assert!(matches!(
            process_photo(gif, &limits),
            Err(Error::UnsupportedImage(_))
        ));
        let small = PhotoLimits {
            max_bytes: 100,
            ..PhotoLimits::default()
        };
        assert!(matches!(
            process_photo(&jpeg(64, 64), &small),
            Err(Error::PhotoTooLarge { limit: 100, .. })
        ));
    }
}
