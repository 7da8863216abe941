//! proto against OpenCV: the golden files in `tests/golden` hold what OpenCV
//! wrote for crops of the shared frames (`make_golden.py` made them), so
//! these tests need no Python.
//!
//! - Our BMP encoder must produce OpenCV's bytes exactly.
//! - Our decoder must read every BMP OpenCV writes (24-bit, 8-bit grey,
//!   32-bit V5 bit fields) to the pixels that went in.
//! - Our YUYV→BGR must be within 1 per channel of `cv2.cvtColor`.

use proto::{bmp, gzip, pixel};
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("proto sits inside the workspace")
        .to_path_buf()
}

fn golden(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
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

/// Frame names carry their size: `coffee_640x480_noise` is 640x480.
fn frame_size(frame: &str) -> (usize, usize) {
    let dims = frame.split('_').nth(1).expect("NAME_WxH");
    let (w, h) = dims.split_once('x').expect("WxH");
    (w.parse().expect("width"), h.parse().expect("height"))
}

fn frame_bgr(frame: &str) -> Vec<u8> {
    read(&repo_root().join(format!("testdata/frames/{frame}.bgr")))
}

fn frame_yuyv(frame: &str) -> Vec<u8> {
    read(&repo_root().join(format!("testdata/frames/{frame}.yuyv")))
}

/// `yuyv`'s rows of `2 * width` bytes, each followed by junk up to
/// `stride`: the layout of a V4L2 buffer with `bytesperline` padding.
fn with_stride(yuyv: &[u8], width: usize, stride: usize) -> Vec<u8> {
    let height = yuyv.len() / (width * 2);
    let mut padded = vec![0xA5u8; stride * height];
    for (dst, src) in padded
        .chunks_exact_mut(stride)
        .zip(yuyv.chunks_exact(width * 2))
    {
        dst[..width * 2].copy_from_slice(src);
    }
    padded
}

/// The largest difference between two channels at the same place.
fn max_abs_diff(ours: &[u8], theirs: &[u8]) -> u8 {
    assert_eq!(ours.len(), theirs.len(), "images of different sizes");
    ours.iter()
        .zip(theirs)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0)
}

/// The manifest's lines of one kind, split into words.
fn manifest(kind: &str) -> Vec<Vec<String>> {
    let text = String::from_utf8(read(&golden("MANIFEST"))).expect("MANIFEST is UTF-8");
    let lines: Vec<Vec<String>> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|w| w.first().map(String::as_str) == Some(kind))
        .collect();
    assert!(!lines.is_empty(), "MANIFEST lists no {kind} entries");
    lines
}

struct Crop {
    name: String,
    bgr: Vec<u8>,
    width: u32,
    height: u32,
    channels: u32,
}

fn crops() -> Vec<Crop> {
    manifest("bmp")
        .into_iter()
        .map(|w| {
            let n = |i: usize| -> usize { w[i].parse().expect("number in MANIFEST") };
            let (x, y, width, height) = (n(3), n(4), n(5), n(6));
            let (frame_width, _) = frame_size(&w[2]);
            let frame = frame_bgr(&w[2]);
            let mut bgr = Vec::with_capacity(width * height * 3);
            for row in y..y + height {
                let start = (row * frame_width + x) * 3;
                bgr.extend_from_slice(&frame[start..start + width * 3]);
            }
            Crop {
                name: w[1].clone(),
                bgr,
                width: width as u32,
                height: height as u32,
                channels: n(7) as u32,
            }
        })
        .collect()
}

#[test]
fn bmp_encoder_matches_opencv_byte_for_byte() {
    let mut checked = 0;
    for crop in crops().iter().filter(|c| c.channels == 3) {
        let expected = gunzip(&golden(&format!("bmp/{}.bmp.gz", crop.name)));
        let mut ours = Vec::new();
        bmp::encode_bgr24(&crop.bgr, crop.width, crop.height, &mut ours).unwrap();
        assert_eq!(
            bmp::encoded_len(crop.width, crop.height).unwrap(),
            expected.len(),
            "{}",
            crop.name
        );
        if let Some(i) = ours.iter().zip(&expected).position(|(a, b)| a != b) {
            panic!(
                "{}: first difference from OpenCV at byte {i}: ours {:#04x}, OpenCV {:#04x}",
                crop.name, ours[i], expected[i]
            );
        }
        assert_eq!(ours.len(), expected.len(), "{}", crop.name);
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} 3-channel crops checked");
}

#[test]
fn bmp_decoder_reads_every_opencv_bmp() {
    let mut depths = Vec::new();
    for crop in crops() {
        let file = gunzip(&golden(&format!("bmp/{}.bmp.gz", crop.name)));
        depths.push(u16::from_le_bytes([file[28], file[29]]));
        let mut pixels = Vec::new();
        let dims =
            bmp::decode_0rgb(&file, &mut pixels).unwrap_or_else(|e| panic!("{}: {e}", crop.name));
        assert_eq!(dims, (crop.width, crop.height), "{}", crop.name);
        let expected: Vec<u32> = if crop.channels == 1 {
            // OpenCV's grey is its own BGR2GRAY; check it against the `bmp`
            // crate, an independent 8-bit decoder, instead.
            let image = ::bmp::from_reader(&mut file.as_slice()).unwrap();
            let mut v = Vec::new();
            for y in 0..crop.height {
                for x in 0..crop.width {
                    let p = image.get_pixel(x, y);
                    assert!(p.r == p.g && p.g == p.b, "grey palette is grey");
                    v.push(u32::from(p.r) << 16 | u32::from(p.g) << 8 | u32::from(p.b));
                }
            }
            v
        } else {
            // 3 and 4 channels both carry the crop's BGR; alpha must not leak.
            let mut v = vec![0; (crop.width * crop.height) as usize];
            pixel::bgr_to_0rgb(&crop.bgr, crop.width, crop.height, &mut v).unwrap();
            v
        };
        assert_eq!(pixels, expected, "{}", crop.name);
    }
    for bits in [8, 24, 32] {
        assert!(depths.contains(&bits), "no golden {bits}-bit BMP");
    }
}

/// Converts every shared frame and compares with OpenCV; prints the largest
/// difference per frame (run with `--nocapture` to see it).
#[test]
fn yuyv_to_bgr_within_one_of_opencv_on_every_frame() {
    for w in manifest("yuyv") {
        let frame = &w[1];
        let (width, height): (u32, u32) = (w[2].parse().unwrap(), w[3].parse().unwrap());
        let yuyv = frame_yuyv(frame);
        let expected = gunzip(&golden(&format!("yuyv/{frame}.bgr.gz")));
        let mut ours = vec![0u8; expected.len()];
        pixel::yuyv_to_bgr(&yuyv, width, height, width as usize * 2, &mut ours).unwrap();
        let max_diff = max_abs_diff(&ours, &expected);
        let differing = ours.iter().zip(&expected).filter(|(a, b)| a != b).count();
        println!(
            "{frame}: max |ours - OpenCV| = {max_diff}, {differing} of {} bytes differ",
            ours.len()
        );
        assert!(max_diff <= 1, "{frame}: max difference {max_diff} > 1");
    }
}

/// A stride wider than the row (V4L2 padding) must not change the pixels.
#[test]
fn yuyv_to_bgr_with_padded_stride_matches_opencv() {
    let frame = "coffee_640x480_noise";
    let (width, height) = frame_size(frame);
    let stride = width * 2 + 64;
    let padded = with_stride(&frame_yuyv(frame), width, stride);
    let expected = gunzip(&golden(&format!("yuyv/{frame}.bgr.gz")));
    let mut ours = vec![0u8; expected.len()];
    pixel::yuyv_to_bgr(&padded, width as u32, height as u32, stride, &mut ours).unwrap();
    let max_diff = max_abs_diff(&ours, &expected);
    assert!(max_diff <= 1, "max difference {max_diff} > 1");
}

/// The agent's direct YUYV→BMP path against OpenCV's whole pipeline:
/// `cv2.imencode('.bmp', cv2.cvtColor(yuyv, COLOR_YUV2BGR_YUYV))`, built
/// here from OpenCV's converted frame and our encoder (byte-identical to
/// OpenCV's, as the test above proves), with V4L2-style padded strides.
#[test]
fn encode_yuyv_matches_opencv_cvtcolor_then_imencode() {
    let mut out = Vec::new();
    for w in manifest("yuyv") {
        let frame = &w[1];
        let (width, height): (usize, usize) = (w[2].parse().unwrap(), w[3].parse().unwrap());
        let yuyv = frame_yuyv(frame);
        let opencv_bgr = gunzip(&golden(&format!("yuyv/{frame}.bgr.gz")));
        let mut expected = Vec::new();
        bmp::encode_bgr24(&opencv_bgr, width as u32, height as u32, &mut expected).unwrap();
        for padding in [0, 6, 64] {
            let stride = width * 2 + padding;
            let padded = with_stride(&yuyv, width, stride);
            bmp::encode_yuyv(&padded, width as u32, height as u32, stride, &mut out).unwrap();
            assert_eq!(out.len(), expected.len(), "{frame}, stride {stride}");
            if let Some(i) = out.iter().zip(&expected).position(|(a, b)| a != b) {
                panic!("{frame}, stride {stride}: first difference from OpenCV at byte {i}");
            }
        }
    }
}
