//! Every raw capture format (`--format`) end to end, against counterparts we
//! did not write:
//!
//! - **OpenCV** makes a frame in each format from a noisy photo
//!   (`cv2.cvtColor` BGR→YUYV/UYVY/YVYU/I420/YV12/GRAY/RGB; NV12 and NV21
//!   are I420's planes rearranged) and converts it back; the agent streams
//!   that frame from `--source file:` to a recording viewer, and every
//!   recorded BMP must be exactly the BMP of OpenCV's conversion.
//! - **vivid** in the QEMU guest: for every raw format it offers, the agent
//!   captures its 640x480 bars in that format and the viewer shows every
//!   bar's colour right (GREY: every bar's grey level). And `--list-formats`
//!   against vivid, checked with `v4l2-ctl`, with `--format auto`'s choice
//!   and the refusal of a mode vivid does not offer.
//!
//! Run alone: `cargo test -p camstream-tests --test e2e formats::` (the VM
//! tests need `tests/vm/setup.sh`, like `vm::`).

use std::process::Command;
use std::time::Duration;

use camstream_tests::bars::{self, Probe, BARS, LEVEL_75};
use camstream_tests::vm::vm_enabled;
use camstream_tests::{
    recorded_conn_dirs, recorded_counts, recorded_frames, run_ok, start_agent, testdata_frame,
    venv_python, wait_until, Image, RecordingViewer, PATIENCE,
};

use crate::vm::{assert_guest_ok, run_agent_in_guest, VIVID_UP};

/// Every raw format the agent takes, by V4L2 fourcc.
const RAW_FORMATS: [&str; 10] = [
    "YUYV", "UYVY", "YVYU", "NV12", "NV21", "YU12", "YV12", "GREY", "RGB3", "BGR3",
];

/// Writes `DIR/frame.FOURCC` (OpenCV's rendering of the noisy 640x480 photo
/// in that format) and `DIR/expected.FOURCC.bmp` (OpenCV's conversion of it
/// back to BGR, as `cv2.imencode('.bmp')`) for every raw format.
const MAKE_FRAMES: &str = r#"
import sys, cv2, numpy as np
src, out = sys.argv[1], sys.argv[2]
h, w = 480, 640
bgr = np.fromfile(src, np.uint8).reshape(h, w, 3)
i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
y, u, v = i420[:h].ravel(), i420[h:h + h // 4].ravel(), i420[h + h // 4:].ravel()
def semi(a, b):
    return np.concatenate([y, np.stack([a, b], axis=1).ravel()]).reshape(h * 3 // 2, w)
frames = {
    "YUYV": (cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_YUYV), cv2.COLOR_YUV2BGR_YUYV),
    "UYVY": (cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_UYVY), cv2.COLOR_YUV2BGR_UYVY),
    "YVYU": (cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_YVYU), cv2.COLOR_YUV2BGR_YVYU),
    "NV12": (semi(u, v), cv2.COLOR_YUV2BGR_NV12),
    "NV21": (semi(v, u), cv2.COLOR_YUV2BGR_NV21),
    "YU12": (i420, cv2.COLOR_YUV2BGR_I420),
    "YV12": (cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_YV12), cv2.COLOR_YUV2BGR_YV12),
    "GREY": (cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR),
    "RGB3": (cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), cv2.COLOR_RGB2BGR),
    "BGR3": (bgr, None),
}
for fourcc, (frame, code) in frames.items():
    frame = np.ascontiguousarray(frame)
    frame.tofile(f"{out}/frame.{fourcc}")
    back = frame if code is None else cv2.cvtColor(frame, code)
    ok, bmp = cv2.imencode(".bmp", back)
    assert ok and back.shape == (h, w, 3), fourcc
    bmp.tofile(f"{out}/expected.{fourcc}.bmp")
"#;

/// The file source in every raw format: the viewer records exactly the BMP
/// of OpenCV's conversion (max difference 0), frame after frame.
#[test]
fn file_source_streams_every_raw_format_exactly_as_opencv_converts_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let photo = testdata_frame("coffee_640x480_noise.bgr");
    run_ok(
        Command::new(venv_python())
            .args(["-c", MAKE_FRAMES])
            .arg(&photo)
            .arg(dir.path()),
        "OpenCV making the frames in every raw format",
    );
    let mut viewer = RecordingViewer::start(&[]);
    let server = viewer.addr.to_string();
    const FRAMES: usize = 3;
    for (id, fourcc) in RAW_FORMATS.iter().enumerate() {
        // Upper case, lower case: --format is case-insensitive.
        let format = if id % 2 == 0 {
            fourcc.to_string()
        } else {
            fourcc.to_lowercase()
        };
        let source = format!(
            "file:{}",
            dir.path().join(format!("frame.{fourcc}")).display()
        );
        let mut agent = start_agent(&[
            "--source",
            &source,
            "--format",
            &format,
            "--size",
            "640x480",
            "--fps",
            "0",
            "--frames",
            &FRAMES.to_string(),
            "--id",
            &id.to_string(),
            "--server",
            &server,
            "--level",
            "1",
        ]);
        let status = agent.wait_success(PATIENCE);
        assert!(status.success(), "{fourcc}: {}", agent.tail(20));
        assert!(
            agent
                .wait_for_line(&format!("of 640x480 {fourcc}, looped"), PATIENCE)
                .is_some(),
            "{fourcc}: the agent did not log the file's format\n{}",
            agent.tail(20)
        );
    }
    let want = RAW_FORMATS.len() * FRAMES;
    let recorded = wait_until(PATIENCE, || {
        let n: usize = recorded_counts(viewer.record_dir()).values().sum();
        (n >= want).then_some(n)
    });
    assert!(
        recorded.is_some(),
        "the viewer recorded {:?}, want {FRAMES} frames per format (viewer exit {:?})",
        recorded_counts(viewer.record_dir()),
        viewer.child.try_status()
    );
    for (id, dir_of_camera) in recorded_conn_dirs(viewer.record_dir()) {
        let fourcc = RAW_FORMATS[usize::from(id)];
        let expected =
            std::fs::read(dir.path().join(format!("expected.{fourcc}.bmp"))).expect("OpenCV's BMP");
        let files = recorded_frames(&dir_of_camera);
        assert_eq!(files.len(), FRAMES, "{fourcc}");
        for file in files {
            let got = std::fs::read(&file).expect("recorded frame");
            assert_eq!(got.len(), expected.len(), "{fourcc}: {}", file.display());
            let worst = got
                .iter()
                .zip(&expected)
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap_or(0);
            println!("{fourcc}: recorded BMP vs OpenCV's: max difference {worst}");
            assert!(
                got == expected,
                "{fourcc}: {} differs from OpenCV's conversion (max difference {worst})",
                file.display()
            );
        }
    }
}

/// Guest timeout for streaming every format: boot, then ten agents each
/// converting and gzipping a few 640x480 frames under TCG.
const ALL_FORMATS_TIMEOUT: Duration = Duration::from_secs(300);

/// Frames each format streams from vivid.
const VIVID_FRAMES: usize = 4;

/// Per-channel tolerance, as in `vm::` (vivid rounds into its format, our
/// conversion rounds back).
const TOLERANCE: u8 = 8;

/// The grey level vivid draws for a 75% bar in GREY: the bar's luma with
/// Rec. 709 weights (vivid's sRGB colorspace), full range.
fn grey_level(rgb: [u8; 3]) -> u8 {
    let [r, g, b] = rgb.map(f64::from);
    (0.2126 * r + 0.7152 * g + 0.0722 * b).round() as u8
}

/// Checks a GREY frame: at mid-height, the middle of every bar is grey
/// (B = G = R) at that bar's level. Returns the largest deviation.
fn check_grey_bars(image: &Image) -> Result<u8, String> {
    let (width, height) = image.size();
    let mut worst = 0;
    for (i, bar) in BARS.iter().enumerate() {
        let x = bars::centre_x(i, width);
        let got = image.rgb(x, height / 2);
        let want = grey_level(bar.rgb(LEVEL_75));
        if got[0] != got[1] || got[1] != got[2] {
            return Err(format!("bar {} at x={x} is {got:?}, not grey", bar.name));
        }
        let off = got[0].abs_diff(want);
        if off > TOLERANCE {
            return Err(format!(
                "bar {} at x={x} is grey {}, want {want} ± {TOLERANCE}",
                bar.name, got[0]
            ));
        }
        worst = worst.max(off);
    }
    Ok(worst)
}

/// For every raw format vivid offers, the agent in the guest streams vivid's
/// 640x480 bars in that format; every recorded frame shows every bar right.
#[test]
fn vivid_bars_stream_in_every_raw_format_vivid_offers() {
    let test = "formats::vivid_bars_stream_in_every_raw_format_vivid_offers";
    if !vm_enabled(test) {
        return;
    }
    let mut viewer = RecordingViewer::start(&[]);
    let port = viewer.addr.port();
    let formats = RAW_FORMATS.join(" ");
    // vivid's own list (v4l2-ctl, not our code) decides which formats run.
    let script = format!(
        "{VIVID_UP}
/usr/bin/v4l2-ctl -d /dev/video0 --list-formats > /tmp/fmts || exit 93
id=0
offered=''
for f in {formats}; do
    if grep -q \"'$f'\" /tmp/fmts; then
        offered=\"$offered $f\"
        /agent --device /dev/video0 --format $f --size 640x480 --fps 25 --frames {VIVID_FRAMES} \
            --id $id --level 1 --stats-interval 0 --server 10.0.2.2:{port} 2> /tmp/agent.$f.log
        echo RAN_$f=$?
        grep -q \"640x480 $f @\" /tmp/agent.$f.log && echo NEGOTIATED_$f=1
        tail -n 3 /tmp/agent.$f.log
    fi
    id=$((id + 1))
done
echo OFFERED=$offered
"
    );
    let run = run_agent_in_guest(&script, ALL_FORMATS_TIMEOUT);
    assert_guest_ok(&run, test);
    let offered: Vec<&str> = run
        .value("OFFERED")
        .unwrap_or("")
        .split_whitespace()
        .collect();
    eprintln!(
        "{test}: vivid offers {offered:?}; guest run {:.1?}",
        run.elapsed
    );
    // vivid offers every raw format the agent takes; if a kernel's vivid
    // lost one, this names it rather than testing less in silence.
    assert_eq!(
        offered,
        RAW_FORMATS,
        "vivid's raw formats\n{}",
        run.tail(40)
    );
    for f in &offered {
        assert_eq!(
            run.value(&format!("RAN_{f}")),
            Some("0"),
            "{f}\n{}",
            run.tail(60)
        );
        assert_eq!(
            run.value(&format!("NEGOTIATED_{f}")),
            Some("1"),
            "{f}: the agent did not log capturing 640x480 {f}\n{}",
            run.tail(60)
        );
    }
    let want = offered.len() * VIVID_FRAMES;
    let recorded = wait_until(Duration::from_secs(30), || {
        let n: usize = recorded_counts(viewer.record_dir()).values().sum();
        (n >= want).then_some(n)
    });
    assert!(
        recorded.is_some(),
        "the viewer recorded {:?}, want {VIVID_FRAMES} per format (viewer exit {:?})",
        recorded_counts(viewer.record_dir()),
        viewer.child.try_status()
    );
    let middle = [240];
    let probe = Probe {
        rows: &middle,
        radius: 2,
        level: LEVEL_75,
        tolerance: TOLERANCE,
    };
    let mut seen = Vec::new();
    for (id, dir) in recorded_conn_dirs(viewer.record_dir()) {
        let fourcc = RAW_FORMATS[usize::from(id)];
        let mut worst = 0;
        let files = recorded_frames(&dir);
        assert!(
            files.len() >= VIVID_FRAMES,
            "{fourcc}: {} frames",
            files.len()
        );
        for file in &files {
            let image = Image::read_bmp(file);
            assert_eq!(image.size(), (640, 480), "{fourcc}: {}", file.display());
            let checked = if fourcc == "GREY" {
                check_grey_bars(&image)
            } else {
                bars::check(&image, &probe)
            };
            match checked {
                Ok(deviation) => worst = worst.max(deviation),
                Err(why) => panic!("{fourcc}: {}: {why}", file.display()),
            }
        }
        println!(
            "{fourcc}: {} frames of vivid's bars, every bar right (largest deviation {worst}, tolerance {TOLERANCE})",
            files.len()
        );
        seen.push(fourcc);
    }
    seen.sort();
    let mut all = RAW_FORMATS.to_vec();
    all.sort();
    assert_eq!(seen, all, "formats recorded");
}

/// `agent --list-formats` against vivid: exit 0; every format `v4l2-ctl`
/// lists appears (those the agent takes with their sizes and the rates
/// `v4l2-ctl` gives, the others on one line), in fewer lines than
/// `v4l2-ctl --list-formats-ext`. Then `--format auto`'s logged choice at
/// 640x480 and 25 fps, and a mode vivid does not offer refused naming the
/// nearest ones it does; and vivid made multi-planar, refused by name.
#[test]
fn list_formats_against_vivid() {
    let test = "formats::list_formats_against_vivid";
    if !vm_enabled(test) {
        return;
    }
    let script = format!(
        "{VIVID_UP}
/usr/bin/v4l2-ctl -d /dev/video0 --list-formats-ext > /tmp/ext || exit 93
echo '---- v4l2-ctl ----'
cat /tmp/ext
echo '---- agent ----'
/agent --list-formats --device /dev/video0 > /tmp/ours
echo LIST_RC=$?
cat /tmp/ours
echo '---- end ----'
echo OURS_LINES=$(wc -l < /tmp/ours)
echo THEIR_LINES=$(wc -l < /tmp/ext)
/agent --device /dev/video0 --size 640x480 --fps 25 --frames 1 --server 10.0.2.2:9 \
    --send-timeout 1 --stats-interval 0 > /tmp/auto 2>&1 &
pid=$!
sleep 8
kill $pid; wait $pid
grep -o 'format auto chose.*' /tmp/auto | head -n 1 | sed 's/^/AUTO=/'
/agent --device /dev/video0 --format nv12 --size 1000x700 --frames 1 --server 10.0.2.2:9 > /tmp/refused 2>&1
echo REFUSED_RC=$?
sed 's/^/REFUSED=/' /tmp/refused | tail -n 1
# vivid as a multi-planar device: refused by name, listed as such.
rmmod vivid || exit 95
modprobe vivid $VIVID_WEBCAM multiplanar=2 || exit 96
/usr/bin/v4l2-ctl -d /dev/video0 --all | grep -q 'Video Capture Multiplanar' && echo VIVID_MPLANE=1
/agent --device /dev/video0 --frames 1 --server 10.0.2.2:9 > /tmp/mplane 2>&1
echo MPLANE_RC=$?
sed 's/^/MPLANE=/' /tmp/mplane | tail -n 1
/agent --list-formats --device /dev/video0 > /tmp/mplane_list 2>&1
echo MPLANE_LIST_RC=$?
grep -o 'is multi-planar capture only.*' /tmp/mplane_list | sed 's/^/MPLANE_LIST=/'
"
    );
    let run = run_agent_in_guest(&script, Duration::from_secs(120));
    assert_guest_ok(&run, test);
    let console = run.console.replace('\r', "");
    let section = |from: &str, to: &str| -> String {
        console
            .split(from)
            .nth(1)
            .and_then(|rest| rest.split(to).next())
            .unwrap_or("")
            .to_string()
    };
    let theirs = section("---- v4l2-ctl ----", "---- agent ----");
    let ours = section("---- agent ----", "---- end ----");
    assert_eq!(run.value("LIST_RC"), Some("0"), "{}", run.tail(40));
    println!("agent --list-formats against vivid:\n{ours}");

    // Every fourcc v4l2-ctl lists, e.g. "[0]: 'YUYV' (YUYV 4:2:2)".
    let fourccs: Vec<&str> = theirs
        .lines()
        .filter_map(|l| l.split('\'').nth(1))
        .filter(|f| f.len() == 4)
        .collect();
    assert!(
        fourccs.len() >= RAW_FORMATS.len(),
        "v4l2-ctl listed {fourccs:?}"
    );
    let not_taken = ours
        .lines()
        .find_map(|l| l.strip_prefix("also offered, not taken by the agent: "))
        .unwrap_or("");
    for f in &fourccs {
        let ours_name = f.trim_end().replace(|c: char| !c.is_ascii_graphic(), "?");
        let listed = ours.lines().any(|l| l.starts_with(f))
            || not_taken.split(", ").any(|n| n == ours_name || n == *f);
        assert!(listed, "{f} (from v4l2-ctl) is missing from:\n{ours}");
    }
    for f in RAW_FORMATS {
        assert!(
            ours.lines().any(|l| l.starts_with(f)),
            "{f} is not listed as taken:\n{ours}"
        );
    }

    // YUYV's sizes and its rates at 640x480, as v4l2-ctl reports them.
    let yuyv_ext = theirs
        .split("'YUYV'")
        .nth(1)
        .and_then(|rest| rest.split("\t[").next())
        .unwrap_or("");
    let sizes: Vec<&str> = yuyv_ext
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Size: Discrete "))
        .collect();
    assert!(sizes.contains(&"640x480"), "{yuyv_ext}");
    // v4l2-ctl lists intervals, slowest rate first; we list rates, fastest first.
    let mut rates: Vec<f64> = yuyv_ext
        .split("Size: Discrete 640x480")
        .nth(1)
        .and_then(|rest| rest.split("Size:").next())
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split('(').nth(1)?.split(" fps)").next()?.parse().ok())
        .collect();
    rates.sort_by(|a, b| b.total_cmp(a));
    let rates_640: Vec<String> = rates
        .iter()
        .map(|fps| {
            let text = format!("{fps:.2}");
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        })
        .collect();
    assert!(!rates_640.is_empty(), "{yuyv_ext}");
    let ours_yuyv = ours
        .split("\nYUYV  ")
        .nth(1)
        .and_then(|r| r.split("\nUYVY").next())
        .unwrap_or("");
    for size in &sizes {
        assert!(
            ours_yuyv.contains(&format!("      {size} ")),
            "{size} missing:\n{ours_yuyv}"
        );
    }
    let line_640 = ours_yuyv
        .lines()
        .find(|l| l.trim_start().starts_with("640x480 "))
        .unwrap_or("");
    assert!(
        line_640.ends_with(&format!("{} fps", rates_640.join(", "))),
        "YUYV 640x480: ours `{line_640}`, v4l2-ctl's rates {rates_640:?}"
    );
    let (ours_lines, their_lines): (usize, usize) = (
        run.value("OURS_LINES")
            .and_then(|v| v.parse().ok())
            .unwrap_or(usize::MAX),
        run.value("THEIR_LINES")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    println!("--list-formats: {ours_lines} lines; v4l2-ctl --list-formats-ext: {their_lines}");
    assert!(
        ours_lines < their_lines,
        "ours {ours_lines} lines, v4l2-ctl {their_lines}"
    );

    // auto at 640x480 and 25 fps: YUYV, raw and fast enough, and it says why.
    let auto = run.value("AUTO").unwrap_or("");
    assert!(
        auto.starts_with("format auto chose YUYV: raw, and it reaches 25 fps at 640x480"),
        "auto logged `{auto}`\n{}",
        run.tail(40)
    );

    // Not offered: exit 1, naming the nearest NV12 modes vivid has.
    assert_eq!(run.value("REFUSED_RC"), Some("1"), "{}", run.tail(20));
    let refused = run.value("REFUSED").unwrap_or("");
    assert!(
        refused.contains(
            "does not offer NV12 at 1000x700; nearest: NV12 1280x720 @ 12.5 fps, NV12 640x480 @ 25 fps"
        ),
        "{refused}"
    );

    // A multi-planar driver: refused, saying so (the README's decision).
    assert_eq!(
        run.value("VIVID_MPLANE"),
        Some("1"),
        "vivid did not turn multi-planar\n{}",
        run.tail(30)
    );
    assert_eq!(run.value("MPLANE_RC"), Some("1"), "{}", run.tail(20));
    let mplane = run.value("MPLANE").unwrap_or("");
    assert!(
        mplane.contains("is a multi-planar capture device (V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE")
            && mplane.contains("which the agent does not support"),
        "{mplane}"
    );
    assert_eq!(run.value("MPLANE_LIST_RC"), Some("0"), "{}", run.tail(20));
    assert_eq!(
        run.value("MPLANE_LIST"),
        Some("is multi-planar capture only, which the agent does not support"),
        "{}",
        run.tail(20)
    );
}
