//! Certificates for the mutual-TLS tests, made by our own helper
//! (`camstream-cert`, the binary under test) as a user would make them.

use std::process::Command;

use crate::child::run_ok;
use crate::workspace::bin_path;

/// Runs `camstream-cert` with `args` (e.g. `["camera", "--dir", DIR, "--id",
/// "3"]`); panics with its error output if it fails.
#[track_caller]
pub fn camstream_cert(args: &[&str]) {
    run_ok(
        Command::new(bin_path("camstream-cert")).args(args),
        "making certificates with camstream-cert",
    );
}
