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

/// gzip header flags (RFC 1952, 2.3.1).
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FIXED_HEADER_LEN: usize = 10;

/// libdeflate skips the optional header CRC16 without checking it, which
/// RFC 1952 (2.3.1.2) allows; zlib and flate2 check it. So that the oracle
/// compares the data and not this leniency, give flate2 a copy of the
/// input with a correct header CRC. `None` when there is nothing to fix.
fn with_header_crc_fixed(data: &[u8]) -> Option<Vec<u8>> {
    let flags = *data.get(3)?;
    if flags & FHCRC == 0 {
        return None;
    }
    let mut pos = FIXED_HEADER_LEN;
    if flags & FEXTRA != 0 {
        let xlen = u16::from_le_bytes([*data.get(pos)?, *data.get(pos + 1)?]);
        pos += 2 + usize::from(xlen);
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            pos += data.get(pos..)?.iter().position(|&b| b == 0)? + 1;
        }
    }
    if data.len() < pos.checked_add(2)? {
        return None;
    }
    let header = &data[..pos];
    let mut crc = flate2::Crc::new();
    crc.update(header);
    let mut fixed = data.to_vec();
    fixed[pos..pos + 2].copy_from_slice(&(crc.sum() as u16).to_le_bytes());
    Some(fixed)
}

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
        let fixed = with_header_crc_fixed(data);
        let mut expected = Vec::new();
        GzDecoder::new(fixed.as_deref().unwrap_or(data))
            .take(CAP as u64 + 1)
            .read_to_end(&mut expected)
            .expect("flate2 rejects a stream proto accepted");
        assert!(out == expected, "proto and flate2 disagree");
    }
});
