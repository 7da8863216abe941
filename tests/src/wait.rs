//! Waiting without flakiness: every wait polls for the thing itself, and its
//! bound only keeps a broken binary from hanging the suite. No test asserts a
//! wall-clock duration.

use std::time::{Duration, Instant};

/// Upper bound for anything that should happen "soon", on a loaded 2-core
/// machine running a debug build: only a hang trips it.
pub const PATIENCE: Duration = Duration::from_secs(60);

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
