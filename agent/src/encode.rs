//! The encoder threads: each frame becomes a body, written straight into
//! the send buffer behind a wire header.
//!
//! - `--encoding gzip-bmp` (the original format): raw frame → BMP (BGR rows
//!   written straight into the file; [`to_bmp`] is the one place a
//!   capture format is turned into a BMP, MJPG by decoding it) → gzip.
//! - `--encoding jpeg`: raw frame → BGR → JPEG at `--quality`; an MJPG
//!   frame is passed through: checked (SOI, a sane frame header, EOI),
//!   completed with the standard Huffman tables if the camera left them out,
//!   cut at EOI, never decoded.
//!
//! gzip is over 90% of the gzip-bmp CPU time, so `--workers` threads each
//! take the newest frame from the mailbox and encode it with their own
//! compressor. Every buffer is reused: the BMP and BGR buffers belong to
//! the worker, the frame and send buffers come from pools, so steady state
//! allocates nothing outside the compressor.
//!
//! A broken MJPEG frame (cut short, corrupt) fails its encode: it is
//! dropped and counted with the frames dropped before encoding, and logged
//! once (then at debug level). The V4L2 source already drops what the
//! structural check (`proto::jpeg::inspect`) catches, so such frames never
//! count as good for `--capture-timeout`; what only the decoder finds
//! (corrupt entropy-coded data) is caught here.

use std::time::Instant;

use anyhow::{Context, Result};
use proto::format::{Layout, PixelFormat};
use proto::{bmp, convert, gzip, jpeg, wire};

use crate::cli::Encoding;
use crate::mailbox::{Mailbox, RawFrame};
use crate::outbox::{Encoded, Outbox};
use crate::pool::BufferPool;
use crate::stats::Stats;
use crate::sync::Stop;

/// What an encoder thread works with.
pub struct Links<'a> {
    /// Where raw frames come from, newest first.
    pub mailbox: &'a Mailbox,
    /// Where a raw frame's buffer goes once encoded (or skipped).
    pub raw_pool: &'a BufferPool,
    /// Where encoded frames go, and where a place is reserved before
    /// taking a frame.
    pub outbox: &'a Outbox,
    /// Where the send buffers come from, and go back to if dropped.
    pub wire_pool: &'a BufferPool,
    pub stats: &'a Stats,
    pub stop: &'a Stop,
}

/// One worker's reusable state.
pub struct Encoder {
    camera_id: wire::CameraId,
    body: Body,
    /// Decodes MJPEG frames (for a BMP), with a cap of the largest frame
    /// the viewer takes.
    decoder: jpeg::Decoder,
    /// BGR pixels: a decoded MJPEG frame, or a raw frame on its way to JPEG.
    bgr: Vec<u8>,
}

/// How a worker makes a body.
enum Body {
    GzipBmp {
        compressor: gzip::Compressor,
        bmp: Vec<u8>,
    },
    Jpeg(jpeg::Encoder),
}

impl Encoder {
    /// A worker for `encoding`; `level` is gzip's, `quality` JPEG's.
    pub fn new(
        camera_id: wire::CameraId,
        encoding: Encoding,
        level: u32,
        quality: u8,
    ) -> Result<Encoder> {
        let body = match encoding {
            Encoding::GzipBmp => Body::GzipBmp {
                compressor: gzip::Compressor::new(level).context("cannot set up gzip")?,
                bmp: Vec::new(),
            },
            Encoding::Jpeg => {
                Body::Jpeg(jpeg::Encoder::new(quality).context("cannot set up JPEG")?)
            }
        };
        Ok(Encoder {
            camera_id,
            body,
            decoder: jpeg::Decoder::new(bmp::MAX_PIXELS),
            bgr: Vec::new(),
        })
    }

    /// Writes `[id][len][body]` at the start of `out` and returns the
    /// frame's BMP length (the BMP sent, or the one a JPEG stands in for:
    /// the stats line's ratio) and the frame's length (header included).
    pub fn encode(&mut self, frame: &RawFrame, out: &mut Vec<u8>) -> Result<(usize, usize)> {
        let (layout, data) = (&frame.layout, &frame.data[..]);
        match &mut self.body {
            Body::GzipBmp { compressor, bmp } => {
                to_bmp(layout, data, bmp, &mut self.decoder, &mut self.bgr)?;
                if out.len() < wire::HEADER_LEN {
                    out.resize(wire::HEADER_LEN, 0);
                }
                let mut header = [0u8; wire::HEADER_LEN];
                wire::Header {
                    camera_id: self.camera_id,
                    body_len: 0,
                }
                .write(&mut header);
                out[..wire::HEADER_LEN].copy_from_slice(&header);
                let body_len = compressor.compress_at(bmp, out, wire::HEADER_LEN);
                let wire_len = wire::HEADER_LEN + body_len;
                wire::finish_frame(&mut out[..wire_len], 0).context("wire framing")?;
                Ok((bmp.len(), wire_len))
            }
            Body::Jpeg(encoder) => {
                out.clear();
                let start = wire::begin_frame(self.camera_id, out);
                let (width, height) = if layout.format() == PixelFormat::Mjpg {
                    // Passthrough: the camera's own JPEG, untouched.
                    let info = jpeg::inspect(data).context("MJPEG frame")?;
                    jpeg::complete(data, &info, out);
                    (info.width, info.height)
                } else {
                    let (width, height) = (layout.width(), layout.height());
                    self.bgr.resize(width as usize * height as usize * 3, 0);
                    convert::to_bgr(layout, data, &mut self.bgr)
                        .with_context(|| format!("{} to BGR", layout.format()))?;
                    encoder
                        .encode_bgr(&self.bgr, width, height, out)
                        .context("BGR to JPEG")?;
                    (width, height)
                };
                let wire_len = out.len();
                wire::finish_frame(out, start).context("wire framing")?;
                let bmp_len = bmp::encoded_len(width, height).context("frame size")?;
                Ok((bmp_len, wire_len))
            }
        }
    }
}

/// Turns one captured frame, in whatever format it came, into a 24-bit BMP
/// in `bmp` (reused from frame to frame). The single conversion entry
/// point: raw formats go through `proto::convert` (exact to OpenCV), MJPG
/// through [`mjpeg_to_bmp`].
///
/// Raw rows are converted straight into their place in the BMP, which
/// skips a whole BGR frame buffer: 12% less convert+encode time and 0.9 MB
/// less RSS at 640x480 (proto/examples/pixel_timing.rs --bmp).
pub fn to_bmp(
    layout: &Layout,
    data: &[u8],
    bmp: &mut Vec<u8>,
    decoder: &mut jpeg::Decoder,
    bgr: &mut Vec<u8>,
) -> Result<()> {
    match layout.format() {
        PixelFormat::Mjpg => mjpeg_to_bmp(data, bmp, decoder, bgr),
        raw => convert::to_bmp(layout, data, bmp).with_context(|| format!("{raw} to BMP")),
    }
}

/// MJPEG → BMP (issue 12, "MJPEG"). `data` is one frame as the camera sent
/// it (`bytesused` bytes: a JPEG, possibly without its Huffman tables, cut
/// short, or with garbage after EOI). The JPEG's own frame header gives
/// the size. Fails, without panicking, on any broken frame.
fn mjpeg_to_bmp(
    data: &[u8],
    bmp: &mut Vec<u8>,
    decoder: &mut jpeg::Decoder,
    bgr: &mut Vec<u8>,
) -> Result<()> {
    let info = decoder
        .decode(data, jpeg::Layout::Bgr, bgr)
        .context("MJPEG frame")?;
    bmp::encode_bgr24(bgr, info.width, info.height, bmp).context("BGR to BMP")?;
    Ok(())
}
/// Runs one encoder thread until a stop is requested.
pub fn run(encoder: &mut Encoder, links: &Links) {
    let mut warned = false;
    while links.outbox.wait_for_room(links.stop) {
        let Some(frame) = links
            .mailbox
            .take(links.stop, |f| links.outbox.claim(f.seq))
        else {
            links.outbox.unreserve();
            break;
        };
        let seq = frame.seq;
        // While the viewer is away the frame would only be dropped: save the CPU.
        if !links.outbox.is_connected() {
            links.raw_pool.put(frame.data);
            skip(links, seq);
            continue;
        }
        let started = Instant::now();
        let mut wire = links.wire_pool.get_dirty();
        let result = encoder.encode(&frame, &mut wire);
        let encode_time = started.elapsed();
        links.stats.encoded(encode_time);
        let captured = frame.captured;
        let compressed = frame.layout.format().is_compressed();
        if compressed && result.is_ok() && matches!(encoder.body, Body::Jpeg(_)) {
            links.stats.passed_through();
        }
        links.raw_pool.put(frame.data);
        match result {
            Ok((bmp_len, wire_len)) => {
                let encoded = Encoded {
                    seq,
                    captured,
                    bmp_len,
                    wire,
                    wire_len,
                    encode_time,
                };
                if let Some(refused) = links.outbox.finish(encoded) {
                    links.wire_pool.put(refused.wire);
                    links.stats.skipped_after_encoding(1);
                }
            }
            Err(e) if compressed => {
                // Cameras send broken MJPEG frames (USB errors, corrupt
                // data): drop and count them, and say so once.
                if !warned {
                    log::warn!(
                        "dropping a broken MJPEG frame ({e:#}); more are logged at debug level"
                    );
                    warned = true;
                } else {
                    log::debug!("dropping broken MJPEG frame {seq}: {e:#}");
                }
                links.wire_pool.put(wire);
                skip(links, seq);
            }
            Err(e) => {
                // Raw frames are checked before they get here, so this is a
                // bug; say so once and keep streaming the frames that do
                // encode.
                if !warned {
                    log::error!("cannot encode frame {seq}: {e:#}; dropping it (further failures at debug level)");
                    warned = true;
                } else {
                    log::debug!("cannot encode frame {seq}: {e:#}");
                }
                links.wire_pool.put(wire);
                skip(links, seq);
            }
        }
    }
}

/// Drops frame `seq` unencoded, freeing its outbox place.
fn skip(links: &Links, seq: u64) {
    links.stats.skipped_before_encoding(1);
    links.outbox.skip(seq);
}
#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A 64x48 YUYV frame with row padding (stride 136).
    fn yuyv_frame() -> RawFrame {
        let (width, height, stride) = (64u32, 48u32, 136u32);
        let data = (0..stride as usize * height as usize)
            .map(|i| {
                if i % 2 == 0 {
                    (i % 200) as u8 + 16
                } else {
                    128
                }
            })
            .collect();
        RawFrame {
            seq: 0,
            captured: Instant::now(),
            layout: Layout::new(PixelFormat::Yuyv, width, height, stride).unwrap(),
            data,
        }
    }

    /// A 64x48 JPEG as an MJPEG camera sends it: Huffman tables left out,
    /// padding after EOI.
    fn mjpeg_frame() -> (RawFrame, Vec<u8>) {
        let bgr: Vec<u8> = (0..64 * 48 * 3).map(|i| (i / 3 % 64 * 3) as u8).collect();
        let mut jpg = Vec::new();
        jpeg::Encoder::new(90)
            .unwrap()
            .encode_bgr(&bgr, 64, 48, &mut jpg)
            .unwrap();
        let mut bare = jpg[..2].to_vec();
        let mut pos = 2;
        while jpg[pos + 1] != 0xDA {
            let len = usize::from(u16::from_be_bytes([jpg[pos + 2], jpg[pos + 3]]));
            if jpg[pos + 1] != 0xC4 {
                bare.extend_from_slice(&jpg[pos..pos + 2 + len]);
            }
            pos += 2 + len;
        }
        bare.extend_from_slice(&jpg[pos..]);
        let mut data = bare.clone();
        data.extend_from_slice(&[0; 100]);
        let frame = RawFrame {
            seq: 0,
            captured: Instant::now(),
            layout: Layout::compressed(64, 48, 1 << 20),
            data,
        };
        (frame, bare)
    }

    fn body(out: &[u8], wire_len: usize) -> &[u8] {
        let header = wire::Header::parse(out[..wire::HEADER_LEN].try_into().unwrap());
        assert_eq!(header.camera_id, 9);
        assert_eq!(header.body_len as usize, wire_len - wire::HEADER_LEN);
        &out[wire::HEADER_LEN..wire_len]
    }

    fn gunzip(body: &[u8]) -> Vec<u8> {
        let mut file = Vec::new();
        gzip::Decompressor::new(1 << 20)
            .decompress(body, &mut file)
            .unwrap();
        file
    }

    #[test]
    fn jpeg_frames_are_jpeg_files_of_the_frame_size() {
        let mut encoder = Encoder::new(9, Encoding::Jpeg, 9, 85).unwrap();
        // A reused buffer longer than the frame: only wire_len counts.
        let mut out = vec![0xA5; 100_000];
        let (bmp_len, wire_len) = encoder.encode(&yuyv_frame(), &mut out).unwrap();
        assert_eq!(bmp_len, bmp::encoded_len(64, 48).unwrap());
        let jpg = body(&out, wire_len);
        assert_eq!(jpg[..3], jpeg::MAGIC);
        let mut bgr = Vec::new();
        let info = jpeg::Decoder::new(64 * 48)
            .decode(jpg, jpeg::Layout::Bgr, &mut bgr)
            .unwrap();
        assert_eq!((info.width, info.height, info.len), (64, 48, jpg.len()));
    }

    #[test]
    fn gzip_bmp_frames_are_gzip() {
        let mut encoder = Encoder::new(9, Encoding::GzipBmp, 1, 85).unwrap();
        let mut out = Vec::new();
        let (bmp_len, wire_len) = encoder.encode(&yuyv_frame(), &mut out).unwrap();
        let file = gunzip(body(&out, wire_len));
        assert_eq!(file.len(), bmp_len);
        assert_eq!(file[..2], *b"BM");
    }

    #[test]
    fn mjpeg_passes_through_with_standard_tables_and_without_padding() {
        let (frame, bare) = mjpeg_frame();
        let mut encoder = Encoder::new(9, Encoding::Jpeg, 9, 85).unwrap();
        let mut out = Vec::new();
        let (_, wire_len) = encoder.encode(&frame, &mut out).unwrap();
        let sent = body(&out, wire_len);
        let mut want = Vec::new();
        jpeg::complete(&bare, &jpeg::inspect(&bare).unwrap(), &mut want);
        assert_eq!(sent, want, "the camera's JPEG, tables inserted, cut at EOI");
        assert!(jpeg::inspect(sent).unwrap().has_huffman_tables);
    }

    #[test]
    fn mjpeg_decodes_to_a_bmp_for_gzip_bmp() {
        let (frame, bare) = mjpeg_frame();
        let mut encoder = Encoder::new(9, Encoding::GzipBmp, 1, 85).unwrap();
        let mut out = Vec::new();
        let (bmp_len, wire_len) = encoder.encode(&frame, &mut out).unwrap();
        let file = gunzip(body(&out, wire_len));
        assert_eq!(
            (file.len(), bmp_len),
            (bmp::encoded_len(64, 48).unwrap(), file.len())
        );
        // The same pixels as proto's decoder gives.
        let (mut bgr, mut want) = (Vec::new(), Vec::new());
        jpeg::Decoder::new(1 << 20)
            .decode(&bare, jpeg::Layout::Bgr, &mut bgr)
            .unwrap();
        bmp::encode_bgr24(&bgr, 64, 48, &mut want).unwrap();
        assert!(file == want);
    }

    #[test]
    fn a_broken_mjpeg_frame_fails_its_encode_in_either_encoding() {
        let (mut frame, bare) = mjpeg_frame();
        frame.data = bare[..bare.len() / 2].to_vec();
        for encoding in [Encoding::Jpeg, Encoding::GzipBmp] {
            let mut encoder = Encoder::new(9, encoding, 1, 85).unwrap();
            let err = encoder.encode(&frame, &mut Vec::new()).unwrap_err();
            assert!(format!("{err:#}").contains("truncated"), "{err:#}");
        }
    }
}
