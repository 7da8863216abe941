//! JPEG bodies: a cheap structural check, the standard Huffman tables that
//! MJPEG cameras leave out, capped decoding and encoding.
//!
//! A frame body that starts with [`MAGIC`] (`FF D8 FF`: SOI and the next
//! marker) is a JPEG file; one that starts with gzip's `1F 8B` is the
//! original design's gzip-BMP. Both travel in the same `[id][len][body]`
//! frames.
//!
//! [`inspect`] walks the markers, never the pixels: SOI, the segments up to
//! the frame header (SOF), every scan's entropy-coded data up to EOI. It
//! costs one pass over the bytes looking for `FF`, a few microseconds for a
//! camera frame, and it is what makes the rest safe:
//!
//! - **Dimensions before allocation.** [`Decoder`] refuses a frame whose
//!   header declares more pixels than its cap before it allocates anything.
//! - **JPEG bombs.** Every 8x8 block of every component costs at least one
//!   bit of entropy-coded data (a Huffman code is at least one bit long, and
//!   every block needs its DC code, in baseline and progressive JPEG alike),
//!   so a file declaring 16384x16384 pixels in a few hundred bytes is
//!   refused as [`JpegError::TooLittleData`] without decoding.
//! - **Truncated frames** (a USB error cut the transfer) have no EOI:
//!   [`JpegError::Truncated`]. Bytes after EOI (some cameras pad their
//!   buffers) are not part of the JPEG: [`Info::len`] says where it ends.
//! - **What no camera sends is refused by name**: arithmetic coding,
//!   lossless and hierarchical JPEG, precision other than 8 bits, and
//!   component counts other than 1 (grey) and 3 (YCbCr).
//!
//! Cameras that stream MJPEG often omit the Huffman tables (DHT) and rely
//! on the standard ones of ITU T.81 Annex K.3, as the OpenDML AVI spec
//! allows. [`complete`] inserts those tables before the first scan, so every
//! JPEG decoder accepts the result; [`Decoder`] does the same internally.
//!
//! Decoding is zune-jpeg (pure Rust, SIMD on x86 and ARM) in strict mode,
//! so corrupt entropy data is an error, not a half-grey picture. Encoding
//! is jpeg-encoder (pure Rust, AVX2 on x86), with libjpeg's chroma averaging
//! and 4:2:0 sampling, what `cv2.imencode('.jpg')` does by default. Both
//! were chosen by benchmark (README, "Performance"): libjpeg-turbo is faster
//! but is C that needs cmake and nasm to build, for ARM too, and the pure-Rust
//! pair meets the speed goals.

use std::fmt;

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

/// The first three bytes of every JPEG file: SOI (`FF D8`) and the `FF`
/// of the marker after it. What the viewer sniffs to tell JPEG from gzip.
pub const MAGIC: [u8; 3] = [0xFF, 0xD8, 0xFF];

/// Largest width or height, as for BMP bodies (a test keeps them equal).
pub const MAX_DIMENSION: u32 = 16384;

/// The default encoding quality, 1 (smallest) to 100 (best).
pub const DEFAULT_QUALITY: u8 = 85;

/// Marker codes (the byte after `FF`), ITU T.81 Table B.1.
mod marker {
    pub const SOF0: u8 = 0xC0; // baseline DCT, Huffman
    pub const SOF1: u8 = 0xC1; // extended sequential DCT, Huffman
    pub const SOF2: u8 = 0xC2; // progressive DCT, Huffman
    pub const DHT: u8 = 0xC4;
    pub const JPG: u8 = 0xC8; // reserved for extensions
    pub const DAC: u8 = 0xCC; // arithmetic-coding conditioning
    pub const RST0: u8 = 0xD0;
    pub const RST7: u8 = 0xD7;
    pub const SOI: u8 = 0xD8;
    pub const EOI: u8 = 0xD9;
    pub const SOS: u8 = 0xDA;
    pub const TEM: u8 = 0x01;
}

/// Why a JPEG body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JpegError {
    /// The body does not start with SOI and a marker (`FF D8 FF`).
    NotJpeg,
    /// The file ends before its EOI marker, `len` bytes in (a frame cut
    /// short in transfer).
    Truncated {
        /// Bytes in the body.
        len: usize,
    },
    /// A marker segment is malformed: a marker where none may be, or a
    /// length shorter than its own field.
    BadSegment {
        /// The marker code (the byte after `FF`).
        marker: u8,
        /// Where the segment starts in the body.
        offset: usize,
    },
    /// A scan (or EOI) comes before any frame header, or the file holds no
    /// scan at all.
    NoFrameHeader,
    /// More than one frame header: a hierarchical or concatenated file.
    SecondFrameHeader {
        /// Where the second one starts.
        offset: usize,
    },
    /// A coding process no camera uses and we do not decode: arithmetic
    /// coding (SOF9-SOF15, DAC), lossless (SOF3) or hierarchical
    /// (SOF5-SOF7) JPEG.
    UnsupportedProcess {
        /// The marker code that names it.
        marker: u8,
    },
    /// Sample precision other than 8 bits.
    UnsupportedPrecision {
        /// Bits per sample the frame header declares.
        bits: u8,
    },
    /// A component count other than 1 (grey) or 3 (YCbCr).
    UnsupportedComponents {
        /// The count the frame header declares.
        count: u8,
    },
    /// The frame header is inconsistent: its length disagrees with its
    /// component count, or a sampling factor is outside 1..=4.
    BadFrameHeader,
    /// A width or height of 0 (a height defined later by DNL is not
    /// supported) or over [`MAX_DIMENSION`].
    BadDimensions {
        /// Width the frame header declares, in pixels.
        width: u32,
        /// Height the frame header declares, in pixels.
        height: u32,
    },
    /// More pixels than the caller's cap, refused before any allocation.
    TooManyPixels {
        /// Width, in pixels.
        width: u32,
        /// Height, in pixels.
        height: u32,
        /// The cap, in pixels.
        max: usize,
    },
    /// Too few bytes of entropy-coded data for the size declared: at least
    /// one bit per 8x8 block is needed (a JPEG bomb).
    TooLittleData {
        /// Width, in pixels.
        width: u32,
        /// Height, in pixels.
        height: u32,
        /// Bytes of entropy-coded data in the file.
        data_len: usize,
        /// Bytes the declared blocks need at least.
        needed: usize,
    },
    /// The decoder found the tables or the entropy-coded data corrupt.
    Corrupt,
    /// An encoding quality outside 1..=100.
    BadQuality {
        /// The quality asked for.
        quality: u8,
    },
    /// The pixels handed to the encoder do not fill the size given.
    BadImage {
        /// Width, in pixels.
        width: u32,
        /// Height, in pixels.
        height: u32,
        /// Bytes given.
        len: usize,
    },
}

impl fmt::Display for JpegError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JpegError::NotJpeg => write!(f, "body is not a JPEG file (no SOI marker)"),
            JpegError::Truncated { len } => {
                write!(f, "JPEG file of {len} bytes is truncated (no EOI marker)")
            }
            JpegError::BadSegment { marker, offset } => {
                write!(f, "JPEG marker segment {marker:#04X} at byte {offset} is malformed")
            }
            JpegError::NoFrameHeader => write!(f, "JPEG file has no frame header before its scan"),
            JpegError::SecondFrameHeader { offset } => {
                write!(f, "JPEG file has a second frame header at byte {offset}")
            }
            JpegError::UnsupportedProcess { marker } => write!(
                f,
                "JPEG coding process of marker {marker:#04X} (arithmetic, lossless or hierarchical) is not supported; send baseline or progressive Huffman JPEG"
            ),
            JpegError::UnsupportedPrecision { bits } => {
                write!(f, "JPEG with {bits}-bit samples is not supported (only 8)")
            }
            JpegError::UnsupportedComponents { count } => write!(
                f,
                "JPEG with {count} components is not supported (only 1, grey, or 3, YCbCr)"
            ),
            JpegError::BadFrameHeader => write!(f, "JPEG frame header is malformed"),
            JpegError::BadDimensions { width, height } => write!(
                f,
                "JPEG size {width}x{height} is out of range 1..={MAX_DIMENSION} per side"
            ),
            JpegError::TooManyPixels { width, height, max } => write!(
                f,
                "JPEG of {width}x{height} pixels is over the {max}-pixel limit"
            ),
            JpegError::TooLittleData {
                width,
                height,
                data_len,
                needed,
            } => write!(
                f,
                "JPEG declares {width}x{height} pixels but carries {data_len} bytes of image data, \
                 fewer than the {needed} that size needs (a decompression bomb)"
            ),
            JpegError::Corrupt => write!(f, "JPEG image data is corrupt"),
            JpegError::BadQuality { quality } => {
                write!(f, "JPEG quality {quality} is out of range 1..=100")
            }
            JpegError::BadImage { width, height, len } => write!(
                f,
                "{len} bytes of pixels do not fill a {width}x{height} image"
            ),
        }
    }
}

impl std::error::Error for JpegError {}

/// What [`inspect`] learned about a JPEG file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// Width, in pixels.
    pub width: u32,
    /// Height, in pixels.
    pub height: u32,
    /// 1 (grey) or 3 (YCbCr).
    pub components: u8,
    /// The first component's (luma's) sampling factors against the
    /// others': (2, 1) is 4:2:2, (2, 2) is 4:2:0, (1, 1) is 4:4:4 or grey.
    pub luma_sampling: (u8, u8),
    /// Progressive (SOF2) rather than sequential.
    pub progressive: bool,
    /// The file defines Huffman tables (DHT) itself. When it does not, the
    /// standard ones are meant ([`complete`] inserts them).
    pub has_huffman_tables: bool,
    /// Bytes from SOI through EOI; anything after is not part of the JPEG.
    pub len: usize,
    /// Where the first scan (SOS) starts, where [`complete`] inserts tables.
    pub first_scan: usize,
    /// Bytes of entropy-coded data, over all scans.
    pub data_len: usize,
}

impl Info {
    /// Width times height.
    pub fn pixels(&self) -> usize {
        self.width as usize * self.height as usize
    }
}

/// A frame header's sampling, kept to count blocks.
#[derive(Clone, Copy)]
struct Component {
    h: u8,
    v: u8,
}

/// Checks the structure of a JPEG file and reads its frame header, without
/// decoding any pixels. See the module doc for what it guarantees.
pub fn inspect(body: &[u8]) -> Result<Info, JpegError> {
    if body.len() < MAGIC.len() || body[..MAGIC.len()] != MAGIC {
        return Err(JpegError::NotJpeg);
    }
    let truncated = JpegError::Truncated { len: body.len() };
    let mut frame: Option<(Info, [Component; 3])> = None;
    let mut has_huffman_tables = false;
    let mut first_scan = None;
    let mut data_len = 0usize;
    let mut pos = 2;
    loop {
        // A marker: FF, any number of FF fill bytes, then the code.
        if body.get(pos) != Some(&0xFF) {
            return Err(match body.get(pos) {
                None => truncated,
                Some(_) => JpegError::BadSegment {
                    marker: 0,
                    offset: pos,
                },
            });
        }
        let start = pos;
        while body.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&code) = body.get(pos) else {
            return Err(truncated);
        };
        pos += 1;
        match code {
            marker::EOI => {
                let (info, comps) = frame.ok_or(JpegError::NoFrameHeader)?;
                let first_scan = first_scan.ok_or(JpegError::NoFrameHeader)?;
                let info = Info {
                    has_huffman_tables,
                    len: pos,
                    first_scan,
                    data_len,
                    ..info
                };
                check_data_len(&info, &comps)?;
                return Ok(info);
            }
            marker::RST0..=marker::RST7 | marker::TEM => continue,
            0x00 | marker::SOI => {
                return Err(JpegError::BadSegment {
                    marker: code,
                    offset: start,
                })
            }
            _ => {}
        }
        // Every other marker starts a segment with a 2-byte length that
        // counts itself.
        let Some(len_bytes) = body.get(pos..pos + 2) else {
            return Err(truncated);
        };
        let seg_len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        if seg_len < 2 {
            return Err(JpegError::BadSegment {
                marker: code,
                offset: start,
            });
        }
        let Some(segment) = body.get(pos + 2..pos + seg_len) else {
            return Err(truncated);
        };
        pos += seg_len;
        match code {
            marker::SOF0 | marker::SOF1 | marker::SOF2 => {
                if frame.is_some() {
                    return Err(JpegError::SecondFrameHeader { offset: start });
                }
                frame = Some(parse_frame_header(segment, code == marker::SOF2)?);
            }
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | marker::DAC | marker::JPG => {
                return Err(JpegError::UnsupportedProcess { marker: code });
            }
            marker::DHT => has_huffman_tables = true,
            marker::SOS => {
                if frame.is_none() {
                    return Err(JpegError::NoFrameHeader);
                }
                first_scan.get_or_insert(start);
                // Entropy-coded data runs to the next marker that is not a
                // stuffed zero (FF 00) or a restart marker (FF D0-D7).
                let scan_start = pos;
                loop {
                    let Some(ff) = body[pos..].iter().position(|&b| b == 0xFF) else {
                        return Err(truncated);
                    };
                    pos += ff;
                    match body.get(pos + 1) {
                        None => return Err(truncated),
                        Some(0x00 | marker::RST0..=marker::RST7) => pos += 2,
                        // Fill bytes before a marker.
                        Some(0xFF) => pos += 1,
                        Some(_) => break,
                    }
                }
                // FF bytes right before the marker are fill, not data.
                let data_end = scan_start
                    + body[scan_start..pos]
                        .iter()
                        .rposition(|&b| b != 0xFF)
                        .map_or(0, |i| i + 1);
                data_len += data_end - scan_start;
            }
            _ => {}
        }
    }
}

fn parse_frame_header(
    segment: &[u8],
    progressive: bool,
) -> Result<(Info, [Component; 3]), JpegError> {
    // P, Y (2), X (2), Nf, then Nf times (C, H<<4|V, Tq).
    let [precision, y_hi, y_lo, x_hi, x_lo, count, ref rest @ ..] = *segment else {
        return Err(JpegError::BadFrameHeader);
    };
    if precision != 8 {
        return Err(JpegError::UnsupportedPrecision { bits: precision });
    }
    if count != 1 && count != 3 {
        return Err(JpegError::UnsupportedComponents { count });
    }
    if rest.len() != 3 * usize::from(count) {
        return Err(JpegError::BadFrameHeader);
    }
    let width = u32::from(u16::from_be_bytes([x_hi, x_lo]));
    let height = u32::from(u16::from_be_bytes([y_hi, y_lo]));
    if !(1..=MAX_DIMENSION).contains(&width) || !(1..=MAX_DIMENSION).contains(&height) {
        return Err(JpegError::BadDimensions { width, height });
    }
    let mut comps = [Component { h: 1, v: 1 }; 3];
    for (comp, spec) in comps.iter_mut().zip(rest.chunks_exact(3)) {
        let (h, v) = (spec[1] >> 4, spec[1] & 0x0F);
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
            return Err(JpegError::BadFrameHeader);
        }
        *comp = Component { h, v };
    }
    let info = Info {
        width,
        height,
        components: count,
        luma_sampling: (comps[0].h, comps[0].v),
        progressive,
        has_huffman_tables: false,
        len: 0,
        first_scan: 0,
        data_len: 0,
    };
    Ok((info, comps))
}

/// Refuses a file whose entropy-coded data is too short for the blocks its
/// frame header declares: each block of each component costs at least one
/// bit (its DC code), in sequential and progressive JPEG alike.
fn check_data_len(info: &Info, comps: &[Component; 3]) -> Result<(), JpegError> {
    let comps = &comps[..usize::from(info.components)];
    let h_max = comps.iter().map(|c| c.h).max().unwrap_or(1);
    let v_max = comps.iter().map(|c| c.v).max().unwrap_or(1);
    let blocks: usize = comps
        .iter()
        .map(|c| {
            // T.81 A.1.1: a component's size is the image's scaled by its
            // sampling factor against the largest, rounded up.
            let w = (info.width as usize * usize::from(c.h)).div_ceil(usize::from(h_max));
            let h = (info.height as usize * usize::from(c.v)).div_ceil(usize::from(v_max));
            w.div_ceil(8) * h.div_ceil(8)
        })
        .sum();
    let needed = blocks.div_ceil(8);
    if info.data_len < needed {
        return Err(JpegError::TooLittleData {
            width: info.width,
            height: info.height,
            data_len: info.data_len,
            needed,
        });
    }
    Ok(())
}

/// The Huffman tables of ITU T.81 Annex K.3 (luminance and chrominance, DC
/// and AC), as one DHT segment: what MJPEG cameras that send no DHT mean
/// (the OpenDML AVI spec's rule), and what libjpeg writes by default.
pub const STANDARD_HUFFMAN_TABLES: [u8; 420] = standard_dht();

const fn standard_dht() -> [u8; 420] {
    // (class << 4 | id, BITS (codes of each length 1..=16), HUFFVAL)
    const DC_LUMA_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
    const DC_CHROMA_BITS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
    const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    const AC_LUMA_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D];
    const AC_LUMA_VALUES: [u8; 162] = [
        0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61,
        0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52,
        0xD1, 0xF0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25,
        0x26, 0x27, 0x28, 0x29, 0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45,
        0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64,
        0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83,
        0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
        0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6,
        0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3,
        0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8,
        0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
    ];
    const AC_CHROMA_BITS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
    const AC_CHROMA_VALUES: [u8; 162] = [
        0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61,
        0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33,
        0x52, 0xF0, 0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18,
        0x19, 0x1A, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44,
        0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63,
        0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A,
        0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4,
        0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA,
        0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7,
        0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
    ];
    let mut out = [0u8; 420];
    // FF C4, length 418 (the segment without the marker).
    out[0] = 0xFF;
    out[1] = marker::DHT;
    out[2] = (418u16 >> 8) as u8;
    out[3] = (418u16 & 0xFF) as u8;
    let mut pos = 4;
    pos = put_table(&mut out, pos, 0x00, &DC_LUMA_BITS, &DC_VALUES);
    pos = put_table(&mut out, pos, 0x10, &AC_LUMA_BITS, &AC_LUMA_VALUES);
    pos = put_table(&mut out, pos, 0x01, &DC_CHROMA_BITS, &DC_VALUES);
    pos = put_table(&mut out, pos, 0x11, &AC_CHROMA_BITS, &AC_CHROMA_VALUES);
    assert!(pos == 420);
    out
}

const fn put_table(
    out: &mut [u8; 420],
    mut pos: usize,
    class_id: u8,
    bits: &[u8; 16],
    values: &[u8],
) -> usize {
    out[pos] = class_id;
    pos += 1;
    let mut i = 0;
    while i < 16 {
        out[pos] = bits[i];
        pos += 1;
        i += 1;
    }
    let mut i = 0;
    while i < values.len() {
        out[pos] = values[i];
        pos += 1;
        i += 1;
    }
    pos
}

/// Appends the JPEG file `info` describes, as any decoder accepts it, to
/// `out`: the bytes of `body` through EOI (what follows is dropped), with
/// [`STANDARD_HUFFMAN_TABLES`] inserted before the first scan when it has no
/// DHT of its own. A complete file is appended unchanged. `info` must be
/// [`inspect`]'s answer for this `body`.
pub fn complete(body: &[u8], info: &Info, out: &mut Vec<u8>) {
    let body = &body[..info.len.min(body.len())];
    if info.has_huffman_tables {
        out.extend_from_slice(body);
        return;
    }
    let at = info.first_scan.min(body.len());
    out.reserve(body.len() + STANDARD_HUFFMAN_TABLES.len());
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(&STANDARD_HUFFMAN_TABLES);
    out.extend_from_slice(&body[at..]);
}

/// The pixel layout [`Decoder::decode`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// 3 bytes a pixel, B, G, R: OpenCV's order and the BMP's.
    Bgr,
    /// 3 bytes a pixel, R, G, B: the decoder's fastest output.
    Rgb,
}

/// Inserts [`STANDARD_HUFFMAN_TABLES`] into `body` before its first scan if
/// it has no DHT of its own ([`complete`] without a copy; `body` grows by
/// 420 bytes at most). `info` must be [`inspect`]'s answer for this `body`.
pub fn complete_in_place(body: &mut Vec<u8>, info: &Info) {
    if !info.has_huffman_tables {
        let at = info.first_scan.min(body.len());
        body.splice(at..at, STANDARD_HUFFMAN_TABLES);
    }
}

/// A JPEG decoder with a pixel cap, keeping its buffers between frames.
pub struct Decoder {
    max_pixels: usize,
    /// A file completed with the standard Huffman tables.
    completed: Vec<u8>,
}

impl Decoder {
    /// A decoder that refuses files of more than `max_pixels` pixels.
    pub fn new(max_pixels: usize) -> Decoder {
        Decoder {
            max_pixels,
            completed: Vec::new(),
        }
    }

    /// Decodes `body` into `out` (replacing its contents: width x height
    /// pixels of 3 bytes in `layout`, top row first, rows unpadded) and
    /// returns what [`inspect`] found. Nothing is allocated for pixels
    /// before the frame header passed the cap. A file without Huffman
    /// tables is completed in a buffer kept for the next frame.
    pub fn decode(
        &mut self,
        body: &[u8],
        layout: Layout,
        out: &mut Vec<u8>,
    ) -> Result<Info, JpegError> {
        let info = self.check(body)?;
        out.clear();
        // Always RGB out of zune-jpeg: its BGR output is 25% slower than
        // RGB plus our swap (measured at 1280x720), and it has no grey to BGR.
        self.run(body, &info, ColorSpace::RGB, 3, |len| {
            out.resize(len, 0);
            &mut out[..]
        })?;
        if layout == Layout::Bgr {
            for pixel in out.chunks_exact_mut(3) {
                pixel.swap(0, 2);
            }
        }
        Ok(info)
    }

    /// Decodes `body` into 0RGB pixels (`0x00RRGGBB`, what a window shows),
    /// replacing the contents of `out`: 4 bytes a pixel and no other
    /// buffer (RGBA is decoded in place, then reordered).
    pub fn decode_0rgb(&mut self, body: &[u8], out: &mut Vec<u32>) -> Result<Info, JpegError> {
        let info = self.check(body)?;
        out.clear();
        self.run(body, &info, ColorSpace::RGBA, 4, |len| {
            out.resize(len / 4, 0);
            bytemuck::cast_slice_mut(&mut out[..])
        })?;
        for pixel in out.iter_mut() {
            // Bytes R, G, B, A in memory: read as little-endian, A B G R.
            let abgr = u32::from_le(*pixel);
            *pixel = (abgr & 0xFF) << 16 | (abgr & 0xFF00) | (abgr >> 16 & 0xFF);
        }
        Ok(info)
    }

    /// [`inspect`], then the pixel cap.
    fn check(&self, body: &[u8]) -> Result<Info, JpegError> {
        let info = inspect(body)?;
        if info.pixels() > self.max_pixels {
            return Err(JpegError::TooManyPixels {
                width: info.width,
                height: info.height,
                max: self.max_pixels,
            });
        }
        Ok(info)
    }

    /// Decodes the checked `body` in `colorspace` of `channels` bytes a
    /// pixel into the buffer `alloc` returns when given its length.
    fn run<'o>(
        &mut self,
        body: &[u8],
        info: &Info,
        colorspace: ColorSpace,
        channels: usize,
        alloc: impl FnOnce(usize) -> &'o mut [u8],
    ) -> Result<(), JpegError> {
        let file = if info.has_huffman_tables {
            &body[..info.len]
        } else {
            self.completed.clear();
            complete(body, info, &mut self.completed);
            &self.completed[..]
        };
        let options = DecoderOptions::default()
            .set_strict_mode(true)
            .set_max_width(info.width as usize)
            .set_max_height(info.height as usize)
            .jpeg_set_out_colorspace(colorspace);
        let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(file), options);
        decoder.decode_headers().map_err(|_| JpegError::Corrupt)?;
        // zune read the same frame header we did; anything else is a bug
        // in one of us, and must not size the buffer.
        let len = info.pixels() * channels;
        if decoder.dimensions() != Some((info.width as usize, info.height as usize))
            || decoder.output_buffer_size() != Some(len)
        {
            return Err(JpegError::Corrupt);
        }
        decoder
            .decode_into(alloc(len))
            .map_err(|_| JpegError::Corrupt)
    }
}

/// Encodes BGR pixels as a baseline JPEG, 4:2:0, at a fixed quality.
#[derive(Debug, Clone, Copy)]
pub struct Encoder {
    quality: u8,
}

impl Encoder {
    /// An encoder at `quality`, 1 (smallest) to 100 (best); see
    /// [`DEFAULT_QUALITY`].
    pub fn new(quality: u8) -> Result<Encoder, JpegError> {
        if !(1..=100).contains(&quality) {
            return Err(JpegError::BadQuality { quality });
        }
        Ok(Encoder { quality })
    }

    /// Appends the JPEG file of `bgr` (width x height pixels of 3 bytes,
    /// B, G, R, top row first, rows unpadded) to `out`.
    pub fn encode_bgr(
        &self,
        bgr: &[u8],
        width: u32,
        height: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), JpegError> {
        let bad = JpegError::BadImage {
            width,
            height,
            len: bgr.len(),
        };
        if !(1..=MAX_DIMENSION).contains(&width) || !(1..=MAX_DIMENSION).contains(&height) {
            return Err(JpegError::BadDimensions { width, height });
        }
        if bgr.len() != width as usize * height as usize * 3 {
            return Err(bad);
        }
        let mut encoder = jpeg_encoder::Encoder::new(&mut *out, self.quality);
        encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
        encoder.set_chroma_subsampling_method(jpeg_encoder::ChromaSubsamplingMethod::Average);
        // Both sides are at most 16384, so they fit in u16. Writing into a
        // Vec cannot fail, and the size was checked: an error is a bug.
        encoder
            .encode(
                bgr,
                width as u16,
                height as u16,
                jpeg_encoder::ColorType::Bgr,
            )
            .map_err(|_| bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny baseline JPEG skeleton: SOI, a frame header of `width` x
    /// `height` with 4:2:0 YCbCr, a scan of `data` bytes of entropy data,
    /// EOI. Not decodable (no DQT), but every structural check sees it.
    fn skeleton(sof: u8, width: u16, height: u16, data: usize) -> Vec<u8> {
        let mut f = vec![0xFF, 0xD8];
        f.extend_from_slice(&[0xFF, sof, 0, 17, 8]);
        f.extend_from_slice(&height.to_be_bytes());
        f.extend_from_slice(&width.to_be_bytes());
        f.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        f.extend_from_slice(&[0xFF, 0xDA, 0, 12, 3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0]);
        f.extend(std::iter::repeat_n(0x55, data));
        f.extend_from_slice(&[0xFF, 0xD9]);
        f
    }

    /// A 64x48 noisy-ish BGR picture and its JPEG.
    fn picture() -> (Vec<u8>, Vec<u8>) {
        let (w, h) = (64u32, 48u32);
        // Smooth gradients, the kind of content JPEG keeps well.
        let bgr: Vec<u8> = (0..w * h * 3)
            .map(|i| {
                let (pixel, channel) = (i / 3, i % 3);
                (pixel % w * 2 + pixel / w * 2 + channel * 10) as u8
            })
            .collect();
        let mut jpg = Vec::new();
        Encoder::new(DEFAULT_QUALITY)
            .unwrap()
            .encode_bgr(&bgr, w, h, &mut jpg)
            .unwrap();
        (bgr, jpg)
    }

    #[test]
    fn both_body_kinds_have_the_same_largest_side() {
        assert_eq!(MAX_DIMENSION, crate::bmp::MAX_DIMENSION);
    }

    #[test]
    fn skeleton_is_structurally_sound() {
        let f = skeleton(marker::SOF0, 64, 48, 100);
        let info = inspect(&f).unwrap();
        assert_eq!((info.width, info.height, info.components), (64, 48, 3));
        assert_eq!(info.luma_sampling, (2, 2));
        assert!(!info.progressive && !info.has_huffman_tables);
        assert_eq!((info.len, info.data_len), (f.len(), 100));
    }

    #[test]
    fn a_jpeg_bomb_is_refused_without_decoding() {
        // 16384x16384 4:2:0: 4 Mi luma + 2 Mi chroma blocks need 768 KiB.
        let bomb = skeleton(marker::SOF0, 16384, 16384, 400);
        assert_eq!(
            inspect(&bomb),
            Err(JpegError::TooLittleData {
                width: 16384,
                height: 16384,
                data_len: 400,
                needed: 786_432
            })
        );
        // The cap comes first in the decoder, before any allocation.
        let mut out = Vec::new();
        let big = skeleton(marker::SOF0, 16384, 16384, 786_432);
        assert!(matches!(
            Decoder::new(1 << 20).decode(&big, Layout::Rgb, &mut out),
            Err(JpegError::TooManyPixels { max: 1_048_576, .. })
        ));
        assert_eq!(out.capacity(), 0, "allocated for a refused frame");
    }

    #[test]
    fn coding_processes_no_camera_uses_are_refused_by_name() {
        for sof in [0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF] {
            assert_eq!(
                inspect(&skeleton(sof, 8, 8, 10)),
                Err(JpegError::UnsupportedProcess { marker: sof }),
                "{sof:#x}"
            );
        }
        let progressive = inspect(&skeleton(marker::SOF2, 8, 8, 10)).unwrap();
        assert!(progressive.progressive);
        let mut twelve_bit = skeleton(marker::SOF1, 8, 8, 10);
        twelve_bit[6] = 12;
        assert_eq!(
            inspect(&twelve_bit),
            Err(JpegError::UnsupportedPrecision { bits: 12 })
        );
        let mut cmyk = skeleton(marker::SOF0, 8, 8, 10);
        cmyk[11] = 4;
        assert_eq!(
            inspect(&cmyk),
            Err(JpegError::UnsupportedComponents { count: 4 })
        );
    }

    #[test]
    fn bad_dimensions_and_headers_are_named() {
        assert_eq!(
            inspect(&skeleton(marker::SOF0, 0, 8, 10)),
            Err(JpegError::BadDimensions {
                width: 0,
                height: 8
            })
        );
        assert_eq!(
            inspect(&skeleton(marker::SOF0, 16385, 8, 10_000)),
            Err(JpegError::BadDimensions {
                width: 16385,
                height: 8
            })
        );
        let mut zero_sampling = skeleton(marker::SOF0, 8, 8, 10);
        zero_sampling[13] = 0x02;
        assert_eq!(inspect(&zero_sampling), Err(JpegError::BadFrameHeader));
        let mut short_len = skeleton(marker::SOF0, 8, 8, 10);
        short_len[5] = 1;
        assert!(matches!(
            inspect(&short_len),
            Err(JpegError::BadSegment { marker: 0xC0, .. })
        ));
        let mut second = skeleton(marker::SOF0, 8, 8, 10);
        let sof = second[2..21].to_vec();
        second.splice(21..21, sof);
        assert_eq!(
            inspect(&second),
            Err(JpegError::SecondFrameHeader { offset: 21 })
        );
    }

    #[test]
    fn a_scan_before_the_frame_header_or_none_at_all_is_refused() {
        let no_scan = [0xFF, 0xD8, 0xFF, 0xD9];
        assert_eq!(inspect(&no_scan), Err(JpegError::NoFrameHeader));
        let scan_first = [0xFF, 0xD8, 0xFF, 0xDA, 0, 2, 0x55, 0xFF, 0xD9];
        assert_eq!(inspect(&scan_first), Err(JpegError::NoFrameHeader));
    }

    #[test]
    fn gzip_and_short_bodies_are_not_jpeg() {
        for body in [&[0x1F, 0x8B, 0x08][..], &[], &[0xFF, 0xD8], b"BM\0\0"] {
            assert_eq!(inspect(body), Err(JpegError::NotJpeg));
        }
    }

    #[test]
    fn stuffed_bytes_and_restart_markers_stay_inside_the_scan() {
        let mut f = skeleton(marker::SOF0, 8, 8, 0);
        let eoi = f.len() - 2;
        f.splice(
            eoi..eoi,
            [0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56, 0xFF, 0xFF, 0xD9],
        );
        f.truncate(f.len() - 2);
        let info = inspect(&f).unwrap();
        assert_eq!(info.len, f.len());
        assert_eq!(
            info.data_len, 7,
            "the scan ends at the fill bytes before EOI"
        );
    }

    #[test]
    fn encode_decode_round_trip() {
        let (bgr, jpg) = picture();
        assert_eq!(jpg[..3], MAGIC);
        let info = inspect(&jpg).unwrap();
        assert_eq!(
            (info.width, info.height, info.luma_sampling),
            (64, 48, (2, 2))
        );
        assert!(info.has_huffman_tables);
        let mut out = Vec::new();
        Decoder::new(64 * 48)
            .decode(&jpg, Layout::Bgr, &mut out)
            .unwrap();
        let max_diff = bgr.iter().zip(&out).map(|(a, b)| a.abs_diff(*b)).max();
        assert!(max_diff <= Some(12), "max diff {max_diff:?}");
        // One pixel less in the cap refuses it.
        assert!(matches!(
            Decoder::new(64 * 48 - 1).decode(&jpg, Layout::Bgr, &mut out),
            Err(JpegError::TooManyPixels { .. })
        ));
    }

    #[test]
    fn entropy_data_of_invalid_huffman_codes_is_corrupt() {
        // All one bits (stuffed FF 00 pairs): no code of the standard
        // tables is sixteen 1s, so the first block fails to decode.
        let (_, mut jpg) = picture();
        let info = inspect(&jpg).unwrap();
        let sos_len = usize::from(u16::from_be_bytes([
            jpg[info.first_scan + 2],
            jpg[info.first_scan + 3],
        ]));
        let data = info.first_scan + 2 + sos_len..info.len - 2;
        for (i, b) in jpg[data].iter_mut().enumerate() {
            *b = if i % 2 == 0 { 0xFF } else { 0x00 };
        }
        assert_eq!(
            Decoder::new(1 << 20).decode(&jpg, Layout::Rgb, &mut Vec::new()),
            Err(JpegError::Corrupt)
        );
    }

    #[test]
    fn encoder_refuses_bad_arguments() {
        assert_eq!(
            Encoder::new(0).err(),
            Some(JpegError::BadQuality { quality: 0 })
        );
        assert_eq!(
            Encoder::new(101).err(),
            Some(JpegError::BadQuality { quality: 101 })
        );
        let enc = Encoder::new(100).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            enc.encode_bgr(&[0; 11], 2, 2, &mut out),
            Err(JpegError::BadImage { len: 11, .. })
        ));
        assert!(matches!(
            enc.encode_bgr(&[], 0, 2, &mut out),
            Err(JpegError::BadDimensions { .. })
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn quality_trades_size() {
        let (bgr, _) = picture();
        let size = |q| {
            let mut out = Vec::new();
            Encoder::new(q)
                .unwrap()
                .encode_bgr(&bgr, 64, 48, &mut out)
                .unwrap();
            out.len()
        };
        assert!(size(30) < size(85) && size(85) < size(100));
    }
}
