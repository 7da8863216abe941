//! Interop with an independent implementation: Python/OpenCV peers written
//! from the original design (`tests/interop/`), against our viewer and agent.
//!
//! - Python client → `viewer --headless --record`: OpenCV's BMP arrives byte
//!   for byte and decodes to exactly the pixels sent, colour and grayscale
//!   (8-bit paletted), with widths that pad BMP rows.
//! - `agent --source file:` → Python server: OpenCV decodes every frame, and
//!   each is within 1 of OpenCV's own `COLOR_YUV2BGR_YUYV` of the same YUYV.
//! - JPEG bodies (issue 13): the Python client's `cv2.imencode('.jpg')`
//!   bodies are recorded byte for byte as `.jpg`; `agent --encoding jpeg`
//!   decodes in `cv2.imdecode` within 35 dB PSNR of `cv2.cvtColor` at
//!   quality 85 (figure printed).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use camstream_tests::{
    bin_path, interop_script, read_npy_u8, recorded_conn_dirs, recorded_counts, recorded_frames,
    testdata_frame, venv_python, wait_until, Image, LoggedChild, RecordingViewer,
};

/// Frames each Python client sends.
const CLIENT_FRAMES: usize = 3;

/// Sends `CLIENT_FRAMES` frames of the noisy coffee photo, cropped to `crop`,
/// from the Python client as camera `id`; it saves what it sent in `out`
/// (`sent.bmp` and `sent.raw`).
fn run_python_client(server: std::net::SocketAddr, id: u8, crop: &str, gray: bool, out: &Path) {
    let frame = testdata_frame("coffee_640x480_noise.bgr");
    let mut cmd = Command::new(venv_python());
    cmd.arg(interop_script("client.py"))
        .args(["--server", &server.to_string(), "--id", &id.to_string()])
        .arg("--image")
        .arg(&frame)
        .args(["--size", "640x480", "--crop", crop])
        .args(["--count", &CLIENT_FRAMES.to_string()])
        .arg("--save-sent")
        .arg(out);
    if gray {
        cmd.arg("--gray");
    }
    LoggedChild::spawn(&format!("python client {id}"), cmd).wait_success(Duration::from_secs(120));
}

#[test]
fn python_client_to_viewer_is_lossless() {
    let sent = tempfile::tempdir().expect("temp dir");
    let mut viewer = RecordingViewer::start(&[]);
    let record = viewer.record_dir().to_path_buf();

    // Odd sizes: 637*3 and 638 bytes per row both need padding to 4 in a BMP.
    let cases = [(21u8, "637x479", false), (22u8, "638x477", true)];
    for &(id, crop, gray) in &cases {
        run_python_client(
            viewer.addr,
            id,
            crop,
            gray,
            &sent.path().join(format!("sent{id}")),
        );
    }

    let all_recorded = wait_until(Duration::from_secs(60), || {
        let counts = recorded_counts(&record);
        cases
            .iter()
            .all(|(id, _, _)| counts.get(id) == Some(&CLIENT_FRAMES))
            .then_some(())
    });
    assert!(
        all_recorded.is_some(),
        "viewer recorded {:?}, expected {CLIENT_FRAMES} frames for each of cameras 21 and 22",
        recorded_counts(&record)
    );

    for &(id, crop, gray) in &cases {
        let sent_dir = sent.path().join(format!("sent{id}"));
        let sent_bmp = std::fs::read(sent_dir.join("sent.bmp")).expect("sent.bmp");
        let sent_raw = std::fs::read(sent_dir.join("sent.raw")).expect("sent.raw");
        let (width, height) = crop.split_once('x').expect("WxH");
        let (width, height): (u32, u32) = (width.parse().unwrap(), height.parse().unwrap());
        let channels = if gray { 1 } else { 3 };
        assert_eq!(sent_raw.len(), (width * height) as usize * channels);
        if gray {
            // What OpenCV writes for one channel: 8 bits per pixel, a palette.
            assert_eq!(u16::from_le_bytes([sent_bmp[28], sent_bmp[29]]), 8);
        }
        let expected: Vec<u32> = sent_raw
            .chunks_exact(channels)
            .map(|px| match *px {
                [g] => u32::from(g) * 0x010101,
                [b, g, r] => u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b),
                _ => unreachable!("chunks of 1 or 3"),
            })
            .collect();

        let dirs: Vec<_> = recorded_conn_dirs(&record)
            .into_iter()
            .filter(|(cam, _)| *cam == id)
            .collect();
        assert_eq!(dirs.len(), 1, "one connection for camera {id}: {dirs:?}");
        let frames = recorded_frames(&dirs[0].1);
        assert_eq!(frames.len(), CLIENT_FRAMES);
        for path in frames {
            let bmp = std::fs::read(&path).expect("recorded frame");
            assert!(
                bmp == sent_bmp,
                "{}: {} bytes recorded differ from the {} bytes OpenCV encoded",
                path.display(),
                bmp.len(),
                sent_bmp.len()
            );
            let image = Image::read_bmp(&path);
            assert_eq!(image.size(), (width, height), "{}", path.display());
            let wrong = (image.pixels.iter().zip(&expected))
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(
                wrong,
                0,
                "{}: {wrong} pixels differ from those sent",
                path.display()
            );
        }
        let kind = if gray {
            "gray, 8-bit paletted"
        } else {
            "colour, 24-bit"
        };
        println!("camera {id}: {CLIENT_FRAMES} frames {crop} {kind}: recorded BMP identical, pixels exact");
    }

    assert!(
        viewer.child.try_status().is_none(),
        "viewer exited:\n{}",
        viewer.child.tail(20)
    );
    viewer.child.signal("INT");
    viewer.child.wait_success(Duration::from_secs(30));
}

#[test]
fn agent_to_python_server_matches_opencv() {
    const FRAMES: usize = 10;
    let tmp = tempfile::tempdir().expect("temp dir");
    let yuyv = testdata_frame("coffee_640x480_noise.yuyv");
    let reference = tmp.path().join("reference.npy");
    let status = Command::new(venv_python())
        .arg(interop_script("reference.py"))
        .arg(&yuyv)
        .arg("640x480")
        .arg(&reference)
        .status()
        .expect("run reference.py");
    assert!(status.success(), "reference.py failed");
    let (ref_shape, ref_bgr) = read_npy_u8(&reference).expect("reference .npy");
    assert_eq!(ref_shape, [480, 640, 3]);

    let out = tmp.path().join("decoded");
    let mut server_cmd = Command::new(venv_python());
    server_cmd
        .arg(interop_script("server.py"))
        .args(["--listen", "127.0.0.1:0", "--frames", &FRAMES.to_string()])
        .arg("--out")
        .arg(&out)
        .args(["--timeout", "240"]);
    let mut server = LoggedChild::spawn("python server", server_cmd);
    let line = server
        .wait_for_line("listening on ", Duration::from_secs(60))
        .expect("Python server listens");
    let addr = line.trim_start_matches("listening on ").trim().to_string();

    let mut agent_cmd = Command::new(bin_path("agent"));
    agent_cmd
        .arg("--source")
        .arg(format!("file:{}", yuyv.display()))
        .args(["--size", "640x480", "--fps", "10", "--id", "9"])
        .args(["--server", &addr, "--frames", &FRAMES.to_string()]);
    let mut agent = LoggedChild::spawn("agent", agent_cmd);

    // The server exits once it has its frames; the agent after --frames.
    server.wait_success(Duration::from_secs(300));
    agent.wait_success(Duration::from_secs(60));

    let mut worst = 0u8;
    let mut off_by_one = 0usize;
    for seq in 0..FRAMES {
        let path = out.join(format!("cam9_{seq:06}.npy"));
        let (shape, bgr) = read_npy_u8(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(shape, [480, 640, 3], "{}", path.display());
        for (a, b) in bgr.iter().zip(&ref_bgr) {
            let d = a.abs_diff(*b);
            worst = worst.max(d);
            off_by_one += usize::from(d == 1);
        }
        assert!(
            worst <= 1,
            "{}: a channel differs from OpenCV's by {worst}",
            path.display()
        );
    }
    println!(
        "{FRAMES} frames from our agent decoded by OpenCV; max difference from cv2.cvtColor(COLOR_YUV2BGR_YUYV) {worst}, {off_by_one} of {} channel values off by one",
        FRAMES * ref_bgr.len()
    );
}

#[test]
fn python_client_jpeg_bodies_are_recorded_byte_for_byte() {
    let sent = tempfile::tempdir().expect("temp dir");
    let mut viewer = RecordingViewer::start(&[]);
    let record = viewer.record_dir().to_path_buf();
    let frame = testdata_frame("coffee_640x480_noise.bgr");
    // An odd colour size (partial MCUs) and a grey (one-component) JPEG.
    let cases = [(31u8, "637x479", false), (32u8, "640x480", true)];
    for &(id, crop, gray) in &cases {
        let mut cmd = Command::new(venv_python());
        cmd.arg(interop_script("client.py"))
            .args([
                "--server",
                &viewer.addr.to_string(),
                "--id",
                &id.to_string(),
            ])
            .arg("--image")
            .arg(&frame)
            .args(["--size", "640x480", "--crop", crop, "--jpeg", "90"])
            .args(["--count", &CLIENT_FRAMES.to_string()])
            .arg("--save-sent")
            .arg(sent.path().join(format!("sent{id}")));
        if gray {
            cmd.arg("--gray");
        }
        LoggedChild::spawn(&format!("python JPEG client {id}"), cmd)
            .wait_success(Duration::from_secs(120));
    }
    let all_recorded = wait_until(Duration::from_secs(60), || {
        let counts = recorded_counts(&record);
        cases
            .iter()
            .all(|(id, _, _)| counts.get(id) == Some(&CLIENT_FRAMES))
            .then_some(())
    });
    assert!(
        all_recorded.is_some(),
        "viewer recorded {:?}, expected {CLIENT_FRAMES} JPEG frames for each of cameras 31 and 32\n{}",
        recorded_counts(&record),
        viewer.child.tail(20)
    );
    for &(id, crop, _) in &cases {
        let dirs: Vec<_> = recorded_conn_dirs(&record)
            .into_iter()
            .filter(|(cam, _)| *cam == id)
            .collect();
        assert_eq!(dirs.len(), 1, "one connection for camera {id}: {dirs:?}");
        let frames = recorded_frames(&dirs[0].1);
        assert_eq!(frames.len(), CLIENT_FRAMES);
        for (i, path) in frames.iter().enumerate() {
            assert_eq!(path.extension().and_then(|e| e.to_str()), Some("jpg"));
            let want = std::fs::read(sent.path().join(format!("sent{id}/sent_{i}.jpg")))
                .expect("sent JPEG");
            let got = std::fs::read(path).expect("recorded frame");
            assert!(
                got == want,
                "{}: {} bytes recorded differ from the {} bytes OpenCV encoded",
                path.display(),
                got.len(),
                want.len()
            );
        }
        println!("camera {id}: {CLIENT_FRAMES} OpenCV JPEGs {crop} recorded byte for byte");
    }
    assert!(
        viewer.child.try_status().is_none(),
        "viewer exited:\n{}",
        viewer.child.tail(20)
    );
    viewer.child.signal("INT");
    viewer.child.wait_success(Duration::from_secs(30));
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

#[test]
fn agent_jpeg_decodes_in_opencv_within_35_db_at_quality_85() {
    const FRAMES: usize = 5;
    for (name, size) in [
        ("coffee_640x480_noise", "640x480"),
        ("coffee_640x480", "640x480"),
        ("astronaut_1280x720_noise", "1280x720"),
    ] {
        let tmp = tempfile::tempdir().expect("temp dir");
        let yuyv = testdata_frame(&format!("{name}.yuyv"));
        let reference = tmp.path().join("reference.npy");
        let status = Command::new(venv_python())
            .arg(interop_script("reference.py"))
            .arg(&yuyv)
            .arg(size)
            .arg(&reference)
            .status()
            .expect("run reference.py");
        assert!(status.success(), "reference.py failed");
        let (ref_shape, ref_bgr) = read_npy_u8(&reference).expect("reference .npy");

        let out = tmp.path().join("decoded");
        let mut server_cmd = Command::new(venv_python());
        server_cmd
            .arg(interop_script("server.py"))
            .args(["--listen", "127.0.0.1:0", "--jpeg"])
            .args(["--frames", &FRAMES.to_string()])
            .arg("--out")
            .arg(&out)
            .args(["--timeout", "240"]);
        let mut server = LoggedChild::spawn("python server --jpeg", server_cmd);
        let line = server
            .wait_for_line("listening on ", Duration::from_secs(60))
            .expect("Python server listens");
        let addr = line.trim_start_matches("listening on ").trim().to_string();
        let mut agent_cmd = Command::new(bin_path("agent"));
        agent_cmd
            .arg("--source")
            .arg(format!("file:{}", yuyv.display()))
            .args(["--size", size, "--fps", "10", "--id", "9"])
            .args(["--encoding", "jpeg", "--quality", "85"])
            .args(["--server", &addr, "--frames", &FRAMES.to_string()]);
        let mut agent = LoggedChild::spawn("agent --encoding jpeg", agent_cmd);
        server.wait_success(Duration::from_secs(300));
        agent.wait_success(Duration::from_secs(60));

        let mut worst = f64::INFINITY;
        for seq in 0..FRAMES {
            let path = out.join(format!("cam9_{seq:06}.npy"));
            let (shape, bgr) = read_npy_u8(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(shape, ref_shape, "{}", path.display());
            worst = worst.min(psnr(&bgr, &ref_bgr));
        }
        println!(
            "{name}: {FRAMES} frames of agent --encoding jpeg --quality 85 decoded by cv2.imdecode: \
             PSNR {worst:.1} dB against cv2.cvtColor(COLOR_YUV2BGR_YUYV) (worst frame)"
        );
        assert!(worst >= 35.0, "{name}: PSNR {worst:.1} dB < 35 dB");
    }
}
