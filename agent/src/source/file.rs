//! The `file:PATH` source: raw YUYV frames of `--size`, back to back with no
//! header (the format of `testdata/frames/*.yuyv`), read in a loop.
//!
//! Frames are read one at a time into a recycled buffer, so a long
//! recording costs one frame of memory, not the whole file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::Capture;
use crate::cli::Size;

pub fn run(path: &Path, size: Size, fps: u32, capture: &mut Capture) -> Result<()> {
    let shown = path.display();
    let mut file = File::open(path).with_context(|| format!("cannot open frame file {shown}"))?;
    let file_len = file
        .metadata()
        .with_context(|| format!("cannot read the size of {shown}"))?
        .len();
    let frame_len = size.yuyv_len();
    if file_len == 0 || file_len % frame_len as u64 != 0 {
        bail!(
            "{shown} is {file_len} bytes, not a whole number of {size} YUYV frames \
             ({frame_len} bytes each); check --size"
        );
    }
    let frames = file_len / frame_len as u64;
    log::info!("file {shown}: {frames} frame(s) of {size} YUYV, looped @ {fps} fps (0 = as fast as the encoders go)");

    let mut index = 0u64;
    super::run_paced(size, fps, capture, |buf| {
        if index == frames {
            file.seek(SeekFrom::Start(0))
                .with_context(|| format!("cannot rewind {shown}"))?;
            index = 0;
        }
        buf.resize(frame_len, 0);
        file.read_exact(buf)
            .with_context(|| format!("cannot read frame {index} of {shown}"))?;
        index += 1;
        Ok(())
    })
}
