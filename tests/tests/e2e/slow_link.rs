//! Slow links: the agent in a network namespace ([`NetNs`]) whose link to
//! the viewer is a `tc` qdisc narrower than the camera, with the real kernel
//! TCP stack on both sides. The camera is `--source file:` with noisy 640x480
//! frames (about 0.75 MB each at gzip 9: 30 fps would need 180 Mbit/s), so
//! the link, not the CPU, limits the frame rate.
//!
//! What must hold whatever the machine's speed, asserted for each link:
//! - the kernel never holds more than about 1.5 frames unsent
//!   (`ss -ti`'s `notsent`, sampled inside the namespace every 100 ms);
//!   before TCP_NOTSENT_LOWAT the send buffer held up to 2.4 frames;
//! - frames arrive in capture order (each frame carries its number in the
//!   pattern source's counter lane, read back from the viewer's recording);
//! - the agent's memory is flat.
//!
//! Frame rates and latencies are printed, not asserted. The tests run one
//! at a time (two agents would share the CPU as well as nothing else), each
//! for about 10 s.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use camstream_tests::{
    pattern, recorded_conn_dirs, recorded_frames, release_bin_path, start_viewer_cmd,
    testdata_frame, Image, LoggedChild, NetNs,
};
use proto::{bmp, gzip, wire};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;

/// Distinct frames in the looped file; the counter read back wraps at this.
const FRAMES_IN_FILE: u32 = 32;

/// One link at a time: see the module doc.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A token bucket of `rate` with a 64 KB burst (a GSO packet fits) and
/// `latency` of queue.
fn tbf<'a>(rate: &'a str, latency: &'a str) -> [&'a str; 7] {
    ["tbf", "rate", rate, "burst", "64kb", "latency", latency]
}

/// The noisy 640x480 camera frame, as YUYV.
fn noisy_frame() -> Vec<u8> {
    std::fs::read(testdata_frame("coffee_640x480_noise.yuyv")).expect("read testdata frame")
}

/// Writes [`FRAMES_IN_FILE`] copies of the noisy frame, frame `i` with `i`
/// drawn in the pattern source's counter lane (32 cells in the last eighth,
/// most significant bit first, white = 1; only a band around the row
/// `pattern::counter` reads, so the frame stays noisy), for `--source file:`.
fn write_numbered_frames(path: &Path) {
    let base = noisy_frame();
    let stride = WIDTH as usize * 2;
    let cell = ((WIDTH / 32) & !1) as usize;
    let row = (HEIGHT - (HEIGHT / 4 - HEIGHT / 8) / 2 - 1) as usize;
    let mut out = Vec::with_capacity(base.len() * FRAMES_IN_FILE as usize);
    for n in 0..FRAMES_IN_FILE {
        let mut frame = base.clone();
        for y in row - 4..=row + 4 {
            for bit in 0..32 {
                let white = n >> (31 - bit) & 1 == 1;
                let luma = if white { 235 } else { 16 };
                for x in bit * cell..(bit + 1) * cell {
                    let at = y * stride + x * 2;
                    frame[at] = luma;
                    frame[at + 1] = 128;
                }
            }
        }
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out).expect("write the numbered frames");
}

/// What the agent writes per frame: header and level-9 gzip of the BMP.
fn wire_frame_len() -> usize {
    let mut bmp_bytes = Vec::new();
    bmp::encode_yuyv(
        &noisy_frame(),
        WIDTH,
        HEIGHT,
        WIDTH as usize * 2,
        &mut bmp_bytes,
    )
    .expect("BMP of the test frame");
    let mut out = Vec::new();
    let body = gzip::Compressor::new(9)
        .expect("gzip 9")
        .compress_at(&bmp_bytes, &mut out, 0);
    wire::HEADER_LEN + body
}

/// What one run saw.
struct Run {
    /// `notsent` of the agent's connection, every sample.
    notsent: Vec<u64>,
    /// The kernel's smoothed round-trip time of that connection, in ms,
    /// every sample.
    rtt_ms: Vec<f64>,
    /// The agent's resident memory a few seconds in, and at the end.
    rss_kib: (u64, u64),
    /// The agent's stats lines.
    stats: Vec<String>,
    record: tempfile::TempDir,
}

/// Streams the numbered frames at 30 fps from an agent in `net` to a
/// recording viewer on the host for `seconds`, calling `during(elapsed)`
/// every sample (to change the link), and samples the agent's unsent bytes.
fn stream(net: &NetNs, seconds: u64, mut during: impl FnMut(Duration)) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let frames = dir.path().join("numbered.yuyv");
    write_numbered_frames(&frames);
    let record = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(release_bin_path("viewer"));
    cmd.args(["--headless", "--record"])
        .arg(record.path())
        .args(["--listen", &format!("{}:0", net.host_addr())])
        .args(["--allow", &net.ns_addr().to_string()])
        .env("RUST_LOG", "info");
    let (viewer, addr) = start_viewer_cmd(cmd);
    let agent = start_agent(net, &frames, addr);
    let started = Instant::now();
    let mut notsent = Vec::new();
    let mut rtt_ms = Vec::new();
    let mut rss_early = None;
    while started.elapsed() < Duration::from_secs(seconds) {
        during(started.elapsed());
        if let Some(tcp) = agent_tcp_info(net, addr.port()) {
            notsent.push(tcp.notsent);
            rtt_ms.extend(tcp.rtt_ms);
        }
        if rss_early.is_none() && started.elapsed() >= Duration::from_secs(3) {
            rss_early = agent.rss_kib();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let rss_end = agent.rss_kib().expect("agent RSS");
    let stats = agent
        .lines()
        .into_iter()
        .filter(|l| l.contains("fps captured") || l.contains("limits the frame rate"))
        .collect();
    agent.signal("TERM");
    drop(agent);
    drop(viewer);
    Run {
        notsent,
        rtt_ms,
        rss_kib: (rss_early.expect("agent RSS early on"), rss_end),
        stats,
        record,
    }
}

fn start_agent(net: &NetNs, frames: &Path, server: SocketAddr) -> LoggedChild {
    let mut cmd = net.command(release_bin_path("agent"));
    cmd.arg("--source")
        .arg(format!("file:{}", frames.display()))
        .args(["--size", &format!("{WIDTH}x{HEIGHT}"), "--fps", "30"])
        .args(["--level", "9", "--id", "7", "--stats-interval", "2"])
        .args(["--server", &server.to_string()])
        .env("RUST_LOG", "info");
    LoggedChild::spawn(&format!("agent in {}", net.name()), cmd)
}

/// What `ss -ti` says of the agent's connection.
struct TcpInfo {
    /// Bytes written but not yet sent (`notsent`).
    notsent: u64,
    /// Smoothed round-trip time (`rtt:SRTT/RTTVAR`), when ss reports it.
    rtt_ms: Option<f64>,
}

/// The agent's connection to `port`, from `ss -ti` inside the namespace;
/// None before it is connected.
fn agent_tcp_info(net: &NetNs, port: u16) -> Option<TcpInfo> {
    let out = net
        .command("ss")
        .args([
            "-tinH",
            "state",
            "established",
            "dport",
            &format!("= :{port}"),
        ])
        .output()
        .expect("run ss in the namespace (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return None;
    }
    let field = |name: &str| text.split_whitespace().find_map(|w| w.strip_prefix(name));
    Some(TcpInfo {
        // ss omits the field while nothing is unsent.
        notsent: field("notsent:").and_then(|n| n.parse().ok()).unwrap_or(0),
        rtt_ms: field("rtt:")
            .and_then(|r| r.split('/').next())
            .and_then(|r| r.parse().ok()),
    })
}

/// The frame numbers the viewer recorded, in its sequence order.
fn recorded_numbers(record: &Path) -> Vec<u32> {
    let dirs: Vec<PathBuf> = recorded_conn_dirs(record)
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    assert_eq!(dirs.len(), 1, "one connection, no reconnects: {dirs:?}");
    recorded_frames(&dirs[0])
        .iter()
        .map(|f| {
            let image = Image::read_bmp(f);
            pattern::counter(&image)
                .unwrap_or_else(|| panic!("no frame counter in {}", f.display()))
        })
        .collect()
}

/// Every assertion of the module doc, and the figures printed.
fn check(name: &str, run: &Run, min_frames: usize) {
    let frame_len = wire_frame_len() as u64;
    let max_unsent = run.notsent.iter().copied().max().unwrap_or(0);
    let numbers = recorded_numbers(run.record.path());
    eprintln!(
        "slow_link {name}: {} frames recorded; unsent max {} KB ({:.2} frames of {} KB) over {} samples; \
         RSS {} -> {} KiB\n  {}",
        numbers.len(),
        max_unsent / 1000,
        max_unsent as f64 / frame_len as f64,
        frame_len / 1000,
        run.notsent.len(),
        run.rss_kib.0,
        run.rss_kib.1,
        run.stats.join("\n  ")
    );
    assert!(
        run.notsent.len() >= 10,
        "{name}: only {} samples of the agent's connection",
        run.notsent.len()
    );
    assert!(
        max_unsent * 2 <= frame_len * 3,
        "{name}: the kernel held {max_unsent} bytes unsent, over 1.5 frames of {frame_len} bytes: \
         frames wait in the socket instead of newer ones being sent"
    );
    assert!(
        numbers.len() >= min_frames,
        "{name}: {} frames recorded, expected at least {min_frames}",
        numbers.len()
    );
    // Numbers wrap at FRAMES_IN_FILE; in order, each step is forward by
    // at most 3/4 of the loop (20 Mbit/s carries about every tenth frame),
    // so a frame that went back by up to 8 is caught.
    for pair in numbers.windows(2) {
        let step = (pair[1] + FRAMES_IN_FILE - pair[0]) % FRAMES_IN_FILE;
        assert!(
            (1..=FRAMES_IN_FILE * 3 / 4).contains(&step),
            "{name}: frame {} came after frame {}: out of capture order (all: {numbers:?})",
            pair[1],
            pair[0]
        );
    }
    let (early, end) = run.rss_kib;
    assert!(
        end < early + 4 * 1024,
        "{name}: the agent's RSS grew from {early} KiB to {end} KiB"
    );
}

#[test]
fn slow_link_100_mbit_keeps_unsent_bytes_under_one_and_a_half_frames() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let net = NetNs::create();
    net.set_ns_qdisc(&tbf("100mbit", "20ms"));
    let run = stream(&net, 10, |_| {});
    check("100 Mbit/s", &run, 20);
}

#[test]
fn slow_link_20_mbit_keeps_unsent_bytes_under_one_and_a_half_frames() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let net = NetNs::create();
    net.set_ns_qdisc(&tbf("20mbit", "20ms"));
    let run = stream(&net, 10, |_| {});
    check("20 Mbit/s", &run, 5);
}

/// 100 Mbit/s, then 20 from 4 s in, then 100 again from 8 s: the pace the
/// encoders follow is measured, so it must follow the link both ways.
#[test]
fn slow_link_whose_rate_changes_mid_stream_stays_in_order_and_bounded() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let net = NetNs::create();
    net.set_ns_qdisc(&tbf("100mbit", "20ms"));
    let mut rate = 100;
    let run = stream(&net, 12, |t| {
        let want = if (4..8).contains(&t.as_secs()) {
            20
        } else {
            100
        };
        if want != rate {
            rate = want;
            net.set_ns_qdisc(&tbf(&format!("{rate}mbit"), "20ms"));
        }
    });
    check("100 -> 20 -> 100 Mbit/s", &run, 15);
}

/// 30 ms of delay at 100 Mbit/s: about 0.4 MB in flight, which
/// TCP_NOTSENT_LOWAT does not count and must not starve. This project's test
/// kernels have no netem qdisc, so the delay is a [`NetNs::create_delayed`]
/// link (TUN devices joined by a thread that holds each packet 30 ms) with
/// the same token bucket as the 100 Mbit/s test in front of it; both TCP
/// stacks are still the kernel's.
#[test]
fn slow_link_with_30_ms_delay_keeps_unsent_bytes_bounded() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let net = NetNs::create_delayed(Duration::from_millis(30), Duration::ZERO);
    net.set_ns_qdisc(&tbf("100mbit", "20ms"));
    let run = stream(&net, 10, |_| {});
    check("100 Mbit/s, 30 ms delay", &run, 20);
    // The delay is really there: the kernel's own round-trip estimate for
    // the agent's connection includes it (the median, as the first samples
    // come before any estimate has settled).
    let mut rtt = run.rtt_ms.clone();
    rtt.sort_by(f64::total_cmp);
    let median = rtt.get(rtt.len() / 2).copied().unwrap_or(0.0);
    eprintln!("slow_link: the agent's TCP round trip, median {median:.1} ms");
    assert!(
        median >= 30.0,
        "the delayed link's round trip is {median:.1} ms (median of {} samples), under its 30 ms delay",
        rtt.len()
    );
}
