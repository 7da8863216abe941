//! camstream's edge agent: captures a V4L2 camera (or a synthetic source),
//! converts each frame YUYV → BGR → 24-bit BMP → gzip, and streams it to the
//! viewer over TCP as `[u8 camera id][u32 BE length][gzip body]`.
//!
//! Parts, one thread each (see `pipeline`): capture (`source`) puts the
//! newest frame in a one-slot mailbox (`frame`); `--workers` encoders
//! (`encode`) compress frames in parallel; the outbox (`outbox`) releases
//! them in capture order, newest first; the sender (`send`) writes each with
//! one write and reconnects with backoff. `stats` logs one line per
//! `--stats-interval`.
//!
//! Guarantees: frames are sent in capture order and never after a newer
//! one; memory stays flat while the viewer is away; SIGINT/SIGTERM exit 0
//! within a second; no input makes it panic.
//!
//! Exit status: 0 on a signal or after `--frames` frames; 1 on any failure;
//! 2 on invalid arguments; 3 ([`cli::EXIT_CAMERA_LOST`]) when the camera was
//! lost (ENODEV, EIO, or no frame within `--capture-timeout`) without
//! `--reopen`.

mod cli;
mod encode;
mod frame;
mod outbox;
mod pipeline;
mod send;
mod source;
mod stats;
mod stop;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match pipeline::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("agent: error: {err:#}");
            let lost = err
                .chain()
                .any(|e| e.downcast_ref::<source::v4l2::CameraLost>().is_some());
            ExitCode::from(if lost { cli::EXIT_CAMERA_LOST } else { 1 })
        }
    }
}
