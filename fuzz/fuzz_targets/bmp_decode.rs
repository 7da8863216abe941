//! Fuzzes `proto::bmp::decode_0rgb`, the viewer's BMP decoder, on arbitrary
//! bytes: it must return a named error or a consistent image, never panic,
//! and never allocate more pixels than the data present can describe; the
//! capped variant must agree with it below the cap and refuse above it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::bmp;

/// Small enough that the seeds (up to 24x16) and fuzzed images cross it.
const PIXEL_CAP: usize = 200;

fuzz_target!(|data: &[u8]| {
    // Start from a dirty buffer: the decoder must replace, not append.
    let mut out = vec![0xdead_beef_u32; 7];
    if let Ok((width, height)) = bmp::decode_0rgb(data, &mut out) {
        assert!((1..=bmp::MAX_DIMENSION).contains(&width), "width {width}");
        assert!(
            (1..=bmp::MAX_DIMENSION).contains(&height),
            "height {height}"
        );
        let pixels = width as usize * height as usize;
        assert_eq!(out.len(), pixels, "{width}x{height}");
        // Every pixel takes at least one bit of the file (1-bit images), so
        // the data present bounds the allocation, whatever the header says.
        assert!(
            pixels <= 8 * data.len(),
            "{width}x{height} from {} bytes",
            data.len()
        );
        assert!(out.iter().all(|p| p >> 24 == 0), "0RGB has a zero top byte");

        // Decoding is a pure function of the bytes: a second run into the
        // now-full buffer gives the same pixels.
        let first = out.clone();
        assert_eq!(bmp::decode_0rgb(data, &mut out), Ok((width, height)));
        assert!(out == first, "second decode differs");
    }

    // The capped decoder agrees with the uncapped one below its cap and
    // refuses, without growing `out`, above it.
    let uncapped = bmp::decode_0rgb(data, &mut Vec::new());
    let mut out = Vec::new();
    match (bmp::decode_0rgb_capped(data, PIXEL_CAP, &mut out), uncapped) {
        (Ok(dims), Ok(expected)) => {
            assert_eq!(dims, expected);
            assert!(dims.0 as usize * dims.1 as usize <= PIXEL_CAP, "{dims:?}");
        }
        (Err(bmp::BmpError::TooManyPixels { width, height, max }), _) => {
            assert_eq!(max, PIXEL_CAP);
            assert!(width as usize * height as usize > PIXEL_CAP);
            assert!(out.capacity() == 0, "refused, but allocated");
        }
        (Err(_), Err(_)) => {}
        (capped, uncapped) => panic!("capped {capped:?}, uncapped {uncapped:?}"),
    }
});
