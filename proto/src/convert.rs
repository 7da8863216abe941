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
//! the arithmetic to keep exact. `make_golden.py` confirms the premise for
//! every format: OpenCV's output for each is compared with this module's.
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
    let rows = Rows::new(layout, data)?;
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
        match self.format {
            PixelFormat::Yuyv => (self.yuyv)(self.row(0, r, 2 * w), dst),
            PixelFormat::Uyvy => self.via_yuyv(dst, |x, n, out| {
                let src = &self.row(0, r, 2 * w)[2 * x..2 * (x + n)];
                swap_pairs(src, out);
            }),
            PixelFormat::Yvyu => self.via_yuyv(dst, |x, n, out| {
                let src = &self.row(0, r, 2 * w)[2 * x..2 * (x + n)];
                swap_chroma(src, out);
            }),
            PixelFormat::Nv12 | PixelFormat::Nv21 => {
                let y = self.row(0, r, w);
                let c = self.row(1, r / 2, w);
                let swap = self.format == PixelFormat::Nv21;
                self.via_yuyv(dst, |x, n, out| {
                    interleave_semi(&y[x..x + n], &c[x..x + n], swap, out)
                })
            }
            PixelFormat::Yu12 | PixelFormat::Yv12 => {
                let y = self.row(0, r, w);
                let (mut u, mut v) = (self.row(1, r / 2, w / 2), self.row(2, r / 2, w / 2));
                if self.format == PixelFormat::Yv12 {
                    std::mem::swap(&mut u, &mut v);
                }
                self.via_yuyv(dst, |x, n, out| {
                    interleave_planar(
                        &y[x..x + n],
                        &u[x / 2..(x + n) / 2],
                        &v[x / 2..(x + n) / 2],
                        out,
                    )
                })
            }
            PixelFormat::Grey => grey_to_bgr(self.row(0, r, w), dst),
            PixelFormat::Rgb3 => rgb_to_bgr(self.row(0, r, 3 * w), dst),
            PixelFormat::Bgr3 => dst.copy_from_slice(self.row(0, r, 3 * w)),
            // Refused in `new`.
            PixelFormat::Mjpg => {}
        }
    }

    /// Runs a YUV row through the YUYV kernel: `gather(x, n, yuyv)` writes
    /// pixels `x..x + n` (n even) as `2 * n` bytes of YUYV.
    fn via_yuyv(&self, dst: &mut [u8], mut gather: impl FnMut(usize, usize, &mut [u8])) {
        let mut yuyv = [0u8; 2 * CHUNK];
        let mut x = 0;
        for out in dst.chunks_mut(3 * CHUNK) {
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

/// NV12 (`swap` false: U V pairs) or NV21 (true: V U) row → YUYV: `n`
/// luma bytes and `n` chroma bytes become `2 * n` bytes.
fn interleave_semi(y: &[u8], c: &[u8], swap: bool, out: &mut [u8]) {
    const N: usize = BLOCK / 2;
    let (a, b) = if swap { (1, 0) } else { (0, 1) };
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

    proptest! {
        /// Every format equals the reference, with sizes that leave tails
        /// after every block and chunk, and padded strides (odd for the
        /// formats that allow it).
        #[test]
        fn every_format_matches_the_reference(
            half_width in 1usize..700,
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
            }
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
