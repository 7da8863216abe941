//! Faults, load and soak: the viewer killed, stopped and flooded while
//! agents stream, and a long run of eight agents.
//!
//! Reaction times that the issue states as requirements (reconnect within
//! 2 s) are measured and printed; the assertions only guard against hangs,
//! so a loaded machine cannot make these tests flaky. Memory and frame
//! counts are asserted exactly as the issue states them.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use camstream_tests::{
    bin_path, release_bin_path, start_pattern_agent, start_viewer, start_viewer_cmd,
    testdata_frame, wait_until, LoggedChild, RecordCounter, PATIENCE,
};

/// These tests load the machine on purpose (and one measures reaction
/// times), so they run one at a time rather than on top of each other.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

/// A free loopback port below Linux's ephemeral range (32768 up), so no
/// outgoing connection can take it while the viewer is down between a kill
/// and a restart.
fn free_fixed_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let start = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (0..2000u64)
        .map(|i| 20000 + ((start + i) % 12000) as u16)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port in 20000..32000")
}

fn viewer_args<'a>(listen: &'a str, record: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--listen",
        listen,
        "--headless",
        "--record",
        record.to_str().expect("utf-8 temp path"),
    ];
    args.extend_from_slice(extra);
    args
}

/// Waits until every camera in `ids` has at least `min` more recorded
/// frames than in `base`.
fn wait_for_frames(
    counter: &RecordCounter,
    ids: &[u8],
    base: &HashMap<u8, usize>,
    min: usize,
) -> Result<HashMap<u8, usize>, HashMap<u8, usize>> {
    let got = wait_until(PATIENCE, || {
        let counts = counter.counts();
        ids.iter()
            .all(|id| {
                counts.get(id).copied().unwrap_or(0) >= base.get(id).copied().unwrap_or(0) + min
            })
            .then_some(counts)
    });
    got.ok_or_else(|| counter.counts())
}

/// The agent's exit line `stopped: C frames captured, S sent, D dropped`
/// (waited for: the pipe may still hold it after the process exited).
fn agent_totals(agent: &LoggedChild) -> Option<(u64, u64, u64)> {
    let line = agent.wait_for_line(" frames captured, ", PATIENCE)?;
    let numbers: Vec<u64> = line
        .split("stopped: ")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    match numbers[..] {
        [captured, sent, dropped, ..] => Some((captured, sent, dropped)),
        _ => None,
    }
}

/// From a stats line `camera 3: 29.8 fps captured, 29.8 sent, 0 dropped, ...`:
/// (captured fps, sent fps, dropped frames).
fn agent_stats(line: &str) -> Option<(f64, f64, u64)> {
    let rest = line.split(": ").nth(1)?;
    let mut fields = rest.split(", ");
    let captured = fields.next()?.strip_suffix(" fps captured")?.parse().ok()?;
    let sent = fields.next()?.strip_suffix(" sent")?.parse().ok()?;
    let dropped = fields.next()?.strip_suffix(" dropped")?.parse().ok()?;
    Some((captured, sent, dropped))
}

/// `kill -9` the viewer while four agents stream, start it again on the same
/// port after a few seconds, and measure how long each agent takes to
/// reconnect (from the new viewer's `listening on` line to the agent's
/// `connected to` line). The issue asks for at most 2 s.
#[test]
fn viewer_killed_and_restarted_every_agent_reconnects() {
    let _heavy = heavy();
    let tmp = tempfile::tempdir().expect("temp dir");
    let (first, second) = (tmp.path().join("first"), tmp.path().join("second"));
    let counter1 = RecordCounter::start(&first);
    let listen = format!("127.0.0.1:{}", free_fixed_port());
    let (mut viewer, addr) = start_viewer(&viewer_args(&listen, &first, &[]));
    let ids = [1u8, 2, 3, 4];
    let agents: Vec<LoggedChild> = ids
        .iter()
        .map(|&id| start_pattern_agent(addr, id, "320x240", 10, &["--workers", "1"]))
        .collect();
    wait_for_frames(&counter1, &ids, &HashMap::new(), 5)
        .unwrap_or_else(|c| panic!("not every agent streams before the kill: {c:?}"));

    let marks: Vec<usize> = agents.iter().map(LoggedChild::line_count).collect();
    viewer.signal("KILL");
    viewer.wait_exit(PATIENCE).expect("viewer dies on SIGKILL");
    drop(counter1);
    // Down long enough for every agent to notice and back off a few times.
    for (agent, &mark) in agents.iter().zip(&marks) {
        agent
            .wait_for_line_after(mark, "lost connection", PATIENCE)
            .unwrap_or_else(|| {
                panic!(
                    "an agent did not notice the viewer died:\n{}",
                    agent.tail(10)
                )
            });
    }
    std::thread::sleep(Duration::from_secs(4));

    let marks: Vec<usize> = agents.iter().map(LoggedChild::line_count).collect();
    let counter2 = RecordCounter::start(&second);
    let mut cmd = Command::new(bin_path("viewer"));
    cmd.args(viewer_args(&listen, &second, &[]));
    let (mut viewer, addr2) = start_viewer_cmd(cmd);
    assert_eq!(addr2, addr, "the viewer is back on the same port");
    let (back, _) = viewer
        .wait_for_line_timed(0, "listening on", Duration::ZERO)
        .expect("listening line");

    let mut times = Vec::new();
    for ((agent, &mark), id) in agents.iter().zip(&marks).zip(ids) {
        let (at, _) = agent
            .wait_for_line_timed(mark, "connected to", PATIENCE)
            .unwrap_or_else(|| panic!("agent {id} did not reconnect:\n{}", agent.tail(10)));
        times.push((id, at.saturating_duration_since(back)));
    }
    wait_for_frames(&counter2, &ids, &HashMap::new(), 5)
        .unwrap_or_else(|c| panic!("not every agent streams to the new viewer: {c:?}"));
    for (id, t) in &times {
        let verdict = if *t <= Duration::from_secs(2) {
            "within"
        } else {
            "OVER"
        };
        println!("agent {id} reconnected {:.3} s after the viewer was back ({verdict} the 2 s requirement)", t.as_secs_f64());
    }
    assert!(
        viewer.try_status().is_none(),
        "the new viewer is still running"
    );
}

/// `kill -STOP` the viewer: its socket buffers fill, the agents' writes block
/// (and time out after --send-timeout). The agents keep capturing and drop
/// frames instead of queueing them, so their memory stays flat; after
/// `kill -CONT` frames arrive again. Uncompressed frames (gzip level 0, 0.9 MB)
/// fill the buffers within a second.
#[test]
fn viewer_stopped_agents_drop_frames_with_flat_memory_and_recover() {
    let _heavy = heavy();
    let tmp = tempfile::tempdir().expect("temp dir");
    let record = tmp.path().join("record");
    let counter = RecordCounter::start(&record);
    let (viewer, addr) = start_viewer(&viewer_args("127.0.0.1:0", &record, &[]));
    let frame = testdata_frame("coffee_640x480_noise.yuyv");
    let ids = [5u8, 6];
    let agents: Vec<LoggedChild> = ids
        .iter()
        .map(|&id| {
            let mut cmd = Command::new(bin_path("agent"));
            cmd.arg("--source")
                .arg(format!("file:{}", frame.display()))
                // gzip level 0: frames leave at full size (0.9 MB) however
                // slow this build encodes, so the viewer's buffers fill fast.
                .args(["--size", "640x480", "--fps", "15", "--level", "0"])
                .args(["--id", &id.to_string(), "--server", &addr.to_string()])
                .args(["--stats-interval", "1"]);
            LoggedChild::spawn(&format!("agent {id}"), cmd)
        })
        .collect();
    wait_for_frames(&counter, &ids, &HashMap::new(), 5)
        .unwrap_or_else(|c| panic!("agents do not stream: {c:?}"));

    let rss_before: Vec<u64> = agents
        .iter()
        .map(|a| a.rss_kib().expect("agent RSS"))
        .collect();
    viewer.signal("STOP");
    let stopped_at = Instant::now();
    // Let the socket buffers fill, then watch memory while the viewer stays stopped.
    std::thread::sleep(Duration::from_secs(3));
    let marks: Vec<usize> = agents.iter().map(LoggedChild::line_count).collect();
    let rss_early: Vec<u64> = agents
        .iter()
        .map(|a| a.rss_kib().expect("agent RSS"))
        .collect();
    std::thread::sleep(Duration::from_secs(12));
    let rss_late: Vec<u64> = agents
        .iter()
        .map(|a| a.rss_kib().expect("agent RSS"))
        .collect();
    let stopped_for = stopped_at.elapsed();
    let counts_stopped = counter.counts();
    viewer.signal("CONT");

    for (i, agent) in agents.iter().enumerate() {
        let id = ids[i];
        assert!(agent.rss_kib().is_some(), "agent {id} kept running");
        // The stats lines logged while the viewer was stopped: the agent kept
        // capturing and dropped the frames it could not send.
        let stats: Vec<(f64, f64, u64)> = agent.lines()[marks[i]..]
            .iter()
            .filter_map(|l| agent_stats(l))
            .collect();
        let dropped: u64 = stats.iter().map(|s| s.2).sum();
        let captured_fps = stats.iter().map(|s| s.0).fold(0.0, f64::max);
        // Seconds in which nothing could be written, yet frames were captured
        // and dropped: the agent was blocked by the stopped viewer, not slow.
        let blocked = stats
            .iter()
            .filter(|s| s.1 == 0.0 && s.0 > 0.0 && s.2 > 0)
            .count();
        println!(
            "agent {id}: viewer stopped {:.0} s; RSS {} KiB before, {} KiB after 3 s, {} KiB after 15 s; {} stats lines ({blocked} with nothing sent), {dropped} frames dropped, up to {captured_fps:.1} fps still captured",
            stopped_for.as_secs_f64(),
            rss_before[i],
            rss_early[i],
            rss_late[i],
            stats.len()
        );
        assert!(
            !stats.is_empty(),
            "agent {id} logged no stats while the viewer was stopped"
        );
        assert!(captured_fps > 0.0, "agent {id} stopped capturing");
        assert!(
            dropped > 0,
            "agent {id} dropped no frames while the viewer was stopped"
        );
        assert!(
            blocked > 0,
            "agent {id} never stalled while the viewer was stopped:\n{}",
            agent.tail(15)
        );
        // Queueing instead of dropping would grow by ~0.9 MB per frame, over
        // 100 MB in these 12 s; flat means within the allocator's noise.
        let growth = rss_late[i].saturating_sub(rss_early[i]);
        assert!(
            growth * 10 <= rss_early[i] || growth < 8 * 1024,
            "agent {id} RSS grew from {} to {} KiB while the viewer was stopped",
            rss_early[i],
            rss_late[i]
        );
    }

    let after = wait_for_frames(&counter, &ids, &counts_stopped, 10).unwrap_or_else(|c| {
        panic!("frames did not arrive after SIGCONT: {c:?} (at stop {counts_stopped:?})")
    });
    println!("after SIGCONT: recorded {after:?}, {counts_stopped:?} when the viewer was stopped");
}

/// 1000 connection attempts while two agents stream: some close at once,
/// some send a hostile header, some stay open to exhaust --max-clients. The
/// viewer stays up, refuses what it must, and both agents' frames keep
/// arriving on their original connections.
#[test]
fn connection_flood_leaves_streaming_agents_alone() {
    const ATTEMPTS: usize = 1000;
    const THREADS: usize = 4;
    let _heavy = heavy();
    let tmp = tempfile::tempdir().expect("temp dir");
    let record = tmp.path().join("record");
    let counter = RecordCounter::start(&record);
    let (mut viewer, addr) = start_viewer(&viewer_args(
        "127.0.0.1:0",
        &record,
        &["--max-clients", "16", "--idle-timeout", "5"],
    ));
    let ids = [7u8, 8];
    let agents: Vec<LoggedChild> = ids
        .iter()
        .map(|&id| start_pattern_agent(addr, id, "320x240", 15, &["--workers", "1"]))
        .collect();
    let before = wait_for_frames(&counter, &ids, &HashMap::new(), 5)
        .unwrap_or_else(|c| panic!("agents do not stream: {c:?}"));
    let mark = viewer.line_count();

    let started = Instant::now();
    let results: Vec<FloodStats> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| s.spawn(move || flood(addr, t, ATTEMPTS / THREADS)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("flood thread"))
            .collect()
    });
    let flood_time = started.elapsed();
    let total = results
        .iter()
        .fold(FloodStats::default(), |a, b| FloodStats {
            connected: a.connected + b.connected,
            failed: a.failed + b.failed,
            closed_by_viewer: a.closed_by_viewer + b.closed_by_viewer,
            held: a.held + b.held,
        });
    assert_eq!(total.connected + total.failed, ATTEMPTS);
    let during = counter.counts();
    println!(
        "flood: {ATTEMPTS} attempts in {:.2} s: {} connected ({} held open, {} closed by the viewer), {} failed to connect; recorded before {before:?}, at the end {during:?}",
        flood_time.as_secs_f64(),
        total.connected,
        total.held,
        total.closed_by_viewer,
        total.failed
    );

    assert!(
        viewer.try_status().is_none(),
        "viewer died in the flood:\n{}",
        viewer.tail(20)
    );
    let after = wait_for_frames(&counter, &ids, &during, 10)
        .unwrap_or_else(|c| panic!("agents' frames stopped after the flood: {c:?}"));
    for (agent, id) in agents.iter().zip(ids) {
        let lines = agent.lines();
        let reconnects = lines.iter().filter(|l| l.contains("connected to")).count();
        assert_eq!(
            reconnects,
            1,
            "agent {id} kept its one connection:\n{}",
            agent.tail(10)
        );
    }
    let lines = viewer.lines();
    let hurt = lines[mark..].iter().find(|l| {
        ids.iter().any(|id| {
            l.contains(&format!("camera {id} ("))
                && (l.contains("dropped") || l.contains("disconnected"))
        })
    });
    assert!(
        hurt.is_none(),
        "the flood cost an agent its connection: {hurt:?}"
    );
    println!("after the flood: recorded {after:?}; viewer still up");
    // A new client is still served once the flood is over.
    let late = start_pattern_agent(addr, 9, "320x240", 15, &["--workers", "1"]);
    wait_for_frames(&counter, &[9], &HashMap::new(), 3).unwrap_or_else(|c| {
        panic!(
            "a new agent is not served after the flood: {c:?}\n{}",
            late.tail(10)
        )
    });
}

#[derive(Default)]
struct FloodStats {
    connected: usize,
    failed: usize,
    /// Connections the viewer closed at once (over --max-clients, or for a
    /// hostile header).
    closed_by_viewer: usize,
    held: usize,
}

/// `n` connection attempts; every third closes at once, every third sends a
/// header announcing a 4 GiB body, every third is held open until the end.
fn flood(addr: SocketAddr, thread: usize, n: usize) -> FloodStats {
    use std::io::{Read, Write};
    let mut stats = FloodStats::default();
    let mut held = Vec::new();
    for i in 0..n {
        let stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => s,
            Err(_) => {
                stats.failed += 1;
                continue;
            }
        };
        stats.connected += 1;
        match (i + thread) % 3 {
            0 => drop(stream),
            1 => {
                let mut stream = stream;
                let _ = stream.write_all(&[200, 0xff, 0xff, 0xff, 0xff]);
                // Give the viewer up to 200 ms to close it; either way is fine.
                let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                let _ = stream.read(&mut [0u8; 1]);
            }
            _ => held.push(stream),
        }
    }
    for stream in &mut held {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(1)));
        if matches!(stream.read(&mut [0u8; 1]), Ok(0)) || matches!(stream.take_error(), Ok(Some(_)))
        {
            stats.closed_by_viewer += 1;
        }
    }
    stats.held = held.len();
    stats
}

/// Seconds the soak runs: `CAMSTREAM_SOAK_SECS`, default 300 (the issue's
/// five minutes).
fn soak_secs() -> u64 {
    std::env::var("CAMSTREAM_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

/// Eight pattern agents at 640x480 and 30 fps into one headless, recording
/// viewer for `CAMSTREAM_SOAK_SECS` (default 300 s). RSS of the viewer and
/// of agent 1 is taken after a warm-up (a fifth of the run, at most 30 s:
/// buffers and pools reach their working size first) and at the end; neither
/// may grow by more than 10%. Every frame an agent reports sent (its exit
/// line) must be recorded by the viewer. Runs the release binaries whatever
/// the test profile: this is a load test of what ships.
#[test]
fn soak_eight_agents_keeps_memory_flat_and_records_every_frame_sent() {
    let _heavy = heavy();
    let secs = soak_secs();
    let warmup = Duration::from_secs((secs / 5).clamp(1, 30));
    let tmp = tempfile::tempdir().expect("temp dir");
    let record = tmp.path().join("record");
    let counter = RecordCounter::start(&record);
    let mut cmd = Command::new(release_bin_path("viewer"));
    cmd.args(viewer_args(
        "127.0.0.1:0",
        &record,
        &["--stats-interval", "30"],
    ));
    let (mut viewer, addr) = start_viewer_cmd(cmd);
    let ids: Vec<u8> = (1..=8).collect();
    let mut agents: Vec<LoggedChild> = ids
        .iter()
        .map(|&id| {
            let mut cmd = Command::new(release_bin_path("agent"));
            cmd.args(["--source", "pattern", "--size", "640x480", "--fps", "30"])
                .args(["--workers", "1", "--stats-interval", "30"])
                .args(["--id", &id.to_string(), "--server", &addr.to_string()]);
            LoggedChild::spawn(&format!("agent {id}"), cmd)
        })
        .collect();

    let started = Instant::now();
    wait_for_frames(&counter, &ids, &HashMap::new(), 1)
        .unwrap_or_else(|c| panic!("not every agent streams: {c:?}"));
    std::thread::sleep(warmup.saturating_sub(started.elapsed()));
    let viewer_start = viewer.rss_kib().expect("viewer RSS");
    let agent_start = agents[0].rss_kib().expect("agent RSS");
    let (mut viewer_peak, mut agent_peak) = (viewer_start, agent_start);
    let mut trajectory = vec![(started.elapsed().as_secs(), viewer_start, agent_start)];
    let end = started + Duration::from_secs(secs);
    let mut next_sample = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        std::thread::sleep(
            Duration::from_secs(1).min(end.saturating_duration_since(Instant::now())),
        );
        let (v, a) = (
            viewer.rss_kib().expect("viewer alive"),
            agents[0].rss_kib().expect("agent 1 alive"),
        );
        viewer_peak = viewer_peak.max(v);
        agent_peak = agent_peak.max(a);
        if Instant::now() >= next_sample {
            trajectory.push((started.elapsed().as_secs(), v, a));
            next_sample += Duration::from_secs(30);
        }
    }
    let viewer_end = viewer.rss_kib().expect("viewer RSS");
    let agent_end = agents[0].rss_kib().expect("agent RSS");

    // Stop the agents (SIGINT: they finish the frame being written and exit 0).
    for agent in &agents {
        agent.signal("INT");
    }
    let mut sent = HashMap::new();
    for (agent, &id) in agents.iter_mut().zip(&ids) {
        agent.wait_success(PATIENCE);
        let (captured, n, dropped) = agent_totals(agent)
            .unwrap_or_else(|| panic!("agent {id} logged no totals:\n{}", agent.tail(10)));
        println!("agent {id}: {captured} captured, {n} sent, {dropped} dropped");
        sent.insert(id, n as usize);
    }
    // The viewer has every frame once it has seen each of the agent's
    // connections close ("camera N (PEER) disconnected after F frames").
    for (agent, id) in agents.iter().zip(&ids) {
        let connections = agent
            .lines()
            .iter()
            .filter(|l| l.contains("connected to"))
            .count();
        let label = format!("camera {id} (");
        wait_until(PATIENCE, || {
            let closed = viewer
                .lines()
                .iter()
                .filter(|l| l.contains(&label) && l.contains(" after "))
                .count();
            (closed >= connections).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "viewer did not see camera {id} disconnect:\n{}",
                viewer.tail(20)
            )
        });
    }
    viewer.signal("INT");
    viewer.wait_success(PATIENCE);
    let received = counter.counts();

    let trajectory: Vec<String> = trajectory
        .iter()
        .map(|(t, v, a)| format!("{t} s: viewer {v}, agent {a}"))
        .collect();
    println!("RSS (KiB) over time: {}", trajectory.join("; "));
    let total_sent: usize = sent.values().sum();
    let total_received: usize = received.values().sum();
    println!(
        "soak {secs} s (RSS start after a {} s warm-up): viewer RSS {viewer_start} -> {viewer_end} KiB (peak {viewer_peak}), agent 1 RSS {agent_start} -> {agent_end} KiB (peak {agent_peak}); frames sent {total_sent}, received {total_received}",
        warmup.as_secs()
    );
    for id in &ids {
        assert_eq!(
            received.get(id).copied().unwrap_or(0),
            sent[id],
            "camera {id}: frames received vs sent"
        );
    }
    assert!(
        viewer_end * 10 <= viewer_start * 11,
        "viewer RSS grew more than 10%: {viewer_start} -> {viewer_end} KiB"
    );
    assert!(
        agent_end * 10 <= agent_start * 11,
        "agent RSS grew more than 10%: {agent_start} -> {agent_end} KiB"
    );
}
