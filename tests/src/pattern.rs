//! The agent's `--source pattern` frames, read back (see the layout in
//! `agent/src/source/pattern.rs`): the [`bars`](crate::bars) in the top three
//! quarters, a lane with a moving marker, and in the last eighth the frame
//! number as 32 cells, most significant bit first, white = 1.

use crate::image::{rgb, Image};

/// Rows of a pattern frame `height` pixels high that show the bars.
pub fn bars_height(height: u32) -> u32 {
    height - height / 4
}

/// The frame number drawn in `frame`'s counter lane (read on its middle row,
/// at the middle of each cell), or None if a cell lies outside the image.
pub fn counter(frame: &Image) -> Option<u32> {
    let (w, h) = (frame.width, frame.height);
    let cell = (w / 32) & !1;
    let y = h - (h / 4 - h / 8) / 2 - 1;
    (0..32).try_fold(0, |n, bit| {
        let [r, g, b] = rgb(frame.get(bit * cell + cell / 2, y)?);
        let white = u32::from(r) + u32::from(g) + u32::from(b) > 3 * 128;
        Some(n << 1 | u32::from(white))
    })
}
