//! The real `agent` binary against test TCP listeners on loopback: every
//! frame it sends is decoded with `proto` and checked (size, bar colours,
//! frame counter, OpenCV's conversion of the file source); `--frames`,
//! reconnection, blocked sends, signals, and the messages for bad arguments
//! and a missing camera.
//!
//! No test asserts a wall-clock duration: waits are generous bounds that
//! only keep a broken agent from hanging the suite.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use camstream_tests::bars::{self, Probe, LEVEL_75};
use camstream_tests::{
    bin_path, pattern, run_agent_expecting_failure, start_agent, testdata_frame, workspace_root,
    Image, LoggedChild, PATIENCE,
};
use proto::{gzip, wire};

/// One frame as the agent sent it.
struct Received {
    camera_id: u8,
    image: Image,
}

fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    let addr = listener.local_addr().expect("listener address");
    (listener, addr)
}

/// A loopback port that is bound but not listening: connecting to it is
/// refused, as when no viewer runs, yet no other test can be given the
/// port meanwhile (picking a "free" port and closing it would let another
/// test's listener take it and receive this test's agent).
struct ReservedPort {
    socket: std::os::fd::OwnedFd,
    addr: SocketAddr,
}

impl ReservedPort {
    fn new() -> ReservedPort {
        ReservedPort::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    fn bind(addr: SocketAddr) -> ReservedPort {
        use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
        use std::os::fd::AsRawFd;
        let socket = socket::socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .expect("TCP socket");
        // The port may still have connections in TIME_WAIT from a previous round.
        socket::setsockopt(&socket, sockopt::ReuseAddr, &true).expect("SO_REUSEADDR");
        let SocketAddr::V4(v4) = addr else {
            panic!("IPv4 only")
        };
        socket::bind(socket.as_raw_fd(), &SockaddrIn::from(v4)).expect("bind a loopback port");
        let bound: SockaddrIn = socket::getsockname(socket.as_raw_fd()).expect("getsockname");
        ReservedPort {
            socket,
            addr: SocketAddr::from((bound.ip(), bound.port())),
        }
    }

    /// Starts listening: the "viewer" comes up on this port.
    fn listen(self) -> TcpListener {
        use nix::sys::socket::{self, Backlog};
        socket::listen(&self.socket, Backlog::new(16).expect("backlog")).expect("listen");
        TcpListener::from(self.socket)
    }
}

/// Accepts one connection, failing the test if none comes within PATIENCE.
fn accept(listener: &TcpListener, agent: &LoggedChild) -> TcpStream {
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let deadline = Instant::now() + PATIENCE;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking stream");
                stream
                    .set_read_timeout(Some(PATIENCE))
                    .expect("read timeout");
                return stream;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "the agent did not connect within {PATIENCE:?}:\n{}",
                    agent.tail(20)
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept failed: {e}"),
        }
    }
}

/// Reads frames until `limit` frames or EOF, decoding each completely.
fn read_frames(stream: &mut TcpStream, limit: usize) -> Vec<Received> {
    let mut reader = wire::FrameReader::new(wire::MAX_BODY_LEN);
    let mut unzip = gzip::Decompressor::new(gzip::MAX_DECOMPRESSED_LEN);
    let mut buf = vec![0u8; 1 << 16];
    let mut frames = Vec::new();
    while frames.len() < limit {
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) => panic!(
                "reading from the agent failed after {} frames: {e}",
                frames.len()
            ),
        };
        if n == 0 {
            assert!(
                !reader.is_mid_frame(),
                "the agent closed the connection mid-frame"
            );
            break;
        }
        let mut input = &buf[..n];
        // One read can hold more frames than are left to take (the agent
        // runs ahead while this test is descheduled): take `limit`, no more.
        while !input.is_empty() && frames.len() < limit {
            let (used, frame) = reader.feed(input).expect("a valid frame header");
            input = &input[used..];
            let Some(frame) = frame else { continue };
            let mut file = Vec::new();
            unzip
                .decompress(&frame.body, &mut file)
                .expect("a valid gzip body");
            frames.push(Received {
                camera_id: frame.camera_id,
                image: Image::from_bmp(&file),
            });
        }
    }
    frames
}

fn wait_exit(agent: &mut LoggedChild) -> ExitStatus {
    agent.wait_exit(PATIENCE).unwrap_or_else(|| {
        panic!(
            "the agent did not exit within {PATIENCE:?}:\n{}",
            agent.tail(20)
        )
    })
}

/// Checks the eight bars at mid-height of the bar area, at each bar's centre.
fn assert_bars(image: &Image) {
    let probe = Probe {
        rows: &[image.height * 3 / 8],
        radius: 0,
        level: LEVEL_75,
        tolerance: 3,
    };
    if let Err(e) = bars::check(image, &probe) {
        panic!("{}x{} pattern frame: {e}", image.width, image.height);
    }
}

/// OpenCV's `cvtColor(COLOR_YUV2BGR_YUYV)` of a shared frame, from proto's
/// golden data.
fn opencv_bgr(name: &str) -> Vec<u8> {
    let path = workspace_root()
        .join("proto/tests/golden/yuyv")
        .join(format!("{name}.bgr.gz"));
    let gz = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut bgr = Vec::new();
    gzip::Decompressor::new(gzip::MAX_DECOMPRESSED_LEN)
        .decompress(&gz, &mut bgr)
        .expect("golden data is gzip");
    bgr
}

#[test]
fn pattern_frames_decode_with_bars_size_and_increasing_counter() {
    for (size, frames) in [("640x480", 8usize), ("322x98", 4)] {
        let (listener, addr) = listen();
        let server = addr.to_string();
        let limit = frames.to_string();
        let mut agent = start_agent(&[
            "--source", "pattern", "--server", &server, "--id", "7", "--size", size, "--fps", "0",
            "--frames", &limit,
        ]);
        let mut stream = accept(&listener, &agent);
        let received = read_frames(&mut stream, usize::MAX);
        assert_eq!(received.len(), frames, "--frames {frames} at {size}");
        let mut last_counter = None;
        for Received { camera_id, image } in &received {
            assert_eq!(*camera_id, 7);
            assert_eq!(format!("{}x{}", image.width, image.height), size);
            assert_bars(image);
            // Frames leave in capture order.
            let counter = pattern::counter(image).expect("the counter lane is inside the frame");
            assert!(
                last_counter.is_none_or(|last| counter > last),
                "frame counter {counter} after {last_counter:?}"
            );
            last_counter = Some(counter);
        }
        let status = wait_exit(&mut agent);
        assert_eq!(status.code(), Some(0), "{}", agent.tail(20));
    }
}

#[test]
fn file_source_matches_opencv_within_1() {
    for (name, size) in [
        ("coffee_640x480_noise", "640x480"),
        ("astronaut_1280x720_noise", "1280x720"),
    ] {
        let (listener, addr) = listen();
        let source = format!("file:{}", testdata_frame(&format!("{name}.yuyv")).display());
        let server = addr.to_string();
        let mut agent = start_agent(&[
            "--source", &source, "--server", &server, "--size", size, "--fps", "0", "--frames", "2",
        ]);
        let mut stream = accept(&listener, &agent);
        let received = read_frames(&mut stream, usize::MAX);
        assert_eq!(received.len(), 2);
        let want = opencv_bgr(name);
        for Received { image, .. } in &received {
            assert_eq!(format!("{}x{}", image.width, image.height), size);
            assert_eq!(want.len(), image.pixels.len() * 3);
            let mut worst = 0;
            for (i, &p) in image.pixels.iter().enumerate() {
                let got = [p as u8, (p >> 8) as u8, (p >> 16) as u8]; // B, G, R
                for c in 0..3 {
                    worst = worst.max(got[c].abs_diff(want[i * 3 + c]));
                }
            }
            assert!(worst <= 1, "{name}: max difference from OpenCV is {worst}");
        }
        assert_eq!(wait_exit(&mut agent).code(), Some(0));
    }
}

#[test]
fn frames_n_from_a_paced_source_sends_exactly_n_and_exits_0() {
    let (listener, addr) = listen();
    let server = addr.to_string();
    let mut agent = start_agent(&[
        "--source", "pattern", "--server", &server, "--size", "160x120", "--fps", "50", "--frames",
        "5",
    ]);
    let mut stream = accept(&listener, &agent);
    assert_eq!(read_frames(&mut stream, usize::MAX).len(), 5);
    assert_eq!(wait_exit(&mut agent).code(), Some(0), "{}", agent.tail(20));
}

#[test]
fn agent_started_before_the_viewer_connects_and_reconnects_after_it_goes() {
    // A port nobody listens on yet.
    let mut reserved = ReservedPort::new();
    let server = reserved.addr.to_string();
    let mut agent = start_agent(&[
        "--source", "pattern", "--server", &server, "--size", "64x48", "--fps", "20",
    ]);
    assert!(
        agent.wait_for_line("unreachable", PATIENCE).is_some(),
        "no `unreachable` line:\n{}",
        agent.tail(20)
    );

    for round in 0..2 {
        let listener = reserved.listen();
        let mut stream = accept(&listener, &agent);
        let received = read_frames(&mut stream, 3);
        assert_eq!(received.len(), 3, "round {round}");
        for Received { image, .. } in &received {
            assert_eq!(image.size(), (64, 48));
            assert_bars(image);
        }
        // The viewer goes away: listener and connection both close, and
        // the port stays reserved for the next round.
        drop((listener, stream));
        reserved = ReservedPort::bind(server.parse().expect("a socket address"));
    }
    assert!(agent.wait_for_line("lost connection", PATIENCE).is_some());
    assert_eq!(agent.try_status(), None, "the agent must keep running");
    agent.signal("TERM");
    assert_eq!(wait_exit(&mut agent).code(), Some(0));
}

#[test]
fn sigterm_and_sigint_exit_0_while_streaming_and_while_retrying() {
    for sig in ["TERM", "INT"] {
        // Streaming to a listener that reads.
        let (listener, addr) = listen();
        let server = addr.to_string();
        let mut agent = start_agent(&[
            "--source", "pattern", "--server", &server, "--size", "320x240",
        ]);
        let mut stream = accept(&listener, &agent);
        assert_eq!(read_frames(&mut stream, 2).len(), 2);
        agent.signal(sig);
        assert_eq!(
            wait_exit(&mut agent).code(),
            Some(0),
            "SIG{sig} while streaming"
        );
        // The agent closed its socket: the reader sees EOF.
        let mut rest = Vec::new();
        stream
            .read_to_end(&mut rest)
            .expect("EOF after the agent exits");

        // Retrying a viewer that is not there (sleeping in backoff).
        let reserved = ReservedPort::new();
        let server = reserved.addr.to_string();
        let mut agent = start_agent(&["--source", "pattern", "--server", &server]);
        assert!(agent.wait_for_line("unreachable", PATIENCE).is_some());
        agent.signal(sig);
        assert_eq!(
            wait_exit(&mut agent).code(),
            Some(0),
            "SIG{sig} while retrying"
        );
    }
}

/// A pattern agent sending to `server` whose frames fill socket buffers
/// fast (1280x720, stored uncompressed at gzip level 0), with `--send-timeout`.
fn start_flooding_agent(server: SocketAddr, send_timeout: &str) -> LoggedChild {
    start_agent(&[
        "--source",
        "pattern",
        "--server",
        &server.to_string(),
        "--size",
        "1280x720",
        "--level",
        "0",
        "--send-timeout",
        send_timeout,
    ])
}

#[test]
fn blocked_send_breaks_the_connection_and_a_signal_still_stops_at_once() {
    let (listener, addr) = listen();
    let mut agent = start_flooding_agent(addr, "1");
    // Accept and never read: the agent's send blocks, times out, and it
    // reconnects.
    let stalled = accept(&listener, &agent);
    assert!(
        agent
            .wait_for_line("the viewer stopped reading", PATIENCE)
            .is_some(),
        "{}",
        agent.tail(20)
    );
    let mut second = accept(&listener, &agent);
    assert!(!read_frames(&mut second, 1).is_empty());
    drop(stalled);

    // Block it again, then stop it while the write is stuck.
    let (listener, addr) = listen();
    let mut agent2 = start_flooding_agent(addr, "600");
    let _stalled = accept(&listener, &agent2);
    // Give it a moment to fill the buffers; exiting 0 must not depend on it.
    std::thread::sleep(Duration::from_millis(500));
    agent2.signal("TERM");
    assert_eq!(
        wait_exit(&mut agent2).code(),
        Some(0),
        "{}",
        agent2.tail(20)
    );
    agent.signal("INT");
    assert_eq!(wait_exit(&mut agent).code(), Some(0));
}

#[test]
fn invalid_arguments_exit_2_with_a_clear_message() {
    let cases: [(&[&str], &str); 6] = [
        (&["--size", "641x480", "--format", "yuyv"], "even width"),
        (&["--size", "640"], "WxH"),
        (&["--source", "camera"], "use v4l2, pattern or file:PATH"),
        (&["--level", "10"], "10"),
        (&["--id", "256"], "256"),
        (&["--server", "localhost"], "HOST:PORT"),
    ];
    for (args, needle) in cases {
        let stderr = run_agent_expecting_failure(args, 2);
        assert!(
            stderr.contains(needle),
            "{args:?}: `{needle}` not in {stderr}"
        );
    }
}

#[test]
fn help_documents_every_option_and_the_exit_codes() {
    let out = Command::new(bin_path("agent"))
        .arg("--help")
        .output()
        .expect("run agent --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--server",
        "--id",
        "--source",
        "--device",
        "--size",
        "--fps",
        "--level",
        "--workers",
        "--frames",
        "--reopen",
        "--stats-interval",
        "--capture-timeout",
        "--send-timeout",
    ] {
        assert!(help.contains(option), "--help does not mention {option}");
    }
    assert!(help.contains("3  the camera was lost"), "{help}");
}

#[test]
fn missing_device_and_non_camera_give_clear_errors_and_exit_1() {
    let stderr = run_agent_expecting_failure(&["--device", "/nonexistent/video9"], 1);
    assert!(
        stderr.contains(
            "cannot open /nonexistent/video9: no such file — is the camera plugged in? (v4l2-ctl --list-devices)"
        ),
        "{stderr}"
    );

    let stderr = run_agent_expecting_failure(&["--device", "/dev/null"], 1);
    assert!(
        stderr.contains("/dev/null is not a V4L2 device"),
        "{stderr}"
    );
}

#[test]
fn file_of_the_wrong_size_is_refused_with_the_reason_and_exit_1() {
    let source = format!(
        "file:{}",
        testdata_frame("coffee_640x480_noise.yuyv").display()
    );
    let stderr = run_agent_expecting_failure(
        &[
            "--source",
            &source,
            "--size",
            "1280x720",
            "--server",
            "127.0.0.1:9",
        ],
        1,
    );
    assert!(
        stderr.contains("not a whole number of 1280x720 YUYV frames"),
        "{stderr}"
    );
}

#[test]
fn memory_stays_flat_while_the_viewer_is_away() {
    // Nobody listens: every frame (1.8 MB raw at 1280x720) must be dropped,
    // not queued.
    let reserved = ReservedPort::new();
    let server = reserved.addr.to_string();
    let mut agent = start_agent(&[
        "--source",
        "pattern",
        "--server",
        &server,
        "--size",
        "1280x720",
        "--fps",
        "30",
        "--stats-interval",
        "1",
    ]);
    // Two stats lines: the pipeline has run at full size for a while.
    let captured =
        |line: &str| line.contains("fps captured") && !line.contains(" 0.0 fps captured");
    let mark = agent.line_count();
    assert!(agent
        .wait_for_line_after(mark, "fps captured", PATIENCE)
        .is_some());
    let before = agent.rss_kib().expect("agent RSS");
    // Let at least 3 more stats intervals pass with frames being captured.
    let mut seen = 0;
    while seen < 3 {
        let mark = agent.line_count();
        let line = agent
            .wait_for_line_after(mark, "fps captured", PATIENCE)
            .unwrap_or_else(|| panic!("no stats line:\n{}", agent.tail(20)));
        if captured(&line) {
            seen += 1;
        }
    }
    let after = agent.rss_kib().expect("agent RSS");
    assert!(
        after < before + 8 * 1024,
        "RSS grew from {before} KiB to {after} KiB while disconnected"
    );
    agent.signal("TERM");
    assert_eq!(wait_exit(&mut agent).code(), Some(0));
}
