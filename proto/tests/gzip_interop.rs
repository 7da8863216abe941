//! gzip against an independent implementation (flate2 with zlib-rs), and
//! decompression bombs.

use flate2::{read::GzDecoder, write::GzEncoder, Compression};
use proto::gzip::{self, Compressor, Decompressor, GzipError};
use std::io::{Read, Write};

/// Camera-like bytes: a gradient with noise, so deflate has work to do.
fn frame_like(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491u32;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            ((i / 7) as u8).wrapping_add((x % 5) as u8)
        })
        .collect()
}

#[test]
fn flate2_decodes_our_gzip_at_every_level() {
    let data = frame_like(100_000);
    for level in 0..=gzip::MAX_LEVEL {
        let mut ours = Vec::new();
        Compressor::new(level)
            .unwrap()
            .compress_append(&data, &mut ours);
        let mut back = Vec::new();
        GzDecoder::new(ours.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data, "level {level}: flate2 read different bytes");
    }
}

#[test]
fn we_decode_flate2_gzip() {
    let data = frame_like(100_000);
    for level in [0, 1, 6, 9] {
        let mut enc = GzEncoder::new(Vec::new(), Compression::new(level));
        enc.write_all(&data).unwrap();
        let theirs = enc.finish().unwrap();
        let mut back = Vec::new();
        Decompressor::new(gzip::MAX_DECOMPRESSED_LEN)
            .decompress(&theirs, &mut back)
            .unwrap();
        assert!(back == data, "level {level}: we read different bytes");
    }
}

/// 100 MB of zeros compresses to about 100 KB: the classic bomb.
fn bomb() -> Vec<u8> {
    let mut out = Vec::new();
    Compressor::new(1)
        .unwrap()
        .compress_append(&vec![0u8; 100_000_000], &mut out);
    out
}

#[test]
fn gzip_bomb_is_refused_without_allocating() {
    let bomb = bomb();
    assert!(bomb.len() < 1_000_000, "bomb is {} bytes", bomb.len());
    let mut out = Vec::new();
    assert_eq!(
        Decompressor::new(gzip::MAX_DECOMPRESSED_LEN).decompress(&bomb, &mut out),
        Err(GzipError::TooLarge {
            announced: 100_000_000,
            max: gzip::MAX_DECOMPRESSED_LEN
        })
    );
    assert_eq!(out.capacity(), 0);

    // The same bomb with a trailer that claims 1 KB: it must stop at 1 KB.
    let mut liar = bomb;
    let n = liar.len();
    liar[n - 4..].copy_from_slice(&1024u32.to_le_bytes());
    let mut out = Vec::new();
    assert_eq!(
        Decompressor::new(gzip::MAX_DECOMPRESSED_LEN).decompress(&liar, &mut out),
        Err(GzipError::Corrupt)
    );
    assert!(out.capacity() <= 1024, "capacity {}", out.capacity());
}
