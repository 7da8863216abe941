//! Fuzzes the MJPEG decode path of the agent and the JPEG checks both
//! binaries rely on: `jpeg::inspect` (the capture side's structural
//! check), `jpeg::complete` (passthrough: standard Huffman tables inserted,
//! cut at EOI) and `jpeg::Decoder::decode` into BGR with a pixel cap (the
//! agent's MJPEG → BMP path). Any input must give an answer, never a
//! panic, and:
//!
//! - a file `inspect` accepts is whole: `complete` makes a file that
//!   `inspect` accepts again, with Huffman tables, the same size and a
//!   length through its EOI;
//! - a decoded frame has exactly width x height BGR pixels within the cap,
//!   and decoding the completed file gives the same pixels (inserting the
//!   standard tables changes nothing for a file that had its own, and is
//!   exactly what a file without them means).
//!
//! Input layout: byte 0 picks the pixel cap; the rest is the JPEG.

#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::jpeg::{self, Decoder, Layout};

const MAX_PIXELS: [usize; 4] = [1 << 20, 16, 4096, 640 * 480];

fuzz_target!(|data: &[u8]| {
    let Some((&control, jpg)) = data.split_first() else {
        return;
    };
    let max_pixels = MAX_PIXELS[usize::from(control & 0b11)];
    let mut decoder = Decoder::new(max_pixels);
    let mut bgr = Vec::new();
    let decoded = decoder.decode(jpg, Layout::Bgr, &mut bgr);

    let Ok(info) = jpeg::inspect(jpg) else {
        assert!(decoded.is_err(), "decoded a file inspect refuses");
        return;
    };
    assert!(info.len <= jpg.len() && info.first_scan < info.len);
    let mut completed = Vec::new();
    jpeg::complete(jpg, &info, &mut completed);
    let again = jpeg::inspect(&completed).expect("a completed file passes inspect");
    assert!(again.has_huffman_tables);
    assert_eq!((again.width, again.height), (info.width, info.height));
    assert_eq!(again.len, completed.len());

    if let Ok(d) = decoded {
        assert_eq!(d, info);
        assert!(info.pixels() <= max_pixels);
        assert_eq!(bgr.len(), info.pixels() * 3);
        let mut again_bgr = Vec::new();
        decoder
            .decode(&completed, Layout::Bgr, &mut again_bgr)
            .expect("the completed file decodes too");
        assert!(again_bgr == bgr, "completing the file changed its pixels");
    }
});
