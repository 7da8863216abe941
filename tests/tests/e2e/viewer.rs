//! The real `viewer --headless --record` over loopback, fed by clients built
//! here with proto (so these tests do not depend on the agent), and by
//! pattern agents.
//!
//! Every hostile input is sent while a good client streams: the good
//! client's recorded files must keep increasing during and after the attack,
//! its connection must survive, and the viewer must log the attacker's peer
//! address, camera id and the reason. No test asserts on wall-clock time;
//! waits are bounded only so a broken viewer fails instead of hanging.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use camstream_tests::bars::{self, Probe, LEVEL_75};
use camstream_tests::{
    bin_path, recorded_conn_dirs, recorded_counts, recorded_frames, start_pattern_agent,
    start_viewer, testdata_frame, wait_until, Image, LoggedChild, RecordingViewer, PATIENCE,
};
use proto::{bmp, gzip, wire};

/// Camera id of the good client in the attack tests.
const GOOD_ID: u8 = 1;

// ---------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------

fn bmp_of(bgr: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut file = Vec::new();
    bmp::encode_bgr24(bgr, width, height, &mut file).expect("encode test BMP");
    file
}

fn gzip_of(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    gzip::Compressor::new(1)
        .expect("gzip level 1")
        .compress_append(data, &mut out);
    out
}

/// One wire frame: header and `body` as given (any bytes at all).
fn frame_of(camera_id: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode_frame(camera_id, body, &mut out).expect("encode test frame");
    out
}

/// Only a header: camera id and a body length, with no body.
fn header_of(camera_id: u8, body_len: u32) -> Vec<u8> {
    let mut out = vec![camera_id];
    out.extend_from_slice(&body_len.to_be_bytes());
    out
}

/// A wire frame carrying `bmp` (any bytes), gzipped as a sender would.
fn bmp_frame(camera_id: u8, bmp: &[u8]) -> Vec<u8> {
    frame_of(camera_id, &gzip_of(bmp))
}

/// A valid BMP of the bars, rotated by `shift` (see [`bars::bgr_image`]).
fn bars_bmp(width: u32, height: u32, shift: usize) -> Vec<u8> {
    bmp_of(&bars::bgr_image(width, height, shift), width, height)
}

/// A valid frame of bars, rotated by `shift`.
fn bars_frame(camera_id: u8, width: u32, height: u32, shift: usize) -> Vec<u8> {
    bmp_frame(camera_id, &bars_bmp(width, height, shift))
}

/// Deterministic noise (xorshift64*), so a failure can be replayed.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------------------
// Clients: a good camera, and how an attacker is refused
// ---------------------------------------------------------------------------

/// A client that streams small valid frames until stopped, like a camera.
struct GoodClient {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    local: SocketAddr,
    handle: JoinHandle<std::io::Result<()>>,
}

impl GoodClient {
    fn start(addr: SocketAddr, camera_id: u8) -> GoodClient {
        let mut stream = TcpStream::connect(addr).expect("good client connects");
        let local = stream.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2) = (Arc::clone(&stop), Arc::clone(&sent));
        let frames: Vec<Vec<u8>> = (0..8).map(|s| bars_frame(camera_id, 64, 48, s)).collect();
        let handle = thread::spawn(move || {
            let mut i = 0;
            while !stop2.load(Ordering::Relaxed) {
                stream.write_all(&frames[i % frames.len()])?;
                sent2.fetch_add(1, Ordering::Relaxed);
                i += 1;
                thread::sleep(Duration::from_millis(10));
            }
            stream.shutdown(Shutdown::Write)
        });
        GoodClient {
            stop,
            sent,
            local,
            handle,
        }
    }

    /// Stops streaming; panics if the viewer ever refused a write.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let result = self.handle.join().expect("good client thread");
        result.expect("the good client's connection must survive the attack");
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops streaming when the viewer is gone; the write error is expected.
    fn finish_after_viewer_exit(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
        self.sent.load(Ordering::Relaxed)
    }
}

/// Sets SO_LINGER to 0, so closing the socket sends RST (ECONNRESET at the
/// viewer) instead of FIN.
fn set_linger_zero(stream: &TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt::Linger};
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(stream, Linger, &linger).expect("set SO_LINGER 0");
}

/// True once the viewer has closed `stream` (EOF or reset), waiting at most
/// `PATIENCE`.
fn closed_by_viewer(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("set read timeout");
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // the viewer never sends anything, but be lenient
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true, // ECONNRESET: closed with data unread
        }
    }
}

/// Runs `attack` against a viewer while a good client streams, and checks
/// that the good client is unharmed: its frames are recorded before, during
/// (the attack may check that itself) and after the attack, and its
/// connection is never dropped. `attack` returns what the viewer must log
/// about each attacker.
fn under_attack(extra: &[&str], attack: impl FnOnce(&RecordingViewer) -> Vec<Refusal>) {
    let viewer = RecordingViewer::start(extra);
    let good = GoodClient::start(viewer.addr, GOOD_ID);
    let before = viewer.wait_recorded(GOOD_ID, 3);
    let mark = viewer.child.line_count();

    let expected = attack(&viewer);

    for Refusal { peer, needles } in &expected {
        let peer = peer.to_string();
        let mut all: Vec<&str> = vec![&peer];
        all.extend(needles.iter().map(String::as_str));
        viewer.expect_line(mark, &all);
    }
    // After: still arriving.
    let after_attack = viewer.recorded(GOOD_ID);
    assert!(after_attack >= before);
    viewer.wait_recorded(GOOD_ID, after_attack + 5);

    let good_peer = format!("camera {GOOD_ID} ({})", good.local);
    let sent = good.finish();
    // The good client's own orderly close is the only way it may end.
    viewer.expect_line(mark, &[&good_peer, "disconnected after"]);
    let ends: Vec<String> = viewer
        .lines_after(0)
        .into_iter()
        .filter(|l| l.contains(&good_peer) && (l.contains("dropped") || l.contains("disconnected")))
        .collect();
    assert_eq!(ends.len(), 1, "good client was dropped: {ends:?}");
    assert!(
        !ends[0].contains("dropped"),
        "good client was dropped: {ends:?}"
    );
    let dirs = recorded_conn_dirs(viewer.record_dir());
    let good_dirs: Vec<_> = dirs.iter().filter(|(id, _)| *id == GOOD_ID).collect();
    assert_eq!(good_dirs.len(), 1, "one connection, one folder: {dirs:?}");
    // Every frame the good client sent is on disk (it closed cleanly).
    let recorded = viewer.wait_recorded(GOOD_ID, sent as usize);
    assert_eq!(
        recorded as u64, sent,
        "recorded {recorded} of {sent} good frames"
    );
}

/// Connects, sends `bytes`, and expects the viewer to close the connection.
fn send_and_expect_close(viewer: &RecordingViewer, bytes: &[u8]) -> SocketAddr {
    let mut stream = TcpStream::connect(viewer.addr).expect("attacker connects");
    let local = stream.local_addr().expect("local addr");
    // The viewer may close before everything is written; that is fine.
    let _ = stream.write_all(bytes);
    assert!(
        closed_by_viewer(&mut stream),
        "viewer kept the connection from {local} open\n{}",
        viewer.child.tail(20)
    );
    local
}

/// What the viewer must log about one attacker it closed: a line naming the
/// attacker's `peer` address and holding every one of `needles`.
struct Refusal {
    peer: SocketAddr,
    needles: Vec<String>,
}

impl Refusal {
    fn new(peer: SocketAddr, needles: &[&str]) -> Refusal {
        let needles = needles.iter().map(|s| s.to_string()).collect();
        Refusal { peer, needles }
    }
}

/// Sends `bytes` from a new connection, expects the viewer to close it, and
/// to log why with every one of `needles`.
fn refused(viewer: &RecordingViewer, bytes: &[u8], needles: &[&str]) -> Refusal {
    Refusal::new(send_and_expect_close(viewer, bytes), needles)
}

// ---------------------------------------------------------------------------
// Good input
// ---------------------------------------------------------------------------

#[test]
fn recorded_frames_are_the_sent_bmps_and_decode_to_the_bars() {
    let viewer = RecordingViewer::start(&[]);
    // Small frames of rotating bars, then the 640x480 bars frame from testdata
    // (0.9 MB: many reads per frame).
    let (w, h) = (64, 48);
    let mut sent_bmps: Vec<Vec<u8>> = (0..7).map(|s| bars_bmp(w, h, s)).collect();
    let bars75 = std::fs::read(testdata_frame("bars75_640x480.bgr"))
        .expect("testdata/frames/bars75_640x480.bgr");
    sent_bmps.push(bmp_of(&bars75, 640, 480));

    let mut stream = TcpStream::connect(viewer.addr).unwrap();
    let local = stream.local_addr().unwrap();
    for file in &sent_bmps {
        stream.write_all(&bmp_frame(7, file)).unwrap();
    }
    viewer.wait_recorded(7, sent_bmps.len());
    drop(stream);
    viewer.expect_line(
        0,
        &[&format!("camera 7 ({local}) disconnected after 8 frames")],
    );

    let dirs = recorded_conn_dirs(viewer.record_dir());
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let (id, dir) = &dirs[0];
    assert_eq!(*id, 7);
    assert_eq!(
        dir.file_name().unwrap().to_string_lossy(),
        format!("cam7-127.0.0.1-{}", local.port())
    );
    let files = recorded_frames(dir);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let expected: Vec<String> = (0..8).map(|i| format!("{i:06}.bmp")).collect();
    assert_eq!(names, expected);

    for (i, (file, sent)) in files.iter().zip(&sent_bmps).enumerate() {
        let got = std::fs::read(file).unwrap();
        assert!(
            got == *sent,
            "frame {i}: recorded BMP differs from the one sent"
        );
    }
    // Decode the recordings independently of what was sent: bar colours.
    for (i, file) in files.iter().enumerate().take(7) {
        let image = Image::read_bmp(file);
        assert_eq!(image.size(), (w, h));
        for bar in 0..8 {
            let x = bar as u32 * w / 8 + 2;
            for y in [0, h / 2, h - 1] {
                let want = bars::BARS[(bar + i) % 8].pixel(LEVEL_75);
                assert_eq!(image.get(x, y), Some(want), "frame {i} bar {bar} row {y}");
            }
        }
    }
    let big = Image::read_bmp(&files[7]);
    assert_eq!(big.size(), (640, 480));
    let exact = Probe {
        rows: &[240],
        radius: 0,
        level: LEVEL_75,
        tolerance: 0,
    };
    assert_eq!(bars::check(&big, &exact), Ok(0), "bars75_640x480");
}

#[test]
fn eight_concurrent_clients_are_all_recorded() {
    let viewer = RecordingViewer::start(&[]);
    let frames_each = 25;
    let clients: Vec<JoinHandle<SocketAddr>> = (1..=8u8)
        .map(|id| {
            let addr = viewer.addr;
            thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                let local = stream.local_addr().unwrap();
                for s in 0..frames_each {
                    // Different sizes per camera: the decoders must not mix them up.
                    let (w, h) = (32 + 8 * u32::from(id), 24 + 4 * u32::from(id));
                    stream.write_all(&bars_frame(id, w, h, s)).unwrap();
                    thread::sleep(Duration::from_millis(5));
                }
                local
            })
        })
        .collect();
    let locals: Vec<SocketAddr> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    for (i, local) in locals.iter().enumerate() {
        let id = i as u8 + 1;
        viewer.wait_recorded(id, frames_each);
        viewer.expect_line(
            0,
            &[&format!(
                "camera {id} ({local}) disconnected after {frames_each} frames"
            )],
        );
    }
    let counts = recorded_counts(viewer.record_dir());
    for id in 1..=8u8 {
        assert_eq!(counts.get(&id), Some(&frames_each), "{counts:?}");
        let dirs = recorded_conn_dirs(viewer.record_dir());
        let (_, dir) = dirs.iter().find(|(d, _)| *d == id).unwrap();
        let last = Image::read_bmp(&recorded_frames(dir).pop().unwrap());
        assert_eq!(
            last.size(),
            (32 + 8 * u32::from(id), 24 + 4 * u32::from(id))
        );
    }
}

#[test]
fn clients_past_max_clients_are_refused_at_once() {
    let viewer = RecordingViewer::start(&["--max-clients", "2"]);
    let mut first = TcpStream::connect(viewer.addr).unwrap();
    let mut second = TcpStream::connect(viewer.addr).unwrap();
    // Both admitted: each one's frame is recorded (the `connection from`
    // line waits for a camera's first header).
    first.write_all(&bars_frame(1, 16, 8, 0)).unwrap();
    second.write_all(&bars_frame(2, 16, 8, 0)).unwrap();
    viewer.wait_recorded(1, 1);
    viewer.wait_recorded(2, 1);
    viewer.expect_line(0, &["(camera 2, ", " of at most 2 clients)"]);

    let mut third = TcpStream::connect(viewer.addr).unwrap();
    let third_local = third.local_addr().unwrap();
    assert!(closed_by_viewer(&mut third), "third client was not refused");
    viewer.expect_line(
        0,
        &[
            &format!("refused {third_local}"),
            "already serving 2 clients (--max-clients 2)",
        ],
    );

    // The two admitted clients still work.
    first.write_all(&bars_frame(1, 16, 8, 1)).unwrap();
    second.write_all(&bars_frame(2, 16, 8, 1)).unwrap();
    viewer.wait_recorded(1, 2);
    viewer.wait_recorded(2, 2);

    // A slot freed is a slot available again.
    drop(first);
    viewer.expect_line(0, &["camera 1 (", "disconnected after 2 frames"]);
    let mut fourth = TcpStream::connect(viewer.addr).unwrap();
    fourth.write_all(&bars_frame(4, 16, 8, 0)).unwrap();
    viewer.wait_recorded(4, 1);
}

#[test]
fn allow_list_refuses_other_sources() {
    let refusing = RecordingViewer::start(&["--allow", "10.0.0.0/8", "--allow", "fd00::/8"]);
    let mut stream = TcpStream::connect(refusing.addr).unwrap();
    let local = stream.local_addr().unwrap();
    assert!(closed_by_viewer(&mut stream));
    refusing.expect_line(0, &[&format!("refused {local}: not in the --allow list")]);

    let admitting = RecordingViewer::start(&["--allow", "10.0.0.0/8", "--allow", "127.0.0.0/8"]);
    let mut stream = TcpStream::connect(admitting.addr).unwrap();
    stream.write_all(&bars_frame(3, 16, 8, 0)).unwrap();
    admitting.wait_recorded(3, 1);
}

#[test]
fn listens_on_ipv6_loopback() {
    // IPv6 listening is a promised feature: a machine without [::1] fails
    // this test rather than silently skipping it.
    let dir = tempfile::tempdir().unwrap();
    let (_viewer, addr) = start_viewer(&[
        "--headless",
        "--listen",
        "[::1]:0",
        "--record",
        dir.path().to_str().unwrap(),
        "--allow",
        "::1",
    ]);
    assert!(addr.is_ipv6(), "{addr}");
    let mut stream = TcpStream::connect(addr).unwrap();
    let local = stream.local_addr().unwrap();
    stream.write_all(&bars_frame(6, 16, 8, 0)).unwrap();
    let counts = wait_until(PATIENCE, || {
        let c = recorded_counts(dir.path());
        (c.get(&6) == Some(&1)).then_some(c)
    });
    assert!(counts.is_some(), "IPv6 frame not recorded");
    let dirs = recorded_conn_dirs(dir.path());
    assert_eq!(
        dirs[0].1.file_name().unwrap().to_string_lossy(),
        format!("cam6-::1-{}", local.port())
    );
}

#[test]
fn client_that_disconnects_mid_frame_is_closed_and_can_come_back() {
    let viewer = RecordingViewer::start(&[]);
    let mut stream = TcpStream::connect(viewer.addr).unwrap();
    let local = stream.local_addr().unwrap();
    for s in 0..3 {
        stream.write_all(&bars_frame(5, 32, 16, s)).unwrap();
    }
    let fourth = bars_frame(5, 32, 16, 3);
    let cut = fourth.len() / 2;
    stream.write_all(&fourth[..cut]).unwrap();
    drop(stream);
    viewer.expect_line(
        0,
        &[
            &format!("camera 5 ({local}) dropped after 3 frames"),
            &format!("connection closed in the middle of a frame ({cut} bytes of it received)"),
        ],
    );
    assert_eq!(viewer.wait_recorded(5, 3), 3);

    // The camera reconnects: a new connection, a new folder.
    let mut again = TcpStream::connect(viewer.addr).unwrap();
    for s in 0..2 {
        again.write_all(&bars_frame(5, 32, 16, s)).unwrap();
    }
    drop(again);
    viewer.wait_recorded(5, 5);
    let dirs = recorded_conn_dirs(viewer.record_dir());
    assert_eq!(dirs.len(), 2, "{dirs:?}");
}

#[test]
fn sigint_and_sigterm_exit_0_with_recordings_flushed() {
    for signal in ["INT", "TERM"] {
        let mut viewer = RecordingViewer::start(&[]);
        let good = GoodClient::start(viewer.addr, GOOD_ID);
        viewer.wait_recorded(GOOD_ID, 5);
        let mark = viewer.child.line_count();
        viewer.child.signal(signal);
        let status = viewer.child.wait_exit(PATIENCE);
        assert!(
            status.is_some_and(|s| s.success()),
            "SIG{signal}: viewer exit {status:?}\n{}",
            viewer.child.tail(20)
        );
        viewer.expect_line(mark, &["shutting down on a signal"]);
        // Once it is gone, the client sees its connection closed.
        let _ = good.finish_after_viewer_exit();
        // Every file is complete: no partial files, each one decodes.
        let dirs = recorded_conn_dirs(viewer.record_dir());
        let (_, dir) = &dirs[0];
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(
                path.extension().and_then(|e| e.to_str()),
                Some("bmp"),
                "leftover {}",
                path.display()
            );
            Image::read_bmp(&path);
        }
    }
}

#[test]
fn without_a_display_the_error_says_set_display_or_headless() {
    for display in [None, Some(":97")] {
        let mut cmd = std::process::Command::new(bin_path("viewer"));
        cmd.args(["--listen", "127.0.0.1:0"]);
        match display {
            None => cmd.env_remove("DISPLAY"),
            Some(d) => cmd.env("DISPLAY", d),
        };
        let mut child = LoggedChild::spawn("viewer", cmd);
        let status = child.wait_exit(PATIENCE).expect("viewer exits");
        assert!(!status.success(), "DISPLAY={display:?}: exit {status}");
        // The pipe readers may lag the exit: wait for the line itself.
        let line = child.wait_for_line("--headless", PATIENCE);
        let log = child.lines().join("\n");
        assert!(line.is_some(), "DISPLAY={display:?}: {log}");
        if display.is_none() {
            assert!(log.contains("DISPLAY is not set"), "{log}");
        } else {
            // Either no X server answers, or libX11 is not even installed.
            assert!(
                log.contains("XOpenDisplay failed") || log.contains("failed to load"),
                "{log}"
            );
        }
        assert!(
            !log.contains("listening on"),
            "must fail before listening: {log}"
        );
    }
}

// ---------------------------------------------------------------------------
// Bad input, each while a good client streams
// ---------------------------------------------------------------------------

#[test]
fn zero_length_frame_is_refused() {
    under_attack(&[], |viewer| {
        vec![refused(
            viewer,
            &header_of(9, 0),
            &["camera 9 (", "dropped after 0 frames", "body length 0"],
        )]
    });
}

#[test]
fn over_limit_length_is_refused_before_any_body() {
    under_attack(&["--max-frame-bytes", "1000000"], |viewer| {
        // Only the header: the viewer must not wait for the body.
        vec![
            refused(
                viewer,
                &header_of(9, 1_000_001),
                &[
                    "camera 9 (",
                    "announced a 1000001-byte frame body, over the 1000000-byte limit",
                ],
            ),
            refused(
                viewer,
                &header_of(10, u32::MAX),
                &["camera 10 (", "announced a 4294967295-byte frame body"],
            ),
        ]
    });
}

#[test]
fn body_that_is_not_gzip_is_refused() {
    under_attack(&[], |viewer| {
        let body = b"this is plain text, not a gzip stream at all".repeat(10);
        vec![refused(
            viewer,
            &frame_of(9, &body),
            &["camera 9 (", "not a gzip stream"],
        )]
    });
}

#[test]
fn truncated_gzip_is_refused() {
    under_attack(&[], |viewer| {
        let whole = gzip_of(&bars_bmp(64, 48, 0));
        // Cut inside the deflate data, and cut shorter than any gzip member.
        vec![
            refused(
                viewer,
                &frame_of(9, &whole[..whole.len() / 2]),
                &["camera 9 (", "bad frame body: gzip stream"],
            ),
            refused(
                viewer,
                &frame_of(10, &whole[..12]),
                &["camera 10 (", "gzip stream of 12 bytes is truncated"],
            ),
        ]
    });
}

#[test]
fn gzip_bomb_is_stopped_at_max_bmp_bytes() {
    under_attack(&["--max-bmp-bytes", "1000000"], |viewer| {
        // 8 MB of zeros gzips to a few KB.
        let bomb = gzip_of(&vec![0u8; 8 << 20]);
        assert!(bomb.len() < 100_000);
        // The same bomb with its trailer lying about the size (1000 bytes).
        let mut liar = bomb.clone();
        let n = liar.len();
        liar[n - 4..].copy_from_slice(&1000u32.to_le_bytes());
        vec![
            refused(
                viewer,
                &frame_of(9, &bomb),
                &[
                    "camera 9 (",
                    "announces 8388608 decompressed bytes, over the 1000000-byte limit",
                ],
            ),
            refused(
                viewer,
                &frame_of(10, &liar),
                &["camera 10 (", "inflates to more than its trailer announces"],
            ),
        ]
    });
}

#[test]
fn body_that_is_not_a_bmp_is_refused() {
    under_attack(&[], |viewer| {
        let text = gzip_of(&b"GIF89a, or anything else that is not a BMP".repeat(4));
        vec![refused(
            viewer,
            &frame_of(9, &text),
            &["camera 9 (", "bad BMP in frame: not a BMP file"],
        )]
    });
}

#[test]
fn unsupported_bmp_is_refused() {
    under_attack(&[], |viewer| {
        // A valid 24-bit file relabelled as 16 bits per pixel.
        let mut depth = bars_bmp(16, 8, 0);
        depth[28..30].copy_from_slice(&16u16.to_le_bytes());
        // And one claiming RLE8 compression.
        let mut rle = bars_bmp(16, 8, 0);
        rle[30..34].copy_from_slice(&1u32.to_le_bytes());
        vec![
            refused(
                viewer,
                &bmp_frame(9, &depth),
                &["camera 9 (", "unsupported BMP depth of 16 bits"],
            ),
            refused(
                viewer,
                &bmp_frame(10, &rle),
                &["camera 10 (", "bad BMP in frame"],
            ),
        ]
    });
}

#[test]
fn bmp_lying_about_its_size_is_refused() {
    under_attack(&[], |viewer| {
        let good = bars_bmp(16, 8, 0);
        // The file-size field says more than arrived.
        let mut size_lie = good.clone();
        let claimed = good.len() as u32 + 1000;
        size_lie[2..6].copy_from_slice(&claimed.to_le_bytes());
        // The dimensions need far more pixels than the file holds.
        let mut dims_lie = good.clone();
        dims_lie[18..22].copy_from_slice(&4000i32.to_le_bytes());
        dims_lie[22..26].copy_from_slice(&3000i32.to_le_bytes());
        // 16384 x 16384 announced by a tiny file: refused before 1 GiB of pixels.
        let mut huge = good;
        huge[18..22].copy_from_slice(&16384i32.to_le_bytes());
        huge[22..26].copy_from_slice(&16384i32.to_le_bytes());
        vec![
            refused(
                viewer,
                &bmp_frame(9, &size_lie),
                &[
                    "camera 9 (",
                    &format!("BMP header declares a {claimed}-byte file"),
                ],
            ),
            refused(
                viewer,
                &bmp_frame(10, &dims_lie),
                &["camera 10 (", "bad BMP in frame"],
            ),
            refused(
                viewer,
                &bmp_frame(11, &huge),
                &["camera 11 (", "16384x16384"],
            ),
        ]
    });
}

/// A JPEG of the bars, as an agent with `--encoding jpeg` sends it.
fn jpeg_of(width: u32, height: u32) -> Vec<u8> {
    let mut jpg = Vec::new();
    proto::jpeg::Encoder::new(85)
        .expect("quality 85")
        .encode_bgr(&bars::bgr_image(width, height, 0), width, height, &mut jpg)
        .expect("encode test JPEG");
    jpg
}

#[test]
fn hostile_jpegs_are_refused_while_a_good_camera_streams() {
    // 100 000 pixels at most: 400x300 is over, the good 64x48 bars are not.
    under_attack(&["--max-bmp-bytes", "100000"], |viewer| {
        let good = jpeg_of(64, 48);
        let sof = good
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("baseline frame header");
        // A bomb: 16384x16384 declared by a 1 KB file.
        let mut bomb = good.clone();
        bomb[sof + 5..sof + 9].copy_from_slice(&[0x40, 0, 0x40, 0]);
        // Arithmetic coding (SOF9), which no camera sends.
        let mut arithmetic = good.clone();
        arithmetic[sof + 1] = 0xC9;
        // Entropy data of invalid Huffman codes (all one bits).
        let info = proto::jpeg::inspect(&good).expect("good JPEG");
        let mut corrupt = good.clone();
        for (i, b) in corrupt[info.first_scan + 14..info.len - 2]
            .iter_mut()
            .enumerate()
        {
            *b = if i % 2 == 0 { 0xFF } else { 0x00 };
        }
        vec![
            refused(
                viewer,
                &frame_of(9, &bomb),
                &[
                    "camera 9 (",
                    "bad JPEG in frame",
                    "16384x16384",
                    "decompression bomb",
                ],
            ),
            refused(
                viewer,
                &frame_of(10, &jpeg_of(400, 300)),
                &[
                    "camera 10 (",
                    "JPEG of 400x300 pixels is over the 100000-pixel limit",
                ],
            ),
            refused(
                viewer,
                &frame_of(11, &good[..good.len() * 2 / 3]),
                &["camera 11 (", "truncated (no EOI marker)"],
            ),
            refused(
                viewer,
                &frame_of(12, &arithmetic),
                &[
                    "camera 12 (",
                    "is not supported; send baseline or progressive",
                ],
            ),
            refused(
                viewer,
                &frame_of(13, &corrupt),
                &["camera 13 (", "JPEG image data is corrupt"],
            ),
            refused(
                viewer,
                &frame_of(14, b"GIF89a and not a JPEG nor gzip"),
                &[
                    "camera 14 (",
                    "nor a JPEG file (FF D8 FF); it starts 47 49 46",
                ],
            ),
        ]
    });
}

#[test]
fn frame_cut_by_eof_is_reported() {
    under_attack(&[], |viewer| {
        let whole = bars_frame(9, 64, 48, 0);
        let mut stream = TcpStream::connect(viewer.addr).unwrap();
        let local = stream.local_addr().unwrap();
        stream.write_all(&whole[..100]).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        assert!(closed_by_viewer(&mut stream));
        vec![Refusal::new(
            local,
            &[
                "camera 9 (",
                "connection closed in the middle of a frame (100 bytes of it received)",
            ],
        )]
    });
}

#[test]
fn frame_cut_by_connection_reset_is_reported() {
    under_attack(&[], |viewer| {
        let whole = bars_frame(9, 64, 48, 0);
        let stream = TcpStream::connect(viewer.addr).unwrap();
        let local = stream.local_addr().unwrap();
        set_linger_zero(&stream);
        (&stream).write_all(&whole[..100]).unwrap();
        // Closing with SO_LINGER 0 sends RST: ECONNRESET at the viewer, after
        // it has read the 100 bytes queued before the reset.
        drop(stream);
        vec![Refusal::new(
            local,
            &[
                "camera 9 (",
                "reset",
                "in the middle of a frame (100 bytes of it received)",
            ],
        )]
    });
}

#[test]
fn random_bytes_are_refused() {
    under_attack(&[], |viewer| {
        (1..=4u64)
            .map(|seed| {
                let noise = noise(64 << 10, seed);
                refused(viewer, &noise, &["camera ", "dropped after 0 frames: "])
            })
            .collect()
    });
}

#[test]
fn partial_frame_then_silence_hits_the_idle_timeout() {
    under_attack(&["--idle-timeout", "2"], |viewer| {
        let whole = bars_frame(9, 64, 48, 0);
        let mut stream = TcpStream::connect(viewer.addr).unwrap();
        let local = stream.local_addr().unwrap();
        stream.write_all(&whole[..50]).unwrap();
        // During the silence, the good client's frames keep arriving.
        let during = viewer.recorded(GOOD_ID);
        let grew = wait_until(PATIENCE, || {
            let dropped = viewer
                .child
                .lines()
                .iter()
                .any(|l| l.contains(&local.to_string()) && l.contains("--idle-timeout"));
            let now = viewer.recorded(GOOD_ID);
            (dropped || now >= during + 3).then_some(!dropped)
        });
        assert_eq!(
            grew,
            Some(true),
            "good frames stalled while a client was silent mid-frame"
        );
        assert!(closed_by_viewer(&mut stream), "silent client not dropped");
        vec![Refusal::new(
            local,
            &[
                "camera 9 (",
                "sent 50 bytes of a frame, then nothing for 2.0 s (--idle-timeout)",
            ],
        )]
    });
}

/// Issue 16: with `--max-clients 2 --idle-timeout 2`, two clients that each
/// sent one good frame and then stayed silent (a camera node that lost
/// power sends no FIN) held both slots for ever, and a real agent was
/// refused for as long as they stayed. Now their silence drops them, and
/// the agent gets in.
#[test]
fn silent_clients_after_a_good_frame_are_dropped_and_an_agent_gets_in() {
    let viewer = RecordingViewer::start(&["--max-clients", "2", "--idle-timeout", "2"]);
    let mut silent: Vec<(u8, TcpStream)> = [21u8, 22]
        .into_iter()
        .map(|id| {
            let mut stream = TcpStream::connect(viewer.addr).expect("silent client connects");
            stream.write_all(&bars_frame(id, 32, 16, 0)).unwrap();
            (id, stream)
        })
        .collect();
    let sent_at = std::time::Instant::now();
    for (id, _) in &silent {
        viewer.wait_recorded(*id, 1);
    }
    for (id, stream) in &mut silent {
        let local = stream.local_addr().unwrap();
        assert!(
            closed_by_viewer(stream),
            "camera {id} was never dropped for its silence\n{}",
            viewer.child.tail(20)
        );
        let line = viewer.expect_line(
            0,
            &[
                &format!("camera {id} ({local}) dropped after 1 frames"),
                "sent nothing for 2.0 s after its last frame (--idle-timeout)",
            ],
        );
        println!("{line}");
    }
    let dropped_after = sent_at.elapsed();
    println!(
        "both silent clients dropped {:.2} s after their frame (--idle-timeout 2)",
        dropped_after.as_secs_f64()
    );
    // The deadline counts from the viewer's read of the frame, after the
    // write: never sooner than the timeout.
    assert!(dropped_after >= Duration::from_secs(2), "{dropped_after:?}");

    let mut agent = start_pattern_agent(viewer.addr, 9, "320x240", 10, &["--frames", "5"]);
    agent.wait_success(PATIENCE);
    viewer.wait_recorded(9, 1);
    let refused: Vec<String> = viewer
        .lines_after(0)
        .into_iter()
        .filter(|l| l.contains("refused"))
        .collect();
    assert!(refused.is_empty(), "the agent was refused: {refused:?}");
}

#[test]
fn connection_flood_is_refused_at_once() {
    under_attack(&["--max-clients", "4"], |viewer| {
        // 3 slots left after the good client; hold 200 connections open.
        let mut flood: Vec<TcpStream> = Vec::new();
        for _ in 0..200 {
            match TcpStream::connect(viewer.addr) {
                Ok(s) => flood.push(s),
                // The listen backlog may overflow: that is refusal too.
                Err(_) => continue,
            }
        }
        assert!(flood.len() >= 4, "only {} connections made", flood.len());
        // While the flood is held open, the good client's frames keep arriving.
        let during = viewer.recorded(GOOD_ID);
        viewer.wait_recorded(GOOD_ID, during + 5);
        // All but the 3 admitted are closed by the viewer, at once; it reads
        // the backlog in turns, so wait (bounded) until it got to all.
        for s in &flood {
            s.set_nonblocking(true).unwrap();
        }
        let mut closed = vec![false; flood.len()];
        let all_refused = wait_until(PATIENCE, || {
            for (s, closed) in flood.iter_mut().zip(closed.iter_mut()) {
                let mut buf = [0u8; 1];
                match s.read(&mut buf) {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    _ => *closed = true,
                }
            }
            let n = closed.iter().filter(|c| **c).count();
            (n == flood.len() - 3).then_some(())
        });
        let n_closed = closed.iter().filter(|c| **c).count();
        assert!(
            all_refused.is_some(),
            "{n_closed} of {} flood connections closed; expected all but 3\n{}",
            flood.len(),
            viewer.child.tail(20)
        );
        let first = flood[closed.iter().position(|c| *c).unwrap()]
            .local_addr()
            .unwrap();
        drop(flood);
        vec![Refusal::new(
            first,
            &["refused", "already serving 4 clients (--max-clients 4)"],
        )]
    });
}

/// Issue 16: a refused agent that came back 67 times in 10 s cost 67
/// "refused" lines. Refusals are logged once per peer, then counted: 200
/// connect/refuse cycles against `--max-clients 1` (one client holding the
/// slot and streaming) cost one line and one summary per 10 s window, the
/// summaries add up to every refusal, and the holder keeps streaming.
#[test]
fn refusals_are_logged_once_per_peer_then_counted() {
    const CYCLES: usize = 200;
    under_attack(&["--max-clients", "1"], |viewer| {
        let mark = viewer.child.line_count();
        let started = std::time::Instant::now();
        let mut first = None;
        for _ in 0..CYCLES {
            let mut stream = TcpStream::connect(viewer.addr).expect("connect");
            first.get_or_insert(stream.local_addr().unwrap());
            assert!(closed_by_viewer(&mut stream), "not refused");
        }
        let cycles_took = started.elapsed();
        // Every refusal is either logged or in a summary, which comes when
        // the peer's window (10 s from its first line) ends.
        let count_refusals = || {
            let lines: Vec<String> = viewer
                .lines_after(mark)
                .into_iter()
                .filter(|l| l.contains("refused"))
                .collect();
            let summed: usize = lines
                .iter()
                .filter_map(|l| {
                    let rest = l.split("refused 127.0.0.1 ").nth(1)?;
                    rest.split(" more times").next()?.parse::<usize>().ok()
                })
                .sum();
            let logged = lines
                .iter()
                .filter(|l| l.contains("already serving"))
                .count();
            (lines, logged + summed)
        };
        let (lines, total) = wait_until(PATIENCE, || {
            let (lines, total) = count_refusals();
            (total >= CYCLES).then_some((lines, total))
        })
        .unwrap_or_else(|| panic!("refusals not all accounted for: {:?}", count_refusals()));
        let all_took = started.elapsed();
        for line in &lines {
            println!("{line}");
        }
        println!(
            "{CYCLES} refusals in {:.2} s cost {} log lines (all accounted for after {:.1} s)",
            cycles_took.as_secs_f64(),
            lines.len(),
            all_took.as_secs_f64()
        );
        assert_eq!(total, CYCLES, "{lines:#?}");
        // One line and one summary per started 10 s window.
        let windows = all_took.as_secs() as usize / 10 + 1;
        assert!(
            lines.len() <= 2 * windows,
            "{} refusal lines for {CYCLES} refusals in {windows} windows: {lines:#?}",
            lines.len()
        );
        assert!(
            lines.iter().any(|l| l.contains("refused 127.0.0.1 ")
                && l.contains("more times in the last 10 s (--max-clients 1)")),
            "{lines:#?}"
        );
        vec![Refusal::new(
            first.expect("one cycle at least"),
            &["refused", "already serving 1 clients (--max-clients 1)"],
        )]
    });
}

// ---------------------------------------------------------------------------
// With the real agent
// ---------------------------------------------------------------------------

/// The pattern agent's frames, recorded by the viewer, decode to its colour
/// bars (white yellow cyan green magenta red blue black at 75%, across the
/// top three quarters), give or take YUYV rounding.
fn agent_frames_decode_to_bars(conn_dir: &Path) {
    let files = recorded_frames(conn_dir);
    assert!(!files.is_empty(), "no frames in {}", conn_dir.display());
    for file in [&files[0], files.last().unwrap()] {
        let image = Image::read_bmp(file);
        let (w, h) = image.size();
        assert_eq!((w, h), (320, 240));
        let probe = Probe {
            rows: &[h / 8, h / 2, h * 5 / 8],
            radius: 0,
            level: LEVEL_75,
            tolerance: 8,
        };
        if let Err(e) = bars::check(&image, &probe) {
            panic!("{}: {e}", file.display());
        }
    }
}

#[test]
fn eight_pattern_agents_stream_to_a_recording_viewer() {
    let viewer = RecordingViewer::start(&[]);
    let mut agents: Vec<LoggedChild> = (1..=8u8)
        .map(|id| start_pattern_agent(viewer.addr, id, "320x240", 10, &["--frames", "15"]))
        .collect();
    for agent in &mut agents {
        agent.wait_success(PATIENCE);
    }
    for id in 1..=8u8 {
        // Every frame the viewer received is recorded, and it received some.
        let line = viewer.expect_line(0, &[&format!("camera {id} ("), "disconnected after"]);
        let received: usize = line
            .split("disconnected after ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("frame count in `{line}`"));
        assert!(received > 0, "{line}");
        assert_eq!(viewer.wait_recorded(id, received), received);
        let dirs = recorded_conn_dirs(viewer.record_dir());
        let (_, dir) = dirs.iter().find(|(d, _)| *d == id).unwrap();
        agent_frames_decode_to_bars(dir);
    }
}
