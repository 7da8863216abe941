//! [`Image`]: a picture as the tests compare it, whatever it came from (a
//! BMP the viewer recorded, a frame the agent sent, a screenshot of an X
//! server): 0x00RRGGBB pixels, rows top-down.

use std::path::Path;

/// `width`x`height` pixels as 0x00RRGGBB, rows top-down, tightly packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u32>,
}

impl Image {
    /// Decodes a BMP file with proto's decoder; panics if it is not a valid BMP.
    pub fn from_bmp(bmp: &[u8]) -> Image {
        let mut pixels = Vec::new();
        let (width, height) = proto::bmp::decode_0rgb(bmp, &mut pixels)
            .unwrap_or_else(|e| panic!("not a valid BMP: {e}"));
        Image {
            width,
            height,
            pixels,
        }
    }

    /// Reads and decodes a BMP file; panics naming the file if it cannot.
    pub fn read_bmp(path: &Path) -> Image {
        let bmp =
            std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut pixels = Vec::new();
        let (width, height) = proto::bmp::decode_0rgb(&bmp, &mut pixels)
            .unwrap_or_else(|e| panic!("{} is not a valid BMP: {e}", path.display()));
        Image {
            width,
            height,
            pixels,
        }
    }

    /// (width, height) in pixels.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The pixel at (x, y) as 0x00RRGGBB, or None outside the image.
    pub fn get(&self, x: u32, y: u32) -> Option<u32> {
        if x >= self.width || y >= self.height {
            return None;
        }
        self.pixels
            .get(y as usize * self.width as usize + x as usize)
            .copied()
    }

    /// The pixel at (x, y) as [R, G, B]; panics outside the image.
    pub fn rgb(&self, x: u32, y: u32) -> [u8; 3] {
        let p = self.get(x, y).unwrap_or_else(|| {
            panic!(
                "({x}, {y}) is outside the {}x{} image",
                self.width, self.height
            )
        });
        rgb(p)
    }

    /// The `width`x`height` part whose top-left corner is at (x, y), or None
    /// unless all of it lies inside this image (e.g. a window on a screenshot).
    pub fn crop(&self, x: i32, y: i32, width: u32, height: u32) -> Option<Image> {
        let (x, y) = (u32::try_from(x).ok()?, u32::try_from(y).ok()?);
        if x.checked_add(width)? > self.width || y.checked_add(height)? > self.height {
            return None;
        }
        let pixels = (y..y + height)
            .flat_map(|row| {
                let start = row as usize * self.width as usize + x as usize;
                self.pixels[start..start + width as usize].iter().copied()
            })
            .collect();
        Some(Image {
            width,
            height,
            pixels,
        })
    }
}

/// A 0x00RRGGBB pixel as [R, G, B].
pub fn rgb(pixel: u32) -> [u8; 3] {
    let [_, r, g, b] = pixel.to_be_bytes();
    [r, g, b]
}

/// The largest difference between two pixels in any one channel.
pub fn channel_distance(a: u32, b: u32) -> u8 {
    let (a, b) = (rgb(a), rgb(b));
    (0..3).map(|c| a[c].abs_diff(b[c])).max().unwrap_or(0)
}
