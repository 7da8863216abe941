//! camstream end-to-end tests, in one binary (ripgrep's layout). Each module
//! runs the real binaries against real substitutes: TCP on loopback, Xvfb,
//! a vivid V4L2 device in a QEMU guest, OpenCV peers in Python, and for
//! `--http` and `--metrics` headless Chromium, ffmpeg/ffprobe and promtool.

// A test target's root file resolves `mod x;` next to itself (tests/tests/x.rs),
// like a crate root, so the module files under e2e/ need explicit paths.
#[path = "e2e/agent.rs"]
mod agent;
#[path = "e2e/arm_node.rs"]
mod arm_node;
#[path = "e2e/churn.rs"]
mod churn;
#[path = "e2e/dead_peer.rs"]
mod dead_peer;
#[path = "e2e/deploy.rs"]
mod deploy;
#[path = "e2e/faults.rs"]
mod faults;
#[path = "e2e/formats.rs"]
mod formats;
#[path = "e2e/hotplug.rs"]
mod hotplug;
#[path = "e2e/http.rs"]
mod http;
#[path = "e2e/interop.rs"]
mod interop;
#[path = "e2e/jpeg.rs"]
mod jpeg;
#[path = "e2e/memory.rs"]
mod memory;
#[path = "e2e/slow_link.rs"]
mod slow_link;
#[path = "e2e/tls.rs"]
mod tls;
#[path = "e2e/viewer.rs"]
mod viewer;
#[path = "e2e/vm.rs"]
mod vm;
#[path = "e2e/windows.rs"]
mod windows;
