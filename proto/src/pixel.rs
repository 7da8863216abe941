//! Pixel conversion: YUYV 4:2:2 to BGR24 (BT.601 limited range, as OpenCV's
//! `COLOR_YUV2BGR_YUYV`), and BGR24 to 0RGB.
//!
//! The arithmetic is OpenCV's own fixed point (20 fractional bits, the
//! `ITUR_BT_601_*` constants of `modules/imgproc/src/color_yuv.simd.hpp`), so
//! the output matches `cv2.cvtColor` exactly rather than "within rounding".
//!
//! Speed: the hot loops work on fixed-size blocks (`chunks_exact` into
//! arrays), so the compiler can drop every bounds check and vectorize, with
//! no `unsafe` and no platform intrinsics. Nothing here allocates.

use std::fmt;

/// Why a conversion could not run: the buffers do not fit the dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PixelError {
    /// YUYV carries one U and one V per pixel pair, so the width must be even.
    OddWidth { width: u32 },
    /// The stride (`bytesperline`) is shorter than one row of `2 * width` bytes.
    StrideTooSmall { stride: usize, min: usize },
    /// The image is too large for this machine's address space.
    TooLarge { width: u32, height: u32 },
    /// The source buffer holds fewer bytes than the dimensions need.
    InputTooShort { len: usize, need: usize },
    /// The destination buffer holds fewer elements than the dimensions need.
    OutputTooShort { len: usize, need: usize },
}

impl fmt::Display for PixelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PixelError::OddWidth { width } => write!(
                f,
                "YUYV width {width} is odd; YUYV pairs pixels, so ask the camera for an even width"
            ),
            PixelError::StrideTooSmall { stride, min } => write!(
                f,
                "stride (bytesperline) {stride} is shorter than one {min}-byte row of pixels"
            ),
            PixelError::TooLarge { width, height } => {
                write!(f, "a {width}x{height} image is too large to address")
            }
            PixelError::InputTooShort { len, need } => write!(
                f,
                "source buffer has {len} bytes but the dimensions need {need} (short or truncated frame?)"
            ),
            PixelError::OutputTooShort { len, need } => write!(
                f,
                "destination buffer has {len} elements but the dimensions need {need}"
            ),
        }
    }
}

impl std::error::Error for PixelError {}

// OpenCV's BT.601 limited-range coefficients, scaled by 2^20.
const SHIFT: u32 = 20;
const HALF: i32 = 1 << (SHIFT - 1);
const CY: i32 = 1_220_542;
const CUB: i32 = 2_116_026;
const CUG: i32 = -409_993;
const CVG: i32 = -852_492;
const CVR: i32 = 1_673_527;

/// Pixels converted per block of the YUYV loop. 16 pixels are 32 source and
/// 48 destination bytes: wide enough for the vectorizer, small enough that
/// the tail (done pair by pair) stays short.
const BLOCK: usize = 16;

/// Number of bytes for `count` elements of `size` bytes each, or `TooLarge`.
fn checked_len(width: u32, height: u32, size: usize) -> Result<usize, PixelError> {
    (width as usize)
        .checked_mul(height as usize)
        .and_then(|n| n.checked_mul(size))
        .ok_or(PixelError::TooLarge { width, height })
}

/// Converts a YUYV image into `bgr` (tightly packed, top-down,
/// `width * height * 3` bytes). `stride` is V4L2's `bytesperline` and may
/// exceed `2 * width`; `width` must be even. Allocates nothing.
///
/// `yuyv` needs `stride * (height - 1) + 2 * width` bytes (the last row's
/// padding may be missing). `bgr` may be longer than needed; only its first
/// `width * height * 3` bytes are written.
pub fn yuyv_to_bgr(
    yuyv: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    bgr: &mut [u8],
) -> Result<(), PixelError> {
    if width % 2 != 0 {
        return Err(PixelError::OddWidth { width });
    }
    let row_in = checked_len(width, 1, 2)?;
    let row_out = checked_len(width, 1, 3)?;
    if stride < row_in {
        return Err(PixelError::StrideTooSmall {
            stride,
            min: row_in,
        });
    }
    let need_out = checked_len(width, height, 3)?;
    if width == 0 || height == 0 {
        return Ok(());
    }
    let need_in = stride
        .checked_mul(height as usize - 1)
        .and_then(|n| n.checked_add(row_in))
        .ok_or(PixelError::TooLarge { width, height })?;
    if yuyv.len() < need_in {
        return Err(PixelError::InputTooShort {
            len: yuyv.len(),
            need: need_in,
        });
    }
    if bgr.len() < need_out {
        return Err(PixelError::OutputTooShort {
            len: bgr.len(),
            need: need_out,
        });
    }
    // `chunks` (not `chunks_exact`) so the last row may lack its padding.
    for (src, dst) in yuyv[..need_in]
        .chunks(stride)
        .zip(bgr[..need_out].chunks_exact_mut(row_out))
    {
        yuyv_row_to_bgr(&src[..row_in], dst);
    }
    Ok(())
}

/// Converts one row: `src` is `2 * n` bytes of YUYV, `dst` is `3 * n` bytes.
fn yuyv_row_to_bgr(src: &[u8], dst: &mut [u8]) {
    let blocks = src.len() / (2 * BLOCK);
    let (src_blocks, src_tail) = src.split_at(blocks * 2 * BLOCK);
    let (dst_blocks, dst_tail) = dst.split_at_mut(blocks * 3 * BLOCK);
    for (s, d) in src_blocks
        .chunks_exact(2 * BLOCK)
        .zip(dst_blocks.chunks_exact_mut(3 * BLOCK))
    {
        // Fixed-size arrays let the compiler prove every index in range.
        if let (Ok(s), Ok(d)) = (
            <&[u8; 2 * BLOCK]>::try_from(s),
            <&mut [u8; 3 * BLOCK]>::try_from(d),
        ) {
            yuyv_block_to_bgr(s, d);
        }
    }
    for (s, d) in src_tail.chunks_exact(4).zip(dst_tail.chunks_exact_mut(6)) {
        if let (Ok(s), Ok(d)) = (<&[u8; 4]>::try_from(s), <&mut [u8; 6]>::try_from(d)) {
            yuyv_pair_to_bgr(s, d);
        }
    }
}

/// One channel: OpenCV's `(y + uv) >> 20`, saturated to a byte.
#[inline(always)]
fn channel(y: i32, uv: i32) -> u8 {
    ((y + uv) >> SHIFT).clamp(0, 255) as u8
}

#[inline(always)]
fn luma(y: u8) -> i32 {
    (i32::from(y) - 16).max(0) * CY
}

/// The chroma terms `(r, g, b)` of one pixel pair, rounding offset included.
#[inline(always)]
fn chroma(u: u8, v: u8) -> (i32, i32, i32) {
    let u = i32::from(u) - 128;
    let v = i32::from(v) - 128;
    (HALF + CVR * v, HALF + CVG * v + CUG * u, HALF + CUB * u)
}

#[inline(always)]
fn yuyv_pair_to_bgr(s: &[u8; 4], d: &mut [u8; 6]) {
    let (ruv, guv, buv) = chroma(s[1], s[3]);
    let y0 = luma(s[0]);
    let y1 = luma(s[2]);
    *d = [
        channel(y0, buv),
        channel(y0, guv),
        channel(y0, ruv),
        channel(y1, buv),
        channel(y1, guv),
        channel(y1, ruv),
    ];
}

/// `BLOCK` pixels: deinterleave into lanes, do the math lane-wise, and
/// interleave back. Each step is a simple loop over fixed-size arrays, which
/// is the shape the vectorizer handles well.
#[inline(always)]
fn yuyv_block_to_bgr(s: &[u8; 2 * BLOCK], d: &mut [u8; 3 * BLOCK]) {
    let mut y = [0i32; BLOCK];
    let mut ruv = [0i32; BLOCK];
    let mut guv = [0i32; BLOCK];
    let mut buv = [0i32; BLOCK];
    for i in 0..BLOCK / 2 {
        let (r, g, b) = chroma(s[4 * i + 1], s[4 * i + 3]);
        y[2 * i] = luma(s[4 * i]);
        y[2 * i + 1] = luma(s[4 * i + 2]);
        ruv[2 * i] = r;
        ruv[2 * i + 1] = r;
        guv[2 * i] = g;
        guv[2 * i + 1] = g;
        buv[2 * i] = b;
        buv[2 * i + 1] = b;
    }
    for i in 0..BLOCK {
        d[3 * i] = channel(y[i], buv[i]);
        d[3 * i + 1] = channel(y[i], guv[i]);
        d[3 * i + 2] = channel(y[i], ruv[i]);
    }
}

/// Converts tightly packed BGR24 into 0RGB `u32` pixels (minifb's format:
/// `0x00RRGGBB`). `out` may be longer than needed; only its first
/// `width * height` elements are written. Allocates nothing.
pub fn bgr_to_0rgb(bgr: &[u8], width: u32, height: u32, out: &mut [u32]) -> Result<(), PixelError> {
    let need_in = checked_len(width, height, 3)?;
    let need_out = checked_len(width, height, 1)?;
    if bgr.len() < need_in {
        return Err(PixelError::InputTooShort {
            len: bgr.len(),
            need: need_in,
        });
    }
    if out.len() < need_out {
        return Err(PixelError::OutputTooShort {
            len: out.len(),
            need: need_out,
        });
    }
    bgr_row_to_0rgb(&bgr[..need_in], &mut out[..need_out]);
    Ok(())
}

/// Converts BGR triplets to 0RGB; stops at the shorter of the two slices.
/// The BMP decoder uses it per row.
#[inline]
pub(crate) fn bgr_row_to_0rgb(bgr: &[u8], out: &mut [u32]) {
    for (p, o) in bgr.chunks_exact(3).zip(out.iter_mut()) {
        *o = u32::from(p[0]) | u32::from(p[1]) << 8 | u32::from(p[2]) << 16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One YUYV pixel pair, converted.
    fn pair(y0: u8, u: u8, y1: u8, v: u8) -> [u8; 6] {
        let mut bgr = [0u8; 6];
        yuyv_to_bgr(&[y0, u, y1, v], 2, 1, 4, &mut bgr).unwrap();
        bgr
    }

    #[test]
    fn limited_range_black_and_white() {
        assert_eq!(pair(16, 128, 235, 128), [0, 0, 0, 255, 255, 255]);
        // Below black and above white saturate instead of wrapping.
        assert_eq!(pair(0, 128, 255, 128), [0, 0, 0, 255, 255, 255]);
    }

    #[test]
    fn bt601_red_matches_opencv() {
        // Values from cv2.cvtColor(..., COLOR_YUV2BGR_YUYV) with OpenCV 5.0.
        assert_eq!(pair(81, 90, 81, 240), [0, 0, 254, 0, 0, 254]);
        // 75% bars red as vivid draws it (R=191).
        assert_eq!(pair(65, 100, 65, 212), [1, 0, 191, 1, 0, 191]);
    }

    #[test]
    fn block_and_tail_paths_agree() {
        // 18 pixels: one 16-pixel block plus a tail pair, and a pair-only row.
        let yuyv: Vec<u8> = (0..36u8).map(|i| i.wrapping_mul(37)).collect();
        let mut wide = [0u8; 54];
        yuyv_to_bgr(&yuyv, 18, 1, 36, &mut wide).unwrap();
        for p in 0..9 {
            let s = &yuyv[4 * p..4 * p + 4];
            assert_eq!(
                wide[6 * p..6 * p + 6],
                pair(s[0], s[1], s[2], s[3]),
                "pair {p}"
            );
        }
    }

    #[test]
    fn stride_padding_is_skipped_and_last_row_may_be_short() {
        // 2x2 with stride 6: two bytes of junk after each row, none after the last.
        let yuyv = [16, 128, 235, 128, 99, 99, 235, 128, 16, 128];
        let mut bgr = [0u8; 12];
        yuyv_to_bgr(&yuyv, 2, 2, 6, &mut bgr).unwrap();
        assert_eq!(bgr, [0, 0, 0, 255, 255, 255, 255, 255, 255, 0, 0, 0]);
    }

    #[test]
    fn odd_width() {
        assert_eq!(
            yuyv_to_bgr(&[0; 12], 3, 1, 6, &mut [0; 9]),
            Err(PixelError::OddWidth { width: 3 })
        );
    }

    #[test]
    fn stride_too_small() {
        assert_eq!(
            yuyv_to_bgr(&[0; 16], 4, 2, 6, &mut [0; 24]),
            Err(PixelError::StrideTooSmall { stride: 6, min: 8 })
        );
    }

    #[test]
    fn too_large() {
        assert_eq!(
            yuyv_to_bgr(&[], u32::MAX - 1, u32::MAX, usize::MAX, &mut []),
            Err(PixelError::TooLarge {
                width: u32::MAX - 1,
                height: u32::MAX
            })
        );
        assert_eq!(
            bgr_to_0rgb(&[], u32::MAX, u32::MAX, &mut []),
            Err(PixelError::TooLarge {
                width: u32::MAX,
                height: u32::MAX
            })
        );
    }

    #[test]
    fn input_too_short() {
        // 2x2 at stride 8 needs 8 + 4 bytes.
        assert_eq!(
            yuyv_to_bgr(&[0; 11], 2, 2, 8, &mut [0; 12]),
            Err(PixelError::InputTooShort { len: 11, need: 12 })
        );
        assert_eq!(
            bgr_to_0rgb(&[0; 5], 2, 1, &mut [0; 2]),
            Err(PixelError::InputTooShort { len: 5, need: 6 })
        );
    }

    #[test]
    fn output_too_short() {
        assert_eq!(
            yuyv_to_bgr(&[0; 8], 2, 2, 4, &mut [0; 11]),
            Err(PixelError::OutputTooShort { len: 11, need: 12 })
        );
        assert_eq!(
            bgr_to_0rgb(&[0; 6], 2, 1, &mut [0; 1]),
            Err(PixelError::OutputTooShort { len: 1, need: 2 })
        );
    }

    #[test]
    fn empty_image_is_a_no_op() {
        assert_eq!(yuyv_to_bgr(&[], 0, 0, 0, &mut []), Ok(()));
        assert_eq!(bgr_to_0rgb(&[], 0, 5, &mut []), Ok(()));
    }

    #[test]
    fn bgr_to_0rgb_byte_order() {
        let mut out = [0xdead_beef_u32; 3];
        bgr_to_0rgb(&[1, 2, 3, 4, 5, 6], 2, 1, &mut out).unwrap();
        // Only the first width*height elements are written.
        assert_eq!(out, [0x030201, 0x060504, 0xdead_beef]);
    }

    #[test]
    fn every_error_has_a_message() {
        let errors = [
            PixelError::OddWidth { width: 3 },
            PixelError::StrideTooSmall { stride: 1, min: 2 },
            PixelError::TooLarge {
                width: 1,
                height: 2,
            },
            PixelError::InputTooShort { len: 1, need: 2 },
            PixelError::OutputTooShort { len: 1, need: 2 },
        ];
        for e in errors {
            let text = e.to_string();
            assert!(text.len() > 20 && !text.contains("Todo"), "{e:?}: {text}");
        }
    }
}
