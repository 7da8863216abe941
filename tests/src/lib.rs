//! Helpers for camstream's end-to-end tests: finding (and building) the real
//! `agent` and `viewer` binaries, and temp dirs.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Path of a workspace binary (`agent` or `viewer`), built on first use with
/// the same profile as the running test, so `cargo test --workspace` always
/// tests the current code.
pub fn bin_path(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let profile_dir = profile_dir();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--bin", "agent", "--bin", "viewer"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .expect("run cargo build for the binaries under test");
        assert!(status.success(), "cargo build of agent and viewer failed");
    });
    profile_dir.join(name)
}

/// `target/<profile>`, found from this test executable (`target/<profile>/deps/e2e-*`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

// ---------------------------------------------------------------------------
// Processes under test, their logs, and the Python peers (interop, windows,
// faults and soak tests).
// ---------------------------------------------------------------------------

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The workspace root (the directory holding `Cargo.lock`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root")
        .to_path_buf()
}

/// The shared venv's Python, with opencv-python-headless and numpy.
/// Panics with the command that creates it if it is missing.
pub fn venv_python() -> PathBuf {
    let python = workspace_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: create the venv with tests/python/setup.sh (OpenCV and numpy for the interop tests)",
        python.display()
    );
    python
}

/// A script of the original Python/OpenCV design under `tests/interop/`.
pub fn interop_script(name: &str) -> PathBuf {
    workspace_root().join("tests/interop").join(name)
}

/// Output lines of a child, shared with the threads that read its pipes.
#[derive(Default)]
struct LogLines {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

/// A child process whose stdout and stderr are read line by line into memory,
/// so a test can wait for a log line. Dropping it kills the child (SIGKILL);
/// if the test is panicking, the last lines of its log are printed to help.
pub struct LoggedChild {
    name: String,
    child: Child,
    log: Arc<LogLines>,
    status: Option<ExitStatus>,
}

impl LoggedChild {
    /// Spawns `cmd` with piped stdout/stderr; `name` prefixes its log dump.
    pub fn spawn(name: &str, mut cmd: Command) -> LoggedChild {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let log = Arc::new(LogLines::default());
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("piped stdout"));
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("piped stderr"));
        for pipe in [out, err] {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    log.lines
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(line);
                    log.grew.notify_all();
                }
            });
        }
        LoggedChild {
            name: name.to_string(),
            child,
            log,
            status: None,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A copy of every line logged so far (stdout and stderr interleaved).
    pub fn lines(&self) -> Vec<String> {
        self.log
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until a line *after the first `skip` lines* contains `needle`;
    /// returns it, or `None` after `timeout`.
    pub fn wait_for_line_after(
        &self,
        skip: usize,
        needle: &str,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(line) = lines.iter().skip(skip).find(|l| l.contains(needle)) {
                return Some(line.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = self
                .log
                .grew
                .wait_timeout(lines, left.min(Duration::from_millis(200)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until any line contains `needle`; see [`Self::wait_for_line_after`].
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_for_line_after(0, needle, timeout)
    }

    /// Number of lines logged so far (a mark for [`Self::wait_for_line_after`]).
    pub fn line_count(&self) -> usize {
        self.log
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// The exit status if the child has exited, without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal by name (`INT`, `TERM`, `KILL`, `STOP`, `CONT`) with the
    /// shell's `kill` builtin, which every Debian has (procps may be absent).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("sh")
            .args(["-c", &format!("kill -s {sig} {}", self.pid())])
            .status()
            .expect("run sh -c kill");
        assert!(
            status.success(),
            "kill -s {sig} {} ({}) failed",
            self.pid(),
            self.name
        );
    }

    /// The child's resident set size in KiB, from /proc (None once it exited).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }

    /// The last `n` lines, as one string for assertion messages.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines();
        let start = lines.len().saturating_sub(n);
        lines[start..].join("\n")
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            // SIGCONT first: a stopped child cannot be reaped until it runs.
            let _ = Command::new("sh")
                .args(["-c", &format!("kill -s CONT {}", self.pid())])
                .status();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- last log lines of {} ----\n{}",
                self.name,
                self.tail(40)
            );
        }
    }
}

/// Resident set size of a process in KiB (`VmRSS` in /proc/PID/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Polls `check` every 20 ms until it returns `Some`, or gives `None` after `timeout`.
pub fn wait_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `viewer` with `args` (add `--listen 127.0.0.1:0` yourself) and
/// waits for its `listening on ADDR` line; returns the child and the address.
pub fn start_viewer(args: &[&str]) -> (LoggedChild, std::net::SocketAddr) {
    let mut cmd = Command::new(bin_path("viewer"));
    cmd.args(args);
    start_viewer_cmd(cmd)
}

/// Like [`start_viewer`], for a command the caller has prepared (e.g. with
/// `DISPLAY` set).
pub fn start_viewer_cmd(cmd: Command) -> (LoggedChild, std::net::SocketAddr) {
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

/// Starts a pattern `agent` sending to `server` as camera `id`, with extra args.
pub fn start_pattern_agent(
    server: std::net::SocketAddr,
    id: u8,
    size: &str,
    fps: u32,
    extra: &[&str],
) -> LoggedChild {
    let mut cmd = Command::new(bin_path("agent"));
    cmd.args(["--source", "pattern", "--server", &server.to_string()])
        .args([
            "--id",
            &id.to_string(),
            "--size",
            size,
            "--fps",
            &fps.to_string(),
        ])
        .args(extra);
    LoggedChild::spawn(&format!("agent {id}"), cmd)
}

/// Frames the viewer recorded under `--record DIR`, counted per camera id
/// (`DIR/cam<ID>-<ip>-<port>/<seq>.bmp`, one directory per connection).
pub fn recorded_counts(dir: &Path) -> HashMap<u8, usize> {
    let mut counts = HashMap::new();
    for (id, conn_dir) in recorded_conn_dirs(dir) {
        let n = std::fs::read_dir(&conn_dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "bmp"))
                    .count()
            })
            .unwrap_or(0);
        *counts.entry(id).or_insert(0) += n;
    }
    counts
}

/// The per-connection record directories under `dir`, with their camera id.
pub fn recorded_conn_dirs(dir: &Path) -> Vec<(u8, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<(u8, PathBuf)> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let id = name.strip_prefix("cam")?.split('-').next()?.parse().ok()?;
            Some((id, e.path()))
        })
        .collect();
    dirs.sort();
    dirs
}

/// The `.bmp` files of one record directory, sorted by sequence number.
pub fn recorded_frames(conn_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(conn_dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "bmp"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Reads a `.npy` file holding a C-ordered `uint8` array (what `np.save`
/// writes for an OpenCV image); returns its shape and bytes.
pub fn read_npy_u8(path: &Path) -> Result<(Vec<usize>, Vec<u8>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(format!("{}: not a .npy file", path.display()));
    }
    let (header_len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => {
            return Err(format!(
                "{}: .npy version {v} not supported",
                path.display()
            ))
        }
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| format!("{}: truncated .npy header", path.display()))?;
    if !header.contains("'descr': '|u1'") || header.contains("'fortran_order': True") {
        return Err(format!(
            "{}: not a C-ordered uint8 array: {header}",
            path.display()
        ));
    }
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| format!("{}: no shape in {header}", path.display()))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad shape {shape_text}")))
        .collect::<Result<_, _>>()?;
    let data = bytes[start + header_len..].to_vec();
    if data.len() != shape.iter().product::<usize>() {
        return Err(format!(
            "{}: {} data bytes for shape {shape:?}",
            path.display(),
            data.len()
        ));
    }
    Ok((shape, data))
}
