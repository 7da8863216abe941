//! The hot-plug guest: systemd as PID 1 on a small Debian root, on the vivid
//! rigs' kernels, under QEMU (TCG): bookworm on amd64, trixie on an emulated
//! Cortex-A72 (arm64). udev, systemd and the network
//! run as on a camera node, so the whole chain (vivid appears, udev's rules
//! and ours tag it, systemd starts `camera-agent@video0.service`) is real.
//! The scripts live in `tests/vm/systemd/` (`setup.sh` makes and caches the
//! root file system, `run.sh` boots it and runs one command as a service);
//! this module drives them and builds the packages the guest installs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::child::run_ok;
use crate::vm::{rig_enabled, run_script, vm_dir, GuestRun, Rig};
use crate::workspace::workspace_root;

/// `tests/vm/systemd/`.
pub fn systemd_vm_dir() -> PathBuf {
    vm_dir().join("systemd")
}

/// The Debian architectures the hot-plug guest comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// The name `setup.sh --arch` and `run.sh --arch` take.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

/// Whether the hot-plug guest tests for `arch` should run: [`rig_enabled`]
/// for its `setup.sh --arch`.
pub fn systemd_vm_enabled(test: &str, arch: Arch) -> bool {
    rig_enabled(
        test,
        &Rig {
            name: &format!("the {} hot-plug guest", arch.name()),
            setup: &["tests/vm/systemd/setup.sh", "--arch", arch.name()],
            does: "debootstraps a small Debian root into /var/cache/camstream/vm-systemd/",
        },
    )
}

/// Boots the `arch` guest with `files` (host path, guest path) copied in, runs
/// `script` under `/bin/sh` as root from a oneshot service once the network
/// is online, and returns its status and the console. In the guest,
/// `VIVID_WEBCAM` holds vivid's parameters for one webcam-like node; the
/// host's 127.0.0.1 is 10.0.2.2.
pub fn run_systemd_guest(
    arch: Arch,
    script: &str,
    files: &[(&Path, &str)],
    timeout: Duration,
) -> GuestRun {
    let mut cmd = Command::new(systemd_vm_dir().join("run.sh"));
    cmd.args(["--arch", arch.name()])
        .args(["--timeout", &timeout.as_secs().max(1).to_string()]);
    for (host, guest) in files {
        cmd.arg("--file").arg(format!("{}:{guest}", host.display()));
    }
    cmd.args(["-c", script]);
    run_script(cmd, timeout)
}

/// The two packages `packaging/build-deb.sh` makes.
pub struct Debs {
    /// camstream-agent, what a camera node installs.
    pub agent: PathBuf,
    /// camstream-viewer, the workstation's, with camstream-cert.
    pub viewer: PathBuf,
}

/// The camstream packages, as `packaging/build-deb.sh` makes them from
/// the binaries in `bin_dir` (for `target`, a Rust target triple, or this
/// machine), into a fresh directory that `out` keeps alive.
pub fn build_debs(bin_dir: &Path, target: Option<&str>, out: &Path) -> Debs {
    let mut cmd = Command::new(workspace_root().join("packaging/build-deb.sh"));
    if let Some(target) = target {
        cmd.args(["--target", target]);
    }
    cmd.arg("--bin-dir").arg(bin_dir).arg("--out").arg(out);
    let result = run_ok(&mut cmd, "packaging/build-deb.sh");
    let stdout = String::from_utf8_lossy(&result.stdout);
    let find = |prefix: &str| {
        stdout
            .lines()
            .map(PathBuf::from)
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .unwrap_or_else(|| panic!("packaging/build-deb.sh printed no {prefix}*.deb: {stdout}"))
    };
    Debs {
        agent: find("camstream-agent_"),
        viewer: find("camstream-viewer_"),
    }
}
