//! The encoder threads: raw frame → BMP (BGR rows written straight into
//! the file; [`to_bmp`] is the one place a capture format is turned into
//! pixels) → gzip, written straight into the send buffer behind a wire
//! header.
//!
//! gzip is over 90% of the agent's CPU time, so `--workers` threads each
//! take the newest frame from the mailbox and encode it with their own
//! compressor. Every buffer is reused: the BMP buffer belongs to the
//! worker, the frame and send buffers come from pools, so steady state
//! allocates nothing outside the compressor.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use proto::format::{Layout, PixelFormat};
use proto::{convert, gzip, wire};

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
    compressor: gzip::Compressor,
    bmp: Vec<u8>,
}

impl Encoder {
    pub fn new(camera_id: wire::CameraId, level: u32) -> Result<Encoder> {
        Ok(Encoder {
            camera_id,
            compressor: gzip::Compressor::new(level).context("cannot set up gzip")?,
            bmp: Vec::new(),
        })
    }

    /// Writes `[id][len][gzip(BMP(frame))]` at the start of `out` and
    /// returns the BMP's length and the frame's (header included). `out` is
    /// grown as needed but never shrunk: reused at its high-water length,
    /// it is not zero-filled again for every frame.
    pub fn encode(&mut self, frame: &RawFrame, out: &mut Vec<u8>) -> Result<(usize, usize)> {
        to_bmp(&frame.layout, &frame.data, &mut self.bmp)?;
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
        let body_len = self
            .compressor
            .compress_at(&self.bmp, out, wire::HEADER_LEN);
        let wire_len = wire::HEADER_LEN + body_len;
        wire::finish_frame(&mut out[..wire_len], 0).context("wire framing")?;
        Ok((self.bmp.len(), wire_len))
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
pub fn to_bmp(layout: &Layout, data: &[u8], bmp: &mut Vec<u8>) -> Result<()> {
    match layout.format() {
        PixelFormat::Mjpg => mjpeg_to_bmp(layout, data, bmp),
        raw => convert::to_bmp(layout, data, bmp).with_context(|| format!("{raw} to BMP")),
    }
}

/// MJPEG → BMP: **the hook for the JPEG decoder** (issue 12, "MJPEG").
/// `data` is one frame as the camera sent it (`bytesused` bytes: a JPEG,
/// possibly without its Huffman tables, cut short, or with garbage after
/// EOI); `layout` has the negotiated size. It must write the same kind of
/// BMP as the raw path into `bmp`, or fail without panicking on any input.
///
/// Until the decoder is built, every MJPG frame fails here.
fn mjpeg_to_bmp(layout: &Layout, data: &[u8], bmp: &mut Vec<u8>) -> Result<()> {
    let _ = (layout, data, bmp);
    bail!(
        "MJPEG decoding not built yet; capture a raw format instead \
         (--format auto prefers one; agent --list-formats shows what the camera offers)"
    )
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
            Err(e) => {
                // Frames are checked before they get here, so this is a bug;
                // say so once and keep streaming the frames that do encode.
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
