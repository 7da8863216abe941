//! Support for camstream's end-to-end tests (`tests/e2e.rs`): the real
//! `agent` and `viewer` binaries, started and watched as child processes,
//! with real substitutes around them (loopback TCP, Xvfb, a vivid V4L2 device
//! in a QEMU guest, OpenCV peers in Python) and the checks on what they
//! produce. Nothing here mocks our own code.
//!
//! # Modules
//!
//! Each module uses only the ones it points at, so the drawing is also the
//! order to read them in, bottom up:
//!
//! ```text
//! agent ───► child, workspace                   start the agent; expect it to fail
//! viewer ──► child, record, wait, workspace     start the viewer; RecordingViewer
//! xvfb ────► child, image, wait, x11            a real X server and its tools
//! vm ──────► workspace                          the vivid VM (QEMU guest)
//! systemd_vm ► child, vm, workspace             the hot-plug guest: systemd, udev, the .deb
//! arm_vm ──► vm, workspace                      the arm64 guest and the cross-built agent
//! certs ───► child, workspace                   camstream-cert: certificates for TLS tests
//! vivid ───► bars, image, record                vivid's bars in a recording
//! netns ───► delay_line, wait                   a namespace behind a veth pair: cut it, shape it (tc)
//! delay_line                                    TUN devices joined with a delay (no netem here)
//! child ───► wait                               a process and its log lines; a tool run to success
//! x11 ─────► image                              the X11 wire client, xwininfo, xwd
//! chromium ► child, http, image, wait           headless Chromium over DevTools pipes
//! http ────► child, image                       HTTP GET, /api/cameras, metrics, promtool, ffmpeg
//! bars ────► image                              the colour bars, defined once
//! pattern ─► image                              reading back the agent's pattern
//! image                                         a picture as 0RGB pixels (proto's BMP)
//! record                                        the viewer's --record tree, .npy files
//! wait                                          wait_until and PATIENCE
//! workspace                                     root, binaries under test, fixtures
//! ```

pub mod agent;
pub mod arm_vm;
pub mod bars;
pub mod certs;
pub mod child;
pub mod chromium;
pub mod delay_line;
pub mod http;
pub mod image;
pub mod netns;
pub mod pattern;
pub mod record;
pub mod systemd_vm;
pub mod viewer;
pub mod vivid;
pub mod vm;
pub mod wait;
pub mod workspace;
pub mod x11;
pub mod xvfb;

pub use agent::{run_agent_expecting_failure, start_agent, start_pattern_agent};
pub use child::{run_ok, LoggedChild};
pub use image::Image;
pub use netns::NetNs;
pub use record::{
    read_npy_u8, recorded_conn_dirs, recorded_counts, recorded_frames, RecordCounter,
};
pub use viewer::{start_viewer, start_viewer_cmd, RecordingViewer};
pub use wait::{wait_until, PATIENCE};
pub use workspace::{
    bin_path, interop_script, release_bin_path, testdata_frame, venv_python, workspace_root,
};
pub use x11::XWindow;
pub use xvfb::Xvfb;
