//! Processes under test: [`LoggedChild`] reads a child's stdout and stderr
//! line by line into memory, so a test can wait for a log line, signal the
//! child, and see its last lines when it fails. [`run_ok`] runs a tool to
//! completion (openssl, ffmpeg, `camstream-cert`) and says why when it fails.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, SigHandler, Signal};

use crate::wait::wait_until;

/// Output lines of a child, shared with the threads that read its pipes.
#[derive(Default)]
struct LogLines {
    /// Each line with the moment it was read (for measuring reaction times).
    lines: Mutex<Vec<(Instant, String)>>,
    grew: Condvar,
}

impl LogLines {
    /// The lines, even if a reader thread panicked while holding them.
    fn lock(&self) -> MutexGuard<'_, Vec<(Instant, String)>> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }
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
        // A shell that starts the test run in the background (`cmd &`
        // without job control) leaves SIGINT and SIGQUIT ignored, every
        // child inherits that, and bash cannot trap a signal ignored on
        // entry: the demo's Ctrl+C test then failed for the way the suite
        // was launched, not for the demo. Children start as from a terminal.
        // Its own process group, so that Drop can end whatever it started.
        cmd.process_group(0);
        // SAFETY: sigaction is async-signal-safe, as pre_exec requires.
        unsafe {
            cmd.pre_exec(|| {
                for sig in [Signal::SIGINT, Signal::SIGQUIT] {
                    signal::signal(sig, SigHandler::SigDfl).map_err(std::io::Error::from)?;
                }
                Ok(())
            });
        }
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
                    log.lock().push((Instant::now(), line));
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
        self.log.lock().iter().map(|(_, l)| l.clone()).collect()
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
        let mut lines = self.log.lock();
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
        self.log.lock().len()
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
        wait_until(timeout, || self.try_status())
    }

    /// Waits up to `timeout` for the child to exit with status 0; panics with
    /// its last log lines if it does not exit in time or fails.
    pub fn wait_success(&mut self, timeout: Duration) -> ExitStatus {
        let status = self.wait_exit(timeout).unwrap_or_else(|| {
            panic!(
                "{} did not exit within {timeout:?}:\n{}",
                self.name,
                self.tail(20)
            )
        });
        assert!(
            status.success(),
            "{} failed ({status}):\n{}",
            self.name,
            self.tail(20)
        );
        status
    }

    /// Sends a signal by name (`INT`, `TERM`, `KILL`, `STOP`, `CONT`).
    pub fn signal(&self, sig: &str) {
        let status = kill(sig, self.pid()).expect("run sh -c kill");
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
            // The whole process group, not just the child: a demo whose test
            // failed left its viewer recording into a temp dir for hours
            // (73 GB), because only the demo's shell was killed. SIGCONT
            // first: a stopped child cannot be reaped until it runs.
            let group = nix::unistd::Pid::from_raw(self.pid() as i32);
            let _ = signal::killpg(group, Signal::SIGCONT);
            let _ = signal::killpg(group, Signal::SIGKILL);
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

/// How much of a failed tool's stdout [`run_ok`] shows: its errors are on
/// stderr, shown whole; stdout's last lines only give the context.
const STDOUT_TAIL_LINES: usize = 20;

/// Runs `cmd` to completion (stdin closed, stdout and stderr captured, as
/// [`Command::output`] does) and returns its output. If it cannot be started
/// or exits non-zero, panics naming `what` (the step, e.g. "making the test
/// PKI with openssl"), the command with its arguments, the exit status, its
/// stderr and the last lines of its stdout: a tool's failure in a test is
/// the test's failure, and its own words say why. For tools a test runs once
/// and then reads the output or files of; a process to watch while it runs
/// is a [`LoggedChild`].
#[track_caller]
pub fn run_ok(cmd: &mut Command, what: &str) -> Output {
    // A `match`, not `unwrap_or_else`: a closure would hide the caller's
    // line that `#[track_caller]` puts in the panic message.
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{what}: cannot run {cmd:?}: {e} (is {} installed? ./run-tests installs the tools the tests run)",
            cmd.get_program().to_string_lossy()
        ),
        Err(e) => panic!("{what}: cannot run {cmd:?}: {e}"),
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        let start = lines.len().saturating_sub(STDOUT_TAIL_LINES);
        let stdout = if lines.is_empty() {
            "---- stdout: empty ----".to_string()
        } else {
            format!(
                "---- stdout (last {} of {} lines) ----\n{}",
                lines.len() - start,
                lines.len(),
                lines[start..].join("\n")
            )
        };
        panic!(
            "{what}: {cmd:?} failed ({}):\n---- stderr ----\n{}\n{stdout}",
            out.status,
            stderr.trim_end()
        );
    }
    out
}

/// Sends signal `sig` (by name) to `pid` with the shell's `kill` builtin,
/// which every Debian has (procps may be absent).
fn kill(sig: &str, pid: u32) -> std::io::Result<ExitStatus> {
    Command::new("sh")
        .args(["-c", &format!("kill -s {sig} {pid}")])
        .status()
}

/// Resident set size of a process in KiB (`VmRSS` in /proc/PID/status).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message `run_ok` panicked with for `cmd`.
    fn failure_of(mut cmd: Command, what: &str) -> String {
        // AssertUnwindSafe: the command is dropped with the closure, so
        // nothing half-updated by the panic is seen afterwards.
        let run = std::panic::AssertUnwindSafe(move || run_ok(&mut cmd, what));
        let payload = std::panic::catch_unwind(run).expect_err("run_ok should have panicked");
        payload
            .downcast_ref::<String>()
            .cloned()
            .expect("a formatted panic message")
    }

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn run_ok_returns_the_output_of_a_tool_that_succeeds() {
        let out = run_ok(&mut sh("echo out; echo err >&2"), "echoing");
        assert!(out.status.success());
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn a_failed_tool_is_named_with_its_status_its_stderr_and_its_last_stdout_lines() {
        let msg = failure_of(
            sh("for i in $(seq 1 25); do echo out-$i.; done; echo 'bad input' >&2; exit 3"),
            "making things",
        );
        assert!(msg.starts_with("making things: "), "{msg}");
        assert!(msg.contains("\"sh\" \"-c\""), "the command: {msg}");
        assert!(msg.contains("exit status: 3"), "the status: {msg}");
        assert!(msg.contains("---- stderr ----\nbad input\n"), "{msg}");
        assert!(msg.contains("(last 20 of 25 lines)"), "{msg}");
        assert!(msg.contains("out-6.") && msg.contains("out-25."), "{msg}");
        assert!(!msg.contains("out-5."), "only the last 20 lines: {msg}");
    }

    #[test]
    fn an_empty_stdout_is_said_to_be_empty() {
        let msg = failure_of(sh("echo oops >&2; exit 1"), "failing quietly");
        assert!(
            msg.ends_with("---- stderr ----\noops\n---- stdout: empty ----"),
            "{msg}"
        );
    }

    #[test]
    fn a_tool_that_is_not_installed_is_named_with_what_to_do() {
        let msg = failure_of(
            Command::new("camstream-no-such-tool"),
            "running a missing tool",
        );
        assert!(
            msg.starts_with("running a missing tool: cannot run"),
            "{msg}"
        );
        assert!(
            msg.contains("is camstream-no-such-tool installed? ./run-tests installs"),
            "{msg}"
        );
    }
}
