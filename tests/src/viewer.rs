//! Running the viewer under test: [`start_viewer`] waits for its `listening
//! on ADDR` line, and [`RecordingViewer`] is a headless viewer recording to a
//! temp dir, with the waits the tests need on what it recorded and logged.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::child::LoggedChild;
use crate::record::recorded_counts;
use crate::wait::{wait_until, PATIENCE};
use crate::workspace::bin_path;

/// Starts `viewer` with `args` (add `--listen 127.0.0.1:0` yourself) and
/// waits for its `listening on ADDR` line; returns the child and the address.
pub fn start_viewer(args: &[&str]) -> (LoggedChild, SocketAddr) {
    let mut cmd = Command::new(bin_path("viewer"));
    cmd.args(args);
    start_viewer_cmd(cmd)
}

/// Like [`start_viewer`], for a command the caller has prepared (e.g. with
/// `DISPLAY` set).
pub fn start_viewer_cmd(cmd: Command) -> (LoggedChild, SocketAddr) {
    let mut viewer = LoggedChild::spawn("viewer", cmd);
    let line = viewer
        .wait_for_line("listening on ", Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "viewer did not log `listening on ADDR` within 30 s (exit {:?})",
                viewer.try_status()
            )
        });
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse an address from viewer line `{line}`"));
    (viewer, addr)
}

/// `viewer --headless --listen 127.0.0.1:0 --record DIR` into a temp dir
/// that lives as long as this value.
pub struct RecordingViewer {
    pub child: LoggedChild,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl RecordingViewer {
    /// Starts it with `extra` arguments and waits until it listens.
    pub fn start(extra: &[&str]) -> RecordingViewer {
        let dir = tempfile::tempdir().expect("temp dir");
        let record = dir.path().to_str().expect("utf-8 temp path").to_owned();
        let mut args = vec!["--headless", "--listen", "127.0.0.1:0", "--record", &record];
        args.extend_from_slice(extra);
        let (child, addr) = start_viewer(&args);
        RecordingViewer { child, addr, dir }
    }

    /// The `--record` directory.
    pub fn record_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Frames recorded so far from camera `camera_id`, over all its connections.
    pub fn recorded(&self, camera_id: u8) -> usize {
        recorded_counts(self.record_dir())
            .get(&camera_id)
            .copied()
            .unwrap_or(0)
    }

    /// Waits until camera `camera_id` has at least `n` recorded files;
    /// returns how many it has.
    pub fn wait_recorded(&self, camera_id: u8, n: usize) -> usize {
        wait_until(PATIENCE, || {
            let got = self.recorded(camera_id);
            (got >= n).then_some(got)
        })
        .unwrap_or_else(|| {
            panic!(
                "camera {camera_id}: {} frames recorded, waited for {n}\n{}",
                self.recorded(camera_id),
                self.child.tail(30)
            )
        })
    }

    /// Waits for a log line after the first `mark` lines holding every one
    /// of `needles`; returns it.
    pub fn expect_line(&self, mark: usize, needles: &[&str]) -> String {
        let found = wait_until(PATIENCE, || {
            self.child
                .lines()
                .into_iter()
                .skip(mark)
                .find(|l| needles.iter().all(|n| l.contains(n)))
        });
        found.unwrap_or_else(|| {
            panic!(
                "no viewer log line with all of {needles:?}\n{}",
                self.child.tail(40)
            )
        })
    }

    /// Lines logged after the first `mark`.
    pub fn lines_after(&self, mark: usize) -> Vec<String> {
        self.child.lines().into_iter().skip(mark).collect()
    }
}
