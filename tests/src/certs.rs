//! Certificates for the mutual-TLS tests, made by our own helper
//! (`camstream-cert`, the binary under test) as a user would make them.

use std::process::Command;

use crate::workspace::bin_path;

/// Runs `camstream-cert` with `args` (e.g. `["camera", "--dir", DIR, "--id",
/// "3"]`); panics with its error output if it fails.
pub fn camstream_cert(args: &[&str]) {
    let out = Command::new(bin_path("camstream-cert"))
        .args(args)
        .output()
        .expect("run camstream-cert");
    assert!(
        out.status.success(),
        "camstream-cert {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
