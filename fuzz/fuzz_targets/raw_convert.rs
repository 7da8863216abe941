//! Fuzzes `proto::format::Layout` and `proto::convert`, the conversion of a
//! camera's raw frame in every capture format: whatever the format, size,
//! `bytesperline` and bytes, building the layout and converting must return
//! a named error or a full image, never panic; a frame that converts to BGR
//! must give the same pixels straight into a BMP.
//!
//! Input: byte 0 picks the format, bytes 1-2 the width and 3 the height (so
//! fuzzed frames stay small), byte 4 the `bytesperline` padding (255: a
//! stride shorter than a row); the rest is the frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::convert;
use proto::format::{Layout, PixelFormat};

fuzz_target!(|data: &[u8]| {
    let Some((head, frame)) = data.split_first_chunk::<5>() else {
        return;
    };
    let raw: Vec<PixelFormat> = PixelFormat::ALL
        .into_iter()
        .filter(|f| !f.is_compressed())
        .collect();
    let format = raw[usize::from(head[0]) % raw.len()];
    let width = u32::from(u16::from_le_bytes([head[1], head[2]]) % 2100);
    let height = u32::from(head[3] % 9);
    let row = width * format.first_plane_bytes_per_pixel();
    let bytesperline = match head[4] {
        0 => 0,
        255 => row.saturating_sub(1),
        pad => row + u32::from(pad),
    };
    let Ok(layout) = Layout::new(format, width, height, bytesperline) else {
        return;
    };
    let need = width as usize * height as usize * 3;
    let mut bgr = vec![0x5a; need + 1];
    let converted = convert::to_bgr(&layout, frame, &mut bgr);
    assert_eq!(
        converted.is_ok(),
        frame.len() >= layout.frame_len(),
        "{format} {width}x{height} bpl {bytesperline}: {converted:?}"
    );
    assert_eq!(bgr[need], 0x5a, "wrote past the image");
    let mut file = vec![1, 2, 3];
    let encoded = convert::to_bmp(&layout, frame, &mut file);
    if converted.is_err() || width == 0 || height == 0 {
        return;
    }
    encoded.expect("a frame that converts also encodes");
    // BMP rows run bottom-up, padded to 4 bytes, after a 54-byte header.
    let row_len = width as usize * 3;
    let stored = row_len.div_ceil(4) * 4;
    for (r, pixels) in bgr[..need].chunks_exact(row_len).enumerate() {
        let at = 54 + (height as usize - 1 - r) * stored;
        assert!(file[at..at + row_len] == *pixels, "{format} row {r}");
    }
});
