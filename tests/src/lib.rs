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
        // -p: the tests run with cwd tests/, where `--bin agent` alone finds nothing.
        cmd.args(["build", "--quiet", "-p", "agent", "-p", "viewer"]);
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
use std::io::{BufRead, BufReader, Read, Write};
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
    /// Each line with the moment it was read (for measuring reaction times).
    lines: Mutex<Vec<(Instant, String)>>,
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
                        .push((Instant::now(), line));
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
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Waits until a line *after the first `skip` lines* contains `needle`;
    /// returns it, or `None` after `timeout`.
    pub fn wait_for_line_after(
        &self,
        skip: usize,
        needle: &str,
        timeout: Duration,
    ) -> Option<String> {
        self.wait_for_line_timed(skip, needle, timeout)
            .map(|(_, line)| line)
    }

    /// Like [`Self::wait_for_line_after`], also returning when the line was read.
    pub fn wait_for_line_timed(
        &self,
        skip: usize,
        needle: &str,
        timeout: Duration,
    ) -> Option<(Instant, String)> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(found) = lines.iter().skip(skip).find(|(_, l)| l.contains(needle)) {
                return Some(found.clone());
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

// ---------------------------------------------------------------------------
// A real X server for the window tests: Xvfb with a private cookie, a
// screenshot of the root window (xwd), the window tree (xwininfo), and the
// WM_DELETE_WINDOW message a window manager sends when a window is closed.
// ---------------------------------------------------------------------------

const X_COOKIE_NAME: &[u8] = b"MIT-MAGIC-COOKIE-1";

/// A running Xvfb on a free display, reachable only through its Unix socket
/// and a fresh MIT-MAGIC-COOKIE-1. Dropping it stops the server.
pub struct Xvfb {
    /// The display, e.g. `:117`.
    pub display: String,
    number: u32,
    cookie: [u8; 16],
    authority: PathBuf,
    server: LoggedChild,
    _dir: tempfile::TempDir,
}

impl Xvfb {
    /// Starts Xvfb with one `width`x`height` 24-bit screen on the first free
    /// display from 100 up, and waits until it accepts clients (`-displayfd`).
    pub fn start(width: u32, height: u32) -> Xvfb {
        use std::hash::{BuildHasher, Hasher};
        let dir = tempfile::tempdir().expect("temp dir for the X authority");
        let authority = dir.path().join("Xauthority");
        std::fs::File::create(&authority).expect("create the X authority file");
        let mut cookie = [0u8; 16];
        for half in cookie.chunks_mut(8) {
            let random = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish();
            half.copy_from_slice(&random.to_le_bytes());
        }
        let hex: String = cookie.iter().map(|b| format!("{b:02x}")).collect();
        // Spread parallel test binaries over displays; retry on a clash.
        let first = 100 + std::process::id() % 400;
        for number in (first..first + 50).map(|n| 100 + (n - 100) % 400) {
            if Path::new(&format!("/tmp/.X{number}-lock")).exists()
                || Path::new(&format!("/tmp/.X11-unix/X{number}")).exists()
            {
                continue;
            }
            let display = format!(":{number}");
            let status = Command::new("xauth")
                .arg("-q")
                .arg("-f")
                .arg(&authority)
                .args(["add", &display, "MIT-MAGIC-COOKIE-1", &hex])
                .status()
                .expect("run xauth (apt-get install xauth)");
            assert!(status.success(), "xauth add failed");
            let mut cmd = Command::new("Xvfb");
            cmd.arg(&display)
                .args(["-screen", "0", &format!("{width}x{height}x24")])
                .arg("-auth")
                .arg(&authority)
                .args(["-nolisten", "tcp", "-noreset", "-displayfd", "1"]);
            let mut server = LoggedChild::spawn("Xvfb", cmd);
            // -displayfd 1 prints the display number once clients can connect.
            let ready = wait_until(Duration::from_secs(20), || {
                if server
                    .lines()
                    .iter()
                    .any(|l| l.trim() == number.to_string())
                {
                    return Some(true);
                }
                server.try_status().map(|_| false)
            });
            match ready {
                Some(true) => {
                    return Xvfb {
                        display,
                        number,
                        cookie,
                        authority,
                        server,
                        _dir: dir,
                    }
                }
                Some(false) => continue, // display taken meanwhile: next one
                None => panic!(
                    "Xvfb {display} did not start within 20 s:\n{}",
                    server.tail(20)
                ),
            }
        }
        panic!("no free X display among 50 tried (is Xvfb installed? apt-get install xvfb)");
    }

    /// Sets `DISPLAY` and `XAUTHORITY` on a command so it talks to this server.
    pub fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("DISPLAY", &self.display)
            .env("XAUTHORITY", &self.authority)
    }

    /// Runs an X client tool (`xwininfo`, `xdotool`, `xwd`) to completion and
    /// returns its stdout; panics with its stderr if it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> Vec<u8> {
        let mut cmd = Command::new(program);
        cmd.args(args);
        let out = self
            .env(&mut cmd)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// The top-level windows (children of the root) that have a name, with
    /// their position on the screen, from `xwininfo -root -children`.
    pub fn windows(&self) -> Vec<XWindow> {
        let out = self.run("xwininfo", &["-root", "-children"]);
        String::from_utf8_lossy(&out)
            .lines()
            .filter_map(XWindow::parse_xwininfo_line)
            .collect()
    }

    /// A screenshot of the whole root window, taken with `xwd`.
    pub fn screenshot(&self) -> XImage {
        let xwd = self.run("xwd", &["-root", "-silent"]);
        XImage::from_xwd(&xwd).unwrap_or_else(|e| panic!("cannot read xwd output: {e}"))
    }

    /// Sends the ClientMessage a window manager sends when the user clicks a
    /// window's close button: WM_PROTOCOLS with WM_DELETE_WINDOW, to the
    /// client that created `window`. (`xdotool windowclose` would instead
    /// destroy the window under the client, which is not what a user does.)
    /// Speaks the X11 protocol directly: three requests need no library.
    pub fn send_wm_delete(&self, window: u32) -> Result<(), String> {
        use std::os::unix::net::UnixStream;
        let path = format!("/tmp/.X11-unix/X{}", self.number);
        let mut x = UnixStream::connect(&path).map_err(|e| format!("connect {path}: {e}"))?;
        x.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        // Connection setup, little-endian ('l'), protocol 11.0, with our cookie.
        let mut setup = vec![b'l', 0, 11, 0, 0, 0];
        setup.extend_from_slice(&(X_COOKIE_NAME.len() as u16).to_le_bytes());
        setup.extend_from_slice(&(self.cookie.len() as u16).to_le_bytes());
        setup.extend_from_slice(&[0, 0]);
        setup.extend_from_slice(X_COOKIE_NAME);
        setup.resize(setup.len().next_multiple_of(4), 0);
        setup.extend_from_slice(&self.cookie);
        x.write_all(&setup).map_err(|e| e.to_string())?;
        let mut head = [0u8; 8];
        x.read_exact(&mut head)
            .map_err(|e| format!("setup reply: {e}"))?;
        let extra_len = usize::from(u16::from_le_bytes([head[6], head[7]])) * 4;
        let mut extra = vec![0u8; extra_len];
        x.read_exact(&mut extra)
            .map_err(|e| format!("setup reply: {e}"))?;
        if head[0] != 1 {
            return Err(format!(
                "X server refused the connection: {}",
                String::from_utf8_lossy(&extra)
            ));
        }
        let wm_protocols = x11_intern_atom(&mut x, b"WM_PROTOCOLS")?;
        let wm_delete = x11_intern_atom(&mut x, b"WM_DELETE_WINDOW")?;
        // SendEvent (25), no propagation, empty event mask: delivered to the
        // client that created the window, as ICCCM says for WM_PROTOCOLS.
        let mut req = vec![25u8, 0];
        req.extend_from_slice(&11u16.to_le_bytes());
        req.extend_from_slice(&window.to_le_bytes());
        req.extend_from_slice(&0u32.to_le_bytes());
        // The 32-byte ClientMessage (33) event, format 32.
        req.extend_from_slice(&[33, 32, 0, 0]);
        req.extend_from_slice(&window.to_le_bytes());
        req.extend_from_slice(&wm_protocols.to_le_bytes());
        req.extend_from_slice(&wm_delete.to_le_bytes());
        req.extend_from_slice(&[0u8; 16]); // CurrentTime and unused data
                                           // GetInputFocus (43) as a round trip: its reply (or SendEvent's error
                                           // before it) tells us the server processed the event.
        req.extend_from_slice(&[43, 0, 1, 0]);
        x.write_all(&req).map_err(|e| e.to_string())?;
        let mut reply = [0u8; 32];
        x.read_exact(&mut reply)
            .map_err(|e| format!("SendEvent: {e}"))?;
        match reply[0] {
            1 => Ok(()),
            0 => Err(format!(
                "X error {} on SendEvent to window {window:#x}",
                reply[1]
            )),
            other => Err(format!("unexpected X reply type {other}")),
        }
    }

    /// The Xvfb process (for its log).
    pub fn server(&self) -> &LoggedChild {
        &self.server
    }
}

/// InternAtom (16): the atom for `name`, created if needed.
fn x11_intern_atom(x: &mut std::os::unix::net::UnixStream, name: &[u8]) -> Result<u32, String> {
    let padded = name.len().next_multiple_of(4);
    let mut req = vec![16u8, 0];
    req.extend_from_slice(&(((8 + padded) / 4) as u16).to_le_bytes());
    req.extend_from_slice(&(name.len() as u16).to_le_bytes());
    req.extend_from_slice(&[0, 0]);
    req.extend_from_slice(name);
    req.resize(8 + padded, 0);
    x.write_all(&req).map_err(|e| e.to_string())?;
    let mut reply = [0u8; 32];
    x.read_exact(&mut reply)
        .map_err(|e| format!("InternAtom reply: {e}"))?;
    if reply[0] != 1 {
        return Err(format!("X error {} on InternAtom", reply[1]));
    }
    Ok(u32::from_le_bytes([
        reply[8], reply[9], reply[10], reply[11],
    ]))
}

/// A top-level X window as `xwininfo -root -children` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XWindow {
    pub id: u32,
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// Position of the top-left corner on the screen.
    pub x: i32,
    pub y: i32,
}

impl XWindow {
    /// Parses `     0x200001 "name": ()  320x240+0+0  +640+480`.
    fn parse_xwininfo_line(line: &str) -> Option<XWindow> {
        let line = line.trim();
        let id =
            u32::from_str_radix(line.split_whitespace().next()?.strip_prefix("0x")?, 16).ok()?;
        let open = line.find('"')?;
        let close = line.rfind("\":")?;
        let name = line.get(open + 1..close)?.to_string();
        let mut rest = line.get(close + 2..)?.split_whitespace().rev();
        let abs = rest.next()?;
        let geometry = rest.next()?;
        let (w, h) = geometry.split('+').next()?.split_once('x')?;
        let (x, y) = parse_offsets(abs)?;
        Some(XWindow {
            id,
            name,
            width: w.parse().ok()?,
            height: h.parse().ok()?,
            x,
            y,
        })
    }
}

/// Parses an X offset pair such as `+640+480` or `-10+20`.
fn parse_offsets(text: &str) -> Option<(i32, i32)> {
    let second = text.get(1..)?.find(['+', '-'])? + 1;
    let x = text[..second].trim_start_matches('+').parse().ok()?;
    let y = text[second..].trim_start_matches('+').parse().ok()?;
    Some((x, y))
}

/// A screenshot: `width`x`height` pixels as 0x00RRGGBB, rows top-down.
pub struct XImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u32>,
}

impl XImage {
    /// Reads an XWD file (X Window Dump, version 7) of a 24/32-bit TrueColor
    /// ZPixmap, which is what `xwd` writes for an Xvfb `x24` screen.
    pub fn from_xwd(xwd: &[u8]) -> Result<XImage, String> {
        let field = |i: usize| -> Result<u32, String> {
            xwd.get(i * 4..i * 4 + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| "truncated XWD header".to_string())
        };
        let header_len = field(0)? as usize;
        let (version, format) = (field(1)?, field(2)?);
        let (width, height) = (field(4)?, field(5)?);
        let (byte_order, bits_per_pixel, bytes_per_line) = (field(7)?, field(11)?, field(12)?);
        let masks = [field(14)?, field(15)?, field(16)?];
        let ncolors = field(19)? as usize;
        if version != 7 || format != 2 || bits_per_pixel != 32 {
            return Err(format!(
                "unsupported XWD: version {version}, format {format}, {bits_per_pixel} bits per pixel"
            ));
        }
        let start = header_len + ncolors * 12;
        let len = bytes_per_line as usize * height as usize;
        let data = xwd
            .get(start..start + len)
            .ok_or_else(|| format!("XWD has {} bytes, need {}", xwd.len(), start + len))?;
        let mut pixels = Vec::with_capacity(width as usize * height as usize);
        for row in data.chunks_exact(bytes_per_line as usize) {
            for px in row.chunks_exact(4).take(width as usize) {
                let v = if byte_order == 0 {
                    u32::from_le_bytes([px[0], px[1], px[2], px[3]])
                } else {
                    u32::from_be_bytes([px[0], px[1], px[2], px[3]])
                };
                let channel = |mask: u32| {
                    if mask == 0 {
                        0
                    } else {
                        ((v & mask) >> mask.trailing_zeros()) & 0xff
                    }
                };
                pixels.push(channel(masks[0]) << 16 | channel(masks[1]) << 8 | channel(masks[2]));
            }
        }
        Ok(XImage {
            width,
            height,
            pixels,
        })
    }

    /// The pixel at (x, y) as 0x00RRGGBB, or None outside the image.
    pub fn get(&self, x: i32, y: i32) -> Option<u32> {
        if x < 0 || y < 0 || x as u32 >= self.width || y as u32 >= self.height {
            return None;
        }
        self.pixels
            .get(y as usize * self.width as usize + x as usize)
            .copied()
    }
}

/// The vivid VM harness (a real V4L2 device in a QEMU guest).
pub mod vm;

/// Counts the frames a viewer records under `--record DIR` and deletes each
/// file once counted, so long or fast runs (soak, faults) need no disk space:
/// at 640x480 every frame is a 0.9 MB BMP. Only complete `.bmp` files are
/// touched; the viewer writes `.bmp.part` and renames it when complete.
pub struct RecordCounter {
    counts: Arc<Mutex<HashMap<u8, usize>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
}

impl RecordCounter {
    /// Starts counting (and deleting) in `dir` every 100 ms.
    pub fn start(dir: &Path) -> RecordCounter {
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (counts, stop, dir) = (Arc::clone(&counts), Arc::clone(&stop), dir.to_path_buf());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    Self::sweep(&dir, &counts);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        RecordCounter {
            counts,
            stop,
            thread: Some(thread),
            dir: dir.to_path_buf(),
        }
    }

    fn sweep(dir: &Path, counts: &Mutex<HashMap<u8, usize>>) {
        for (id, conn_dir) in recorded_conn_dirs(dir) {
            for frame in recorded_frames(&conn_dir) {
                if std::fs::remove_file(&frame).is_ok() {
                    *counts
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(id)
                        .or_insert(0) += 1;
                }
            }
        }
    }

    /// Frames counted so far, per camera id.
    pub fn counts(&self) -> HashMap<u8, usize> {
        Self::sweep(&self.dir, &self.counts);
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Frames counted so far for one camera.
    pub fn count(&self, id: u8) -> usize {
        self.counts().get(&id).copied().unwrap_or(0)
    }
}

impl Drop for RecordCounter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Path of `agent` or `viewer` built with the release profile, whatever the
/// profile of the running test: load tests (the soak) measure the code that
/// ships, and a debug build encodes a 640x480 frame about 100x slower.
pub fn release_bin_path(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--release",
                "-p",
                "agent",
                "-p",
                "viewer",
            ])
            .status()
            .expect("run cargo build --release for the binaries under test");
        assert!(
            status.success(),
            "cargo build --release of agent and viewer failed"
        );
    });
    profile_dir()
        .parent()
        .expect("target/<profile> has a parent")
        .join("release")
        .join(name)
}
