//! Churn: an agent that the viewer accepts and then refuses at once
//! (`--max-clients`, `--allow`) must back off, not hammer it. Each refused
//! connection costs the viewer an accept, a log line and a close; an agent
//! that reset its backoff whenever a frame fit in the socket buffer came back
//! 67 times in 10 s.
//!
//! The bound is the backoff's own schedule (100 ms doubling to the 1.5 s cap,
//! each delay at least 75% of its step), so the counts are asserted exactly as
//! the schedule allows. A slow machine only makes fewer attempts; no test
//! asserts that anything is fast.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use camstream_tests::{bin_path, start_pattern_agent, start_viewer, LoggedChild, PATIENCE};

/// How long the refused agent runs.
const WINDOW: Duration = Duration::from_secs(10);

/// The agent's backoff (`agent/src/send.rs`): the first step and the cap,
/// and the jitter's lower bound (±25%).
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_millis(1500);
const JITTER_LOW: f64 = 0.75;

/// The most connection attempts the backoff allows in `window`, the first
/// at time 0: every later one waits at least 75 ms, 150, 300, 600, then
/// 1125 ms each (12 in 10 s).
fn max_attempts(window: Duration) -> usize {
    let (mut at, mut step, mut attempts) = (Duration::ZERO, BACKOFF_START, 1);
    loop {
        at += step.mul_f64(JITTER_LOW);
        if at > window {
            return attempts;
        }
        attempts += 1;
        step = (step * 2).min(BACKOFF_CAP);
    }
}

/// Slack on top of [`max_attempts`]: the window is measured from the
/// agent's start, not from its first attempt.
const SLACK: usize = 1;

/// A 320x240 pattern agent at 30 fps sending to `server`, logging every
/// connection attempt (debug), run for [`WINDOW`] and stopped. Returns its
/// log.
fn run_refused_agent(server: SocketAddr) -> Vec<String> {
    let mut cmd = Command::new(bin_path("agent"));
    cmd.args(["--source", "pattern", "--size", "320x240", "--fps", "30"])
        .args(["--server", &server.to_string(), "--id", "77"])
        .args(["--stats-interval", "0"])
        .env("RUST_LOG", "agent=debug");
    let mut agent = LoggedChild::spawn("refused agent", cmd);
    std::thread::sleep(WINDOW);
    agent.signal("TERM");
    agent.wait_success(PATIENCE);
    agent.lines()
}

/// Connection attempts in an agent's debug log: each ends in one of these.
fn attempts(log: &[String]) -> usize {
    log.iter()
        .filter(|l| l.contains("connected to ") || l.contains(" unreachable ("))
        .count()
}

/// Checks an agent's log from [`run_refused_agent`] against the backoff:
/// at most [`max_attempts`] attempts, at least two (it does retry), and one
/// warning for the whole run of refusals.
fn assert_backed_off(log: &[String]) {
    let bound = max_attempts(WINDOW) + SLACK;
    let made = attempts(log);
    eprintln!(
        "churn: {made} connection attempts in {} s (the backoff allows {bound})",
        WINDOW.as_secs()
    );
    let dump = log.join("\n");
    assert!(
        made <= bound,
        "the refused agent made {made} connection attempts in {WINDOW:?}; its backoff allows \
         at most {bound}: it does not back off after a refusal\n{dump}"
    );
    assert!(
        made >= 2,
        "the refused agent made {made} connection attempts; it must keep retrying\n{dump}"
    );
    let warnings: Vec<&String> = log.iter().filter(|l| l.starts_with("[WARN")).collect();
    assert!(
        warnings.len() == 1 && warnings[0].contains("lost connection to"),
        "a run of refusals is one warning (`lost connection ...`), the rest at debug; got \
         {warnings:#?}\n{dump}"
    );
    // The sender's lines only: start-up and shutdown say their own things.
    let infos = log
        .iter()
        .filter(|l| l.starts_with("[INFO") && l.contains("agent::send]"))
        .count();
    assert!(
        infos <= 2,
        "{infos} info lines from the sender for one run of refusals (at most `connected to` \
         before and after the warning)\n{dump}"
    );
}

/// The one slot of `--max-clients 1` is held by a streaming camera; a second
/// camera is refused for the whole window.
#[test]
fn agent_refused_by_max_clients_backs_off() {
    let (viewer, addr) = start_viewer(&[
        "--headless",
        "--listen",
        "127.0.0.1:0",
        "--max-clients",
        "1",
        "--stats-interval",
        "0",
    ]);
    let holder = start_pattern_agent(addr, 1, "160x120", 5, &["--stats-interval", "0"]);
    viewer
        .wait_for_line("connection from 127.0.0.1:", PATIENCE)
        .unwrap_or_else(|| {
            panic!(
                "the viewer never accepted the slot holder\n{}",
                viewer.tail(20)
            )
        });
    let mark = viewer.line_count();
    let log = run_refused_agent(addr);
    assert!(
        viewer
            .lines()
            .iter()
            .skip(mark)
            .any(|l| l.contains("refused") && l.contains("--max-clients 1")),
        "the viewer never refused the second agent\n{}",
        viewer.tail(20)
    );
    assert_backed_off(&log);
    drop(holder);
}

/// A camera outside the `--allow` list is refused for the whole window.
#[test]
fn agent_refused_by_allow_list_backs_off() {
    let (viewer, addr) = start_viewer(&[
        "--headless",
        "--listen",
        "127.0.0.1:0",
        "--allow",
        "192.0.2.1",
        "--stats-interval",
        "0",
    ]);
    let log = run_refused_agent(addr);
    assert!(
        viewer
            .lines()
            .iter()
            .any(|l| l.contains("refused") && l.contains("--allow")),
        "the viewer never refused the agent\n{}",
        viewer.tail(20)
    );
    assert_backed_off(&log);
}

/// The same, counted by the other end instead of the agent's own log: a
/// listener that accepts and closes every connection at once, as a refusing
/// viewer does.
#[test]
fn agent_refused_at_accept_connects_no_more_than_its_backoff_allows() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("local addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let refuser = {
        let (accepted, done) = (Arc::clone(&accepted), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        drop(conn);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
    };
    let log = run_refused_agent(addr);
    done.store(true, Ordering::SeqCst);
    refuser.join().expect("refuser thread");
    let accepted = accepted.load(Ordering::SeqCst);
    let bound = max_attempts(WINDOW) + SLACK;
    eprintln!(
        "churn: the listener accepted {accepted} connections in {} s (the backoff allows {bound})",
        WINDOW.as_secs()
    );
    assert!(
        accepted <= bound,
        "the listener accepted {accepted} connections from the agent in {WINDOW:?}; its \
         backoff allows at most {bound}\n{}",
        log.join("\n")
    );
    assert_backed_off(&log);
}

#[test]
fn the_bound_follows_the_schedule() {
    // 0, 75, 225, 525, 1125 ms, then every 1125 ms: the 12th at 9.0 s.
    assert_eq!(max_attempts(Duration::from_secs(10)), 12);
    assert_eq!(max_attempts(Duration::from_millis(74)), 1);
    assert_eq!(max_attempts(Duration::from_millis(75)), 2);
}

/// One small gray frame for camera `camera_id`, as a sender would make it.
fn gray_frame(camera_id: u8) -> Vec<u8> {
    let (width, height) = (16u32, 8u32);
    let mut file = Vec::new();
    proto::bmp::encode_bgr24(
        &vec![0x80; (width * height * 3) as usize],
        width,
        height,
        &mut file,
    )
    .expect("encode BMP");
    let mut body = Vec::new();
    proto::gzip::Compressor::new(1)
        .expect("gzip level 1")
        .compress_append(&file, &mut body);
    let mut out = Vec::new();
    proto::wire::encode_frame(camera_id, &body, &mut out).expect("encode frame");
    out
}

/// A camera that connects, sends a frame and leaves, 30 times in a row, is
/// one `connection from` line and then a count, like its refusal and
/// disconnect lines: a line per connection would let a flapping camera
/// (or anyone allowed to connect) flood the log.
#[test]
fn connection_lines_are_rate_limited_per_peer_and_camera() {
    use std::io::{Read, Write};
    const CONNECTIONS: usize = 30;
    let (viewer, addr) = start_viewer(&[
        "--headless",
        "--listen",
        "127.0.0.1:0",
        "--stats-interval",
        "0",
    ]);
    let mark = viewer.line_count();
    let frame = gray_frame(9);
    let started = std::time::Instant::now();
    for _ in 0..CONNECTIONS {
        let mut client = std::net::TcpStream::connect(addr).expect("connect to the viewer");
        client.write_all(&frame).expect("send a frame");
        client
            .shutdown(std::net::Shutdown::Write)
            .expect("shut down the sending side");
        // The viewer closes its end once it has read the frame and our FIN:
        // one connection at a time, and each one's header was read.
        client
            .set_read_timeout(Some(PATIENCE))
            .expect("read timeout");
        let mut rest = Vec::new();
        client
            .read_to_end(&mut rest)
            .expect("the viewer closes the connection");
    }
    let elapsed = started.elapsed();
    // All within one log window (10 s), or the count below would be split.
    assert!(
        elapsed < Duration::from_secs(8),
        "{CONNECTIONS} connections took {elapsed:?}; the test needs them within one 10 s window"
    );
    let summary = viewer
        .wait_for_line_after(mark, "more connections in the last", PATIENCE)
        .unwrap_or_else(|| panic!("no summary of the connections\n{}", viewer.tail(20)));
    let lines = viewer.lines();
    let logged: Vec<&String> = lines[mark..]
        .iter()
        .filter(|l| l.contains("connection from 127.0.0.1:"))
        .collect();
    assert_eq!(
        logged.len(),
        1,
        "{CONNECTIONS} connections from one camera: one line, then a count\n{logged:#?}"
    );
    assert!(logged[0].contains("camera 9,"), "{}", logged[0]);
    assert!(
        summary.contains(&format!(
            "camera 9 (127.0.0.1): {} more connections in the last 10 s",
            CONNECTIONS - 1
        )),
        "{summary}"
    );
}
