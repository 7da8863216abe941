//! Property tests: encode → decode is the identity (frames, BMP, gzip), the
//! frame reader does not care how the stream is split (image-png's
//! `buf_independent` idea), and no input makes a decoder panic.
//! Case counts are modest so the suite stays fast on 2 cores.

use proptest::prelude::*;
use proto::wire::{self, Frame, FrameReader, WireError};
use proto::{bmp, gzip, pixel};

/// Feeds `stream` in chunks of the given sizes (cycled), collecting frames
/// until the stream ends or an error occurs.
fn read_all(stream: &[u8], chunks: &[usize], max: u32) -> (Vec<Frame>, Option<WireError>) {
    let mut reader = FrameReader::new(max);
    let mut frames = Vec::new();
    let mut pos = 0;
    let mut sizes = chunks.iter().cycle();
    while pos < stream.len() {
        let end = (pos + sizes.next().copied().unwrap_or(1).max(1)).min(stream.len());
        let mut chunk = &stream[pos..end];
        while !chunk.is_empty() {
            match reader.feed(chunk) {
                Ok((used, frame)) => {
                    frames.extend(frame);
                    chunk = &chunk[used..];
                }
                Err(e) => return (frames, Some(e)),
            }
        }
        pos = end;
    }
    (frames, None)
}

fn frames_strategy() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    prop::collection::vec(
        (any::<u8>(), prop::collection::vec(any::<u8>(), 1..300)),
        1..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn frames_round_trip_however_split(
        frames in frames_strategy(),
        chunks in prop::collection::vec(1usize..50, 1..10),
    ) {
        let mut stream = Vec::new();
        for (id, body) in &frames {
            wire::encode_frame(*id, body, &mut stream).unwrap();
        }
        let (whole, err) = read_all(&stream, &[stream.len()], wire::MAX_BODY_LEN);
        prop_assert_eq!(err, None);
        let expected: Vec<Frame> = frames
            .iter()
            .map(|(id, body)| Frame { camera_id: *id, body: body.clone() })
            .collect();
        prop_assert_eq!(&whole, &expected);
        prop_assert_eq!(read_all(&stream, &[1], wire::MAX_BODY_LEN), (expected.clone(), None));
        prop_assert_eq!(read_all(&stream, &chunks, wire::MAX_BODY_LEN), (expected, None));
    }

    /// Valid frames then a hostile header: every split yields the same
    /// frames, then the same error.
    #[test]
    fn errors_do_not_depend_on_split(
        frames in frames_strategy(),
        bad_len in prop_oneof![Just(0u32), 301u32..],
        tail in prop::collection::vec(any::<u8>(), 0..20),
        chunks in prop::collection::vec(1usize..50, 1..10),
    ) {
        let mut stream = Vec::new();
        for (id, body) in &frames {
            wire::encode_frame(*id, body, &mut stream).unwrap();
        }
        stream.push(42);
        stream.extend_from_slice(&bad_len.to_be_bytes());
        stream.extend_from_slice(&tail);
        let whole = read_all(&stream, &[stream.len()], 300);
        prop_assert_eq!(whole.0.len(), frames.len());
        prop_assert!(whole.1.is_some());
        prop_assert_eq!(&read_all(&stream, &[1], 300), &whole);
        prop_assert_eq!(&read_all(&stream, &chunks, 300), &whole);
    }

    #[test]
    fn frame_reader_never_panics(
        stream in prop::collection::vec(any::<u8>(), 0..400),
        chunks in prop::collection::vec(1usize..50, 1..10),
    ) {
        let whole = read_all(&stream, &[stream.len().max(1)], 200);
        prop_assert_eq!(read_all(&stream, &chunks, 200), whole);
    }

    #[test]
    fn bmp_round_trip_and_bmp_crate_agrees(
        (width, height, bgr) in (1u32..40, 1u32..40).prop_flat_map(|(w, h)| {
            (Just(w), Just(h), prop::collection::vec(any::<u8>(), (w * h * 3) as usize))
        })
    ) {
        let mut file = Vec::new();
        bmp::encode_bgr24(&bgr, width, height, &mut file).unwrap();
        prop_assert_eq!(file.len(), bmp::encoded_len(width, height).unwrap());
        let mut ours = Vec::new();
        prop_assert_eq!(bmp::decode_0rgb(&file, &mut ours), Ok((width, height)));
        let mut expected = vec![0u32; (width * height) as usize];
        pixel::bgr_to_0rgb(&bgr, width, height, &mut expected).unwrap();
        prop_assert_eq!(&ours, &expected);

        // An independent decoder reads our file to the same pixels.
        let image = ::bmp::from_reader(&mut file.as_slice()).unwrap();
        prop_assert_eq!((image.get_width(), image.get_height()), (width, height));
        let mut theirs = Vec::with_capacity(expected.len());
        for y in 0..height {
            for x in 0..width {
                let p = image.get_pixel(x, y);
                theirs.push(u32::from(p.r) << 16 | u32::from(p.g) << 8 | u32::from(p.b));
            }
        }
        prop_assert_eq!(theirs, expected);
    }

    /// Damaged BMPs (bytes overwritten, then cut or extended): a named error
    /// or a decode whose size matches its dimensions, never a panic.
    #[test]
    fn bmp_decoder_never_panics_on_damaged_files(
        depth in prop::sample::select(vec![1u16, 4, 8, 24, 32]),
        (width, height) in (1u32..20, 1u32..20),
        edits in prop::collection::vec((0usize..200, any::<u8>()), 0..8),
        cut in 0usize..2000,
    ) {
        let mut file = synthetic_bmp(depth, width, height);
        for (at, byte) in edits {
            if let Some(b) = file.get_mut(at) {
                *b = byte;
            }
        }
        file.truncate(cut.max(1));
        let mut out = Vec::new();
        if let Ok((w, h)) = bmp::decode_0rgb(&file, &mut out) {
            prop_assert_eq!(out.len(), w as usize * h as usize);
            prop_assert!(out.len() <= file.len() * 8);
        }
    }

    #[test]
    fn gzip_round_trip(
        data in prop::collection::vec(any::<u8>(), 0..4096),
        level in 0u32..=9,
    ) {
        let mut packed = Vec::new();
        gzip::Compressor::new(level).unwrap().compress_append(&data, &mut packed);
        let mut back = Vec::new();
        gzip::Decompressor::new(4096).decompress(&packed, &mut back).unwrap();
        prop_assert_eq!(back, data);
    }

    #[test]
    fn gzip_decompressor_never_panics(
        data in prop::collection::vec(any::<u8>(), 0..200),
        edits in prop::collection::vec((0usize..300, any::<u8>()), 0..4),
    ) {
        let mut packed = Vec::new();
        gzip::Compressor::new(9).unwrap().compress_append(&data, &mut packed);
        for (at, byte) in edits {
            if let Some(b) = packed.get_mut(at) {
                *b = byte;
            }
        }
        let mut out = Vec::new();
        if gzip::Decompressor::new(1 << 16).decompress(&packed, &mut out).is_ok() {
            prop_assert!(out.len() <= 1 << 16);
        }
    }
}

/// A valid uncompressed BMP of the given depth, with a full palette below 24 bits.
fn synthetic_bmp(bits: u16, width: u32, height: u32) -> Vec<u8> {
    let palette_len = if bits <= 8 { 4usize << bits } else { 0 };
    let row = (width as usize * bits as usize).div_ceil(32) * 4;
    let offset = 54 + palette_len;
    let len = offset + row * height as usize;
    let mut f = vec![0u8; len];
    f[0..2].copy_from_slice(b"BM");
    f[2..6].copy_from_slice(&(len as u32).to_le_bytes());
    f[10..14].copy_from_slice(&(offset as u32).to_le_bytes());
    f[14..18].copy_from_slice(&40u32.to_le_bytes());
    f[18..22].copy_from_slice(&width.to_le_bytes());
    f[22..26].copy_from_slice(&height.to_le_bytes());
    f[26..28].copy_from_slice(&1u16.to_le_bytes());
    f[28..30].copy_from_slice(&bits.to_le_bytes());
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = (i * 31 % 256) as u8;
    }
    f
}

#[test]
fn synthetic_bmps_decode() {
    for bits in [1, 4, 8, 24, 32] {
        let file = synthetic_bmp(bits, 7, 3);
        let mut out = Vec::new();
        assert_eq!(bmp::decode_0rgb(&file, &mut out), Ok((7, 3)), "{bits}-bit");
    }
}
