//! The colour bars, defined once: the eight bars the vivid driver draws and
//! the agent's pattern source copies (its top three quarters), and that the
//! tests' own clients send. Left to right: white, yellow, cyan, green,
//! magenta, red, blue, black; a lit channel is [`LEVEL_75`] (vivid's default
//! "75% Colorbar") or [`LEVEL_100`] (its "100% Colorbar").
//!
//! Bar `i` covers columns `i * width / 8 .. (i + 1) * width / 8`.

use crate::image::{channel_distance, rgb, Image};

/// A lit channel in the 75% bars (0.75 * 255).
pub const LEVEL_75: u8 = 191;
/// A lit channel in the 100% bars.
pub const LEVEL_100: u8 = 255;

/// One bar: its name and which of R, G, B are lit.
pub struct Bar {
    pub name: &'static str,
    lit: [bool; 3],
}

/// The eight bars, left to right.
pub const BARS: [Bar; 8] = [
    Bar::new("white", [true, true, true]),
    Bar::new("yellow", [true, true, false]),
    Bar::new("cyan", [false, true, true]),
    Bar::new("green", [false, true, false]),
    Bar::new("magenta", [true, false, true]),
    Bar::new("red", [true, false, false]),
    Bar::new("blue", [false, false, true]),
    Bar::new("black", [false, false, false]),
];

impl Bar {
    const fn new(name: &'static str, lit: [bool; 3]) -> Bar {
        Bar { name, lit }
    }

    /// The bar's colour as [R, G, B] with lit channels at `level`.
    pub fn rgb(&self, level: u8) -> [u8; 3] {
        self.lit.map(|on| if on { level } else { 0 })
    }

    /// The bar's colour as a decoded pixel, 0x00RRGGBB.
    pub fn pixel(&self, level: u8) -> u32 {
        let [r, g, b] = self.rgb(level);
        u32::from_be_bytes([0, r, g, b])
    }
}

/// The middle column of bar `i` in an image `width` pixels wide.
pub fn centre_x(i: usize, width: u32) -> u32 {
    (2 * i as u32 + 1) * width / 16
}

/// A tightly packed, top-down BGR image (what `bmp::encode_bgr24` takes) of
/// the 75% bars, rotated left by `shift` bars so consecutive frames differ.
pub fn bgr_image(width: u32, height: u32, shift: usize) -> Vec<u8> {
    let mut bgr = Vec::with_capacity((width * height * 3) as usize);
    for _ in 0..height {
        for x in 0..width {
            let [r, g, b] = BARS[(x as usize * 8 / width as usize + shift) % 8].rgb(LEVEL_75);
            bgr.extend_from_slice(&[b, g, r]);
        }
    }
    bgr
}

/// Where and how closely [`check`] looks for the bars.
pub struct Probe<'a> {
    /// The rows to sample, each at every bar's [`centre_x`].
    pub rows: &'a [u32],
    /// Each sample is the average of the square of `2 * radius + 1` pixels
    /// around that point (0: the pixel alone).
    pub radius: u32,
    /// The level of a lit channel: [`LEVEL_75`] or [`LEVEL_100`].
    pub level: u8,
    /// How far a channel may be off: YUYV's limited-range rounding moves it a
    /// few steps; anything more is a wrong colour.
    pub tolerance: u8,
}

/// Checks that `image` shows the bars where `probe` looks. Returns the
/// largest channel deviation seen, or a description of every sample further
/// off than the tolerance.
pub fn check(image: &Image, probe: &Probe<'_>) -> Result<u8, String> {
    let r = probe.radius;
    let mut worst = 0;
    let mut bad = Vec::new();
    for (i, bar) in BARS.iter().enumerate() {
        let want = bar.pixel(probe.level);
        let x = centre_x(i, image.width);
        for &y in probe.rows {
            let mut sum = [0u32; 3];
            for sy in y.saturating_sub(r)..=y + r {
                for sx in x.saturating_sub(r)..=x + r {
                    let got = rgb(image.get(sx, sy).unwrap_or_else(|| {
                        panic!(
                            "({sx}, {sy}) is outside the {}x{} image",
                            image.width, image.height
                        )
                    }));
                    for c in 0..3 {
                        sum[c] += u32::from(got[c]);
                    }
                }
            }
            let n = (2 * r + 1) * (2 * r + 1);
            let [r_avg, g_avg, b_avg] = sum.map(|s| s / n);
            let got = r_avg << 16 | g_avg << 8 | b_avg;
            let deviation = channel_distance(got, want);
            worst = worst.max(deviation);
            if deviation > probe.tolerance {
                bad.push(format!(
                    "bar {i} ({}) at ({x}, {y}) is RGB {:?}, want {:?} within {}",
                    bar.name,
                    rgb(got),
                    rgb(want),
                    probe.tolerance
                ));
            }
        }
    }
    if bad.is_empty() {
        Ok(worst)
    } else {
        Err(bad.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars_image(width: u32, height: u32, shift: usize) -> Image {
        let bgr = bgr_image(width, height, shift);
        let pixels = bgr
            .chunks_exact(3)
            .map(|p| u32::from_be_bytes([0, p[2], p[1], p[0]]))
            .collect();
        Image {
            width,
            height,
            pixels,
        }
    }

    const MIDDLE: Probe<'static> = Probe {
        rows: &[4],
        radius: 2,
        level: LEVEL_75,
        tolerance: 0,
    };

    #[test]
    fn bgr_image_passes_its_own_check_exactly() {
        assert_eq!(check(&bars_image(160, 10, 0), &MIDDLE), Ok(0));
    }

    #[test]
    fn check_fails_on_shifted_bars_and_on_the_100_percent_level() {
        let shifted = check(&bars_image(160, 10, 1), &MIDDLE).unwrap_err();
        assert!(shifted.contains("bar 0 (white)"), "{shifted}");
        let full = Probe {
            level: LEVEL_100,
            tolerance: 8,
            ..MIDDLE
        };
        assert!(check(&bars_image(160, 10, 0), &full).is_err());
    }

    #[test]
    fn bar_colours_are_vivids_75_percent_bars() {
        assert_eq!(BARS[1].pixel(LEVEL_75), 0xbfbf00, "yellow");
        assert_eq!(BARS[6].rgb(LEVEL_100), [0, 0, 255], "blue");
    }
}
