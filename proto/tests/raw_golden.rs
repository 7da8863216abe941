//! Every raw capture format against OpenCV: `tests/golden/raw/` holds what
//! `cv2.cvtColor` made of crops of the shared frames in each format
//! (`make_golden.py`, the `raw` lines of its MANIFEST). The inputs are the
//! shared frames with their bytes rearranged, derived here exactly as the
//! script derives them, so only OpenCV's outputs are stored.
//!
//! `proto::convert` must match OpenCV exactly (max difference 0), with the
//! frame tightly packed and with V4L2-style `bytesperline` padding on every
//! plane, both into BGR and straight into a BMP.

use std::path::{Path, PathBuf};

use proto::format::{Layout, PixelFormat, Plane};
use proto::{bmp, convert, gzip};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("proto sits inside the workspace")
        .to_path_buf()
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

/// One `raw` line of the MANIFEST.
struct Case {
    format: PixelFormat,
    frame: String,
    x: usize,
    y: usize,
    width: usize,
    height: usize,
    golden: PathBuf,
}

fn cases() -> Vec<Case> {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let text = String::from_utf8(read(&golden.join("MANIFEST"))).expect("MANIFEST is UTF-8");
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.first() == Some(&"raw"))
        .map(|w| {
            let n = |i: usize| -> usize { w[i].parse().expect("number in MANIFEST") };
            Case {
                format: PixelFormat::parse(w[1]).expect("a known fourcc"),
                frame: w[2].to_string(),
                x: n(3),
                y: n(4),
                width: n(5),
                height: n(6),
                golden: golden.join(w[7]),
            }
        })
        .collect()
}

/// Frame names carry their width: `coffee_640x480` is 640 wide.
fn frame_width(frame: &str) -> usize {
    let dims = frame.split('_').nth(1).expect("NAME_WxH");
    dims.split('x').next().unwrap().parse().expect("width")
}

/// The tightly packed input of `case`, as `make_golden.py`'s `raw_input`
/// derives it: its planes, each as rows.
fn planes(case: &Case) -> Vec<Vec<Vec<u8>>> {
    let (x, y, w, h) = (case.x, case.y, case.width, case.height);
    let fw = frame_width(&case.frame);
    let frames = root().join("testdata/frames");
    if matches!(case.format, PixelFormat::Rgb3 | PixelFormat::Bgr3) {
        let bgr = read(&frames.join(format!("{}.bgr", case.frame)));
        let rows = (y..y + h)
            .map(|r| {
                let row = &bgr[(r * fw + x) * 3..(r * fw + x + w) * 3];
                if case.format == PixelFormat::Bgr3 {
                    row.to_vec()
                } else {
                    row.chunks(3).flat_map(|p| [p[2], p[1], p[0]]).collect()
                }
            })
            .collect();
        return vec![rows];
    }
    let yuyv = read(&frames.join(format!("{}.yuyv", case.frame)));
    let rows: Vec<&[u8]> = (y..y + h)
        .map(|r| &yuyv[(r * fw + x) * 2..(r * fw + x + w) * 2])
        .collect();
    let luma: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| r.iter().step_by(2).copied().collect())
        .collect();
    let chroma = |offset: usize| -> Vec<Vec<u8>> {
        rows.iter()
            .step_by(2)
            .map(|r| r.iter().skip(offset).step_by(4).copied().collect())
            .collect()
    };
    let (u, v) = (chroma(1), chroma(3));
    let interleave = |a: &[Vec<u8>], b: &[Vec<u8>]| -> Vec<Vec<u8>> {
        a.iter()
            .zip(b)
            .map(|(a, b)| a.iter().zip(b).flat_map(|(a, b)| [*a, *b]).collect())
            .collect()
    };
    let reorder = |order: [usize; 4]| -> Vec<Vec<u8>> {
        rows.iter()
            .map(|r| r.chunks(4).flat_map(|q| order.map(|i| q[i])).collect())
            .collect()
    };
    match case.format {
        PixelFormat::Yuyv => vec![rows.iter().map(|r| r.to_vec()).collect()],
        PixelFormat::Uyvy => vec![reorder([1, 0, 3, 2])],
        PixelFormat::Yvyu => vec![reorder([0, 3, 2, 1])],
        PixelFormat::Grey => vec![luma],
        PixelFormat::Nv12 => vec![luma, interleave(&u, &v)],
        PixelFormat::Nv21 => vec![luma, interleave(&v, &u)],
        PixelFormat::Yu12 => vec![luma, u, v],
        PixelFormat::Yv12 => vec![luma, v, u],
        other => panic!("{other} is not a raw format"),
    }
}

/// Lays `planes` out as a V4L2 driver would with `bytesperline`: every
/// plane at its `Layout` offset, each row padded to the plane's stride with
/// junk, and the last row without its padding.
fn lay_out(planes: &[Vec<Vec<u8>>], layout: &Layout) -> Vec<u8> {
    let mut data = vec![0xA5; layout.frame_len()];
    assert_eq!(planes.len(), layout.planes().len());
    for (
        rows,
        &Plane {
            offset,
            stride,
            row_len,
            rows: count,
        },
    ) in planes.iter().zip(layout.planes())
    {
        assert_eq!(rows.len(), count);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), row_len);
            data[offset + i * stride..][..row_len].copy_from_slice(row);
        }
    }
    data
}

#[test]
fn every_raw_format_matches_opencv_exactly_with_any_bytesperline() {
    let cases = cases();
    for format in PixelFormat::ALL.iter().filter(|f| !f.is_compressed()) {
        assert!(
            cases.iter().any(|c| c.format == *format),
            "MANIFEST has no golden {format} conversion"
        );
    }
    for case in &cases {
        let expected = gunzip(&case.golden);
        let (w, h) = (case.width as u32, case.height as u32);
        let planes = planes(case);
        let mut bmp_expected = Vec::new();
        bmp::encode_bgr24(&expected, w, h, &mut bmp_expected).unwrap();
        // 0: tightly packed; then padding (even: a 4:2:0 chroma stride is
        // half the luma's), as drivers add to align rows.
        for padding in [0, 8, 64] {
            let bpl = if padding == 0 {
                0
            } else {
                w * case.format.first_plane_bytes_per_pixel() + padding
            };
            let layout = Layout::new(case.format, w, h, bpl).unwrap();
            let data = lay_out(&planes, &layout);
            let mut ours = vec![0u8; expected.len()];
            convert::to_bgr(&layout, &data, &mut ours).unwrap();
            let max_diff = ours
                .iter()
                .zip(&expected)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap_or(0);
            println!(
                "{} {} {}x{} bytesperline {bpl}: max |ours - OpenCV| = {max_diff}",
                case.format, case.frame, w, h
            );
            assert_eq!(
                max_diff, 0,
                "{} {} bytesperline {bpl}",
                case.format, case.frame
            );
            let mut file = Vec::new();
            convert::to_bmp(&layout, &data, &mut file).unwrap();
            assert!(
                file == bmp_expected,
                "{} {} bytesperline {bpl}: BMP differs from OpenCV's pixels in our (OpenCV-exact) encoder",
                case.format,
                case.frame
            );
        }
    }
}
