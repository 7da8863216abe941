//! Against a real V4L2 driver: vivid, in a QEMU guest running a stock Debian
//! kernel (the host kernel has no media subsystem). The agent captures
//! vivid's 75% colour bars in the guest and streams them to a headless viewer
//! on the host (the guest reaches the host's 127.0.0.1 as 10.0.2.2); the
//! recorded frames must show the right bars. Also: vivid's simulated unplug,
//! a camera sending only error-flagged frames (exit 3 after
//! `--capture-timeout`), `--reopen` after a fatal streaming error, and our
//! udev rule against udev's own rules and `v4l_id`.
//!
//! Setup once: `tests/vm/setup.sh` (as root). Missing setup fails these tests;
//! `CAMSTREAM_SKIP_VM=1` skips them on purpose. Run them alone with
//! `cargo test -p camstream-tests --test e2e vm::`.

use std::path::Path;
use std::time::Duration;

use camstream_tests::vivid::{check_vivid_recording, BAR_TOLERANCE};
use camstream_tests::vm::{run_guest, vm_enabled, GuestFile, GuestRun};
use camstream_tests::{bin_path, recorded_counts, wait_until, workspace_root, RecordingViewer};

/// Exit status of the agent when the camera is lost and `--reopen` is off
/// (agent/src/cli.rs `EXIT_CAMERA_LOST`).
const AGENT_EXIT_CAMERA_LOST: i32 = 3;

/// Guest timeout for a streaming run: boot (~4 s), then the agent converting
/// and gzipping frames under TCG, which is 10-50x slower than native.
const STREAM_TIMEOUT: Duration = Duration::from_secs(240);

/// Guest preamble: vivid as a webcam, and its text overlay off so the bars are
/// clean (the control persists on the device across opens).
pub(crate) const VIVID_UP: &str =
    "modprobe vivid $VIVID_WEBCAM || { echo 'cannot load vivid'; exit 90; }
[ -e /dev/video0 ] || { echo 'vivid made no /dev/video0'; exit 91; }
/usr/bin/v4l2-ctl -d /dev/video0 -c osd_text_mode=2 || exit 92
";

pub(crate) fn assert_guest_ok(run: &GuestRun, what: &str) {
    assert_eq!(
        run.status,
        Some(0),
        "{what}: guest exit {:?} after {:.1?}\n---- console ----\n{}",
        run.status,
        run.elapsed,
        run.tail(80)
    );
}

/// The guest boots, vivid loads, and its node is the webcam the other tests
/// rely on: YUYV at 640x480 and 1280x720, and a raw frame (captured by
/// v4l2-ctl, not our code) starts with 75% white, Y/U/V = b3/80/80.
#[test]
fn guest_vivid_is_a_yuyv_webcam_at_640x480_and_1280x720() {
    if !vm_enabled("vm::guest_vivid_is_a_yuyv_webcam_at_640x480_and_1280x720") {
        return;
    }
    let script = format!(
        "{VIVID_UP}
/usr/bin/v4l2-ctl -d /dev/video0 --list-formats-ext > /tmp/fmts || exit 93
grep -q YUYV /tmp/fmts && echo HAS_YUYV=1
grep -q 'Size: Discrete 640x480' /tmp/fmts && echo HAS_640x480=1
grep -q 'Size: Discrete 1280x720' /tmp/fmts && echo HAS_1280x720=1
/usr/bin/v4l2-ctl -d /dev/video0 --set-fmt-video=width=640,height=480,pixelformat=YUYV \
    --stream-mmap --stream-count=1 --stream-to=/tmp/f.yuyv || exit 94
echo FRAME_LEN=$(wc -c < /tmp/f.yuyv)
echo FIRST_BYTES=$(od -An -tx1 -N4 /tmp/f.yuyv | tr -d ' ')
echo UPTIME=$(cut -d' ' -f1 /proc/uptime)
"
    );
    let run = run_guest(&script, &[], Duration::from_secs(90));
    assert_guest_ok(&run, "vivid check");
    eprintln!(
        "vm: boot + vivid + one frame: {:.1?} host wall time, guest uptime {} s",
        run.elapsed,
        run.value("UPTIME").unwrap_or("?")
    );
    for key in ["HAS_YUYV", "HAS_640x480", "HAS_1280x720"] {
        assert_eq!(run.value(key), Some("1"), "{key}\n{}", run.tail(60));
    }
    assert_eq!(run.value("FRAME_LEN"), Some("614400"), "{}", run.tail(40));
    // YUYV: Y0 U Y1 V of two 75%-white pixels.
    assert_eq!(
        run.value("FIRST_BYTES"),
        Some("b380b380"),
        "{}",
        run.tail(40)
    );
}

/// Decodes every recorded frame, checks its size and vivid's bars (in the
/// middle of each eighth of the width, a 5x5 block at mid-height), and sorts
/// it by which bars it shows: returns (frames with the 75% bars of vivid's
/// default `test_pattern=0`, frames with the 100% bars of `test_pattern=1`).
/// A frame that shows neither fails the test.
fn check_recorded_bars(record_dir: &Path, width: u32, height: u32) -> (usize, usize) {
    let found = check_vivid_recording(record_dir, width, height).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !found.per_conn.is_empty(),
        "no frames recorded in {}",
        record_dir.display()
    );
    eprintln!(
        "checked {} frames of {width}x{height} ({} with 75% bars, {} with 100% bars): \
         largest bar colour deviation {} (tolerance {BAR_TOLERANCE})",
        found.bars_75 + found.bars_100,
        found.bars_75,
        found.bars_100,
        found.worst
    );
    (found.bars_75, found.bars_100)
}

/// The agent in the guest captures vivid at `size`/`fps` and sends `frames`
/// frames to a headless recording viewer on the host; every recorded frame
/// has the size and the bars.
fn stream_bars(test: &str, width: u32, height: u32, fps: u32, frames: u32, id: u8) {
    let mut viewer = RecordingViewer::start(&[]);
    let script = format!(
        "{VIVID_UP}
/agent --device /dev/video0 --server 10.0.2.2:{port} --size {width}x{height} --fps {fps} \
    --frames {frames} --id {id} --stats-interval 5
rc=$?
echo UPTIME=$(cut -d' ' -f1 /proc/uptime)
exit $rc
",
        port = viewer.addr.port()
    );
    let run = run_agent_in_guest(&script, STREAM_TIMEOUT);
    assert_guest_ok(&run, test);
    eprintln!(
        "{test}: {frames} frames of {width}x{height} from the guest in {:.1?} (guest uptime at the end {} s)",
        run.elapsed,
        run.value("UPTIME").unwrap_or("?")
    );
    // The agent exits once its frames are written; the viewer may still be
    // decoding the last ones.
    let want = frames as usize;
    let counted = wait_until(Duration::from_secs(20), || {
        let n: usize = recorded_counts(viewer.record_dir()).values().sum();
        (n >= want).then_some(n)
    });
    let n = recorded_counts(viewer.record_dir());
    assert!(
        counted.is_some(),
        "{test}: the viewer recorded {n:?} frames, want {want} for camera {id} (viewer exit {:?})",
        viewer.child.try_status()
    );
    assert_eq!(
        n.keys().copied().collect::<Vec<_>>(),
        vec![id],
        "{test}: frames from unexpected camera ids"
    );
    let (bars_75, bars_100) = check_recorded_bars(viewer.record_dir(), width, height);
    assert_eq!(
        (bars_75, bars_100),
        (bars_75.max(want), 0),
        "{test}: want at least {want} frames, all with vivid's default 75% bars"
    );
}

/// The main case: a webcam at 640x480 and 25 fps (vivid's default is
/// 640x360 at 5 fps, so the agent must set both).
#[test]
fn agent_streams_vivid_bars_640x480() {
    if !vm_enabled("vm::agent_streams_vivid_bars_640x480") {
        return;
    }
    stream_bars("vm::agent_streams_vivid_bars_640x480", 640, 480, 25, 50, 7);
}

/// Another size: 1280x720 (vivid offers at most 12.5 fps there).
#[test]
fn agent_streams_vivid_bars_1280x720() {
    if !vm_enabled("vm::agent_streams_vivid_bars_1280x720") {
        return;
    }
    stream_bars(
        "vm::agent_streams_vivid_bars_1280x720",
        1280,
        720,
        10,
        10,
        9,
    );
}

/// Guest script: start the agent in the background with `extra` flags, wait
/// until it has the device open and frames flow, then press vivid's
/// `disconnect` button (what pulling a USB cable does to a driver).
///
/// vivid comes back by itself once the last process that has one of its
/// nodes open closes it, so a second process (`$holder`) keeps /dev/video0
/// open: the camera stays unplugged until the script kills it.
fn unplug_script(port: u16, extra: &str) -> String {
    format!(
        "{VIVID_UP}
/agent --device /dev/video0 --server 10.0.2.2:{port} --size 640x480 --fps 25 --id 11 \
    --stats-interval 0 {extra} > /tmp/agent.log 2>&1 &
pid=$!
{AWAIT_AGENT_HOLDS_VIDEO0}
# Let it stream for a while before the unplug.
sleep 3
kill -0 $pid 2>/dev/null || {{ echo 'agent exited while streaming'; cat /tmp/agent.log; exit 97; }}
sleep 100000 < /dev/video0 &
holder=$!
t0=$(cut -d' ' -f1 /proc/uptime)
/usr/bin/v4l2-ctl -d /dev/video0 -c disconnect=1 || {{ echo 'cannot press disconnect'; exit 98; }}
echo DISCONNECT_AT=$t0
"
    )
}

/// Runs `script` in a guest with the agent under test copied to `/agent`.
pub(crate) fn run_agent_in_guest(script: &str, timeout: Duration) -> GuestRun {
    let agent = bin_path("agent");
    let files = [GuestFile {
        host: &agent,
        guest: "/agent",
    }];
    run_guest(script, &files, timeout)
}

/// Guest script: prints the background agent's log between the markers
/// that [`agent_log`] looks for.
const PRINT_AGENT_LOG: &str = "echo '---- agent log ----'
cat /tmp/agent.log
echo '---- end ----'
";

/// Guest script: waits (at most 60 s) until the background agent `$pid`
/// holds /dev/video0 open; exits 95 if it never does, 96 if it exits first.
const AWAIT_AGENT_HOLDS_VIDEO0: &str = "i=0
until ls -l /proc/$pid/fd 2>/dev/null | grep -q /dev/video0; do
    i=$((i+1)); [ $i -gt 600 ] && { echo 'agent never opened /dev/video0'; cat /tmp/agent.log; exit 95; }
    kill -0 $pid 2>/dev/null || { echo 'agent exited before opening the device'; cat /tmp/agent.log; exit 96; }
    sleep 0.1
done";

/// Guest script: SIGTERM to the background agent `$pid` (SIGKILL if it is
/// still there 15 s later) and its status as `AGENT_EXIT`, which
/// [`assert_sigterm_exit_0`] checks.
const STOP_AGENT_WITH_SIGTERM: &str = "kill -TERM $pid
( sleep 15; kill -9 $pid 2>/dev/null ) &
wait $pid
echo AGENT_EXIT=$?";

/// The agent stopped by [`STOP_AGENT_WITH_SIGTERM`] exited with status 0.
fn assert_sigterm_exit_0(run: &GuestRun) {
    assert_eq!(
        run.value("AGENT_EXIT"),
        Some("0"),
        "SIGTERM must stop the agent with status 0\n{}",
        run.tail(60)
    );
}

/// Reads an agent's `/proc/PID/stat` CPU ticks (utime + stime) in the guest.
const CPU_TICKS_FN: &str = "cpu_ticks() { awk '{print $14 + $15}' /proc/$1/stat; }\n";

/// Without `--reopen`, losing the camera ends the agent with its distinct
/// status and a log line that says so.
#[test]
fn agent_exits_3_when_vivid_is_unplugged() {
    if !vm_enabled("vm::agent_exits_3_when_vivid_is_unplugged") {
        return;
    }
    let viewer = RecordingViewer::start(&[]);
    let script = format!(
        "{}
# A watchdog, so a hung agent is a test failure with its log, not a VM timeout.
( sleep 30; kill -9 $pid 2>/dev/null ) &
wait $pid
rc=$?
echo AGENT_EXIT=$rc
echo EXIT_AFTER_S=$(awk -v a=$t0 -v b=$(cut -d' ' -f1 /proc/uptime) 'BEGIN {{ printf \"%.2f\", b - a }}')
{PRINT_AGENT_LOG}",
        unplug_script(viewer.addr.port(), "")
    );
    let run = run_agent_in_guest(&script, Duration::from_secs(150));
    assert_guest_ok(&run, "unplug without --reopen");
    let exit_after = run.value("EXIT_AFTER_S").unwrap_or("?");
    eprintln!(
        "vm::agent_exits_3_when_vivid_is_unplugged: the agent exited {exit_after} s (guest clock, TCG) after the disconnect press"
    );
    assert_eq!(
        run.value("AGENT_EXIT"),
        Some(AGENT_EXIT_CAMERA_LOST.to_string().as_str()),
        "the agent must exit with status {AGENT_EXIT_CAMERA_LOST} (camera lost) after the unplug\n{}",
        run.tail(60)
    );
    let log = agent_log(&run);
    let lower = log.to_lowercase();
    assert!(
        ["lost", "disconnect", "unplug", "gone"]
            .iter()
            .any(|w| lower.contains(w)),
        "the agent's log must say the camera went away:\n{log}"
    );
    // Frames did reach the host before the unplug: the stream was real.
    let counts = recorded_counts(viewer.record_dir());
    assert!(
        counts.get(&11).copied().unwrap_or(0) > 0,
        "no frames reached the viewer before the unplug: {counts:?}\n{log}"
    );
}

/// Issue 16: frames the agent drops (flagged corrupt by the driver, or
/// short) used to reset the capture timeout, so a camera that sends nothing
/// but broken frames never made the agent exit with status 3, and systemd
/// never restarted it. Here vivid flags every buffer with
/// V4L2_BUF_FLAG_ERROR (its `inject_v4l2_buf_flag_error` button marks the
/// next buffer; a loop presses it several times per frame at 1 fps), so
/// frames keep coming, every one broken. The agent must drop them all, say
/// so once, and exit 3 after `--capture-timeout` (4 s) without a good one.
#[test]
fn agent_exits_3_when_vivid_sends_only_broken_frames() {
    let test = "vm::agent_exits_3_when_vivid_sends_only_broken_frames";
    if !vm_enabled(test) {
        return;
    }
    let viewer = RecordingViewer::start(&[]);
    let port = viewer.addr.port();
    let script = format!(
        "{VIVID_UP}
# Flag every buffer before streaming starts, and keep doing so: vivid clears
# the flag at each frame, and a frame comes once a second.
( while :; do /usr/bin/v4l2-ctl -d /dev/video0 -c inject_v4l2_buf_flag_error=1 2>/dev/null; sleep 0.1; done ) &
presser=$!
sleep 1
t0=$(cut -d' ' -f1 /proc/uptime)
/agent --device /dev/video0 --server 10.0.2.2:{port} --size 640x480 --fps 1 --id 12 \
    --capture-timeout 4 --stats-interval 0 > /tmp/agent.log 2>&1 &
pid=$!
# A watchdog, so an agent that never gives up is a test failure with its log.
( sleep 60; kill -9 $pid 2>/dev/null ) &
wait $pid
rc=$?
kill $presser
echo AGENT_EXIT=$rc
echo EXIT_AFTER_S=$(awk -v a=$t0 -v b=$(cut -d' ' -f1 /proc/uptime) 'BEGIN {{ printf \"%.2f\", b - a }}')
{PRINT_AGENT_LOG}"
    );
    let run = run_agent_in_guest(&script, Duration::from_secs(150));
    assert_guest_ok(&run, "broken frames only");
    let log = agent_log(&run);
    eprintln!(
        "{test}: the agent exited {} s (guest clock, TCG) after it started",
        run.value("EXIT_AFTER_S").unwrap_or("?")
    );
    assert_eq!(
        run.value("AGENT_EXIT"),
        Some(AGENT_EXIT_CAMERA_LOST.to_string().as_str()),
        "an agent getting only broken frames must exit with status {AGENT_EXIT_CAMERA_LOST} \
         after --capture-timeout (137: it never gave up and the watchdog killed it)\n{log}"
    );
    assert!(
        log.contains("dropping a short or corrupt frame"),
        "the agent did get the broken frames, and said so:\n{log}"
    );
    assert_eq!(
        log.matches("dropping a short or corrupt frame").count(),
        1,
        "said once, the rest at debug level:\n{log}"
    );
    assert!(
        log.contains("no frame from /dev/video0 for 4 s"),
        "the exit says why:\n{log}"
    );
    let counts = recorded_counts(viewer.record_dir());
    assert_eq!(
        counts.get(&12).copied().unwrap_or(0),
        0,
        "a broken frame reached the viewer: {counts:?}\n{log}"
    );
}

/// `--reopen` after a streaming failure, against a real driver: vivid's
/// `inject_fatal_streaming_error` puts its queue in the error state a broken
/// camera leaves behind (DQBUF fails with EIO). The agent must give that
/// session up, release the device, and open it again: vivid refuses a
/// second owner of its queue (EBUSY), so frames captured after the error
/// (vivid draws 100% bars from then on) reach the viewer only if the old
/// session let go. vivid's STREAMOFF succeeds even then, so this does not
/// reach the failed-STREAMOFF path of issue 16 (the agent before its fix
/// passes too); `mmap::a_failed_streamoff_still_releases_the_fd_and_every_mapping`
/// pins that one on a fake device. The agent's `--metrics` counts the loss.
#[test]
fn agent_reopen_after_a_fatal_streaming_error_is_not_busy() {
    let test = "vm::agent_reopen_after_a_fatal_streaming_error_is_not_busy";
    if !vm_enabled(test) {
        return;
    }
    let viewer = RecordingViewer::start(&[]);
    let port = viewer.addr.port();
    let script = format!(
        "{VIVID_UP}
/agent --device /dev/video0 --server 10.0.2.2:{port} --size 640x480 --fps 10 --id 13 \
    --stats-interval 0 --reopen --metrics 127.0.0.1:9101 > /tmp/agent.log 2>&1 &
pid=$!
{AWAIT_AGENT_HOLDS_VIDEO0}
sleep 3
/usr/bin/v4l2-ctl -d /dev/video0 -c inject_fatal_streaming_error=1 || {{ echo 'cannot inject the error'; exit 98; }}
/usr/bin/v4l2-ctl -d /dev/video0 -c test_pattern=1 || {{ echo 'cannot set test_pattern'; exit 99; }}
sleep 8
echo CAMERA_LOSSES=$(busybox wget -qO- http://127.0.0.1:9101/metrics | grep '^camstream_agent_camera_losses_total' | cut -d' ' -f2)
{STOP_AGENT_WITH_SIGTERM}
{PRINT_AGENT_LOG}"
    );
    let run = run_agent_in_guest(&script, Duration::from_secs(180));
    assert_guest_ok(&run, "fatal streaming error with --reopen");
    assert_eq!(
        run.value("CAMERA_LOSSES"),
        Some("1"),
        "--metrics counts the camera lost once\n{}",
        run.tail(60)
    );
    let log = agent_log(&run);
    assert!(
        log.contains("Input/output error") && log.contains("--reopen"),
        "the agent must report the streaming error and retry:\n{log}"
    );
    assert!(
        !log.to_lowercase().contains("busy"),
        "the reopen found the camera busy: the old session still holds it\n{log}"
    );
    let sessions = log.matches("/dev/video0: 640x480 YUYV @").count();
    assert!(
        sessions >= 2,
        "{sessions} capture sessions: the agent never streamed again after the error\n{log}"
    );
    assert_sigterm_exit_0(&run);
    let (bars_75, bars_100) = check_recorded_bars(viewer.record_dir(), 640, 480);
    eprintln!("{test}: {bars_75} frames before the error, {bars_100} after the reopen");
    assert!(
        bars_75 > 0,
        "no frames reached the viewer before the error\n{log}"
    );
    assert!(
        bars_100 > 0,
        "no frame captured after the error reached the viewer\n{log}"
    );
}

/// With `--reopen`, losing the camera neither ends the agent nor makes it
/// spin: while the camera is gone it uses little CPU; when the camera comes
/// back it streams again (vivid then draws 100% bars instead of 75%, so the
/// host can tell those frames apart); and it still stops cleanly on SIGTERM.
#[test]
fn agent_reopen_waits_quietly_and_resumes_after_vivid_unplug() {
    let test = "vm::agent_reopen_waits_quietly_and_resumes_after_vivid_unplug";
    if !vm_enabled(test) {
        return;
    }
    let viewer = RecordingViewer::start(&[]);
    let script = format!(
        "{CPU_TICKS_FN}{}
# Let the loss be noticed (capture timeout, encoder threads draining).
sleep 4
kill -0 $pid 2>/dev/null || {{ echo AGENT_ALIVE=0; wait $pid; echo AGENT_EXIT=$?; cat /tmp/agent.log; exit 0; }}
echo AGENT_ALIVE=1
c0=$(cpu_ticks $pid); w0=$(cut -d' ' -f1 /proc/uptime)
sleep 5
c1=$(cpu_ticks $pid); w1=$(cut -d' ' -f1 /proc/uptime)
echo CPU_TICKS=$((c1 - c0))
echo WALL_S=$(awk -v a=$w0 -v b=$w1 'BEGIN {{ printf \"%.2f\", b - a }}')
# Plug the camera back in: the holder closes, vivid re-registers its nodes.
kill $holder
t1=$(cut -d' ' -f1 /proc/uptime)
i=0
until ls -l /proc/$pid/fd 2>/dev/null | grep -q /dev/video0; do
    i=$((i+1)); [ $i -gt 300 ] && break
    sleep 0.1
done
if ls -l /proc/$pid/fd 2>/dev/null | grep -q /dev/video0; then
    echo REOPENED_AFTER_S=$(awk -v a=$t1 -v b=$(cut -d' ' -f1 /proc/uptime) 'BEGIN {{ printf \"%.2f\", b - a }}')
    # From now on vivid draws 100% bars: frames with them were captured after the replug.
    /usr/bin/v4l2-ctl -d /dev/video0 -c test_pattern=1 || echo 'cannot set test_pattern'
    sleep 8
else
    echo REOPENED_AFTER_S=never
fi
{STOP_AGENT_WITH_SIGTERM}
{PRINT_AGENT_LOG}",
        unplug_script(viewer.addr.port(), "--reopen")
    );
    let run = run_agent_in_guest(&script, Duration::from_secs(180));
    assert_guest_ok(&run, "unplug with --reopen");
    let log = agent_log(&run);
    assert_eq!(
        run.value("AGENT_ALIVE"),
        Some("1"),
        "with --reopen the agent must keep running after the unplug\n{}",
        run.tail(60)
    );
    // USER_HZ is 100 on Debian's kernel: ticks are centiseconds.
    let ticks: f64 = run
        .value("CPU_TICKS")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no CPU_TICKS\n{}", run.tail(60)));
    let wall: f64 = run
        .value("WALL_S")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no WALL_S\n{}", run.tail(60)));
    let share = ticks / 100.0 / wall;
    let reopened = run.value("REOPENED_AFTER_S").unwrap_or("?");
    eprintln!(
        "{test}: while unplugged {:.2} s CPU over {wall:.2} s wall ({:.0}% of a core); \
         device reopened {reopened} s (guest clock) after the replug",
        ticks / 100.0,
        share * 100.0
    );
    // A busy loop would use the whole (only) core; retrying once a second
    // needs next to nothing. Generous, as TCG is slow.
    assert!(
        share < 0.25,
        "the agent used {:.0}% of the CPU while the camera was gone: busy-looping?\n{log}",
        share * 100.0,
    );
    assert_ne!(
        reopened, "never",
        "the agent did not reopen /dev/video0 within 30 s of the camera coming back\n{log}"
    );
    assert_sigterm_exit_0(&run);
    let (bars_75, bars_100) = check_recorded_bars(viewer.record_dir(), 640, 480);
    assert!(
        bars_75 > 0,
        "no frames reached the viewer before the unplug\n{log}"
    );
    assert!(
        bars_100 > 0,
        "the agent reopened the camera but no frame captured after the replug reached the viewer \
         ({bars_75} frames from before the unplug)\n{log}"
    );
}

/// The agent's log as the guest printed it between the markers.
fn agent_log(run: &GuestRun) -> String {
    run.console
        .split("---- agent log ----")
        .nth(1)
        .and_then(|rest| rest.split("---- end ----").next())
        .unwrap_or(&run.console)
        .replace('\r', "")
}

/// Our udev rule against udev's own `60-persistent-v4l.rules` and `v4l_id` on
/// real V4L2 nodes: the capture node asks systemd for
/// `camera-agent@video0.service`, no other node does. vivid makes, in one
/// guest, a webcam-like device with a capture node (video0) and a metadata
/// capture node (like a UVC camera's second node), and a second device with
/// only an output node and a radio receiver.
#[test]
fn udev_rule_wants_agent_for_capture_node_only() {
    if !vm_enabled("vm::udev_rule_wants_agent_for_capture_node_only") {
        return;
    }
    let rule = workspace_root().join("udev/70-camera-agent.rules");
    assert!(
        rule.exists(),
        "{} is missing (the deployment issue adds it)",
        rule.display()
    );
    // node_types bits: 0x1 video capture, 0x20000 metadata capture,
    // 0x100 video output, 0x10 radio receiver.
    let script = "modprobe vivid n_devs=2 node_types=0x20001,0x110 vid_cap_nr=0,-1 \
num_inputs=1,1 input_types=0x0,0x0 || exit 90
mkdir -p /run/udev /etc/udev
for node in /sys/class/video4linux/*; do
    k=$(basename $node)
    /usr/bin/udevadm test --action=add $node > /tmp/udev.$k 2>&1 || { cat /tmp/udev.$k; exit 91; }
    caps=$(sed -n 's/^ID_V4L_CAPABILITIES=//p' /tmp/udev.$k)
    tags=$(sed -n 's/^TAGS=//p' /tmp/udev.$k)
    wants=$(sed -n 's/^SYSTEMD_WANTS=//p' /tmp/udev.$k)
    echo \"NODE $k name='$(cat $node/name)' index=$(cat $node/index) caps=$caps tags=$tags wants=$wants\"
done
echo '---- udevadm test video0 ----'
cat /tmp/udev.video0
";
    let run = run_guest(
        script,
        &[GuestFile {
            host: &rule,
            guest: "/usr/lib/udev/rules.d/70-camera-agent.rules",
        }],
        Duration::from_secs(90),
    );
    assert_guest_ok(&run, "udev rule");
    let nodes: Vec<&str> = run
        .console
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("NODE "))
        .collect();
    eprintln!("vm::udev: {}", nodes.join("\n         "));
    let (capture, others): (Vec<&str>, Vec<&str>) =
        nodes.iter().partition(|n| n.starts_with("video0 "));
    assert_eq!(capture.len(), 1, "no video0 in the guest\n{}", run.tail(80));
    assert!(
        capture[0].contains("caps=:capture:"),
        "video0 is not a capture node: {}",
        capture[0]
    );
    assert!(
        capture[0].contains("wants=camera-agent@video0.service"),
        "udevadm test on the capture node video0 must show SYSTEMD_WANTS=camera-agent@video0.service: {}\n{}",
        capture[0],
        run.tail(60)
    );
    // systemd only acts on SYSTEMD_WANTS of devices tagged "systemd".
    assert!(
        capture[0].contains("tags=:systemd:"),
        "the capture node must be tagged for systemd: {}",
        capture[0]
    );
    // The metadata node, the output node and the radio: all there, none wanted.
    assert!(
        others.len() >= 3,
        "vivid made fewer nodes than asked for: {nodes:?}"
    );
    assert!(
        others.iter().any(|n| n.contains("vid-out")),
        "no output-only node among {others:?}"
    );
    for node in &others {
        assert!(
            node.ends_with("wants="),
            "a node that is not a camera's capture node matched the rule: {node}"
        );
    }
}
