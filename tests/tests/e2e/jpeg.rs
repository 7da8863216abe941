//! MJPEG from a camera, played by the file source with real JPEGs made by
//! OpenCV (libjpeg-turbo; `tests/interop/make_mjpeg.py`): qualities 50 to
//! 95, 4:2:0, 4:2:2 and 4:4:4, one without its Huffman tables (as MJPEG
//! cameras send them) and one cut short inside its scan (as a USB error
//! cuts it), through the real agent to the real viewer.
//!
//! - `--encoding jpeg`: passthrough. Every recorded `.jpg` is byte for byte
//!   a frame of the file (the one without tables with the standard tables
//!   inserted); the cut frame is dropped and counted, and never sent.
//! - `--encoding gzip-bmp`: the agent decodes each frame; every recorded
//!   BMP is within 45 dB PSNR of `cv2.imdecode` of its JPEG (figure
//!   printed), the cut frame is dropped, and the agent keeps going.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use camstream_tests::{
    bin_path, interop_script, recorded_conn_dirs, recorded_frames, testdata_frame, venv_python,
    Image, LoggedChild, RecordingViewer,
};

/// Frames the agent sends (the file holds four whole ones and a cut one).
const FRAMES: usize = 12;

struct MjpegFile {
    dir: tempfile::TempDir,
    /// (name, kind) in file order; kind is good, nodht or cut.
    frames: Vec<(String, String)>,
}

impl MjpegFile {
    fn make() -> MjpegFile {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = Command::new(venv_python())
            .arg(interop_script("make_mjpeg.py"))
            .arg(testdata_frame("coffee_640x480_noise.bgr"))
            .arg("640x480")
            .arg(dir.path())
            .status()
            .expect("run make_mjpeg.py");
        assert!(status.success(), "make_mjpeg.py failed");
        let manifest = std::fs::read_to_string(dir.path().join("MANIFEST")).expect("MANIFEST");
        let frames = manifest
            .lines()
            .map(|l| {
                let (name, kind) = l.split_once(' ').expect("NAME KIND");
                (name.to_string(), kind.to_string())
            })
            .collect();
        MjpegFile { dir, frames }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn whole(&self) -> impl Iterator<Item = &(String, String)> {
        self.frames.iter().filter(|(_, kind)| kind != "cut")
    }
}

/// Streams the file with `agent --format MJPG` and `encoding` to a
/// recording viewer as camera 5, and returns the recorded files and the
/// agent's log.
fn stream(file: &MjpegFile, encoding: &str) -> (Vec<PathBuf>, Vec<String>, RecordingViewer) {
    let viewer = RecordingViewer::start(&[]);
    let mut cmd = Command::new(bin_path("agent"));
    cmd.arg("--source")
        .arg(format!("file:{}", file.path("frames.mjpg").display()))
        .args(["--format", "MJPG", "--size", "640x480", "--fps", "15"])
        .args(["--encoding", encoding, "--id", "5", "--workers", "1"])
        .args(["--stats-interval", "0.2"])
        .args(["--server", &viewer.addr.to_string()])
        .args(["--frames", &FRAMES.to_string()]);
    let mut agent = LoggedChild::spawn(&format!("agent --encoding {encoding}"), cmd);
    agent.wait_success(Duration::from_secs(120));
    viewer.wait_recorded(5, FRAMES);
    let dirs = recorded_conn_dirs(viewer.record_dir());
    assert_eq!(dirs.len(), 1, "one connection: {dirs:?}");
    let frames = recorded_frames(&dirs[0].1);
    assert_eq!(frames.len(), FRAMES, "{frames:?}");
    let log = agent.lines();
    assert!(
        log.iter()
            .any(|l| l.contains("dropping a broken MJPEG frame") && l.contains("truncated")),
        "the cut frame was not dropped by name:\n{}",
        log.join("\n")
    );
    // The stats line names what went out.
    let named = if encoding == "jpeg" {
        " Mbit/s jpeg passthrough, "
    } else {
        " Mbit/s gzip-bmp level 9, "
    };
    assert!(
        log.iter()
            .any(|l| l.contains("fps captured") && l.contains(named)),
        "no stats line with {named:?}:\n{}",
        log.join("\n")
    );
    (frames, log, viewer)
}

#[test]
fn mjpeg_passthrough_is_byte_for_byte_the_cameras_jpeg() {
    let file = MjpegFile::make();
    let mut expected: HashMap<Vec<u8>, String> = HashMap::new();
    for (name, kind) in file.whole() {
        let jpg = std::fs::read(file.path(&format!("{name}.jpg"))).expect("frame");
        let sent = if kind == "nodht" {
            let info = proto::jpeg::inspect(&jpg).expect("a whole JPEG");
            assert!(!info.has_huffman_tables);
            let mut completed = Vec::new();
            proto::jpeg::complete(&jpg, &info, &mut completed);
            completed
        } else {
            jpg
        };
        expected.insert(sent, name.clone());
    }
    let (frames, _, _viewer) = stream(&file, "jpeg");
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for path in &frames {
        assert_eq!(path.extension().and_then(|e| e.to_str()), Some("jpg"));
        let got = std::fs::read(path).expect("recorded frame");
        let name = expected.get(&got).unwrap_or_else(|| {
            panic!(
                "{}: {} bytes that are none of the file's JPEGs",
                path.display(),
                got.len()
            )
        });
        *seen.entry(name).or_default() += 1;
    }
    for (name, _) in file.whole() {
        assert!(
            seen.contains_key(name.as_str()),
            "{name} never arrived: {seen:?}"
        );
    }
    println!("passthrough: {FRAMES} frames recorded byte for byte ({seen:?}); the cut one dropped");
}

/// Peak signal-to-noise ratio of `a` against `b`, in dB.
fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let se: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    let mse = se / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

fn bgr_of(bmp: &Path) -> Vec<u8> {
    let image = Image::read_bmp(bmp);
    assert_eq!(image.size(), (640, 480), "{}", bmp.display());
    image
        .pixels
        .iter()
        .flat_map(|p| [*p as u8, (p >> 8) as u8, (p >> 16) as u8])
        .collect()
}

#[test]
fn mjpeg_decoded_for_gzip_bmp_is_within_45_db_of_cv2_imdecode() {
    let file = MjpegFile::make();
    let references: Vec<(String, Vec<u8>)> = file
        .whole()
        .map(|(name, _)| {
            let bgr = std::fs::read(file.path(&format!("{name}.bgr"))).expect("reference");
            (name.clone(), bgr)
        })
        .collect();
    let (frames, _, _viewer) = stream(&file, "gzip-bmp");
    let mut worst: HashMap<String, f64> = HashMap::new();
    for path in &frames {
        assert_eq!(path.extension().and_then(|e| e.to_str()), Some("bmp"));
        let bgr = bgr_of(path);
        // Which frame it was: the reference it is closest to.
        let (name, db) = references
            .iter()
            .map(|(name, reference)| (name, psnr(&bgr, reference)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("references");
        let w = worst.entry(name.clone()).or_insert(f64::INFINITY);
        *w = w.min(db);
    }
    for (name, _) in &references {
        let db = worst
            .get(name)
            .unwrap_or_else(|| panic!("{name} never arrived: {worst:?}"));
        println!("{name}: PSNR {db:.1} dB against cv2.imdecode");
        assert!(*db >= 45.0, "{name}: PSNR {db:.1} dB < 45 dB");
    }
}
