//! Pixel conversion: YUYV 4:2:2 to BGR24 (BT.601 limited range, as OpenCV's
//! `COLOR_YUV2BGR_YUYV`), and BGR24 to 0RGB.

use std::fmt;

/// Why a conversion could not run: the buffers do not fit the dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PixelError {
    /// TODO(proto helper): named variants carrying the offending values.
    Todo,
}

impl fmt::Display for PixelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for PixelError {}

/// Converts a YUYV image into `bgr` (tightly packed, top-down,
/// `width * height * 3` bytes). `stride` is V4L2's `bytesperline` and may
/// exceed `2 * width`; `width` must be even. Allocates nothing.
pub fn yuyv_to_bgr(
    yuyv: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    bgr: &mut [u8],
) -> Result<(), PixelError> {
    let _ = (yuyv, width, height, stride, bgr);
    todo!()
}

/// Converts tightly packed BGR24 into 0RGB `u32` pixels. Allocates nothing.
pub fn bgr_to_0rgb(bgr: &[u8], width: u32, height: u32, out: &mut [u32]) -> Result<(), PixelError> {
    let _ = (bgr, width, height, out);
    todo!()
}
