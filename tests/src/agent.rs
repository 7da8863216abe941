//! Running the agent under test: streaming to a listener ([`start_agent`],
//! [`start_pattern_agent`]), and failing on purpose
//! ([`run_agent_expecting_failure`]).

use std::net::SocketAddr;
use std::process::Command;

use crate::child::LoggedChild;
use crate::workspace::bin_path;

/// Starts the agent with `args`, logging at info level (the lines tests wait
/// for) whatever `RUST_LOG` the tests run with.
pub fn start_agent(args: &[&str]) -> LoggedChild {
    let mut cmd = Command::new(bin_path("agent"));
    cmd.args(args).env("RUST_LOG", "info");
    LoggedChild::spawn("agent", cmd)
}

/// Starts a pattern agent sending to `server` as camera `id`, with extra args.
pub fn start_pattern_agent(
    server: SocketAddr,
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

/// Runs the agent with `args` to completion, asserts that it exited with
/// `expected_code`, and returns its stderr (for the test to check the
/// message a person would read).
pub fn run_agent_expecting_failure(args: &[&str], expected_code: i32) -> String {
    let out = Command::new(bin_path("agent"))
        .args(args)
        .output()
        .expect("run agent");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(expected_code),
        "agent {args:?}: {stderr}"
    );
    stderr
}
