//! A frame body of either kind, told by its magic bytes and decoded to 0RGB
//! pixels within the receiver's limits: the viewer's decode path, from
//! body to pixels, in one place the fuzzer drives too.
//!
//! - `1F 8B`: gzip of a BMP, the original design's body. gunzip capped at
//!   `max_bmp_len` bytes ([`gzip::Decompressor`]), then
//!   [`bmp::decode_0rgb_capped`].
//! - `FF D8 FF`: a JPEG file. [`jpeg::inspect`] checks its structure and
//!   frame header; it is refused over the pixel cap before any allocation;
//!   a file without Huffman tables (an MJPEG camera's) gets the standard
//!   ones in its own buffer for decoding and loses them again after, so the
//!   body is left as received.
//! - Anything else is [`BodyError::UnknownBody`].
//!
//! The pixel cap is the viewer's: one pixel per byte of `max_bmp_len`
//! ([`max_pixels`]), so every 8-, 24- and 32-bit BMP within the byte cap
//! passes, whatever its kind.

use std::fmt;

use crate::bmp::{self, BmpError};
use crate::gzip::{self, GzipError};
use crate::jpeg::{self, JpegError};

/// What a body is, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// gzip of a BMP: the original design's format.
    GzipBmp,
    /// A JPEG file.
    Jpeg,
}

impl Kind {
    /// Tells `body`'s kind by its magic bytes.
    pub fn of(body: &[u8]) -> Result<Kind, BodyError> {
        if body.starts_with(&[0x1F, 0x8B]) {
            Ok(Kind::GzipBmp)
        } else if body.starts_with(&jpeg::MAGIC) {
            Ok(Kind::Jpeg)
        } else {
            let mut start = [0u8; 3];
            let len = body.len().min(3);
            start[..len].copy_from_slice(&body[..len]);
            Err(BodyError::UnknownBody {
                start,
                len: len as u8,
            })
        }
    }
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Neither gzip (`1F 8B`) nor JPEG (`FF D8 FF`).
    UnknownBody {
        /// The body's first bytes (`len` of them, up to 3).
        start: [u8; 3],
        /// How many of `start` the body has.
        len: u8,
    },
    /// The gzip stream is bad, or inflates past the cap.
    Gzip(GzipError),
    /// The gzip stream held a bad or too large BMP.
    Bmp(BmpError),
    /// The JPEG is bad, unsupported or too large.
    Jpeg(JpegError),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::UnknownBody { start, len } => {
                write!(
                    f,
                    "bad frame body: not a gzip stream (1F 8B) nor a JPEG file (FF D8 FF); it starts"
                )?;
                if *len == 0 {
                    return write!(f, " empty");
                }
                for b in &start[..usize::from(*len).min(3)] {
                    write!(f, " {b:02X}")?;
                }
                Ok(())
            }
            BodyError::Gzip(e) => write!(f, "bad frame body: {e}"),
            BodyError::Bmp(e) => write!(f, "bad BMP in frame: {e}"),
            BodyError::Jpeg(e) => write!(f, "bad JPEG in frame: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// Most pixels a frame may have: one per byte of `max_bmp_len`. Every
/// OpenCV BMP (8, 24, 32 bits) is within it; it stops a small 1-bit BMP
/// (or a small JPEG) from announcing 16384x16384 pixels and costing 1 GiB
/// of 0RGB buffer.
pub fn max_pixels(max_bmp_len: usize) -> usize {
    max_bmp_len.min(bmp::MAX_PIXELS)
}

/// A decoded body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// What it was.
    pub kind: Kind,
    /// Width, in pixels.
    pub width: u32,
    /// Height, in pixels.
    pub height: u32,
}

/// Decodes bodies of both kinds, keeping its buffers between frames.
pub struct Decoder {
    gunzip: gzip::Decompressor,
    jpeg: jpeg::Decoder,
    max_pixels: usize,
    /// The last gzip-BMP body's BMP file.
    bmp: Vec<u8>,
}

impl Decoder {
    /// A decoder for BMPs of at most `max_bmp_len` bytes, and frames of
    /// at most [`max_pixels`]`(max_bmp_len)` pixels of either kind.
    pub fn new(max_bmp_len: usize) -> Decoder {
        let max_pixels = max_pixels(max_bmp_len);
        Decoder {
            gunzip: gzip::Decompressor::new(max_bmp_len),
            jpeg: jpeg::Decoder::new(max_pixels),
            max_pixels,
            bmp: Vec::new(),
        }
    }

    /// Decodes `body` into 0RGB pixels (`0x00RRGGBB`, top row first),
    /// replacing the contents of `out`. `body` is left as received (a JPEG
    /// without Huffman tables is completed in place for decoding, then
    /// restored; its capacity may grow by 420 bytes).
    pub fn decode_0rgb(
        &mut self,
        body: &mut Vec<u8>,
        out: &mut Vec<u32>,
    ) -> Result<Decoded, BodyError> {
        let kind = Kind::of(body)?;
        let (width, height) = match kind {
            Kind::GzipBmp => {
                self.gunzip
                    .decompress(body, &mut self.bmp)
                    .map_err(BodyError::Gzip)?;
                bmp::decode_0rgb_capped(&self.bmp, self.max_pixels, out).map_err(BodyError::Bmp)?
            }
            Kind::Jpeg => {
                let info = jpeg::inspect(body).map_err(BodyError::Jpeg)?;
                jpeg::complete_in_place(body, &info);
                let decoded = self.jpeg.decode_0rgb(body, out);
                if !info.has_huffman_tables {
                    let tables =
                        info.first_scan..info.first_scan + jpeg::STANDARD_HUFFMAN_TABLES.len();
                    body.drain(tables);
                }
                let decoded = decoded.map_err(BodyError::Jpeg)?;
                (decoded.width, decoded.height)
            }
        };
        Ok(Decoded {
            kind,
            width,
            height,
        })
    }

    /// The BMP file of the last gzip-BMP body decoded (what `--record`
    /// writes for it).
    pub fn bmp(&self) -> &[u8] {
        &self.bmp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip_bmp(width: u32, height: u32) -> Vec<u8> {
        let mut file = Vec::new();
        bmp::encode_bgr24(
            &vec![7; (width * height * 3) as usize],
            width,
            height,
            &mut file,
        )
        .unwrap();
        let mut body = Vec::new();
        gzip::Compressor::new(1)
            .unwrap()
            .compress_append(&file, &mut body);
        body
    }

    fn jpeg_file(width: u32, height: u32) -> Vec<u8> {
        let mut body = Vec::new();
        jpeg::Encoder::new(80)
            .unwrap()
            .encode_bgr(
                &vec![99; (width * height * 3) as usize],
                width,
                height,
                &mut body,
            )
            .unwrap();
        body
    }

    #[test]
    fn kinds_are_told_by_magic_bytes() {
        assert_eq!(Kind::of(&gzip_bmp(2, 2)), Ok(Kind::GzipBmp));
        assert_eq!(Kind::of(&jpeg_file(2, 2)), Ok(Kind::Jpeg));
        let err = Kind::of(b"GIF89a").unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad frame body: not a gzip stream (1F 8B) nor a JPEG file (FF D8 FF); it starts 47 49 46"
        );
        assert!(Kind::of(&[])
            .unwrap_err()
            .to_string()
            .ends_with("starts empty"));
        assert!(Kind::of(&[0xFF])
            .unwrap_err()
            .to_string()
            .ends_with("starts FF"));
    }

    #[test]
    fn both_kinds_decode_and_the_body_is_left_as_received() {
        let mut decoder = Decoder::new(1 << 20);
        let mut out = Vec::new();
        let mut body = gzip_bmp(5, 3);
        let d = decoder.decode_0rgb(&mut body, &mut out).unwrap();
        assert_eq!((d.kind, d.width, d.height), (Kind::GzipBmp, 5, 3));
        assert_eq!(out, vec![0x070707; 15]);
        assert_eq!(decoder.bmp()[..2], *b"BM");

        let jpg = jpeg_file(16, 8);
        // Without its DHT, as a camera sends it.
        let info = jpeg::inspect(&jpg).unwrap();
        let dht = jpg.windows(2).position(|w| w == [0xFF, 0xC4]).unwrap();
        let mut bare = jpg[..dht].to_vec();
        bare.extend_from_slice(&jpg[info.first_scan..]);
        for body in [jpg.clone(), bare] {
            let mut received = body.clone();
            let d = decoder.decode_0rgb(&mut received, &mut out).unwrap();
            assert_eq!((d.kind, d.width, d.height), (Kind::Jpeg, 16, 8));
            assert_eq!(received, body);
            assert_eq!(out.len(), 128);
        }
    }

    #[test]
    fn the_pixel_cap_is_one_per_bmp_byte_for_both_kinds() {
        let mut decoder = Decoder::new(100);
        let mut out = Vec::new();
        assert!(decoder
            .decode_0rgb(&mut jpeg_file(10, 10), &mut out)
            .is_ok());
        assert!(matches!(
            decoder.decode_0rgb(&mut jpeg_file(11, 10), &mut out),
            Err(BodyError::Jpeg(JpegError::TooManyPixels { max: 100, .. }))
        ));
        assert!(matches!(
            decoder.decode_0rgb(&mut gzip_bmp(11, 10), &mut out),
            Err(BodyError::Gzip(GzipError::TooLarge { .. }))
        ));
    }
}
