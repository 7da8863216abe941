//! The workspace the tests run in: its root, the `agent` and `viewer`
//! binaries under test (built on first use, so `cargo test` always tests the
//! current code), and the fixtures the tests read (frames in `testdata/`,
//! the Python venv and the scripts of the original design).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (the directory holding `Cargo.lock`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root")
        .to_path_buf()
}

/// A file of `testdata/frames/` (raw YUYV and BGR frames shared with proto).
pub fn testdata_frame(name: &str) -> PathBuf {
    workspace_root().join("testdata/frames").join(name)
}

/// Path of a workspace binary (`agent`, `viewer` or `camstream-cert`), built on first use with
/// the same profile as the running test, so `cargo test --workspace` always
/// tests the current code.
pub fn bin_path(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let profile_dir = profile_dir();
    BUILT.get_or_init(|| {
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        build_agent_and_viewer(release);
    });
    profile_dir.join(name)
}

/// Path of `agent` or `viewer` built with the release profile, whatever the
/// profile of the running test: load tests (the soak) measure the code that
/// ships, and a debug build encodes a 640x480 frame about 100x slower.
pub fn release_bin_path(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| build_agent_and_viewer(true));
    profile_dir()
        .parent()
        .expect("target/<profile> has a parent")
        .join("release")
        .join(name)
}

/// `cargo build` of both binaries, with the cargo that runs the tests.
fn build_agent_and_viewer(release: bool) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    // -p: the tests run with cwd tests/, where `--bin agent` alone finds nothing.
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "agent",
        "-p",
        "viewer",
        "-p",
        "camstream-cert",
    ]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} for the binaries under test: {e}"));
    assert!(status.success(), "{cmd:?} failed");
}

/// `target/<profile>`, found from this test executable (`target/<profile>/deps/e2e-*`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps")
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
