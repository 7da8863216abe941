//! camstream's edge agent: captures a V4L2 camera (or a synthetic source)
//! in any of the formats webcams offer (`--format`: YUYV and the other raw
//! formats, or MJPG), converts each frame to a 24-bit BMP → gzip, and
//! streams it to the viewer over TCP as `[u8 camera id][u32 BE length][gzip body]`.
//! `--list-formats` prints what the camera offers and exits.
//!
//! One thread per stage: capture (`source`) puts the newest frame in a
//! one-slot `mailbox`; `--workers` encoders (`encode`) compress frames in
//! parallel; the `outbox` releases them in capture order, never a frame
//! older than one sent; the sender (`send`) waits until the link can take
//! a frame, writes it with one write, and reconnects with backoff. On a link
//! narrower than the camera, the sender's pace gates when the encoders start
//! a frame, so only frames the link can carry are encoded. `pipeline` owns
//! every part, starts the threads and logs the `stats` line every
//! `--stats-interval`.
//!
//! # Module tree
//!
//! Each line names a module, then every module it uses; its `use crate::…`
//! imports (and `super::` in the sources) are exactly these. No module uses
//! one drawn above it, so there are no cycles.
//!
//! ```text
//! main      cli pipeline source(CameraLost, for the exit status; list_formats)
//! pipeline  cli source encode send mailbox outbox pool stats sync metrics tls
//! ├─ source (capture thread)   cli mailbox outbox pool stats sync
//! │    file, pattern, v4l2     cli source(Capture)
//! │    ├─ v4l2::mmap           (none: mmap streaming over v4l's ioctls)
//! │    └─ v4l2::modes          cli v4l2(names): what a camera offers, auto's pick
//! ├─ encode (encoder threads)  mailbox outbox pool stats sync
//! ├─ send   (sender thread)    outbox pool stats sync tls
//! │    tls  optional TLS 1.3 over the sender's socket (none of ours)
//! ├─ mailbox  newest raw frame, one slot            sync
//! ├─ outbox   encoded frames, in order              pool sync
//! ├─ stats    counters, nearest-rank percentiles    sync
//! ├─ metrics  --metrics: stats as Prometheus text   stats (exposition serves it)
//! ├─ pool     recycled byte buffers                 sync
//! └─ sync     lock, Monitor (the one condvar wait), WAIT_SLICE, Stop
//! cli       the command line (uses no other module)
//! ```
//!
//! A source reaches the outbox only to wait, at `--fps 0`, until a viewer is
//! connected. The mailbox and the outbox count nothing: they hand what they
//! drop back to their caller, who counts it in `stats`.
//!
//! Guarantees: frames are sent in capture order and never after a newer
//! one; memory stays flat while the viewer is away; SIGINT/SIGTERM exit 0
//! within a second; no input makes it panic.
//!
//! Exit status, picked in [`main`] only: 0 on a signal or after `--frames`
//! frames; 1 on any failure; 2 on invalid arguments; 3
//! ([`cli::EXIT_CAMERA_LOST`]) when the camera was lost (ENODEV, EIO, or no
//! frame within `--capture-timeout`) without `--reopen`.

mod cli;
mod encode;
mod mailbox;
mod metrics;
mod outbox;
mod pipeline;
mod pool;
mod send;
mod source;
mod stats;
mod sync;
mod tls;

use std::process::ExitCode;

use clap::Parser;

use crate::source::v4l2::CameraLost;

/// Exit status for any failure but a lost camera.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let args = match cli::Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            // clap prints --help and --version to stdout (status 0) and
            // invalid arguments to stderr (status 2).
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
        }
    };
    if let Err(msg) = args.check() {
        use clap::CommandFactory;
        let err = cli::Args::command().error(clap::error::ErrorKind::ValueValidation, msg);
        let _ = err.print();
        return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
    }
    init_logger();
    if args.list_formats {
        return match source::v4l2::list_formats(&args.device, args.size) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("agent: error: {err:#}");
                ExitCode::from(EXIT_FAILURE)
            }
        };
    }
    match pipeline::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("agent: error: {err:#}");
            let lost = err.chain().any(|e| e.is::<CameraLost>());
            ExitCode::from(if lost {
                cli::EXIT_CAMERA_LOST
            } else {
                EXIT_FAILURE
            })
        }
    }
}

/// Logs to stderr with no timestamps (journald adds its own) and the module
/// as target; RUST_LOG picks the level (default info).
fn init_logger() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .init();
}
