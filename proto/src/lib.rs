//! camstream's protocol and pixel library: the wire format, the frame
//! reader, gzip with limits, BMP encode/decode, JPEG check/decode/encode
//! with limits, the capture pixel formats and their conversion to BGR
//! (exact to OpenCV), and the
//! percentiles of the stats lines. It does no I/O (no sockets, files, clocks
//! or threads), so every part is a pure function over byte slices (or, for
//! `stats`, over durations the caller measured) that tests and fuzzers can
//! drive alone.
//!
//! # Modules
//!
//! ```text
//! wire    frame header (camera id, body length) and the sans-IO FrameReader
//! body    a body of either kind, told by its magic bytes, to 0RGB within the caps
//!  ├──▶ gzip    one gzip member per frame; decompression capped before allocating
//!  ├──▶ jpeg    the other body kind: structural check, standard Huffman tables,
//!  │            decoding capped before allocating (zune-jpeg), encoding (jpeg-encoder)
//!  └──▶ bmp (below)
//! format  capture pixel formats (V4L2 fourccs, MJPG included) and frame layouts
//! convert every raw format → BGR, or straight into a BMP
//!  ├──▶ format
//!  ├──▶ bmp     24-bit BMP encoding (from BGR or straight from YUYV), checked decoding
//!  │     └──▶ pixel
//!  └──▶ pixel   YUYV→BGR (SSSE3/AVX2 on x86-64, NEON on aarch64) and BGR→0RGB, row by row
//! stats   reservoir sample and nearest-rank percentiles for the stats lines
//! ```
//!
//! `bmp → pixel`: the BMP encoder converts YUYV rows straight into the
//! file, and the decoder turns BGR rows into 0RGB. `convert` gathers every
//! other YUV layout into YUYV rows for `pixel`'s kernel (with AVX2, into
//! the registers of its AVX2 step instead) and writes them
//! into a BMP through `bmp`. `body` is the viewer's decode path: gzip then
//! `bmp`, or `jpeg`. Only `convert` and `body` use `bmp`, and `wire`, `gzip`,
//! `jpeg`, `stats`, `format` and `pixel` use no other module, so each can be
//! read, tested and changed alone. The binaries compose them in the order a
//! frame travels: the agent runs `convert::to_bmp` (an MJPG frame goes to
//! the agent's JPEG hook instead), then `gzip::Compressor`, then `wire::finish_frame`;
//! the viewer runs `wire::FrameReader`, then `body::Decoder` (for
//! gzip-BMP `gzip::Decompressor` and `bmp::decode_0rgb_capped`). A body is
//! gzip-BMP (`1F 8B`) or JPEG ([`jpeg::MAGIC`], `FF D8 FF`); for JPEG the
//! agent runs `jpeg::Encoder` (or passes a camera's JPEG through
//! `jpeg::complete`) and the viewer's `body::Decoder` runs
//! `jpeg::Decoder::decode_0rgb`.
//!
//! # Wire format
//!
//! Each frame is one message on a TCP stream; nothing else is sent.
//!
//! ```text
//! offset 0  u8      camera id (0-255)
//! offset 1  u32 BE  body length in bytes, network byte order, > 0
//! offset 5  body    gzip stream (RFC 1952) of a complete BMP file,
//!                   or a JPEG file (starts FF D8 FF)
//! ```
//!
//! This is Python's `struct.pack('!BI', camera_id, len(body))` followed by the
//! body, as in the original Python/OpenCV design.
//!
//! # Limits (all configurable, all enforced before allocating)
//!
//! - body length: 1..=[`wire::MAX_BODY_LEN`] (32 MiB), checked as soon as the
//!   5 header bytes exist;
//! - decompressed BMP: at most [`gzip::MAX_DECOMPRESSED_LEN`] (64 MiB), and
//!   never more than the gzip trailer announces;
//! - BMP width and height: 1..=[`bmp::MAX_DIMENSION`] (16384).
//! - JPEG: the same sides ([`jpeg::MAX_DIMENSION`]); pixels capped by the
//!   caller's [`jpeg::Decoder`] from the frame header before allocating,
//!   and at least one bit of entropy-coded data per 8x8 block.
//! - decoded BMP pixels: at most the caller's cap with
//!   [`bmp::decode_0rgb_capped`] (checked as soon as the dimensions are
//!   read), [`bmp::MAX_PIXELS`] with `decode_0rgb`.
//!
//! # Round trip
//!
//! ```
//! use proto::{bmp, gzip, wire};
//!
//! let (width, height) = (4, 2);
//! let bgr: Vec<u8> = (0..width * height * 3).map(|i| i as u8).collect();
//! let mut file = Vec::new();
//! bmp::encode_bgr24(&bgr, width, height, &mut file)?;
//!
//! let mut send = Vec::new();
//! let start = wire::begin_frame(7, &mut send);
//! gzip::Compressor::new(gzip::DEFAULT_LEVEL)?.compress_append(&file, &mut send);
//! wire::finish_frame(&mut send, start)?;
//!
//! let mut reader = wire::FrameReader::new(wire::MAX_BODY_LEN);
//! let (used, frame) = reader.feed(&send)?;
//! let frame = frame.expect("one whole frame was fed");
//! assert_eq!((used, frame.camera_id), (send.len(), 7));
//!
//! let mut unzipped = Vec::new();
//! gzip::Decompressor::new(gzip::MAX_DECOMPRESSED_LEN).decompress(&frame.body, &mut unzipped)?;
//! assert_eq!(unzipped, file);
//!
//! let mut pixels = Vec::new();
//! assert_eq!(bmp::decode_0rgb(&unzipped, &mut pixels)?, (width, height));
//! // The first pixel is B=0, G=1, R=2.
//! assert_eq!(pixels[0], 0x0002_0100);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![deny(unsafe_code)] // exceptions, each justified by a measured speed-up there: `pixel::x86` and `pixel::neon` (YUYV→BGR intrinsics), `convert::x86` (the other formats' byte shuffles)

pub mod bmp;
pub mod body;
pub mod convert;
pub mod format;
pub mod gzip;
pub mod jpeg;
pub mod pixel;
pub mod stats;
pub mod wire;
