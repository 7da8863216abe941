//! The `file:PATH` source: frames of `--format` and `--size` back to back
//! with no header (the format of `testdata/frames/*.yuyv`), read in a loop.
//! Raw frames are tightly packed (no row padding); an MJPG file is JPEG
//! files concatenated (`cat *.jpg > frames.mjpg`), each one a frame.
//!
//! Frames are read one at a time into a recycled buffer, so a long
//! recording costs one frame of memory, not the whole file. An MJPG file
//! is read through once at start to find where each JPEG ends
//! ([`jpeg_len`]); only that index stays in memory.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{bail, Context, Result};
use proto::format::{Layout, PixelFormat};

use super::Capture;
use crate::cli::Size;

pub fn run(
    path: &Path,
    format: PixelFormat,
    size: Size,
    fps: u32,
    capture: &mut Capture,
) -> Result<()> {
    let shown = path.display();
    let layout = Layout::new(format, size.width, size.height, 0)
        .with_context(|| format!("{format} frames of {size}"))?;
    let mut file = File::open(path).with_context(|| format!("cannot open frame file {shown}"))?;
    let file_len = file
        .metadata()
        .with_context(|| format!("cannot read the size of {shown}"))?
        .len();
    // (offset, length) of each frame.
    let frames: Vec<(u64, usize)> = if format.is_compressed() {
        index_jpegs(&mut file, path, file_len)?
    } else {
        let frame_len = layout.frame_len();
        if file_len == 0 || file_len % frame_len as u64 != 0 {
            bail!(
                "{shown} is {file_len} bytes, not a whole number of {size} {format} frames \
                 ({frame_len} bytes each); check --size and --format"
            );
        }
        (0..file_len / frame_len as u64)
            .map(|i| (i * frame_len as u64, frame_len))
            .collect()
    };
    log::info!(
        "file {shown}: {} frame(s) of {size} {format}, looped @ {fps} fps (0 = as fast as the encoders go)",
        frames.len()
    );

    let mut index = 0;
    super::run_paced(layout, fps, capture, |buf| {
        if index == frames.len() {
            index = 0;
        }
        let (offset, len) = frames[index];
        file.seek(SeekFrom::Start(offset))
            .with_context(|| format!("cannot seek in {shown}"))?;
        buf.resize(len, 0);
        file.read_exact(buf)
            .with_context(|| format!("cannot read frame {index} of {shown}"))?;
        index += 1;
        Ok(())
    })
}

/// The largest JPEG the file source takes: far over any camera frame, and
/// a bound on the buffer a broken file can make us allocate.
const MAX_JPEG_LEN: usize = 64 << 20;

/// Finds each JPEG in a file of concatenated JPEGs. Reads the file once,
/// one JPEG at a time.
fn index_jpegs(file: &mut File, path: &Path, file_len: u64) -> Result<Vec<(u64, usize)>> {
    let shown = path.display();
    let mut reader = BufReader::new(&mut *file);
    let mut frames = Vec::new();
    let mut offset = 0u64;
    let mut window = Vec::new();
    while offset < file_len {
        // Grow the window until it holds one whole JPEG.
        window.clear();
        let mut want = 64 * 1024;
        let len = loop {
            let have = window.len();
            let take = (want - have) as u64;
            (&mut reader)
                .take(take)
                .read_to_end(&mut window)
                .with_context(|| format!("cannot read {shown}"))?;
            match jpeg_len(&window) {
                Ok(len) => break len,
                Err(JpegEnd::NeedMore) if window.len() == have => bail!(
                    "{shown}: the JPEG at byte {offset} has no end (EOI marker); \
                     an MJPG file must be whole JPEG files concatenated"
                ),
                Err(JpegEnd::NeedMore) if want >= MAX_JPEG_LEN => bail!(
                    "{shown}: the JPEG at byte {offset} is over {} MiB",
                    MAX_JPEG_LEN >> 20
                ),
                Err(JpegEnd::NeedMore) => want *= 2,
                Err(JpegEnd::NotJpeg) => bail!(
                    "{shown}: no JPEG starts at byte {offset} (expected FF D8); \
                     an MJPG file must be whole JPEG files concatenated"
                ),
            }
        };
        frames.push((offset, len));
        offset += len as u64;
        // Put back what was read past this JPEG.
        reader
            .seek(SeekFrom::Start(offset))
            .with_context(|| format!("cannot seek in {shown}"))?;
    }
    if frames.is_empty() {
        bail!("{shown} is empty; an MJPG file is JPEG files concatenated");
    }
    Ok(frames)
}

/// Why [`jpeg_len`] found no end.
#[derive(Debug, PartialEq, Eq)]
enum JpegEnd {
    /// The data starts as a JPEG but ends before its EOI marker.
    NeedMore,
    /// The data does not start with a JPEG's SOI marker.
    NotJpeg,
}

/// The length of the JPEG at the start of `data`, through its EOI marker
/// (or up to the next JPEG's SOI, if it was cut short). Walks the segments
/// by their lengths, and the entropy-coded data after each SOS to the next
/// marker, so an EOI inside a segment (an EXIF thumbnail) does not end the
/// frame early.
fn jpeg_len(data: &[u8]) -> Result<usize, JpegEnd> {
    if data.len() < 2 {
        return Err(JpegEnd::NeedMore);
    }
    if data[..2] != [0xff, 0xd8] {
        return Err(JpegEnd::NotJpeg);
    }
    let mut at = 2;
    loop {
        // A marker: FF, any fill FFs, then its code.
        if *data.get(at).ok_or(JpegEnd::NeedMore)? != 0xff {
            return Err(JpegEnd::NotJpeg);
        }
        let marker_start = at;
        while data.get(at + 1) == Some(&0xff) {
            at += 1;
        }
        let code = *data.get(at + 1).ok_or(JpegEnd::NeedMore)?;
        at += 2;
        match code {
            0xd9 => return Ok(at),
            // The next JPEG's SOI: this one was cut short (as a camera's
            // frame cut by a USB error is); it ends here, and the encoder
            // drops it as a camera's broken frame.
            0xd8 => return Ok(marker_start),
            // Standalone markers: RSTn, TEM.
            0xd0..=0xd7 | 0x01 => continue,
            _ => {}
        }
        let len = data.get(at..at + 2).ok_or(JpegEnd::NeedMore)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len < 2 {
            return Err(JpegEnd::NotJpeg);
        }
        at += len;
        if code == 0xda {
            // Entropy-coded data: runs to the next FF that is neither
            // stuffing (FF 00) nor a restart marker.
            loop {
                let ff = data.get(at..).ok_or(JpegEnd::NeedMore)?;
                let ff = ff
                    .iter()
                    .position(|&b| b == 0xff)
                    .ok_or(JpegEnd::NeedMore)?;
                at += ff;
                match data.get(at + 1) {
                    None => return Err(JpegEnd::NeedMore),
                    Some(0x00 | 0xd0..=0xd7) => at += 2,
                    Some(_) => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal JPEG's marker structure: SOI, an APP1 segment holding a
    /// whole JPEG (as an EXIF thumbnail does), SOS with entropy-coded data
    /// containing stuffed FF 00 and a restart marker, then EOI.
    fn jpeg() -> Vec<u8> {
        let mut j = vec![0xff, 0xd8];
        j.extend([0xff, 0xe1, 0x00, 0x08, 0xff, 0xd8, 0xff, 0xd9, 0x00, 0x00]);
        j.extend([0xff, 0xda, 0x00, 0x04, 0x01, 0x02]);
        j.extend([0x12, 0xff, 0x00, 0x34, 0xff, 0xd0, 0x56]);
        j.extend([0xff, 0xd9]);
        j
    }

    #[test]
    fn a_jpeg_ends_at_its_own_eoi_not_a_thumbnails() {
        let one = jpeg();
        assert_eq!(jpeg_len(&one), Ok(one.len()));
        let mut two = one.clone();
        two.extend(jpeg());
        assert_eq!(jpeg_len(&two), Ok(one.len()));
    }

    #[test]
    fn a_cut_jpeg_needs_more_and_garbage_is_not_a_jpeg() {
        let one = jpeg();
        for cut in 0..one.len() {
            assert_eq!(
                jpeg_len(&one[..cut]),
                Err(JpegEnd::NeedMore),
                "cut at {cut}"
            );
        }
        assert_eq!(jpeg_len(b"RIFF...."), Err(JpegEnd::NotJpeg));
        assert_eq!(jpeg_len(&[0xff, 0xd8, 0x00, 0x00]), Err(JpegEnd::NotJpeg));
        // A segment length under 2 cannot be.
        assert_eq!(
            jpeg_len(&[0xff, 0xd8, 0xff, 0xe0, 0, 1]),
            Err(JpegEnd::NotJpeg)
        );
    }

    #[test]
    fn a_jpeg_cut_inside_its_scan_ends_where_the_next_one_starts() {
        let one = jpeg();
        let cut = &one[..one.len() - 2];
        let mut two = cut.to_vec();
        two.extend(jpeg());
        assert_eq!(jpeg_len(&two), Ok(cut.len()));
        assert_eq!(jpeg_len(&two[cut.len()..]), Ok(one.len()));
    }

    #[test]
    fn a_concatenation_is_indexed_jpeg_by_jpeg() {
        let dir = std::env::temp_dir().join(format!("camstream-mjpg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("frames.mjpg");
        let mut data = jpeg();
        // One JPEG larger than the first 64 KiB window.
        let mut big = vec![0xff, 0xd8, 0xff, 0xda, 0x00, 0x02];
        big.extend(std::iter::repeat_n(0x11, 200_000));
        big.extend([0xff, 0xd9]);
        data.extend(&big);
        data.extend(jpeg());
        std::fs::write(&path, &data).unwrap();
        let mut file = File::open(&path).unwrap();
        let frames = index_jpegs(&mut file, &path, data.len() as u64).unwrap();
        let n = jpeg().len();
        assert_eq!(
            frames,
            [(0, n), (n as u64, big.len()), ((n + big.len()) as u64, n)]
        );
        // A file cut inside its last JPEG is refused, naming where.
        std::fs::write(&path, &data[..data.len() - 1]).unwrap();
        let mut file = File::open(&path).unwrap();
        let err = index_jpegs(&mut file, &path, data.len() as u64 - 1).unwrap_err();
        assert!(format!("{err:#}").contains("has no end"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
