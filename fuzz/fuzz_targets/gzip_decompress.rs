//! Fuzzes `proto::gzip::Decompressor` with a small output cap (1 MiB), so
//! decompression bombs are within the fuzzer's reach: it must return a named
//! error or the output, never panic, never exceed the cap, and agree with an
//! independent decoder (flate2) whenever it accepts a stream.

#![no_main]

use std::io::Read;

use flate2::read::GzDecoder;
use libfuzzer_sys::fuzz_target;
use proto::gzip::Decompressor;

const CAP: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut decompressor = Decompressor::new(CAP);
    // Start from a dirty buffer: the decompressor must replace, not append.
    let mut out = vec![0xa5u8; 3];
    if decompressor.decompress(data, &mut out).is_ok() {
        assert!(
            out.len() <= CAP,
            "{} bytes over the {CAP}-byte cap",
            out.len()
        );
        // Whatever we accept, flate2 must read to the same bytes (it reads
        // the first member and checks the CRC and the length).
        let mut expected = Vec::new();
        GzDecoder::new(data)
            .take(CAP as u64 + 1)
            .read_to_end(&mut expected)
            .expect("flate2 rejects a stream proto accepted");
        assert!(out == expected, "proto and flate2 disagree");
    }
});
