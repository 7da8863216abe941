//! An ARM camera node against a real V4L2 driver: the aarch64 agent that
//! `packaging/cross-build.sh` makes runs in an emulated Cortex-A72 guest
//! (Debian trixie's arm64 kernel and its vivid module, `tests/vm/arm64/`)
//! and streams to a headless viewer on the host. Every frame must be
//! 640x480 with each of vivid's bars in its right colour, so the ARM build's
//! capture, YUYV->BGR conversion (its own code path on ARM) and BMP encoding
//! are checked end to end; and vivid's simulated unplug must end the agent
//! with its camera-lost status, 3.
//!
//! Setup once: `tests/vm/arm64/setup.sh` (as root; ./run-tests does it). The
//! first run on a machine also makes cross-build.sh's cached trixie build
//! root. `CAMSTREAM_SKIP_VM=1` skips these on purpose. Run them alone with
//! `cargo test -p camstream-tests --test e2e arm_node::`.

use std::time::Duration;

use camstream_tests::arm_vm::{aarch64_agent, arm_vm_enabled, run_arm_guest};
use camstream_tests::vivid::{check_vivid_recording, BAR_TOLERANCE};
use camstream_tests::vm::GuestRun;
use camstream_tests::{recorded_counts, wait_until, RecordingViewer};

/// Exit status of the agent when the camera is lost and `--reopen` is off
/// (agent/src/cli.rs `EXIT_CAMERA_LOST`).
const AGENT_EXIT_CAMERA_LOST: &str = "3";

/// Boot (~3 s of guest time) plus the agent converting and gzipping frames
/// on an emulated ARM core, many times slower than a real one.
const GUEST_TIMEOUT: Duration = Duration::from_secs(240);

/// Guest preamble: vivid as a webcam, its text overlay off so the bars are
/// clean, and proof that this is an ARM machine.
const VIVID_UP: &str = "echo MACHINE=$(uname -m)
modprobe vivid $VIVID_WEBCAM || { echo 'cannot load vivid'; exit 90; }
[ -e /dev/video0 ] || { echo 'vivid made no /dev/video0'; exit 91; }
/usr/bin/v4l2-ctl -d /dev/video0 -c osd_text_mode=2 || exit 92
";

fn assert_guest_ok(run: &GuestRun, what: &str) {
    assert_eq!(
        run.status,
        Some(0),
        "{what}: guest exit {:?} after {:.1?}\n---- console ----\n{}",
        run.status,
        run.elapsed,
        run.tail(80)
    );
    assert_eq!(
        run.value("MACHINE"),
        Some("aarch64"),
        "{what}: the guest is not an arm64 machine\n{}",
        run.tail(40)
    );
}

/// 30 frames of 640x480 from vivid, through the aarch64 agent, to the host.
#[test]
fn arm_agent_streams_vivid_bars_640x480() {
    let test = "arm_node::arm_agent_streams_vivid_bars_640x480";
    if !arm_vm_enabled(test) {
        return;
    }
    let agent = aarch64_agent();
    let mut viewer = RecordingViewer::start(&[]);
    let frames = 30;
    let id = 13;
    let script = format!(
        "{VIVID_UP}
/agent --device /dev/video0 --server 10.0.2.2:{port} --size 640x480 --fps 25 \
    --frames {frames} --id {id} --stats-interval 5
rc=$?
echo UPTIME=$(cut -d' ' -f1 /proc/uptime)
exit $rc
",
        port = viewer.addr.port()
    );
    let run = run_arm_guest(&script, &[(agent, "/agent")], GUEST_TIMEOUT);
    assert_guest_ok(&run, test);
    eprintln!(
        "{test}: {frames} frames of 640x480 from the arm64 guest in {:.1?} (guest uptime at the end {} s)",
        run.elapsed,
        run.value("UPTIME").unwrap_or("?")
    );
    // The agent exits once its frames are written; the viewer may still be
    // decoding the last ones.
    let counted = wait_until(Duration::from_secs(20), || {
        let n: usize = recorded_counts(viewer.record_dir()).values().sum();
        (n >= frames).then_some(n)
    });
    assert!(
        counted.is_some(),
        "the viewer recorded {:?} frames, want {frames} from camera {id} (viewer exit {:?})",
        recorded_counts(viewer.record_dir()),
        viewer.child.try_status()
    );
    let found = check_vivid_recording(viewer.record_dir(), 640, 480)
        .unwrap_or_else(|e| panic!("{test}: {e}\n{}", run.tail(40)));
    eprintln!(
        "{test}: {} frames with vivid's 75% bars, largest bar colour deviation {} (tolerance {BAR_TOLERANCE})",
        found.bars_75, found.worst
    );
    assert_eq!(
        found.per_conn.iter().map(|&(c, _)| c).collect::<Vec<_>>(),
        vec![id],
        "frames from unexpected camera ids or connections: {:?}",
        found.per_conn
    );
    assert_eq!(
        (found.bars_75, found.bars_100),
        (found.bars_75.max(frames), 0),
        "want at least {frames} frames, all with vivid's default 75% bars"
    );
}

/// vivid's `disconnect` control while the aarch64 agent streams: the agent
/// must notice, say so, and exit 3. A second process keeps /dev/video0 open
/// so the node does not come back when the agent closes it.
#[test]
fn arm_agent_exits_3_when_vivid_is_unplugged() {
    let test = "arm_node::arm_agent_exits_3_when_vivid_is_unplugged";
    if !arm_vm_enabled(test) {
        return;
    }
    let agent = aarch64_agent();
    let viewer = RecordingViewer::start(&[]);
    let script = format!(
        "{VIVID_UP}
/agent --device /dev/video0 --server 10.0.2.2:{port} --size 640x480 --fps 25 --id 14 \
    --stats-interval 0 > /tmp/agent.log 2>&1 &
pid=$!
# Wait (at most 60 s) until the agent holds /dev/video0 open.
i=0
until ls -l /proc/$pid/fd 2>/dev/null | grep -q /dev/video0; do
    i=$((i+1)); [ $i -gt 600 ] && {{ echo 'agent never opened /dev/video0'; cat /tmp/agent.log; exit 95; }}
    kill -0 $pid 2>/dev/null || {{ echo 'agent exited before opening the device'; cat /tmp/agent.log; exit 96; }}
    sleep 0.1
done
# Let it stream for a while before the unplug.
sleep 3
kill -0 $pid 2>/dev/null || {{ echo 'agent exited while streaming'; cat /tmp/agent.log; exit 97; }}
sleep 100000 < /dev/video0 &
t0=$(cut -d' ' -f1 /proc/uptime)
/usr/bin/v4l2-ctl -d /dev/video0 -c disconnect=1 || {{ echo 'cannot press disconnect'; exit 98; }}
# A watchdog, so a hung agent is a test failure with its log, not a VM timeout.
( sleep 30; kill -9 $pid 2>/dev/null ) &
wait $pid
echo AGENT_EXIT=$?
echo EXIT_AFTER_S=$(awk -v a=$t0 -v b=$(cut -d' ' -f1 /proc/uptime) 'BEGIN {{ printf \"%.2f\", b - a }}')
echo '---- agent log ----'
cat /tmp/agent.log
echo '---- end ----'
",
        port = viewer.addr.port()
    );
    let run = run_arm_guest(&script, &[(agent, "/agent")], GUEST_TIMEOUT);
    assert_guest_ok(&run, test);
    let log = run
        .console
        .split("---- agent log ----")
        .nth(1)
        .and_then(|rest| rest.split("---- end ----").next())
        .unwrap_or(&run.console)
        .replace('\r', "");
    eprintln!(
        "{test}: the aarch64 agent exited {} s (guest clock, TCG) after the disconnect press",
        run.value("EXIT_AFTER_S").unwrap_or("?")
    );
    assert_eq!(
        run.value("AGENT_EXIT"),
        Some(AGENT_EXIT_CAMERA_LOST),
        "the agent must exit with status {AGENT_EXIT_CAMERA_LOST} (camera lost) after the unplug\n{log}"
    );
    let lower = log.to_lowercase();
    assert!(
        ["lost", "disconnect", "unplug", "gone"]
            .iter()
            .any(|w| lower.contains(w)),
        "the agent's log must say the camera went away:\n{log}"
    );
    let sent = recorded_counts(viewer.record_dir())
        .get(&14)
        .copied()
        .unwrap_or(0);
    assert!(
        sent > 0,
        "no frames reached the viewer before the unplug: the stream was not real\n{log}"
    );
}
