//! Fuzzes `proto::wire::FrameReader`: the stream is fed whole, then in
//! chunks split at fuzzer-chosen points (image-png's `buf_independent`), then
//! read the viewer's way (bodies in place through `body_tail`/`commit`, each
//! frame's body recycled into the reader), and all three results must equal
//! an independent reading of the same bytes.
//!
//! Input layout:
//! - byte 0: bits 0-1 pick the body-length limit, bits 2-5 give `n`, the
//!   number of chunk lengths that follow;
//! - bytes 1..=n: chunk lengths, used in turn until the stream ends (0 feeds
//!   an empty slice, then one byte); with `n == 0` the stream is fed one byte
//!   at a time;
//! - the rest: the byte stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::wire::{self, CameraId, Frame, FrameReader, WireError};

/// Small limits make `BodyTooLarge` reachable with short inputs.
const LIMITS: [u32; 4] = [wire::MAX_BODY_LEN, 1, 16, 300];

#[derive(Debug, Default, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    error: Option<WireError>,
    /// The reader's state after the whole stream, when there was no error.
    mid_frame: bool,
    camera_id: Option<CameraId>,
    buffered_len: usize,
}

/// Feeds one chunk until it is used up. Returns false after an error, when
/// the stream is out of sync and the caller must stop.
fn feed_chunk(reader: &mut FrameReader, mut chunk: &[u8], out: &mut Outcome) -> bool {
    loop {
        match reader.feed(chunk) {
            Ok((used, frame)) => {
                assert!(used <= chunk.len(), "used {used} of {} bytes", chunk.len());
                if chunk.is_empty() {
                    assert_eq!(frame, None, "an empty feed completed a frame");
                    return true;
                }
                // A reader that takes nothing from a non-empty slice and
                // yields nothing would spin the viewer's loop forever.
                assert!(used > 0 || frame.is_some(), "feed made no progress");
                out.frames.extend(frame);
                chunk = &chunk[used..];
                if chunk.is_empty() {
                    return true;
                }
            }
            Err(e) => {
                out.error = Some(e);
                return false;
            }
        }
    }
}

fn finish(reader: &FrameReader, mut out: Outcome) -> Outcome {
    if out.error.is_none() {
        out.mid_frame = reader.is_mid_frame();
        out.camera_id = reader.camera_id();
        out.buffered_len = reader.buffered_len();
    }
    out
}

fn whole(stream: &[u8], limit: u32) -> Outcome {
    let mut reader = FrameReader::new(limit);
    let mut out = Outcome::default();
    feed_chunk(&mut reader, stream, &mut out);
    finish(&reader, out)
}

fn chunked(stream: &[u8], limit: u32, lens: &[u8]) -> Outcome {
    let mut reader = FrameReader::new(limit);
    let mut out = Outcome::default();
    let mut rest = stream;
    let mut lens = lens.iter().copied().cycle();
    while !rest.is_empty() {
        let mut len = usize::from(lens.next().unwrap_or(1));
        if len == 0 {
            if !feed_chunk(&mut reader, &[], &mut out) {
                break;
            }
            len = 1;
        }
        let (chunk, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        if !feed_chunk(&mut reader, chunk, &mut out) {
            break;
        }
    }
    finish(&reader, out)
}

/// The viewer's way: headers (and whatever a chunk holds past a body) through
/// `feed`, bodies in place through `body_tail` and `commit`, each frame's
/// body offered back with `recycle`.
fn in_place(stream: &[u8], limit: u32, lens: &[u8]) -> Outcome {
    let mut reader = FrameReader::new(limit);
    let mut out = Outcome::default();
    let mut rest = stream;
    let mut lens = lens.iter().copied().cycle();
    while !rest.is_empty() {
        let len = usize::from(lens.next().unwrap_or(1)).max(1);
        if let Some(tail) = reader.body_tail() {
            assert!(
                !tail.is_empty(),
                "an empty tail would spin the viewer's loop"
            );
            let n = tail.len().min(len).min(rest.len());
            tail[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            out.frames.extend(reader.commit(n));
        } else {
            let (chunk, tail) = rest.split_at(len.min(rest.len()));
            rest = tail;
            if !feed_chunk(&mut reader, chunk, &mut out) {
                break;
            }
        }
        if reader.wants_buffer() {
            if let Some(last) = out.frames.last() {
                let _ = reader.recycle(last.body.clone());
            }
        }
    }
    finish(&reader, out)
}

/// The protocol read straight from its definition, without the reader.
fn oracle(stream: &[u8], limit: u32) -> Outcome {
    let mut out = Outcome::default();
    let mut rest = stream;
    while rest.len() >= wire::HEADER_LEN {
        let camera_id = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
        if len == 0 {
            out.error = Some(WireError::EmptyBody { camera_id });
            return out;
        }
        if len > limit {
            out.error = Some(WireError::BodyTooLarge {
                camera_id,
                len,
                max: limit,
            });
            return out;
        }
        let end = wire::HEADER_LEN + len as usize;
        if rest.len() < end {
            break;
        }
        out.frames.push(Frame {
            camera_id,
            body: rest[wire::HEADER_LEN..end].to_vec(),
        });
        rest = &rest[end..];
    }
    out.mid_frame = !rest.is_empty();
    out.camera_id = (rest.len() >= wire::HEADER_LEN).then(|| rest[0]);
    out.buffered_len = rest.len();
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let limit = LIMITS[usize::from(control & 0b11)];
    let n = usize::from(control >> 2 & 0b1111).min(rest.len());
    let (lens, stream) = rest.split_at(n);

    let expected = oracle(stream, limit);
    assert_eq!(whole(stream, limit), expected, "whole stream");
    assert_eq!(chunked(stream, limit, lens), expected, "chunks {lens:?}");
    assert_eq!(
        in_place(stream, limit, lens),
        expected,
        "in place, chunks {lens:?}"
    );

    // Encoding the frames read gives back the bytes they were read from.
    let mut encoded = Vec::new();
    for frame in &expected.frames {
        wire::encode_frame(frame.camera_id, &frame.body, &mut encoded).expect("frame re-encodes");
    }
    assert_eq!(encoded, stream[..encoded.len()]);
});
