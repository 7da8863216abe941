//! Fuzzes the viewer's whole receive path, from bytes on the socket to
//! pixels, for both body kinds: `wire::FrameReader` fed whole and in
//! fuzzer-chosen chunks, then every frame's body through `body::Decoder`
//! (gzip-BMP: gunzip, BMP; JPEG: check, cap, decode). The outcome, frame by
//! frame (kind, size and a digest of the pixels, or the error), must not
//! depend on how the stream was split, the body must be left as received,
//! and a decoded frame must have exactly width x height pixels within the
//! cap.
//!
//! Input layout:
//! - byte 0: bits 0-1 pick the BMP byte cap (and with it the pixel cap),
//!   bits 2-5 give `n`, the number of chunk lengths that follow;
//! - bytes 1..=n: chunk lengths, used in turn (0 is taken as 1); with
//!   `n == 0` the stream is fed one byte at a time;
//! - the rest: the byte stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::body::{self, BodyError, Decoder, Kind};
use proto::wire::{self, FrameReader, WireError};

/// Small caps make the pixel and size limits reachable with small inputs.
const MAX_BMP_LENS: [usize; 4] = [1 << 20, 64, 4096, 300_000];

#[derive(Debug, PartialEq)]
enum FrameOutcome {
    Decoded {
        camera_id: u8,
        kind: Kind,
        width: u32,
        height: u32,
        digest: u64,
    },
    Refused {
        camera_id: u8,
        error: BodyError,
    },
}

#[derive(Debug, Default, PartialEq)]
struct Outcome {
    frames: Vec<FrameOutcome>,
    error: Option<WireError>,
}

/// FNV-1a over the pixels: equal pixels, equal digest.
fn digest(pixels: &[u32]) -> u64 {
    pixels.iter().fold(0xcbf2_9ce4_8422_2325, |h, p| {
        (h ^ u64::from(*p)).wrapping_mul(0x0100_0000_01b3)
    })
}

struct Receiver {
    reader: FrameReader,
    decoder: Decoder,
    pixels: Vec<u32>,
    max_pixels: usize,
    out: Outcome,
}

impl Receiver {
    fn new(max_bmp_len: usize) -> Receiver {
        Receiver {
            reader: FrameReader::new(wire::MAX_BODY_LEN),
            decoder: Decoder::new(max_bmp_len),
            pixels: Vec::new(),
            max_pixels: body::max_pixels(max_bmp_len),
            out: Outcome::default(),
        }
    }

    /// Feeds one chunk; false once the stream is out of sync.
    fn feed(&mut self, mut chunk: &[u8]) -> bool {
        while !chunk.is_empty() {
            match self.reader.feed(chunk) {
                Ok((used, frame)) => {
                    chunk = &chunk[used..];
                    if let Some(mut frame) = frame {
                        let received = frame.body.clone();
                        let result = self.decoder.decode_0rgb(&mut frame.body, &mut self.pixels);
                        assert_eq!(frame.body, received, "the body was changed");
                        let camera_id = frame.camera_id;
                        self.out.frames.push(match result {
                            Ok(d) => {
                                let n = d.width as usize * d.height as usize;
                                assert_eq!(self.pixels.len(), n, "{d:?}");
                                assert!(n <= self.max_pixels, "{d:?} over the cap");
                                assert_eq!(Kind::of(&received), Ok(d.kind));
                                FrameOutcome::Decoded {
                                    camera_id,
                                    kind: d.kind,
                                    width: d.width,
                                    height: d.height,
                                    digest: digest(&self.pixels),
                                }
                            }
                            Err(error) => {
                                assert!(!error.to_string().is_empty());
                                FrameOutcome::Refused { camera_id, error }
                            }
                        });
                    } else if used == 0 {
                        panic!("the reader made no progress");
                    }
                }
                Err(e) => {
                    self.out.error = Some(e);
                    return false;
                }
            }
        }
        true
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let max_bmp_len = MAX_BMP_LENS[usize::from(control & 0b11)];
    let n = usize::from(control >> 2 & 0b1111).min(rest.len());
    let (lens, stream) = rest.split_at(n);

    let mut whole = Receiver::new(max_bmp_len);
    whole.feed(stream);

    let mut split = Receiver::new(max_bmp_len);
    let mut rest = stream;
    let mut lens = lens.iter().copied().cycle();
    while !rest.is_empty() {
        let len = usize::from(lens.next().unwrap_or(1)).max(1);
        let (chunk, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        if !split.feed(chunk) {
            break;
        }
    }
    assert_eq!(split.out, whole.out, "chunks changed the outcome");
});
