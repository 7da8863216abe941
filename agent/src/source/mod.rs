//! Where frames come from: a V4L2 camera, or a synthetic source (moving
//! colour bars, or raw frames from a file) that runs the same pipeline
//! without a camera. Each runs on the capture thread and publishes frames
//! into the mailbox through a [`Capture`].

pub mod file;
pub mod pattern;
pub mod v4l2;

use std::time::{Duration, Instant};

use crate::frame::Frame;
use crate::pipeline::Shared;

/// The capture thread's side of the pipeline: numbers frames and puts each
/// into the mailbox, in a recycled buffer.
pub struct Capture<'a> {
    shared: &'a Shared,
    next_seq: u64,
}

impl<'a> Capture<'a> {
    pub fn new(shared: &'a Shared) -> Capture<'a> {
        Capture {
            shared,
            next_seq: 0,
        }
    }

    pub fn shared(&self) -> &'a Shared {
        self.shared
    }

    /// A buffer to fill with the next frame (recycled, so no allocation in
    /// steady state).
    pub fn buffer(&self) -> Vec<u8> {
        self.shared.raw_pool.get()
    }

    /// Publishes a filled buffer as the newest frame.
    pub fn publish(
        &mut self,
        data: Vec<u8>,
        width: u32,
        height: u32,
        stride: usize,
        captured: Instant,
    ) {
        let frame = Frame {
            seq: self.next_seq,
            captured,
            width,
            height,
            stride,
            data,
        };
        self.next_seq += 1;
        self.shared.stats.captured();
        self.shared
            .mailbox
            .put(frame, &self.shared.raw_pool, &self.shared.stats);
    }

    /// A frame was captured but is not worth encoding (short, corrupt, or
    /// already superseded by a newer one).
    pub fn skip(&self) {
        self.shared.stats.captured();
        self.shared.stats.dropped(1);
    }
}

/// Frame interval of an "as fast as possible" source while the viewer is away.
const IDLE_INTERVAL: Duration = Duration::from_millis(100);

/// Paces a synthetic source at `fps` frames per second; 0 means as fast as
/// the encoders take frames.
pub struct Pacer {
    interval: Option<Duration>,
    next: Instant,
}

impl Pacer {
    pub fn new(fps: u32) -> Pacer {
        Pacer {
            interval: (fps > 0).then(|| Duration::from_secs(1) / fps),
            next: Instant::now(),
        }
    }

    /// Waits until the next frame is due. Returns false if a stop was
    /// requested meanwhile.
    pub fn wait(&mut self, capture: &Capture) -> bool {
        let shared = capture.shared();
        match self.interval {
            None => {
                shared.mailbox.wait_empty(&shared.stop);
                // With nobody to send to, frames are dropped unencoded: don't
                // spin making them as fast as memcpy allows, but do go on
                // the moment the sender connects (a fixed sleep cost every
                // run up to 100 ms of a start-up that takes ~1 ms).
                shared.outbox.wait_connected(&shared.stop, IDLE_INTERVAL);
            }
            Some(interval) => {
                let now = Instant::now();
                if self.next > now && shared.stop.sleep(self.next - now) {
                    return false;
                }
                // Running late by more than a frame (a busy machine) resets
                // the schedule instead of bursting to catch up.
                let now = Instant::now();
                self.next += interval;
                if self.next + interval < now {
                    self.next = now + interval;
                }
            }
        }
        !shared.stop.is_requested()
    }
}
