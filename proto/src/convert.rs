//! Raw frames of every [`PixelFormat`] but MJPG to BGR24 and straight into
//! a 24-bit BMP, exactly as OpenCV converts them (max difference 0):
//!
//! ```text
//! YUYV UYVY YVYU       COLOR_YUV2BGR_YUYV / _UYVY / _YVYU
//! NV12 NV21            COLOR_YUV2BGR_NV12 / _NV21
//! YU12 YV12            COLOR_YUV2BGR_I420 / _YV12
//! GREY                 COLOR_GRAY2BGR
//! RGB3                 COLOR_RGB2BGR
//! BGR3                 (a copy)
//! ```
//!
//! **One YUV kernel for every YUV format.** OpenCV converts each of the
//! seven YUV layouts with the same fixed-point arithmetic (the
//! `ITUR_BT_601_*` constants, chroma point-sampled: a pixel pair in 4:2:2
//! and a 2x2 block in 4:2:0 use one U and one V). So a row of any of them
//! is first gathered into YUYV order, a few hundred pixels at a time in a
//! buffer on the stack that stays in L1, and then goes through the YUYV row
//! kernel of [`crate::pixel`], with its SIMD paths. Each format then costs
//! the YUYV conversion plus one cheap byte shuffle, and gains whatever the
//! YUYV kernel gains (NEON on aarch64 included), with no second copy of
//! the arithmetic to keep exact. With AVX2 even the gather goes: each
//! layout's loads are shuffled in registers into the YUYV kernel's AVX2
//! step (`Fused`), as that extra pass kept NV12 and YU12 above 1.2x
//! `cv2.cvtColor`'s time. `make_golden.py` confirms the premise for every
//! format: OpenCV's output for each is compared with this module's.
//!
//! The byte shuffles have a portable version (fixed-size blocks for the
//! vectorizer) and SSE2/SSSE3/AVX2 (module `x86`) and NEON (module `neon`)
//! ones, picked as [`paths`] says; the tests hold every one to the
//! portable one and every format to a per-pixel reference.
//!
//! Every plane honours its stride (see [`crate::format`]); nothing here
//! allocates except `to_bmp` growing its output once.

use std::fmt;

use crate::bmp::{self, BmpError};
use crate::format::{Layout, PixelFormat};
use crate::pixel;

/// Why a frame could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConvertError {
    /// MJPG frames are JPEGs, decoded elsewhere, not converted here.
    Compressed {
        /// The format given.
        format: PixelFormat,
    },
    /// The frame buffer is shorter than its layout needs.
    InputTooShort {
        /// Bytes in the buffer.
        len: usize,
        /// Bytes the layout needs.
        need: usize,
    },
    /// The BGR buffer is shorter than `width * height * 3`.
    OutputTooShort {
        /// Bytes in the buffer.
        len: usize,
        /// Bytes the image needs.
        need: usize,
    },
    /// The frame cannot be a BMP (a side is 0 or over 16384).
    Bmp(BmpError),
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::Compressed { format } => write!(
                f,
                "{format} frames are compressed; they are decoded, not converted"
            ),
            ConvertError::InputTooShort { len, need } => write!(
                f,
                "frame has {len} bytes but its format and size need {need} (short or truncated frame?)"
            ),
            ConvertError::OutputTooShort { len, need } => write!(
                f,
                "BGR buffer has {len} bytes but the image needs {need}"
            ),
            ConvertError::Bmp(e) => write!(f, "cannot write the BMP: {e}"),
        }
    }
}

impl std::error::Error for ConvertError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConvertError::Bmp(e) => Some(e),
            _ => None,
        }
    }
}

/// Converts a raw frame into `bgr` (tightly packed, top-down,
/// `width * height * 3` bytes; a longer buffer keeps its tail). `data` is
/// the frame as the camera delivered it, laid out as `layout` says.
pub fn to_bgr(layout: &Layout, data: &[u8], bgr: &mut [u8]) -> Result<(), ConvertError> {
    to_bgr_on(fastest(), layout, data, bgr)
}

/// One set of byte shuffles (gathers, and where the CPU has them fused
/// converters) this CPU runs, by name: `"portable"`, `"ssse3"`, `"avx2"`
/// or `"neon"`. For benchmarks that compare them (`stagebench --stage
/// raw2bgr --path`); each gives the same bytes.
#[derive(Clone, Copy)]
pub struct Path {
    /// The path's name, as `stagebench --path` takes it.
    pub name: &'static str,
    shuffles: &'static Shuffles,
}

const PORTABLE_PATH: Path = Path {
    name: "portable",
    shuffles: &PORTABLE,
};

/// Every shuffle path this CPU runs, the portable one first and the one
/// [`to_bgr`] takes last. The YUYV kernel under them is always
/// [`pixel::row_converter`]'s.
///
/// On x86-64: SSSE3 and AVX2 when the CPU has them (checked at run time).
#[cfg(target_arch = "x86_64")]
pub fn paths() -> &'static [Path] {
    static ALL: [Path; 3] = [
        PORTABLE_PATH,
        Path {
            name: "ssse3",
            shuffles: &x86::SHUFFLES,
        },
        Path {
            name: "avx2",
            shuffles: &x86::SHUFFLES_AVX2,
        },
    ];
    if std::arch::is_x86_feature_detected!("avx2") {
        &ALL
    } else if std::arch::is_x86_feature_detected!("ssse3") {
        &ALL[..2]
    } else {
        &ALL[..1]
    }
}

/// On aarch64: NEON, which every aarch64 CPU has.
#[cfg(target_arch = "aarch64")]
pub fn paths() -> &'static [Path] {
    static ALL: [Path; 2] = [
        PORTABLE_PATH,
        Path {
            name: "neon",
            shuffles: &neon::SHUFFLES,
        },
    ];
    &ALL
}

/// Elsewhere, armv7 among them, the portable code only.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn paths() -> &'static [Path] {
    static ALL: [Path; 1] = [PORTABLE_PATH];
    &ALL
}

/// [`to_bgr`] with the shuffles of `path` (one of [`paths`]).
pub fn to_bgr_on(
    path: Path,
    layout: &Layout,
    data: &[u8],
    bgr: &mut [u8],
) -> Result<(), ConvertError> {
    let mut rows = Rows::new(layout, data)?;
    rows.shuffles = path.shuffles;
    let row_len = rows.width * 3;
    let need = row_len * rows.height;
    if bgr.len() < need {
        return Err(ConvertError::OutputTooShort {
            len: bgr.len(),
            need,
        });
    }
    if need == 0 {
        return Ok(());
    }
    for (r, dst) in bgr[..need].chunks_exact_mut(row_len).enumerate() {
        rows.convert(r, dst);
    }
    Ok(())
}

/// Replaces `out` with the 24-bit BMP of a raw frame, converting each row
/// straight into its place in the file: the same bytes as [`to_bgr`]
/// followed by [`bmp::encode_bgr24`], without the BGR buffer. Reuse `out`
/// from frame to frame: once it has held a file this large, nothing is
/// allocated or zero-filled again.
pub fn to_bmp(layout: &Layout, data: &[u8], out: &mut Vec<u8>) -> Result<(), ConvertError> {
    let rows = Rows::new(layout, data)?;
    bmp::encode_rows(layout.width(), layout.height(), out, |r, dst| {
        rows.convert(r, dst)
    })
    .map_err(ConvertError::Bmp)
}

/// Pixels gathered into YUYV order per step of the YUV paths: 2 KiB of
/// stack, in L1 with the rows it comes from and goes to.
const CHUNK: usize = 1024;

/// A checked raw frame, row by row.
struct Rows<'a> {
    format: PixelFormat,
    width: usize,
    height: usize,
    /// Each plane's bytes from its first row on, and its stride.
    planes: [(&'a [u8], usize); 3],
    /// The YUYV row kernel this CPU runs.
    yuyv: fn(&[u8], &mut [u8]),
    /// The byte shuffles this CPU runs.
    shuffles: &'static Shuffles,
}

/// A shuffle of one source row: `src` in, `out` written.
type Packed = fn(&[u8], &mut [u8]);
/// A gather of a luma row and an interleaved chroma row into YUYV.
type SemiPlanar = fn(&[u8], &[u8], &mut [u8]);
/// A gather of a luma row and two chroma rows into YUYV.
type Planar = fn(&[u8], &[u8], &[u8], &mut [u8]);

/// One implementation of every byte shuffle, portable or for one CPU.
struct Shuffles {
    swap_pairs: Packed,
    swap_chroma: Packed,
    nv12: SemiPlanar,
    nv21: SemiPlanar,
    planar: Planar,
    grey: Packed,
    rgb: Packed,
    /// Where the CPU has them: YUV rows to BGR in one pass.
    fused: Option<&'static Fused>,
}

/// Row converters that skip the YUYV gather: each builds the YUYV
/// kernel's registers from its own layout's loads and returns how many
/// pixels (from the left, even) it converted; the gather does the rest.
/// Where a row is a whole number of SIMD steps (640 and 1280 pixels are),
/// nothing is gathered. With the gather, each YUV row is written once
/// more and read once more than YUYV's, which cost 1.2-1.35x
/// `cv2.cvtColor`'s time at 640x480 where YUYV alone takes 0.8x.
struct Fused {
    uyvy: FusedPacked,
    yvyu: FusedPacked,
    nv12: FusedSemiPlanar,
    nv21: FusedSemiPlanar,
    planar: FusedPlanar,
}

/// A packed row in, BGR out, pixels done returned.
type FusedPacked = fn(&[u8], &mut [u8]) -> usize;
/// A luma row and an interleaved chroma row in, BGR out, pixels done returned.
type FusedSemiPlanar = fn(&[u8], &[u8], &mut [u8]) -> usize;
/// A luma row, U and V in (YV12 gives V as U), BGR out, pixels done returned.
type FusedPlanar = fn(&[u8], &[u8], &[u8], &mut [u8]) -> usize;

static PORTABLE: Shuffles = Shuffles {
    swap_pairs,
    swap_chroma,
    nv12: interleave_semi::<false>,
    nv21: interleave_semi::<true>,
    planar: interleave_planar,
    grey: grey_to_bgr,
    rgb: rgb_to_bgr,
    fused: None,
};

/// The fastest shuffles this CPU runs, the last of [`paths`]: on x86-64
/// with AVX2, the YUV layouts fused into the YUYV kernel and GREY and RGB
/// on AVX2; with SSSE3 alone, SSE2 gathers for the YUV layouts and SSSE3
/// for GREY and RGB; on aarch64, NEON; elsewhere (armv7 among them) the
/// portable code, written in fixed-size blocks for the vectorizer.
fn fastest() -> Path {
    paths().last().copied().unwrap_or(PORTABLE_PATH)
}

impl<'a> Rows<'a> {
    fn new(layout: &Layout, data: &'a [u8]) -> Result<Rows<'a>, ConvertError> {
        let format = layout.format();
        if format.is_compressed() {
            return Err(ConvertError::Compressed { format });
        }
        let need = layout.frame_len();
        if data.len() < need {
            return Err(ConvertError::InputTooShort {
                len: data.len(),
                need,
            });
        }
        let mut planes: [(&[u8], usize); 3] = [(&[], 0); 3];
        for (slot, plane) in planes.iter_mut().zip(layout.planes()) {
            // The layout's frame_len covers every plane, and data has it.
            *slot = (&data[plane.offset.min(need)..need], plane.stride);
        }
        Ok(Rows {
            format,
            width: layout.width() as usize,
            height: layout.height() as usize,
            planes,
            yuyv: pixel::row_converter(),
            shuffles: fastest().shuffles,
        })
    }

    /// Row `r` of plane `p`, `len` bytes. The layout guarantees it exists.
    fn row(&self, p: usize, r: usize, len: usize) -> &'a [u8] {
        let (bytes, stride) = self.planes[p];
        let start = r * stride;
        bytes.get(start..start + len).unwrap_or(&[])
    }

    /// Converts row `r` (top-down) into `dst`, `3 * width` bytes of BGR.
    fn convert(&self, r: usize, dst: &mut [u8]) {
        let w = self.width;
        let k = self.shuffles;
        match self.format {
            PixelFormat::Yuyv => (self.yuyv)(self.row(0, r, 2 * w), dst),
            PixelFormat::Uyvy | PixelFormat::Yvyu => {
                let src = self.row(0, r, 2 * w);
                let (fused, gather) = match self.format {
                    PixelFormat::Uyvy => (k.fused.map(|f| f.uyvy), k.swap_pairs),
                    _ => (k.fused.map(|f| f.yvyu), k.swap_chroma),
                };
                let done = fused.map_or(0, |f| f(src, dst));
                self.via_yuyv(dst, done, |x, n, out| gather(&src[2 * x..2 * (x + n)], out))
            }
            PixelFormat::Nv12 | PixelFormat::Nv21 => {
                let y = self.row(0, r, w);
                let c = self.row(1, r / 2, w);
                let (fused, gather) = match self.format {
                    PixelFormat::Nv21 => (k.fused.map(|f| f.nv21), k.nv21),
                    _ => (k.fused.map(|f| f.nv12), k.nv12),
                };
                let done = fused.map_or(0, |f| f(y, c, dst));
                self.via_yuyv(dst, done, |x, n, out| {
                    gather(&y[x..x + n], &c[x..x + n], out)
                })
            }
            PixelFormat::Yu12 | PixelFormat::Yv12 => {
                let y = self.row(0, r, w);
                let (mut u, mut v) = (self.row(1, r / 2, w / 2), self.row(2, r / 2, w / 2));
                if self.format == PixelFormat::Yv12 {
                    std::mem::swap(&mut u, &mut v);
                }
                let done = k.fused.map_or(0, |f| (f.planar)(y, u, v, dst));
                self.via_yuyv(dst, done, |x, n, out| {
                    (k.planar)(
                        &y[x..x + n],
                        &u[x / 2..(x + n) / 2],
                        &v[x / 2..(x + n) / 2],
                        out,
                    )
                })
            }
            PixelFormat::Grey => (k.grey)(self.row(0, r, w), dst),
            PixelFormat::Rgb3 => (k.rgb)(self.row(0, r, 3 * w), dst),
            PixelFormat::Bgr3 => dst.copy_from_slice(self.row(0, r, 3 * w)),
            // Refused in `new`.
            PixelFormat::Mjpg => {}
        }
    }

    /// Runs a YUV row from pixel `from` on (even; the pixels before it
    /// are done) through the YUYV kernel: `gather(x, n, yuyv)` writes
    /// pixels `x..x + n` (n even) as `2 * n` bytes of YUYV.
    fn via_yuyv(
        &self,
        dst: &mut [u8],
        from: usize,
        mut gather: impl FnMut(usize, usize, &mut [u8]),
    ) {
        let mut yuyv = [0u8; 2 * CHUNK];
        let mut x = from;
        let rest = dst.get_mut(3 * from..).unwrap_or_default();
        for out in rest.chunks_mut(3 * CHUNK) {
            let n = out.len() / 3;
            gather(x, n, &mut yuyv[..2 * n]);
            (self.yuyv)(&yuyv[..2 * n], out);
            x += n;
        }
    }
}

/// Bytes gathered per block by the shuffles below: a fixed size lets the
/// compiler drop the bounds checks and vectorise.
const BLOCK: usize = 32;

/// UYVY → YUYV: swap the bytes of each pair.
fn swap_pairs(src: &[u8], out: &mut [u8]) {
    let mut s = src.chunks_exact(BLOCK);
    let mut d = out.chunks_exact_mut(BLOCK);
    for (s, d) in (&mut s).zip(&mut d) {
        if let (Ok(s), Ok(d)) = (<&[u8; BLOCK]>::try_from(s), <&mut [u8; BLOCK]>::try_from(d)) {
            for i in 0..BLOCK / 2 {
                d[2 * i] = s[2 * i + 1];
                d[2 * i + 1] = s[2 * i];
            }
        }
    }
    for (s, d) in s
        .remainder()
        .chunks_exact(2)
        .zip(d.into_remainder().chunks_exact_mut(2))
    {
        d[0] = s[1];
        d[1] = s[0];
    }
}

/// YVYU → YUYV: swap U and V in each group of four.
fn swap_chroma(src: &[u8], out: &mut [u8]) {
    let mut s = src.chunks_exact(BLOCK);
    let mut d = out.chunks_exact_mut(BLOCK);
    for (s, d) in (&mut s).zip(&mut d) {
        if let (Ok(s), Ok(d)) = (<&[u8; BLOCK]>::try_from(s), <&mut [u8; BLOCK]>::try_from(d)) {
            for i in 0..BLOCK / 4 {
                d[4 * i] = s[4 * i];
                d[4 * i + 1] = s[4 * i + 3];
                d[4 * i + 2] = s[4 * i + 2];
                d[4 * i + 3] = s[4 * i + 1];
            }
        }
    }
    for (s, d) in s
        .remainder()
        .chunks_exact(4)
        .zip(d.into_remainder().chunks_exact_mut(4))
    {
        d.copy_from_slice(&[s[0], s[3], s[2], s[1]]);
    }
}

/// NV12 (`SWAP` false: U V pairs) or NV21 (true: V U) row → YUYV: `n`
/// luma bytes and `n` chroma bytes become `2 * n` bytes. (A constant
/// `SWAP`, not an argument: with the chroma indices fixed the loop
/// vectorizes, with them variable it ran at half the speed.)
fn interleave_semi<const SWAP: bool>(y: &[u8], c: &[u8], out: &mut [u8]) {
    const N: usize = BLOCK / 2;
    let (a, b) = if SWAP { (1, 0) } else { (0, 1) };
    let mut ys = y.chunks_exact(N);
    let mut cs = c.chunks_exact(N);
    let mut d = out.chunks_exact_mut(BLOCK);
    for ((y, c), d) in (&mut ys).zip(&mut cs).zip(&mut d) {
        if let (Ok(y), Ok(c), Ok(d)) = (
            <&[u8; N]>::try_from(y),
            <&[u8; N]>::try_from(c),
            <&mut [u8; BLOCK]>::try_from(d),
        ) {
            for i in 0..N / 2 {
                d[4 * i] = y[2 * i];
                d[4 * i + 1] = c[2 * i + a];
                d[4 * i + 2] = y[2 * i + 1];
                d[4 * i + 3] = c[2 * i + b];
            }
        }
    }
    for ((y, c), d) in ys
        .remainder()
        .chunks_exact(2)
        .zip(cs.remainder().chunks_exact(2))
        .zip(d.into_remainder().chunks_exact_mut(4))
    {
        d.copy_from_slice(&[y[0], c[a], y[1], c[b]]);
    }
}

/// YU12/YV12 row → YUYV: `n` luma bytes and `n / 2` each of U and V.
fn interleave_planar(y: &[u8], u: &[u8], v: &[u8], out: &mut [u8]) {
    const N: usize = BLOCK / 2;
    let mut ys = y.chunks_exact(N);
    let mut us = u.chunks_exact(N / 2);
    let mut vs = v.chunks_exact(N / 2);
    let mut d = out.chunks_exact_mut(BLOCK);
    for (((y, u), v), d) in (&mut ys).zip(&mut us).zip(&mut vs).zip(&mut d) {
        if let (Ok(y), Ok(u), Ok(v), Ok(d)) = (
            <&[u8; N]>::try_from(y),
            <&[u8; N / 2]>::try_from(u),
            <&[u8; N / 2]>::try_from(v),
            <&mut [u8; BLOCK]>::try_from(d),
        ) {
            for i in 0..N / 2 {
                d[4 * i] = y[2 * i];
                d[4 * i + 1] = u[i];
                d[4 * i + 2] = y[2 * i + 1];
                d[4 * i + 3] = v[i];
            }
        }
    }
    for (((y, u), v), d) in ys
        .remainder()
        .chunks_exact(2)
        .zip(us.remainder())
        .zip(vs.remainder())
        .zip(d.into_remainder().chunks_exact_mut(4))
    {
        d.copy_from_slice(&[y[0], *u, y[1], *v]);
    }
}

/// GREY → BGR: each value three times (`COLOR_GRAY2BGR`).
fn grey_to_bgr(src: &[u8], dst: &mut [u8]) {
    const N: usize = BLOCK / 2;
    let mut s = src.chunks_exact(N);
    let mut d = dst.chunks_exact_mut(3 * N);
    for (s, d) in (&mut s).zip(&mut d) {
        if let (Ok(s), Ok(d)) = (<&[u8; N]>::try_from(s), <&mut [u8; 3 * N]>::try_from(d)) {
            for i in 0..N {
                d[3 * i] = s[i];
                d[3 * i + 1] = s[i];
                d[3 * i + 2] = s[i];
            }
        }
    }
    for (s, d) in s
        .remainder()
        .iter()
        .zip(d.into_remainder().chunks_exact_mut(3))
    {
        d.fill(*s);
    }
}

/// RGB → BGR: swap the first and third byte of each pixel.
fn rgb_to_bgr(src: &[u8], dst: &mut [u8]) {
    const N: usize = BLOCK / 2;
    let mut s = src.chunks_exact(3 * N);
    let mut d = dst.chunks_exact_mut(3 * N);
    for (s, d) in (&mut s).zip(&mut d) {
        if let (Ok(s), Ok(d)) = (<&[u8; 3 * N]>::try_from(s), <&mut [u8; 3 * N]>::try_from(d)) {
            for i in 0..N {
                d[3 * i] = s[3 * i + 2];
                d[3 * i + 1] = s[3 * i + 1];
                d[3 * i + 2] = s[3 * i];
            }
        }
    }
    for (s, d) in s
        .remainder()
        .chunks_exact(3)
        .zip(d.into_remainder().chunks_exact_mut(3))
    {
        d.copy_from_slice(&[s[2], s[1], s[0]]);
    }
}

/// The shuffles with x86 intrinsics: SSE2 (baseline on x86-64) gathers
/// the YUV layouts into YUYV 16 pixels at a time, SSSE3's `pshufb`
/// spreads GREY and reorders RGB 16 pixels at a time; with AVX2, GREY and
/// RGB take 32 pixels per step and the YUV layouts skip the gather (see
/// [`Fused`]): each 32-pixel step builds the two YUYV registers of the
/// YUYV kernel's AVX2 step (`pixel::x86::bgr32_avx2`) from its own loads,
/// NV12 with one `vpunpcklbw`/`vpunpckhbw` pair, UYVY and YVYU with one
/// `vpshufb` each.
///
/// Why `unsafe` is allowed here: the portable loops of GREY and RGB do
/// not vectorize for the SSE2 baseline (a 3-byte interleave needs a byte
/// shuffle SSE2 lacks), and the gather-then-convert passes of the YUV
/// layouts cost up to 1.35x `cv2.cvtColor` where YUYV alone costs 0.75x.
/// Measured on this project's 2-core AMD EPYC (AVX2), CPU time of one
/// thread, medians of 3 rounds, against `cv2.cvtColor` on one thread
/// (OpenCV 5.0.0), `bench/run --only formats`, before this module's AVX2
/// paths (SSSE3 GREY, YUV gathered into YUYV rows; an idle run) → with
/// them (three runs at a load of 7-8, ratios of each run):
///
/// | format | 640x480 before | after ours / cv2, ratios  | 1280x720 before | after, ratios        |
/// |--------|----------------|---------------------------|-----------------|----------------------|
/// | GREY   | 1.32x          | 0.024 / 0.026 ms, 0.80-0.97x | 1.34x        | 0.067 / 0.074 ms, 0.75-0.91x |
/// | NV12   | 1.20x+         | 0.139 / 0.147 ms, 0.91-1.11x | ≤ 1.14x      | 0.379 / 0.438 ms, 0.76-0.91x |
/// | YU12   | 1.25x          | 0.129 / 0.151 ms, 0.85-0.97x | ≤ 1.14x      | 0.351 / 0.448 ms, 0.76-0.89x |
/// | YV12   | 1.20x          | 0.123 / 0.129 ms, 0.93-0.94x | ≤ 1.14x      | 0.349 / 0.392 ms, 0.77-0.89x |
/// | UYVY   | 1.10x          | 0.132 / 0.159 ms, 0.85-0.91x | ≤ 1.14x      | 0.408 / 0.480 ms, 0.79-0.84x |
///
/// (The portable code, for scale, on the earlier Xeon at 640x480: GREY
/// 0.085 ms, RGB3 0.178 ms, NV12 0.193 ms.)
///
/// The only unsafe operations are unaligned loads and stores inside
/// fixed-size arrays (so in bounds), and calling the SSSE3 and AVX2
/// functions, which only happens after runtime detection.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Fused, Shuffles};
    use crate::pixel::x86::bgr32_avx2;

    pub(super) static SHUFFLES: Shuffles = Shuffles {
        swap_pairs,
        swap_chroma,
        nv12: nv12::<false>,
        nv21: nv12::<true>,
        planar,
        grey,
        rgb,
        fused: None,
    };

    /// The same, with GREY and RGB on AVX2 and the YUV layouts fused into
    /// the YUYV kernel's AVX2 step (`shuffles` checks for AVX2).
    pub(super) static SHUFFLES_AVX2: Shuffles = Shuffles {
        grey: grey_with_avx2,
        rgb: rgb_with_avx2,
        fused: Some(&FUSED_AVX2),
        ..SHUFFLES
    };

    static FUSED_AVX2: Fused = Fused {
        uyvy: packed_with_avx2::<UYVY>,
        yvyu: packed_with_avx2::<YVYU>,
        nv12: semi_with_avx2::<false>,
        nv21: semi_with_avx2::<true>,
        planar: planar_with_avx2,
    };

    // The entry points: SHUFFLES is handed out only after SSSE3 (which
    // implies SSE2) was detected, SHUFFLES_AVX2 (and FUSED_AVX2 through
    // it) only after AVX2 (which implies SSSE3) was, which makes each call
    // below sound.
    fn swap_pairs(src: &[u8], out: &mut [u8]) {
        // SAFETY: SSSE3 was detected (see above).
        unsafe { swap_pairs_ssse3(src, out) }
    }
    fn swap_chroma(src: &[u8], out: &mut [u8]) {
        // SAFETY: SSSE3 was detected (see above).
        unsafe { swap_chroma_ssse3(src, out) }
    }
    fn nv12<const SWAP: bool>(y: &[u8], c: &[u8], out: &mut [u8]) {
        // SAFETY: SSSE3 was detected (see above).
        unsafe { nv12_ssse3::<SWAP>(y, c, out) }
    }
    fn planar(y: &[u8], u: &[u8], v: &[u8], out: &mut [u8]) {
        // SAFETY: SSSE3 was detected (see above).
        unsafe { planar_ssse3(y, u, v, out) }
    }
    fn grey(src: &[u8], dst: &mut [u8]) {
        // SAFETY: SSSE3 was detected (see above).
        unsafe { grey_ssse3(src, dst) }
    }
    fn rgb(src: &[u8], dst: &mut [u8]) {
        // SAFETY: SSSE3 was detected (see above).
        unsafe { rgb_ssse3(src, dst) }
    }
    fn grey_with_avx2(src: &[u8], dst: &mut [u8]) {
        // SAFETY: AVX2 was detected (see above).
        unsafe { grey_avx2(src, dst) }
    }
    fn rgb_with_avx2(src: &[u8], dst: &mut [u8]) {
        // SAFETY: AVX2 was detected (see above).
        unsafe { rgb_avx2(src, dst) }
    }
    fn packed_with_avx2<const ORDER: u8>(src: &[u8], dst: &mut [u8]) -> usize {
        // SAFETY: AVX2 was detected (see above).
        unsafe { packed_avx2::<ORDER>(src, dst) }
    }
    fn semi_with_avx2<const SWAP: bool>(y: &[u8], c: &[u8], dst: &mut [u8]) -> usize {
        // SAFETY: AVX2 was detected (see above).
        unsafe { semi_avx2::<SWAP>(y, c, dst) }
    }
    fn planar_with_avx2(y: &[u8], u: &[u8], v: &[u8], dst: &mut [u8]) -> usize {
        // SAFETY: AVX2 was detected (see above).
        unsafe { planar_avx2(y, u, v, dst) }
    }

    // Loads and stores take fixed-size arrays, which the loops below cut
    // with `chunks_exact`: no index is checked per step, and every access
    // is in bounds by type.

    /// An unaligned 16-byte load.
    #[inline]
    fn load(bytes: &[u8; 16]) -> __m128i {
        // SAFETY: `bytes` is 16 readable bytes; SSE2 is baseline on x86-64.
        unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
    }

    /// An unaligned 16-byte store.
    #[inline]
    fn store(bytes: &mut [u8; 16], v: __m128i) {
        // SAFETY: `bytes` is 16 writable bytes; SSE2 is baseline on x86-64.
        unsafe { _mm_storeu_si128(bytes.as_mut_ptr().cast(), v) }
    }

    /// An 8-byte load into the low half.
    #[target_feature(enable = "ssse3")]
    #[inline]
    fn load8(bytes: &[u8; 8]) -> __m128i {
        _mm_set_epi64x(0, i64::from_le_bytes(*bytes))
    }

    /// The 16-byte array at `at` of a fixed-size array (a constant offset:
    /// checked at compile time once inlined).
    #[inline(always)]
    fn part<const N: usize>(bytes: &[u8; N], at: usize) -> &[u8; 16] {
        bytes[at..at + 16].try_into().unwrap_or(&[0; 16])
    }

    /// An unaligned 16-byte store at `at` of a fixed-size array (a
    /// constant offset: checked at compile time once inlined).
    #[inline(always)]
    fn store_at<const N: usize>(bytes: &mut [u8; N], at: usize, v: __m128i) {
        if let Some(chunk) = bytes[at..].first_chunk_mut() {
            store(chunk, v);
        }
    }

    /// Swaps the two bytes of every 16-bit lane.
    #[target_feature(enable = "ssse3")]
    #[inline]
    fn swap16(x: __m128i) -> __m128i {
        _mm_or_si128(_mm_slli_epi16::<8>(x), _mm_srli_epi16::<8>(x))
    }

    #[target_feature(enable = "ssse3")]
    fn swap_pairs_ssse3(src: &[u8], out: &mut [u8]) {
        for (s, d) in src.chunks_exact(16).zip(out.chunks_exact_mut(16)) {
            if let (Ok(s), Ok(d)) = (s.try_into(), d.try_into()) {
                store(d, swap16(load(s)));
            }
        }
        let n = src.len().min(out.len()) / 16 * 16;
        super::swap_pairs(&src[n..], &mut out[n..]);
    }

    #[target_feature(enable = "ssse3")]
    fn swap_chroma_ssse3(src: &[u8], out: &mut [u8]) {
        let luma = _mm_set1_epi32(0x00ff_00ff);
        for (s, d) in src.chunks_exact(16).zip(out.chunks_exact_mut(16)) {
            if let (Ok(s), Ok(d)) = (s.try_into(), d.try_into()) {
                let x = load(s);
                // V and U are bytes 1 and 3 of each 32-bit lane: rotate them by 16.
                let c = _mm_andnot_si128(luma, x);
                let c = _mm_or_si128(_mm_slli_epi32::<16>(c), _mm_srli_epi32::<16>(c));
                store(d, _mm_or_si128(_mm_and_si128(x, luma), c));
            }
        }
        let n = src.len().min(out.len()) / 16 * 16;
        super::swap_chroma(&src[n..], &mut out[n..]);
    }

    #[target_feature(enable = "ssse3")]
    fn nv12_ssse3<const SWAP: bool>(y: &[u8], c: &[u8], out: &mut [u8]) {
        let steps = y.chunks_exact(16).zip(c.chunks_exact(16));
        for ((y, c), d) in steps.zip(out.chunks_exact_mut(32)) {
            if let (Ok(y), Ok(c), Ok(d)) =
                (y.try_into(), c.try_into(), <&mut [u8; 32]>::try_from(d))
            {
                let uv = if SWAP { swap16(load(c)) } else { load(c) };
                let luma = load(y);
                store_at(d, 0, _mm_unpacklo_epi8(luma, uv));
                store_at(d, 16, _mm_unpackhi_epi8(luma, uv));
            }
        }
        let n = y.len().min(c.len()).min(out.len() / 2) / 16 * 16;
        super::interleave_semi::<SWAP>(&y[n..], &c[n..], &mut out[2 * n..]);
    }

    #[target_feature(enable = "ssse3")]
    fn planar_ssse3(y: &[u8], u: &[u8], v: &[u8], out: &mut [u8]) {
        let steps = y
            .chunks_exact(16)
            .zip(u.chunks_exact(8))
            .zip(v.chunks_exact(8));
        for (((y, u), v), d) in steps.zip(out.chunks_exact_mut(32)) {
            if let (Ok(y), Ok(u), Ok(v), Ok(d)) = (
                y.try_into(),
                u.try_into(),
                v.try_into(),
                <&mut [u8; 32]>::try_from(d),
            ) {
                let uv = _mm_unpacklo_epi8(load8(u), load8(v));
                let luma = load(y);
                store_at(d, 0, _mm_unpacklo_epi8(luma, uv));
                store_at(d, 16, _mm_unpackhi_epi8(luma, uv));
            }
        }
        let n = y.len().min(2 * u.len()).min(2 * v.len()).min(out.len() / 2) / 16 * 16;
        super::interleave_planar(&y[n..], &u[n / 2..], &v[n / 2..], &mut out[2 * n..]);
    }

    /// `pshufb` masks spreading 16 grey bytes over 48 output bytes, one
    /// per 16-byte third: output byte `p` takes grey byte `p / 3`.
    const fn grey_masks() -> [[u8; 16]; 3] {
        let mut all = [[0u8; 16]; 3];
        let mut p = 0;
        while p < 48 {
            all[p / 16][p % 16] = (p / 3) as u8;
            p += 1;
        }
        all
    }
    const GREY_MASKS: [[u8; 16]; 3] = grey_masks();

    #[target_feature(enable = "ssse3")]
    fn grey_ssse3(src: &[u8], dst: &mut [u8]) {
        let masks = GREY_MASKS.map(|m| load(&m));
        for (s, d) in src.chunks_exact(16).zip(dst.chunks_exact_mut(48)) {
            if let (Ok(s), Ok(d)) = (s.try_into(), <&mut [u8; 48]>::try_from(d)) {
                let g = load(s);
                for (part, mask) in masks.iter().enumerate() {
                    store_at(d, 16 * part, _mm_shuffle_epi8(g, *mask));
                }
            }
        }
        let n = src.len().min(dst.len() / 3) / 16 * 16;
        super::grey_to_bgr(&src[n..], &mut dst[3 * n..]);
    }

    /// GREY → BGR with AVX2, 32 pixels per step: `vpshufb` works within
    /// each 128-bit lane, so one 32-byte load and the three SSSE3 masks in
    /// both lanes give output bytes 0..16 and 48..64, 16..32 and 64..80,
    /// 32..48 and 80..96; three lane permutes make them three 32-byte
    /// stores (half the stores of the SSSE3 path, which were its limit).
    #[target_feature(enable = "avx2")]
    fn grey_avx2(src: &[u8], dst: &mut [u8]) {
        let masks = GREY_MASKS.map(|m| _mm256_broadcastsi128_si256(load(&m)));
        for (s, d) in src.chunks_exact(32).zip(dst.chunks_exact_mut(96)) {
            if let (Ok(s), Ok(d)) = (<&[u8; 32]>::try_from(s), <&mut [u8; 96]>::try_from(d)) {
                // SAFETY: `s` is 32 readable bytes.
                let g = unsafe { _mm256_loadu_si256(s.as_ptr().cast()) };
                let [a, b, c] = masks.map(|m| _mm256_shuffle_epi8(g, m));
                let out = [
                    _mm256_permute2x128_si256::<0x20>(a, b),
                    _mm256_permute2x128_si256::<0x30>(c, a),
                    _mm256_permute2x128_si256::<0x31>(b, c),
                ];
                for (at, v) in [0, 32, 64].into_iter().zip(out) {
                    if let Some(chunk) = d[at..].first_chunk_mut::<32>() {
                        // SAFETY: `chunk` is 32 writable bytes.
                        unsafe { _mm256_storeu_si256(chunk.as_mut_ptr().cast(), v) }
                    }
                }
            }
        }
        let n = src.len().min(dst.len() / 3) / 32 * 32;
        grey_ssse3(&src[n..], &mut dst[3 * n..]);
    }

    /// Byte masks of the B, G and R positions (`p % 3` = 0, 1, 2) in each
    /// 16-byte third of a 48-byte run.
    const fn channel_masks() -> [[[u8; 16]; 3]; 3] {
        let mut all = [[[0u8; 16]; 3]; 3];
        let mut p = 0;
        while p < 48 {
            all[p / 16][p % 3][p % 16] = 0xff;
            p += 1;
        }
        all
    }
    const CHANNEL_MASKS: [[[u8; 16]; 3]; 3] = channel_masks();

    /// The same for 32-byte thirds of a 96-byte run.
    const fn wide_channel_masks() -> [[[u8; 32]; 3]; 3] {
        let mut all = [[[0u8; 32]; 3]; 3];
        let mut p = 0;
        while p < 96 {
            all[p / 32][p % 3][p % 32] = 0xff;
            p += 1;
        }
        all
    }
    const WIDE_CHANNEL_MASKS: [[[u8; 32]; 3]; 3] = wide_channel_masks();

    /// RGB → BGR, 16 pixels (48 bytes) per step. Each output byte comes
    /// from 2 bytes later (B), the same place (G) or 2 bytes earlier (R),
    /// so each 16-byte third is its own register, that register shifted by
    /// 2 bytes either way (`palignr` across the neighbours), and three
    /// masks: no table lookup at all.
    #[target_feature(enable = "ssse3")]
    fn rgb_ssse3(src: &[u8], dst: &mut [u8]) {
        let masks = CHANNEL_MASKS.map(|part| part.map(|m| load(&m)));
        let zero = _mm_setzero_si128();
        for (s, d) in src.chunks_exact(48).zip(dst.chunks_exact_mut(48)) {
            let (Ok(s), Ok(d)) = (<&[u8; 48]>::try_from(s), <&mut [u8; 48]>::try_from(d)) else {
                continue;
            };
            let r = [load(part(s, 0)), load(part(s, 16)), load(part(s, 32))];
            // Bytes from beyond the run are never selected: B at p + 2 and
            // R at p - 2 stay within their own pixel.
            let later = [
                _mm_alignr_epi8::<2>(r[1], r[0]),
                _mm_alignr_epi8::<2>(r[2], r[1]),
                _mm_alignr_epi8::<2>(zero, r[2]),
            ];
            let earlier = [
                _mm_alignr_epi8::<14>(r[0], zero),
                _mm_alignr_epi8::<14>(r[1], r[0]),
                _mm_alignr_epi8::<14>(r[2], r[1]),
            ];
            for part in 0..3 {
                let [b, g, red] = masks[part];
                let out = _mm_or_si128(
                    _mm_and_si128(later[part], b),
                    _mm_or_si128(_mm_and_si128(r[part], g), _mm_and_si128(earlier[part], red)),
                );
                store_at(d, 16 * part, out);
            }
        }
        let n = src.len().min(dst.len()) / 48 * 48;
        super::rgb_to_bgr(&src[n..], &mut dst[n..]);
    }

    /// RGB → BGR with AVX2, 32 pixels (96 bytes) per step: each 32-byte
    /// output is three unaligned loads (2 bytes later, in place, 2 bytes
    /// earlier) masked to the B, G and R positions. Loads reach 2 bytes
    /// past either end of a step, so the steps run from byte 48 to at least
    /// 2 bytes before the end, and the SSSE3 code does the edges.
    #[target_feature(enable = "avx2")]
    fn rgb_avx2(src: &[u8], dst: &mut [u8]) {
        const LEAD: usize = 48;
        let len = src.len().min(dst.len()) / 3 * 3;
        let steps = len.saturating_sub(LEAD + 2) / 96;
        if steps == 0 {
            return rgb_ssse3(src, dst);
        }
        let end = LEAD + 96 * steps;
        // SAFETY: each mask is 32 readable bytes.
        let masks = WIDE_CHANNEL_MASKS
            .map(|chunk| chunk.map(|m| unsafe { _mm256_loadu_si256(m.as_ptr().cast()) }));
        let (from, to) = (src.as_ptr(), dst.as_mut_ptr());
        for step in 0..steps {
            for (chunk, [b, g, r]) in masks.iter().enumerate() {
                let at = LEAD + 96 * step + 32 * chunk;
                // SAFETY: LEAD <= at and at + 32 <= end, with end + 2 <=
                // len: every load (at - 2 .. at + 34) and the store
                // (at .. at + 32) are inside both slices.
                unsafe {
                    let later = _mm256_loadu_si256(from.add(at + 2).cast());
                    let same = _mm256_loadu_si256(from.add(at).cast());
                    let earlier = _mm256_loadu_si256(from.add(at - 2).cast());
                    let out = _mm256_or_si256(
                        _mm256_and_si256(later, *b),
                        _mm256_or_si256(_mm256_and_si256(same, *g), _mm256_and_si256(earlier, *r)),
                    );
                    _mm256_storeu_si256(to.add(at).cast(), out);
                }
            }
        }
        rgb_ssse3(&src[..LEAD], &mut dst[..LEAD]);
        rgb_ssse3(&src[end..len], &mut dst[end..len]);
    }

    /// `packed_avx2`'s layouts.
    const UYVY: u8 = 0;
    const YVYU: u8 = 1;

    /// A `pshufb` mask taking each group of four bytes to YUYV order:
    /// output byte `k` of a group is input byte `order[k]`.
    const fn group_mask(order: [u8; 4]) -> [u8; 16] {
        let mut m = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            m[i] = (i / 4 * 4) as u8 + order[i % 4];
            i += 1;
        }
        m
    }
    /// U Y0 V Y1 → Y0 U Y1 V (and NV21's V U pairs → U V: the same swap).
    const SWAP_PAIRS: [u8; 16] = group_mask([1, 0, 3, 2]);
    /// Y0 V Y1 U → Y0 U Y1 V.
    const SWAP_CHROMA: [u8; 16] = group_mask([0, 3, 2, 1]);

    /// A 32-byte register from two 16-byte halves, `lo` in the low lane.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn lanes(lo: &[u8; 16], hi: &[u8; 16]) -> __m256i {
        _mm256_set_m128i(load(hi), load(lo))
    }

    /// A 32-byte load.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn load32(bytes: &[u8; 32]) -> __m256i {
        // SAFETY: `bytes` is 32 readable bytes.
        unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
    }

    /// UYVY or YVYU (`ORDER`) → BGR, 32 pixels per step, pixels converted
    /// returned: the loads put pixels 0..8 and 16..24 in one register and
    /// 8..16 and 24..32 in the other, as the YUYV step does, and one
    /// `vpshufb` each makes them YUYV.
    #[target_feature(enable = "avx2")]
    fn packed_avx2<const ORDER: u8>(src: &[u8], dst: &mut [u8]) -> usize {
        let mask = if ORDER == UYVY {
            SWAP_PAIRS
        } else {
            SWAP_CHROMA
        };
        let mask = _mm256_broadcastsi128_si256(load(&mask));
        for (s, d) in src.chunks_exact(64).zip(dst.chunks_exact_mut(96)) {
            if let (Ok(s), Ok(d)) = (<&[u8; 64]>::try_from(s), d.try_into()) {
                let a = _mm256_shuffle_epi8(lanes(part(s, 0), part(s, 32)), mask);
                let b = _mm256_shuffle_epi8(lanes(part(s, 16), part(s, 48)), mask);
                // SAFETY: AVX2 was detected (this function's caller).
                unsafe { bgr32_avx2(a, b, d) }
            }
        }
        32 * (src.len() / 64).min(dst.len() / 96)
    }

    /// NV12 or NV21 (`SWAP`) → BGR, 32 pixels per step, pixels converted
    /// returned. `vpunpcklbw` interleaves within each 128-bit lane, so
    /// luma and chroma loads of 32 pixels give pixels 0..8 and 16..24
    /// (low unpack) and 8..16 and 24..32 (high): the YUYV step's order.
    #[target_feature(enable = "avx2")]
    fn semi_avx2<const SWAP: bool>(y: &[u8], c: &[u8], dst: &mut [u8]) -> usize {
        let swap = _mm256_broadcastsi128_si256(load(&SWAP_PAIRS));
        let steps = y.chunks_exact(32).zip(c.chunks_exact(32));
        for ((y, c), d) in steps.zip(dst.chunks_exact_mut(96)) {
            if let (Ok(y), Ok(c), Ok(d)) = (y.try_into(), c.try_into(), d.try_into()) {
                let luma = load32(y);
                let uv = if SWAP {
                    _mm256_shuffle_epi8(load32(c), swap)
                } else {
                    load32(c)
                };
                let (a, b) = (
                    _mm256_unpacklo_epi8(luma, uv),
                    _mm256_unpackhi_epi8(luma, uv),
                );
                // SAFETY: AVX2 was detected (this function's caller).
                unsafe { bgr32_avx2(a, b, d) }
            }
        }
        32 * (y.len() / 32).min(c.len() / 32).min(dst.len() / 96)
    }

    /// YU12 → BGR (YV12 with U and V given swapped), 32 pixels per step,
    /// pixels converted returned: 16 U and 16 V interleave into the
    /// chroma of 32 pixels, then as NV12.
    #[target_feature(enable = "avx2")]
    fn planar_avx2(y: &[u8], u: &[u8], v: &[u8], dst: &mut [u8]) -> usize {
        let steps = y
            .chunks_exact(32)
            .zip(u.chunks_exact(16))
            .zip(v.chunks_exact(16));
        for (((y, u), v), d) in steps.zip(dst.chunks_exact_mut(96)) {
            if let (Ok(y), Ok(u), Ok(v), Ok(d)) =
                (y.try_into(), u.try_into(), v.try_into(), d.try_into())
            {
                let (u, v) = (load(u), load(v));
                let uv = _mm256_set_m128i(_mm_unpackhi_epi8(u, v), _mm_unpacklo_epi8(u, v));
                let luma = load32(y);
                let (a, b) = (
                    _mm256_unpacklo_epi8(luma, uv),
                    _mm256_unpackhi_epi8(luma, uv),
                );
                // SAFETY: AVX2 was detected (this function's caller).
                unsafe { bgr32_avx2(a, b, d) }
            }
        }
        32 * (y.len() / 32)
            .min(u.len() / 16)
            .min(v.len() / 16)
            .min(dst.len() / 96)
    }
}

/// The shuffles with aarch64 NEON, 16 pixels per step: the YUV layouts
/// gathered into YUYV with `vst2q` (luma and chroma interleaved on the
/// store), YVYU's chroma swapped with one `tbl`, GREY spread and RGB
/// reordered with `vld3q`/`vst3q`. The YUYV rows then go through `pixel`'s
/// NEON kernel. UYVY keeps the portable swap (see `SHUFFLES`).
///
/// Why `unsafe` is allowed here: the portable loops do vectorize for NEON,
/// but into longer code. Instructions retired per 640x480 frame, whole
/// conversion to BGR (the YUYV kernel, 1,000,246 of them, NEON in both),
/// counted under qemu-user by `bench/arm-insns`, portable → NEON:
///
/// | format | portable  | NEON      |       |
/// |--------|-----------|-----------|-------|
/// | NV12   | 1,353,138 | 1,155,405 | 1.17x fewer (the gather 2.3x) |
/// | YU12   | 1,460,382 | 1,207,617 | 1.21x fewer (the gather 2.2x) |
/// | GREY   |   994,611 |   150,845 | 6.59x fewer |
///
/// NEON is part of the aarch64 baseline (see `pixel`'s `neon`), so there
/// is no run-time check. The only unsafe operations are NEON loads and
/// stores through pointers taken from fixed-size arrays of exactly the
/// size they access.
#[cfg(target_arch = "aarch64")]
#[allow(unsafe_code)]
mod neon {
    use std::arch::aarch64::*;

    use super::Shuffles;

    pub(super) static SHUFFLES: Shuffles = Shuffles {
        // The compiler makes the portable UYVY swap `rev16` on its own, in
        // 32-byte steps: 1,207,233 instructions per 640x480 frame against
        // 1,241,867 with a 16-byte NEON step (`bench/arm-insns`).
        swap_pairs: super::swap_pairs,
        swap_chroma,
        nv12: nv12::<false>,
        nv21: nv12::<true>,
        planar,
        grey,
        rgb,
        fused: None,
    };

    /// YVYU → YUYV as a `tbl` index: bytes 1 and 3 of each group swap.
    const SWAP_CHROMA: [u8; 16] = [0, 3, 2, 1, 4, 7, 6, 5, 8, 11, 10, 9, 12, 15, 14, 13];

    fn swap_chroma(src: &[u8], out: &mut [u8]) {
        // SAFETY: NEON is baseline; the index is 16 readable bytes.
        let index = unsafe { vld1q_u8(SWAP_CHROMA.as_ptr()) };
        for (s, d) in src.chunks_exact(16).zip(out.chunks_exact_mut(16)) {
            if let (Ok(s), Ok(d)) = (<&[u8; 16]>::try_from(s), <&mut [u8; 16]>::try_from(d)) {
                // SAFETY: NEON is baseline; `s` and `d` are the 16 bytes
                // read and written.
                unsafe { vst1q_u8(d.as_mut_ptr(), vqtbl1q_u8(vld1q_u8(s.as_ptr()), index)) }
            }
        }
        let n = src.len().min(out.len()) / 16 * 16;
        super::swap_chroma(&src[n..], &mut out[n..]);
    }

    /// NV12 (or NV21, `SWAP`: its V U pairs reversed by `rev16`): 16 luma
    /// and 16 chroma bytes, stored interleaved by `vst2q`: Y0 U Y1 V ...
    fn nv12<const SWAP: bool>(y: &[u8], c: &[u8], out: &mut [u8]) {
        let steps = y.chunks_exact(16).zip(c.chunks_exact(16));
        for ((y, c), d) in steps.zip(out.chunks_exact_mut(32)) {
            if let (Ok(y), Ok(c), Ok(d)) = (
                <&[u8; 16]>::try_from(y),
                <&[u8; 16]>::try_from(c),
                <&mut [u8; 32]>::try_from(d),
            ) {
                // SAFETY: NEON is baseline; `y` and `c` are the 16 bytes
                // read each, `d` the 32 bytes written.
                unsafe {
                    let uv = vld1q_u8(c.as_ptr());
                    let uv = if SWAP { vrev16q_u8(uv) } else { uv };
                    vst2q_u8(d.as_mut_ptr(), uint8x16x2_t(vld1q_u8(y.as_ptr()), uv));
                }
            }
        }
        let n = y.len().min(c.len()).min(out.len() / 2) / 16 * 16;
        super::interleave_semi::<SWAP>(&y[n..], &c[n..], &mut out[2 * n..]);
    }

    /// YU12: 8 U and 8 V zipped into the chroma pairs of 16 pixels, then
    /// as NV12.
    fn planar(y: &[u8], u: &[u8], v: &[u8], out: &mut [u8]) {
        let steps = y
            .chunks_exact(16)
            .zip(u.chunks_exact(8))
            .zip(v.chunks_exact(8));
        for (((y, u), v), d) in steps.zip(out.chunks_exact_mut(32)) {
            if let (Ok(y), Ok(u), Ok(v), Ok(d)) = (
                <&[u8; 16]>::try_from(y),
                <&[u8; 8]>::try_from(u),
                <&[u8; 8]>::try_from(v),
                <&mut [u8; 32]>::try_from(d),
            ) {
                // SAFETY: NEON is baseline; each pointer comes from an
                // array of exactly the size its load or store accesses.
                unsafe {
                    let (u, v) = (vld1_u8(u.as_ptr()), vld1_u8(v.as_ptr()));
                    let uv = vcombine_u8(vzip1_u8(u, v), vzip2_u8(u, v));
                    vst2q_u8(d.as_mut_ptr(), uint8x16x2_t(vld1q_u8(y.as_ptr()), uv));
                }
            }
        }
        let n = y.len().min(2 * u.len()).min(2 * v.len()).min(out.len() / 2) / 16 * 16;
        super::interleave_planar(&y[n..], &u[n / 2..], &v[n / 2..], &mut out[2 * n..]);
    }

    /// GREY: 16 values stored three times interleaved by `vst3q`.
    fn grey(src: &[u8], dst: &mut [u8]) {
        for (s, d) in src.chunks_exact(16).zip(dst.chunks_exact_mut(48)) {
            if let (Ok(s), Ok(d)) = (<&[u8; 16]>::try_from(s), <&mut [u8; 48]>::try_from(d)) {
                // SAFETY: NEON is baseline; `s` is the 16 bytes read, `d`
                // the 48 written.
                unsafe {
                    let g = vld1q_u8(s.as_ptr());
                    vst3q_u8(d.as_mut_ptr(), uint8x16x3_t(g, g, g));
                }
            }
        }
        let n = src.len().min(dst.len() / 3) / 16 * 16;
        super::grey_to_bgr(&src[n..], &mut dst[3 * n..]);
    }

    /// RGB: `vld3q` splits 16 pixels into R, G and B, `vst3q` stores them
    /// back as B, G, R.
    fn rgb(src: &[u8], dst: &mut [u8]) {
        for (s, d) in src.chunks_exact(48).zip(dst.chunks_exact_mut(48)) {
            if let (Ok(s), Ok(d)) = (<&[u8; 48]>::try_from(s), <&mut [u8; 48]>::try_from(d)) {
                // SAFETY: NEON is baseline; `s` and `d` are the 48 bytes
                // read and written.
                unsafe {
                    let p = vld3q_u8(s.as_ptr());
                    vst3q_u8(d.as_mut_ptr(), uint8x16x3_t(p.2, p.1, p.0));
                }
            }
        }
        let n = src.len().min(dst.len()) / 48 * 48;
        super::rgb_to_bgr(&src[n..], &mut dst[n..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Pseudo-random bytes from `seed`.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                (state >> 56) as u8
            })
            .collect()
    }

    /// OpenCV's formula for one pixel, written for clarity.
    fn yuv_pixel(y: u8, u: u8, v: u8) -> [u8; 3] {
        let y = (i32::from(y) - 16).max(0) * 1_220_542;
        let (u, v) = (i32::from(u) - 128, i32::from(v) - 128);
        let half = 1 << 19;
        let b = (y + half + 2_116_026 * u) >> 20;
        let g = (y + half - 852_492 * v - 409_993 * u) >> 20;
        let r = (y + half + 1_673_527 * v) >> 20;
        [b, g, r].map(|c| c.clamp(0, 255) as u8)
    }

    /// The reference: each pixel of `layout`'s frame found by its own
    /// format's definition, with no shared code with the module.
    fn reference(layout: &Layout, data: &[u8]) -> Vec<u8> {
        let (w, h) = (layout.width() as usize, layout.height() as usize);
        let p = layout.planes();
        let at = |plane: usize, row: usize, col: usize| {
            data[p[plane].offset + row * p[plane].stride + col]
        };
        let mut out = Vec::new();
        for r in 0..h {
            for x in 0..w {
                let pair = (x / 2) * 4;
                let px = match layout.format() {
                    PixelFormat::Yuyv => {
                        yuv_pixel(at(0, r, 2 * x), at(0, r, pair + 1), at(0, r, pair + 3))
                    }
                    PixelFormat::Uyvy => {
                        yuv_pixel(at(0, r, 2 * x + 1), at(0, r, pair), at(0, r, pair + 2))
                    }
                    PixelFormat::Yvyu => {
                        yuv_pixel(at(0, r, 2 * x), at(0, r, pair + 3), at(0, r, pair + 1))
                    }
                    PixelFormat::Nv12 => yuv_pixel(
                        at(0, r, x),
                        at(1, r / 2, x / 2 * 2),
                        at(1, r / 2, x / 2 * 2 + 1),
                    ),
                    PixelFormat::Nv21 => yuv_pixel(
                        at(0, r, x),
                        at(1, r / 2, x / 2 * 2 + 1),
                        at(1, r / 2, x / 2 * 2),
                    ),
                    PixelFormat::Yu12 => {
                        yuv_pixel(at(0, r, x), at(1, r / 2, x / 2), at(2, r / 2, x / 2))
                    }
                    PixelFormat::Yv12 => {
                        yuv_pixel(at(0, r, x), at(2, r / 2, x / 2), at(1, r / 2, x / 2))
                    }
                    PixelFormat::Grey => [at(0, r, x); 3],
                    PixelFormat::Rgb3 => {
                        [at(0, r, 3 * x + 2), at(0, r, 3 * x + 1), at(0, r, 3 * x)]
                    }
                    PixelFormat::Bgr3 => {
                        [at(0, r, 3 * x), at(0, r, 3 * x + 1), at(0, r, 3 * x + 2)]
                    }
                    PixelFormat::Mjpg => unreachable!("not raw"),
                };
                out.extend(px);
            }
        }
        out
    }

    fn raw_formats() -> impl Iterator<Item = PixelFormat> {
        PixelFormat::ALL.into_iter().filter(|f| !f.is_compressed())
    }

    /// Every set of shuffles this CPU can run, whichever `to_bgr` picks.
    fn all_shuffles() -> Vec<(&'static str, &'static Shuffles)> {
        paths().iter().map(|p| (p.name, p.shuffles)).collect()
    }

    proptest! {
        /// Every format on every path equals the reference, with sizes
        /// that leave tails after every block and chunk, and padded
        /// strides (odd for the formats that allow it).
        #[test]
        fn every_format_matches_the_reference(
            half_width in 1usize..200,
            half_height in 1usize..3,
            padding in 0u32..9,
            seed in any::<u64>(),
        ) {
            for format in raw_formats() {
                let (w, h) = (2 * half_width as u32, 2 * half_height as u32);
                // YU12/YV12 chroma strides are half the luma's: keep it even.
                let padding = if format.subsampling() == crate::format::Subsampling::Yuv420 { 2 * padding } else { padding };
                let bpl = w * format.first_plane_bytes_per_pixel() + padding;
                let layout = Layout::new(format, w, h, bpl).unwrap();
                let data = noise(layout.frame_len(), seed);
                let expected = reference(&layout, &data);
                let mut ours = vec![0x5a; expected.len() + 1];
                to_bgr(&layout, &data, &mut ours).unwrap();
                prop_assert!(ours[..expected.len()] == expected[..], "{}", format);
                prop_assert_eq!(ours[expected.len()], 0x5a);

                let mut file = Vec::new();
                to_bmp(&layout, &data, &mut file).unwrap();
                let mut direct = Vec::new();
                bmp::encode_bgr24(&expected, w, h, &mut direct).unwrap();
                prop_assert!(file == direct, "{} BMP", format);

                for (path, shuffles) in all_shuffles() {
                    let mut rows = Rows::new(&layout, &data).unwrap();
                    rows.shuffles = shuffles;
                    let mut ours = vec![0u8; expected.len()];
                    for (r, dst) in ours.chunks_exact_mut(3 * w as usize).enumerate() {
                        rows.convert(r, dst);
                    }
                    prop_assert!(ours == expected, "{} on the {} path", format, path);
                }
            }
        }
    }

    /// Each path's shuffles give the portable ones' bytes at every width
    /// from 1 to 70 pixels (every tail after 16- and 32-pixel steps, twice
    /// over), on random rows, and write nothing past their output; each
    /// fused converter gives the portable gather's BGR for the pixels it
    /// says it did. Every width for GREY and RGB, even ones for the YUV
    /// layouts (they pair pixels).
    #[test]
    fn every_path_matches_the_portable_shuffles_at_every_width() {
        let yuyv_bgr = crate::pixel::row_paths()[0].1;
        let p = &PORTABLE;
        for (path, k) in all_shuffles() {
            for w in 1..=70usize {
                let seed = w as u64;
                // `f(out)` on a buffer of `len + 1` bytes must equal the
                // portable `g(out)` and keep the spare byte.
                let check =
                    |what: &str, len: usize, f: &dyn Fn(&mut [u8]), g: &dyn Fn(&mut [u8])| {
                        let mut ours = vec![0x5a; len + 1];
                        let mut theirs = vec![0x5a; len + 1];
                        f(&mut ours[..len]);
                        g(&mut theirs[..len]);
                        assert!(ours == theirs, "{what} on the {path} path, width {w}");
                    };
                let (grey, rgb) = (noise(w, seed), noise(3 * w, seed));
                check("GREY", 3 * w, &|o| (k.grey)(&grey, o), &|o| {
                    (p.grey)(&grey, o)
                });
                check("RGB3", 3 * w, &|o| (k.rgb)(&rgb, o), &|o| (p.rgb)(&rgb, o));
                if w % 2 == 1 {
                    continue;
                }
                let packed = noise(2 * w, seed);
                let (y, c) = (noise(w, seed), noise(w, seed + 1));
                let (u, v) = (&c[..w / 2], &c[w / 2..]);
                let gathers: [(&str, Packed, Packed); 2] = [
                    ("UYVY", k.swap_pairs, p.swap_pairs),
                    ("YVYU", k.swap_chroma, p.swap_chroma),
                ];
                for (what, ours, theirs) in gathers {
                    check(what, 2 * w, &|o| ours(&packed, o), &|o| theirs(&packed, o));
                }
                let semi: [(&str, SemiPlanar, SemiPlanar); 2] =
                    [("NV12", k.nv12, p.nv12), ("NV21", k.nv21, p.nv21)];
                for (what, ours, theirs) in semi {
                    check(what, 2 * w, &|o| ours(&y, &c, o), &|o| theirs(&y, &c, o));
                }
                check("YU12", 2 * w, &|o| (k.planar)(&y, u, v, o), &|o| {
                    (p.planar)(&y, u, v, o)
                });
                let Some(fused) = k.fused else { continue };
                // The portable gather, then the portable YUYV kernel.
                let bgr_of = |gather: &dyn Fn(&mut [u8])| {
                    let mut yuyv = vec![0; 2 * w];
                    gather(&mut yuyv);
                    let mut bgr = vec![0; 3 * w];
                    yuyv_bgr(&yuyv, &mut bgr);
                    bgr
                };
                type Run<'a> = &'a dyn Fn(&mut [u8]) -> usize;
                let runs: [(&str, Run, Vec<u8>); 5] = [
                    (
                        "UYVY",
                        &|o| (fused.uyvy)(&packed, o),
                        bgr_of(&|o| (p.swap_pairs)(&packed, o)),
                    ),
                    (
                        "YVYU",
                        &|o| (fused.yvyu)(&packed, o),
                        bgr_of(&|o| (p.swap_chroma)(&packed, o)),
                    ),
                    (
                        "NV12",
                        &|o| (fused.nv12)(&y, &c, o),
                        bgr_of(&|o| (p.nv12)(&y, &c, o)),
                    ),
                    (
                        "NV21",
                        &|o| (fused.nv21)(&y, &c, o),
                        bgr_of(&|o| (p.nv21)(&y, &c, o)),
                    ),
                    (
                        "YU12",
                        &|o| (fused.planar)(&y, u, v, o),
                        bgr_of(&|o| (p.planar)(&y, u, v, o)),
                    ),
                ];
                for (what, run, expected) in runs {
                    let mut ours = vec![0x5a; 3 * w + 1];
                    let done = run(&mut ours[..3 * w]);
                    assert!(
                        done % 2 == 0 && done <= w,
                        "{what} fused on {path}: {done} of {w}"
                    );
                    assert!(
                        ours[..3 * done] == expected[..3 * done],
                        "{what} fused on the {path} path, width {w}"
                    );
                    assert!(
                        ours[3 * done..].iter().all(|&b| b == 0x5a),
                        "{what} fused wrote past pixel {done}"
                    );
                }
            }
        }
    }

    /// Rows wider than the stack chunk the YUV paths gather into.
    #[test]
    fn rows_longer_than_a_chunk_match_the_reference() {
        for format in raw_formats() {
            let width = 2 * CHUNK as u32 + 34;
            let layout = Layout::new(format, width, 2, 0).unwrap();
            let data = noise(layout.frame_len(), 11);
            let mut ours = vec![0; width as usize * 2 * 3];
            to_bgr(&layout, &data, &mut ours).unwrap();
            assert!(ours == reference(&layout, &data), "{format}");
        }
    }

    #[test]
    fn odd_sizes_work_where_the_format_allows_them() {
        for format in [PixelFormat::Grey, PixelFormat::Rgb3, PixelFormat::Bgr3] {
            let layout = Layout::new(format, 37, 5, 0).unwrap();
            let data = noise(layout.frame_len(), 7);
            let mut ours = vec![0; 37 * 5 * 3];
            to_bgr(&layout, &data, &mut ours).unwrap();
            assert_eq!(ours, reference(&layout, &data), "{format}");
        }
    }

    #[test]
    fn short_frames_and_buffers_are_refused() {
        let layout = Layout::new(PixelFormat::Nv12, 4, 2, 0).unwrap();
        assert_eq!(
            to_bgr(&layout, &[0; 11], &mut [0; 24]),
            Err(ConvertError::InputTooShort { len: 11, need: 12 })
        );
        assert_eq!(
            to_bgr(&layout, &[0; 12], &mut [0; 23]),
            Err(ConvertError::OutputTooShort { len: 23, need: 24 })
        );
        let mjpg = Layout::new(PixelFormat::Mjpg, 4, 2, 0).unwrap();
        assert_eq!(
            to_bmp(&mjpg, &[0; 12], &mut Vec::new()),
            Err(ConvertError::Compressed {
                format: PixelFormat::Mjpg
            })
        );
    }

    #[test]
    fn vivid_75_percent_red_in_every_yuv_format() {
        // vivid's 75% red: Y 65, U 100, V 212 (as in pixel's tests).
        let (y, u, v) = (65u8, 100u8, 212u8);
        let frames = [
            (PixelFormat::Uyvy, vec![u, y, v, y]),
            (PixelFormat::Yvyu, vec![y, v, y, u]),
            (PixelFormat::Nv12, vec![y, y, y, y, u, v]),
            (PixelFormat::Nv21, vec![y, y, y, y, v, u]),
            (PixelFormat::Yu12, vec![y, y, y, y, u, v]),
            (PixelFormat::Yv12, vec![y, y, y, y, v, u]),
        ];
        for (format, data) in frames {
            let height = if data.len() == 4 { 1 } else { 2 };
            let layout = Layout::new(format, 2, height, 0).unwrap();
            let mut bgr = vec![0; 6 * height as usize];
            to_bgr(&layout, &data, &mut bgr).unwrap();
            for px in bgr.chunks_exact(3) {
                assert_eq!(px, [1, 0, 191], "{format}");
            }
        }
    }

    #[test]
    fn every_error_has_a_message() {
        let errors = [
            ConvertError::Compressed {
                format: PixelFormat::Mjpg,
            },
            ConvertError::InputTooShort { len: 1, need: 2 },
            ConvertError::OutputTooShort { len: 1, need: 2 },
            ConvertError::Bmp(BmpError::BadDimensions {
                width: 0,
                height: 0,
            }),
        ];
        for e in errors {
            assert!(e.to_string().len() > 20, "{e:?}");
        }
    }
}
