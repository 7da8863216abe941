//! BMP encoding (24-bit, byte-identical to OpenCV's `cv2.imencode('.bmp')`)
//! and decoding to 0RGB pixels, with every header field checked.
//!
//! ```text
//! offset  size  field (little-endian)     what OpenCV writes for BGR24
//!  0      2     magic                     "BM"
//!  2      4     file size                 whole file, in bytes
//!  6      4     reserved                  0
//! 10      4     pixel data offset         54
//! 14      4     info header size          40 (BITMAPINFOHEADER)
//! 18      4     width  (i32)              width
//! 22      4     height (i32, <0 top-down) height (bottom-up)
//! 26      2     planes                    1
//! 28      2     bits per pixel            24
//! 30      4     compression               0 (BI_RGB)
//! 34      4     image size                0
//! 38      4+4   pixels per metre x, y     0, 0
//! 46      4+4   colours used, important   0, 0
//! 54            pixel rows, bottom row first, each padded to 4 bytes
//! ```
//!
//! The decoder is strict: the declared file size must equal the buffer's
//! length, and every offset and size is checked, with overflow-safe
//! arithmetic, before anything is allocated. It reads like `wire.rs`:
//! `Info::parse` runs every check and returns the validated header, and
//! the row decoders that follow it cannot fail. It fast-paths what OpenCV
//! writes (24-bit, 8-bit grey with a palette, 32-bit with a V5 header and
//! bit fields) and hands 1- and 4-bit images, after the same checks, to the
//! `bmp` crate.

use crate::pixel;
use std::fmt;
use std::ops::Range;

/// File header (14) plus BITMAPINFOHEADER (40).
pub const HEADER_LEN: usize = 54;

/// Largest accepted width or height, in pixels.
pub const MAX_DIMENSION: u32 = 16384;

/// The pixel cap of [`decode_0rgb`]: every image the dimension limit allows
/// (1 GiB of `u32` at the largest). Receivers of untrusted BMPs should use
/// [`decode_0rgb_capped`] with a cap that fits their memory instead.
pub const MAX_PIXELS: usize = MAX_DIMENSION as usize * MAX_DIMENSION as usize;

/// Byte ranges of the header fields (smoltcp's `mod field`).
mod field {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..2;
    pub const FILE_SIZE: Range<usize> = 2..6;
    pub const PIXEL_OFFSET: Range<usize> = 10..14;
    /// End of the 14-byte file header; the info header starts here.
    pub const INFO: usize = 14;
    pub const INFO_SIZE: Range<usize> = 14..18;
    pub const WIDTH: Range<usize> = 18..22;
    pub const HEIGHT: Range<usize> = 22..26;
    pub const PLANES: Range<usize> = 26..28;
    pub const BITS: Range<usize> = 28..30;
    pub const COMPRESSION: Range<usize> = 30..34;
    pub const IMAGE_SIZE: Range<usize> = 34..38;
    pub const COLORS_USED: Range<usize> = 46..50;
    /// BI_BITFIELDS masks: inside a V2+ info header, or right after a 40-byte one.
    pub const RED_MASK: Range<usize> = 54..58;
    pub const GREEN_MASK: Range<usize> = 58..62;
    pub const BLUE_MASK: Range<usize> = 62..66;
}

const MAGIC: [u8; 2] = *b"BM";
const INFO_HEADER_LEN: u32 = 40;
/// BITMAPINFOHEADER, BITMAPV2INFOHEADER, V3, V4 and V5: all share the first 40 bytes.
const INFO_HEADER_SIZES: [u32; 5] = [40, 52, 56, 108, 124];
const BI_RGB: u32 = 0;
const BI_BITFIELDS: u32 = 3;
/// Bytes in a palette entry (B, G, R, reserved) for every header we accept.
const PALETTE_ENTRY_LEN: usize = 4;

/// Why a BMP could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BmpError {
    /// Width or height is 0 or over [`MAX_DIMENSION`] (or negative width).
    BadDimensions {
        /// The width asked for or read, in pixels.
        width: i64,
        /// The height asked for or read, in pixels (negative: top-down).
        height: i64,
    },
    /// The BGR buffer to encode is not `width * height * 3` bytes.
    InputSize {
        /// Bytes in the buffer.
        len: usize,
        /// Bytes the dimensions need.
        expected: usize,
    },
    /// The file does not start with "BM".
    BadMagic {
        /// The first two bytes of the file.
        found: [u8; 2],
    },
    /// The buffer ends before the headers do.
    Truncated {
        /// Bytes the headers (and masks or palette) need.
        need: usize,
        /// Bytes in the buffer.
        have: usize,
    },
    /// The file header's size field disagrees with the buffer's length.
    SizeMismatch {
        /// The file size the header declares, in bytes.
        declared: u32,
        /// Bytes in the buffer.
        actual: usize,
    },
    /// An info header size that is not one of the Windows BMP versions.
    UnsupportedHeader {
        /// The info header size field, in bytes.
        size: u32,
    },
    /// The colour planes field is not 1.
    BadPlanes {
        /// The planes field.
        planes: u16,
    },
    /// Bits per pixel other than 1, 4, 8, 24 or 32.
    UnsupportedDepth {
        /// The bits per pixel field.
        bits: u16,
    },
    /// RLE, JPEG/PNG-in-BMP, or bit fields on a depth that cannot have them.
    UnsupportedCompression {
        /// The compression field (0 = none, 3 = bit fields).
        compression: u32,
        /// The bits per pixel field.
        bits: u16,
    },
    /// 32-bit bit-field masks that are not three 8-bit channels.
    UnsupportedMasks {
        /// The red mask.
        red: u32,
        /// The green mask.
        green: u32,
        /// The blue mask.
        blue: u32,
    },
    /// A palette with more colours than the depth can index.
    BadPalette {
        /// The colours-used field.
        colors: u32,
        /// Colours the depth can index: 2 to the bits per pixel.
        max: u32,
    },
    /// A pixel refers to a palette entry that does not exist.
    BadPaletteIndex {
        /// The first index (top row first) past the palette.
        index: u8,
        /// Entries in the palette.
        colors: u32,
    },
    /// The pixel data offset points into the headers/palette or past the end.
    BadPixelOffset {
        /// The pixel data offset field, in bytes from the start of the file.
        offset: u32,
        /// Where the headers, masks and palette end.
        min: usize,
        /// Bytes in the file.
        len: usize,
    },
    /// The image size field disagrees with the dimensions.
    ImageSizeMismatch {
        /// The image size field, in bytes.
        declared: u32,
        /// Bytes of pixel rows the dimensions need, padding included.
        expected: usize,
    },
    /// The pixel rows run past the end of the file.
    PixelsTruncated {
        /// Where the pixel rows end, in bytes from the start of the file.
        need: usize,
        /// Bytes in the file.
        have: usize,
    },
    /// The `bmp` crate (1- and 4-bit fallback) refused the file.
    Fallback {
        /// The bits per pixel field.
        bits: u16,
        /// Why the crate refused it.
        reason: &'static str,
    },
    /// `width * height` is over the caller's pixel cap. A 1-bit BMP is 1/32
    /// of the size of its decoded pixels, so a small file can demand a lot.
    TooManyPixels {
        /// The width read, in pixels.
        width: u32,
        /// The height read, in pixels (without the top-down sign).
        height: u32,
        /// The caller's cap, in pixels.
        max: usize,
    },
    /// The YUYV image given to [`encode_yuyv`] does not fit its buffer.
    Yuyv(pixel::PixelError),
}

impl fmt::Display for BmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BmpError::BadDimensions { width, height } => write!(
                f,
                "BMP dimensions {width}x{height} are out of range: width and height must be 1..={MAX_DIMENSION}"
            ),
            BmpError::InputSize { len, expected } => write!(
                f,
                "BGR buffer has {len} bytes but width x height x 3 is {expected}"
            ),
            BmpError::BadMagic { found } => write!(
                f,
                "not a BMP file: starts with {:02x} {:02x}, expected \"BM\" (42 4d)",
                found[0], found[1]
            ),
            BmpError::Truncated { need, have } => write!(
                f,
                "BMP is truncated: its headers need {need} bytes but only {have} arrived"
            ),
            BmpError::SizeMismatch { declared, actual } => write!(
                f,
                "BMP header declares a {declared}-byte file but {actual} bytes arrived (truncated or padded in transit?)"
            ),
            BmpError::UnsupportedHeader { size } => write!(
                f,
                "unsupported BMP info header of {size} bytes (expected 40, 52, 56, 108 or 124; OS/2 BMPs are not supported)"
            ),
            BmpError::BadPlanes { planes } => {
                write!(f, "BMP has {planes} colour planes; it must have 1")
            }
            BmpError::UnsupportedDepth { bits } => write!(
                f,
                "unsupported BMP depth of {bits} bits per pixel (supported: 1, 4, 8, 24, 32)"
            ),
            BmpError::UnsupportedCompression { compression, bits } => write!(
                f,
                "unsupported BMP compression {compression} at {bits} bits per pixel (supported: uncompressed, and bit fields at 32 bits)"
            ),
            BmpError::UnsupportedMasks { red, green, blue } => write!(
                f,
                "unsupported 32-bit BMP masks red {red:#010x} green {green:#010x} blue {blue:#010x} (each must be 8 contiguous bits)"
            ),
            BmpError::BadPalette { colors, max } => write!(
                f,
                "BMP palette claims {colors} colours but its depth can index only {max}"
            ),
            BmpError::BadPaletteIndex { index, colors } => write!(
                f,
                "BMP pixel uses palette entry {index} but the palette has only {colors} colours"
            ),
            BmpError::BadPixelOffset { offset, min, len } => write!(
                f,
                "BMP pixel data offset {offset} is outside the file: it must be in {min}..={len}"
            ),
            BmpError::ImageSizeMismatch { declared, expected } => write!(
                f,
                "BMP header declares {declared} bytes of pixels but the dimensions need {expected}"
            ),
            BmpError::PixelsTruncated { need, have } => write!(
                f,
                "BMP pixel data is truncated: the dimensions need {need} bytes of file but it has {have}"
            ),
            BmpError::Fallback { bits, reason } => {
                write!(f, "cannot decode {bits}-bit BMP: {reason}")
            }
            BmpError::TooManyPixels { width, height, max } => write!(
                f,
                "BMP is {width}x{height}, more than the {max} pixels this receiver accepts \
                 (raise its pixel cap if frames this large are expected)"
            ),
            BmpError::Yuyv(e) => write!(f, "cannot encode YUYV as BMP: {e}"),
        }
    }
}

impl std::error::Error for BmpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BmpError::Yuyv(e) => Some(e),
            _ => None,
        }
    }
}

fn check_dimensions(width: i64, height: i64) -> Result<(), BmpError> {
    let range = 1..=i64::from(MAX_DIMENSION);
    if range.contains(&width) && range.contains(&height) {
        Ok(())
    } else {
        Err(BmpError::BadDimensions { width, height })
    }
}

/// Bytes in one stored row: `width * bits` rounded up to whole 32-bit words.
/// Only called with checked dimensions, so it cannot overflow.
fn row_len(width: u32, bits: u16) -> usize {
    (width as usize * bits as usize).div_ceil(32) * 4
}

/// Size in bytes of the 24-bit BMP file for a `width` x `height` image.
pub fn encoded_len(width: u32, height: u32) -> Result<usize, BmpError> {
    check_dimensions(i64::from(width), i64::from(height))?;
    // At most 54 + 49152 * 16384 bytes, which fits the 32-bit size field.
    Ok(HEADER_LEN + row_len(width, 24) * height as usize)
}

/// The 54 header bytes of a 24-bit bottom-up BMP, as OpenCV writes them.
/// `file_len` comes from `encoded_len`, which bounds it to 32 bits.
fn header_bgr24(width: u32, height: u32, file_len: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let mut put = |range: Range<usize>, bytes: &[u8]| h[range].copy_from_slice(bytes);
    put(field::MAGIC, &MAGIC);
    put(field::FILE_SIZE, &(file_len as u32).to_le_bytes());
    put(field::PIXEL_OFFSET, &(HEADER_LEN as u32).to_le_bytes());
    put(field::INFO_SIZE, &INFO_HEADER_LEN.to_le_bytes());
    put(field::WIDTH, &width.to_le_bytes());
    put(field::HEIGHT, &height.to_le_bytes()); // positive: bottom-up
    put(field::PLANES, &1u16.to_le_bytes());
    put(field::BITS, &24u16.to_le_bytes());
    // Reserved, compression (BI_RGB), image size, pixels per metre, colours
    // used and important: OpenCV writes them all as 0, as `h` starts.
    h
}

/// Replaces `out` with a 24-bit bottom-up BMP of `bgr`, a tightly packed,
/// top-down BGR24 image. The bytes are exactly what OpenCV writes.
pub fn encode_bgr24(
    bgr: &[u8],
    width: u32,
    height: u32,
    out: &mut Vec<u8>,
) -> Result<(), BmpError> {
    let file_len = encoded_len(width, height)?;
    let pixels_len = width as usize * 3;
    let expected = pixels_len * height as usize;
    if bgr.len() != expected {
        return Err(BmpError::InputSize {
            len: bgr.len(),
            expected,
        });
    }
    let padding = row_len(width, 24) - pixels_len;

    out.clear();
    out.reserve(file_len);
    out.extend_from_slice(&header_bgr24(width, height, file_len));
    for row in bgr.chunks_exact(pixels_len).rev() {
        out.extend_from_slice(row);
        out.extend_from_slice(&[0; 3][..padding]);
    }
    debug_assert_eq!(out.len(), file_len);
    Ok(())
}

/// Replaces `out` with the 24-bit BMP of a YUYV image, converting each row
/// straight into its place in the file: the same bytes as
/// [`pixel::yuyv_to_bgr`] followed by [`encode_bgr24`], without the
/// intermediate BGR buffer or the extra pass over it. `stride` and the
/// input rules are those of `yuyv_to_bgr`.
///
/// Reuse `out` from frame to frame: once it has held a file this large,
/// nothing is allocated or zero-filled again.
pub fn encode_yuyv(
    yuyv: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    out: &mut Vec<u8>,
) -> Result<(), BmpError> {
    let file_len = encoded_len(width, height)?;
    let rows = pixel::yuyv_rows(yuyv, width, height, stride).map_err(BmpError::Yuyv)?;
    let pixels_len = width as usize * 3;
    // `truncate` + `resize` only zero-fills bytes `out` did not have yet.
    out.truncate(file_len);
    out.resize(file_len, 0);
    out[..HEADER_LEN].copy_from_slice(&header_bgr24(width, height, file_len));
    let convert = pixel::row_converter();
    // BMP rows run bottom-up.
    for (src, dst) in rows
        .rev()
        .zip(out[HEADER_LEN..].chunks_exact_mut(row_len(width, 24)))
    {
        let (pixels, padding) = dst.split_at_mut(pixels_len);
        convert(src, pixels);
        padding.fill(0);
    }
    Ok(())
}

/// Replaces `out` with a 24-bit BMP whose rows `fill(row, pixels)` writes:
/// `row` counts top-down, `pixels` is that row's `3 * width` bytes of BGR
/// (the padding is written here). The raw converters of every capture
/// format (`convert::to_bmp`) write the file through it; like
/// [`encode_yuyv`], it zero-fills nothing `out` already had.
pub(crate) fn encode_rows(
    width: u32,
    height: u32,
    out: &mut Vec<u8>,
    mut fill: impl FnMut(usize, &mut [u8]),
) -> Result<(), BmpError> {
    let file_len = encoded_len(width, height)?;
    let pixels_len = width as usize * 3;
    out.truncate(file_len);
    out.resize(file_len, 0);
    out[..HEADER_LEN].copy_from_slice(&header_bgr24(width, height, file_len));
    // BMP rows run bottom-up.
    let rows = out[HEADER_LEN..].chunks_exact_mut(row_len(width, 24));
    for (row, dst) in rows.rev().enumerate() {
        let (pixels, padding) = dst.split_at_mut(pixels_len);
        fill(row, pixels);
        padding.fill(0);
    }
    Ok(())
}

fn read_u16(bmp: &[u8], range: Range<usize>) -> u16 {
    let mut b = [0; 2];
    b.copy_from_slice(&bmp[range]);
    u16::from_le_bytes(b)
}

fn read_u32(bmp: &[u8], range: Range<usize>) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&bmp[range]);
    u32::from_le_bytes(b)
}

/// Requires `bmp` to hold at least `need` bytes.
fn need(bmp: &[u8], need: usize) -> Result<(), BmpError> {
    if bmp.len() < need {
        return Err(BmpError::Truncated {
            need,
            have: bmp.len(),
        });
    }
    Ok(())
}

/// How the stored pixels map to colours.
// One short-lived local per decode: boxing the palette would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Layout {
    /// 24-bit B, G, R.
    Bgr,
    /// 32-bit little-endian words with an 8-bit channel at each shift.
    Words { red: u32, green: u32, blue: u32 },
    /// 8-bit indices into a palette of `colors` entries.
    Indexed8 { palette: [u32; 256], colors: u32 },
    /// 1- or 4-bit indices into `colors` entries, decoded by the `bmp` crate.
    Fallback { colors: u32 },
}

/// The shift of an 8-bit contiguous mask, if it is one.
fn mask_shift(mask: u32) -> Option<u32> {
    let shift = mask.trailing_zeros();
    (shift <= 24 && mask >> shift == 0xff).then_some(shift)
}

/// A BMP file that passed every check: what `Info::parse` returns is
/// consistent with the bytes it borrows, so decoding it cannot fail or
/// panic (except inside the `bmp` crate, for 1- and 4-bit files).
///
/// The invariants the decoders rely on:
/// - `width` and `height` are in 1..=[`MAX_DIMENSION`], and `width * height`
///   is within the caller's pixel cap;
/// - `pixels` is exactly `height` rows of `row_len` bytes, and `row_len`
///   holds `width` pixels of `bits` bits;
/// - every palette index in the rows names a palette entry.
struct Info<'a> {
    /// The whole file: the `bmp` crate reads it again for 1- and 4-bit images.
    file: &'a [u8],
    width: u32,
    height: u32,
    /// Rows are stored top row first (negative height), not bottom row first.
    top_down: bool,
    bits: u16,
    /// Bytes per stored row, padding included.
    row_len: usize,
    /// The stored rows, exactly `row_len * height` bytes.
    pixels: &'a [u8],
    layout: Layout,
}

impl<'a> Info<'a> {
    /// Checks every header field of `bmp` against the file, and refuses
    /// more than `max_pixels` pixels as soon as the dimensions are read.
    /// Allocates nothing. The order of the checks decides which error a
    /// file with several faults gets; the tests and the fuzz target pin it.
    fn parse(bmp: &'a [u8], max_pixels: usize) -> Result<Self, BmpError> {
        let info_size = check_file_header(bmp)?;
        let (width, height, top_down) = read_dimensions(bmp, max_pixels)?;
        let (bits, compression) = read_format(bmp)?;
        let (layout, min_offset) = read_layout(bmp, info_size, bits, compression)?;
        let row_len = row_len(width, bits);
        let pixels = pixel_rows(bmp, min_offset, row_len, height)?;
        let info = Info {
            file: bmp,
            width,
            height,
            top_down,
            bits,
            row_len,
            pixels,
            layout,
        };
        info.check_fallback_header(info_size)?;
        info.check_palette_indices()?;
        Ok(info)
    }

    /// The `bmp` crate knows only three info header sizes; refuse the
    /// others here rather than let it misread them. Checked last, so a
    /// broken 1- or 4-bit file gets the same error as any other depth.
    fn check_fallback_header(&self, info_size: u32) -> Result<(), BmpError> {
        if matches!(self.layout, Layout::Fallback { .. }) && !matches!(info_size, 40 | 108 | 124) {
            return Err(BmpError::UnsupportedHeader { size: info_size });
        }
        Ok(())
    }

    /// Proves that every palette index the decoder will read exists. Only a
    /// palette shorter than the depth can index can be overrun, so files
    /// with a full palette (what OpenCV writes) skip the scan. The `bmp`
    /// crate indexes its palette without checks, hence the same scan for
    /// 1- and 4-bit files.
    fn check_palette_indices(&self) -> Result<(), BmpError> {
        let rows = self.pixels.chunks_exact(self.row_len);
        let width = self.width as usize;
        match self.layout {
            Layout::Indexed8 { colors, .. } if colors < 256 => {
                let indices = move |row: &'a [u8]| row.iter().take(width).copied();
                // Top row first, as the decoder meets them: the index named
                // is the first bad one the image shows.
                if self.top_down {
                    check_indices(rows.flat_map(indices), colors)
                } else {
                    check_indices(rows.rev().flat_map(indices), colors)
                }
            }
            Layout::Fallback { colors } if colors < 1 << self.bits => {
                let bits = usize::from(self.bits);
                let per_byte = 8 / bits;
                let mask = (1u8 << bits) - 1;
                let indices = rows.flat_map(|row| {
                    (0..width)
                        .map(move |x| row[x / per_byte] >> (8 - bits * (x % per_byte + 1)) & mask)
                });
                check_indices(indices, colors)
            }
            _ => Ok(()),
        }
    }
}

/// Fails with the first of `indices` that names no entry of a palette of
/// `colors` colours.
fn check_indices(mut indices: impl Iterator<Item = u8>, colors: u32) -> Result<(), BmpError> {
    match indices.find(|&index| u32::from(index) >= colors) {
        Some(index) => Err(BmpError::BadPaletteIndex { index, colors }),
        None => Ok(()),
    }
}

/// The magic, the declared file size against the buffer's, and the info
/// header's size (one of the Windows versions), which must all be present.
/// Returns that size.
fn check_file_header(bmp: &[u8]) -> Result<u32, BmpError> {
    if bmp.len() >= field::MAGIC.end && bmp[field::MAGIC] != MAGIC {
        return Err(BmpError::BadMagic {
            found: [bmp[0], bmp[1]],
        });
    }
    need(bmp, field::INFO_SIZE.end)?;
    let declared = read_u32(bmp, field::FILE_SIZE);
    if declared as usize != bmp.len() {
        return Err(BmpError::SizeMismatch {
            declared,
            actual: bmp.len(),
        });
    }
    let info_size = read_u32(bmp, field::INFO_SIZE);
    if !INFO_HEADER_SIZES.contains(&info_size) {
        return Err(BmpError::UnsupportedHeader { size: info_size });
    }
    // One of `INFO_HEADER_SIZES`, so at most 138.
    need(bmp, field::INFO + info_size as usize)?;
    Ok(info_size)
}

/// Width, height and row order, checked against [`MAX_DIMENSION`] and then
/// against `max_pixels`, before any other field is looked at: a small
/// 1-bit file can claim a gigabyte of pixels.
fn read_dimensions(bmp: &[u8], max_pixels: usize) -> Result<(u32, u32, bool), BmpError> {
    let raw_width = read_u32(bmp, field::WIDTH) as i32;
    let raw_height = read_u32(bmp, field::HEIGHT) as i32;
    check_dimensions(i64::from(raw_width), i64::from(raw_height).abs()).map_err(|_| {
        BmpError::BadDimensions {
            width: i64::from(raw_width),
            height: i64::from(raw_height),
        }
    })?;
    let width = raw_width.unsigned_abs();
    let height = raw_height.unsigned_abs();
    let pixels = (width as usize).checked_mul(height as usize);
    if pixels.is_none_or(|pixels| pixels > max_pixels) {
        return Err(BmpError::TooManyPixels {
            width,
            height,
            max: max_pixels,
        });
    }
    Ok((width, height, raw_height < 0))
}

/// Planes, bits per pixel and compression. Returns `(bits, compression)`,
/// a combination the decoder supports.
fn read_format(bmp: &[u8]) -> Result<(u16, u32), BmpError> {
    let planes = read_u16(bmp, field::PLANES);
    if planes != 1 {
        return Err(BmpError::BadPlanes { planes });
    }
    let bits = read_u16(bmp, field::BITS);
    if !matches!(bits, 1 | 4 | 8 | 24 | 32) {
        return Err(BmpError::UnsupportedDepth { bits });
    }
    let compression = read_u32(bmp, field::COMPRESSION);
    match (compression, bits) {
        (BI_RGB, _) | (BI_BITFIELDS, 32) => Ok((bits, compression)),
        _ => Err(BmpError::UnsupportedCompression { compression, bits }),
    }
}

/// What sits between the info header and the pixels (bit-field masks or a
/// palette), read into a [`Layout`]. Also returns where the pixels may
/// start at the earliest: after the headers and whatever follows them.
fn read_layout(
    bmp: &[u8],
    info_size: u32,
    bits: u16,
    compression: u32,
) -> Result<(Layout, usize), BmpError> {
    let headers_end = field::INFO + info_size as usize;
    if compression == BI_BITFIELDS {
        let mut min_offset = headers_end;
        if info_size == INFO_HEADER_LEN {
            // BITMAPINFOHEADER keeps the three masks after the header.
            min_offset = field::BLUE_MASK.end;
            need(bmp, min_offset)?;
        }
        let (r, g, b) = (
            read_u32(bmp, field::RED_MASK),
            read_u32(bmp, field::GREEN_MASK),
            read_u32(bmp, field::BLUE_MASK),
        );
        return match (mask_shift(r), mask_shift(g), mask_shift(b)) {
            (Some(red), Some(green), Some(blue)) => {
                Ok((Layout::Words { red, green, blue }, min_offset))
            }
            _ => Err(BmpError::UnsupportedMasks {
                red: r,
                green: g,
                blue: b,
            }),
        };
    }
    match bits {
        1 | 4 | 8 => {
            let max = 1u32 << bits;
            let colors = match read_u32(bmp, field::COLORS_USED) {
                0 => max,
                n => n,
            };
            if colors > max {
                return Err(BmpError::BadPalette { colors, max });
            }
            // At most 138 + 256 * 4.
            let min_offset = headers_end + colors as usize * PALETTE_ENTRY_LEN;
            need(bmp, min_offset)?;
            if bits != 8 {
                return Ok((Layout::Fallback { colors }, min_offset));
            }
            let mut palette = [0u32; 256];
            for (entry, color) in bmp[headers_end..min_offset]
                .chunks_exact(PALETTE_ENTRY_LEN)
                .zip(palette.iter_mut())
            {
                *color = u32::from_le_bytes([entry[0], entry[1], entry[2], 0]);
            }
            Ok((Layout::Indexed8 { palette, colors }, min_offset))
        }
        24 => Ok((Layout::Bgr, headers_end)),
        // 32-bit BI_RGB is B, G, R, unused.
        _ => Ok((
            Layout::Words {
                red: 16,
                green: 8,
                blue: 0,
            },
            headers_end,
        )),
    }
}

/// The pixel data offset and the image size field, checked against the
/// file; returns exactly the `height` stored rows of `row_len` bytes.
/// Sums saturate: a sum too large for `usize` is past any buffer's end,
/// which is the error it deserves.
fn pixel_rows(
    bmp: &[u8],
    min_offset: usize,
    row_len: usize,
    height: u32,
) -> Result<&[u8], BmpError> {
    let offset = read_u32(bmp, field::PIXEL_OFFSET);
    if (offset as usize) < min_offset || offset as usize > bmp.len() {
        return Err(BmpError::BadPixelOffset {
            offset,
            min: min_offset,
            len: bmp.len(),
        });
    }
    let offset = offset as usize;
    let data_len = row_len.saturating_mul(height as usize);
    let data_end = offset.saturating_add(data_len);
    if data_end > bmp.len() {
        return Err(BmpError::PixelsTruncated {
            need: data_end,
            have: bmp.len(),
        });
    }
    let image_size = read_u32(bmp, field::IMAGE_SIZE);
    if image_size != 0
        && ((image_size as usize) < data_len
            || offset.saturating_add(image_size as usize) > bmp.len())
    {
        return Err(BmpError::ImageSizeMismatch {
            declared: image_size,
            expected: data_len,
        });
    }
    Ok(&bmp[offset..data_end])
}

// Decoding: given a parsed `Info`, nothing below can fail except the
// `bmp` crate, and no index is out of bounds.
impl Info<'_> {
    /// Replaces `out` with the image, top row first. Only the 1- and 4-bit
    /// fallback can fail, when the `bmp` crate refuses what was checked.
    fn decode(&self, out: &mut Vec<u32>) -> Result<(), BmpError> {
        match &self.layout {
            Layout::Bgr => self.decode_rows(out, pixel::bgr_row_to_0rgb),
            Layout::Words { red, green, blue } => self.decode_rows(out, |row, dst| {
                for (p, o) in row.chunks_exact(4).zip(dst.iter_mut()) {
                    let p = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
                    *o = (p >> red & 0xff) << 16 | (p >> green & 0xff) << 8 | (p >> blue & 0xff);
                }
            }),
            Layout::Indexed8 { palette, .. } => self.decode_rows(out, |row, dst| {
                for (&i, o) in row.iter().zip(dst.iter_mut()) {
                    *o = palette[usize::from(i)];
                }
            }),
            Layout::Fallback { .. } => return self.decode_fallback(out),
        }
        Ok(())
    }

    /// Fills `out` with `width * height` pixels, one stored row at a time.
    /// `convert` writes one row's pixels and must stop at the shorter of
    /// its slices: stored rows carry padding past the last pixel.
    fn decode_rows(&self, out: &mut Vec<u32>, convert: impl Fn(&[u8], &mut [u32])) {
        let width = self.width as usize;
        let len = width * self.height as usize;
        // `truncate` + `resize` only writes elements that are new.
        out.truncate(len);
        out.resize(len, 0);
        let rows = self.pixels.chunks_exact(self.row_len);
        let dst = out.chunks_exact_mut(width);
        // File rows run bottom-up unless the height is negative.
        if self.top_down {
            rows.zip(dst).for_each(|(row, dst)| convert(row, dst));
        } else {
            rows.rev().zip(dst).for_each(|(row, dst)| convert(row, dst));
        }
    }

    /// 1- and 4-bit images through the `bmp` crate, which reads the whole
    /// file again; `parse` proved it holds what the crate will index.
    fn decode_fallback(&self, out: &mut Vec<u32>) -> Result<(), BmpError> {
        let bits = self.bits;
        let image = bmp::from_reader(&mut &self.file[..]).map_err(|e| BmpError::Fallback {
            bits,
            reason: match e.kind {
                bmp::BmpErrorKind::WrongMagicNumbers => "wrong magic numbers",
                bmp::BmpErrorKind::UnsupportedBitsPerPixel => "unsupported bits per pixel",
                bmp::BmpErrorKind::UnsupportedCompressionType => "unsupported compression",
                bmp::BmpErrorKind::UnsupportedBmpVersion => "unsupported BMP version",
                bmp::BmpErrorKind::UnsupportedHeader => "unsupported header",
                bmp::BmpErrorKind::BmpIoError(_) => "read error",
            },
        })?;
        let (width, height) = (self.width, self.height);
        if (image.get_width(), image.get_height()) != (width, height) {
            return Err(BmpError::Fallback {
                bits,
                reason: "the bmp crate read different dimensions",
            });
        }
        out.clear();
        out.reserve_exact(width as usize * height as usize);
        for y in 0..height {
            // The crate assumes bottom-up rows: `get_pixel(x, 0)` is the last
            // row stored. For top-down files, ask for the mirrored row.
            let y = if self.top_down { height - 1 - y } else { y };
            out.extend((0..width).map(|x| {
                let p = image.get_pixel(x, y);
                u32::from(p.r) << 16 | u32::from(p.g) << 8 | u32::from(p.b)
            }));
        }
        Ok(())
    }
}

/// Decodes a BMP file into `out` as 0RGB `u32` pixels (minifb's format),
/// top row first, replacing its contents. Returns `(width, height)`.
///
/// Accepts uncompressed 1-, 4-, 8-, 24- and 32-bit images, 32-bit bit
/// fields, bottom-up and top-down rows, and info headers from
/// BITMAPINFOHEADER to V5. Everything is checked before `out` grows, and
/// `out` grows only to `width * height`, which the data present bounds.
///
/// That bound can still be large: a 2 MiB 1-bit file may be 16384x16384,
/// i.e. 1 GiB of pixels. For untrusted input use [`decode_0rgb_capped`].
pub fn decode_0rgb(bmp: &[u8], out: &mut Vec<u32>) -> Result<(u32, u32), BmpError> {
    decode_0rgb_capped(bmp, MAX_PIXELS, out)
}

/// [`decode_0rgb`] that refuses, with [`BmpError::TooManyPixels`], an image
/// of more than `max_pixels` pixels. The check runs as soon as the
/// dimensions are read, before anything else is checked or allocated, so
/// `out` never grows past `max_pixels` elements (the 1- and 4-bit fallback
/// allocates at most 3 bytes per pixel more, inside the `bmp` crate).
pub fn decode_0rgb_capped(
    bmp: &[u8],
    max_pixels: usize,
    out: &mut Vec<u32>,
) -> Result<(u32, u32), BmpError> {
    let info = Info::parse(bmp, max_pixels)?;
    info.decode(out)?;
    Ok((info.width, info.height))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cv2.imencode('.bmp', img)` for the 3x2 BGR image with bytes 0..18,
    /// as OpenCV 5.0 wrote it: rows bottom-up, each padded from 9 to 12 bytes.
    static OPENCV_3X2: [u8; 78] = [
        b'B', b'M', 78, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, // file header
        40, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 24, 0, // info: size, w, h, planes, bits
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // zeros
        9, 10, 11, 12, 13, 14, 15, 16, 17, 0, 0, 0, // bottom row
        0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, // top row
    ];

    fn bgr_3x2() -> Vec<u8> {
        (0..18).collect()
    }

    fn set16(buf: &mut [u8], at: usize, v: u16) {
        buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn set32(buf: &mut [u8], at: usize, v: u32) {
        buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// A BMP with the given info header size and fields; `extra` (masks or
    /// palette) sits between the header and `pixels`. Sizes are consistent.
    fn build(
        info_size: u32,
        (width, height): (i32, i32),
        bits: u16,
        compression: u32,
        colors_used: u32,
        extra: &[u8],
        pixels: &[u8],
    ) -> Vec<u8> {
        let offset = 14 + info_size as usize + extra.len();
        let mut f = vec![0u8; offset];
        f[0..2].copy_from_slice(b"BM");
        set32(&mut f, 2, (offset + pixels.len()) as u32);
        set32(&mut f, 10, offset as u32);
        set32(&mut f, 14, info_size);
        set32(&mut f, 18, width as u32);
        set32(&mut f, 22, height as u32);
        set16(&mut f, 26, 1);
        set16(&mut f, 28, bits);
        set32(&mut f, 30, compression);
        set32(&mut f, 46, colors_used);
        f[14 + info_size as usize..].copy_from_slice(extra);
        f.extend_from_slice(pixels);
        f
    }

    fn decode(file: &[u8]) -> Result<(u32, u32, Vec<u32>), BmpError> {
        let mut out = Vec::new();
        decode_0rgb(file, &mut out).map(|(w, h)| (w, h, out))
    }

    #[test]
    fn encode_matches_opencv_bytes() {
        let mut out = vec![0xEE; 3]; // replaced, not appended to
        encode_bgr24(&bgr_3x2(), 3, 2, &mut out).unwrap();
        assert_eq!(out, OPENCV_3X2);
        assert_eq!(encoded_len(3, 2).unwrap(), OPENCV_3X2.len());
    }

    #[test]
    fn encoded_len_of_largest_image_fits_the_size_field() {
        let len = encoded_len(MAX_DIMENSION, MAX_DIMENSION).unwrap();
        assert_eq!(len, 54 + 16384 * 3 * 16384);
        assert!(u32::try_from(len).is_ok());
    }

    #[test]
    fn encode_rejects_bad_dimensions() {
        for (w, h) in [(0, 1), (1, 0), (16385, 1), (1, 16385), (u32::MAX, u32::MAX)] {
            assert_eq!(
                encode_bgr24(&[], w, h, &mut Vec::new()),
                Err(BmpError::BadDimensions {
                    width: i64::from(w),
                    height: i64::from(h)
                })
            );
            assert!(encoded_len(w, h).is_err());
        }
    }

    #[test]
    fn encode_rejects_wrong_buffer_length() {
        assert_eq!(
            encode_bgr24(&[0; 17], 3, 2, &mut Vec::new()),
            Err(BmpError::InputSize {
                len: 17,
                expected: 18
            })
        );
    }

    #[test]
    fn decode_opencv_24_bit() {
        let (w, h, px) = decode(&OPENCV_3X2).unwrap();
        assert_eq!((w, h), (3, 2));
        assert_eq!(px[0], 0x0002_0100); // top-left: B=0 G=1 R=2
        assert_eq!(px[5], 0x0011_100f); // bottom-right: B=15 G=16 R=17
    }

    #[test]
    fn regression_bmp_crate_flips_top_down_images() {
        // The same image stored top-down (negative height): rows in reading order.
        let mut pixels = OPENCV_3X2[66..78].to_vec();
        pixels.extend_from_slice(&OPENCV_3X2[54..66]);
        let file = build(40, (3, -2), 24, BI_RGB, 0, &[], &pixels);
        assert_eq!(decode(&file).unwrap(), decode(&OPENCV_3X2).unwrap());
    }

    #[test]
    fn decode_32_bit_bgrx_ignores_the_fourth_byte() {
        let file = build(
            40,
            (2, 1),
            32,
            BI_RGB,
            0,
            &[],
            &[1, 2, 3, 0xff, 4, 5, 6, 0x80],
        );
        assert_eq!(decode(&file).unwrap(), (2, 1, vec![0x030201, 0x060504]));
    }

    #[test]
    fn decode_32_bit_bitfields_after_a_40_byte_header() {
        // Masks R=0x000000ff G=0x0000ff00 B=0x00ff0000: RGBX byte order.
        let mut masks = Vec::new();
        for m in [0xffu32, 0xff00, 0xff_0000] {
            masks.extend_from_slice(&m.to_le_bytes());
        }
        let file = build(
            40,
            (1, 1),
            32,
            BI_BITFIELDS,
            0,
            &masks,
            &[0x11, 0x22, 0x33, 0x44],
        );
        assert_eq!(decode(&file).unwrap(), (1, 1, vec![0x112233]));
    }

    #[test]
    fn decode_8_bit_with_short_palette() {
        // Two colours, a 3-pixel row padded to 4 bytes.
        let palette = [0, 0, 0xff, 0, 0xff, 0, 0, 0]; // red, blue
        let file = build(40, (3, 1), 8, BI_RGB, 2, &palette, &[1, 0, 1, 0]);
        assert_eq!(decode(&file).unwrap(), (3, 1, vec![0xff, 0xff0000, 0xff]));
    }

    #[test]
    fn decode_1_bit_via_fallback() {
        // 10 pixels: 1010000011, rows padded to 4 bytes; bottom row all 0.
        let palette = [0, 0, 0, 0, 0xff, 0xff, 0xff, 0];
        let pixels = [0, 0, 0, 0, 0b1010_0000, 0b1100_0000, 0, 0];
        let file = build(40, (10, 2), 1, BI_RGB, 0, &palette, &pixels);
        let (w, h, px) = decode(&file).unwrap();
        assert_eq!((w, h), (10, 2));
        let top: Vec<u32> = [1, 0, 1, 0, 0, 0, 0, 0, 1, 1]
            .iter()
            .map(|&b| b * 0xffffff)
            .collect();
        assert_eq!(px[..10], top[..]);
        assert_eq!(px[10..], [0; 10]);
    }

    #[test]
    fn decode_4_bit_top_down_via_fallback() {
        let mut palette = Vec::new();
        for i in 0..16u8 {
            palette.extend_from_slice(&[i, i * 2, i * 3, 0]);
        }
        // 3 pixels per row (2 bytes, padded to 4); top-down, so row 0 is the top.
        let pixels = [0x12, 0x30, 0, 0, 0xf0, 0x00, 0, 0];
        let file = build(40, (3, -2), 4, BI_RGB, 0, &palette, &pixels);
        let color = |i: u32| (i * 3) << 16 | (i * 2) << 8 | i;
        assert_eq!(
            decode(&file).unwrap(),
            (3, 2, vec![color(1), color(2), color(3), color(15), 0, 0])
        );
    }

    #[test]
    fn decode_tolerates_v5_header() {
        let file = build(124, (1, 1), 24, BI_RGB, 0, &[], &[1, 2, 3, 0]);
        assert_eq!(decode(&file).unwrap(), (1, 1, vec![0x030201]));
    }

    #[test]
    fn decode_reuses_the_output_buffer() {
        let mut out = vec![7u32; 100];
        assert_eq!(decode_0rgb(&OPENCV_3X2, &mut out), Ok((3, 2)));
        assert_eq!(out.len(), 6);
    }

    #[test]
    fn bad_magic() {
        let mut f = OPENCV_3X2;
        f[0..2].copy_from_slice(b"PN");
        assert_eq!(decode(&f), Err(BmpError::BadMagic { found: *b"PN" }));
    }

    #[test]
    fn truncated_headers() {
        assert_eq!(decode(&[]), Err(BmpError::Truncated { need: 18, have: 0 }));
        assert_eq!(
            decode(&OPENCV_3X2[..10]),
            Err(BmpError::Truncated { need: 18, have: 10 })
        );
        // A V5 header needs 138 bytes of headers; the file size agrees with the buffer.
        let mut f = OPENCV_3X2[..60].to_vec();
        set32(&mut f, 2, 60);
        set32(&mut f, 14, 124);
        assert_eq!(
            decode(&f),
            Err(BmpError::Truncated {
                need: 138,
                have: 60
            })
        );
    }

    #[test]
    fn regression_bmp_crate_accepts_file_truncated_to_half() {
        let half = &OPENCV_3X2[..OPENCV_3X2.len() / 2];
        assert_eq!(
            decode(half),
            Err(BmpError::SizeMismatch {
                declared: 78,
                actual: 39
            })
        );
        let mut longer = OPENCV_3X2.to_vec();
        longer.push(0);
        assert_eq!(
            decode(&longer),
            Err(BmpError::SizeMismatch {
                declared: 78,
                actual: 79
            })
        );
    }

    #[test]
    fn pixels_truncated_even_when_file_size_agrees() {
        let mut f = OPENCV_3X2[..70].to_vec();
        set32(&mut f, 2, 70);
        assert_eq!(
            decode(&f),
            Err(BmpError::PixelsTruncated { need: 78, have: 70 })
        );
    }

    #[test]
    fn unsupported_header_size() {
        let mut f = OPENCV_3X2;
        set32(&mut f, 14, 12); // OS/2 BITMAPCOREHEADER
        assert_eq!(decode(&f), Err(BmpError::UnsupportedHeader { size: 12 }));
        // 52-byte headers are fine for us, but not for the 4-bit fallback.
        let file = build(52, (1, 1), 4, BI_RGB, 0, &[0; 64], &[0; 4]);
        assert_eq!(decode(&file), Err(BmpError::UnsupportedHeader { size: 52 }));
    }

    #[test]
    fn bad_dimensions() {
        for (w, h) in [
            (0, 2),
            (3, 0),
            (-3, 2),
            (16385, 2),
            (3, -16385),
            (3, i32::MIN),
        ] {
            let mut f = OPENCV_3X2;
            set32(&mut f, 18, w as u32);
            set32(&mut f, 22, h as u32);
            assert_eq!(
                decode(&f),
                Err(BmpError::BadDimensions {
                    width: i64::from(w),
                    height: i64::from(h)
                })
            );
        }
    }

    #[test]
    fn bad_planes() {
        let mut f = OPENCV_3X2;
        set16(&mut f, 26, 2);
        assert_eq!(decode(&f), Err(BmpError::BadPlanes { planes: 2 }));
    }

    #[test]
    fn unsupported_depth() {
        for bits in [0u16, 2, 16, 48] {
            let mut f = OPENCV_3X2;
            set16(&mut f, 28, bits);
            assert_eq!(decode(&f), Err(BmpError::UnsupportedDepth { bits }));
        }
    }

    #[test]
    fn unsupported_compression() {
        for (compression, bits) in [(1u32, 24u16), (BI_BITFIELDS, 24), (4, 24)] {
            let mut f = OPENCV_3X2;
            set32(&mut f, 30, compression);
            set16(&mut f, 28, bits);
            assert_eq!(
                decode(&f),
                Err(BmpError::UnsupportedCompression { compression, bits })
            );
        }
        let rle8 = build(40, (1, 1), 8, 1, 0, &[0; 1024], &[0; 4]);
        assert_eq!(
            decode(&rle8),
            Err(BmpError::UnsupportedCompression {
                compression: 1,
                bits: 8
            })
        );
    }

    #[test]
    fn unsupported_masks() {
        let mut masks = Vec::new();
        for m in [0xf800u32, 0x07e0, 0x001f] {
            masks.extend_from_slice(&m.to_le_bytes());
        }
        let file = build(40, (1, 1), 32, BI_BITFIELDS, 0, &masks, &[0; 4]);
        assert_eq!(
            decode(&file),
            Err(BmpError::UnsupportedMasks {
                red: 0xf800,
                green: 0x07e0,
                blue: 0x001f
            })
        );
    }

    #[test]
    fn masks_missing_after_40_byte_header() {
        // Bit fields declared, but the pixels start right after the header.
        let file = build(40, (1, 1), 32, BI_BITFIELDS, 0, &[], &[0; 4]);
        assert_eq!(
            decode(&file),
            Err(BmpError::Truncated { need: 66, have: 58 })
        );
    }

    #[test]
    fn bad_palette() {
        let file = build(40, (1, 1), 8, BI_RGB, 257, &[0; 1028], &[0; 4]);
        assert_eq!(
            decode(&file),
            Err(BmpError::BadPalette {
                colors: 257,
                max: 256
            })
        );
        // A palette that does not fit the file.
        let mut f = build(40, (1, 1), 8, BI_RGB, 0, &[], &[0; 4]);
        set32(&mut f, 46, 200);
        assert_eq!(
            decode(&f),
            Err(BmpError::Truncated {
                need: 854,
                have: 58
            })
        );
    }

    #[test]
    fn bad_palette_index() {
        let file = build(40, (2, 1), 8, BI_RGB, 2, &[0; 8], &[1, 5, 0, 0]);
        assert_eq!(
            decode(&file),
            Err(BmpError::BadPaletteIndex {
                index: 5,
                colors: 2
            })
        );
        // The same in the 4-bit fallback: the bmp crate would index out of bounds.
        let file = build(40, (2, 1), 4, BI_RGB, 3, &[0; 12], &[0x13, 0, 0, 0]);
        assert_eq!(
            decode(&file),
            Err(BmpError::BadPaletteIndex {
                index: 3,
                colors: 3
            })
        );
    }

    /// Palette indices are proven before `out` grows, so a refused file
    /// leaves it as it was; the index named is the first the image shows,
    /// top row first (the last row stored, in a bottom-up file).
    #[test]
    fn bad_palette_index_is_found_before_out_grows() {
        let file = build(40, (1, 2), 8, BI_RGB, 2, &[0; 8], &[3, 0, 0, 0, 4, 0, 0, 0]);
        let mut out = vec![7u32; 3];
        assert_eq!(
            decode_0rgb(&file, &mut out),
            Err(BmpError::BadPaletteIndex {
                index: 4,
                colors: 2
            })
        );
        assert_eq!(out, [7, 7, 7]);
    }

    #[test]
    fn bad_pixel_offset() {
        let mut f = OPENCV_3X2;
        set32(&mut f, 10, 20); // inside the info header
        assert_eq!(
            decode(&f),
            Err(BmpError::BadPixelOffset {
                offset: 20,
                min: 54,
                len: 78
            })
        );
        set32(&mut f, 10, 1000); // past the end
        assert_eq!(
            decode(&f),
            Err(BmpError::BadPixelOffset {
                offset: 1000,
                min: 54,
                len: 78
            })
        );
        // Overlapping the palette of an 8-bit image.
        let mut f = build(40, (1, 1), 8, BI_RGB, 0, &[0; 1024], &[0; 4]);
        set32(&mut f, 10, 100);
        assert_eq!(
            decode(&f),
            Err(BmpError::BadPixelOffset {
                offset: 100,
                min: 1078,
                len: 1082
            })
        );
    }

    #[test]
    fn image_size_mismatch() {
        let mut f = OPENCV_3X2;
        set32(&mut f, 34, 18); // the unpadded size: too small
        assert_eq!(
            decode(&f),
            Err(BmpError::ImageSizeMismatch {
                declared: 18,
                expected: 24
            })
        );
        set32(&mut f, 34, 24); // exact: fine
        assert!(decode(&f).is_ok());
        set32(&mut f, 34, 25); // past the end of the file
        assert!(matches!(
            decode(&f),
            Err(BmpError::ImageSizeMismatch { declared: 25, .. })
        ));
    }

    /// A 512x512 1-bit file (32 KiB) decodes to 1 MiB of pixels: the cap
    /// must refuse it at one pixel short, accept it at exactly its size,
    /// and leave `out` alone when refusing.
    #[test]
    fn decode_capped_refuses_more_pixels_than_the_cap() {
        let (w, h) = (512u32, 512u32);
        let palette = [0, 0, 0, 0, 0xff, 0xff, 0xff, 0];
        let pixels = vec![0b1010_1010; row_len(w, 1) * h as usize];
        let file = build(40, (w as i32, h as i32), 1, BI_RGB, 0, &palette, &pixels);
        let cap = (w * h) as usize;

        let mut out = vec![7u32; 3];
        assert_eq!(
            decode_0rgb_capped(&file, cap - 1, &mut out),
            Err(BmpError::TooManyPixels {
                width: w,
                height: h,
                max: cap - 1
            })
        );
        assert_eq!(out, [7, 7, 7]);
        assert!(out.capacity() < cap, "refused, yet allocated");

        assert_eq!(decode_0rgb_capped(&file, cap, &mut out), Ok((w, h)));
        assert_eq!(out.len(), cap);
        assert_eq!(out[..2], [0xffffff, 0]);
    }

    /// The cap applies to every depth, and to top-down files (negative
    /// height) by their absolute size.
    #[test]
    fn decode_capped_counts_pixels_of_every_layout() {
        let mut out = Vec::new();
        assert_eq!(decode_0rgb_capped(&OPENCV_3X2, 6, &mut out), Ok((3, 2)));
        assert_eq!(
            decode_0rgb_capped(&OPENCV_3X2, 5, &mut out),
            Err(BmpError::TooManyPixels {
                width: 3,
                height: 2,
                max: 5
            })
        );
        let top_down = build(40, (2, -2), 32, BI_RGB, 0, &[], &[0; 16]);
        assert_eq!(decode_0rgb_capped(&top_down, 4, &mut out), Ok((2, 2)));
        assert!(matches!(
            decode_0rgb_capped(&top_down, 3, &mut out),
            Err(BmpError::TooManyPixels { height: 2, .. })
        ));
    }

    /// A hostile header claiming 16384x16384 is refused by the cap at once,
    /// before the (absent) pixel data is even looked at; the uncapped
    /// decoder still sees it as a truncated file, not as too many pixels.
    #[test]
    fn decode_capped_checks_the_cap_before_the_pixel_data() {
        let palette = [0, 0, 0, 0, 0xff, 0xff, 0xff, 0];
        let file = build(40, (16384, 16384), 1, BI_RGB, 0, &palette, &[0; 64]);
        assert!(matches!(
            decode_0rgb_capped(&file, 1 << 20, &mut Vec::new()),
            Err(BmpError::TooManyPixels {
                width: 16384,
                height: 16384,
                max: 1_048_576
            })
        ));
        assert!(matches!(
            decode(&file),
            Err(BmpError::PixelsTruncated { .. })
        ));
        assert_eq!(MAX_PIXELS, 16384 * 16384);
    }

    /// The reference: convert to BGR, then encode.
    fn yuyv_via_bgr(yuyv: &[u8], width: u32, height: u32, stride: usize) -> Vec<u8> {
        let mut bgr = vec![0; (width * height * 3) as usize];
        pixel::yuyv_to_bgr(yuyv, width, height, stride, &mut bgr).unwrap();
        let mut file = Vec::new();
        encode_bgr24(&bgr, width, height, &mut file).unwrap();
        file
    }

    proptest::proptest! {
        /// Byte-identical to convert-then-encode, for every row padding
        /// (width % 4), odd strides, and an `out` that held a larger file
        /// of other bytes before (padding must be zeroed, length exact).
        #[test]
        fn encode_yuyv_equals_yuyv_to_bgr_then_encode_bgr24(
            pairs in 1u32..40,
            height in 1u32..6,
            padding in 0usize..9,
            seed in proptest::prelude::any::<u64>(),
            old_len in 0usize..20_000,
        ) {
            let width = 2 * pairs;
            let stride = 2 * width as usize + padding;
            let yuyv = pixel::tests::random_yuyv(width as usize, height as usize, stride, seed);
            let mut out = vec![0xA5; old_len];
            encode_yuyv(&yuyv, width, height, stride, &mut out).unwrap();
            proptest::prop_assert_eq!(out, yuyv_via_bgr(&yuyv, width, height, stride));
        }
    }

    #[test]
    fn encode_yuyv_rejects_what_yuyv_to_bgr_rejects() {
        let mut out = Vec::new();
        assert_eq!(
            encode_yuyv(&[0; 12], 3, 1, 6, &mut out),
            Err(BmpError::Yuyv(pixel::PixelError::OddWidth { width: 3 }))
        );
        assert_eq!(
            encode_yuyv(&[0; 11], 2, 2, 8, &mut out),
            Err(BmpError::Yuyv(pixel::PixelError::InputTooShort {
                len: 11,
                need: 12
            }))
        );
        assert_eq!(
            encode_yuyv(&[0; 16], 4, 2, 6, &mut out),
            Err(BmpError::Yuyv(pixel::PixelError::StrideTooSmall {
                stride: 6,
                min: 8
            }))
        );
        assert_eq!(
            encode_yuyv(&[], 0, 2, 0, &mut out),
            Err(BmpError::BadDimensions {
                width: 0,
                height: 2
            })
        );
        assert!(out.is_empty(), "refused, yet wrote");
    }

    #[test]
    fn every_error_has_a_message() {
        let errors = [
            BmpError::BadDimensions {
                width: 0,
                height: 1,
            },
            BmpError::InputSize {
                len: 1,
                expected: 3,
            },
            BmpError::BadMagic { found: *b"PN" },
            BmpError::Truncated { need: 54, have: 3 },
            BmpError::SizeMismatch {
                declared: 1,
                actual: 2,
            },
            BmpError::UnsupportedHeader { size: 12 },
            BmpError::BadPlanes { planes: 2 },
            BmpError::UnsupportedDepth { bits: 16 },
            BmpError::UnsupportedCompression {
                compression: 1,
                bits: 8,
            },
            BmpError::UnsupportedMasks {
                red: 1,
                green: 2,
                blue: 3,
            },
            BmpError::BadPalette {
                colors: 300,
                max: 256,
            },
            BmpError::BadPaletteIndex {
                index: 9,
                colors: 2,
            },
            BmpError::BadPixelOffset {
                offset: 1,
                min: 54,
                len: 78,
            },
            BmpError::ImageSizeMismatch {
                declared: 1,
                expected: 24,
            },
            BmpError::PixelsTruncated { need: 78, have: 60 },
            BmpError::Fallback {
                bits: 4,
                reason: "unsupported header",
            },
            BmpError::TooManyPixels {
                width: 16384,
                height: 16384,
                max: 1 << 20,
            },
            BmpError::Yuyv(pixel::PixelError::OddWidth { width: 3 }),
        ];
        for e in errors {
            let text = e.to_string();
            assert!(text.len() > 20 && !text.contains("Todo"), "{e:?}: {text}");
        }
    }
}
