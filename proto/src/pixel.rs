//! Pixel conversion: YUYV 4:2:2 to BGR24 (BT.601 limited range, as OpenCV's
//! `COLOR_YUV2BGR_YUYV`), and BGR24 to 0RGB.
//!
//! The arithmetic is OpenCV's own fixed point (20 fractional bits, the
//! `ITUR_BT_601_*` constants of `modules/imgproc/src/color_yuv.simd.hpp`), so
//! the output matches `cv2.cvtColor` exactly rather than "within rounding".
//!
//! Speed: on x86-64, YUYV→BGR runs AVX2 or SSSE3 intrinsics picked at run
//! time (module `x86`, with the measurements that justify it); about 0.8x
//! `cv2.cvtColor`'s time with AVX2. Its AVX2 step `x86::bgr32_avx2` takes
//! registers, so `convert` feeds it every other YUV layout without first
//! gathering YUYV rows. On aarch64 (a Pi with a 64-bit OS) it runs NEON
//! (module `neon`, whose 16-pixel kernel `neon::bgr16` other 4:2:2 layouts
//! can share). These two modules and `convert`'s `x86` and `neon` hold the
//! crate's only `unsafe`.
//! Elsewhere (armv7, see `neon` for why) and as the fallback, portable code
//! works on fixed-size blocks (`chunks_exact` into arrays), so the compiler
//! can drop every bounds check and vectorize. Every path gives the same
//! bytes. Nothing here allocates.

use std::fmt;

/// Why a conversion could not run: the buffers do not fit the dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PixelError {
    /// YUYV carries one U and one V per pixel pair, so the width must be even.
    OddWidth {
        /// The width asked for, in pixels.
        width: u32,
    },
    /// The stride (`bytesperline`) is shorter than one row of `2 * width` bytes.
    StrideTooSmall {
        /// The stride given, in bytes per row.
        stride: usize,
        /// Bytes in one row of pixels: `2 * width`.
        min: usize,
    },
    /// The image is too large for this machine's address space.
    TooLarge {
        /// The width asked for, in pixels.
        width: u32,
        /// The height asked for, in pixels.
        height: u32,
    },
    /// The source buffer holds fewer bytes than the dimensions need.
    InputTooShort {
        /// Bytes in the source buffer.
        len: usize,
        /// Bytes the dimensions and stride need.
        need: usize,
    },
    /// The destination buffer holds fewer elements than the dimensions need.
    OutputTooShort {
        /// Elements (bytes or pixels) in the destination buffer.
        len: usize,
        /// Elements the dimensions need.
        need: usize,
    },
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

/// Bytes in one row of `width` elements of `size` bytes, or `TooLarge`
/// naming the whole image (a row alone can overflow a 32-bit `usize`).
fn row_len(width: u32, height: u32, size: usize) -> Result<usize, PixelError> {
    (width as usize)
        .checked_mul(size)
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
    let rows = yuyv_rows(yuyv, width, height, stride)?;
    let row_out = row_len(width, height, 3)?;
    let need_out = checked_len(width, height, 3)?;
    if bgr.len() < need_out {
        return Err(PixelError::OutputTooShort {
            len: bgr.len(),
            need: need_out,
        });
    }
    if need_out == 0 {
        return Ok(());
    }
    let convert = row_converter();
    for (src, dst) in rows.zip(bgr[..need_out].chunks_exact_mut(row_out)) {
        convert(src, dst);
    }
    Ok(())
}

/// Checks a YUYV image against its buffer and returns its rows, top first,
/// each cut to its `2 * width` bytes of pixels (the stride's padding left
/// out). The BMP encoder walks them bottom-up to write a file directly.
pub(crate) fn yuyv_rows(
    yuyv: &[u8],
    width: u32,
    height: u32,
    stride: usize,
) -> Result<impl DoubleEndedIterator<Item = &[u8]> + ExactSizeIterator, PixelError> {
    if !width.is_multiple_of(2) {
        return Err(PixelError::OddWidth { width });
    }
    let row_in = row_len(width, height, 2)?;
    if stride < row_in {
        return Err(PixelError::StrideTooSmall {
            stride,
            min: row_in,
        });
    }
    let need_in = if width == 0 || height == 0 {
        0
    } else {
        stride
            .checked_mul(height as usize - 1)
            .and_then(|n| n.checked_add(row_in))
            .ok_or(PixelError::TooLarge { width, height })?
    };
    if yuyv.len() < need_in {
        return Err(PixelError::InputTooShort {
            len: yuyv.len(),
            need: need_in,
        });
    }
    // `chunks` (not `chunks_exact`) so the last row may lack its padding;
    // `max(1)` because an empty image may come with a zero stride.
    Ok(yuyv[..need_in]
        .chunks(stride.max(1))
        .map(move |row| &row[..row_in]))
}

/// The row converter `yuyv_to_bgr` uses on this CPU: `2 * n` bytes of YUYV
/// in, `3 * n` bytes of BGR out.
pub(crate) fn row_converter() -> RowFn {
    row_paths().last().map_or(yuyv_row_to_bgr, |&(_, row)| row)
}

/// Converts one row: `2 * n` bytes of YUYV into `3 * n` bytes of BGR.
pub type RowFn = fn(&[u8], &mut [u8]);

/// The name of the YUYV→BGR path `yuyv_to_bgr` takes on this CPU:
/// `"avx2"`, `"ssse3"`, `"neon"` or `"portable"`. Benchmarks print it, so a
/// figure says which code it measured.
pub fn yuyv_path() -> &'static str {
    row_paths().last().map_or("portable", |&(name, _)| name)
}

/// Every YUYV→BGR row converter this CPU can run, by name, the portable one
/// first and the one `yuyv_to_bgr` takes last. For tests and benchmarks that
/// compare the paths (`stagebench --path`); each gives the same bytes.
///
/// On x86-64: SSSE3 and AVX2 when the CPU has them (checked at run time).
#[cfg(target_arch = "x86_64")]
pub fn row_paths() -> &'static [(&'static str, RowFn)] {
    if std::arch::is_x86_feature_detected!("avx2") {
        &[
            ("portable", yuyv_row_to_bgr),
            ("ssse3", x86::yuyv_row_to_bgr_ssse3),
            ("avx2", x86::yuyv_row_to_bgr_avx2),
        ]
    } else if std::arch::is_x86_feature_detected!("ssse3") {
        &[
            ("portable", yuyv_row_to_bgr),
            ("ssse3", x86::yuyv_row_to_bgr_ssse3),
        ]
    } else {
        &[("portable", yuyv_row_to_bgr)]
    }
}

/// On aarch64: NEON, which every aarch64 CPU has.
#[cfg(target_arch = "aarch64")]
pub fn row_paths() -> &'static [(&'static str, RowFn)] {
    &[
        ("portable", yuyv_row_to_bgr),
        ("neon", neon::yuyv_row_to_bgr),
    ]
}

/// Elsewhere, armv7 among them, the portable code only (see `neon` for why).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn row_paths() -> &'static [(&'static str, RowFn)] {
    &[("portable", yuyv_row_to_bgr)]
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

/// YUYV→BGR with x86 intrinsics: SSSE3 (16 pixels per step) and AVX2 (32),
/// chosen at run time; both exact like the portable code.
///
/// Why `unsafe` is allowed here: on x86-64 the portable block loop does not
/// vectorize well (the baseline target is SSE2: no 32-bit multiply and no
/// byte shuffle, so the 3-byte BGR interleave ends up as scalar stores).
/// Measured on this project's 2-core AMD EPYC machine, release build,
/// medians of 9 rounds alternating with `cv2.cvtColor` (OpenCV 5.0.0, one
/// thread), `proto/examples/pixel_vs_cv2.py`:
///
/// | path     | 640x480  | 1280x720 | vs cv2   |
/// |----------|----------|----------|----------|
/// | portable | 0.47 ms  | 1.5 ms   | ~3.8x    | (separate runs, before)
/// | SSSE3    | 0.18 ms  | 0.53 ms  | 1.45x    |
/// | AVX2     | 0.097 ms | 0.29 ms  | 0.78x    |
/// | cv2      | 0.124 ms | 0.37 ms  | 1        |
///
/// How it stays exact: every product of OpenCV's 20-bit fixed point is split
/// as `c * x = (c >> 7) * (x << 7) + (c & 127) * x`, where all four factors
/// fit in 16 bits, so SSE2's `pmaddwd` (16x16→32, pairwise add) computes the
/// same 32-bit integers OpenCV does. `pshufb` (SSSE3) interleaves B, G, R.
/// The tests check every (Y, U, V) against a scalar reference on each path.
///
/// The only unsafe operations are: calling the `#[target_feature]`
/// functions, which `fast_row` does only after `is_x86_feature_detected!`
/// said the feature is present; and unaligned loads/stores through pointers
/// taken from fixed-size arrays, so every access is in bounds by type.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub(crate) mod x86 {
    use super::{yuyv_pair_to_bgr, CUB, CUG, CVG, CVR, CY, HALF, SHIFT};
    use std::arch::x86_64::*;

    /// Pixels per step: two 16-byte YUYV loads, three 16-byte BGR stores.
    const STEP: usize = 16;

    /// `c >> 7` and `c & 127`: the two 16-bit halves of a 20-bit constant.
    const fn hi(c: i32) -> i16 {
        (c >> 7) as i16
    }
    const fn lo(c: i32) -> i16 {
        (c & 127) as i16
    }

    /// `pshufb` masks that place channel `channel` (0 = B, 1 = G, 2 = R) of
    /// 16 pixels into output bytes `16 * part .. 16 * part + 16` of the
    /// 48-byte BGR run; 0x80 writes a zero, to be OR-ed with the others.
    const fn mask(part: usize, channel: usize) -> [u8; 16] {
        let mut m = [0x80u8; 16];
        let mut q = 0;
        while q < 16 {
            let p = 16 * part + q;
            if p % 3 == channel {
                m[q] = (p / 3) as u8;
            }
            q += 1;
        }
        m
    }
    const MASKS: [[[u8; 16]; 3]; 3] = {
        let mut all = [[[0u8; 16]; 3]; 3];
        let mut part = 0;
        while part < 3 {
            let mut channel = 0;
            while channel < 3 {
                all[part][channel] = mask(part, channel);
                channel += 1;
            }
            part += 1;
        }
        all
    };

    /// Converts one row; same contract as the portable `yuyv_row_to_bgr`.
    pub(super) fn yuyv_row_to_bgr_ssse3(src: &[u8], dst: &mut [u8]) {
        // SAFETY: `fast_row` hands out this function only after
        // `is_x86_feature_detected!("ssse3")` returned true.
        unsafe { row(src, dst) }
    }

    /// The same with AVX2: 32 pixels per step, SSSE3 code for the tail.
    pub(super) fn yuyv_row_to_bgr_avx2(src: &[u8], dst: &mut [u8]) {
        // SAFETY: `fast_row` hands out this function only after
        // `is_x86_feature_detected!("avx2")` returned true (AVX2 implies SSSE3).
        unsafe { row_avx2(src, dst) }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn row_avx2(src: &[u8], dst: &mut [u8]) {
        let steps = src.len() / (4 * STEP);
        let (src_steps, src_tail) = src.split_at(steps * 4 * STEP);
        let (dst_steps, dst_tail) = dst.split_at_mut(steps * 6 * STEP);
        for (s, d) in src_steps
            .chunks_exact(4 * STEP)
            .zip(dst_steps.chunks_exact_mut(6 * STEP))
        {
            if let (Ok(s), Ok(d)) = (
                <&[u8; 4 * STEP]>::try_from(s),
                <&mut [u8; 6 * STEP]>::try_from(d),
            ) {
                step_avx2(s, d);
            }
        }
        row(src_tail, dst_tail);
    }

    /// 32 pixels. AVX2 works on two independent 128-bit lanes, so the loads
    /// put pixels 0..8 and 16..24 in one register and 8..16 and 24..32 in
    /// the other: after packing, the low lane holds pixels 0..16 and the
    /// high lane 16..32, and each lane is exactly one SSSE3 step.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn step_avx2(s: &[u8; 4 * STEP], d: &mut [u8; 6 * STEP]) {
        // SAFETY (loads): `s` holds 64 bytes, so each 16-byte unaligned
        // load below is in bounds.
        let p = s.as_ptr();
        let a = _mm256_loadu2_m128i(p.add(32).cast(), p.cast());
        let b = _mm256_loadu2_m128i(p.add(48).cast(), p.add(16).cast());
        bgr32_avx2(a, b, d);
    }

    /// The arithmetic and the stores of one AVX2 step, for every 4:2:2 and
    /// 4:2:0 layout: `a` holds pixels 0..8 (low lane) and 16..24 (high
    /// lane) as YUYV, `b` pixels 8..16 and 24..32; `d` gets their 32 BGR
    /// pixels. `proto::convert` builds `a` and `b` in registers from the
    /// other layouts (NV12's `vpunpcklbw` of a luma and a chroma load
    /// gives exactly this lane order), so they skip the YUYV gather.
    ///
    /// # Safety
    ///
    /// AVX2 must be present (the caller checked it at run time).
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) unsafe fn bgr32_avx2(a: __m256i, b: __m256i, d: &mut [u8; 6 * STEP]) {
        let (b0, g0, r0) = eight_avx2(a);
        let (b1, g1, r1) = eight_avx2(b);
        let bgr = [
            _mm256_packus_epi16(b0, b1),
            _mm256_packus_epi16(g0, g1),
            _mm256_packus_epi16(r0, r1),
        ];
        let q = d.as_mut_ptr();
        for (part, masks) in MASKS.iter().enumerate() {
            let mut out = _mm256_setzero_si256();
            for (plane, m) in bgr.iter().zip(masks) {
                let m = _mm256_broadcastsi128_si256(_mm_loadu_si128(m.as_ptr().cast()));
                out = _mm256_or_si256(out, _mm256_shuffle_epi8(*plane, m));
            }
            // SAFETY: `d` holds 96 bytes, so each 16-byte store is in bounds.
            _mm256_storeu2_m128i(q.add(48 + 16 * part).cast(), q.add(16 * part).cast(), out);
        }
    }

    /// `eight`, on both 128-bit lanes at once. The two stay separate
    /// copies of one computation: their intrinsics differ in width
    /// (`_mm_*` against `_mm256_*`), and a macro over both would hide the
    /// arithmetic the exactness argument above rests on.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn eight_avx2(yuyv: __m256i) -> (__m256i, __m256i, __m256i) {
        let y = _mm256_max_epi16(
            _mm256_sub_epi16(
                _mm256_and_si256(yuyv, _mm256_set1_epi16(0x00ff)),
                _mm256_set1_epi16(16),
            ),
            _mm256_setzero_si256(),
        );
        let uv = _mm256_sub_epi16(_mm256_srli_epi16::<8>(yuyv), _mm256_set1_epi16(128));
        let uv128 = _mm256_slli_epi16::<7>(uv);
        let y128 = _mm256_slli_epi16::<7>(y);
        let pairs = |a: i32, b: i32| {
            let (a, b) = (i32::from(a as u16), i32::from(b as u16));
            _mm256_set1_epi32(a | b << 16)
        };
        let cy = pairs(i32::from(hi(CY)), i32::from(lo(CY)));
        let half = _mm256_set1_epi32(HALF);
        let l0 = _mm256_add_epi32(_mm256_madd_epi16(_mm256_unpacklo_epi16(y128, y), cy), half);
        let l1 = _mm256_add_epi32(_mm256_madd_epi16(_mm256_unpackhi_epi16(y128, y), cy), half);
        let term = |cu: i32, cv: i32| {
            let h = pairs(i32::from(hi(cu)), i32::from(hi(cv)));
            let l = pairs(i32::from(lo(cu)), i32::from(lo(cv)));
            _mm256_add_epi32(_mm256_madd_epi16(uv128, h), _mm256_madd_epi16(uv, l))
        };
        let channel = |c: __m256i| {
            let c0 = _mm256_unpacklo_epi32(c, c);
            let c1 = _mm256_unpackhi_epi32(c, c);
            _mm256_packs_epi32(
                _mm256_srai_epi32::<{ SHIFT as i32 }>(_mm256_add_epi32(l0, c0)),
                _mm256_srai_epi32::<{ SHIFT as i32 }>(_mm256_add_epi32(l1, c1)),
            )
        };
        (
            channel(term(CUB, 0)),
            channel(term(CUG, CVG)),
            channel(term(0, CVR)),
        )
    }

    /// The SSSE3 row: whole steps, then the tail pair by pair.
    ///
    /// This loop, `row_avx2`'s and the portable `yuyv_row_to_bgr` are the
    /// same split on purpose, not by copy: each must live inside the
    /// function that carries its `#[target_feature]`, so the compiler
    /// builds the loop with that feature and inlines `step` into it. One
    /// generic loop shared by all three would be compiled for the baseline
    /// CPU and call each 16-pixel step out of line.
    #[target_feature(enable = "ssse3")]
    unsafe fn row(src: &[u8], dst: &mut [u8]) {
        let steps = src.len() / (2 * STEP);
        let (src_steps, src_tail) = src.split_at(steps * 2 * STEP);
        let (dst_steps, dst_tail) = dst.split_at_mut(steps * 3 * STEP);
        for (s, d) in src_steps
            .chunks_exact(2 * STEP)
            .zip(dst_steps.chunks_exact_mut(3 * STEP))
        {
            if let (Ok(s), Ok(d)) = (
                <&[u8; 2 * STEP]>::try_from(s),
                <&mut [u8; 3 * STEP]>::try_from(d),
            ) {
                step(s, d);
            }
        }
        for (s, d) in src_tail.chunks_exact(4).zip(dst_tail.chunks_exact_mut(6)) {
            if let (Ok(s), Ok(d)) = (<&[u8; 4]>::try_from(s), <&mut [u8; 6]>::try_from(d)) {
                yuyv_pair_to_bgr(s, d);
            }
        }
    }

    /// 8 pixels (one 16-byte YUYV load) to 8 B, G, R values as `i16` lanes,
    /// already shifted; the caller saturates to bytes when packing.
    #[target_feature(enable = "ssse3")]
    #[inline]
    unsafe fn eight(yuyv: __m128i) -> (__m128i, __m128i, __m128i) {
        let low_bytes = _mm_set1_epi16(0x00ff);
        // Y' = max(Y - 16, 0) in 16-bit lanes, pixels 0..8.
        let y = _mm_max_epi16(
            _mm_sub_epi16(_mm_and_si128(yuyv, low_bytes), _mm_set1_epi16(16)),
            _mm_setzero_si128(),
        );
        // U - 128, V - 128 alternating, pairs 0..4.
        let uv = _mm_sub_epi16(_mm_srli_epi16::<8>(yuyv), _mm_set1_epi16(128));
        let uv128 = _mm_slli_epi16::<7>(uv);
        let y128 = _mm_slli_epi16::<7>(y);

        // Luma of pixels 0..4 and 4..8 as i32, rounding offset included.
        let cy = _mm_setr_epi16(
            hi(CY),
            lo(CY),
            hi(CY),
            lo(CY),
            hi(CY),
            lo(CY),
            hi(CY),
            lo(CY),
        );
        let half = _mm_set1_epi32(HALF);
        let l0 = _mm_add_epi32(_mm_madd_epi16(_mm_unpacklo_epi16(y128, y), cy), half);
        let l1 = _mm_add_epi32(_mm_madd_epi16(_mm_unpackhi_epi16(y128, y), cy), half);

        // Chroma terms per pair: lanes are (u, v), so each constant pair
        // says how much of u and of v goes into the channel.
        let term = |cu: i32, cv: i32| {
            let h = _mm_setr_epi16(
                hi(cu),
                hi(cv),
                hi(cu),
                hi(cv),
                hi(cu),
                hi(cv),
                hi(cu),
                hi(cv),
            );
            let l = _mm_setr_epi16(
                lo(cu),
                lo(cv),
                lo(cu),
                lo(cv),
                lo(cu),
                lo(cv),
                lo(cu),
                lo(cv),
            );
            _mm_add_epi32(_mm_madd_epi16(uv128, h), _mm_madd_epi16(uv, l))
        };
        let channel = |c: __m128i| {
            // Each pair's term applies to both of its pixels.
            let c0 = _mm_unpacklo_epi32(c, c);
            let c1 = _mm_unpackhi_epi32(c, c);
            _mm_packs_epi32(
                _mm_srai_epi32::<{ SHIFT as i32 }>(_mm_add_epi32(l0, c0)),
                _mm_srai_epi32::<{ SHIFT as i32 }>(_mm_add_epi32(l1, c1)),
            )
        };
        (
            channel(term(CUB, 0)),
            channel(term(CUG, CVG)),
            channel(term(0, CVR)),
        )
    }

    #[target_feature(enable = "ssse3")]
    #[inline]
    unsafe fn step(s: &[u8; 2 * STEP], d: &mut [u8; 3 * STEP]) {
        // SAFETY (loads and stores): `s` holds 32 bytes and `d` 48, so each
        // 16-byte unaligned access below is in bounds.
        let a = _mm_loadu_si128(s.as_ptr().cast());
        let b = _mm_loadu_si128(s.as_ptr().add(16).cast());
        let (b0, g0, r0) = eight(a);
        let (b1, g1, r1) = eight(b);
        // Saturate to 0..=255, as OpenCV's `saturate_cast<uchar>`.
        let bgr = [
            _mm_packus_epi16(b0, b1),
            _mm_packus_epi16(g0, g1),
            _mm_packus_epi16(r0, r1),
        ];
        for (part, masks) in MASKS.iter().enumerate() {
            let mut out = _mm_setzero_si128();
            for (plane, m) in bgr.iter().zip(masks) {
                let m = _mm_loadu_si128(m.as_ptr().cast());
                out = _mm_or_si128(out, _mm_shuffle_epi8(*plane, m));
            }
            _mm_storeu_si128(d.as_mut_ptr().add(16 * part).cast(), out);
        }
    }
}

/// YUYV→BGR with aarch64 NEON: 16 pixels per step, exact like the portable
/// code (max difference 0 on all 2^24 (Y, U, V); the tests check it under
/// qemu-user in `./run-tests`).
///
/// NEON is part of the aarch64 baseline (every CPU the
/// `aarch64-unknown-linux-gnu` target runs on has it, and the target enables
/// it), so there is no run-time check, and this is the path on every Pi with
/// a 64-bit OS.
///
/// How it stays exact: NEON has the 32-bit multiply SSE2 lacks, so the
/// products are OpenCV's own `i32` ones (`mul`/`mla` by the 20-bit
/// constants). `(y + c + HALF) >> 20` is taken in two exact steps (see
/// `channel`): `addhn` keeps the high half of the 32-bit sum (the sums fit
/// in `i32` as they do in the scalar code), then a rounding `>> 4` on
/// 16-bit lanes adds `HALF`; `sqxtun` saturates to 0..=255 like OpenCV's
/// `saturate_cast<uchar>`.
///
/// Why no NEON on armv7 (32-bit Raspberry Pi OS, armhf): Rust's
/// `core::arch::arm` NEON intrinsics and `is_arm_feature_detected!` are
/// still unstable (nightly only), and Debian's armhf baseline is ARMv7 with
/// VFPv3-D16, without NEON, so it cannot be assumed at compile time either.
/// armv7 uses the portable code; a Pi 2/3/4 with a 64-bit OS gets NEON.
///
/// The only unsafe operations are the NEON intrinsics (always present on
/// this target, see above) and one 32-byte load and one 48-byte store per
/// step, through pointers taken from fixed-size arrays of exactly that size.
#[cfg(target_arch = "aarch64")]
#[allow(unsafe_code)]
pub(crate) mod neon {
    use super::{yuyv_pair_to_bgr, CUB, CUG, CVG, CVR, CY};
    use std::arch::aarch64::*;

    /// Pixels per step: one 32-byte YUYV load, one 48-byte BGR store.
    const STEP: usize = 16;

    /// Converts one row; same contract as the portable `yuyv_row_to_bgr`.
    pub(crate) fn yuyv_row_to_bgr(src: &[u8], dst: &mut [u8]) {
        let steps = src.len() / (2 * STEP);
        let (src_steps, src_tail) = src.split_at(steps * 2 * STEP);
        let (dst_steps, dst_tail) = dst.split_at_mut(steps * 3 * STEP);
        for (s, d) in src_steps
            .chunks_exact(2 * STEP)
            .zip(dst_steps.chunks_exact_mut(3 * STEP))
        {
            if let (Ok(s), Ok(d)) = (
                <&[u8; 2 * STEP]>::try_from(s),
                <&mut [u8; 3 * STEP]>::try_from(d),
            ) {
                // SAFETY: NEON is always present on aarch64 (module doc);
                // `s` holds the 32 bytes `vld4_u8` reads and `d` the 48
                // bytes `vst3q_u8` writes.
                unsafe {
                    let yuyv = vld4_u8(s.as_ptr());
                    vst3q_u8(d.as_mut_ptr(), bgr16(yuyv.0, yuyv.2, yuyv.1, yuyv.3));
                }
            }
        }
        for (s, d) in src_tail.chunks_exact(4).zip(dst_tail.chunks_exact_mut(6)) {
            if let (Ok(s), Ok(d)) = (<&[u8; 4]>::try_from(s), <&mut [u8; 6]>::try_from(d)) {
                yuyv_pair_to_bgr(s, d);
            }
        }
    }

    /// The kernel every 4:2:2 layout can share: 8 pixel pairs, given as the
    /// Y of the even pixels (`y0`), of the odd pixels (`y1`), and each
    /// pair's U and V, to B, G and R of the 16 pixels in order, ready for
    /// `vst3q_u8`. YUYV gets its four lanes from one `vld4_u8` (Y0 U Y1 V),
    /// UYVY from the same load in another order (U Y0 V Y1).
    ///
    /// # Safety
    ///
    /// NEON must be present: always true on aarch64 (module doc). The
    /// function touches no memory.
    #[inline]
    pub(crate) unsafe fn bgr16(
        y0: uint8x8_t,
        y1: uint8x8_t,
        u: uint8x8_t,
        v: uint8x8_t,
    ) -> uint8x16x3_t {
        // U - 128 and V - 128: the wrapping u16 difference read as i16.
        let bias = vdup_n_u8(128);
        let u = vreinterpretq_s16_u16(vsubl_u8(u, bias));
        let v = vreinterpretq_s16_u16(vsubl_u8(v, bias));
        let (ul, uh) = (vmovl_s16(vget_low_s16(u)), vmovl_high_s16(u));
        let (vl, vh) = (vmovl_s16(vget_low_s16(v)), vmovl_high_s16(v));
        // The chroma terms of each pair, without the rounding offset
        // (`channel` rounds instead).
        let b = [vmulq_n_s32(ul, CUB), vmulq_n_s32(uh, CUB)];
        let g = [
            vmlaq_n_s32(vmulq_n_s32(ul, CUG), vl, CVG),
            vmlaq_n_s32(vmulq_n_s32(uh, CUG), vh, CVG),
        ];
        let r = [vmulq_n_s32(vl, CVR), vmulq_n_s32(vh, CVR)];
        let (l0, l1) = (luma(y0), luma(y1));
        uint8x16x3_t(channel(l0, l1, b), channel(l0, l1, g), channel(l0, l1, r))
    }

    /// `max(Y - 16, 0) * CY` of 8 pixels, as two `i32x4`.
    #[inline]
    unsafe fn luma(y: uint8x8_t) -> [int32x4_t; 2] {
        // Saturating subtract: max(Y - 16, 0) in one step.
        let y = vmovl_u8(vqsub_u8(y, vdup_n_u8(16)));
        let lo = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(y)));
        let hi = vreinterpretq_s32_u32(vmovl_high_u16(y));
        [vmulq_n_s32(lo, CY), vmulq_n_s32(hi, CY)]
    }

    /// One channel of 16 pixels: `(luma + chroma + HALF) >> 20`,
    /// saturated, with the even (`l0`) and odd (`l1`) pixels interleaved
    /// back into order.
    ///
    /// In two exact steps: `addhn` keeps the high half of each 32-bit sum,
    /// `t = (l + c) >> 16`, then `srshr` gives `(t + 8) >> 4`. That equals
    /// `(l + c + 2^19) >> 20`: with `l + c = 2^16 t + r`, `0 <= r < 2^16`,
    /// `(2^16 (t + 8) + r) >> 20` cannot differ from `(t + 8) >> 4`, as `r`
    /// stays below one step of `t`. So `HALF` costs no instruction.
    #[inline]
    unsafe fn channel(l0: [int32x4_t; 2], l1: [int32x4_t; 2], c: [int32x4_t; 2]) -> uint8x16_t {
        let shift = |l: [int32x4_t; 2]| {
            let high = vaddhn_high_s32(vaddhn_s32(l[0], c[0]), l[1], c[1]);
            vqmovun_s16(vrshrq_n_s16::<4>(high))
        };
        let (even, odd) = (shift(l0), shift(l1));
        // zip1 reads the low halves only: e0 o0 e1 o1 ... e7 o7.
        vzip1q_u8(vcombine_u8(even, even), vcombine_u8(odd, odd))
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
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A YUYV image of pseudo-random bytes from `seed`, `stride` bytes per
    /// row and the last row without its padding (the shortest buffer
    /// `yuyv_to_bgr` accepts). The BMP encoder's tests use it too.
    pub(crate) fn random_yuyv(width: usize, height: usize, stride: usize, seed: u64) -> Vec<u8> {
        let len = stride * (height - 1) + 2 * width;
        let mut state = seed;
        (0..len)
            .map(|_| {
                // An LCG with Knuth's MMIX multiplier: its high bits are the
                // best mixed, so each step yields its top byte.
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                (state >> 56) as u8
            })
            .collect()
    }

    /// The reference: OpenCV's `YUV422toRGB8Invoker` formula, one pixel at
    /// a time, written for clarity rather than speed.
    fn reference(yuyv: &[u8], width: usize, height: usize, stride: usize) -> Vec<u8> {
        let mut bgr = Vec::with_capacity(width * height * 3);
        for row in 0..height {
            for x in 0..width {
                let pair = row * stride + (x / 2) * 4;
                let y = (i32::from(yuyv[row * stride + 2 * x]) - 16).max(0) * 1_220_542;
                let u = i32::from(yuyv[pair + 1]) - 128;
                let v = i32::from(yuyv[pair + 3]) - 128;
                let half = 1 << 19;
                let b = (y + half + 2_116_026 * u) >> 20;
                let g = (y + half - 852_492 * v - 409_993 * u) >> 20;
                let r = (y + half + 1_673_527 * v) >> 20;
                bgr.extend([b, g, r].map(|c| c.clamp(0, 255) as u8));
            }
        }
        bgr
    }

    /// Every row converter this CPU can run: the portable one and each
    /// intrinsics path, whichever `yuyv_to_bgr` would pick.
    fn row_converters() -> impl Iterator<Item = (&'static str, RowFn)> {
        row_paths().iter().copied()
    }

    /// All 2^24 (Y, U, V) combinations, 256 pixels per row, on every
    /// path: proves each exact, not merely close, on every input a pixel
    /// can have. (Well under a second with proto's `opt-level = 3` in the dev
    /// profile; half a minute at opt-level 0.)
    #[test]
    fn every_yuv_value_matches_the_reference_on_every_path() {
        let mut yuyv = [0u8; 512];
        let mut ours = [0u8; 768];
        for u in 0..=255u8 {
            for v in 0..=255u8 {
                for (i, pair) in yuyv.chunks_exact_mut(4).enumerate() {
                    pair.copy_from_slice(&[2 * i as u8, u, 2 * i as u8 + 1, v]);
                }
                let expected = reference(&yuyv, 256, 1, 512);
                for (name, row) in row_converters() {
                    row(&yuyv, &mut ours);
                    assert!(
                        ours[..] == expected[..],
                        "{name} path differs at U={u} V={v}"
                    );
                }
            }
        }
    }

    proptest! {
        /// Every path equals the reference on random frames, with widths
        /// that leave a tail after the 16- and 32-pixel steps, and odd
        /// strides.
        #[test]
        fn every_path_matches_reference_on_random_frames(
            pairs in 0usize..60,
            height in 1usize..5,
            padding in 0usize..9,
            seed in any::<u64>(),
        ) {
            let width = 2 * pairs;
            let stride = 2 * width + padding;
            let yuyv = random_yuyv(width, height, stride, seed);
            let expected = reference(&yuyv, width, height, stride);
            // One spare byte: it must survive untouched.
            let mut ours = vec![0x5a; expected.len() + 1];
            yuyv_to_bgr(&yuyv, width as u32, height as u32, stride, &mut ours).unwrap();
            prop_assert_eq!(&ours[..expected.len()], &expected[..]);
            prop_assert_eq!(ours[expected.len()], 0x5a);
            for (name, row) in row_converters() {
                let mut ours = vec![0u8; 3 * width];
                row(&yuyv[..2 * width], &mut ours);
                prop_assert_eq!(&ours[..], &expected[..3 * width], "{} path", name);
            }
        }
    }

    /// Every even width up to 100 pixels, so every tail after the 16- and
    /// 32-pixel steps (odd multiples of 2 among them), and 640 ± 2, on
    /// every path.
    #[test]
    fn every_width_matches_the_reference_on_every_path() {
        for width in (0..=100).step_by(2).chain([638, 640, 642]) {
            let yuyv = random_yuyv(width, 1, 2 * width, width as u64);
            let expected = reference(&yuyv, width, 1, 2 * width);
            for (name, row) in row_converters() {
                // One spare byte: it must survive untouched.
                let mut ours = vec![0x5a; 3 * width + 1];
                row(&yuyv, &mut ours[..3 * width]);
                assert_eq!(
                    ours[..3 * width],
                    expected[..],
                    "{name} path, width {width}"
                );
                assert_eq!(
                    ours[3 * width],
                    0x5a,
                    "{name} path wrote past width {width}"
                );
            }
        }
    }

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
