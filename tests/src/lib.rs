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
