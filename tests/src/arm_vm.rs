//! The arm64 vivid guest: a Raspberry-Pi-like ARM node, emulated by
//! `qemu-system-aarch64 -M virt -cpu cortex-a72` (TCG), with Debian trixie's
//! arm64 kernel, its vivid module and a busybox initramfs. qemu-user cannot
//! run the agent against a camera (it does not translate V4L2 ioctls), so an
//! ARM agent meets a real V4L2 driver only in a system guest like this one.
//! The scripts live in `tests/vm/arm64/` (`setup.sh` fetches and caches,
//! `run.sh` boots and runs one command); the aarch64 agent comes from
//! `packaging/cross-build.sh`, as a Pi's does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::vm::{rig_enabled, run_script, vm_dir, GuestRun, Rig};
use crate::workspace::workspace_root;

/// The Rust target of a 64-bit Raspberry Pi OS.
pub const AARCH64: &str = "aarch64-unknown-linux-gnu";

/// `tests/vm/arm64/`.
pub fn arm_vm_dir() -> PathBuf {
    vm_dir().join("arm64")
}

/// Whether the arm64 guest tests should run: [`rig_enabled`] for it.
pub fn arm_vm_enabled(test: &str) -> bool {
    rig_enabled(
        test,
        &Rig {
            name: "the arm64 guest",
            setup: &["tests/vm/arm64/setup.sh"],
            does: "installs qemu-system-arm and fetches trixie's arm64 kernel into \
                   /var/cache/camstream/vm-arm64/",
        },
    )
}

/// The aarch64 agent, release-built by `packaging/cross-build.sh` (once per
/// test process; cargo makes later builds of an unchanged tree cheap). The
/// first build on a machine also makes the cached trixie build root, which
/// needs root and the Debian archive; its errors fail the test as they are.
pub fn aarch64_agent() -> &'static Path {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT.get_or_init(|| {
        let script = workspace_root().join("packaging/cross-build.sh");
        let out = Command::new(&script)
            .arg(AARCH64)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "packaging/cross-build.sh {AARCH64} failed ({}):\n{}",
            out.status,
            tail(&stderr, 40)
        );
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let agent = Path::new(&dir).join("agent");
        assert!(
            agent.is_file(),
            "packaging/cross-build.sh {AARCH64} printed `{dir}`, which holds no agent\n{}",
            tail(&stderr, 20)
        );
        agent
    })
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Boots the arm64 guest with `files` (host path, guest path) added, runs
/// `script` under busybox sh as root and returns its status and the console.
/// The guest's `/init` is the x86 vivid guest's: eth0 is 10.0.2.15 (the
/// host's 127.0.0.1 is 10.0.2.2) and `VIVID_WEBCAM` holds vivid's parameters
/// for one webcam-like node. Call copied binaries by absolute path.
pub fn run_arm_guest(script: &str, files: &[(&Path, &str)], timeout: Duration) -> GuestRun {
    let mut cmd = Command::new(arm_vm_dir().join("run.sh"));
    cmd.args(["--timeout", &timeout.as_secs().max(1).to_string()]);
    for (host, guest) in files {
        cmd.arg("--file").arg(format!("{}:{guest}", host.display()));
    }
    cmd.args(["-c", script]);
    run_script(cmd, timeout)
}
