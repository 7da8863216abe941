//! The vivid VM: a stock Debian kernel under QEMU (TCG), whose `vivid` driver
//! is a real V4L2 device that behaves like a webcam. The scripts live in
//! `tests/vm/` (`setup.sh` fetches the kernel once, `mkinitramfs.sh` builds the
//! guest's root, `run.sh` boots it and runs one command); this module drives
//! them from tests.
//!
//! A guest always ends: `run.sh` kills QEMU after its timeout, and as a second
//! line of defence [`run_guest`] kills the whole process group a little later.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::workspace::workspace_root;

/// Set to `1` to skip the VM tests on purpose (they then print that they were
/// skipped). Without it, missing prerequisites fail the tests.
pub const SKIP_ENV: &str = "CAMSTREAM_SKIP_VM";

/// `run.sh`'s exit status when the guest did not finish in time.
pub const EXIT_TIMEOUT: i32 = 124;
/// `run.sh`'s exit status when the guest ended without reporting a status.
pub const EXIT_NO_STATUS: i32 = 125;

/// `tests/vm/`.
pub fn vm_dir() -> PathBuf {
    workspace_root().join("tests/vm")
}

/// A rig's `setup.sh`, as [`rig_enabled`] checks it.
pub struct Rig<'a> {
    /// What it is, for messages: "the vivid VM".
    pub name: &'a str,
    /// The setup script, from the workspace root, and the arguments that go
    /// before `--check`.
    pub setup: &'a [&'a str],
    /// What the script does when run as root, for the message that says to
    /// run it.
    pub does: &'a str,
}

/// Whether the tests of `rig` should run. Returns `false` (after printing
/// why) only when [`SKIP_ENV`] is `1`; panics with the setup command when
/// `setup.sh --check` finds something missing (a cache, a package), so a CI
/// without the rig fails loudly instead of passing with nothing tested. The
/// check runs once per test process and setup command.
pub fn rig_enabled(test: &str, rig: &Rig<'_>) -> bool {
    if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED {test}: {SKIP_ENV}=1 is set, so the VM tests do not run");
        return false;
    }
    static CHECKS: Mutex<BTreeMap<Vec<String>, Result<(), String>>> = Mutex::new(BTreeMap::new());
    let key: Vec<String> = rig.setup.iter().map(|s| s.to_string()).collect();
    let command = key.join(" ");
    let check = CHECKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_insert_with(|| {
            let (script, args) = rig.setup.split_first().ok_or("no setup script named")?;
            let out = Command::new(workspace_root().join(script))
                .args(args)
                .arg("--check")
                .output()
                .map_err(|e| format!("cannot run {command} --check: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
            }
        })
        .clone();
    if let Err(why) = check {
        panic!(
            "{test}: {} is not set up: {why}\n\
             run `{command}` (as root: {}), or set {SKIP_ENV}=1 to skip the VM tests on purpose",
            rig.name, rig.does
        );
    }
    true
}

/// [`rig_enabled`] for the vivid VM.
pub fn vm_enabled(test: &str) -> bool {
    rig_enabled(
        test,
        &Rig {
            name: "the vivid VM",
            setup: &["tests/vm/setup.sh"],
            does: "installs qemu-system-x86, busybox-static, kmod, cpio, udev, v4l-utils and \
                   fetches the Debian kernel into /var/cache/camstream/vm-amd64/",
        },
    )
}

/// The base initramfs (busybox, kernel modules, `v4l2-ctl`, and udev's
/// `udevadm`, `v4l_id` and `60-persistent-v4l.rules`), built once per test
/// process. Project binaries are not in it: pass them to [`run_guest`], so a
/// test of the udev rule does not need the agent to build.
pub fn base_initramfs() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        // Under target/ (gitignored), one file per test process; stale ones
        // from earlier runs are removed so they don't pile up.
        let dir = workspace_root().join("target/camstream-vm");
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        remove_stale_initramfs(&dir);
        let out = dir.join(format!("base-{}.cpio", std::process::id()));
        let result = Command::new(vm_dir().join("mkinitramfs.sh"))
            .arg(&out)
            .output()
            .expect("run tests/vm/mkinitramfs.sh");
        assert!(
            result.status.success(),
            "tests/vm/mkinitramfs.sh failed: {}{}",
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        out
    })
}

/// Removes `base-<pid>.cpio` files whose process is gone.
fn remove_stale_initramfs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("base-"))
            .and_then(|n| n.split('.').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A file copied into the guest for one run.
pub struct GuestFile<'a> {
    pub host: &'a Path,
    pub guest: &'a str,
}

/// The outcome of one guest run.
#[derive(Debug)]
pub struct GuestRun {
    /// The guest command's exit status; [`EXIT_TIMEOUT`] or [`EXIT_NO_STATUS`]
    /// for a guest that never reported one. `None` if `run.sh` itself had to
    /// be killed.
    pub status: Option<i32>,
    /// The serial console (kernel messages and the command's output), with
    /// `run.sh`'s own messages after it.
    pub console: String,
    /// Host wall time of the whole run, boot included.
    pub elapsed: Duration,
}

impl GuestRun {
    /// The value of the last console line `KEY=value` (how guest scripts
    /// report measurements).
    pub fn value(&self, key: &str) -> Option<&str> {
        let prefix = format!("{key}=");
        self.console
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .rev()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
    }

    /// The last `n` console lines, for assertion messages.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.console.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// One guest at a time: under TCG a guest keeps a core busy, and two at once
/// on a 2-core machine would make each one's timing meaningless.
fn guest_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Boots the guest with [`base_initramfs`] plus `files`, runs `script` under
/// busybox sh as root and returns its status and the console.
///
/// In the guest, `/init` has mounted /proc, /sys and /dev, configured eth0
/// (10.0.2.15; the host's 127.0.0.1 is 10.0.2.2) and exported `VIVID_WEBCAM`,
/// the module parameters for one webcam-like node: the script loads vivid
/// itself (`modprobe vivid $VIVID_WEBCAM`). Call copied binaries by absolute
/// path: busybox's shell prefers its own applets.
pub fn run_guest(script: &str, files: &[GuestFile<'_>], timeout: Duration) -> GuestRun {
    let base = base_initramfs();
    let mut cmd = Command::new(vm_dir().join("run.sh"));
    cmd.arg("--initramfs")
        .arg(base)
        .args(["--timeout", &timeout.as_secs().max(1).to_string()]);
    for f in files {
        cmd.arg("--file")
            .arg(format!("{}:{}", f.host.display(), f.guest));
    }
    cmd.args(["-c", script]);
    run_script(cmd, timeout)
}

/// Runs one guest through `cmd`, a guest runner script of `tests/vm/` (one
/// that takes `--timeout`, kills QEMU after it and exits with the guest's
/// status), one guest at a time, and collects its console. If the runner
/// itself hangs, its whole process group is killed 30 s after `timeout`.
pub fn run_script(mut cmd: Command, timeout: Duration) -> GuestRun {
    let _one_at_a_time = guest_lock();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a stuck run can be killed with QEMU and all.
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pgid = child.id();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut pipe| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
    .collect();
    // run.sh's timeout kills QEMU first; this is for run.sh itself hanging.
    let deadline = started + timeout + Duration::from_secs(30);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = Command::new("sh")
                    .args(["-c", &format!("kill -s KILL -- -{pgid}")])
                    .status();
                let _ = child.wait();
                break None;
            }
        }
    };
    let console = readers
        .into_iter()
        .map(|r| r.join().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("");
    GuestRun {
        status,
        console,
        elapsed: started.elapsed(),
    }
}
