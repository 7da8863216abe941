//! BMP encoding (24-bit, byte-identical to OpenCV's `cv2.imencode('.bmp')`)
//! and decoding to 0RGB pixels, with every header field checked.

use std::fmt;

/// File header (14) plus BITMAPINFOHEADER (40).
pub const HEADER_LEN: usize = 54;

/// Largest accepted width or height, in pixels.
pub const MAX_DIMENSION: u32 = 16384;

/// Why a BMP could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BmpError {
    /// TODO(proto helper): named variants carrying the offending values.
    Todo,
}

impl fmt::Display for BmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for BmpError {}

/// Size in bytes of the 24-bit BMP file for a `width` x `height` image.
pub fn encoded_len(width: u32, height: u32) -> Result<usize, BmpError> {
    let _ = (width, height);
    todo!()
}

/// Replaces `out` with a 24-bit bottom-up BMP of `bgr`, a tightly packed,
/// top-down BGR24 image. The bytes are exactly what OpenCV writes.
pub fn encode_bgr24(
    bgr: &[u8],
    width: u32,
    height: u32,
    out: &mut Vec<u8>,
) -> Result<(), BmpError> {
    let _ = (bgr, width, height, out);
    todo!()
}

/// Decodes a BMP file into `out` as 0RGB `u32` pixels (minifb's format),
/// top row first, replacing its contents. Returns `(width, height)`.
pub fn decode_0rgb(bmp: &[u8], out: &mut Vec<u32>) -> Result<(u32, u32), BmpError> {
    let _ = (bmp, out);
    todo!()
}
