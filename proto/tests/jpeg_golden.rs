//! proto's JPEG code against libjpeg-turbo (through OpenCV): the files in
//! `tests/golden/jpeg` are what `cv2.imencode('.jpg')` made of crops of the
//! shared frames, beside what `cv2.imdecode` made of them
//! (`make_jpeg.py`), so these tests need no Python.
//!
//! - Our decoder must come within 45 dB PSNR of `cv2.imdecode` on every
//!   kind a camera or an OpenCV client sends: 4:2:0, 4:2:2, 4:4:4, grey,
//!   odd sizes, restart markers, progressive.
//! - A file with its DHT removed (what MJPEG cameras send) must decode to
//!   the same pixels once the standard tables are inserted.
//! - Our encoder's output must decode in libjpeg-turbo's reading of it...
//!   that part needs OpenCV at test time and lives in the e2e interop tests.

use proto::jpeg::{self, Decoder, JpegError, Layout};
use proto::{bmp, gzip};
use std::path::{Path, PathBuf};

fn golden(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/jpeg")
        .join(rel)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    gzip::Decompressor::new(gzip::MAX_DECOMPRESSED_LEN)
        .decompress(&read(path), &mut out)
        .unwrap_or_else(|e| panic!("cannot gunzip {}: {e}", path.display()));
    out
}

struct Case {
    name: String,
    width: u32,
    height: u32,
    standard_tables: bool,
}

fn cases() -> Vec<Case> {
    let manifest = String::from_utf8(read(&golden("MANIFEST"))).expect("MANIFEST is text");
    let cases: Vec<Case> = manifest
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 4, "bad MANIFEST line {line:?}");
            Case {
                name: f[0].to_string(),
                width: f[1].parse().expect("width"),
                height: f[2].parse().expect("height"),
                standard_tables: f[3] == "1",
            }
        })
        .collect();
    assert!(cases.len() >= 8, "MANIFEST lost cases: {}", cases.len());
    cases
}

/// Peak signal-to-noise ratio of `a` against `b`, in dB (infinite if equal).
fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let se: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    let mse = se / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// `jpg` without its DHT segments, as an MJPEG camera sends it.
fn strip_dht(jpg: &[u8]) -> Vec<u8> {
    let mut out = jpg[..2].to_vec();
    let mut pos = 2;
    loop {
        let code = jpg[pos + 1];
        if code == 0xDA {
            out.extend_from_slice(&jpg[pos..]);
            return out;
        }
        let len = usize::from(u16::from_be_bytes([jpg[pos + 2], jpg[pos + 3]]));
        if code != 0xC4 {
            out.extend_from_slice(&jpg[pos..pos + 2 + len]);
        }
        pos += 2 + len;
    }
}

/// The bodies of every DHT segment before the first scan, concatenated.
fn dht_tables(jpg: &[u8]) -> Vec<u8> {
    let mut tables = Vec::new();
    let mut pos = 2;
    while jpg[pos + 1] != 0xDA {
        let len = usize::from(u16::from_be_bytes([jpg[pos + 2], jpg[pos + 3]]));
        if jpg[pos + 1] == 0xC4 {
            tables.extend_from_slice(&jpg[pos + 4..pos + 2 + len]);
        }
        pos += 2 + len;
    }
    tables
}

#[test]
fn decodes_within_45_db_of_cv2_imdecode() {
    let mut decoder = Decoder::new(bmp::MAX_PIXELS);
    let mut worst = f64::INFINITY;
    for case in cases() {
        let jpg = read(&golden(&format!("{}.jpg", case.name)));
        let want = gunzip(&golden(&format!("{}.bgr.gz", case.name)));
        let mut got = Vec::new();
        let info = decoder
            .decode(&jpg, Layout::Bgr, &mut got)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(
            (info.width, info.height),
            (case.width, case.height),
            "{}",
            case.name
        );
        assert_eq!(info.len, jpg.len(), "{}", case.name);
        let db = psnr(&got, &want);
        println!("{}: PSNR {db:.1} dB against cv2.imdecode", case.name);
        assert!(db >= 45.0, "{}: PSNR {db:.1} dB < 45 dB", case.name);
        worst = worst.min(db);

        // RGB is the same pixels in the other order.
        let mut rgb = Vec::new();
        decoder.decode(&jpg, Layout::Rgb, &mut rgb).unwrap();
        for (b, r) in got.chunks_exact(3).zip(rgb.chunks_exact(3)) {
            assert_eq!([b[2], b[1], b[0]], [r[0], r[1], r[2]], "{}", case.name);
        }
        // And 0RGB packs them.
        let mut px = Vec::new();
        assert_eq!(decoder.decode_0rgb(&jpg, &mut px).unwrap(), info);
        assert_eq!(px.len(), rgb.len() / 3);
        for (p, r) in px.iter().zip(rgb.chunks_exact(3)) {
            assert_eq!(
                *p,
                u32::from(r[0]) << 16 | u32::from(r[1]) << 8 | u32::from(r[2])
            );
        }
    }
    println!("worst PSNR against cv2.imdecode: {worst:.1} dB");
}

#[test]
fn the_standard_tables_are_the_ones_libjpeg_writes() {
    let jpg = read(&golden("coffee_160x120_q85_420.jpg"));
    assert_eq!(dht_tables(&jpg), jpeg::STANDARD_HUFFMAN_TABLES[4..]);
}

#[test]
fn a_file_without_dht_decodes_to_the_same_pixels_with_the_standard_tables() {
    let mut decoder = Decoder::new(bmp::MAX_PIXELS);
    for case in cases().iter().filter(|c| c.standard_tables) {
        let jpg = read(&golden(&format!("{}.jpg", case.name)));
        let bare = strip_dht(&jpg);
        assert!(bare.len() < jpg.len(), "{}: had no DHT", case.name);
        let info = jpeg::inspect(&bare).unwrap();
        assert!(!info.has_huffman_tables);
        let (mut want, mut got) = (Vec::new(), Vec::new());
        decoder.decode(&jpg, Layout::Bgr, &mut want).unwrap();
        decoder
            .decode(&bare, Layout::Bgr, &mut got)
            .unwrap_or_else(|e| panic!("{} without DHT: {e}", case.name));
        assert!(want == got, "{}: pixels differ without DHT", case.name);

        // complete() makes a file any decoder takes: it has the tables and
        // decodes like the original.
        let mut completed = Vec::new();
        jpeg::complete(&bare, &info, &mut completed);
        let again = jpeg::inspect(&completed).unwrap();
        assert!(again.has_huffman_tables);
        assert_eq!(again.len, completed.len());
        assert_eq!(
            completed.len(),
            bare.len() + jpeg::STANDARD_HUFFMAN_TABLES.len()
        );
        let mut in_place = bare.clone();
        jpeg::complete_in_place(&mut in_place, &info);
        assert_eq!(in_place, completed);
    }
}

#[test]
fn garbage_after_eoi_is_not_part_of_the_jpeg() {
    let jpg = read(&golden("coffee_160x120_q75_422.jpg"));
    let mut padded = jpg.clone();
    padded.extend_from_slice(&[0u8; 1000]);
    padded.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0x12]);
    let info = jpeg::inspect(&padded).unwrap();
    assert_eq!(info.len, jpg.len());
    let mut out = Vec::new();
    jpeg::complete(&padded, &info, &mut out);
    assert_eq!(
        out, jpg,
        "a complete file is passed through as it is, up to EOI"
    );
    let mut decoder = Decoder::new(bmp::MAX_PIXELS);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    decoder.decode(&jpg, Layout::Bgr, &mut a).unwrap();
    decoder.decode(&padded, Layout::Bgr, &mut b).unwrap();
    assert!(a == b);
}

#[test]
fn every_truncation_is_refused_never_half_decoded() {
    let mut decoder = Decoder::new(bmp::MAX_PIXELS);
    let mut out = Vec::new();
    for name in ["coffee_99x71_q90_422", "coffee_160x120_q85_420_progressive"] {
        let jpg = read(&golden(&format!("{name}.jpg")));
        for cut in 0..jpg.len() {
            let err = decoder
                .decode(&jpg[..cut], Layout::Bgr, &mut out)
                .unwrap_err();
            assert!(
                matches!(err, JpegError::Truncated { .. } | JpegError::NotJpeg),
                "{name} cut at {cut}: {err:?}"
            );
        }
    }
}

#[test]
fn corrupt_entropy_data_is_an_error_or_a_picture_never_a_panic() {
    // Flip bytes inside the scan: the decoder must return, whatever it
    // finds. (A flipped bit often still decodes to a wrong picture; JPEG has
    // no checksum. Bytes that make a marker, or run a code past the data,
    // are errors.)
    let jpg = read(&golden("coffee_160x120_q85_420.jpg"));
    let info = jpeg::inspect(&jpg).unwrap();
    let mut decoder = Decoder::new(bmp::MAX_PIXELS);
    let mut out = Vec::new();
    let mut errors = 0;
    for at in (info.first_scan + 20..jpg.len() - 2).step_by(7) {
        let mut bad = jpg.clone();
        bad[at] ^= 0xA5;
        if decoder.decode(&bad, Layout::Bgr, &mut out).is_err() {
            errors += 1;
        }
    }
    assert!(errors > 0, "no corruption was ever noticed");
}
