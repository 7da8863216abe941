//! `viewer --http` and `agent --metrics` against the real clients people
//! point at them: headless Chromium on the page, ffmpeg and ffprobe on the
//! MJPEG stream and the snapshot, promtool on both `/metrics`, and hostile
//! HTTP clients while a camera records.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use camstream_tests::bars::{self, Probe, BARS, LEVEL_75};
use camstream_tests::chromium::Chromium;
use camstream_tests::http::{
    cameras, ffmpeg_frames, ffmpeg_image, ffprobe_size, get, http_addr, metric, parse_response,
    promtool_check,
};
use camstream_tests::image::channel_distance;
use camstream_tests::{
    pattern, recorded_conn_dirs, run_ok, start_agent, start_pattern_agent, start_viewer,
    wait_until, Image, LoggedChild, PATIENCE,
};

/// A bar's colour after the agent's YUYV, the viewer's JPEG at quality 85
/// and (for the page) the browser's decode and compositing, at a bar's
/// centre: a few steps off, never a different colour.
const JPEG_TOLERANCE: u8 = 14;

/// A headless viewer with `--http` on a free port, and `extra` arguments;
/// returns it, its camera address and its HTTP address.
fn start_http_viewer(extra: &[&str]) -> (LoggedChild, SocketAddr, SocketAddr) {
    let mut args = vec![
        "--headless",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--stats-interval",
        "1",
    ];
    args.extend_from_slice(extra);
    let (viewer, addr) = start_viewer(&args);
    let http = http_addr(&viewer);
    (viewer, addr, http)
}

/// Waits until `/api/cameras` lists `ids`, each with a decoded frame.
fn wait_for_cameras(http: SocketAddr, ids: &[u8]) {
    wait_until(PATIENCE, || {
        let list = cameras(http);
        ids.iter()
            .all(|id| list.iter().any(|c| c.id == Some(*id) && c.width.is_some()))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("cameras {ids:?} never listed: {:?}", cameras(http)));
}

/// The colour bars found on one row of a screenshot: left edge, width.
/// A bar is a run of pixels near one of the eight colours; the bars are
/// eight such runs in order, of about equal width.
fn bars_on_row(shot: &Image, y: u32) -> Vec<(u32, u32)> {
    let class = |x: u32| {
        let p = shot.get(x, y)?;
        BARS.iter()
            .position(|b| channel_distance(p, b.pixel(LEVEL_75)) <= 40)
    };
    let mut runs: Vec<(Option<usize>, u32, u32)> = Vec::new();
    for x in 0..shot.width {
        let c = class(x);
        match runs.last_mut() {
            Some((last, _, len)) if *last == c => *len += 1,
            _ => runs.push((c, x, 1)),
        }
    }
    // JPEG and scaling blur each edge into a pixel or two of other colours.
    runs.retain(|&(_, _, len)| len > 3);
    let mut found = Vec::new();
    for w in runs.windows(8) {
        let in_order = w.iter().enumerate().all(|(i, &(c, _, _))| c == Some(i));
        let mean = w.iter().map(|r| r.2).sum::<u32>() / 8;
        let even = w.iter().all(|r| r.2.abs_diff(mean) <= mean / 8 + 3);
        if in_order && even {
            let left = w[0].1;
            let right = w[7].1 + w[7].2;
            found.push((left, right - left));
        }
    }
    found
}

/// Checks the bars of a `width`-pixel camera image whose bars' top-left
/// corner is at (x, y) on `shot`.
fn check_bars_at(shot: &Image, x: u32, y: u32, width: u32) -> Result<u8, String> {
    let bars_height = pattern::bars_height(width * 3 / 4);
    let crop = shot
        .crop(x as i32, y as i32, width, bars_height)
        .ok_or("the bars run off the screenshot")?;
    bars::check(
        &crop,
        &Probe {
            rows: &[bars_height / 4, bars_height / 2, bars_height * 3 / 4],
            radius: 2,
            level: LEVEL_75,
            tolerance: JPEG_TOLERANCE,
        },
    )
}

/// Headless Chromium shows both pattern cameras in the grid, with their
/// bars in the right colours, checked by pixel on a screenshot; a camera
/// that disconnects leaves the page within 2 s.
#[test]
fn browser_shows_every_camera_and_drops_one_that_leaves() {
    let (viewer, addr, http) = start_http_viewer(&[]);
    let _one = start_pattern_agent(addr, 1, "640x480", 30, &[]);
    let two = start_pattern_agent(addr, 2, "320x240", 30, &[]);
    wait_for_cameras(http, &[1, 2]);

    let mut page = Chromium::open(&format!("http://{http}/"), 1100, 700);
    let showing =
        "[...document.querySelectorAll('figure.camera img')].filter(i => i.naturalWidth > 0).length";
    wait_until(PATIENCE, || (page.eval(showing) == "2").then_some(()))
        .expect("both cameras' images show a frame");
    let dir = tempfile::tempdir().unwrap();
    let shot = page.screenshot(dir.path());

    // Each camera's bars: where they start on the screenshot, by width.
    let mut tops: Vec<(u32, u32, u32)> = Vec::new(); // (x, y, width)
    for y in 0..shot.height {
        for (x, width) in bars_on_row(&shot, y) {
            if !tops
                .iter()
                .any(|&(tx, _, tw)| tx.abs_diff(x) <= 2 && tw.abs_diff(width) <= 4)
            {
                tops.push((x, y, width));
            }
        }
    }
    let mut widths: Vec<u32> = tops.iter().map(|t| t.2).collect();
    widths.sort_unstable();
    assert!(
        widths.len() == 2 && widths[0].abs_diff(320) <= 4 && widths[1].abs_diff(640) <= 4,
        "want the bars of a 320- and a 640-pixel camera on the page, found {tops:?}"
    );
    for &(x, y, width) in &tops {
        let worst = check_bars_at(&shot, x, y, width)
            .unwrap_or_else(|e| panic!("camera of width {width} at ({x}, {y}): {e}"));
        println!("page: {width}-pixel camera's bars at ({x}, {y}), worst channel off by {worst}");
    }
    let caption = page.eval("document.body.innerText");
    assert!(
        caption.contains("camera 1 ·")
            && caption.contains("camera 2 ·")
            && caption.contains("640x480"),
        "captions: {caption}"
    );

    // Camera 2 leaves: its card goes.
    let mark = viewer.line_count();
    two.signal("KILL");
    let (gone_at, _) = viewer
        .wait_for_line_timed(mark, "disconnected", PATIENCE)
        .expect("the viewer sees camera 2 leave");
    let cards = "document.querySelectorAll('figure.camera').length";
    wait_until(PATIENCE, || (page.eval(cards) == "1").then_some(()))
        .expect("camera 2's card leaves the page");
    let took = gone_at.elapsed();
    println!(
        "page: camera 2 left the page {} ms after it disconnected",
        took.as_millis()
    );
    assert!(
        took <= Duration::from_secs(2),
        "camera 2 stayed on the page {} ms after it disconnected",
        took.as_millis()
    );
    let rest = page.eval("document.querySelector('figure.camera figcaption').textContent");
    assert!(rest.contains("camera 1 ·"), "the card left is {rest}");
}

/// ffprobe and ffmpeg read a camera's MJPEG stream and its snapshot: right
/// size, bars in the right colours, and frames in capture order (each
/// newer than the one before).
#[test]
fn ffmpeg_reads_the_stream_and_the_snapshot() {
    let (_viewer, addr, http) = start_http_viewer(&[]);
    let _agent = start_pattern_agent(addr, 3, "640x480", 30, &[]);
    wait_for_cameras(http, &[3]);
    let camera = cameras(http).remove(0);
    let stream = format!("http://{http}{}", camera.stream);
    let snapshot = format!("http://{http}{}", camera.snapshot);

    assert_eq!(ffprobe_size(&stream), (640, 480), "{stream}");
    assert_eq!(ffprobe_size(&snapshot), (640, 480), "{snapshot}");
    assert_eq!(
        ffprobe_size(&format!("http://{http}/by-id/3/stream.mjpg")),
        (640, 480)
    );

    let dir = tempfile::tempdir().unwrap();
    let frames = ffmpeg_frames(&stream, 10, dir.path());
    assert_eq!(frames.len(), 10, "ffmpeg decoded 10 frames of the stream");
    let mut last = None;
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(frame.size(), (640, 480));
        check_bars_at(frame, 0, 0, 640).unwrap_or_else(|e| panic!("stream frame {i}: {e}"));
        let n = pattern::counter(frame).expect("the frame counter lane");
        assert!(
            last.is_none_or(|l| n > l),
            "stream frame {i} is number {n}, after {last:?}: never an older frame"
        );
        last = Some(n);
    }

    // The input half of the README's MediaMTX recipe: ffmpeg copies the
    // JPEGs into another container without re-encoding them.
    let copied = dir.path().join("copy.mkv");
    run_ok(
        std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-f", "mpjpeg", "-i", &stream])
            .args(["-frames:v", "20", "-c:v", "copy", "-y"])
            .arg(&copied),
        "ffmpeg copying the stream's JPEGs into Matroska (-c:v copy)",
    );
    assert_eq!(ffprobe_size(copied.to_str().unwrap()), (640, 480));

    let r = get(http, &camera.snapshot);
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.head.contains("Content-Type: image/jpeg"), "{}", r.head);
    let path = dir.path().join("snapshot.jpg");
    std::fs::write(&path, &r.body).unwrap();
    let image = ffmpeg_image(&path);
    assert_eq!(image.size(), (640, 480));
    let worst = check_bars_at(&image, 0, 0, 640).unwrap_or_else(|e| panic!("snapshot: {e}"));
    println!("snapshot: bars within {worst} of the pattern");
}

/// The text after `what` in `line`, up to the next space, as a number.
fn number_after(line: &str, what: &str) -> u64 {
    line.split(what)
        .nth(1)
        .and_then(|rest| rest.split([' ', ',', ')']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after `{what}` in `{line}`"))
}

/// The number before `what` in `line` (`90 sent` → 90).
fn number_before(line: &str, what: &str) -> u64 {
    let head = line
        .split(what)
        .next()
        .unwrap_or_else(|| panic!("no `{what}` in `{line}`"));
    head.trim_end()
        .rsplit([' ', '('])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before `{what}` in `{line}`"))
}

/// promtool (Prometheus's own parser and linter) accepts both `/metrics`,
/// and their counters agree with the log lines: the viewer's with the
/// agent's final count and its own disconnect line, the agent's with its
/// own final totals.
#[test]
fn both_metrics_pass_promtool_and_agree_with_the_logs() {
    // The viewer: a camera that sends 90 frames and leaves.
    let (viewer, addr, http) = start_http_viewer(&[]);
    let mut agent = start_pattern_agent(addr, 4, "320x240", 30, &["--frames", "90"]);
    agent.wait_success(PATIENCE);
    let line = viewer
        .wait_for_line("disconnected after", PATIENCE)
        .expect("the viewer logs the camera leaving");
    let received = number_after(&line, "disconnected after ");
    assert_eq!(received, 90, "{line}");
    let text = get(http, "/metrics").text();
    promtool_check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let m = |name: &str| {
        metric(&text, name, "camera=\"4\"")
            .unwrap_or_else(|| panic!("no {name}{{camera=\"4\"}} in\n{text}"))
    };
    assert_eq!(m("camstream_viewer_frames_received_total"), 90.0);
    // Every frame received was decoded or replaced by a newer one, but
    // for the one or two a decoder still had when the connection closed
    // (their results are dropped with the connection).
    let accounted =
        m("camstream_viewer_frames_decoded_total") + m("camstream_viewer_frames_dropped_total");
    assert!(
        (88.0..=90.0).contains(&accounted),
        "{accounted} of 90 frames decoded or dropped"
    );
    assert_eq!(
        m("camstream_viewer_latency_seconds_count"),
        m("camstream_viewer_frames_decoded_total")
    );
    assert_eq!(
        metric(&text, "camstream_viewer_connections_accepted_total", ""),
        Some(1.0)
    );
    assert_eq!(metric(&text, "camstream_viewer_connections", ""), Some(0.0));

    // A frame that does not decode: counted by reason for its camera id.
    let mut bad = Vec::new();
    proto::wire::encode_frame(10, b"this is not an image of any kind", &mut bad).unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&bad).unwrap();
    let text = wait_until(PATIENCE, || {
        let text = get(http, "/metrics").text();
        metric(
            &text,
            "camstream_viewer_camera_decode_errors_total",
            "camera=\"10\"",
        )
        .is_some_and(|n| n == 1.0)
        .then_some(text)
    })
    .expect("camera 10's decode error is counted");
    let by_reason: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("camstream_viewer_decode_errors_total{camera=\"10\",kind="))
        .collect();
    assert_eq!(by_reason.len(), 1, "{text}");
    assert!(by_reason[0].ends_with(" 1"), "{}", by_reason[0]);
    println!("decode error: {}", by_reason[0]);
    promtool_check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    // The agent: streaming as fast as it can, then its viewer goes. Then
    // it sends nothing, and its pattern source (at --fps 0) makes a frame
    // every 100 ms that is dropped before encoding: `sent`, `dropped after
    // encoding` and `captured - dropped before` stand still, and its final
    // line must say the same numbers.
    let (mut viewer2, addr2) = start_viewer(&["--headless", "--listen", "127.0.0.1:0"]);
    let mut agent = start_agent(&[
        "--source",
        "pattern",
        "--server",
        &addr2.to_string(),
        "--id",
        "5",
        "--size",
        "320x240",
        "--fps",
        "0",
        "--metrics",
        "127.0.0.1:0",
        "--stats-interval",
        "0",
    ]);
    let line = agent
        .wait_for_line("metrics on http://", PATIENCE)
        .expect("the agent logs its --metrics address");
    let maddr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|a| a.parse().ok())
        .expect("an address");
    let counter = |text: &str, name: &str| -> u64 {
        metric(
            text,
            &format!("camstream_agent_{name}_total"),
            "camera=\"5\"",
        )
        .unwrap_or_else(|| panic!("no {name} in\n{text}")) as u64
    };
    let settled = |text: &str| -> [u64; 3] {
        [
            counter(text, "frames_sent"),
            counter(text, "frames_dropped_after_encoding"),
            counter(text, "frames_captured") - counter(text, "frames_dropped_before_encoding"),
        ]
    };
    wait_until(PATIENCE, || {
        (counter(&get(maddr, "/metrics").text(), "frames_sent") >= 20).then_some(())
    })
    .expect("the agent sends frames");
    viewer2.signal("KILL");
    viewer2.wait_exit(PATIENCE);
    let frozen = wait_until(PATIENCE, || {
        let a = get(maddr, "/metrics").text();
        thread::sleep(Duration::from_millis(500));
        let b = get(maddr, "/metrics").text();
        (settled(&a) == settled(&b)).then_some(b)
    })
    .expect("the agent's sent and encoded counts stand still without a viewer");
    promtool_check(&frozen).unwrap_or_else(|e| panic!("{e}\n{frozen}"));
    let mark = agent.line_count();
    agent.signal("TERM");
    let last = agent
        .wait_for_line_after(mark, "stopped:", PATIENCE)
        .expect("the agent's final totals");
    agent.wait_success(PATIENCE);
    let captured = number_before(&last, "frames captured");
    let before = number_before(&last, "skipped before encoding");
    assert_eq!(
        settled(&frozen),
        [number_before(&last, "sent"), number_before(&last, "after)"), captured - before],
        "/metrics said sent, dropped after encoding, captured - dropped before; the final line: {last}"
    );
    assert!(counter(&frozen, "frames_captured") <= captured, "{last}");
    assert_eq!(counter(&frozen, "connections"), 1);
    let encodes = metric(
        &frozen,
        "camstream_agent_encode_seconds_count",
        "camera=\"5\"",
    )
    .unwrap_or(0.0);
    assert!(
        encodes as u64 >= counter(&frozen, "frames_sent"),
        "{encodes} encodes"
    );
}

/// A thread reading a camera's MJPEG stream and counting its parts.
struct Watcher {
    parts: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

impl Watcher {
    fn start(http: SocketAddr, path: &str) -> Watcher {
        let mut s = TcpStream::connect(http).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let parts = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (parts, stop) = (Arc::clone(&parts), Arc::clone(&stop));
            thread::spawn(move || {
                let needle = b"--camstreamframe\r\n";
                let mut carry: Vec<u8> = Vec::new();
                let mut buf = vec![0u8; 64 << 10];
                while !stop.load(Ordering::Relaxed) {
                    match s.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            carry.extend_from_slice(&buf[..n]);
                            let found = carry.windows(needle.len()).filter(|w| w == needle).count();
                            parts.fetch_add(found as u64, Ordering::Relaxed);
                            let keep = carry.len().min(needle.len() - 1);
                            carry.drain(..carry.len() - keep);
                        }
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => return,
                    }
                }
            })
        };
        Watcher {
            parts,
            stop,
            thread,
        }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.parts.load(Ordering::Relaxed)
    }
}

/// `/metrics` proves the JPEG work: a watched camera's frames are encoded
/// once each, however many watch (three watchers get more parts than there
/// were encodes), and an unwatched camera's never. A fourth watcher that
/// never reads slows none of the others.
#[test]
fn jpeg_encodes_happen_once_per_frame_and_only_for_watched_cameras() {
    let (_viewer, addr, http) = start_http_viewer(&[]);
    let mut watched = start_pattern_agent(addr, 6, "320x240", 30, &["--frames", "150"]);
    let mut unwatched = start_pattern_agent(addr, 7, "320x240", 30, &["--frames", "150"]);
    wait_for_cameras(http, &[6, 7]);
    // A fourth watcher never reads: it must cost the others nothing.
    let stuck = TcpStream::connect(http).unwrap();
    {
        let fd = std::os::fd::AsFd::as_fd(&stuck);
        nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
    }
    (&stuck)
        .write_all(b"GET /by-id/6/stream.mjpg HTTP/1.1\r\n\r\n")
        .unwrap();
    let watchers: Vec<Watcher> = (0..3)
        .map(|_| Watcher::start(http, "/by-id/6/stream.mjpg"))
        .collect();
    watched.wait_success(PATIENCE);
    unwatched.wait_success(PATIENCE);
    // The last counts are published when a connection closes.
    wait_until(PATIENCE, || cameras(http).is_empty().then_some(())).expect("both cameras leave");
    let parts: Vec<u64> = watchers.into_iter().map(Watcher::finish).collect();
    let text = get(http, "/metrics").text();
    let m = |name: &str, camera: u8| {
        metric(&text, name, &format!("camera=\"{camera}\""))
            .unwrap_or_else(|| panic!("no {name} for {camera} in\n{text}"))
    };
    let (encodes, decoded) = (
        m("camstream_viewer_jpeg_encodes_total", 6),
        m("camstream_viewer_frames_decoded_total", 6),
    );
    println!("watched camera: {decoded} frames decoded, {encodes} JPEG encodes, parts sent to 3 watchers: {parts:?}");
    assert!(
        encodes > 0.0 && encodes <= decoded,
        "{encodes} encodes for {decoded} decoded frames"
    );
    let total: u64 = parts.iter().sum();
    // Each reading watcher got most frames, whatever the stuck one did.
    assert!(
        parts.iter().all(|&p| p as f64 > encodes / 2.0),
        "every reading watcher got most of the {encodes} frames: {parts:?}"
    );
    drop(stuck);
    assert!(
        total as f64 > encodes,
        "three watchers got {total} parts from {encodes} encodes: each encode is shared"
    );
    assert_eq!(
        m("camstream_viewer_jpeg_encodes_total", 7),
        0.0,
        "nobody watched camera 7"
    );
    assert!(m("camstream_viewer_frames_decoded_total", 7) > 0.0);
}

/// `--http` follows `--allow`: a peer outside it is closed unanswered.
#[test]
fn http_follows_allow() {
    let (viewer, _addr, http) = start_http_viewer(&["--allow", "10.9.8.0/24"]);
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = s.write_all(b"GET /api/cameras HTTP/1.1\r\n\r\n");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "answered: {}",
        String::from_utf8_lossy(&got)
    );
    viewer
        .wait_for_line("not in the --allow list", PATIENCE)
        .expect("the refusal is logged");
}

/// Raises this process's open-file limit to its hard limit (1,000 client
/// sockets at once).
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// Hostile HTTP clients while a camera records: oversized headers, a
/// malformed request, an endless header line, a request never finished, a
/// watcher that never reads, and 1,000 connections. Each is closed with a
/// log line (a few lines in all); the camera's frames keep arriving
/// throughout, its connection is never dropped, and every frame it sent is
/// recorded.
#[test]
fn hostile_http_clients_cost_the_camera_nothing() {
    raise_fd_limit();
    let record = tempfile::tempdir().unwrap();
    let (viewer, addr, http) = start_http_viewer(&["--record", record.path().to_str().unwrap()]);
    let mut agent = start_pattern_agent(addr, 8, "320x240", 30, &["--frames", "900"]);
    let recorded = || -> usize {
        recorded_conn_dirs(record.path())
            .iter()
            .map(|(_, dir)| std::fs::read_dir(dir).map_or(0, |d| d.count()))
            .sum()
    };
    let keeps_arriving = |during: &str| {
        let before = recorded();
        wait_until(PATIENCE, || (recorded() >= before + 10).then_some(()))
            .unwrap_or_else(|| panic!("the camera's frames stopped arriving during {during}"));
    };
    keeps_arriving("the start");

    // Oversized headers: 431 and a close.
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let _ = s.write_all(big.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let r = parse_response(&raw).expect("an answer to oversized headers");
    assert_eq!(r.status, 431, "{}", r.head);

    // A malformed request (a TLS hello on the HTTP port): 400 and a close.
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let r = parse_response(&raw).expect("an answer to a malformed request");
    assert_eq!(r.status, 400, "{}", r.head);
    viewer
        .wait_for_line("malformed HTTP request", PATIENCE)
        .expect("the malformed request is logged");

    // An endless header line: written until the viewer answers and closes.
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nX-Endless: ").unwrap();
    let writer = {
        let mut s = s.try_clone().unwrap();
        thread::spawn(move || {
            let chunk = [b'a'; 1024];
            let mut sent = 0usize;
            while s.write_all(&chunk).is_ok() && sent < (64 << 20) {
                sent += chunk.len();
            }
            sent
        })
    };
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let r = parse_response(&raw).expect("an answer to an endless header line");
    assert_eq!(r.status, 431, "{}", r.head);
    let sent = writer.join().unwrap();
    assert!(sent < (64 << 20), "the viewer kept reading an endless line");
    keeps_arriving("oversized headers");

    // Concurrently: a request never finished, a watcher that never reads,
    // and 1,000 connections.
    let mut unfinished = TcpStream::connect(http).unwrap();
    unfinished
        .write_all(b"GET /api/cameras HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let sleeper = TcpStream::connect(http).unwrap();
    {
        // A small receive buffer, so the viewer's send buffer fills soon.
        let fd = std::os::fd::AsFd::as_fd(&sleeper);
        nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
    }
    (&sleeper)
        .write_all(b"GET /by-id/8/stream.mjpg HTTP/1.1\r\n\r\n")
        .unwrap();
    let flood: Vec<TcpStream> = (0..1000)
        .filter_map(|_| TcpStream::connect_timeout(&http, Duration::from_secs(10)).ok())
        .collect();
    println!("flood: {} of 1000 connections made", flood.len());
    assert!(flood.len() >= 900, "only {} connections", flood.len());
    keeps_arriving("1,000 connections");
    drop(flood);

    unfinished.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut rest = Vec::new();
    let _ = unfinished.read_to_end(&mut rest);
    assert!(rest.is_empty(), "the unfinished request got an answer");
    viewer
        .wait_for_line("no complete request within", PATIENCE)
        .expect("the unfinished request's close is logged");
    viewer
        .wait_for_line("closed a watcher that stopped reading", PATIENCE)
        .expect("the watcher that never reads is closed");
    drop(sleeper);
    keeps_arriving("the slow clients");

    // The viewer still serves, and said it all in a few lines.
    assert_eq!(get(http, "/api/cameras").status, 200);
    let text = get(http, "/metrics").text();
    assert!(
        metric(
            &text,
            "camstream_viewer_http_connections_refused_total",
            "reason=\"max_clients\""
        )
        .is_some_and(|n| n > 0.0),
        "{text}"
    );
    assert!(
        metric(&text, "camstream_viewer_http_bad_requests_total", "").is_some_and(|n| n >= 2.0)
    );
    let lines = viewer
        .lines()
        .iter()
        .filter(|l| l.contains("http: "))
        .count();
    assert!(
        lines < 40,
        "{lines} log lines about HTTP clients:\n{}",
        viewer.tail(60)
    );

    // The camera never noticed: one connection, and every frame it sent
    // was recorded.
    agent.wait_success(PATIENCE);
    let last = agent
        .lines()
        .into_iter()
        .find(|l| l.contains("stopped:"))
        .expect("the agent's final line");
    let sent = number_before(&last, "sent");
    wait_until(PATIENCE, || (recorded() as u64 >= sent).then_some(()))
        .unwrap_or_else(|| panic!("{} of {sent} frames recorded", recorded()));
    assert_eq!(
        recorded_conn_dirs(record.path()).len(),
        1,
        "the camera's connection was never dropped"
    );
    let _ = Instant::now();
}

/// JPEG bodies reach the watchers untouched: the snapshot and a stream
/// part are byte for byte the JPEG the camera sent, and nothing is encoded.
#[test]
fn jpeg_bodies_are_passed_through_untouched() {
    let (_viewer, addr, http) = start_http_viewer(&[]);
    let (width, height) = (320, 240);
    let mut jpeg = Vec::new();
    proto::jpeg::Encoder::new(90)
        .unwrap()
        .encode_bgr(&bars::bgr_image(width, height, 0), width, height, &mut jpeg)
        .unwrap();
    let mut frame = Vec::new();
    proto::wire::encode_frame(9, &jpeg, &mut frame).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let camera = {
        let (stop, frame) = (Arc::clone(&stop), frame.clone());
        let mut s = TcpStream::connect(addr).unwrap();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) && s.write_all(&frame).is_ok() {
                thread::sleep(Duration::from_millis(33));
            }
        })
    };
    wait_for_cameras(http, &[9]);
    // Known from the first frame decoded after the camera was listed.
    let listed = wait_until(PATIENCE, || {
        cameras(http).pop().filter(|c| c.encoding.is_some())
    })
    .expect("the camera's encoding is listed");
    assert_eq!(listed.encoding.as_deref(), Some("jpeg"), "{}", listed.raw);

    let snapshot = get(http, "/by-id/9/snapshot.jpg");
    assert_eq!(snapshot.status, 200, "{}", snapshot.head);
    assert!(
        snapshot.body == jpeg,
        "the snapshot differs from the JPEG sent"
    );

    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(s, "GET {} HTTP/1.1\r\n\r\n", listed.stream).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let part_head = format!("Content-Length: {}\r\n\r\n", jpeg.len());
    let part = loop {
        let n = s.read(&mut buf).expect("read the stream");
        assert!(n > 0, "the stream ended");
        raw.extend_from_slice(&buf[..n]);
        let head = raw
            .windows(part_head.len())
            .position(|w| w == part_head.as_bytes());
        if let Some(at) = head {
            let start = at + part_head.len();
            if raw.len() >= start + jpeg.len() {
                break raw[start..start + jpeg.len()].to_vec();
            }
        }
    };
    assert!(part == jpeg, "the stream's part differs from the JPEG sent");
    drop(s);

    let text = get(http, "/metrics").text();
    assert!(
        metric(
            &text,
            "camstream_viewer_jpeg_passthrough_total",
            "camera=\"9\""
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "camstream_viewer_jpeg_encodes_total", "camera=\"9\""),
        Some(0.0)
    );
    stop.store(true, Ordering::Relaxed);
    let _ = camera.join();
}
