//! Frames written to disk by the peers under test: the viewer's `--record
//! DIR` tree (`DIR/cam<ID>-<ip>-<port>/<seq, 6 digits>.bmp`, one directory
//! per connection), [`RecordCounter`] for runs too long to keep every frame,
//! and the `.npy` arrays the Python server writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Frames the viewer recorded under `--record DIR`, counted per camera id.
pub fn recorded_counts(dir: &Path) -> HashMap<u8, usize> {
    let mut counts = HashMap::new();
    for (id, conn_dir) in recorded_conn_dirs(dir) {
        *counts.entry(id).or_insert(0) += recorded_frames(&conn_dir).len();
    }
    counts
}

/// The per-connection record directories under `dir`, with their camera id.
pub fn recorded_conn_dirs(dir: &Path) -> Vec<(u8, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<(u8, PathBuf)> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let id = name.strip_prefix("cam")?.split('-').next()?.parse().ok()?;
            Some((id, e.path()))
        })
        .collect();
    dirs.sort();
    dirs
}

/// The complete `.bmp` and `.jpg` files of one record directory, sorted by
/// sequence number (the viewer writes `.bmp.part` or `.jpg.part` and renames
/// it when complete).
pub fn recorded_frames(conn_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(conn_dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "bmp" || x == "jpg"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Counts the frames a viewer records under `--record DIR` and deletes each
/// file once counted, so long or fast runs (soak, faults) need no disk space:
/// at 640x480 every frame is a 0.9 MB BMP. Only complete `.bmp` files are
/// touched.
pub struct RecordCounter {
    counts: Arc<Mutex<HashMap<u8, usize>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    dir: PathBuf,
}

impl RecordCounter {
    /// Starts counting (and deleting) in `dir` every 100 ms.
    pub fn start(dir: &Path) -> RecordCounter {
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (counts, stop, dir) = (Arc::clone(&counts), Arc::clone(&stop), dir.to_path_buf());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    Self::sweep(&dir, &counts);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        RecordCounter {
            counts,
            stop,
            thread: Some(thread),
            dir: dir.to_path_buf(),
        }
    }

    fn sweep(dir: &Path, counts: &Mutex<HashMap<u8, usize>>) {
        for (id, conn_dir) in recorded_conn_dirs(dir) {
            for frame in recorded_frames(&conn_dir) {
                if std::fs::remove_file(&frame).is_ok() {
                    *counts
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(id)
                        .or_insert(0) += 1;
                }
            }
        }
    }

    /// Frames counted so far, per camera id.
    pub fn counts(&self) -> HashMap<u8, usize> {
        Self::sweep(&self.dir, &self.counts);
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for RecordCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads a `.npy` file holding a C-ordered `uint8` array (what `np.save`
/// writes for an OpenCV image); returns its shape and bytes.
pub fn read_npy_u8(path: &Path) -> Result<(Vec<usize>, Vec<u8>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(format!("{}: not a .npy file", path.display()));
    }
    let (header_len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => {
            return Err(format!(
                "{}: .npy version {v} not supported",
                path.display()
            ))
        }
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| format!("{}: truncated .npy header", path.display()))?;
    if !header.contains("'descr': '|u1'") || header.contains("'fortran_order': True") {
        return Err(format!(
            "{}: not a C-ordered uint8 array: {header}",
            path.display()
        ));
    }
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| format!("{}: no shape in {header}", path.display()))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad shape {shape_text}")))
        .collect::<Result<_, _>>()?;
    let data = bytes[start + header_len..].to_vec();
    if data.len() != shape.iter().product::<usize>() {
        return Err(format!(
            "{}: {} data bytes for shape {shape:?}",
            path.display(),
            data.len()
        ));
    }
    Ok((shape, data))
}
