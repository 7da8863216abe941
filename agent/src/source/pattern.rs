//! The `pattern` source: 75% colour bars in the order the vivid test driver
//! draws them, with a moving marker and a frame counter below, generated
//! directly as YUYV. Deterministic: frame `n` depends only on `n` and the
//! size, so tests can check every pixel.
//!
//! ```text
//! rows 0 .. 3/4 h     eight bars: white yellow cyan green magenta red blue black (191/255)
//! next 1/8 h          black lane with a white square moving 4 px per frame
//! last 1/8 h          frame counter: 32 cells, most significant bit first, white = 1
//! ```

use anyhow::{Context, Result};
use proto::format::{Layout, PixelFormat};

use super::Capture;
use crate::cli::Size;

/// The bars as (R, G, B), left to right, at 75% of full scale.
pub const BARS_RGB: [[u8; 3]; 8] = [
    [191, 191, 191], // white
    [191, 191, 0],   // yellow
    [0, 191, 191],   // cyan
    [0, 191, 0],     // green
    [191, 0, 191],   // magenta
    [191, 0, 0],     // red
    [0, 0, 191],     // blue
    [0, 0, 0],       // black
];

/// Bits of the frame counter drawn in the bottom lane.
pub const COUNTER_BITS: u32 = 32;

/// How far the marker moves per frame, in pixels (even, to keep YUYV pairs whole).
const MARKER_STEP: usize = 4;

/// Limited-range white and black, as YUYV (Y, U, V).
const WHITE: [u8; 3] = [235, 128, 128];
const BLACK: [u8; 3] = [16, 128, 128];

/// Generates pattern frames of one size.
pub struct Pattern {
    size: Size,
    /// The static part (bars and the black lanes), copied into each frame.
    template: Vec<u8>,
    bars_height: usize,
    lane_height: usize,
}

impl Pattern {
    pub fn new(size: Size) -> Pattern {
        let (width, height) = (size.width as usize, size.height as usize);
        let band_height = height / 4;
        let bars_height = height - band_height;
        let lane_height = band_height / 2;
        let bars: Vec<[u8; 3]> = BARS_RGB.iter().map(|&rgb| rgb_to_yuv(rgb)).collect();

        let mut template = Vec::with_capacity(width * height * 2);
        for row in 0..height {
            for pair in 0..width / 2 {
                let yuv = if row < bars_height {
                    bars[pair * 2 * BARS_RGB.len() / width]
                } else {
                    BLACK
                };
                template.extend_from_slice(&[yuv[0], yuv[1], yuv[0], yuv[2]]);
            }
        }
        Pattern {
            size,
            template,
            bars_height,
            lane_height,
        }
    }

    /// Replaces `out` with frame number `n`, tightly packed YUYV.
    pub fn render(&self, n: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.template);
        let width = self.size.width as usize;
        let stride = width * 2;
        let lane = self.lane_height;
        if lane == 0 {
            return;
        }

        // The marker: a square as tall as its lane, sliding right and wrapping.
        let side = (lane.min(width) & !1).max(2).min(width);
        let travel = width - side + 1;
        let x0 = (((n % travel as u64) as usize * MARKER_STEP) % travel) & !1;
        for row in self.bars_height..self.bars_height + lane {
            fill(&mut out[row * stride..(row + 1) * stride], x0, side, WHITE);
        }

        // The counter: 32 cells across the last lane.
        let cell = (width / COUNTER_BITS as usize) & !1;
        if cell == 0 {
            return;
        }
        let counter = n as u32; // wraps after 2^32 frames, by design
        for row in self.bars_height + lane..self.size.height as usize {
            let line = &mut out[row * stride..(row + 1) * stride];
            for bit in 0..COUNTER_BITS {
                let on = (counter >> (COUNTER_BITS - 1 - bit)) & 1 == 1;
                let colour = if on { WHITE } else { BLACK };
                fill(line, bit as usize * cell, cell, colour);
            }
        }
    }
}

/// Paints pixels `x0 .. x0 + len` (both even) of one YUYV row.
fn fill(row: &mut [u8], x0: usize, len: usize, yuv: [u8; 3]) {
    let px = [yuv[0], yuv[1], yuv[0], yuv[2]];
    let end = (x0 + len).min(row.len() / 2);
    for pair in row[x0 * 2..end * 2].chunks_exact_mut(4) {
        pair.copy_from_slice(&px);
    }
}

/// BT.601 limited range, the inverse of what OpenCV's `COLOR_YUV2BGR_YUYV`
/// undoes.
pub fn rgb_to_yuv([r, g, b]: [u8; 3]) -> [u8; 3] {
    let (r, g, b) = (f64::from(r), f64::from(g), f64::from(b));
    let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
    let u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
    let v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
    [y, u, v].map(|c| c.round().clamp(0.0, 255.0) as u8)
}

/// Runs the pattern source until a stop is requested.
pub fn run(size: Size, fps: u32, capture: &mut Capture) -> Result<()> {
    let layout =
        Layout::new(PixelFormat::Yuyv, size.width, size.height, 0).context("pattern size")?;
    let pattern = Pattern::new(size);
    log::info!("pattern: {size} YUYV @ {fps} fps (0 = as fast as the encoders go)");
    let mut n = 0u64;
    super::run_paced(layout, fps, capture, |buf| {
        pattern.render(n, buf);
        n += 1;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y_at(frame: &[u8], width: usize, x: usize, y: usize) -> u8 {
        frame[(y * width + x) * 2]
    }

    #[test]
    fn bars_are_vivid_75_percent_colours() {
        // Computed independently (Python, the BT.601 limited-range formula).
        assert_eq!(rgb_to_yuv([191, 191, 191]), [180, 128, 128]);
        assert_eq!(rgb_to_yuv([191, 191, 0]), [161, 44, 142]);
        assert_eq!(rgb_to_yuv([0, 0, 0]), [16, 128, 128]);
    }

    #[test]
    fn frames_are_deterministic_and_carry_their_number() {
        let size = Size {
            width: 640,
            height: 480,
        };
        let pattern = Pattern::new(size);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        pattern.render(0x8000_0001, &mut a);
        pattern.render(0x8000_0001, &mut b);
        assert_eq!(a, b);
        assert_eq!(a.len(), 640 * 480 * 2);
        // Counter lane: first and last cells set, the second clear.
        let cell = 640 / 32;
        let row = 470;
        assert_eq!(y_at(&a, 640, cell / 2, row), 235);
        assert_eq!(y_at(&a, 640, cell + cell / 2, row), 16);
        assert_eq!(y_at(&a, 640, 31 * cell + cell / 2, row), 235);
        // The marker moves.
        pattern.render(1, &mut b);
        let lane_row = 370;
        let marker = |f: &[u8]| (0..640).find(|&x| y_at(f, 640, x, lane_row) == 235);
        pattern.render(0, &mut a);
        assert_eq!(marker(&a), Some(0));
        assert_eq!(marker(&b), Some(MARKER_STEP));
    }

    #[test]
    fn any_even_size_renders_without_panicking() {
        for (width, height) in [(2, 1), (2, 2), (4, 7), (30, 8), (66, 5), (1282, 3)] {
            let pattern = Pattern::new(Size { width, height });
            let mut out = Vec::new();
            for n in [0, 1, 12345, u64::MAX] {
                pattern.render(n, &mut out);
                assert_eq!(out.len(), width as usize * height as usize * 2);
            }
        }
    }
}
