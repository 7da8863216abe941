//! What vivid's frames look like once they reach the viewer: its 75% (or,
//! with `test_pattern=1`, 100%) colour bars, checked in every recorded frame
//! of a viewer's `--record` tree. Shared by the guests that stream vivid
//! through the whole deployment (`hotplug`) and from another architecture
//! (`arm_node`).

use std::path::Path;

use crate::bars::{self, Probe, LEVEL_100, LEVEL_75};
use crate::image::Image;
use crate::record::{recorded_conn_dirs, recorded_frames};

/// Per-channel tolerance: vivid rounds to limited-range Y'CbCr and our
/// YUYV->BGR rounds back; anything beyond a few steps is a wrong colour.
pub const BAR_TOLERANCE: u8 = 8;

/// The recorded frames, sorted by the bars they show.
#[derive(Debug, Default)]
pub struct VividFrames {
    /// Frames per connection, in the order the viewer numbered them, with
    /// the camera id each came from.
    pub per_conn: Vec<(u8, usize)>,
    /// Frames with vivid's default 75% bars.
    pub bars_75: usize,
    /// Frames with 100% bars (`test_pattern=1`).
    pub bars_100: usize,
    /// The largest deviation of any bar's colour from its ideal, per channel.
    pub worst: u8,
}

/// Decodes every frame recorded under `record_dir`, checks it is
/// `width`x`height`, and that at mid-height each eighth of the width has the
/// colour of its bar (a 5x5 block, averaged) within [`BAR_TOLERANCE`]. A
/// frame with the wrong size or colours is an `Err` naming the file.
pub fn check_vivid_recording(
    record_dir: &Path,
    width: u32,
    height: u32,
) -> Result<VividFrames, String> {
    let mut found = VividFrames::default();
    let middle = [height / 2];
    let probe = |level| Probe {
        rows: &middle,
        radius: 2,
        level,
        tolerance: BAR_TOLERANCE,
    };
    for (id, dir) in recorded_conn_dirs(record_dir) {
        let frames = recorded_frames(&dir);
        found.per_conn.push((id, frames.len()));
        for file in frames {
            let image = Image::read_bmp(&file);
            if image.size() != (width, height) {
                return Err(format!(
                    "{}: {:?}, want {width}x{height}",
                    file.display(),
                    image.size()
                ));
            }
            match (
                bars::check(&image, &probe(LEVEL_75)),
                bars::check(&image, &probe(LEVEL_100)),
            ) {
                (Ok(deviation), _) => {
                    found.bars_75 += 1;
                    found.worst = found.worst.max(deviation);
                }
                (_, Ok(deviation)) => {
                    found.bars_100 += 1;
                    found.worst = found.worst.max(deviation);
                }
                (Err(bad_75), Err(_)) => {
                    return Err(format!(
                        "{}: not vivid's colour bars: {bad_75}",
                        file.display()
                    ))
                }
            }
        }
    }
    Ok(found)
}
